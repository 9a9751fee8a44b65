"""Raw .bin files: round trips, foreign files read with a spec, and every bad case."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bigbigan import binio
from bigbigan.binio import load_bin, save_bin, save_txt
from bigbigan.documents import sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.interface import TensorSpec

X1 = TensorSpec("x1", "float32", (None, 100))  # noise
X2 = TensorSpec("x2", "int32", (None,))  # labels
IMG = TensorSpec("y", "float32", (None, 32, 32, 3))


@pytest.mark.parametrize(
    "array",
    [
        np.random.default_rng(0).standard_normal((4, 100)).astype(np.float32),
        np.arange(7, dtype=np.int32),
        np.random.default_rng(1).random((2, 32, 32, 3)),
        np.array(3.5, dtype=np.float32),
        np.zeros((0, 100), dtype=np.float32),
    ],
)
def test_round_trip_with_sidecar(tmp_path, array) -> None:
    path = tmp_path / "a.bin"
    save_bin(path, array)
    meta = json.loads(sidecar_path(path).read_text())
    assert meta == {
        "format": "bigbigan-bin",
        "version": 1,
        "dtype": array.dtype.name,
        "shape": list(array.shape),
    }
    assert path.stat().st_size == array.nbytes
    out = load_bin(path)
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_bytes_are_little_endian_c_order(tmp_path) -> None:
    array = np.arange(6, dtype=">i4").reshape(2, 3).T  # big-endian and Fortran-ordered view
    save_bin(tmp_path / "a.bin", array)
    raw = (tmp_path / "a.bin").read_bytes()
    assert raw == np.ascontiguousarray(array).astype("<i4").tobytes()
    meta = json.loads((tmp_path / "a.bin.json").read_text())
    assert (meta["dtype"], meta["shape"]) == ("int32", [3, 2])
    np.testing.assert_array_equal(load_bin(tmp_path / "a.bin"), array)


def test_round_trip_without_sidecar(tmp_path) -> None:
    array = np.random.default_rng(0).standard_normal((5, 100)).astype(np.float32)
    save_bin(tmp_path / "a.bin", array)
    sidecar_path(tmp_path / "a.bin").unlink()
    out = load_bin(tmp_path / "a.bin", X1)
    np.testing.assert_array_equal(out, array)


def test_foreign_files_read_with_spec(tmp_path) -> None:
    noise = np.random.default_rng(0).standard_normal((8, 100)).astype(np.float32)
    labels = np.arange(8, dtype=np.int32) % 10
    image = np.random.default_rng(1).random((2, 32, 32, 3)).astype(np.float32)
    noise.tofile(tmp_path / "noise.bin")
    labels.tofile(tmp_path / "label.bin")
    image.tofile(tmp_path / "out.bin")
    np.testing.assert_array_equal(load_bin(tmp_path / "noise.bin", X1), noise)
    np.testing.assert_array_equal(load_bin(tmp_path / "noise.bin", X1, batch=8), noise)
    np.testing.assert_array_equal(load_bin(tmp_path / "label.bin", X2), labels)
    np.testing.assert_array_equal(load_bin(tmp_path / "out.bin", IMG), image)
    static = TensorSpec("x1", "float32", (8, 100))
    assert load_bin(tmp_path / "noise.bin", static).shape == (8, 100)


def test_sidecar_shape_checked_against_spec(tmp_path) -> None:
    save_bin(tmp_path / "a.bin", np.zeros((4, 100), np.float32))
    assert load_bin(tmp_path / "a.bin", X1, batch=4).shape == (4, 100)
    with pytest.raises(BigBiGANError, match=r"a\.bin: shape \[4, 100\], .*x1 expects \[\*, 99\]"):
        load_bin(tmp_path / "a.bin", TensorSpec("x1", "float32", (None, 99)))
    with pytest.raises(BigBiGANError, match=r"expects \[\*, 100, 1\]"):
        load_bin(tmp_path / "a.bin", TensorSpec("x1", "float32", (None, 100, 1)))
    with pytest.raises(BigBiGANError, match=r"a\.bin: holds a batch of 4, expected batch 3"):
        load_bin(tmp_path / "a.bin", X1, batch=3)
    with pytest.raises(BigBiGANError, match=r"static batch 2"):
        load_bin(tmp_path / "a.bin", TensorSpec("x1", "float32", (2, 100)))


def test_size_disagrees_with_sidecar(tmp_path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"\0" * 1024)
    sidecar_path(path).write_text(json.dumps({"dtype": "float32", "shape": [256, 100]}))
    with pytest.raises(BigBiGANError) as e:
        load_bin(path)
    assert str(e.value) == (
        f"{path}: 1024 bytes, sidecar x.bin.json says float32 [256, 100] = 102400 bytes"
    )


def test_sidecar_dtype_differs_from_spec(tmp_path) -> None:
    path = tmp_path / "label.bin"
    save_bin(path, np.arange(4, dtype=np.int64))
    with pytest.raises(BigBiGANError) as e:
        load_bin(path, X2)
    msg = str(e.value)
    assert msg.startswith(f"{path}: dtype int64, model input x2 expects int32")
    assert ".astype(np.int32)" in msg
    save_bin(path, np.zeros(4, np.float64))
    with pytest.raises(BigBiGANError, match=r"dtype float64, model input x1 expects float32"):
        load_bin(path, TensorSpec("x1", "float32", (None,)))


def test_size_not_whole_samples(tmp_path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"\0" * 1000)
    with pytest.raises(BigBiGANError) as e:
        load_bin(path, X1)
    assert str(e.value) == (
        f"{path}: 1000 bytes is not a whole number of float32 [*, 100] samples (400 bytes each)"
    )
    path.write_bytes(b"")
    with pytest.raises(BigBiGANError, match="0 bytes is not a whole number"):
        load_bin(path, X1)


def test_foreign_file_wrong_batch(tmp_path) -> None:
    path = tmp_path / "a.bin"
    np.zeros((3, 100), np.float32).tofile(path)
    with pytest.raises(BigBiGANError, match=r"a\.bin: holds a batch of 3, expected batch 4"):
        load_bin(path, X1, batch=4)
    with pytest.raises(BigBiGANError, match=r"static batch 4"):
        load_bin(path, TensorSpec("x1", "float32", (4, 100)))


def test_foreign_file_with_dynamic_sample_dims(tmp_path) -> None:
    path = tmp_path / "a.bin"
    np.zeros(12, np.float32).tofile(path)
    with pytest.raises(BigBiGANError, match=r"dynamic dims besides the batch; write a sidecar"):
        load_bin(path, TensorSpec("x", "float32", (None, None)))


def test_no_sidecar_no_spec(tmp_path) -> None:
    path = tmp_path / "a.bin"
    np.zeros(4, np.float32).tofile(path)
    with pytest.raises(BigBiGANError, match=r"a\.bin: no sidecar a\.bin\.json .* pass the model"):
        load_bin(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(BigBiGANError, match=r"nope\.bin: no such file"):
        load_bin(tmp_path / "nope.bin", X1)
    with pytest.raises(BigBiGANError, match="expected a regular .bin file"):
        load_bin(tmp_path, X1)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        '{"dtype": "float32"}',
        '{"dtype": "float99", "shape": [4]}',
        '{"dtype": "object", "shape": [4]}',
        '{"dtype": 7, "shape": [4]}',
        '{"dtype": "float32", "shape": [4, -1]}',
        '{"dtype": "float32", "shape": "4"}',
        '{"dtype": "float32", "shape": [4.0]}',
    ],
)
def test_malformed_sidecar(tmp_path, text) -> None:
    path = tmp_path / "a.bin"
    np.zeros(4, np.float32).tofile(path)
    sidecar_path(path).write_text(text)
    with pytest.raises(BigBiGANError) as e:
        load_bin(path, X1)
    assert str(e.value).startswith(f"{sidecar_path(path)}: ")
    assert "\n" not in str(e.value)


class _FullDisk:
    """A file whose write stops half-way with a full disk."""

    def __init__(self, path, mode) -> None:
        self._file = open(path, mode)  # noqa: SIM115 (closed in __exit__)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def write(self, data) -> int:
        self._file.write(b"half")
        raise OSError(28, "No space left on device")


def test_failed_write_leaves_no_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(binio, "open", _FullDisk, raising=False)
    with pytest.raises(BigBiGANError, match=r"a\.bin: No space left on device \(ENOSPC\)"):
        save_bin(tmp_path / "a.bin", np.zeros(4, np.float32))
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch) -> None:
    old = np.arange(4, dtype=np.float32)
    save_bin(tmp_path / "a.bin", old)
    monkeypatch.setattr(binio, "open", _FullDisk, raising=False)
    with pytest.raises(BigBiGANError, match="No space left on device"):
        save_bin(tmp_path / "a.bin", np.zeros((2, 3), np.float64))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.bin.json"]
    np.testing.assert_array_equal(load_bin(tmp_path / "a.bin"), old)


def test_failed_txt_write_leaves_no_file(tmp_path, monkeypatch) -> None:
    def fails(path, text):
        with binio.atomic_path(path) as tmp:
            tmp.write_text(text[:3])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(binio, "write_text", fails)
    with pytest.raises(BigBiGANError, match="No space left on device"):
        save_txt(tmp_path / "a.txt", np.arange(4.0))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_dtype_writes_nothing(tmp_path) -> None:
    with pytest.raises(BigBiGANError, match="cannot write dtype object"):
        save_bin(tmp_path / "a.bin", np.array([object()]))
    with pytest.raises(BigBiGANError, match="cannot write dtype <U1"):
        save_txt(tmp_path / "a.txt", np.array(["a"]))
    assert list(tmp_path.iterdir()) == []


def test_save_txt_layout(tmp_path) -> None:
    array = np.arange(12, dtype=np.float32).reshape(2, 2, 3) / 4
    save_txt(tmp_path / "a.txt", array)
    lines = (tmp_path / "a.txt").read_text().splitlines()
    assert lines == ["0 0.25 0.5 0.75 1 1.25", "1.5 1.75 2 2.25 2.5 2.75"]
    back = np.loadtxt(tmp_path / "a.txt", dtype=np.float32).reshape(array.shape)
    np.testing.assert_array_equal(back, array)

    save_txt(tmp_path / "l.txt", np.array([3, 1, 4], dtype=np.int32))
    assert (tmp_path / "l.txt").read_text() == "3\n1\n4\n"
    save_txt(tmp_path / "s.txt", np.float64(0.1))
    assert (tmp_path / "s.txt").read_text() == "0.10000000000000001\n"
    save_txt(tmp_path / "e.txt", np.zeros((0, 5), np.float32))
    assert (tmp_path / "e.txt").read_text() == ""


def test_save_txt_float32_round_trips_exactly(tmp_path) -> None:
    array = np.random.default_rng(0).standard_normal((3, 50)).astype(np.float32)
    save_txt(tmp_path / "a.txt", array)
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "a.txt", dtype=np.float32), array)
