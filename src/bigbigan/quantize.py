"""How int8 is built on this machine: the quantisation format per CPU, which layers are quantised.

ONNX Runtime (docs/performance.md, "int8 on AVX2"): its x86 U8S8 kernels multiply uint8
activations by int8 weights with VPMADDUBSW unless the CPU has VNNI; that instruction adds pairs
of products into 16 bits and saturates, which on an AVX2-only AMD EPYC cost the tiny test model a
mean 2.1e-2 at batch 1 (bound 2e-2) and the shipped model 3.8e-2. With 7-bit weights
(`reduce_range`) a pair sum fits in 16 bits (2 x 255 x 63 < 32767): mean 4.3e-3 / 1.3e-2. With
VNNI (VPDPBUSD adds into 32 bits) the full 8-bit range is kept.

Only the convolutions are quantised: they hold nearly all the multiply-adds, while the dense
layers (the first dense, the class-conditional batch-norm gains) and the attention matmuls are
small and cost accuracy out of proportion (shipped model, AVX2: every op type mean 1.3e-2,
convolutions only 8.2e-3). Of the convolutions, the int8 error is spread over all of them
(shipped model: keeping any one in fp32 saves at most 1e-3 of 8.2e-3), so `plan_int8` measures
it, for ONNX Runtime (`plan_ort_int8`) and AOTInductor (bigbigan.pt2e) alike: the calibration
that costs least, then each convolution's sensitivity (the mean error with that one kept in
fp32), then keeps convolutions in fp32, most accuracy per multiply-add first, until the artefact
meets its bound with a margin on inputs of its own.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.cpu import has_vnni, isa_class, relevant_flags

ORT_QUANTISED_OPS = ("Conv",)
# Calibrations tried, in order (ties keep the earlier): min/max, and the 99.99th percentile of
# |activation|, which clips the rare far values (shipped model, AVX2: 8.2e-3 vs 6.8e-3; the
# 99.9th clipped too much, 9.1e-3; entropy equalled min/max and took twice as long).
CALIBRATIONS: dict[str, dict[str, Any]] = {
    "minmax": {"method": "MinMax", "extra_options": {}},
    "percentile-99.99": {"method": "Percentile", "extra_options": {"CalibPercentile": 99.99}},
}
SELECTION_MARGIN = 0.8  # layers are kept in fp32 until the probe's mean is under 0.8 x bound
PROBE_SEED = 4321  # sensitivity inputs: neither the calibration's nor the validation's seeds
PROBE_BATCH = 64


@dataclass(frozen=True)
class OrtInt8Format:
    """ONNX Runtime's static quantisation settings for one CPU."""

    name: str  # "U8S8" or "U8S8 reduce_range"
    activation_type: str  # onnxruntime.quantization.QuantType member name
    weight_type: str
    reduce_range: bool
    reason: str

    def quant_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `onnxruntime.quantization.quantize_static`."""
        from onnxruntime.quantization import QuantType

        return {
            "activation_type": getattr(QuantType, self.activation_type),
            "weight_type": getattr(QuantType, self.weight_type),
            "reduce_range": self.reduce_range,
        }


def ort_int8_format(flags: list[str] | frozenset[str] | None = None) -> OrtInt8Format:
    """The format for a CPU with `flags` (default: this one): full-range U8S8 with VNNI, else
    U8S8 with 7-bit weights so that VPMADDUBSW cannot saturate."""
    if has_vnni(flags):
        return OrtInt8Format("U8S8", "QUInt8", "QInt8", False, "VNNI: 32-bit int8 dot products")
    return OrtInt8Format(
        "U8S8 reduce_range",
        "QUInt8",
        "QInt8",
        True,
        "no VNNI: 7-bit weights keep VPMADDUBSW's 16-bit pair sums from saturating",
    )


def cpu_record(flags: list[str] | frozenset[str] | None = None) -> dict[str, Any]:
    """The CPU features a quantised artefact was made for, for its sidecar."""
    return {"isa_class": isa_class(flags), "flags": relevant_flags(flags)}


@dataclass
class Int8Plan:
    """What `plan_int8` chose and measured: the sidecar's `quantisation` record."""

    format: dict[str, Any]  # how values are quantised on this CPU
    op_types: list[str]  # the op types quantised at all
    calibration: str  # the chosen calibration's name
    target_mean: float  # the probe's mean abs diff the selection aimed under
    calibration_means: dict[str, float] = field(default_factory=dict)  # all layers int8
    sensitivity: dict[str, float] = field(default_factory=dict)  # layer -> mean, it alone fp32
    kept_fp32: list[str] = field(default_factory=list)  # layers left in fp32, in order
    probe_mean: float | None = None  # the chosen artefact's mean on the probe
    quantised: list[str] = field(default_factory=list)  # the artefact's int8 layers
    seconds: dict[str, float] = field(default_factory=dict)  # where the builder times its steps

    def meta(self, layers: dict[str, str]) -> dict[str, Any]:
        """The sidecar record; `layers` names each node by the module it came from."""
        return {
            "format": self.format,
            "quantised_op_types": self.op_types,
            "calibration": self.calibration,
            "calibration_means": self.calibration_means,
            "kept_fp32": [{"node": n, "layer": layers.get(n, n)} for n in self.kept_fp32],
            "quantised": len(self.quantised),
            "selection": {
                "probe": {"batch": PROBE_BATCH, "seed": PROBE_SEED},
                "target_mean": self.target_mean,
                "probe_mean": self.probe_mean,
                "sensitivity": self.sensitivity,
                **({"seconds": self.seconds} if self.seconds else {}),
            },
            "cpu": cpu_record(),
        }


def plan_int8(
    measure: Callable[[str, list[str]], float],
    layers: list[str],
    macs: dict[str, int],
    calibrations: list[str],
    plan: Int8Plan,
) -> Int8Plan:
    """Choose the calibration and the layers to keep in fp32 by measurement (ORT and AOTI).

    `measure(calibration, kept_fp32)` is the probe's mean abs diff from fp32 of the int8
    artefact so made; `layers` the quantisable layers in graph order, `macs` their
    multiply-adds. The calibration with the lowest mean wins (ties keep the earlier); then, if
    that is above `plan.target_mean`, each layer's sensitivity (the mean with it alone in fp32),
    and layers are kept in fp32, most saved error per multiply-add first (graph order breaks
    ties), until the mean is <= the target; if that takes all but one, `plan.probe_mean` stays
    above the target (int8 is then not worth building: the caller refuses).
    """
    plan.calibration_means = {name: measure(name, []) for name in calibrations}
    plan.calibration = min(plan.calibration_means, key=plan.calibration_means.__getitem__)
    plan.probe_mean = plan.calibration_means[plan.calibration]
    if plan.probe_mean > plan.target_mean:
        plan.sensitivity = {layer: measure(plan.calibration, [layer]) for layer in layers}
        saved = {n: plan.probe_mean - plan.sensitivity[n] for n in layers}
        order = sorted(layers, key=lambda n: -saved[n] / max(macs.get(n, 1), 1))
        for layer in order[:-1]:
            plan.kept_fp32.append(layer)
            plan.probe_mean = measure(plan.calibration, plan.kept_fp32)
            if plan.probe_mean <= plan.target_mean:
                break
    return plan


def conv_macs(model: Any) -> dict[str, int]:
    """Multiply-adds per sample of every Conv node of an onnx.ModelProto whose output shape
    shape inference knows (weights: out x in/group x kh x kw, times the output's H x W)."""
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.value_info, *model.graph.output]
    }
    macs = {}
    for node in model.graph.node:
        weight, out = inits.get(node.input[1]) if node.op_type == "Conv" else None, None
        if weight is not None:
            out = shapes.get(node.output[0])
        if weight is not None and out and len(out) == 4 and all(out[2:]):
            macs[node.name] = int(np.prod(weight)) * out[2] * out[3]
    return macs


def int8_convs(model: Any) -> list[str]:
    """The Conv nodes of a QDQ onnx.ModelProto whose weight is dequantised int8 (the quantiser
    leaves some convolutions alone, e.g. where it cannot quantise their output)."""
    dequantised = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[1] in dequantised]


def conv_layers(model: Any) -> dict[str, str]:
    """Conv node -> the module its weight came from (`generator.conv_out`), for readers."""
    return {
        n.name: n.input[1].removesuffix(".weight") for n in model.graph.node if n.op_type == "Conv"
    }


def plan_ort_int8(
    quantise: Callable[[str, list[str], Path], None],
    error: Callable[[Path], float],
    model: Any,
    target_mean: float,
    work: Path,
    fmt: OrtInt8Format,
) -> Int8Plan:
    """`plan_int8` for ONNX Runtime: the CALIBRATIONS, the Conv nodes of `model` (the
    pre-processed onnx.ModelProto). `quantise(calibration, kept_fp32, out)` writes an int8 model
    into `work`; `error(path)` is its mean abs diff from fp32 on the probe inputs."""
    candidate = work / "candidate.onnx"

    def measure(calibration: str, kept_fp32: list[str]) -> float:
        quantise(calibration, kept_fp32, candidate)
        try:
            return error(candidate)
        finally:
            candidate.unlink(missing_ok=True)  # a ch=64 model is 8 MB a copy

    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    plan = Int8Plan(asdict(fmt), list(ORT_QUANTISED_OPS), next(iter(CALIBRATIONS)), target_mean)
    return plan_int8(measure, convs, conv_macs(model), list(CALIBRATIONS), plan)


@contextlib.contextmanager
def quiet_quantiser() -> Iterator[None]:
    """ONNX Runtime's quantiser with only its errors: it logs every rank-1 weight it will not
    quantise per channel and prints the percentile calibration's progress."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def feed_reader(feeds: list[dict[str, np.ndarray]]) -> Any:
    """An onnxruntime.quantization.CalibrationDataReader over `feeds`, from the start."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return Reader()


def images_per_second(
    paths: list[Path], feed: dict[str, np.ndarray], repeats: int = 3
) -> list[float]:
    """Images per second of each model file on `feed` in its backend (chosen by file type,
    this machine's default threads), best of `repeats` runs taken in turn so that a busy moment
    hits them alike."""
    from bigbigan.harness.timing import time_in_turn
    from bigbigan.runtimes import open_runner

    runners = [open_runner(path).load() for path in paths]
    try:
        _, seconds = time_in_turn(runners, feed, repeats)
    finally:
        for runner in runners:
            runner.close()
    batch = next(iter(feed.values())).shape[0]
    return [batch / min(seen) for seen in seconds]


def speed_vs_fp32(source: Path, artefact: Path, feed: dict[str, np.ndarray]) -> dict[str, Any]:
    """The sidecar's `speed_vs_fp32`: the int8 `artefact` against its fp32 `source` ONNX in
    ONNX Runtime on `feed`, same process and threads (`images_per_second`)."""
    fp32, int8 = images_per_second([source, artefact], feed)
    return {
        "batch": next(iter(feed.values())).shape[0],
        "fp32_images_per_s": round(fp32, 1),
        "int8_images_per_s": round(int8, 1),
        "faster": int8 > fp32,
        "reference": "the fp32 source ONNX in ONNX Runtime, same threads",
    }


def speed_note(speed: dict[str, Any]) -> str:
    """The compile note's advice where int8 (`speed_vs_fp32`) is not faster than fp32 here."""
    if speed["faster"]:
        return ""
    return (
        f"; not faster than fp32 on this CPU ({isa_class()}: {speed['int8_images_per_s']:.0f} vs "
        f"{speed['fp32_images_per_s']:.0f} images/s at batch {speed['batch']}): prefer fp32 here"
    )
