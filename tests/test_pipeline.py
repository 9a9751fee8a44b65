"""`bigbigan pipeline` (what `make demo` runs) end to end at tiny size: every stage, the report,
the grid; the stages are timed by the same harness as `infer`; and how it fails (one line)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bigbigan.cli.main import main
from bigbigan.harness.summary import read_summary
from bigbigan.pipeline import DEFAULT_TARGETS, pipeline

TINY = ["--batch", "4", "--loop", "1"]


@pytest.mark.slow
def test_pipeline_onnx_against_the_reference(tmp_path, tiny_checkpoint):
    out = tmp_path / "run"
    report = pipeline(tiny_checkpoint, out, targets=("onnx",), batch=4, loop=2, echo=False)
    assert report["format"] == "bigbigan-pipeline" and report["version"] == 1
    assert json.loads((out / "report.json").read_text()) == report
    assert [s["name"] for s in report["stages"]] == ["pytorch", "onnx"]
    onnx = report["stages"][1]
    assert onnx["max_abs_diff"] <= 1e-4 and onnx["images_per_s"] > 0
    assert (out / "grid.png").stat().st_size > 0 and "| onnx |" in (out / "report.md").read_text()
    summary = read_summary(out / "onnx" / "G_summary.json")  # infer's summary, via the harness
    assert summary["timing"]["runs"] == 2 and summary["inputs"]["source"] == "files"
    assert summary["machine"]["isa"]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


@pytest.mark.slow
def test_pipeline_end_to_end(tiny_checkpoint, tmp_path, capsys):
    """The demo's stages (its default targets) plus ascend: every stage agrees with PyTorch."""
    out = tmp_path / "pipeline"
    argv = ["pipeline", "--checkpoint", str(tiny_checkpoint), "--out", str(out), *TINY]
    assert main([*argv, "--targets", ",".join([*DEFAULT_TARGETS, "ascend"])]) == 0
    printed = capsys.readouterr().out
    assert str(out / "report.md") in printed and str(out / "grid.png") in printed
    for name in ("report.json", "report.md", "grid.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    stages = report["stages"]
    assert [s["name"] for s in stages] == ["pytorch", *DEFAULT_TARGETS]
    assert stages[0]["mean_abs_diff"] == 0
    for stage in stages:
        assert stage["mean_abs_diff"] <= 1e-4, stage
        assert stage["max_abs_diff"] <= 1e-3, stage
        assert Path(stage["output"]).is_file(), stage
    assert "atc" in report["notes"]["ascend"]
    markdown = (out / "report.md").read_text()
    assert all(s["name"] in markdown for s in stages)


@pytest.mark.slow  # ~40 s: the reference run and the export come before the check
def test_pipeline_over_tolerance_fails_in_one_line(tiny_checkpoint, tmp_path, capsys):
    argv = ["pipeline", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "p"), *TINY]
    assert main([*argv, "--targets", "onnx", "--tolerance", "0"]) == 1
    assert "--tolerance 0" in _error_line(capsys)


def test_pipeline_on_a_corrupted_checkpoint_fails_in_one_line(tiny_checkpoint, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    for weights in broken.rglob("model.safetensors"):  # the run's newest (only) checkpoint
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    argv = ["pipeline", "--checkpoint", str(broken), "--out", str(tmp_path / "p"), *TINY]
    assert main([*argv, "--targets", "onnx"]) == 1
    line = _error_line(capsys)
    assert "model.safetensors" in line
    assert not (tmp_path / "p" / "report.json").exists()


def test_auto_is_a_cpu_target(tiny_checkpoint, tmp_path):
    from bigbigan.errors import BigBiGANError
    from bigbigan.pipeline import known_targets

    assert known_targets()[-1] == "auto"
    with pytest.raises(BigBiGANError, match="--targets auto with --device cuda: .* CPU"):
        pipeline(tiny_checkpoint, tmp_path / "p", targets=("auto",), device="cuda", echo=False)
    assert not (tmp_path / "p").exists()  # refused before any step


@pytest.mark.slow  # ~50 s: the reference run, the export, two candidates built and timed
def test_pipeline_auto_target(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """`--targets onnx,auto`: compiled as `compile --target auto` does (here among the two ort
    candidates, to keep it quick), chosen within --tolerance, the winner and why in the report."""
    from bigbigan import autotune

    builds = (autotune.Build("ort", "fp32"), autotune.Build("ort", "int8"))
    monkeypatch.setattr(autotune, "CANDIDATES", builds)
    out = tmp_path / "p"
    argv = ["pipeline", "--checkpoint", str(tiny_checkpoint), "--out", str(out), *TINY]
    assert main([*argv, "--targets", "onnx,auto"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    why = report["notes"]["auto"]
    # int8's mean difference is far above --tolerance 1e-4: only fp32 is eligible
    assert why.startswith("ort:fp32 won on this") and "<= 0.0001" in why and why in printed
    auto = report["stages"][-1]
    assert auto["name"] == "auto" and Path(auto["model"]).name == "G.auto.onnx"
    assert auto["mean_abs_diff"] <= 1e-4
    sidecar = json.loads((out / "G.auto.onnx.json").read_text())
    assert sidecar["autotune"]["chosen"] == "ort:fp32" and sidecar["autotune"]["why"] == why
    assert {c["precision"] for c in sidecar["autotune"]["candidates"]} == {"fp32", "int8"}
    assert f"**auto**: `{why}`" in (out / "report.md").read_text()
