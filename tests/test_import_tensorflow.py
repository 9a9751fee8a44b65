"""`bigbigan import` and `.pb` models: frozen graphs built here with TensorFlow, frozen as the
original's `save_pb` does (convert_variables_to_constants_v2 of a tf.function traced at a fixed
batch), placeholders x1/x2, output Identity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bigbigan.binio import save_bin
from bigbigan.cli.main import main
from bigbigan.errors import BigBiGANError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip(
    "tensorflow", reason="TensorFlow is not installed (pip install 'bigbigan[tf]')"
)
pytest.importorskip("tf2onnx", reason="tf2onnx is not installed (pip install 'bigbigan[tf]')")

BATCH = 8  # the batch the test graphs bake in (the original: 256)
Z = 12
CLASSES = 4


def _freeze(module: tf.Module, batch: int, path: Path) -> Path:
    """What the original's save_pb does: trace at a fixed batch, freeze, write the GraphDef."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    func = tf.function(module.__call__).get_concrete_function(
        tf.TensorSpec([batch, Z], tf.float32, name="x1"),
        tf.TensorSpec([batch], tf.int32, name="x2"),
    )
    frozen = convert_variables_to_constants_v2(func)
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return path


class TinyGenerator(tf.Module):
    """Embedding + dense + an attention-style reshape that bakes the static batch, then a conv
    and a sigmoid: [N, Z], [N] -> [N, 8, 8, 1]."""

    def __init__(self, tile_bias: bool = False) -> None:
        rng = np.random.default_rng(0)
        self.embed = tf.Variable(rng.normal(size=(CLASSES, 4)).astype(np.float32))
        self.dense = tf.Variable(rng.normal(size=(Z + 4, 4 * 4 * 8)).astype(np.float32) * 0.2)
        self.conv = tf.Variable(rng.normal(size=(3, 3, 2, 1)).astype(np.float32) * 0.3)
        self.tile_bias = tile_bias

    def __call__(self, x1: tf.Tensor, x2: tf.Tensor) -> tf.Tensor:
        h = tf.concat([x1, tf.gather(self.embed, x2)], axis=1)
        h = tf.nn.relu(tf.matmul(h, self.dense))
        # the reference attention's reshape: the static batch becomes a constant
        h = tf.reshape(h, [x1.shape[0], 8, 8, -1])
        flat = tf.reshape(h, [tf.shape(h)[0], 64, 2])
        flat = tf.nn.softmax(tf.matmul(flat, flat, transpose_b=True)) @ flat
        h = tf.reshape(flat, [x1.shape[0], 8, 8, 2])
        if self.tile_bias:  # a baked batch no Reshape rule can prove: a tiled constant
            h = h + tf.reshape(tf.tile(tf.constant([[0.1]]), [x1.shape[0], 128]), [-1, 8, 8, 2])
        return tf.sigmoid(tf.nn.conv2d(h, self.conv, 1, "SAME"))


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pb")
    return {
        "baked": _freeze(TinyGenerator(), BATCH, folder / "bigbigan.pb"),
        "tiled": _freeze(TinyGenerator(tile_bias=True), BATCH, folder / "tiled.pb"),
    }


def _feed(batch: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x1": rng.random((batch, Z), dtype=np.float32),
        "x2": rng.integers(0, CLASSES, batch).astype(np.int32),
    }


def _tf_run(pb: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run("Identity:0", {"x1:0": feed["x1"], "x2:0": feed["x2"]})


def test_import_makes_the_baked_batch_dynamic(graphs, tmp_path):
    from bigbigan.importers.tensorflow import import_pb
    from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner

    report = import_pb(graphs["baked"], tmp_path / "G.onnx")
    assert report.dynamic
    # the static reshape, tf.shape()[0] (folded to a constant when tracing), the reshape back
    assert [r["shape_before"] for r in report.rewrites] == [
        [BATCH, 8, 8, -1],
        [BATCH, 64, 2],
        [BATCH, 8, 8, 2],
    ]
    assert [v["batch"] for v in report.validation] == [BATCH, 1]
    assert report.max_abs_diff < 1e-5
    assert [(s.name, s.dtype, s.shape) for s in report.inputs] == [
        ("x1", "float32", (None, Z)),
        ("x2", "int32", (None,)),
    ]
    assert [(s.name, s.shape) for s in report.outputs] == [("images", (None, 8, 8, 1))]
    meta = json.loads((tmp_path / "G.onnx.json").read_text())
    assert meta["format"] == "bigbigan-import"
    assert meta["batch"]["dynamic"] and meta["batch"]["baked"] == BATCH
    assert len(meta["source"]["sha256"]) == 64
    assert meta["model"] == {"num_classes": CLASSES}
    assert {"tensorflow", "tf2onnx", "onnx", "onnxruntime"} <= set(meta["versions"])
    # an independent check at batch sizes the importer did not validate
    feed = _feed(BATCH, seed=5)
    reference = _tf_run(graphs["baked"], feed)
    with OnnxRuntimeRunner(tmp_path / "G.onnx") as runner:
        for n in (BATCH, 3):
            found = runner.infer({k: v[:n] for k, v in feed.items()})["images"]
            np.testing.assert_allclose(found, reference[:n], atol=1e-5)


def test_unprovable_batch_stays_static_or_is_refused(graphs, tmp_path):
    from bigbigan.importers.tensorflow import import_pb

    report = import_pb(graphs["tiled"], tmp_path / "T.onnx")
    assert not report.dynamic
    assert "kept at 8" in report.batch_note and "shape inference fails" in report.batch_note
    assert [s.shape[0] for s in report.inputs] == [BATCH, BATCH]
    assert report.max_abs_diff < 1e-5
    with pytest.raises(BigBiGANError, match="cannot make batch 8 dynamic.*--batch-mode static"):
        import_pb(graphs["tiled"], tmp_path / "T2.onnx", batch_mode="dynamic")
    assert not (tmp_path / "T2.onnx").exists()
    static = import_pb(graphs["baked"], tmp_path / "S.onnx", batch_mode="static")
    assert not static.dynamic and static.rewrites == []


def test_bad_pb_is_one_line_error(tmp_path):
    from bigbigan.importers.tensorflow import import_pb

    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\x00\x01not a graph")
    with pytest.raises(BigBiGANError, match="not a frozen TensorFlow GraphDef") as info:
        import_pb(bad, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
    assert info.value.__cause__ is not None  # the parser's own error, for --verbose


def test_pb_is_a_model_for_infer_and_compile(graphs, tmp_path, capsys):
    """infer/compile take the .pb: imported once beside it (keyed by digest), then reused;
    msame's output names follow the .pb's name."""
    folder = tmp_path / "user"
    folder.mkdir()
    pb = folder / "bigbigan.pb"
    pb.write_bytes(graphs["baked"].read_bytes())
    feed = _feed(BATCH)
    save_bin(folder / "fake_image.bin", feed["x1"])
    save_bin(folder / "label.bin", feed["x2"])
    for sidecar in folder.glob("*.bin.json"):
        sidecar.unlink()  # the original's files have none
    out = folder / "om_out"
    assert main(["infer", "--model", str(pb), "--input", str(folder), "--output", str(out)]) == 0
    cached = list(folder.glob("bigbigan.*.onnx"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    images = np.fromfile(out / "bigbigan_output_0.bin", np.float32).reshape(BATCH, 8, 8, 1)
    np.testing.assert_allclose(images, _tf_run(pb, feed), atol=1e-5)
    assert "importing" in capsys.readouterr().err
    assert main(["infer", "--model", str(pb), "--batch", "3"]) == 0
    assert "importing" not in capsys.readouterr().err
    assert cached[0].stat().st_mtime_ns == mtime
    assert main(["compile", str(pb), "--target", "ort", "--out", str(tmp_path / "G.ort")]) == 0
    assert (tmp_path / "G.ort").is_file()
    # not the reference generator: no checkpoint, and the tools that need one say why
    from bigbigan.importers import resolve_checkpoint

    with pytest.raises(BigBiGANError, match="needs a PyTorch checkpoint.*not recovered"):
        resolve_checkpoint(pb)
    argv = ["compile", str(pb), "--target", "aoti", "--out", str(tmp_path / "G.pt2")]
    assert main(argv) == 1
    assert "checkpoint" in capsys.readouterr().err


def test_import_cli(graphs, tmp_path, capsys):
    out = tmp_path / "G.onnx"
    assert main(["import", str(graphs["baked"]), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "batch dynamic" in text and "max abs diff" in text
    assert main(["import", str(tmp_path / "missing.pb"), "--out", str(out)]) == 1
    assert "missing.pb: no such file" in capsys.readouterr().err
