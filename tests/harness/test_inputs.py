"""What `--input` resolves to (harness/inputs.py), through `infer`: .npy and name:file inputs,
folders of per-sample files mapped back to their outputs, seeded synthetic inputs, and the
one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from bigbigan.binio import load_bin, save_bin
from bigbigan.cli.main import main
from bigbigan.errors import BigBiGANError
from bigbigan.infer import infer
from bigbigan.inputs import make_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("in"), batch=6, seed=3)


def cli_error(argv, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_npy_and_named_inputs_give_the_bin_result(tmp_path, tiny_onnx, inputs):
    expected = infer(tiny_onnx.path, inputs, tmp_path / "bin").arrays["images"]
    noise, labels = load_bin(inputs[0]), load_bin(inputs[1])
    np.save(tmp_path / "noise.npy", noise)
    np.save(tmp_path / "labels.npy", labels)
    npy = infer(tiny_onnx.path, [tmp_path / "noise.npy", tmp_path / "labels.npy"], None)
    assert np.array_equal(npy.arrays["images"], expected)
    named = infer(tiny_onnx.path, [f"x2:{tmp_path / 'labels.npy'}", f"x1:{inputs[0]}"], None)
    assert np.array_equal(named.arrays["images"], expected)
    assert named.summary()["inputs"]["files"] == {
        "x1": [str(inputs[0])],
        "x2": [str(tmp_path / "labels.npy")],
    }


def test_synthetic_inputs_are_seeded(tiny_onnx):
    a = infer(tiny_onnx.path, None, None, batch=3, seed=1).arrays["images"]
    b = infer(tiny_onnx.path, None, None, batch=3, seed=1).arrays["images"]
    c = infer(tiny_onnx.path, None, None, batch=3, seed=2).arrays["images"]
    assert a.shape == (3, 32, 32, 1) and np.array_equal(a, b) and not np.array_equal(a, c)


def test_default_batch_is_256(tiny_onnx):
    assert infer(tiny_onnx.path, None, None).batch == 256


@pytest.mark.parametrize(
    "entries, message",
    [
        (["x1:{noise}", "{labels}"], "name:file or none"),
        (["x1:{noise}", "x1:{noise}"], "given twice"),
        (["x1:{noise}"], "no file for input x2"),
    ],
)
def test_named_input_errors(tmp_path, tiny_onnx, inputs, entries, message):
    items = [e.format(noise=inputs[0], labels=inputs[1]) for e in entries]
    with pytest.raises(BigBiGANError, match=message):
        infer(tiny_onnx.path, items, tmp_path)


def test_npy_errors_are_one_line(tmp_path, tiny_onnx, inputs, capsys):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    err = cli_error(
        ["infer", "--model", str(tiny_onnx.path), "--input", f"{tmp_path / 'obj.npy'},{inputs[1]}"],
        capsys,
    )
    assert "obj.npy" in err and ".npy" in err
    np.save(tmp_path / "f64.npy", load_bin(inputs[0]).astype(np.float64))
    err = cli_error(
        ["infer", "--model", str(tiny_onnx.path), "--input", f"{tmp_path / 'f64.npy'},{inputs[1]}"],
        capsys,
    )
    assert "float64" in err and "float32" in err


def _sample_folders(root, counts, seed=0):
    """x1/ and x2/ folders of per-sample files (mixed .npy and raw .bin, mixed sizes)."""
    rng = np.random.default_rng(seed)
    (root / "x1").mkdir(parents=True)
    (root / "x2").mkdir()
    noise, labels = [], []
    for i, k in enumerate(counts):
        z = rng.standard_normal((k, 100)).astype(np.float32)
        y = rng.integers(0, 10, k).astype(np.int32)
        if k == 1:
            np.save(root / "x1" / f"s{i}.npy", z[0])  # one sample, no batch dim
        else:
            z.tofile(root / "x1" / f"s{i}.bin")  # raw, no sidecar, as other tools write
        save_bin(root / "x2" / f"s{i}.bin", y)
        noise.append(z)
        labels.append(y)
    return np.concatenate(noise), np.concatenate(labels)


def test_folder_inputs_map_back_to_their_files(tmp_path, tiny_onnx):
    counts = [3, 1, 4, 2]
    noise, labels = _sample_folders(tmp_path / "in", counts)
    result = infer(tiny_onnx.path, [tmp_path / "in"], tmp_path / "out", batch=4)
    save_bin(tmp_path / "z.bin", noise)
    save_bin(tmp_path / "y.bin", labels)
    whole = infer(tiny_onnx.path, [tmp_path / "z.bin", tmp_path / "y.bin"], None).arrays["images"]

    doc = result.summary()
    assert doc["inputs"]["source"] == "folder" and doc["inputs"]["samples"] == 10
    assert doc["inputs"]["batches"] == 3 and doc["timing"]["runs"] == 3
    assert [m["samples"] for m in doc["mapping"]] == counts
    start = 0
    for i, (entry, k) in enumerate(zip(doc["mapping"], counts, strict=True)):
        suffix = "npy" if k == 1 else "bin"
        assert entry["inputs"] == {
            "x1": str(tmp_path / "in" / "x1" / f"s{i}.{suffix}"),
            "x2": str(tmp_path / "in" / "x2" / f"s{i}.bin"),
        }
        out = entry["outputs"]["images"]
        assert out == str(tmp_path / "out" / f"s{i}_output_0.bin")
        images = load_bin(out)
        assert images.shape == (k, 32, 32, 1) and entry["first_sample"] == start
        np.testing.assert_allclose(images, whole[start : start + k], atol=1e-6)
        start += k
    assert result.outputs == [tmp_path / "out" / f"s{i}_output_0.bin" for i in range(4)]
    # and the same with the folders given one per input, by name
    again = infer(
        tiny_onnx.path, [f"x2:{tmp_path / 'in' / 'x2'}", f"x1:{tmp_path / 'in' / 'x1'}"], None
    )
    np.testing.assert_allclose(again.arrays["images"], whole, atol=1e-6)


def test_folder_errors(tmp_path, tiny_onnx):
    _sample_folders(tmp_path / "a", [2, 2])
    (tmp_path / "a" / "x2" / "s1.bin").unlink()
    with pytest.raises(BigBiGANError, match="different numbers of files"):
        infer(tiny_onnx.path, [tmp_path / "a"], None)
    _sample_folders(tmp_path / "b", [2, 3])
    save_bin(tmp_path / "b" / "x2" / "s1.bin", np.zeros(2, np.int32))
    with pytest.raises(BigBiGANError, match="different numbers of samples"):
        infer(tiny_onnx.path, [tmp_path / "b"], None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BigBiGANError, match="no .bin or .npy"):
        infer(tiny_onnx.path, [tmp_path / "empty", tmp_path / "empty"], None)
    with pytest.raises(BigBiGANError, match="not a mix"):
        infer(tiny_onnx.path, [tmp_path / "b" / "x1", tmp_path / "z.bin"], None)


@pytest.mark.slow
def test_folder_inputs_padded_to_a_static_batch(tmp_path, tiny_checkpoint):
    from bigbigan.export import export_onnx

    static = export_onnx(tiny_checkpoint, tmp_path / "S.onnx", static_batch=4).path
    noise, labels = _sample_folders(tmp_path / "in", [3, 2, 1])
    result = infer(static, [tmp_path / "in"], tmp_path / "out")
    doc = result.summary()
    assert doc["inputs"]["batch"] == 4 and doc["inputs"]["padded"] == 2
    assert [m["samples"] for m in doc["mapping"]] == [3, 2, 1]
    assert result.arrays["images"].shape == (6, 32, 32, 1)
    np.save(tmp_path / "z.npy", noise[:4])
    np.save(tmp_path / "y.npy", labels[:4])
    first = infer(static, [tmp_path / "z.npy", tmp_path / "y.npy"], None).arrays["images"]
    np.testing.assert_allclose(result.arrays["images"][:4], first, atol=1e-6)
