"""`bigbigan infer`, the stage: warm-up and duration through the API and the CLI, what the CLI
prints and writes. Inputs, timing and the summary have their own tests in tests/harness/."""

from __future__ import annotations

import pytest

from bigbigan.cli.main import main
from bigbigan.errors import BigBiGANError
from bigbigan.infer import infer


def test_infer_duration_and_warmup(tiny_onnx):
    result = infer(tiny_onnx.path, None, None, batch=2, duration=0.3, warmup=1)
    assert sum(result.loop_ms) >= 300 and result.warmup == 1
    doc = result.summary()
    assert doc["arguments"]["duration_s"] == 0.3 and doc["arguments"]["loop"] is None
    with pytest.raises(BigBiGANError, match="one or the other"):
        infer(tiny_onnx.path, None, None, loop=2, duration=1.0)


def test_cli_rejects_loop_with_duration(tiny_onnx):
    with pytest.raises(SystemExit) as exit_info:
        main(["infer", "--model", str(tiny_onnx.path), "--loop", "2", "--duration", "1"])
    assert exit_info.value.code == 2


def test_cli_without_inputs_or_outputs(tiny_onnx, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["infer", "--model", str(tiny_onnx.path), "--batch", "2", "--loop", "4"]
    assert main([*argv, "--warmup", "1", "--summary", "s.json"]) == 0
    out = capsys.readouterr().out
    assert "loop 4:" in out and "Inference average time without first time" in out
    assert "throughput" in out and "p99" in out and "summary: s.json" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]
