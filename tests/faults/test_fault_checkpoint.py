"""Checkpoint commits under faults: a failure or a kill at every file-system call of a commit,
a file-size limit during training, kills during training, corrupt and hostile checkpoints.
After each, the previous complete checkpoint loads, `--resume` works, and the resumed run
equals an uninterrupted one bit for bit."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
import torch
from faultkit import TINY_TRAIN, leftovers, legacy_copy, run_cli, snapshot, weights

from bigbigan import fsutil
from bigbigan.config import TrainConfig
from bigbigan.errors import BigBiGANError
from bigbigan.model.networks import BigBiGAN
from bigbigan.training import checkpoint
from bigbigan.training.loop import model_config_for

FS_CALLS = ("mkdir", "open", "write", "fsync", "close", "rename", "replace")


class Fault:
    """Wraps os.<FS_CALLS>: counts the calls and, at call number `at`, runs `action`."""

    def __init__(self, monkeypatch, at: int | None = None, action=None) -> None:
        self.calls: list[str] = []
        for name in FS_CALLS:
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(name, real, at, action))

    def _wrap(self, name, real, at, action):
        def call(*args, **kwargs):
            self.calls.append(name)
            if at is not None and len(self.calls) - 1 == at:
                action(name)
            return real(*args, **kwargs)

        return call


def _no_space(name: str) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _kill(name: str) -> None:
    os._exit(137)  # no finally, no cleanup: what SIGKILL or the OOM killer does


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """A run holding a step-1 checkpoint, the model and train state to commit as step 2."""
    torch.manual_seed(0)
    model = BigBiGAN(model_config_for("digits", ch=8))
    cfg = TrainConfig(dataset="digits", batch_size=16, steps=2)
    run = tmp_path_factory.mktemp("committed") / "run"
    checkpoint.save(run, model, train=cfg, step=1, train_state={"t": torch.zeros(3)})
    with torch.no_grad():
        model.G.dense.bias.add_(1.0)
    return run, model, cfg, weights(run)


def _commit_step_2(run, model, cfg):
    return checkpoint.save(run, model, train=cfg, step=2, train_state={"t": torch.ones(3)})


def _count_calls(tmp_path, committed, monkeypatch) -> int:
    base, model, cfg, _ = committed
    shutil.copytree(base, tmp_path / "count")
    with monkeypatch.context() as patch:
        fault = Fault(patch)
        _commit_step_2(tmp_path / "count", model, cfg)
    assert {"open", "write", "fsync", "rename", "replace"} <= set(fault.calls)
    return len(fault.calls)


def _assert_loadable(run, step_1_bytes) -> int:
    """The pointer names a complete checkpoint (step 1 as it was, or step 2) whose files verify."""
    ckpt = checkpoint.read(run)
    assert ckpt.step in (1, 2)
    for name in ckpt.files:
        checkpoint.load_tensors(ckpt, name)  # checks the sha256 too
    if ckpt.step == 1:
        assert weights(run) == step_1_bytes
    checkpoint.load_model(run)
    return ckpt.step


def test_a_failure_at_every_call_of_a_commit_keeps_the_previous_checkpoint(
    tmp_path, committed, monkeypatch
):
    base, model, cfg, step_1 = committed
    n = _count_calls(tmp_path, committed, monkeypatch)
    outcomes = []
    for at in range(n):
        run = tmp_path / f"r{at}"
        shutil.copytree(base, run)
        with monkeypatch.context() as patch:
            Fault(patch, at, _no_space)
            try:
                _commit_step_2(run, model, cfg)
                failed = False
            except BigBiGANError as e:
                assert "\n" not in str(e) and "No space left on device" in str(e)
                failed = True
        step = _assert_loadable(run, step_1)
        assert step == (1 if failed else 2), at
        assert leftovers(run) == [], at
        outcomes.append(step)
    assert 1 in outcomes and 2 in outcomes  # failures before and after the commit point


def test_a_kill_at_every_call_of_a_commit_keeps_a_complete_checkpoint(
    tmp_path, committed, monkeypatch
):
    base, model, cfg, step_1 = committed
    n = _count_calls(tmp_path, committed, monkeypatch)
    steps = []
    for at in range(n):
        run = tmp_path / f"r{at}"
        shutil.copytree(base, run)
        pid = os.fork()
        if pid == 0:
            try:
                with monkeypatch.context() as patch:
                    Fault(patch, at, _kill)
                    _commit_step_2(run, model, cfg)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 137, at  # it really died mid-commit
        steps.append(_assert_loadable(run, step_1))
        checkpoint.clean(run)  # what the next train does first, holding the lock
        checkpoint.discard_after(run, checkpoint.read(run).step)
        assert leftovers(run) == [], at
        assert [f.name for f in checkpoint.step_folders(run)][-1].startswith(
            f"step_00000000{steps[-1]}"
        )
    assert 1 in steps and 2 in steps


def _kill_at_commit(commit: int, when: str):
    """A `before` hook: SIGKILL-like exit at commit `commit` of a training run, `when` is
    'staged' (all files written, folder not renamed), 'renamed' (folder in place, pointer
    not), or 'pointed' (pointer replaced, older folders not pruned)."""

    def hook() -> None:
        real_rename, real_replace = os.rename, os.replace
        seen = {"rename": 0}

        def rename(src, dst, *args, **kwargs):
            is_commit = os.path.basename(str(dst)).startswith("step_")
            if is_commit:
                seen["rename"] += 1
                if seen["rename"] == commit and when == "staged":
                    os._exit(137)
            real_rename(src, dst, *args, **kwargs)
            if is_commit and seen["rename"] == commit and when == "renamed":
                os._exit(137)

        def replace(src, dst, *args, **kwargs):
            real_replace(src, dst, *args, **kwargs)
            pointer = os.path.basename(str(dst)) == checkpoint.CONFIG_FILE
            if pointer and seen["rename"] == commit and when == "pointed":
                os._exit(137)

        os.rename, os.replace = rename, replace

    return hook


@pytest.mark.parametrize(
    "when",
    ["renamed", pytest.param("staged", marks=pytest.mark.slow), "pointed"],
)
def test_training_killed_mid_commit_resumes_bit_exactly(tmp_path, full_run, when):
    run = tmp_path / "run"
    argv = ["train", *TINY_TRAIN, "--steps", "4", "--sample-every", "1", "--out", str(run)]
    killed = run_cli(argv, tmp_path, before=_kill_at_commit(3, when))
    assert killed.status == 137
    assert checkpoint.read(run).step == (3 if when == "pointed" else 2)
    resumed = run_cli(["train", "--resume", "--out", str(run)], tmp_path)
    assert resumed.status == 0, resumed.err
    assert checkpoint.read(run).step == 4
    assert weights(run) == weights(full_run)
    assert len(checkpoint.step_folders(run)) == checkpoint.KEEP
    assert leftovers(run) == []
    log = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]


def test_a_file_size_limit_during_training_keeps_the_last_checkpoint(tmp_path, full_run):
    """RLIMIT_FSIZE below the weights file: write() fails with EFBIG, as on a full disk."""
    run = tmp_path / "run"
    first = run_cli(["train", *TINY_TRAIN, "--steps", "2", "--out", str(run)], tmp_path)
    assert first.status == 0, first.err
    before = weights(run)
    limit = (checkpoint.read(run).directory / checkpoint.MODEL_FILE).stat().st_size - 1
    full = run_cli(["train", "--resume", "--out", str(run), "--steps", "4"], tmp_path, fsize=limit)
    full.one_line_error("File too large")
    assert checkpoint.read(run).step == 2 and weights(run) == before
    assert leftovers(run) == []
    resumed = run_cli(["train", "--resume", "--out", str(run), "--steps", "4"], tmp_path)
    assert resumed.status == 0, resumed.err
    assert weights(run) == weights(full_run)


def test_a_log_line_cut_by_a_kill_does_not_stop_resume(tmp_path, full_run):
    run = tmp_path / "run"
    assert run_cli(["train", *TINY_TRAIN, "--steps", "2", "--out", str(run)], tmp_path).status == 0
    with (run / "log.jsonl").open("a") as log:
        log.write('{"step": 3, "loss_d": 1.')  # the kill came mid-line
    (run / ".samples.png.999999999.x.tmp").write_bytes(b"half")  # a dead process's temp file
    stale = run / "checkpoints" / ".step_000000003.999999999.tmp"
    stale.mkdir()
    resumed = run_cli(["train", "--resume", "--out", str(run), "--steps", "4"], tmp_path)
    assert resumed.status == 0, resumed.err
    assert weights(run) == weights(full_run)
    assert leftovers(run) == []


def test_resume_from_the_checkpoint_alone_and_mismatches_show_both_sides(tmp_path):
    run = tmp_path / "run"
    assert run_cli(["train", *TINY_TRAIN, "--steps", "2", "--out", str(run)], tmp_path).status == 0
    same = run_cli(["train", "--resume", "--out", str(run)], tmp_path)  # the schedule: 2 steps
    assert same.status == 0 and "trained to step 2" in same.out, same.err
    clash = run_cli(["train", "--resume", "--out", str(run), "--ch", "16", "--seed", "3"], tmp_path)
    clash.one_line_error("--ch 16 (checkpoint: ch 8)")
    assert "--seed" not in clash.err  # the same value: no clash
    nothing = run_cli(["train", "--resume", "--out", str(tmp_path / "none")], tmp_path)
    nothing.one_line_error("no checkpoint to resume")
    assert not (tmp_path / "none").exists()  # the folder it created is gone again


def test_a_second_writer_is_refused_by_the_lock(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with fsutil.directory_lock(run):  # another process's train, for the kernel the same lock
        second = run_cli(["train", *TINY_TRAIN, "--steps", "2", "--out", str(run)], tmp_path)
    second.one_line_error("another bigbigan process is writing to it")
    assert list(run.iterdir()) == []


def test_old_layout_loads_and_resumes_into_the_new_one(tmp_path, full_run):
    old = run_cli(["train", *TINY_TRAIN, "--steps", "2", "--out", str(tmp_path / "a")], tmp_path)
    assert old.status == 0
    legacy = legacy_copy(tmp_path / "a", tmp_path / "legacy")
    assert checkpoint.read(legacy).directory == legacy
    resumed = run_cli(["train", "--resume", "--out", str(legacy), "--steps", "4"], tmp_path)
    assert resumed.status == 0, resumed.err
    assert weights(legacy) == weights(full_run)
    assert (legacy / checkpoint.MODEL_FILE).exists()  # the old files are left as they were


def test_the_first_shipped_model_reads_in_the_old_layout():
    from bigbigan.shipped import MODELS_DIR

    first = MODELS_DIR / "bigbigan_fashion_mnist_first"
    assert json.loads((first / checkpoint.CONFIG_FILE).read_text())["version"] == 1
    ckpt = checkpoint.read(first)
    assert ckpt.directory == first and ckpt.step == 7183
    checkpoint.load_model(first)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(directory="../../etc"), "must be a folder inside the run"),
        (lambda d: d["files"].update({"../x": "0" * 64}), "plain file names"),
        (lambda d: d.update(step="7"), "'step' must be int"),
        (lambda d: d["model"].update(ch=8_000_000), "ch 8000000 needs"),
        (lambda d: d.pop("files"), "'files' must be dict"),
    ],
)
def test_hostile_checkpoint_json_is_one_line(tmp_path, full_run, change, message):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    doc = json.loads((run / checkpoint.CONFIG_FILE).read_text())
    change(doc)
    (run / checkpoint.CONFIG_FILE).write_text(json.dumps(doc))
    argv = ["export", "--checkpoint", str(run), "--out", str(tmp_path / "G.onnx")]
    result = run_cli(argv, tmp_path)
    result.one_line_error(message)
    assert not (tmp_path / "G.onnx").exists() and leftovers(tmp_path) == []


def test_a_hostile_recorded_keep_every_is_one_line_on_resume_and_changes_nothing(
    tmp_path, full_run
):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    doc = json.loads((run / checkpoint.CONFIG_FILE).read_text())
    doc["extra"]["keep_every"] = "2"
    (run / checkpoint.CONFIG_FILE).write_text(json.dumps(doc))
    before = snapshot(run)
    result = run_cli(["train", "--resume", "--out", str(run), "--steps", "6"], tmp_path)
    result.one_line_error("'keep_every' in 'extra' must be a step count")
    assert snapshot(run) == before


def test_corrupt_newest_checkpoint_is_named(tmp_path, full_run):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    weights_file = checkpoint.read(run).directory / checkpoint.MODEL_FILE
    weights_file.write_bytes(weights_file.read_bytes()[:1000])
    result = run_cli(["train", "--resume", "--out", str(run), "--steps", "5"], tmp_path)
    result.one_line_error(str(weights_file), "do not match the sha256")


def test_keeps_the_last_k_checkpoints(full_run):
    names = [f.name for f in checkpoint.step_folders(full_run)]
    assert names == ["step_000000003", "step_000000004"]
    assert checkpoint.read(full_run).directory.name == "step_000000004"
