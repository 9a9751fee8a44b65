"""Several processes, one model: data-parallel training and sharded work under `torchrun`.

`torchrun` starts one process per device and tells each its place in `RANK`, `LOCAL_RANK` and
`WORLD_SIZE`; `process_group` turns that into a `torch.distributed` process group (NCCL for CUDA
devices, gloo for CPUs) and a `Replicas` handle. Without those variables it yields `None` and the
caller runs the ordinary single-process code, untouched.

Training is DistributedDataParallel's scheme, written out because the generator/encoder update
takes its gradients with `torch.autograd.grad` (one graph, two losses), which DDP's backward
hooks never see: every rank holds the whole model, computes gradients on its slice of each global
batch, and `average_gradients` all-reduces them (sum / world) before every optimizer step, so the
optimizers see the gradient of the global batch's mean loss and the replicas never drift apart.

- Data: every rank shuffles the epoch identically and takes rows `[rank*b, (rank+1)*b)` of each
  global batch (`b` = global batch / world), so the union of the ranks' batches is exactly the
  single-process batch.
- Noise: every rank draws the global batch's noise from the same NumPy generator and keeps its
  rows; the generator's state is the single-process one, and any rank's checkpoint resumes it.
- Dropout: `ShardedDropout` draws the global batch's mask from the shared torch generator and
  applies this rank's rows: the masks are the single-process ones, not one mask per rank.
- Batch norm: by default each rank normalises with its own `b` samples (DDP's default, no
  communication in the forward); the running statistics are averaged over the ranks after every
  step, so the running mean is the moving average of the global batch means. `--sync-bn` uses
  statistics over the whole global batch instead: `torch.nn.SyncBatchNorm` on CUDA, and on CPUs
  (where PyTorch's needs a GPU) `CPUSyncBatchNorm`, an all-reduce of per-channel sums.
  Both layers live in replica_layers.py; `Replicas.prepare` swaps them in.
- Spectral norm: the power-iteration vectors `_u`, `_v` depend only on the (identical) weights;
  they are broadcast from rank 0 after every step anyway, with every other non-BN buffer.
- Outputs: only rank 0 writes; `check_identical` compares fingerprints of every rank's weights
  before each checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from bigbigan.errors import BigBiGANError
from bigbigan.training.replica_layers import (
    CPUSyncBatchNorm,
    convert_sync_batchnorm,
    shard_dropout,
)

ENV_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE")

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun (or anything that sets its variables)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE"))


def rank_device(device: str, local_rank: int) -> torch.device:
    """`--device` under torchrun: `cpu` stays `cpu`; `cuda` becomes `cuda:LOCAL_RANK`."""
    try:
        requested = torch.device(device)
    except RuntimeError as err:
        raise BigBiGANError(f"--device {device}: not a device name (cpu, cuda)") from err
    if requested.type == "cpu":
        return requested
    if requested.type != "cuda":
        raise BigBiGANError(f"--device {device}: torchrun runs support cpu (gloo) and cuda (nccl)")
    if requested.index is not None:
        raise BigBiGANError(
            f"--device {device}: under torchrun every rank uses cuda:LOCAL_RANK; pass --device cuda"
        )
    if not torch.cuda.is_available():
        raise BigBiGANError("--device cuda: CUDA is not available on this machine")
    if local_rank >= torch.cuda.device_count():
        raise BigBiGANError(
            f"LOCAL_RANK {local_rank}: this node has {torch.cuda.device_count()} GPU(s); "
            "start at most that many processes per node"
        )
    return torch.device("cuda", local_rank)


@dataclass(frozen=True)
class Replicas:
    """This process's place among the ranks of an initialised default process group."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device  # this rank's device: cpu, or cuda:LOCAL_RANK
    backend: str  # "gloo" or "nccl"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs, grids and manifests."""
        return self.rank == 0

    # --- data ----------------------------------------------------------------------------------

    def local_batch(self, global_batch: int) -> int:
        """Rows of each global batch this rank trains on; the global batch must split evenly."""
        if global_batch % self.world_size:
            raise BigBiGANError(
                f"--batch-size {global_batch}: must be a multiple of the number of processes "
                f"({self.world_size}); each process trains on batch-size / processes samples"
            )
        return global_batch // self.world_size

    def shard(self, rows: T) -> T:
        """This rank's contiguous share of the rows of a global batch (array or tensor)."""
        n = len(rows)  # type: ignore[arg-type]
        assert n % self.world_size == 0, (n, self.world_size)
        b = n // self.world_size
        return rows[self.rank * b : (self.rank + 1) * b]  # type: ignore[index]

    # --- model state ---------------------------------------------------------------------------

    def prepare(self, model: nn.Module, *, local_batch: int, sync_bn: bool = False) -> None:
        """Make `model` a replica: sharded dropout masks, optionally synchronised batch norm,
        and every parameter and buffer equal to rank 0's (as DDP's constructor does)."""
        shard_dropout(model, rank=self.rank, world_size=self.world_size, local_batch=local_batch)
        if sync_bn:
            convert_sync_batchnorm(model)
        self.broadcast_state(model)

    def broadcast_state(self, model: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        with torch.no_grad():
            _coalesced([*model.parameters(), *model.buffers()], lambda t: dist.broadcast(t, src=0))

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """`p.grad = sum over ranks of p.grad / world`; a `None` gradient stays `None` (the
        optimizer then skips that parameter, as in one process)."""
        grads = [p.grad for p in params if p.grad is not None]

        def average(flat: torch.Tensor) -> None:
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat.div_(self.world_size)

        _coalesced(grads, average)

    def sync_buffers(self, model: nn.Module) -> None:
        """After a step: per-rank batch-norm running statistics are averaged; every other
        buffer (spectral norm's `_u`/`_v`, step counters, synchronised BN's statistics, which
        are already equal) is broadcast from rank 0."""
        averaged, broadcast = [], []
        for module in model.modules():
            per_rank = isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
                module, (nn.SyncBatchNorm, CPUSyncBatchNorm)
            )
            for name, buffer in module.named_buffers(recurse=False):
                stat = per_rank and name in ("running_mean", "running_var")
                (averaged if stat else broadcast).append(buffer)

        def average(flat: torch.Tensor) -> None:
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat.div_(self.world_size)

        with torch.no_grad():
            _coalesced(averaged, average)
            _coalesced(broadcast, lambda t: dist.broadcast(t, src=0))

    def check_identical(self, model: nn.Module) -> None:
        """Raise on every rank if any rank's parameters or buffers differ from rank 0's."""
        digest = hashlib.sha256()
        for tensor in [*model.parameters(), *model.buffers()]:
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digests = self.all_gather_object(digest.hexdigest())
        if len(set(digests)) != 1:
            differ = [r for r, d in enumerate(digests) if d != digests[0]]
            raise BigBiGANError(f"replicas diverged: ranks {differ} hold other weights than rank 0")

    # --- small collectives ---------------------------------------------------------------------

    def reduce_step(self, losses: dict[str, float], stop: bool) -> tuple[dict[str, float], bool]:
        """Mean of each loss over the ranks (the global batch's mean), and whether any rank was
        asked to stop: one all-reduce, so every rank takes the same decisions."""
        values = torch.tensor([*losses.values(), float(stop)], dtype=torch.float64)
        values = values.to(self.device)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values = values.cpu()
        means = {k: float(v) / self.world_size for k, v in zip(losses, values, strict=False)}
        return means, bool(values[-1] > 0)

    def all_gather_object(self, obj: T) -> list[T]:
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        dist.barrier()


def _coalesced(tensors: Sequence[torch.Tensor], collective: Callable[[torch.Tensor], None]) -> None:
    """Run `collective` in place on the tensors flattened into one buffer per dtype and device
    (one message instead of hundreds of tiny ones), then copy the results back."""
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    for members in groups.values():
        flat = torch.cat([t.detach().reshape(-1) for t in members])
        collective(flat)
        for tensor, part in zip(members, flat.split([t.numel() for t in members]), strict=True):
            tensor.detach().copy_(part.view_as(tensor))


# --- process group ---------------------------------------------------------------------------


@contextlib.contextmanager
def process_group(device: str = "cpu", backend: str | None = None) -> Iterator[Replicas | None]:
    """Under torchrun: join the default process group and yield this rank's `Replicas` (device
    `cuda:LOCAL_RANK` for `cuda`); otherwise yield `None`. `backend` defaults to NCCL for CUDA
    and gloo for CPUs. On a clean exit every rank waits for the others before leaving."""
    if not launched_by_torchrun():
        yield None
        return
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    placed = rank_device(device, local_rank)
    backend = backend or ("nccl" if placed.type == "cuda" else "gloo")
    if backend == "nccl" and placed.type != "cuda":
        raise BigBiGANError(f"--device {device}: the NCCL backend needs --device cuda")
    owned = not dist.is_initialized()
    if owned:
        if placed.type == "cuda":
            torch.cuda.set_device(placed)
        device_id = placed if backend == "nccl" else None
        dist.init_process_group(backend, rank=rank, world_size=world, device_id=device_id)
    replicas = Replicas(rank, local_rank, dist.get_world_size(), placed, dist.get_backend())
    try:
        yield replicas
        dist.barrier()
    finally:
        if owned:
            dist.destroy_process_group()


def relaunch(nproc: int, argv: Sequence[str]) -> int:
    """`bigbigan ... --nproc K`: run `torchrun --standalone --nproc-per-node K -m bigbigan argv`
    on this node and return its exit status. CPU threads are split between the processes unless
    OMP_NUM_THREADS is set. Ctrl-C reaches the workers too; this waits for them to stop."""
    if launched_by_torchrun():
        raise BigBiGANError("--nproc: this process already runs under torchrun; drop --nproc")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    command = [sys.executable, "-m", "bigbigan.training.distributed", "--standalone"]
    command += [f"--nproc-per-node={nproc}", "-m", "bigbigan", *argv]
    process = subprocess.Popen(command, env=env)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            continue  # torchrun got the same Ctrl-C and is stopping the workers


def forwarded_argv(
    command: str, options: dict[str, Any], drop: Sequence[str] = ("nproc",)
) -> list[str]:
    """Rebuild a subcommand's command line from its parsed options (`vars(args)`) for the
    workers `relaunch` starts: `--flag value` per set option, `--flag` for a true switch."""
    argv = [command]
    for dest, value in options.items():
        if dest in drop or dest == "command" or value is None or value is False:
            continue
        if not isinstance(value, (str, int, float)):
            continue  # the handler function argparse stores, and the like
        flag = "--" + dest.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[Callable[[], bool]]:
    """While inside, SIGINT and SIGTERM (what torchrun forwards) only set a flag; the returned
    function says whether one arrived. Ranks then stop together at a step boundary instead of
    each in the middle of a collective."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False  # only the main thread may set handlers; signals arrive there anyway
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(received)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _torchrun(argv: Sequence[str]) -> int:
    """torchrun, with a worker's failure or a Ctrl-C reported as an exit status instead of a
    traceback (the workers have already printed their one-line messages)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main

    try:
        main(list(argv))
    except ChildFailedError:
        return 1
    except SignalException as e:  # Ctrl-C: the workers saved what they had and said so
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(_torchrun(sys.argv[1:]))
