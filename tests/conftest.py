"""Shared fixtures: tiny checkpoints (ch=8, 2 steps of sklearn digits) and their exports, built
once per session and only when a test asks for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bigbigan.compile import CompileReport
from bigbigan.config import TrainConfig
from bigbigan.export import ExportReport


@pytest.fixture(scope="session", autouse=True)
def _private_trust_store(tmp_path_factory: pytest.TempPathFactory):
    """Packages the tests compile are trusted in a store of their own, not the user's."""
    patch = pytest.MonkeyPatch()
    patch.setenv("BIGBIGAN_TRUST_STORE", str(tmp_path_factory.mktemp("trust")))
    yield
    patch.undo()


def _train(out: Path, conditional: bool) -> Path:
    from bigbigan.training.loop import model_config_for, train

    cfg = TrainConfig(dataset="digits", batch_size=16, steps=2)
    model_cfg = model_config_for("digits", ch=8, conditional=conditional)
    return Path(train(cfg, model_cfg, out, progress=False))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conditional BigBiGAN run directory (digits: 1 channel, 10 classes, ch=8)."""
    return _train(tmp_path_factory.mktemp("tiny") / "run", conditional=True)


@pytest.fixture(scope="session")
def tiny_unconditional_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same, without class conditioning (the generator takes x1 only)."""
    return _train(tmp_path_factory.mktemp("tiny_uncond") / "run", conditional=False)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportReport:
    """The tiny generator exported to ONNX with a dynamic batch: its ExportReport."""
    from bigbigan.export import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "G.onnx")


@pytest.fixture(scope="session")
def tiny_encoder_onnx(
    tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> ExportReport:
    """The tiny encoder exported to ONNX with a dynamic batch: its ExportReport."""
    from bigbigan.export import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "E.onnx", encoder=True)


@pytest.fixture(scope="session")
def tiny_ort(tiny_onnx: ExportReport, tmp_path_factory: pytest.TempPathFactory) -> CompileReport:
    """The tiny generator compiled by the `ort` target to an ORT-format file: its report."""
    from bigbigan.compile import compile_model

    out = tmp_path_factory.mktemp("ort") / "G.ort"
    return compile_model(tiny_onnx.path, target="ort", out=out)


@pytest.fixture(scope="session")
def tiny_aoti(tiny_onnx: ExportReport, tmp_path_factory: pytest.TempPathFactory) -> CompileReport:
    """The tiny generator compiled by the `aoti` target (slow: a C++ build): its report."""
    from bigbigan.compile import compile_model

    out = tmp_path_factory.mktemp("aoti") / "G.pt2"
    return compile_model(tiny_onnx.path, target="aoti", out=out)
