"""`bigbigan generate`: the training framework's own output, the reference every backend is
compared with (the original's `gpu_out.bin`), from input files or, sharded, for many samples.

Sharded generation (`--count N --shard-out DIR`) writes samples 0..N-1 as shards of
`--shard-size` samples, alone or under torchrun (shards round-robin over the ranks); the files
are byte-identical however many processes wrote them, and a rerun keeps every shard whose
checksums verify.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bigbigan import limits
from bigbigan.binio import save_bin
from bigbigan.documents import sidecar_path, write_document
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir, guard_output, keep, sha256_file
from bigbigan.harness.inputs import model_num_classes, read_inputs
from bigbigan.runtimes import TorchRunner
from bigbigan.training.distributed import Replicas
from bigbigan.training.sampling import truncated_normal


def generate(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    device: str = "cpu",
    encoder: bool = False,
) -> np.ndarray:
    """Run the checkpoint in PyTorch eager on the input files; write NHWC float32 to `out`."""
    from bigbigan.training.checkpoint import files_of

    reads = (*inputs, *map(sidecar_path, inputs), *files_of(checkpoint))
    guard_output(out, "--out", reads=reads)
    guard_output(sidecar_path(out), "--out", reads=reads)
    with TorchRunner(checkpoint, device=device, encoder=encoder) as runner:
        feed = read_inputs(inputs, runner.inputs, model_num_classes(Path(checkpoint)))
        (images,) = runner.infer(feed).values()
    save_bin(out, images)
    return images


# --- sharded generation ----------------------------------------------------------------------

SHARD_SIZE = 1000
MANIFEST_FILE = "manifest.json"
SHARDS_FORMAT = "bigbigan-shards"
SHARD_FORMAT = "bigbigan-shard"  # one shard's record, written after its files
SHARDS_VERSION = 1
NOISE_SCHEME = "sample j: truncated_normal(np.random.default_rng([seed, j]), (z_dim,))"
LABEL_SCHEME = "sample j: j % num_classes"


def sample_noise(seed: int, start: int, stop: int, z_dim: int) -> np.ndarray:
    """Noise of samples `start..stop-1`, float32 `(stop - start, z_dim)`. Sample j's row comes
    from its own generator `default_rng([seed, j])`, so it is the same in any batch or shard."""
    rows = [
        truncated_normal(np.random.default_rng([seed, j]), (z_dim,)) for j in range(start, stop)
    ]
    return np.stack(rows) if rows else np.zeros((0, z_dim), np.float32)


def sample_labels(start: int, stop: int, num_classes: int) -> np.ndarray:
    """Labels of samples `start..stop-1`: `j % num_classes`, int32; every class equally often."""
    return (np.arange(start, stop) % num_classes).astype(np.int32)


@dataclass(frozen=True)
class Shard:
    """Shard `index` holds samples `[start, stop)` in files named with the index."""

    index: int
    start: int
    stop: int
    width: int = 5  # digits in the file names

    def name(self, kind: str) -> str:
        return f"{kind}_{self.index:0{self.width}d}"


def plan_shards(count: int, shard_size: int) -> list[Shard]:
    """Shard i = samples [i * shard_size, min((i + 1) * shard_size, count))."""
    n = -(-count // shard_size)
    width = max(5, len(str(n - 1)))
    return [Shard(i, i * shard_size, min((i + 1) * shard_size, count), width) for i in range(n)]


@dataclass
class ShardReport:
    directory: Path
    shards: int  # in the whole run
    generated: list[int]  # shard indices written by this run (all ranks)
    kept: list[int]  # shard indices found complete and verified, left as they were
    manifest: Path | None  # written by rank 0 only


def generate_shards(
    checkpoint: str | Path,
    out: str | Path,
    count: int,
    *,
    shard_size: int = SHARD_SIZE,
    seed: int = 0,
    batch: int = 256,
    device: str | torch.device = "cpu",
    threads: int = 1,
    replicas: Replicas | None = None,
) -> ShardReport:
    """Generate samples `0..count-1` of a checkpoint's generator as shards in `out`.

    Sample j's noise and label depend only on (seed, j) (`sample_noise`, `sample_labels`), and
    each shard is run in batches of `batch` from its first sample, so the bytes of a shard do not
    depend on which process wrote it. Shards go round-robin to the ranks (shard i to rank
    i % world). Each shard writes `images_XXXXX.bin` (NHWC float32), `labels_XXXXX.bin` (int32,
    conditional models) with their sidecars, then `shard_XXXXX.json` (range and sha256 of each
    file) last, as its commit record. A shard whose record exists and whose files match it is
    kept, anything else is written again. Rank 0 then writes `manifest.json`, the index of all.

    The bytes are the same for any number of processes on one kind of machine as long as the
    device type and the CPU threads per process (`threads`, default 1: use processes for speed)
    are; both are recorded, and a rerun with other settings is refused rather than mixed in.
    """
    from bigbigan.training import checkpoint as ckpt_io

    _check_shard_options(count, shard_size, batch, threads, seed)
    ckpt = ckpt_io.read(checkpoint)
    cfg = ckpt.model
    kind = torch.device(device).type
    params = {
        "checkpoint_sha256": ckpt.files.get(ckpt_io.MODEL_FILE),
        "seed": seed,
        "shard_size": shard_size,
        "batch": batch,
        "z_dim": cfg.z_dim,
        "num_classes": cfg.num_classes,
        "conditional": cfg.conditional,
        "noise": NOISE_SCHEME,
        "labels": LABEL_SCHEME,
        "device": kind,  # results differ in the last bits between device types...
        "threads": threads if kind == "cpu" else None,  # ...and between CPU thread counts
    }
    out = ensure_dir(out, "--shard-out")
    rank, world = (0, 1) if replicas is None else (replicas.rank, replicas.world_size)
    if rank == 0:
        _check_manifest(out / MANIFEST_FILE, params)
    shards = plan_shards(count, shard_size)
    mine = [s for s in shards if s.index % world == rank]
    entries, generated, kept = _run_shards(ckpt.directory, out, mine, params, str(device))
    if replicas is not None:
        parts = replicas.all_gather_object((entries, generated, kept))
        entries = [e for part in parts for e in part[0]]
        generated = sorted(i for part in parts for i in part[1])
        kept = sorted(i for part in parts for i in part[2])
    manifest = None
    if rank == 0:
        manifest = out / MANIFEST_FILE
        body = {
            "count": count,
            **params,
            "image": {"dtype": "float32", "layout": "NHWC"},
            "shards": sorted(entries, key=lambda e: e["index"]),
        }
        write_document(manifest, SHARDS_FORMAT, body, version=SHARDS_VERSION)
    return ShardReport(out, len(shards), generated, kept, manifest)


def _check_shard_options(count: int, shard_size: int, batch: int, threads: int, seed: int) -> None:
    """Refuse sizes that cannot be planned, and a plan too large for this machine's memory."""
    for flag, value, low in (("--count", count, 1), ("--shard-size", shard_size, 1)):
        if value < low:
            raise BigBiGANError(f"{flag} {value}: expected a positive integer")
    if batch < 1 or threads < 1:
        flag, value = ("--batch", batch) if batch < 1 else ("--threads", threads)
        raise BigBiGANError(f"{flag} {value}: expected a positive integer")
    if seed < 0:
        raise BigBiGANError(f"--seed {seed}: sharded generation needs a non-negative seed")
    shards_needed = -(-count // shard_size) * 512  # a plan entry and a manifest line each
    limits.check_memory(shards_needed, f"--count {count} / --shard-size {shard_size}")


def _run_shards(
    checkpoint: Path, out: Path, mine: list[Shard], params: dict, device: str
) -> tuple[list[dict], list[int], list[int]]:
    """This rank's shards: each verified one kept, the others written. Returns their manifest
    entries, and the indices written and kept. The model is loaded only if a shard needs it;
    torch's thread count and cuDNN flags are restored afterwards."""
    entries, generated, kept = [], [], []
    runner = None
    threads_before = torch.get_num_threads()
    cudnn_before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        for shard in mine:
            entry = _verified_entry(out, shard, params)
            if entry is not None:
                kept.append(shard.index)
            else:
                if runner is None:
                    runner = TorchRunner(checkpoint, device=device, threads=params["threads"])
                    runner.load()
                entry = _write_shard(runner, out, shard, params)
                generated.append(shard.index)
            entries.append(entry)
    finally:
        if runner is not None:
            runner.close()
        torch.set_num_threads(threads_before)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_before
    return entries, generated, kept


def _write_shard(runner: TorchRunner, out: Path, shard: Shard, params: dict) -> dict:
    """Run one shard in batches from its first sample; write its files, then its record."""
    parts = []
    for start in range(shard.start, shard.stop, params["batch"]):
        stop = min(start + params["batch"], shard.stop)
        feed = {runner.inputs[0].name: sample_noise(params["seed"], start, stop, params["z_dim"])}
        if params["conditional"]:
            feed[runner.inputs[1].name] = sample_labels(start, stop, params["num_classes"])
        (images,) = runner.infer(feed).values()
        parts.append(images)
    files = {f"{shard.name('images')}.bin": np.concatenate(parts)}
    if params["conditional"]:
        labels = sample_labels(shard.start, shard.stop, params["num_classes"])
        files[f"{shard.name('labels')}.bin"] = labels
    digests = {}
    for name, array in files.items():
        save_bin(out / name, array)
        for written in (name, sidecar_path(name).name):
            digests[written] = sha256_file(out / written)
    entry = {"index": shard.index, "start": shard.start, "stop": shard.stop, "files": digests}
    record = {"params": params, **entry}
    write_document(out / f"{shard.name('shard')}.json", SHARD_FORMAT, record)
    keep(out)  # a complete shard: a rerun after a failure or Ctrl-C keeps it
    return entry


def _verified_entry(out: Path, shard: Shard, params: dict) -> dict | None:
    """The shard's manifest entry if its record exists, covers the same samples, and every file
    it lists is there with its sha256; `None` when it must be (re)generated."""
    path = out / f"{shard.name('shard')}.json"
    if not path.is_file():  # missing, or a FIFO or directory planted there: regenerate
        return None
    try:
        record = json.loads(path.read_text())
        entry = {k: record[k] for k in ("index", "start", "stop", "files")}
        recorded = record["params"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, unreadable or not a record: regenerate
    if recorded != params:
        changed = sorted(k for k in params if recorded.get(k) != params[k])
        raise BigBiGANError(
            f"{path}: written with other settings ({', '.join(changed)}); "
            "use another --shard-out or delete the old shards"
        )
    if (entry["index"], entry["start"], entry["stop"]) != (shard.index, shard.start, shard.stop):
        return None
    if not isinstance(entry["files"], dict) or not entry["files"]:
        return None
    for name, digest in entry["files"].items():
        file = out / name
        if not file.is_file() or sha256_file(file) != digest:
            return None
    return entry


def _check_manifest(path: Path, params: dict) -> None:
    """A manifest from another checkpoint, seed or shard size means another data set: refuse."""
    if not path.is_file():  # none yet (or not a regular file): rewritten at the end
        return
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # rewritten at the end
    if not isinstance(document, dict) or document.get("format") != SHARDS_FORMAT:
        raise BigBiGANError(f"{path}: not a {SHARDS_FORMAT} manifest; use another --shard-out")
    changed = sorted(k for k in params if document.get(k) != params[k])
    if changed:
        raise BigBiGANError(
            f"{path}: shards made with other settings ({', '.join(changed)}); "
            "use another --shard-out or delete the old shards"
        )
