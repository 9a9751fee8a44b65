"""The offline interface: tensor specs, specs as JSON, feed and value checks, seeded feeds, and
that the runtimes depend on it and not on the export stage."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from bigbigan.config import ModelConfig
from bigbigan.errors import BigBiGANError
from bigbigan.interface import (
    TensorSpec,
    check_feed,
    offline_specs,
    random_feed,
    read_model_sidecar,
    sample_inputs,
    specs_from_json,
    specs_to_json,
    validate_values,
)

X1 = TensorSpec("x1", "float32", (None, 100))  # noise
X2 = TensorSpec("x2", "int32", (None,))  # labels
IMG = TensorSpec("y", "float32", (None, 32, 32, 3))
SRC = Path(__file__).parents[1] / "src" / "bigbigan"


def test_spec_normalises_dtype() -> None:
    spec = TensorSpec("x1", np.dtype(np.float32), [None, 100])  # type: ignore[arg-type]
    assert spec == X1
    assert spec.np_dtype == np.float32
    assert spec.role == "noise input x1"
    assert X2.role == "label input x2"
    assert X1.model_name == "model input x1"
    assert IMG.role == "tensor y" and IMG.model_name == "model tensor y"


def test_validate_values_non_finite() -> None:
    noise = np.zeros((2, 100), np.float32)
    validate_values("fake_image.bin", noise, X1, None)
    noise[0, :2] = np.nan
    noise[1, 5] = np.inf
    with pytest.raises(BigBiGANError) as e:
        validate_values("fake_image.bin", noise, X1, None)
    assert str(e.value) == "fake_image.bin: 3 NaN/Inf values in noise input x1"
    with pytest.raises(BigBiGANError, match="1 NaN/Inf values in array"):
        validate_values("a.bin", np.array([-np.inf]), None, 10)


def test_validate_values_labels() -> None:
    validate_values("label.bin", np.array([0, 9, 3], np.int32), X2, 10)
    validate_values("label.bin", np.array([0, 12], np.int32), X2, None)  # no range known
    with pytest.raises(BigBiGANError) as e:
        validate_values("label.bin", np.array([0, 12, 3], np.int32), X2, 10)
    assert str(e.value) == "label.bin: labels must be in [0, 10), found 12"
    with pytest.raises(BigBiGANError, match=r"found -1 and 1 more"):
        validate_values("label.bin", np.array([-1, 10], np.int32), X2, 10)


def test_offline_specs_of_a_config() -> None:
    cfg = ModelConfig(ch=8)
    inputs, outputs = offline_specs(cfg)
    assert [s.name for s in inputs] == ["x1", "x2"] and inputs[1].dtype == "int32"
    assert outputs == [TensorSpec("images", "float32", (None, 32, 32, cfg.channels))]
    enc_in, enc_out = offline_specs(cfg, encoder=True)
    assert enc_in[0].name == "x" and enc_out == [TensorSpec("z", "float32", (None, cfg.z_dim))]


def test_specs_json_round_trip_and_errors() -> None:
    specs = [X1, X2, TensorSpec("y", "float32", (4, 32, 32, 3))]
    assert specs_from_json(specs_to_json(specs), "here") == specs
    for bad in (
        [],
        None,
        [{"name": "x1", "dtype": "float32"}],
        [{"name": "x1", "dtype": "float32", "shape": [-1]}],
    ):
        with pytest.raises(BigBiGANError, match="^where: expected"):
            specs_from_json(bad, "where")


def test_model_sidecar_specs(tmp_path) -> None:
    from bigbigan.documents import write_document

    model = tmp_path / "G.onnx"
    assert read_model_sidecar(model) is None
    with pytest.raises(BigBiGANError, match="no sidecar G.onnx.json; compile it first"):
        read_model_sidecar(model, missing="compile it first")
    write_document(tmp_path / "G.onnx.json", "bigbigan-onnx", {"inputs": specs_to_json([X1])})
    assert read_model_sidecar(model)["inputs"] == [X1]
    with pytest.raises(BigBiGANError, match="outputs"):  # a runner's sidecar needs both lists
        read_model_sidecar(model, "bigbigan-onnx")


def test_check_feed_and_random_feed() -> None:
    feed = random_feed([X1, X2], 3, num_classes=10, seed=5)
    assert feed["x1"].shape == (3, 100) and feed["x2"].dtype == np.int32
    assert np.abs(feed["x1"]).max() <= 2 and 0 <= feed["x2"].min() <= feed["x2"].max() < 10
    assert np.array_equal(random_feed([X1, X2], 3, num_classes=10, seed=5)["x1"], feed["x1"])
    assert list(check_feed({"x2": feed["x2"], "x1": feed["x1"]}, [X1, X2])) == ["x1", "x2"]
    with pytest.raises(BigBiGANError, match="input x2: batch 2, but input x1 has batch 3"):
        check_feed({"x1": feed["x1"], "x2": feed["x2"][:2]}, [X1, X2])
    static = random_feed([TensorSpec("x1", "float32", (4, 100))], 9)
    assert static["x1"].shape == (4, 100)  # a static leading dim wins over the batch
    images = sample_inputs(ModelConfig(ch=8), encoder=True, batch=2)["x"]
    assert images.shape == (2, 32, 32, 1) and images.min() >= 0 and images.max() < 1


def test_runtimes_do_not_import_the_export_stage() -> None:
    """The interface sits below the runtimes: no runtime (nor the interface) imports a stage."""
    stages = {"bigbigan.export", "bigbigan.compile", "bigbigan.infer", "bigbigan.bench"}
    for path in [SRC / "interface.py", *sorted((SRC / "runtimes").glob("*.py"))]:
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
            a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
        }
        assert not imported & stages, f"{path.name} imports {imported & stages}"
