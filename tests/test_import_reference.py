"""The reference generator, written in TensorFlow (tests/tf_reference.py) and frozen as the
original's save_pb does, through `bigbigan import` and the whole chain, as the original's user
would run it: their bigbigan.pb, their sidecar-less fake_image.bin/label.bin, gpu_out.bin and
pb_out.bin."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bigbigan.cli.main import main

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
pytest.importorskip("tensorflow", reason="TensorFlow is not installed (pip install 'bigbigan[tf]')")
pytest.importorskip("tf2onnx", reason="tf2onnx is not installed (pip install 'bigbigan[tf]')")

from tf_reference import ReferenceGenerator, run_pb, save_pb  # noqa: E402

BATCH = 16  # baked into the graph (the original: 256)


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as the original leaves it: bigbigan.pb, inputs, gpu_out.bin and pb_out.bin."""
    folder = tmp_path_factory.mktemp("original")
    pb = save_pb(ReferenceGenerator(ch=8), BATCH, folder / "bigbigan.pb")
    rng = np.random.default_rng(3)
    x1 = rng.random((BATCH, 100), dtype=np.float32)  # pic2bin: uniform [0, 1)
    x2 = rng.integers(0, 10, BATCH).astype(np.int32)
    x1.tofile(folder / "fake_image.bin")
    x2.tofile(folder / "label.bin")
    pb_out = run_pb(pb, x1, x2)
    pb_out.tofile(folder / "pb_out.bin")
    # the GPU run differs from the frozen graph in the last bits
    (pb_out + rng.normal(0, 1e-7, pb_out.shape).astype(np.float32)).tofile(folder / "gpu_out.bin")
    return folder


def test_reference_graph_imports_with_a_dynamic_batch(user_files, tmp_path):
    from bigbigan.importers.tensorflow import import_pb

    report = import_pb(
        user_files / "bigbigan.pb", tmp_path / "G.onnx", checkpoint_out=tmp_path / "ckpt"
    )
    assert report.dynamic, report.batch_note
    ops = sorted({r["op"] for r in report.rewrites})
    assert ops == ["Conv2DBackpropInput", "Reshape"]
    # the attention's three flattenings and its reshape back, the output layer's size
    assert len(report.rewrites) == 5
    assert report.max_abs_diff < 1e-5
    meta = json.loads((tmp_path / "G.onnx.json").read_text())
    assert meta["model"] == {"num_classes": 10}
    assert all(n >= 1 for n in meta["onnx_rewrites"].values())
    # the recovered checkpoint draws the frozen graph's images, and the sidecar names it
    assert report.checkpoint.max_abs_diff < 1e-5
    assert meta["checkpoint"] == str((tmp_path / "ckpt").resolve())
    out = tmp_path / "gen.bin"
    argv = ["generate", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(out)]
    assert main([*argv, "--input", f"{user_files}/fake_image.bin,{user_files}/label.bin"]) == 0
    pb_out = np.fromfile(user_files / "pb_out.bin", np.float32).reshape(BATCH, 32, 32, 1)
    np.testing.assert_allclose(
        np.fromfile(out, np.float32).reshape(pb_out.shape), pb_out, atol=1e-5
    )


def test_a_graph_that_is_not_the_reference_gets_no_checkpoint(tmp_path):
    import tensorflow as tf

    from bigbigan.errors import BigBiGANError
    from bigbigan.importers.tensorflow import import_pb

    class Other(ReferenceGenerator):  # one attention gain short: no longer the reference
        def __call__(self, x1: tf.Tensor, x2: tf.Tensor) -> tf.Tensor:
            return super().__call__(x1, x2) * 0.5

    pb = save_pb(Other(ch=8), 4, tmp_path / "other.pb")
    with pytest.raises(BigBiGANError, match="no checkpoint recovered"):
        import_pb(pb, tmp_path / "O.onnx", checkpoint_out=tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "O.onnx").exists()
    report = import_pb(
        pb, tmp_path / "O.onnx", checkpoint_out=tmp_path / "ckpt", checkpoint_optional=True
    )
    assert report.checkpoint is None and not (tmp_path / "ckpt").exists()
    meta = json.loads((tmp_path / "O.onnx.json").read_text())
    assert meta["checkpoint_recovery"].startswith("not recovered")


@pytest.mark.slow
def test_pipeline_on_the_users_pb(user_files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # compare draws getAcc's grid into the working folder
    out = tmp_path / "run"
    argv = ["pipeline", "--model", str(user_files / "bigbigan.pb"), "--input", str(user_files)]
    argv += ["--reference", str(user_files / "gpu_out.bin"), "--out", str(out), "--loop", "1"]
    assert main([*argv, "--targets", "onnx,ort,aoti,ascend"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["references"]) == ["GPU", "pb"]
    assert [s["name"] for s in report["stages"]] == ["onnx", "ort", "aoti"]
    for stage in report["stages"]:
        assert stage["vs_GPU"]["mean_abs_diff"] < 1e-6
        assert stage["vs_pb"]["mean_abs_diff"] < 1e-6
    assert "atc --framework=5" in report["notes"]["ascend"]
    assert "--input_shape" in report["notes"]["ascend"] and str(BATCH) in report["notes"]["ascend"]
    assert (out / "grid.png").is_file()
    capsys.readouterr()
    # the original's check on the outputs: unchanged command, sidecar-less files
    om = Path(report["stages"][1]["output"])
    om.with_name(om.name + ".json").unlink()  # as msame writes it
    assert (
        main(["compare", str(user_files / "gpu_out.bin"), str(user_files / "pb_out.bin"), str(om)])
        == 0
    )
    assert "getAcc mean pixel difference GPU vs pb" in capsys.readouterr().out
