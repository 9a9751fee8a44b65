"""PyTorch eager: the checkpoint itself, through the offline interface (spectral norm folded),
in fp32 or behind the fp32 interface in bf16/fp16, optionally channels-last or replayed as one
CUDA graph per batch size. The accuracy reference of `bench` and `pipeline`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.interface import TensorSpec, offline_specs
from bigbigan.runtimes.base import Runner, StagedCall, require_cuda
from bigbigan.runtimes.build import CompileJob
from bigbigan.runtimes.registry import BenchRow, BenchSettings, bench_rows, register_runner

ROLES = ("generator", "encoder")
DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}  # precision -> torch dtype


def cast_module(module: Any, dtype: Any) -> Any:
    """`module` with its weights in `dtype` (bf16, fp16) behind the fp32 offline interface:
    float inputs are cast down, labels pass through, the output comes back as float32."""
    import torch

    class Cast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module.to(dtype)

        def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            args = [t.to(dtype) if t.is_floating_point() else t for t in (a, b) if t is not None]
            return self.module(*args).float()

    return Cast().eval()


def staged_torch_call(runner: Runner, fn: Any) -> StagedCall:
    """`Runner.staged_call` for a backend whose loaded model is a torch callable `fn` on
    `runner.device`: copy in, run, copy out, a synchronise before each clock read."""
    import torch

    def sync() -> None:
        if runner.device.startswith("cuda"):
            torch.cuda.synchronize(runner.device)

    def call(feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[float]]:
        sync()
        t0 = time.perf_counter()
        args = [torch.from_numpy(feed[s.name]).to(runner.device) for s in runner.inputs]
        sync()
        t1 = time.perf_counter()
        with torch.inference_mode():
            out = fn(*args)
        sync()
        t2 = time.perf_counter()
        values = list(out) if isinstance(out, list | tuple) else [out]
        host = {s.name: v.cpu().numpy() for s, v in zip(runner.outputs, values, strict=True)}
        sync()
        t3 = time.perf_counter()
        return host, [(t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3]

    return call


def autocast_module(module: Any, dtype: Any) -> Any:
    """`module` run under CPU autocast to `dtype`, output cast back to float32: the quantised
    model's unquantised operations then run in `dtype` too."""
    import torch

    class Autocast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module

        def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            args = [t for t in (a, b) if t is not None]
            with torch.autocast("cpu", dtype=dtype):
                out = self.module(*args)
            return out.float()

    return Autocast()  # no .eval(): an exported (quantised) module refuses mode changes


def _checkpoint_for(job: CompileJob) -> Path:
    """`--checkpoint`, else the checkpoint named in the ONNX's sidecar."""
    if job.checkpoint is not None:
        return job.checkpoint
    recorded = job.source_meta.get("checkpoint")
    if not recorded:
        raise BigBiGANError(
            f"{job.onnx_path}: no sidecar {job.onnx_path.name}.json naming the checkpoint it was "
            "exported from; pass --checkpoint"
        )
    return Path(recorded)


def checked_offline_module(job: CompileJob) -> tuple[Any, Any]:
    """A compile job's checkpoint (`--checkpoint`, else the one the ONNX's sidecar names) as
    its offline module on `job.device`, its interface checked against the ONNX's: (module,
    checkpoint record). The torch-based builders (aoti) start from it."""
    from bigbigan.interface import ENCODER_INPUT
    from bigbigan.model.networks import offline_module
    from bigbigan.training.checkpoint import load_model

    require_cuda(job.device, "an aoti package for cuda")
    ckpt_path = _checkpoint_for(job)
    model, ckpt = load_model(ckpt_path)
    encoder = [spec.name for spec in job.inputs] == [ENCODER_INPUT]
    specs, out_specs = offline_specs(ckpt.model, encoder)

    def rest(items: list[TensorSpec]) -> list[tuple]:
        return [(s.name, s.dtype, s.shape[1:]) for s in items]

    if rest(specs) != rest(job.inputs) or rest(out_specs) != rest(job.outputs):
        raise BigBiGANError(
            f"--checkpoint {ckpt_path}: its {'encoder' if encoder else 'generator'} interface "
            f"{specs} does not match {job.onnx_path} {job.inputs}"
        )
    return offline_module(model, encoder=encoder).eval().to(job.device), ckpt


@register_runner
class TorchRunner(Runner):
    """A checkpoint directory (or its checkpoint.json), run in PyTorch eager mode.

    `encoder=True` (or `role="encoder"`) runs the encoder instead of the generator. `threads`
    sets torch's intra-op thread count, which is process-wide. `precision` "bf16"/"fp16" casts
    the weights (fp32 inputs and images kept); `channels_last` stores them channels-last (the
    faster layout for oneDNN's CPU convolutions); `cuda_graph` captures one CUDA graph per batch
    size and replays it on static input buffers: one launch per batch instead of one per kernel.
    """

    name = "torch"
    suffixes = (".json",)

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        encoder: bool = False,
        role: str | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        super().__init__(path, device=device, threads=threads)
        if role is not None and role not in ROLES:
            raise BigBiGANError(f"--role {role}: expected one of {ROLES}")
        if precision not in DTYPES:
            raise BigBiGANError(f"torch precision {precision!r}: expected one of {tuple(DTYPES)}")
        if cuda_graph and not device.startswith("cuda"):
            raise BigBiGANError(f"--device {device}: CUDA graphs need a CUDA device")
        self.encoder = encoder or role == "encoder"
        self.precision, self.channels_last, self.cuda_graph = precision, channels_last, cuda_graph
        self._module = None
        self._graphs: dict[int, tuple[Any, list[Any], Any]] = {}  # batch -> graph, inputs, output

    @classmethod
    def version(cls) -> str:
        import torch

        return torch.__version__

    @classmethod
    def check_file(cls, path: Path) -> None:
        from bigbigan.training import checkpoint

        checkpoint.read(path)  # one-line errors for a missing or foreign checkpoint.json

    def _load_impl(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        import torch

        from bigbigan.model.networks import offline_module
        from bigbigan.training.checkpoint import load_model

        require_cuda(self.device, "the torch backend")
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        model, ckpt = load_model(self.path)
        module = offline_module(model, encoder=self.encoder).eval().to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if DTYPES[self.precision] is not None:
            module = cast_module(module, getattr(torch, DTYPES[self.precision]))
        self._module = module
        return offline_specs(ckpt.model, self.encoder)

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        if self.cuda_graph:
            return {self.outputs[0].name: self._replay(feed)}
        args = [torch.from_numpy(feed[spec.name]).to(self.device) for spec in self.inputs]
        with torch.inference_mode():
            out = self._module(*args)
        return {self.outputs[0].name: out.cpu().numpy()}

    def _replay(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Copy the feed into this batch size's static buffers and replay its graph."""
        import torch

        n = next(iter(feed.values())).shape[0]
        if n not in self._graphs:
            self._graphs[n] = self._capture(feed)
        graph, static, output = self._graphs[n]
        for buffer, spec in zip(static, self.inputs, strict=True):
            buffer.copy_(torch.from_numpy(feed[spec.name]), non_blocking=False)
        graph.replay()
        return output.cpu().numpy()

    def _capture(self, feed: dict[str, np.ndarray]) -> tuple[Any, list[Any], Any]:
        import torch

        static = [torch.from_numpy(feed[spec.name]).to(self.device) for spec in self.inputs]
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(2):  # warm up cuDNN's algorithm choice outside the graph
                self._module(*static)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            output = self._module(*static)
        return graph, static, output

    def _staged_impl(self) -> StagedCall | None:
        return None if self.cuda_graph else staged_torch_call(self, self._module)

    def _close_impl(self) -> None:
        self._module = None
        self._graphs = {}


@bench_rows("torch")
def _torch_rows(settings: BenchSettings) -> list[BenchRow]:
    """PyTorch eager fp32 (the accuracy reference), channels-last on the CPU, bf16/fp16 eager."""

    def row(precision: str, channels_last: bool = False) -> BenchRow:
        variant = "channels-last" if channels_last else ""
        options = {"precision": precision, "channels_last": channels_last}
        return BenchRow("torch", precision, variant, model="checkpoint", options=options)

    rows = [row("fp32")]
    if not settings.cuda:
        rows.append(row("fp32", channels_last=True))
    if "bf16" in settings.precisions:
        rows.append(row("bf16", channels_last=not settings.cuda))
    if "fp16" in settings.precisions and settings.cuda:
        rows.append(row("fp16"))
    return rows


@bench_rows("cudagraph")
def _cudagraph_rows(settings: BenchSettings) -> list[BenchRow]:
    """PyTorch eager captured into one CUDA graph per batch size (GPU only)."""
    if not settings.cuda:
        return []
    return [
        BenchRow("cudagraph", p, model="checkpoint", options={"precision": p, "cuda_graph": True})
        for p in ("fp32", "bf16", "fp16")
        if p in settings.precisions
    ]
