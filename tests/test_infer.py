"""`bigbigan infer` beyond msame: .npy and name:file inputs, folders of per-sample files mapped
back to their outputs, synthetic inputs, warm-up and duration, latency statistics and the
summary's schema."""

from __future__ import annotations

import copy
import json
import time

import numpy as np
import pytest

from bigbigan.binio import load_bin, save_bin
from bigbigan.cli.main import main
from bigbigan.compare.statistics import latency_stats
from bigbigan.errors import BigBiGANError
from bigbigan.infer import (
    SUMMARY_FIELDS,
    InferResult,
    infer,
    run_timed,
    spread_warning,
    staged_call,
    validate_summary,
)
from bigbigan.inputs import make_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("in"), batch=6, seed=3)


def cli_error(argv, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---- the summary ----


def test_summary_matches_its_schema(tmp_path, tiny_onnx):
    result = infer(
        tiny_onnx.path, None, tmp_path, loop=3, warmup=2, batch=5, summary=tmp_path / "s.json"
    )
    doc = json.loads((tmp_path / "s.json").read_text())
    validate_summary(doc)
    assert doc == json.loads((tmp_path / "G_summary.json").read_text())
    assert doc["schema_version"] == 1 and doc["inputs"]["source"] == "synthetic"
    assert doc["timing"]["runs"] == 3 and len(doc["runs_ms"]) == 3
    assert doc["timing"]["warmup"] == 2 and doc["arguments"]["warmup"] == 2
    assert doc["timing"]["batch"] == 5 and doc["inputs"]["seed"] == 0
    assert doc["backend"]["name"] == "onnxruntime" and doc["backend"]["version"]
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    assert doc["timing"]["peak_rss_mb"] > 0 and doc["model"]["load_s"] > 0
    assert doc["timing"]["phases_ms"] is None  # nothing to split on the CPU
    assert "not applicable" in doc["timing"]["phases_note"]
    lat = doc["timing"]["latency_ms"]
    assert lat["min"] <= lat["median"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert doc["outputs"]["files"] == [str(p) for p in result.outputs]
    (array,) = doc["outputs"]["arrays"]
    assert array["name"] == "images" and array["shape"] == [5, 32, 32, 1]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("machine"), "missing machine"),
        (lambda d: d["timing"]["latency_ms"].pop("p95"), "missing timing.latency_ms.p95"),
        (lambda d: d["timing"].update(runs="3"), "timing.runs must be int"),
        (lambda d: d["timing"].update(runs=True), "timing.runs must be int"),
        (lambda d: d["backend"].update(threads=1.5), "backend.threads must be int/null"),
        (lambda d: d.update(schema_version=2), "version 2"),
        (lambda d: d["runs_ms"].append(1.0), "runs_ms"),
        (lambda d: d.update(runs_ms=["1"] * len(d["runs_ms"])), "list of numbers"),
    ],
)
def test_schema_check_names_what_is_wrong(tmp_path, tiny_onnx, mutate, message):
    doc = infer(tiny_onnx.path, None, None, batch=2, loop=2).summary()
    validate_summary(doc)
    broken = copy.deepcopy(doc)
    mutate(broken)
    with pytest.raises(BigBiGANError, match=message):
        validate_summary(broken)


def test_schema_fields_are_documented():
    """Every summary key appears in the reference documentation."""
    from pathlib import Path

    docs = (Path(__file__).parents[1] / "docs" / "infer_compare.md").read_text()
    assert "bigbigan-infer-summary" in docs
    for key, kind in SUMMARY_FIELDS.items():
        assert f"`{key}`" in docs, key
        if isinstance(kind, dict):
            for sub in kind:
                assert f"`{sub}`" in docs, f"{key}.{sub}"


# ---- inputs ----


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


# ---- run control and timing ----


class CountingRunner:
    """Stands in for a Runner: counts calls, each taking `sleep` seconds."""

    def __init__(self, sleep=0.0):
        self.calls = 0
        self.syncs = 0
        self.sleep = sleep

    def infer(self, feed):
        self.calls += 1
        time.sleep(self.sleep)
        return {"y": np.full(1, self.calls)}

    def synchronize(self):
        self.syncs += 1


def test_warmup_runs_are_not_timed():
    runner = CountingRunner()
    timing, outputs = run_timed(runner, [{}], warmup=2, loop=3)
    assert runner.calls == 5 and len(timing.runs_ms) == 3
    assert runner.syncs == 6  # one before and one after every timed call
    assert outputs[-1]["y"][0] == 5  # the outputs are the last call's


def test_loop_counts_passes_over_every_batch():
    runner = CountingRunner()
    timing, outputs = run_timed(runner, [{}, {}, {}], loop=2)
    assert runner.calls == 6 and len(timing.runs_ms) == 6
    assert [o["y"][0] for o in outputs] == [4, 5, 6]  # the last pass


def test_duration_runs_until_the_time_is_spent():
    runner = CountingRunner(sleep=0.01)
    timing, _ = run_timed(runner, [{}], warmup=1, duration=0.1)
    assert sum(timing.runs_ms) >= 100
    assert 5 <= len(timing.runs_ms) <= 15 and runner.calls == len(timing.runs_ms) + 1
    timing, _ = run_timed(CountingRunner(), [{}], duration=1e-9)
    assert len(timing.runs_ms) == 1  # at least one run


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


def test_latency_stats_known_values():
    s = latency_stats([float(v) for v in range(1, 102)])  # 1..101
    assert s["min"] == 1 and s["max"] == 101 and s["mean"] == 51 and s["median"] == 51
    assert s["p90"] == pytest.approx(91) and s["p95"] == pytest.approx(96)
    assert s["p99"] == pytest.approx(100)
    assert s["std"] == pytest.approx(np.arange(1, 102).std(ddof=1))
    assert s["cv"] == pytest.approx(s["std"] / 51)
    one = latency_stats([4.0])
    assert one["std"] == 0 and one["cv"] == 0 and one["p99"] == 4.0
    with pytest.raises(BigBiGANError):
        latency_stats([])


def test_spread_warning_above_five_percent():
    def result(ms):
        return InferResult("m.onnx", "onnxruntime", [], ms, 8, 0.1)

    assert spread_warning(result([10.0, 10.2, 9.9, 10.1])) is None
    assert "coefficient of variation" in spread_warning(result([10.0, 14.0, 10.0]))
    assert spread_warning(result([10.0])) is None  # one run has no spread
    r = result([10.0, 10.0, 30.0])
    assert r.images_per_s == pytest.approx(8 / 0.010)  # the median, not the slow outlier


def test_staged_call_splits_a_torch_call(tiny_checkpoint, inputs):
    """The GPU phase split, exercised on the CPU (force): same outputs, three phases."""
    from bigbigan.runtimes import open_runner

    with open_runner(tiny_checkpoint) as runner:
        assert staged_call(runner) is None  # on the CPU there is nothing to split
        split = staged_call(runner, force=True)
        feed = {"x1": load_bin(inputs[0]), "x2": load_bin(inputs[1])}
        out, phases = split(feed)
        assert np.array_equal(out["images"], runner.infer(feed)["images"])
        assert len(phases) == 3 and all(p >= 0 for p in phases)
        timing, _ = run_timed(runner, [feed], loop=2, split=split)
        assert set(timing.phases_ms) == {"h2d", "compute", "d2h"}
        assert timing.runs_ms[0] == pytest.approx(sum(t[0] for t in timing.phases_ms.values()))
