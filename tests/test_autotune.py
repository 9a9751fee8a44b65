"""`compile --target auto` / `--precision auto`: which candidates a CPU gets, the choice and its
tie rule, and one real run on the tiny model (ch=8) through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bigbigan.autotune import TIE, Build, Candidate, candidates_for, choose
from bigbigan.cli.main import main
from bigbigan.cpu import isa_class
from bigbigan.errors import BigBiGANError
from bigbigan.export import ExportReport

AVX2 = frozenset({"avx2", "fma"})
AMX = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"})


def test_bf16_is_a_candidate_only_with_native_bf16() -> None:
    builds, left_out = candidates_for("auto", "auto", AVX2)
    assert Build("aoti", "bf16") not in builds and "no native bf16" in left_out["aoti:bf16"]
    assert builds[0] == Build("ort", "fp32")  # fp32 first: it wins ties
    builds, left_out = candidates_for("auto", "auto", AMX)
    assert Build("aoti", "bf16") in builds and left_out == {}
    exported = Build("ort", "fp32", rewrite=False)
    assert candidates_for("ort", "auto", AVX2)[0] == [
        Build("ort", "fp32"),
        exported,
        Build("ort", "int8"),
    ]
    assert candidates_for("auto", "int8", AVX2)[0] == [Build("ort", "int8"), Build("aoti", "int8")]


def test_no_rewrite_keeps_only_the_graph_as_exported_in_fp32() -> None:
    builds, _ = candidates_for("auto", "auto", AVX2, rewrite=False)
    assert [b.key for b in builds] == ["ort:fp32:as-exported", "ort:int8", "aoti:int8"]


def _measured(key: str, speed: float, mean: float) -> Candidate:
    target, precision = key.split(":")
    return Candidate(target, precision, Path(key), speed, [1.0], mean, 0.1)


def test_choice_is_the_fastest_within_the_bound_and_ties_keep_the_order() -> None:
    fp32 = _measured("ort:fp32", 100.0, 1e-7)
    int8 = _measured("ort:int8", 150.0, 3e-3)
    coarse = _measured("aoti:int8", 300.0, 9e-3)  # fastest, but beyond the bound
    winner, why = choose([fp32, int8, coarse], 5e-3)
    assert winner is int8 and why.startswith(f"ort:int8 won on this {isa_class()} CPU: 150")
    assert "ort:fp32 100" in why and "aoti:int8" not in why
    close = _measured("ort:int8", 100.0 / (1 - TIE / 2), 3e-3)  # within TIE of fp32
    winner, why = choose([fp32, close], 5e-3)
    assert winner is fp32 and "a tie, kept by preference order" in why
    with pytest.raises(BigBiGANError, match="no candidate .* within --max-mean-diff 1e-09"):
        choose([fp32, int8], 1e-9)


def test_compile_precision_auto(
    tiny_onnx: ExportReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "G"
    argv = ["compile", str(tiny_onnx.path), "--target", "ort", "--precision", "auto"]
    assert main([*argv, "--out", str(out), "--batch", "8"]) == 0
    printed = capsys.readouterr().out
    meta = json.loads((tmp_path / "G.onnx.json").read_text())
    assert (meta["format"], meta["version"]) == ("bigbigan-compiled", 1)  # still a document
    auto = meta["autotune"]
    assert f"note: {auto['why']}" in printed
    assert auto["chosen"] in (f"ort:{meta['precision']}", "ort:fp32:as-exported")
    measured = {Build(c["target"], c["precision"], c["rewrite"]).key: c for c in auto["candidates"]}
    assert set(measured) == {"ort:fp32", "ort:fp32:as-exported", "ort:int8"}
    assert all(c["images_per_s"] > 0 and len(c["runs_s"]) == 5 for c in measured.values())
    assert measured["ort:fp32"]["mean_abs_diff"] < 1e-5
    assert measured["ort:fp32:as-exported"]["mean_abs_diff"] < 1e-5
    assert auto["timing"]["batch"] == 8 and auto["cpu"]["isa_class"] == isa_class()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G.onnx", "G.onnx.json"]


def test_compile_auto_never_writes_over_its_source(
    tiny_onnx: ExportReport, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out G` next to the source `G.onnx` would name an ORT winner `G.onnx`: refused before
    anything is built, the source untouched."""
    source = tiny_onnx.path
    before = source.read_bytes()
    stem = source.with_suffix("")
    argv = ["compile", str(source), "--target", "ort", "--precision", "auto", "--out", str(stem)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"--out {stem} would write {source}: is {source}, which this command reads" in err
    assert source.read_bytes() == before
    assert not [p for p in source.parent.iterdir() if ".auto." in p.name]


def test_compile_auto_refuses_a_bad_bound(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    from bigbigan.compile import compile_model

    with pytest.raises(BigBiGANError, match="--max-mean-diff -1.0: expected a positive"):
        compile_model(tiny_onnx.path, target="auto", out=tmp_path / "G", max_mean_diff=-1.0)
    assert list(tmp_path.iterdir()) == []
