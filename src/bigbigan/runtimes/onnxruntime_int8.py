"""Compile target `ort`, precision int8: static post-training quantisation for ONNX Runtime's
CPU kernels, the format and the layers kept in fp32 chosen per CPU by measurement
(bigbigan.quantize), validated against the fp32 source and timed against it. Registered by
runtimes/onnxruntime.py, which imports this module when an int8 build is asked for.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bigbigan.cpu import isa_class
from bigbigan.documents import sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.interface import quiet_exporter, random_feed, specs_to_json
from bigbigan.quantize import (
    CALIBRATIONS,
    ORT_QUANTISED_OPS,
    PROBE_BATCH,
    PROBE_SEED,
    SELECTION_MARGIN,
    Int8Plan,
    conv_layers,
    feed_reader,
    int8_convs,
    ort_int8_format,
    plan_ort_int8,
    quiet_quantiser,
    speed_note,
    speed_vs_fp32,
)
from bigbigan.runtimes.build import (
    CALIBRATION_SAMPLES,
    REDUCED_VALIDATE_BATCH,
    CompileJob,
    CompileReport,
    accuracy,
    calibration_feeds,
    compiled_meta,
    first_line,
    precision_limits,
    reduced_meta,
    reference,
    staged,
    write_sidecar,
)
from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner, import_onnxruntime


def build_ort_int8(job: CompileJob) -> CompileReport:
    """Static post-training quantisation for ONNX Runtime's CPU kernels: QDQ format, weights int8
    per output channel, activations uint8 (the pairing ORT recommends on x86), 7-bit weights on
    CPUs without VNNI, the convolutions only, calibrated on CALIBRATION_SAMPLES generator inputs
    from the training noise distribution; the calibration and the convolutions kept in fp32 are
    chosen by measurement to meet the int8 mean bound (bigbigan.quantize.plan_ort_int8). The
    int8 model is then timed against the fp32 source: where it is not faster, the note says so.
    """
    ort = import_onnxruntime()
    if job.device != "cpu":
        raise BigBiGANError(f"--device {job.device}: int8 for target ort is CPU-only")
    if job.out.suffix.lower() != ".onnx":
        raise BigBiGANError(f"--out {job.out}: int8 for target ort writes an .onnx file")
    probe = random_feed(job.inputs, PROBE_BATCH, num_classes=job.num_classes, seed=PROBE_SEED)
    with staged(job.out) as path:
        started = time.perf_counter()
        plan, layers = _quantise_ort_int8(job, path, probe)
        seconds = time.perf_counter() - started
        max_abs, mean_abs = accuracy(job, OnnxRuntimeRunner, path, REDUCED_VALIDATE_BATCH)
        speed = speed_vs_fp32(job.onnx_path, path, probe)
        kept = [layers.get(n, n) for n in plan.kept_fp32]
        note = (
            f"ONNX Runtime {ort.__version__} static int8 (QDQ, per-channel, {plan.format['name']}, "
            f"{plan.calibration} calibration on {CALIBRATION_SAMPLES} samples; "
            f"{len(plan.quantised)} convolutions int8, "
            f"{'kept in fp32: ' + ', '.join(kept) if kept else 'none kept in fp32'})"
        )
        note += speed_note(speed)
        report = CompileReport("ort", job.precision, job.out, seconds, None, note, max_abs)
        report.mean_abs_diff = mean_abs
        report.sidecar = sidecar_path(job.out)
        meta = compiled_meta(job, report, file_format="ONNX", **reduced_meta(job, report))
        meta["quantisation"] = plan.meta(layers)
        meta["speed_vs_fp32"] = speed
        meta["inputs"], meta["outputs"] = specs_to_json(job.inputs), specs_to_json(job.outputs)
        write_sidecar(path, meta)
    return report


def _quantise_ort_int8(
    job: CompileJob, path: Path, probe: dict[str, np.ndarray]
) -> tuple[Int8Plan, dict[str, str]]:
    """Quantise the source into `path` (staged; its folder is the scratch space) as
    `plan_ort_int8` chooses, judged on `probe` against the source; returns the plan and the
    model's convolutions by node name (their layer names)."""
    import onnx

    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as err:
        raise BigBiGANError(f"onnxruntime.quantization is unavailable: {err}") from err
    fmt = ort_int8_format()
    feeds = calibration_feeds(job.inputs, job.num_classes)
    expected = reference(job, probe)
    name = job.outputs[0].name
    work = path.parent
    pre = work / "pre.onnx"

    def quantise(calibration: str, kept_fp32: list[str], out: Path) -> None:
        how = CALIBRATIONS[calibration]
        quantize_static(
            str(pre),
            str(out),
            feed_reader(feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            op_types_to_quantize=list(ORT_QUANTISED_OPS),
            nodes_to_exclude=list(kept_fp32),
            calibrate_method=getattr(CalibrationMethod, how["method"]),
            extra_options=dict(how["extra_options"]),
            calibration_cache_path=str(work / f"{calibration}.ranges.json"),
            **fmt.quant_kwargs(),
        )

    def error(candidate: Path) -> float:
        with OnnxRuntimeRunner(candidate) as runner:
            return float(np.abs(runner.infer(probe)[name] - expected).mean())

    try:
        with quiet_exporter(), quiet_quantiser():
            # Fold and clean the graph first (ONNX shape inference; the symbolic pass
            # cannot follow the exporter's batch dim and is not needed here).
            quant_pre_process(str(job.onnx_path), str(pre), skip_symbolic_shape=True)
            model = onnx.load(str(pre))
            target = SELECTION_MARGIN * precision_limits(job)[0]
            plan = plan_ort_int8(quantise, error, model, target, work, fmt)
            if plan.probe_mean > target:
                raise BigBiGANError(
                    f"{job.out}: ort int8 cannot stay within the int8 bounds (mean "
                    f"{target:.3g} with margin) on this {isa_class()} CPU: with all but one "
                    f"convolution in fp32 the mean is {plan.probe_mean:.3g}; nothing written"
                )
            quantise(plan.calibration, plan.kept_fp32, path)
            plan.quantised = int8_convs(onnx.load(str(path)))
    except BigBiGANError:
        raise
    except Exception as err:  # the quantiser raises many types
        msg = f"{job.out}: ONNX Runtime quantisation failed: {first_line(err)}"
        raise BigBiGANError(msg) from err
    return plan, conv_layers(model)
