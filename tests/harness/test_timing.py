"""The one run-and-time loop (harness/timing.py): warm-up excluded, passes, duration, the GPU
phase split (exercised on the CPU), and the latency statistics. A fake clock makes the times
exact, so no test depends on how fast this machine is."""

from __future__ import annotations

import numpy as np
import pytest

from bigbigan.binio import load_bin
from bigbigan.errors import BigBiGANError
from bigbigan.harness import timing
from bigbigan.harness.timing import (
    LATENCY_KEYS,
    latency_stats,
    time_calls,
    time_in_turn,
    time_runner,
)
from bigbigan.inputs import make_inputs


class FakeClock:
    """perf_counter stand-in: time moves only when a call says how long it took."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingRunner:
    """Stands in for a Runner: counts calls and synchronises; each call takes `cost(n)`
    seconds of the fake clock, n = 1, 2, ... the call's number."""

    def __init__(self, clock: FakeClock, cost=lambda n: 0.001) -> None:
        self.calls = 0
        self.syncs = 0
        self.clock = clock
        self.cost = cost

    def infer(self, feed):
        self.calls += 1
        self.clock.now += self.cost(self.calls)
        return {"y": np.full(1, self.calls)}

    def synchronize(self):
        self.syncs += 1


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(timing, "perf_counter", fake)
    return fake


def test_warmup_runs_are_not_timed(clock):
    # warm-up calls cost 1 s each, timed ones 2 ms: none of the warm-up shows in the times
    runner = CountingRunner(clock, cost=lambda n: 1.0 if n <= 2 else 0.002)
    result, outputs = time_calls(runner.infer, [{}], warmup=2, loop=3, sync=runner.synchronize)
    assert runner.calls == 5 and result.warmup == 2
    assert result.runs_ms == pytest.approx([2.0, 2.0, 2.0])
    assert runner.syncs == 6  # one before and one after every timed call
    assert outputs[-1]["y"][0] == 5  # the outputs are the last call's
    assert result.stats["median"] == pytest.approx(2.0) and result.phases_ms is None


def test_artefacts_are_timed_in_turn_after_an_untimed_round(clock):
    # the first call of each costs 1 s (warm-up, untimed); then a takes 1 ms, b 3 ms a call
    a = CountingRunner(clock, cost=lambda n: 1.0 if n == 1 else 0.001)
    b = CountingRunner(clock, cost=lambda n: 1.0 if n == 1 else 0.003)
    outputs, seconds = time_in_turn([a, b], {}, repeats=4)
    assert (a.calls, b.calls) == (5, 5)
    assert [o["y"][0] for o in outputs] == [1, 1]  # the untimed round's outputs
    assert seconds[0] == pytest.approx([0.001] * 4) and seconds[1] == pytest.approx([0.003] * 4)


def test_loop_counts_passes_over_every_batch(clock):
    runner = CountingRunner(clock)
    result, outputs = time_calls(runner.infer, [{}, {}, {}], loop=2)
    assert runner.calls == 6 and len(result.runs_ms) == 6
    assert [o["y"][0] for o in outputs] == [4, 5, 6]  # the last pass
    with pytest.raises(BigBiGANError, match="no input batches"):
        time_calls(runner.infer, [], loop=1)


def test_duration_runs_until_the_time_is_spent(clock):
    runner = CountingRunner(clock, cost=lambda n: 0.01)
    result, _ = time_calls(runner.infer, [{}], warmup=1, duration=0.1)
    assert sum(result.runs_ms) >= 100 and len(result.runs_ms) == 10
    assert runner.calls == len(result.runs_ms) + 1
    result, _ = time_calls(CountingRunner(clock).infer, [{}], duration=1e-9)
    assert len(result.runs_ms) == 1  # at least one run


def test_phased_calls_time_themselves(clock):
    def phased(feed):
        clock.now += 0.006
        return {"y": 1}, [1.0, 4.0, 1.0]

    runner = CountingRunner(clock)
    result, _ = time_calls(runner.infer, [{}], warmup=1, loop=2, phased=phased)
    assert runner.calls == 1  # the warm-up; the timed calls went through `phased`
    assert result.runs_ms == [6.0, 6.0]
    assert result.phases_ms == {"h2d": [1.0, 1.0], "compute": [4.0, 4.0], "d2h": [1.0, 1.0]}


def test_latency_stats_known_values():
    s = latency_stats([float(v) for v in range(1, 102)])  # 1..101
    assert set(s) == set(LATENCY_KEYS)
    assert s["min"] == 1 and s["max"] == 101 and s["mean"] == 51 and s["median"] == 51
    assert s["p10"] == pytest.approx(11) and s["p90"] == pytest.approx(91)
    assert s["p95"] == pytest.approx(96) and s["p99"] == pytest.approx(100)
    assert s["iqr"] == pytest.approx(50) and s["p25"] == pytest.approx(26)
    assert s["std"] == pytest.approx(np.arange(1, 102).std(ddof=1))
    assert s["cv"] == pytest.approx(s["std"] / 51)
    one = latency_stats([4.0])
    assert one["std"] == 0 and one["cv"] == 0 and one["p99"] == 4.0 and one["iqr"] == 0
    with pytest.raises(BigBiGANError):
        latency_stats([])
    with pytest.raises(BigBiGANError, match="NaN or infinite"):
        latency_stats([1.0, float("nan")])


def test_staged_call_splits_a_torch_call(tiny_checkpoint, tmp_path):
    """The GPU phase split through the runner's hook, exercised on the CPU (force): same
    outputs, three phases that add up to the call."""
    from bigbigan.runtimes import open_runner

    files = make_inputs(tmp_path, batch=6, seed=3)
    with open_runner(tiny_checkpoint) as runner:
        assert runner.staged_call() is None  # on the CPU there is nothing to split
        split = runner.staged_call(force=True)
        feed = {"x1": load_bin(files[0]), "x2": load_bin(files[1])}
        out, phases = split(feed)
        assert np.array_equal(out["images"], runner.infer(feed)["images"])
        assert len(phases) == 3 and all(p >= 0 for p in phases)
        result, _ = time_calls(runner.infer, [feed], loop=2, phased=split)
        assert set(result.phases_ms) == {"h2d", "compute", "d2h"}
        assert result.runs_ms[0] == pytest.approx(sum(t[0] for t in result.phases_ms.values()))
        result, (last,) = time_runner(runner, [feed], warmup=1, loop=2)  # CPU: whole calls
        assert result.phases_ms is None and len(result.runs_ms) == 2
        assert np.array_equal(last["images"], out["images"])


def test_backends_whose_call_does_not_split_are_timed_whole(tiny_onnx):
    from bigbigan.runtimes import open_runner

    with open_runner(tiny_onnx.path) as runner:
        assert runner.staged_call(force=True) is None
