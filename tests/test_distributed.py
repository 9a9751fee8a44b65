"""torchrun: data-parallel training against one process, rank-0-only outputs, and sharded
generation that is byte-identical however many processes write it.

The slow tests start real torchrun jobs (gloo on CPUs) through `--nproc`; the fast ones check
the pieces in this process.
"""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from bigbigan import generate
from bigbigan.cli.main import main
from bigbigan.config import TrainConfig
from bigbigan.errors import BigBiGANError
from bigbigan.training import checkpoint, distributed, replica_layers
from bigbigan.training import loop as train

TINY = {"dataset": "digits", "batch_size": 16, "seed": 3}
TINY_ARGV = ["--dataset", "digits", "--ch", "8", "--batch-size", "16", "--seed", "3"]
STEPS = 6
LR = TrainConfig().lr
# 2 processes with --sync-bn against 1 process after 6 steps (docs/scaling.md): measured
# 4.3e-5 in G (its near-zero gradients, which Adam scales up to ~lr, feel the reduction order;
# one process with 2 threads instead of 1 differs from itself by 7.8e-5), <= 6e-7 elsewhere.
SYNC_BN_MAX_ABS = LR  # less than one Adam step apart
SYNC_BN_REL = 0.02  # |w2 - w1| / |w1 - w0| per network; measured 0.003


def weights(out):
    return checkpoint.load_tensors(checkpoint.read(out), checkpoint.MODEL_FILE)


def parameter_names():
    model = train.BigBiGAN(train.model_config_for("digits", ch=8))
    return [name for name, _ in model.named_parameters()]


def initial_weights():
    torch.manual_seed(TINY["seed"])
    return train.BigBiGAN(train.model_config_for("digits", ch=8)).state_dict()


def per_network_difference(a, b):
    """{network: (max abs diff, |diff| / |movement from init|)} over the trainable weights."""
    wa, wb, w0 = weights(a), weights(b), initial_weights()
    result = {}
    for net in "GEFHJ":
        keys = [k for k in parameter_names() if k.startswith(f"{net}.")]
        diff = torch.cat([(wb[k].double() - wa[k].double()).flatten() for k in keys])
        moved = torch.cat([(wa[k].double() - w0[k].double()).flatten() for k in keys])
        result[net] = (float(diff.abs().max()), float(diff.norm() / moved.norm()))
    return result


def log_rows(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.fixture
def same_threads(monkeypatch):
    """Workers use this process's thread count, so one worker computes exactly as we do."""
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))


def torchrun_train(out, nproc, *flags, steps=STEPS):
    argv = ["train", *TINY_ARGV, "--steps", str(steps), "--out", str(out), "--nproc", str(nproc)]
    assert main([*argv, *flags]) == 0
    return out


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    cfg = TrainConfig(**TINY, steps=STEPS)
    out = tmp_path_factory.mktemp("single")
    return train.train(cfg, train.model_config_for("digits", ch=8), out, progress=False)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    return torchrun_train(tmp_path_factory.mktemp("two") / "run", 2)


# --- training under torchrun (slow: real torchrun jobs) ---------------------------------------


def same_file(run_a, run_b, name):
    """The two runs' current checkpoints hold the same bytes in file `name`; when they do not,
    the tensors that differ, and by how much, as the assertion's message."""
    a, b = checkpoint.read(run_a), checkpoint.read(run_b)
    if (a.directory / name).read_bytes() == (b.directory / name).read_bytes():
        return True
    ta, tb = checkpoint.load_tensors(a, name), checkpoint.load_tensors(b, name)
    differ = {
        key: float((ta[key].double() - tb[key].double()).abs().max())
        for key in sorted(set(ta) & set(tb))
        if not torch.equal(ta[key], tb[key])
    }
    first, only = dict(list(differ.items())[:8]), set(ta) ^ set(tb)
    pytest.fail(f"{name}: {len(differ)} tensors differ, e.g. {first}; in one only: {only}")


@pytest.mark.slow
def test_one_process_under_torchrun_is_bit_identical_to_plain_training(
    tmp_path, single, same_threads
):
    out = torchrun_train(tmp_path / "r", 1)
    for name in (checkpoint.MODEL_FILE, checkpoint.STATE_FILE):
        assert same_file(out, single, name), name
    assert log_rows(out) == log_rows(single)
    extra = checkpoint.read(out).extra
    assert extra["distributed"] == {"world_size": 1, "sync_bn": False}
    assert "distributed" not in checkpoint.read(single).extra  # single-process JSON unchanged


@pytest.mark.slow
def test_two_processes_with_sync_bn_match_one_process(tmp_path, single):
    out = torchrun_train(tmp_path / "r", 2, "--sync-bn")
    for net, (max_abs, relative) in per_network_difference(single, out).items():
        assert max_abs <= SYNC_BN_MAX_ABS, (net, max_abs)
        assert relative <= SYNC_BN_REL, (net, relative)
    for a, b in zip(log_rows(single), log_rows(out), strict=True):
        assert a["step"] == b["step"]
        assert b["loss_d"] == pytest.approx(a["loss_d"], rel=1e-4)
    assert checkpoint.read(out).extra["distributed"] == {"world_size": 2, "sync_bn": True}


@pytest.mark.slow
def test_two_processes_per_rank_batch_norm_stay_close_to_one_process(single, two_processes):
    # Per-rank statistics (8 samples, not 16) change G's function, so G and E move apart by
    # about as much as they moved (measured |diff|/|movement|: G 0.78, E 0.17); the
    # discriminators, which have no batch norm, only through their inputs (F, H, J <= 0.08).
    difference = per_network_difference(single, two_processes)
    for net, (_, relative) in difference.items():
        assert relative <= (1.5 if net in "GE" else 0.25), (net, relative)


@pytest.mark.slow
def test_only_rank_zero_writes(two_processes):
    files = sorted(p.name for p in two_processes.iterdir())
    assert files == ["checkpoint.json", "checkpoints", "log.jsonl", "losses.png", "samples.png"]
    assert [r["step"] for r in log_rows(two_processes)] == list(range(1, STEPS + 1))
    assert checkpoint.read(two_processes).step == STEPS


@pytest.mark.slow
def test_two_process_run_prints_once_and_resumes_exactly(tmp_path, two_processes, capfd):
    out = torchrun_train(tmp_path / "r", 2, steps=3)
    assert capfd.readouterr().out.count("trained to step 3") == 1  # rank 0 only
    torchrun_train(out, 2, "--resume")
    for name in (checkpoint.MODEL_FILE, checkpoint.STATE_FILE):
        assert same_file(out, two_processes, name), name
    assert [r["step"] for r in log_rows(out)] == list(range(1, STEPS + 1))


# --- sharded generation --------------------------------------------------------------------

SHARDS = {"count": 37, "shard_size": 10, "batch": 4, "seed": 5}


@pytest.fixture(scope="module")
def shards_one_process(single, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "one"
    report = generate.generate_shards(single, out, **SHARDS)
    assert report.generated == [0, 1, 2, 3] and report.kept == []
    return out


def tree(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.slow
def test_two_process_sharded_generation_is_byte_identical(tmp_path, single, shards_one_process):
    out = tmp_path / "two"
    argv = ["generate", "--checkpoint", str(single), "--shard-out", str(out)]
    argv += ["--count", "37", "--shard-size", "10", "--batch", "4", "--seed", "5", "--nproc", "2"]
    assert main(argv) == 0
    assert tree(out) == tree(shards_one_process)


def test_shard_files_and_manifest(shards_one_process, single):
    names = set(tree(shards_one_process))
    for i in range(4):
        assert {f"images_0000{i}.bin", f"labels_0000{i}.bin", f"shard_0000{i}.json"} <= names
    manifest = json.loads((shards_one_process / "manifest.json").read_text())
    assert (manifest["count"], manifest["seed"], manifest["shard_size"]) == (37, 5, 10)
    assert manifest["checkpoint_sha256"] == checkpoint.read(single).files["model.safetensors"]
    ranges = [(s["index"], s["start"], s["stop"]) for s in manifest["shards"]]
    assert ranges == [(0, 0, 10), (1, 10, 20), (2, 20, 30), (3, 30, 37)]
    images = [np.fromfile(shards_one_process / f"images_0000{i}.bin", np.float32) for i in range(4)]
    assert sum(a.size for a in images) == 37 * 32 * 32 * 1
    labels = np.fromfile(shards_one_process / "labels_00003.bin", np.int32)
    assert labels.tolist() == [j % 10 for j in range(30, 37)]


def test_shards_equal_the_reference_generate_on_the_same_inputs(
    tmp_path, single, shards_one_process
):
    """A shard is `bigbigan generate` run on that shard's noise and labels."""
    from bigbigan.binio import load_bin, save_bin

    save_bin(tmp_path / "x1.bin", generate.sample_noise(5, 10, 20, 100))
    save_bin(tmp_path / "x2.bin", generate.sample_labels(10, 20, 10))
    images = generate.generate(single, [tmp_path / "x1.bin", tmp_path / "x2.bin"], tmp_path / "o")
    np.testing.assert_allclose(images, load_bin(shards_one_process / "images_00001.bin"), atol=1e-6)


def test_rerun_keeps_verified_shards_and_repairs_the_rest(tmp_path, single, shards_one_process):
    out = tmp_path / "copy"
    shutil.copytree(shards_one_process, out)
    report = generate.generate_shards(single, out, **SHARDS)
    assert report.generated == [] and report.kept == [0, 1, 2, 3]
    data = bytearray((out / "images_00001.bin").read_bytes())
    data[100] ^= 0xFF
    (out / "images_00001.bin").write_bytes(bytes(data))  # corrupted
    (out / "labels_00003.bin").unlink()  # missing
    (out / "shard_00002.json").write_text("{")  # unreadable record
    report = generate.generate_shards(single, out, **SHARDS)
    assert report.generated == [1, 2, 3] and report.kept == [0]
    assert tree(out) == tree(shards_one_process)


def test_rerun_with_other_settings_is_refused(tmp_path, single, shards_one_process):
    out = tmp_path / "copy"
    shutil.copytree(shards_one_process, out)
    with pytest.raises(BigBiGANError, match="other settings.*seed"):
        generate.generate_shards(single, out, **{**SHARDS, "seed": 6})
    (out / "manifest.json").unlink()
    with pytest.raises(BigBiGANError, match="shard_00000.json.*shard_size"):
        generate.generate_shards(single, out, **{**SHARDS, "shard_size": 12})


def test_a_larger_count_extends_the_set(tmp_path, single, shards_one_process):
    out = tmp_path / "copy"
    shutil.copytree(shards_one_process, out)
    report = generate.generate_shards(single, out, **{**SHARDS, "count": 45})
    assert report.kept == [0, 1, 2] and report.generated == [3, 4]  # shard 3 grew to 10


def test_noise_of_a_sample_depends_only_on_seed_and_index():
    whole = generate.sample_noise(7, 0, 12, 100)
    parts = [generate.sample_noise(7, a, b, 100) for a, b in ((0, 5), (5, 6), (6, 12))]
    assert np.array_equal(whole, np.concatenate(parts))
    assert np.abs(whole).max() <= 2.0 and whole.dtype == np.float32
    assert not np.array_equal(whole, generate.sample_noise(8, 0, 12, 100))


def test_plan_shards_covers_every_sample_once():
    shards = generate.plan_shards(25, 10)
    assert [(s.start, s.stop) for s in shards] == [(0, 10), (10, 20), (20, 25)]
    assert shards[2].name("images") == "images_00002"
    assert generate.plan_shards(10**6, 1)[-1].name("shard") == "shard_999999"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--count", "5"], "--count and --shard-out go together"),
        (["--count", "5", "--shard-out", "d", "--encoder"], "drop --input, --out, --encoder"),
        (["--input", "a.bin", "--nproc", "2"], "--nproc: only with --count"),
        ([], "--input and --out are required"),
    ],
)
def test_generate_cli_flag_errors(argv, message, capsys):
    assert main(["generate", "--checkpoint", "c", *argv]) == 1
    assert message in capsys.readouterr().err


# --- the pieces, in this process -------------------------------------------------------------


def replicas(rank, world):
    return distributed.Replicas(rank, rank, world, torch.device("cpu"), "gloo")


def test_global_batch_must_split_evenly():
    assert replicas(0, 4).local_batch(16) == 4
    with pytest.raises(BigBiGANError, match="--batch-size 15: must be a multiple"):
        replicas(0, 2).local_batch(15)


def test_shards_of_a_batch_are_contiguous_and_cover_it():
    rows = np.arange(12)
    parts = [replicas(r, 3).shard(rows) for r in range(3)]
    assert np.array_equal(np.concatenate(parts), rows)


def test_sharded_dropout_masks_are_the_single_process_masks():
    """Ranks' [real; fake] rows, put back together, get exactly one process's dropout."""
    b, world = 3, 2
    x = torch.randn(2 * b * world, 5)  # global [real (6); fake (6)]
    torch.manual_seed(0)
    expected = nn.Dropout(0.2).train()(x)
    got = torch.empty_like(x)
    for rank in range(world):
        torch.manual_seed(0)  # every rank's torch generator is in the same state
        layer = replica_layers.ShardedDropout(0.2, rank=rank, world_size=world, local_batch=b)
        rows = [slice(rank * b, (rank + 1) * b), slice(6 + rank * b, 6 + (rank + 1) * b)]
        out = layer.train()(torch.cat([x[rows[0]], x[rows[1]]]))
        got[rows[0]], got[rows[1]] = out[:b], out[b:]
    assert torch.equal(got, expected)
    assert torch.equal(layer.eval()(x[:6]), x[:6])


def test_layer_swaps_keep_the_checkpoint_keys():
    model = train.BigBiGAN(train.model_config_for("digits", ch=8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = [id(p) for p in model.parameters()]
    replica_layers.shard_dropout(model, rank=0, world_size=2, local_batch=8)
    replica_layers.convert_sync_batchnorm(model)
    assert not any(type(m) in (nn.Dropout, nn.BatchNorm2d) for m in model.modules())
    assert [id(p) for p in model.parameters()] == params  # optimizers keep working
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


@pytest.fixture
def gloo_world_of_one(tmp_path):
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1
    )
    yield replicas(0, 1)
    dist.destroy_process_group()


def test_cpu_sync_batchnorm_computes_batch_norm(gloo_world_of_one, monkeypatch):
    """Forced onto its all-reduce path (a world of one sums nothing), it is BatchNorm2d."""
    torch.manual_seed(0)
    x = (torch.randn(6, 4, 5, 5) * 3 + 1).requires_grad_()
    weight = torch.randn(6, 4, 5, 5)
    plain = nn.BatchNorm2d(4, eps=1e-3, momentum=0.01)
    synced = replica_layers.CPUSyncBatchNorm(4, eps=1e-3, momentum=0.01)
    monkeypatch.setattr(replica_layers.dist, "get_world_size", lambda *a: 2)
    outputs, grads = [], []
    for layer in (plain, synced):
        y = layer.train()(x)
        outputs.append(y)
        grads.append(torch.autograd.grad((y * weight).sum(), x)[0])
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=0)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(synced.state_dict()[key], plain.state_dict()[key])


def test_replica_helpers_in_a_world_of_one(gloo_world_of_one):
    model = nn.Linear(3, 2)
    model(torch.randn(4, 3)).sum().backward()
    grad = model.weight.grad.clone()
    gloo_world_of_one.average_gradients(model.parameters())
    assert torch.equal(model.weight.grad, grad)
    losses, stop = gloo_world_of_one.reduce_step({"a": 1.5, "b": -2.0}, True)
    assert losses == {"a": 1.5, "b": -2.0} and stop
    gloo_world_of_one.check_identical(model)


def test_forwarded_argv_rebuilds_the_command_line():
    from bigbigan.cli.main import build_parser

    argv = ["train", "--out", "r", "--steps", "6", "--sync-bn", "--nproc", "2", "--lr", "0.001"]
    args = build_parser().parse_args(argv)
    forwarded = distributed.forwarded_argv("train", vars(args))
    assert "--nproc" not in forwarded and "--resume" not in forwarded
    again = build_parser().parse_args(forwarded)
    assert {**vars(again), "nproc": 2} == vars(args)


def test_nproc_inside_torchrun_is_an_error(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(BigBiGANError, match="already runs under torchrun"):
        distributed.relaunch(2, ["train"])


@pytest.mark.parametrize(
    ("device", "message"),
    [("cuda:1", "every rank uses cuda:LOCAL_RANK"), ("nope", "not a device name")],
)
def test_rank_device_errors(device, message):
    with pytest.raises(BigBiGANError, match=message):
        distributed.rank_device(device, 0)


def test_no_torchrun_no_process_group(monkeypatch):
    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    with distributed.process_group("cpu") as group:
        assert group is None
    assert os.environ.get("WORLD_SIZE") is None
