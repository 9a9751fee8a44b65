"""`bigbigan bench` on the tiny model: the JSON's schema and rows, the chart, the statistics, the
label-accuracy hook and clear errors. No timing assertions: only that times were taken."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bigbigan.autotune import TIE, Build, Candidate, choose
from bigbigan.bench import (
    FORMAT,
    Row,
    auto_choice,
    bench,
    bench_title,
    format_table,
    generated_label_accuracy,
    gpu_bf16_peak,
    parse_batch_sizes,
    parse_names,
    random_checkpoint,
    row_latency,
)
from bigbigan.cli.main import main
from bigbigan.cpu import isa_class
from bigbigan.errors import BigBiGANError

HAS_CUDA = torch.cuda.is_available()
ROW_KEYS = {
    "backend", "precision", "variant", "batch", "images_per_s", "latency_ms", "p10_ms", "p90_ms",
    "iqr_ms", "repeats", "mean_abs_diff", "max_abs_diff", "ratio", "label_accuracy",
    "peak_fraction", "note",
}  # fmt: skip


def test_row_latency_and_parsers() -> None:
    stats = row_latency([1.0, 2.0, 3.0, 4.0, 100.0])  # milliseconds
    assert stats["latency_ms"] == pytest.approx(3.0)
    assert stats["p10_ms"] < stats["latency_ms"] < stats["p90_ms"] and stats["iqr_ms"] > 0
    assert row_latency([5.0])["iqr_ms"] == 0.0
    assert parse_batch_sizes("1,16, 256") == (1, 16, 256)
    for bad in ("", "0,4", "a,b"):
        with pytest.raises(BigBiGANError, match="--batch-sizes"):
            parse_batch_sizes(bad)
    assert parse_names(None, ("a", "b"), "--x") == ("a", "b")
    assert parse_names("b", ("a", "b"), "--x") == ("b",)
    with pytest.raises(BigBiGANError, match="--backends tf: expected a comma-separated subset"):
        parse_names("tf", ("torch",), "--backends")


def test_gpu_peak_table() -> None:
    assert gpu_bf16_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert gpu_bf16_peak("NVIDIA H200") == 989e12
    assert gpu_bf16_peak("NVIDIA L40S") == 362e12 and gpu_bf16_peak("NVIDIA L4") == 121e12
    assert gpu_bf16_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_bf16_peak("Tesla T4") is None


def test_random_checkpoint_is_not_saturated(tmp_path: Path) -> None:
    from bigbigan.interface import sample_inputs
    from bigbigan.model.networks import offline_module
    from bigbigan.training.checkpoint import load_model

    path = random_checkpoint(tmp_path / "random", ch=8, dataset="digits")
    model, ckpt = load_model(path)
    feed = sample_inputs(ckpt.model, batch=16)
    with torch.no_grad():
        images = offline_module(model)(*(torch.from_numpy(v) for v in feed.values())).numpy()
    assert ((images > 0.02) & (images < 0.98)).mean() > 0.5 and images.std() > 0.01
    assert ckpt.extra["random_weights"] == {"seed": 0, "dataset": "digits"}


def test_bench_rows_and_json(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = bench(
        tiny_checkpoint,
        batch_sizes=(1, 4),
        repeats=1,
        warmup=0,
        backends=("torch", "onnxruntime", "ort"),
        precisions=("fp32", "bf16", "int8"),
        threads=1,
        streams=2,
        out=tmp_path,
    )
    labels = {"torch fp32", "torch fp32 channels-last", "torch bf16 channels-last",
              "onnxruntime fp32", "ort fp32", "ort int8"}  # fmt: skip
    # from batch 2 on:
    streamed = {"onnxruntime fp32 2 streams", "ort fp32 2 streams", "ort int8 2 streams"}
    assert {r.label for r in result.rows if r.batch == 1} == labels
    assert {r.label for r in result.rows if r.batch == 4} == labels | streamed
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["format"] == FORMAT and doc["version"] == 1 and doc["device"] == "cpu"
    assert doc["batch_sizes"] == [1, 4] and doc["repeats"] == 1 and doc["threads"] == 1
    assert doc["ratio_reference"] == "onnxruntime fp32" and doc["classifier"] is None
    assert doc["model"]["ch"] == 8 and doc["gflop_per_image"] > 0
    assert {"cpu", "cpu_flags", "load_average", "torch", "onnxruntime"} <= set(doc["machine"])
    assert doc["machine"]["isa"] == isa_class()  # bench names the ISA class it ran on
    assert doc["skipped"] == []
    for row in doc["rows"]:
        assert set(row) == ROW_KEYS
        assert row["images_per_s"] > 0 and row["p10_ms"] <= row["latency_ms"] <= row["p90_ms"]
        assert row["label_accuracy"] is None and row["peak_fraction"] is None
    by = {(r["backend"], r["precision"], r["variant"], r["batch"]): r for r in doc["rows"]}
    for batch in (1, 4):
        assert by[("onnxruntime", "fp32", "", batch)]["ratio"] == pytest.approx(1.0)
        assert by[("torch", "fp32", "", batch)]["max_abs_diff"] == 0.0
        assert by[("ort", "fp32", "", batch)]["max_abs_diff"] <= 1e-5
        assert by[("torch", "bf16", "channels-last", batch)]["mean_abs_diff"] <= 5e-3
        assert by[("ort", "int8", "", batch)]["mean_abs_diff"] <= 2e-2
    assert by[("onnxruntime", "fp32", "2 streams", 4)]["max_abs_diff"] <= 1e-5
    assert by[("ort", "int8", "2 streams", 4)]["mean_abs_diff"] <= 2e-2
    assert doc["streams"] == 2 and doc["max_mean_diff"] == 5e-3
    assert set(doc["summary"]) == {"fp32", "bf16", "int8", "batch1"}
    # the automatic choice: autotune's rule over the ort rows as measured, per batch (the plain
    # session standing for ORT fp32 without the rewrite)
    assert [c["batch"] for c in doc["auto"]] == [1, 4] and doc["auto"] == result.auto
    for choice in doc["auto"]:
        b = choice["batch"]
        entries = [
            (Build("ort", "fp32"), by[("ort", "fp32", "", b)]),
            (Build("ort", "fp32", rewrite=False), by[("onnxruntime", "fp32", "", b)]),
            (Build("ort", "int8"), by[("ort", "int8", "", b)]),
        ]
        measured = [
            Candidate(build.target, build.precision, images_per_s=r["images_per_s"],
                      mean_abs_diff=r["mean_abs_diff"], rewrite=build.rewrite)
            for build, r in entries
        ]  # fmt: skip
        winner, why = choose(measured, 5e-3)
        row = next(r for c, (_, r) in zip(measured, entries, strict=True) if c is winner)
        assert choice["row"] == f"{row['backend']} {row['precision']}" and choice["why"] == why
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "artifacts" / "G.int8.onnx.json").is_file()
    table = format_table(result.rows)
    assert "x onnxruntime fp32" in table and "ort" in table and "label acc" not in table
    titled = format_table(result.rows, title=bench_title(result.meta)).splitlines()
    assert f"({isa_class()})" in titled[0] and titled[1:] == table.splitlines()


def test_label_accuracy_hook(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from bigbigan.quality import classifier
    from bigbigan.runtimes import open_runner

    directory = tmp_path / "classifier"
    classifier.save(
        directory, classifier.Classifier(classifier.ClassifierConfig()), dataset="digits"
    )
    with open_runner(tiny_checkpoint) as runner:

        def infer(feed: dict) -> np.ndarray:
            return runner.infer(feed)["images"]

        first = generated_label_accuracy(infer, directory, 10, samples=30, batch=10)
        assert 0.0 <= first <= 1.0
        assert generated_label_accuracy(infer, directory, 10, samples=30, batch=10) == first
    result = bench(
        tiny_checkpoint,
        batch_sizes=(2,),
        repeats=1,
        backends=("torch", "onnxruntime"),
        precisions=("fp32",),
        out=tmp_path / "bench",
        classifier=directory,
        label_samples=20,
    )
    accuracies = {r.label_accuracy for r in result.rows}
    assert len(accuracies) == 1 and None not in accuracies  # fp32 backends agree
    assert "label acc" in format_table(result.rows)


def test_refusals(
    tiny_checkpoint: Path, tiny_unconditional_checkpoint: Path, tmp_path: Path
) -> None:
    for backends, precisions in [(("onnxruntime",), ("fp32",)), (("torch",), ("bf16",))]:
        with pytest.raises(BigBiGANError, match="must include torch and fp32"):
            bench(tiny_checkpoint, backends=backends, precisions=precisions, out=tmp_path)
    assert not (tmp_path / "artifacts").exists()  # refused before any slow step
    with pytest.raises(BigBiGANError, match="conditional generator"):
        bench(tiny_unconditional_checkpoint, batch_sizes=(1,), out=tmp_path)
    with pytest.raises(BigBiGANError, match="--repeats 0"):
        bench(tiny_checkpoint, repeats=0, out=tmp_path)
    with pytest.raises(BigBiGANError, match="--device tpu"):
        bench(tiny_checkpoint, device="tpu", out=tmp_path)
    with pytest.raises(BigBiGANError, match="--streams -1"):
        bench(tiny_checkpoint, streams=-1, out=tmp_path)


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is visible")
def test_cuda_without_gpu_is_a_clear_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(BigBiGANError, match="--device cuda: bench needs a CUDA GPU"):
        bench(tiny_checkpoint, device="cuda", out=tmp_path)


def test_cli(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--checkpoint", str(tiny_checkpoint), "--backends", "torch,onnxruntime",
            "--precisions", "fp32", "--batch-sizes", "2", "--repeats", "1", "--threads", "1",
            "--out", str(tmp_path)]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["backend"], r["batch"]) for r in doc["rows"]][-1] == ("onnxruntime", 2)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and f"json: {tmp_path / 'bench.json'}" in out
    assert main([*argv[:-2], "--batch-sizes", "0", "--out", str(tmp_path)]) == 1
    assert "--batch-sizes 0: expected positive integers" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_aoti_and_micro_batches(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = bench(
        tiny_checkpoint,
        batch_sizes=(2, 5),
        repeats=1,
        backends=("torch", "onnxruntime", "aoti"),
        precisions=("fp32", "bf16"),
        micro_batch=2,
        threads=1,
        out=tmp_path,
    )
    labels = {(r.label, r.batch) for r in result.rows}
    assert ("aoti bf16 micro-batch 2", 5) in labels and ("aoti bf16 micro-batch 2", 2) not in labels
    rows = {(r.label, r.batch): r for r in result.rows}
    assert rows[("aoti fp32", 5)].max_abs_diff <= 1e-5
    assert rows[("aoti fp32 micro-batch 2", 5)].max_abs_diff <= 1e-5
    assert rows[("aoti bf16", 5)].mean_abs_diff <= 5e-3


def _row(label: str, batch: int, speed: float, mean: float) -> Row:
    backend, precision, *variant = label.split(" ", 2)
    return Row(backend, precision, " ".join(variant), batch, speed, 1.0, 1.0, 1.0, 0.0, 1, mean,
               10 * mean, ratio=1.0)  # fmt: skip


def test_auto_choice_is_autotunes_rule_on_the_measured_rows() -> None:
    rows = [
        _row("torch fp32", 8, 900.0, 0.0),  # not a compile target: never chosen
        _row("onnxruntime fp32", 8, 100.0, 1e-7),
        _row("ort fp32", 8, 150.0, 1e-7),
        _row("ort fp32 2 streams", 8, 800.0, 1e-7),  # a variant: compile cannot write it
        _row("ort int8", 8, 200.0, 3e-3),
        _row("aoti int8", 8, 400.0, 2e-2),  # fastest, beyond the bound
        _row("ort fp32", 1, 100.0, 1e-7),
        _row("ort int8", 1, 100.0 / (1 - TIE / 2), 3e-3),  # within TIE: fp32 keeps it
        _row("torch fp32", 2, 10.0, 0.0),  # no candidate row at batch 2: no entry
        _row("ort fp32", 16, 100.0, 1e-7),
        _row("onnxruntime fp32", 16, 140.0, 1e-7),  # the graph as exported, faster here
    ]
    by_batch = {c["batch"]: c for c in auto_choice(rows)}
    assert set(by_batch) == {1, 8, 16}
    assert by_batch[16]["row"] == "onnxruntime fp32"
    assert by_batch[16]["why"].startswith("ort:fp32:as-exported won")
    assert by_batch[8]["row"] == "ort int8" and by_batch[8]["why"].startswith("ort:int8 won")
    assert "aoti:int8" not in by_batch[8]["why"]  # excluded by the bound
    assert by_batch[1]["row"] == "ort fp32" and "a tie" in by_batch[1]["why"]
    assert auto_choice(rows, max_mean_diff=1e-3)[1]["row"] == "ort fp32"
    (none,) = auto_choice([_row("ort int8", 4, 10.0, 1e-2)])
    assert none["row"] is None and "no candidate" in none["why"]
    table = format_table(rows, auto=auto_choice(rows)).splitlines()
    marked = [line for line in table if line.endswith("<- auto")]
    assert len(marked) == 3 and "int8" in marked[0] and "fp32" in marked[1]  # batch 8, then 1
    assert "onnxruntime" in marked[2]
    assert "auto" not in format_table(rows)  # no choice given: no column


def test_cli_marks_the_automatic_choice(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--checkpoint", str(tiny_checkpoint), "--backends", "torch,onnxruntime,ort",
            "--precisions", "fp32", "--batch-sizes", "2", "--repeats", "1", "--threads", "1",
            "--streams", "0", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert any(line.endswith("<- auto") and "fp32" in line for line in out.splitlines())
    assert re.search(
        rf"auto at batch 2: ort:fp32(:as-exported)? won on this {isa_class()} CPU", out
    )
    assert main([*argv, "--max-mean-diff", "0"]) == 1
    assert "--max-mean-diff 0.0: expected a positive number" in capsys.readouterr().err


def test_row_label() -> None:
    row = Row("aoti", "int8", "micro-batch 32", 256, 1.0, 1.0, 1.0, 1.0, 0.0, 1, 0.0, 0.0)
    assert row.label == "aoti int8 micro-batch 32"


def test_gpu_rows_are_listed_without_a_gpu() -> None:
    from bigbigan.runtimes.registry import BenchSettings, plan_rows

    every = ("fp32", "bf16", "fp16", "int8")
    graphs = plan_rows(("cudagraph",), BenchSettings("cuda", every, 4, 32))
    assert [(r.backend, r.precision) for r in graphs] == [
        ("cudagraph", "fp32"), ("cudagraph", "bf16"), ("cudagraph", "fp16")
    ]  # fmt: skip
    assert all(r.model == "checkpoint" and r.options["cuda_graph"] for r in graphs)
    assert plan_rows(("cudagraph",), BenchSettings("cpu", every, 4, 32)) == []
    eager = plan_rows(("torch",), BenchSettings("cuda", ("fp32", "bf16", "fp16"), 4, 32))
    assert [(r.precision, r.variant) for r in eager] == [("fp32", ""), ("bf16", ""), ("fp16", "")]
    cpu = plan_rows(("torch",), BenchSettings("cpu", ("fp32", "bf16", "fp16"), 4, 32))
    assert [(r.precision, r.variant) for r in cpu] == [
        ("fp32", ""), ("fp32", "channels-last"), ("bf16", "channels-last")
    ]  # fmt: skip
    assert cpu[2].options == {"precision": "bf16", "channels_last": True}
    gpu = plan_rows(("onnxruntime", "ort", "aoti", "openvino"), BenchSettings("cuda", every, 4, 32))
    assert [(r.backend, r.precision, r.variant, r.artifact) for r in gpu] == [
        ("onnxruntime", "fp32", "", ""),
        ("aoti", "fp32", "", "G.fp32.cuda.pt2"),
        ("aoti", "bf16", "", "G.bf16.cuda.pt2"),
        ("aoti", "fp16", "", "G.fp16.cuda.pt2"),
    ]  # no streams, micro-batches, ort or openvino rows on a GPU
