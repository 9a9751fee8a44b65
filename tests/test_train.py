"""Training at tiny size: outputs, bit-exact resume, Ctrl-C, and checkpoint validation."""

import json

import pytest
import torch

from bigbigan.cli.main import main
from bigbigan.config import TrainConfig
from bigbigan.errors import BigBiGANError
from bigbigan.training import checkpoint
from bigbigan.training import loop as train

TINY = {"dataset": "digits", "batch_size": 16, "seed": 3}


def run(out, steps, resume=False, sample_every=0):
    cfg = TrainConfig(**TINY, steps=steps, sample_every=sample_every)
    return train.train(
        cfg, train.model_config_for("digits", ch=8), out, resume=resume, progress=False
    )


def weights(out):
    return checkpoint.load_tensors(checkpoint.read(out), checkpoint.MODEL_FILE)


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run(tmp_path_factory.mktemp("full"), steps=6)


def test_cli_train_writes_checkpoint_grid_log_and_curves(tmp_path):
    out = tmp_path / "r"
    argv = ["train", "--dataset", "digits", "--ch", "8", "--batch-size", "16", "--steps", "6"]
    assert main([*argv, "--out", str(out)]) == 0
    folder = checkpoint.read(out).directory
    assert folder == out / "checkpoints" / "step_000000006"
    for name in ("checkpoint.json", "model.safetensors", "train_state.safetensors"):
        assert (folder / name).stat().st_size > 0
    assert (out / "samples.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "losses.png").read_bytes().startswith(b"\x89PNG")
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all({"loss_d", "loss_ge", "s_xz_real"} <= r.keys() for r in rows)
    assert checkpoint.read(out).step == 6


def test_resume_reproduces_uninterrupted_weights(tmp_path, uninterrupted):
    out = run(tmp_path / "r", steps=3)
    assert checkpoint.read(out).step == 3
    run(out, steps=6, resume=True)
    assert checkpoint.read(out).step == 6
    assert_same_weights(out, uninterrupted)
    steps = [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_checkpoints_between_steps_change_nothing(tmp_path, uninterrupted):
    """Checkpointing every step (--sample-every 1) trains the same bits: a run's kept step-N
    checkpoint is what the same command with --steps N gives."""
    out = run(tmp_path / "r", steps=6, sample_every=1)
    assert_same_weights(out, uninterrupted)


def test_sigint_stops_at_a_step_boundary_and_resumes_exactly(tmp_path, monkeypatch, uninterrupted):
    """A real SIGINT mid-step: the step finishes, then the checkpoint is written."""
    import signal

    real_step = train.train_step

    def signal_during_step_3(run_state, *args):
        if run_state.step == 2:
            # the handler train installed, called as the interpreter calls it between the D and
            # G/E updates; a real raise_signal here crashed the interpreter late in a full run
            # (a segfault after ~600 tests, not reproduced in isolation; under investigation)
            handler = signal.getsignal(signal.SIGINT)
            assert callable(handler) and handler is not signal.default_int_handler
            handler(signal.SIGINT, None)
        return real_step(run_state, *args)

    monkeypatch.setattr(train, "train_step", signal_during_step_3)
    with pytest.raises(BigBiGANError, match="interrupted at step 3"):
        run(tmp_path / "r", steps=6)
    monkeypatch.setattr(train, "train_step", real_step)
    run(tmp_path / "r", steps=6, resume=True)
    assert_same_weights(tmp_path / "r", uninterrupted)


def test_different_seed_gives_different_weights(tmp_path, uninterrupted):
    cfg = TrainConfig(**{**TINY, "seed": 4}, steps=6)
    out = train.train(cfg, train.model_config_for("digits", ch=8), tmp_path / "r", progress=False)
    assert not torch.equal(weights(out)["G.dense.bias"], weights(uninterrupted)["G.dense.bias"])


def test_existing_run_needs_resume(tmp_path, uninterrupted):
    with pytest.raises(BigBiGANError, match="--resume"):
        run(uninterrupted, steps=6)


def test_loaded_model_reproduces_the_trained_generator(uninterrupted):
    model, ckpt = checkpoint.load_model(uninterrupted)
    assert ckpt.step == 6 and ckpt.dataset == "digits" and ckpt.model.ch == 8
    z, y = torch.randn(2, 100), torch.tensor([1, 2])
    assert torch.equal(model.G(z, y), model.G(z, y))


def test_truncated_weights_are_rejected(tmp_path, uninterrupted):
    import shutil

    copy = tmp_path / "c"
    shutil.copytree(uninterrupted, copy)
    weights_file = checkpoint.read(copy).directory / "model.safetensors"
    data = weights_file.read_bytes()
    weights_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(BigBiGANError, match="model.safetensors"):
        checkpoint.load_model(copy)


def test_mismatched_architecture_is_rejected(tmp_path, uninterrupted):
    import shutil

    copy = tmp_path / "c"
    shutil.copytree(uninterrupted, copy)
    doc = json.loads((copy / "checkpoint.json").read_text())
    doc["model"]["ch"] = 16
    (copy / "checkpoint.json").write_text(json.dumps(doc))
    with pytest.raises(BigBiGANError, match="expects"):
        checkpoint.load_model(copy)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"format": "other"}', "format"),
        ('{"format": "bigbigan-checkpoint", "version": 9}', "version"),
    ],
)
def test_bad_checkpoint_json(tmp_path, content, message):
    (tmp_path / "checkpoint.json").write_text(content)
    with pytest.raises(BigBiGANError, match=message):
        checkpoint.read(tmp_path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(BigBiGANError, match="no checkpoint.json"):
        checkpoint.read(tmp_path)


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    assert main(["train", "--dataset", "nope", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dataset 'nope'" in err and "Traceback" not in err


def kept_steps(out):
    return [int(f.name.removeprefix("step_")) for f in checkpoint.step_folders(out)]


def test_keep_every_keeps_milestones_through_a_resume_not_told_again(tmp_path, uninterrupted):
    """With one rolling checkpoint and --keep-every 2 the even steps stay; a resume without the
    flag keeps them and goes on keeping every second step; each kept folder loads alone."""
    out = tmp_path / "r"
    argv = ["train", "--dataset", "digits", "--ch", "8", "--batch-size", "16", "--seed", "3"]
    argv += ["--sample-every", "1", "--keep-checkpoints", "1", "--out", str(out)]
    assert main([*argv, "--steps", "3", "--keep-every", "2"]) == 0
    assert kept_steps(out) == [2, 3]
    resume = ["train", "--resume", "--out", str(out), "--keep-checkpoints", "1"]
    assert main([*resume, "--steps", "6"]) == 0
    assert kept_steps(out) == [2, 4, 6]
    for folder in checkpoint.step_folders(out):
        checkpoint.load_model(folder)
    assert_same_weights(out, uninterrupted)  # milestones change nothing in training
    assert main([*resume, "--steps", "7", "--keep-every", "0"]) == 0
    assert kept_steps(out) == [7]  # told otherwise: one rolling checkpoint, as asked


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--keep-every", "3", "--sample-every", "2"],
            "--keep-every 3: expected a multiple of --sample-every (2)",
        ),
        (["--keep-every", "4"], "--keep-every 4: expected a multiple of --sample-every (not set)"),
        (["--keep-every", "-1"], "--keep-every -1: expected 0 (none) or a step count"),
    ],
)
def test_bad_retention_is_one_line_before_anything_is_written(tmp_path, capsys, flags, message):
    out = tmp_path / "r"
    argv = ["train", "--dataset", "digits", "--ch", "8", "--steps", "4", "--out", str(out)]
    assert main([*argv, *flags]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not out.exists()


@pytest.mark.parametrize("sync_bn", [False, True])
def test_one_process_gloo_group_reproduces_single_process_training(
    tmp_path, uninterrupted, sync_bn
):
    """The data-parallel code path (sharded noise and dropout, gradient all-reduce, buffer sync,
    synchronised BN) in a world of one process is the single-process recipe, bit for bit; this
    pins single-process training without a hard-coded hash."""
    import torch.distributed as dist

    from bigbigan.training.distributed import Replicas

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        replicas = Replicas(0, 0, 1, torch.device("cpu"), "gloo")
        cfg = TrainConfig(**TINY, steps=6)
        out = train.train(
            cfg,
            train.model_config_for("digits", ch=8),
            tmp_path / "r",
            progress=False,
            replicas=replicas,
            sync_bn=sync_bn,
        )
    finally:
        dist.destroy_process_group()
    for name in (checkpoint.MODEL_FILE, checkpoint.STATE_FILE):
        mine, reference = checkpoint.read(out).directory, checkpoint.read(uninterrupted).directory
        assert (mine / name).read_bytes() == (reference / name).read_bytes(), name
    assert checkpoint.read(out).extra["distributed"] == {"world_size": 1, "sync_bn": sync_bn}
