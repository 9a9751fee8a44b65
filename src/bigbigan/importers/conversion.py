"""The frozen graph into ONNX: tf2onnx's conversion renamed to the offline interface, its baked
batch made dynamic where that is provable (bigbigan.importers.graph_rewrite), an exact rewrite of
its nearest-neighbour resizes, and ONNX Runtime checked against TensorFlow at the baked batch and
(dynamic) at 16 and 1 too.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.importers.frozen_graph import DEFAULT_BATCH, FrozenGraph, Interface
from bigbigan.importers.graph_rewrite import BatchNotDynamic, make_batch_dynamic

BATCH_MODES = ("auto", "dynamic", "static")
VALIDATE_BATCHES = (16, 1)  # besides the baked batch, for a dynamic import


@dataclass
class Conversion:
    """What `convert_graph` wrote, and how its batch came out."""

    batch_mode: str  # what was asked for (see convert_graph)
    dynamic: bool  # the batch was baked and is now dynamic
    note: str  # why the batch stayed static, or what made it dynamic
    validation: list[dict[str, Any]]  # per batch: max/mean abs diff against TensorFlow
    rewrites: list[dict[str, Any]] = field(default_factory=list)  # the shape constants rewritten
    resizes: int = 0  # nearest Resize nodes made exact (exact_nearest_resizes)

    @property
    def max_abs_diff(self) -> float:
        """The worst difference from TensorFlow over every batch validated."""
        return max(v["max_abs_diff"] for v in self.validation)


def convert_graph(
    graph: FrozenGraph, tf2onnx: Any, path: Path, batch_mode: str, opset: int | None
) -> Conversion:
    """Convert `graph` into the ONNX file `path` and run it against TensorFlow's output.

    `batch_mode` "auto" makes a baked batch dynamic where provable and else keeps it (saying
    why), "dynamic" refuses when it cannot, "static" keeps it."""
    import onnx

    tf, baked, interface = graph.tf, graph.baked, graph.interface
    output = interface.output[1]
    if baked is None:
        note = "the graph bakes no batch"
    elif batch_mode == "static":
        note = f"kept at {baked} (--batch-mode static)"
    else:
        try:
            dynamic = make_batch_dynamic(tf, graph.graph_def, [interface.output[0]])
            converted = convert(tf2onnx, dynamic.graph_def, interface, opset, True)
            resizes = exact_nearest_resizes(converted)
            onnx.save(converted, path)
            batches = [baked] + [b for b in VALIDATE_BATCHES if b < baked]
            validation = validate(path, graph.reference, graph.feed, batches, output)
            rewrites = [r.to_json() for r in dynamic.rewrites]
            note = (
                f"{len(rewrites)} shape constant(s) baking batch {baked} now copy their "
                f"data input's batch ({', '.join(sorted({r['op'] for r in rewrites}))}); "
                f"proven by shape inference at batch {dynamic.probe_batch}"
            )
            return Conversion(batch_mode, True, note, validation, rewrites, resizes)
        except BatchNotDynamic as e:
            if batch_mode == "dynamic":
                raise BigBiGANError(
                    f"{graph.path}: cannot make batch {baked} dynamic: {e} (import with "
                    "--batch-mode static to keep it)"
                ) from e
            note = f"kept at {baked}: {e}"
    converted = convert(tf2onnx, graph.graph_def, interface, opset, baked is None)
    resizes = exact_nearest_resizes(converted)
    onnx.save(converted, path)
    batches = [baked or DEFAULT_BATCH] + ([1] if baked is None else [])
    try:
        validation = validate(path, graph.reference, graph.feed, batches, output)
    except BatchNotDynamic as e:
        raise BigBiGANError(f"{graph.path}: the converted ONNX does not run: {e}") from e
    return Conversion(batch_mode, False, note, validation, resizes=resizes)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """tf2onnx prints progress to stdout/stderr through Python; keep the CLI's output clean."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def convert(
    tf2onnx: Any, graph_def: Any, interface: Interface, opset: int | None, dynamic: bool
) -> Any:
    """tf2onnx's ONNX of `graph_def`, renamed to the offline interface (batch dim `batch`)."""
    try:
        with _quiet():
            model, _ = tf2onnx.convert.from_graph_def(
                graph_def,
                input_names=[tf_name for tf_name, _, _ in interface.inputs],
                output_names=[interface.output[0]],
                opset=opset,
            )
    except Exception as e:  # tf2onnx raises many types; the message is what matters
        text = str(e).strip().splitlines()
        raise BigBiGANError(f"tf2onnx cannot convert the graph: {text[0] if text else e}") from e
    renames = {tf_name: name for tf_name, name, _ in interface.inputs}
    renames[interface.output[0]] = interface.output[1]
    graph = model.graph
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in (*graph.input, *graph.output):
        value.name = renames.get(value.name, value.name)
        dims = value.type.tensor_type.shape.dim
        if dynamic and dims:
            dims[0].dim_param = "batch"
    return model


def exact_nearest_resizes(model: Any) -> int:
    """Rewrite tf2onnx's nearest Resize with integer scales from the deprecated
    `tf_half_pixel_for_nn` (ONNX Runtime warns on every load) to `asymmetric`: with
    `nearest_mode` floor and an integer scale s, floor((x + 0.5) / s) = floor(x / s) for every
    integer x, so each output pixel reads the same input pixel. Returns how many were rewritten."""
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    count = 0
    for node in model.graph.node:
        attrs = {a.name: a.s for a in node.attribute}
        scales = constants.get(node.input[2]) if len(node.input) > 2 else None
        wanted = {
            "mode": b"nearest",
            "nearest_mode": b"floor",
            "coordinate_transformation_mode": b"tf_half_pixel_for_nn",
        }
        if (
            node.op_type != "Resize"
            or any(attrs.get(k) != v for k, v in wanted.items())
            or scales is None
            or not scales.size
            or not np.all((scales >= 1) & (scales == np.round(scales)))
        ):
            continue
        attr = next(a for a in node.attribute if a.name == "coordinate_transformation_mode")
        attr.s = b"asymmetric"
        count += 1
    return count


def validate(
    onnx_path: Path,
    reference: np.ndarray,
    feed: dict[str, np.ndarray],
    batches: list[int],
    output: str,
) -> list[dict[str, Any]]:
    """ONNX Runtime on the first n samples of `feed` for each n, against TensorFlow's rows."""
    from bigbigan.interface import diff_stats
    from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner

    rows = []
    with OnnxRuntimeRunner(onnx_path) as runner:
        for n in batches:
            try:
                found = runner.infer({k: v[:n] for k, v in feed.items()})[output]
            except BigBiGANError as e:
                raise BatchNotDynamic(f"ONNX Runtime fails at batch {n}: {e}") from e
            if found.shape != reference[:n].shape:
                raise BatchNotDynamic(
                    f"at batch {n} the ONNX returns {list(found.shape)}, TensorFlow "
                    f"{list(reference[:n].shape)}"
                )
            max_abs, mean_abs = diff_stats(found, reference[:n])
            rows.append({"batch": n, "max_abs_diff": max_abs, "mean_abs_diff": mean_abs})
    return rows
