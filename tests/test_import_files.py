"""The original system's files without TensorFlow: getAcc's sidecar-less compare, pic2bin's
uniform noise, and the lean install's message for a `.pb`."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest

from bigbigan.binio import save_bin
from bigbigan.cli.main import main
from bigbigan.compare.files import default_names, load_outputs
from bigbigan.errors import BigBiGANError
from bigbigan.inputs import make_inputs


def _raw_images(folder, batch=256, channels=1, seed=0):
    """gpu_out.bin, pb_out.bin and om_out/bigbigan_output_0.bin as the original writes them:
    raw float32 NHWC, no sidecars; pb and om differ from GPU by known amounts."""
    rng = np.random.default_rng(seed)
    gpu = rng.random((batch, 32, 32, channels), dtype=np.float32)
    pb = gpu + np.float32(1e-4)
    om = gpu - np.float32(3e-4)
    (folder / "om_out").mkdir()
    paths = [folder / "gpu_out.bin", folder / "pb_out.bin", folder / "om_out/bigbigan_output_0.bin"]
    for path, array in zip(paths, (gpu, pb, om), strict=True):
        array.tofile(path)
    return paths, (gpu, pb, om)


def test_getacc_command_unchanged(tmp_path, capsys, monkeypatch):
    paths, (gpu, pb, om) = _raw_images(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = main(["compare", "gpu_out.bin", "pb_out.bin", "om_out/bigbigan_output_0.bin"])
    assert code == 0
    out = capsys.readouterr().out
    assert "assumed float32 NHWC images [256, 32, 32, 1]" in out
    getacc = dict(
        (line.split(": ")[0].split("difference ")[1], float(line.split(": ")[1]))
        for line in out.splitlines()
        if line.startswith("getAcc mean pixel difference")
    )
    assert getacc == pytest.approx(
        {"GPU vs pb": 1e-4, "GPU vs om": 3e-4, "pb vs om": 4e-4}, rel=1e-3
    )
    assert "grid: compare_grid.png" in out and (tmp_path / "compare_grid.png").is_file()
    assert (tmp_path / "compare_grid_error_om.png").is_file()
    assert "sidecar" not in capsys.readouterr().err
    # --json records the assumption
    main(["compare", "gpu_out.bin", "pb_out.bin", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["assumed"] and report["files"][0]["shape"] == [256, 32, 32, 1]


def test_raw_shape_sources(tmp_path):
    paths, arrays = _raw_images(tmp_path, batch=256, channels=3)
    notes: list[str] = []
    # 256*32*32*3 floats also fit 768 one-channel images: the original's batch decides
    loaded = load_outputs(paths, notes=notes)
    assert loaded[0].shape == (256, 32, 32, 3) and "C=1 would fit too" in notes[0]
    np.testing.assert_array_equal(loaded[2], arrays[2])
    # --shape wins
    loaded = load_outputs(paths[:2], shape=(768, 32, 32, 1))
    assert loaded[1].shape == (768, 32, 32, 1)
    # a file with a sidecar in the list gives the rest theirs, whichever position it has
    save_bin(tmp_path / "om_out/ours.bin", arrays[2])
    notes = []
    loaded = load_outputs([paths[0], tmp_path / "om_out/ours.bin"], notes=notes)
    assert loaded[0].shape == (256, 32, 32, 3) and "like" in notes[0]


def test_raw_shape_from_a_sidecar_elsewhere_in_the_run(tmp_path):
    batch = 96  # fits one- and three-channel images, and is not the original's 256
    rng = np.random.default_rng(1)
    images = rng.random((batch, 32, 32, 3), dtype=np.float32)
    images.tofile(tmp_path / "gpu_out.bin")
    save_bin(tmp_path / "other_run_output.bin", images)  # same size, with sidecar
    notes: list[str] = []
    (loaded,) = load_outputs([tmp_path / "gpu_out.bin"], notes=notes)
    assert loaded.shape == (batch, 32, 32, 3) and "other_run_output.bin.json" in notes[0]


def test_raw_files_that_are_not_images_get_a_useful_error(tmp_path):
    np.zeros((256, 10), np.float32).tofile(tmp_path / "a.bin")
    np.zeros((256, 10), np.float32).tofile(tmp_path / "b.bin")
    with pytest.raises(BigBiGANError) as e:
        load_outputs([tmp_path / "a.bin", tmp_path / "b.bin"])
    message = str(e.value)
    assert "not float32 NHWC 32x32 images" in message and "--shape" in message
    assert "[256, 100]" not in message  # no noise-shaped hint for an output file
    assert load_outputs([tmp_path / "a.bin"], shape=(256, 10))[0].shape == (256, 10)


def test_original_labels():
    names = default_names(["gpu_out.bin", "pb_out.bin", "om_out/bigbigan_output_0.bin"])
    assert names == ["GPU", "pb", "om"]
    assert default_names(["x/onnx.bin", "y/ort.bin"]) == ["onnx", "ort"]


def test_make_inputs_uniform_noise(tmp_path):
    noise, labels = make_inputs(tmp_path / "u", noise="uniform", batch=512)
    z = np.fromfile(noise, np.float32)
    assert z.min() >= 0 and z.max() < 1 and abs(z.mean() - 0.5) < 0.01
    default = np.fromfile(make_inputs(tmp_path / "t", batch=512)[0], np.float32)
    assert default.min() < -1 and np.abs(default).max() <= 2  # truncated normal
    with pytest.raises(BigBiGANError, match="--noise gauss"):
        make_inputs(tmp_path / "x", noise="gauss")
    assert main(["make-inputs", "--out", str(tmp_path / "c"), "--noise", "uniform"]) == 0


def test_pb_without_the_extra_names_it(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_tensorflow(name, *args, **kwargs):
        if name.split(".")[0] in ("tensorflow", "tf2onnx"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorflow)
    (tmp_path / "bigbigan.pb").write_bytes(b"\x0a\x00")
    assert main(["infer", "--model", str(tmp_path / "bigbigan.pb")]) == 1
    err = capsys.readouterr().err
    assert "pip install 'bigbigan[tf]'" in err and "TensorFlow" in err
    assert not list(tmp_path.glob("*.onnx"))
