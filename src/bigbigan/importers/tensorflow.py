"""`bigbigan import bigbigan.pb --out G.onnx`: a frozen TensorFlow graph as a validated ONNX.

The steps, each in its own module:
1. read the frozen graph, give it the offline interface (inputs `x1`, `x2`, output `images`,
   as `bigbigan export` names them) and run it in TensorFlow on seeded inputs
   (bigbigan.importers.frozen_graph);
2. convert it with tf2onnx, its baked batch made dynamic where provable (else kept, saying why),
   and run the ONNX in ONNX Runtime against TensorFlow's output at the baked batch and (dynamic)
   at 16 and 1 too (bigbigan.importers.conversion, bigbigan.importers.graph_rewrite);
3. optionally recover a project checkpoint of G (bigbigan.importers.checkpoint_recovery).
Only an import within tolerance is renamed into place, with its sidecar `G.onnx.json` recording
the source's sha256, the converter versions, the rewrites and the differences. See
docs/import.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import atomic_path, sha256_file
from bigbigan.importers import IMPORT_FORMAT
from bigbigan.importers.conversion import BATCH_MODES, Conversion, convert_graph
from bigbigan.importers.frozen_graph import FrozenGraph, import_tensorflow, load_frozen_graph
from bigbigan.interface import TensorSpec

DEFAULT_TOLERANCE = 1e-4  # max abs difference, TensorFlow vs ONNX Runtime (images in [0, 1])


@dataclass
class ImportReport:
    path: Path
    source: Path
    dynamic: bool
    rewrites: list[dict[str, Any]]
    batch_note: str  # why the batch stayed static, or what made it dynamic
    validation: list[dict[str, Any]]  # per batch: max/mean abs diff
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    seconds: float = 0.0
    checkpoint: Any = None  # a checkpoint_recovery.RecoveryReport, with checkpoint_out

    @property
    def max_abs_diff(self) -> float:
        return max(v["max_abs_diff"] for v in self.validation)

    def one_line(self) -> str:
        batches = ",".join(str(v["batch"]) for v in self.validation)
        return (
            f"imported {self.source} -> {self.path}: batch "
            f"{'dynamic' if self.dynamic else 'static'} ({self.batch_note}); TensorFlow vs ONNX "
            f"Runtime max abs diff {self.max_abs_diff:.3g} at batch {batches}"
        )


def import_pb(
    pb: str | Path,
    out: str | Path,
    *,
    batch_mode: str = "auto",
    opset: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    checkpoint_out: str | Path | None = None,
    checkpoint_optional: bool = False,
) -> ImportReport:
    """Import the frozen graph `pb` into `out` (.onnx) with its sidecar; see the module doc.

    `batch_mode`: "auto" makes a baked batch dynamic where provable and else keeps it (saying
    why), "dynamic" refuses when it cannot, "static" keeps it. `opset`: tf2onnx's default when
    None. Validation inputs are seeded (`seed`); a max abs difference above `tolerance`
    writes nothing. `checkpoint_out`: also recover a project checkpoint of G there
    (bigbigan.importers.checkpoint_recovery), verified against the graph; the ONNX's sidecar
    then names it, so `compile --target aoti` and `compare --layerwise` work on the import.
    `checkpoint_optional`: a graph that is not the reference generator is imported without a
    checkpoint (the sidecar says why) instead of refused.
    """
    import onnx

    from bigbigan.interface import onnx_specs

    started = time.perf_counter()
    pb, out = Path(pb), Path(out)
    if batch_mode not in BATCH_MODES:
        raise BigBiGANError(f"--batch-mode {batch_mode}: expected one of {', '.join(BATCH_MODES)}")
    if out.suffix.lower() != ".onnx":
        raise BigBiGANError(f"--out {out}: expected a file name ending in .onnx")
    if not tolerance >= 0:
        raise BigBiGANError(f"--tolerance {tolerance}: expected a non-negative number")
    tf, tf2onnx = import_tensorflow()
    graph = load_frozen_graph(tf, pb, seed)

    with atomic_path(out) as tmp, atomic_path(out.with_name(out.name + ".json")) as tmp_meta:
        conversion = convert_graph(graph, tf2onnx, tmp, batch_mode, opset)
        model = onnx.load(str(tmp))
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise BigBiGANError(f"{out}: the ONNX checker rejects the import: {e}") from e
        worst = conversion.max_abs_diff
        if not worst <= tolerance:
            raise BigBiGANError(
                f"{pb}: the ONNX differs from the frozen graph in TensorFlow by max abs "
                f"{worst:.3g} > --tolerance {tolerance:g}; nothing written"
            )
        source = {"path": str(pb.resolve()), "sha256": sha256_file(pb), "bytes": pb.stat().st_size}
        recovered, no_checkpoint = None, None
        if checkpoint_out is not None:
            recovered, no_checkpoint = _recover(
                graph, checkpoint_out, tolerance, source, optional=checkpoint_optional
            )
        inputs, outputs = onnx_specs(model)
        meta = {
            **_sidecar(graph, source, model, (inputs, outputs), conversion),
            "validation": _validation(conversion, seed, tolerance, graph.classes),
            **_checkpoint_entry(recovered, no_checkpoint),
            **_provenance(tf, tf2onnx, conversion),
        }
        tmp_meta.write_text(json.dumps(meta, indent=2) + "\n")
    return ImportReport(
        path=out,
        source=pb,
        dynamic=conversion.dynamic or graph.baked is None,
        rewrites=conversion.rewrites,
        batch_note=conversion.note,
        validation=conversion.validation,
        inputs=inputs,
        outputs=outputs,
        seconds=time.perf_counter() - started,
        checkpoint=recovered,
    )


def _recover(
    graph: FrozenGraph,
    out: str | Path,
    tolerance: float,
    source: dict[str, Any],
    *,
    optional: bool,
) -> tuple[Any, str | None]:
    """(the RecoveryReport, None), or with `optional` (None, why not) when the graph is not the
    reference generator or its recovery fails in a way nobody foresaw."""
    from bigbigan.importers.checkpoint_recovery import recover_checkpoint
    from bigbigan.importers.generator_layers import NotReference

    try:
        recovered = recover_checkpoint(
            graph.tf,
            graph.graph_def,
            out,
            feed=graph.feed,
            reference=graph.reference,
            tolerance=tolerance,
            source=source,
        )
    except NotReference as e:
        if not optional:
            raise BigBiGANError(f"{graph.path}: no checkpoint recovered: {e}") from e
        return None, f"not recovered: {e}"
    except Exception as e:  # optional: an unforeseen graph must not stop the import
        if not optional:
            raise
        return None, f"not recovered: {type(e).__name__}: {e}"
    return recovered, None


def _sidecar(
    graph: FrozenGraph,
    source: dict[str, Any],
    model: Any,
    specs: tuple[list[TensorSpec], list[TensorSpec]],
    conversion: Conversion,
) -> dict[str, Any]:
    """The import sidecar `G.onnx.json` (docs/import.md) up to its validation: the source, the
    interface and the batch."""
    from bigbigan.interface import specs_to_json

    interface, classes = graph.interface, graph.classes
    return {
        "format": IMPORT_FORMAT,
        "role": "generator" if interface.output[1] == "images" else "model",
        "source": {
            **source,
            "inputs": {name: t for t, name, _ in interface.inputs},
            "output": {interface.output[1]: interface.output[0]},
        },
        "model": {"num_classes": classes} if classes else {},
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "batch": {
            "baked": graph.baked,
            "dynamic": conversion.dynamic or graph.baked is None,
            "mode": conversion.batch_mode,
            "note": conversion.note,
            "rewrites": conversion.rewrites,
        },
        "inputs": specs_to_json(specs[0]),
        "outputs": specs_to_json(specs[1]),
    }


def _validation(
    conversion: Conversion, seed: int, tolerance: float, classes: int | None
) -> dict[str, Any]:
    """The sidecar's `validation`: what the ONNX was run against, on what, and how it did."""
    return {
        "reference": "the frozen graph in TensorFlow (tf.compat.v1.Session)",
        "inputs": f"seeded (seed {seed}): truncated-normal noise, labels in [0, {classes or 1})",
        "batches": conversion.validation,
        "max_abs_diff": conversion.max_abs_diff,
        "tolerance": tolerance,
    }


def _checkpoint_entry(recovered: Any, no_checkpoint: str | None) -> dict[str, Any]:
    """The sidecar's `checkpoint` (the recovered one) or why there is none (with
    `checkpoint_optional`); nothing when none was asked for."""
    if recovered is not None:
        return {
            "checkpoint": str(recovered.directory.resolve()),
            "checkpoint_recovery": {
                "max_abs_diff": recovered.max_abs_diff,
                "mean_abs_diff": recovered.mean_abs_diff,
                "reference": "the frozen graph in TensorFlow, same inputs",
            },
        }
    return {"checkpoint_recovery": no_checkpoint} if no_checkpoint else {}


def _provenance(tf: Any, tf2onnx: Any, conversion: Conversion) -> dict[str, Any]:
    """The converter, the exact rewrites made to its output, and every tool's version."""
    import onnx

    from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner

    return {
        "converter": "tf2onnx.convert.from_graph_def",
        "onnx_rewrites": {
            "nearest Resize tf_half_pixel_for_nn -> asymmetric (integer scales: exact)": (
                conversion.resizes
            )
        },
        "versions": {
            "tensorflow": tf.__version__,
            "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": OnnxRuntimeRunner.version(),
        },
    }
