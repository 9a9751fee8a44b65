"""`bigbigan import bigbigan.pb --out G.onnx`: a frozen TensorFlow graph as a validated ONNX.

The original system's `save_pb` freezes the TF2 generator into a GraphDef with placeholders
`x1` float32 [256, 100] and `x2` int32 [256] and output `Identity:0` NHWC [256, 32, 32, C].
`import_pb` converts it with tf2onnx and gives it this project's offline interface: inputs `x1`,
`x2` (`x1:0` -> `x1`), output `images` (as `bigbigan export` names it). Where the batch is baked
into shape constants it is made dynamic (bigbigan.importers.graph_rewrite), else the import keeps
the static batch and says why. Validation runs the original frozen graph in TensorFlow and the
ONNX in ONNX Runtime on the same inputs, at the baked batch and (dynamic) at 16 and 1 too; only
an import within tolerance is renamed into place, with its sidecar `G.onnx.json` recording the
source's sha256, the converter versions, the rewrites and the differences. See docs/import.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import atomic_path, sha256_file
from bigbigan.importers import IMPORT_FORMAT
from bigbigan.importers.graph_rewrite import (
    BatchNotDynamic,
    baked_batch,
    import_graph,
    make_batch_dynamic,
    node_of,
    placeholder_shape,
    placeholders,
    tensor_name,
)
from bigbigan.interface import TensorSpec

EXTRA = "pip install 'bigbigan[tf]'"
BATCH_MODES = ("auto", "dynamic", "static")
VALIDATE_BATCHES = (16, 1)  # besides the baked batch, for a dynamic import
DEFAULT_BATCH = 256  # validation batch of a graph that bakes none
DEFAULT_TOLERANCE = 1e-4  # max abs difference, TensorFlow vs ONNX Runtime (images in [0, 1])
OUTPUT_NODE = "Identity"  # a frozen tf.function's output


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


def import_tensorflow() -> tuple[Any, Any]:
    """(tensorflow, tf2onnx), quietly; missing ones name the extra to install."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as e:
        raise BigBiGANError(
            f"importing a TensorFlow .pb needs TensorFlow and tf2onnx ({e.name or e} is not "
            f"installed): {EXTRA}"
        ) from None
    for name in ("tf2onnx", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return tf, tf2onnx


def read_graph_def(tf: Any, path: Path) -> Any:
    """The GraphDef in a frozen `.pb`; anything else is a one-line error naming the file."""
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise BigBiGANError(f"{path}: no such file")
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeError) as e:
        raise BigBiGANError(f"{path}: not a frozen TensorFlow GraphDef ({e})") from None
    if not graph_def.node:
        raise BigBiGANError(f"{path}: not a frozen TensorFlow GraphDef (no nodes)")
    variables = [n.name for n in graph_def.node if n.op in ("VarHandleOp", "VariableV2")]
    if variables:
        raise BigBiGANError(
            f"{path}: holds variables ({variables[0]}, ...), not a frozen graph; freeze it with "
            "convert_variables_to_constants_v2 first"
        )
    return graph_def


@dataclass
class Interface:
    """The graph's tensors and the names they get in the ONNX."""

    inputs: list[tuple[str, str, np.dtype]]  # (TF tensor, ONNX name, dtype) in input order
    output: tuple[str, str]  # (TF tensor, ONNX name)


def find_interface(path: Path, graph_def: Any, tf: Any) -> Interface:
    """Inputs: the placeholders, named `x1`/`x2` as the original's are (or by role: float noise
    [N, z] -> x1, int labels [N] -> x2); output: `Identity`, else the one unconsumed node."""
    from bigbigan.interface import GENERATOR_INPUTS, GENERATOR_OUTPUT

    holders = placeholders(graph_def)
    if not holders:
        raise BigBiGANError(f"{path}: no Placeholder inputs in the graph")
    found = []
    for node in holders:
        dtype = np.dtype(tf.as_dtype(node.attr["dtype"].type).as_numpy_dtype)
        found.append((node.name, dtype, placeholder_shape(node)))
    by_role = {
        ("f", 2): GENERATOR_INPUTS[0],
        ("i", 1): GENERATOR_INPUTS[1],
    }
    roles = [by_role.get((d.kind, len(s) if s else -1)) for _, d, s in found]
    generator = sorted(r or "" for r in roles) == sorted(GENERATOR_INPUTS[: len(found)])
    names = [name for name, _, _ in found]
    if generator and not set(names) <= set(GENERATOR_INPUTS):
        names = [r or "" for r in roles]
    order = sorted(range(len(found)), key=lambda i: names[i])
    inputs = [(tensor_name(found[i][0]), names[i], found[i][1]) for i in order]

    consumed = {node_of(i) for n in graph_def.node for i in n.input}
    by_name = {n.name: n for n in graph_def.node}
    if OUTPUT_NODE in by_name:
        output = OUTPUT_NODE
    else:
        sinks = [
            n.name
            for n in graph_def.node
            if n.name not in consumed and n.op not in ("Const", "NoOp", "Placeholder")
        ]
        if len(sinks) != 1:
            raise BigBiGANError(
                f"{path}: expected one output (a node named {OUTPUT_NODE}), found "
                f"{len(sinks)}: {', '.join(sinks[:6]) or 'none'}"
            )
        output = sinks[0]
    return Interface(inputs, (f"{output}:0", GENERATOR_OUTPUT if generator else output))


def label_classes(tf: Any, graph_def: Any, label_input: str) -> int | None:
    """The number of classes of a conditional generator: the rows of the embedding table its
    labels index (a Const gathered by the label placeholder, perhaps through Cast/Identity)."""
    by_name = {n.name: n for n in graph_def.node}

    def source(name: str) -> str:
        node = by_name.get(node_of(name))
        while node is not None and node.op in ("Identity", "Cast") and node.input:
            node = by_name.get(node_of(node.input[0]))
        return node.name if node is not None else ""

    for node in graph_def.node:
        if node.op in ("GatherV2", "Gather", "ResourceGather") and len(node.input) >= 2:
            table = by_name.get(source(node.input[0]))
            if source(node.input[1]) == node_of(label_input) and table and table.op == "Const":
                shape = tf.make_ndarray(table.attr["value"].tensor).shape
                if len(shape) == 2:
                    return int(shape[0])
    return None


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
        raise BigBiGANError(f"tf2onnx cannot convert the graph: {text[0] if text else e}") from None
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


def run_graph(tf: Any, graph_def: Any, interface: Interface, feed: dict[str, np.ndarray]) -> Any:
    """The frozen graph's output in TensorFlow on an ONNX-named feed."""
    graph = import_graph(tf, graph_def)
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(
            interface.output[0],
            {tf_name: feed[name] for tf_name, name, _ in interface.inputs},
        )


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
                raise BatchNotDynamic(f"ONNX Runtime fails at batch {n}: {e}") from None
            if found.shape != reference[:n].shape:
                raise BatchNotDynamic(
                    f"at batch {n} the ONNX returns {list(found.shape)}, TensorFlow "
                    f"{list(reference[:n].shape)}"
                )
            max_abs, mean_abs = diff_stats(found, reference[:n])
            rows.append({"batch": n, "max_abs_diff": max_abs, "mean_abs_diff": mean_abs})
    return rows


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

    from bigbigan.interface import random_feed, specs_to_json
    from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner

    started = time.perf_counter()
    pb, out = Path(pb), Path(out)
    if batch_mode not in BATCH_MODES:
        raise BigBiGANError(f"--batch-mode {batch_mode}: expected one of {', '.join(BATCH_MODES)}")
    if out.suffix.lower() != ".onnx":
        raise BigBiGANError(f"--out {out}: expected a file name ending in .onnx")
    if not tolerance >= 0:
        raise BigBiGANError(f"--tolerance {tolerance}: expected a non-negative number")
    tf, tf2onnx = import_tensorflow()
    graph_def = read_graph_def(tf, pb)
    interface = find_interface(pb, graph_def, tf)
    baked = baked_batch(graph_def)
    classes = next(
        (label_classes(tf, graph_def, t) for t, name, _ in interface.inputs if name == "x2"), None
    )
    specs = [
        TensorSpec(name, dtype, (None, *(placeholder_shape(n) or ())[1:]))
        for (_, name, dtype), n in zip(
            interface.inputs, _holders(graph_def, interface), strict=True
        )
    ]
    feed = random_feed(specs, baked or DEFAULT_BATCH, num_classes=classes, seed=seed)
    reference = run_graph(tf, graph_def, interface, feed)

    with atomic_path(out) as tmp, atomic_path(out.with_name(out.name + ".json")) as tmp_meta:
        dynamic, rewrites, note, validation = False, [], "", []
        if baked is None:
            note = "the graph bakes no batch"
        elif batch_mode == "static":
            note = f"kept at {baked} (--batch-mode static)"
        else:
            try:
                graph = make_batch_dynamic(tf, graph_def, [interface.output[0]])
                converted = convert(tf2onnx, graph.graph_def, interface, opset, True)
                resizes = exact_nearest_resizes(converted)
                onnx.save(converted, tmp)
                batches = [baked] + [b for b in VALIDATE_BATCHES if b < baked]
                validation = validate(tmp, reference, feed, batches, interface.output[1])
                dynamic, rewrites = True, [r.to_json() for r in graph.rewrites]
                note = (
                    f"{len(rewrites)} shape constant(s) baking batch {baked} now copy their "
                    f"data input's batch ({', '.join(sorted({r['op'] for r in rewrites}))}); "
                    f"proven by shape inference at batch {graph.probe_batch}"
                )
            except BatchNotDynamic as e:
                if batch_mode == "dynamic":
                    raise BigBiGANError(
                        f"{pb}: cannot make batch {baked} dynamic: {e} (import with "
                        "--batch-mode static to keep it)"
                    ) from None
                note = f"kept at {baked}: {e}"
        if not dynamic:
            converted = convert(tf2onnx, graph_def, interface, opset, baked is None)
            resizes = exact_nearest_resizes(converted)
            onnx.save(converted, tmp)
            batches = [baked or DEFAULT_BATCH] + ([1] if baked is None else [])
            try:
                validation = validate(tmp, reference, feed, batches, interface.output[1])
            except BatchNotDynamic as e:
                raise BigBiGANError(f"{pb}: the converted ONNX does not run: {e}") from None
        model = onnx.load(str(tmp))
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise BigBiGANError(f"{out}: the ONNX checker rejects the import: {e}") from None
        worst = max(v["max_abs_diff"] for v in validation)
        if not worst <= tolerance:
            raise BigBiGANError(
                f"{pb}: the ONNX differs from the frozen graph in TensorFlow by max abs "
                f"{worst:.3g} > --tolerance {tolerance:g}; nothing written"
            )
        from bigbigan.interface import onnx_specs

        inputs, outputs = onnx_specs(model)
        source = {"path": str(pb.resolve()), "sha256": sha256_file(pb), "bytes": pb.stat().st_size}
        recovered, no_checkpoint = None, None
        if checkpoint_out is not None:
            from bigbigan.importers.checkpoint_recovery import NotReference, recover_checkpoint

            try:
                recovered = recover_checkpoint(
                    tf,
                    graph_def,
                    checkpoint_out,
                    feed=feed,
                    reference=reference,
                    tolerance=tolerance,
                    source=source,
                )
            except NotReference as e:
                if not checkpoint_optional:
                    raise BigBiGANError(f"{pb}: no checkpoint recovered: {e}") from None
                no_checkpoint = f"not recovered: {e}"
            except Exception as e:  # optional: an unforeseen graph must not stop the import
                if not checkpoint_optional:
                    raise
                no_checkpoint = f"not recovered: {type(e).__name__}: {e}"
        meta = {
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
                "baked": baked,
                "dynamic": dynamic or baked is None,
                "mode": batch_mode,
                "note": note,
                "rewrites": rewrites,
            },
            "inputs": specs_to_json(inputs),
            "outputs": specs_to_json(outputs),
            "validation": {
                "reference": "the frozen graph in TensorFlow (tf.compat.v1.Session)",
                "inputs": f"seeded (seed {seed}): truncated-normal noise, labels in "
                f"[0, {classes or 1})",
                "batches": validation,
                "max_abs_diff": worst,
                "tolerance": tolerance,
            },
            **(
                {
                    "checkpoint": str(recovered.directory.resolve()),
                    "checkpoint_recovery": {
                        "max_abs_diff": recovered.max_abs_diff,
                        "mean_abs_diff": recovered.mean_abs_diff,
                        "reference": "the frozen graph in TensorFlow, same inputs",
                    },
                }
                if recovered
                else {"checkpoint_recovery": no_checkpoint}
                if no_checkpoint
                else {}
            ),
            "converter": "tf2onnx.convert.from_graph_def",
            "onnx_rewrites": {
                "nearest Resize tf_half_pixel_for_nn -> asymmetric (integer scales: exact)": resizes
            },
            "versions": {
                "tensorflow": tf.__version__,
                "tf2onnx": tf2onnx.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": OnnxRuntimeRunner.version(),
            },
        }
        tmp_meta.write_text(json.dumps(meta, indent=2) + "\n")
    return ImportReport(
        path=out,
        source=pb,
        dynamic=dynamic or baked is None,
        rewrites=rewrites,
        batch_note=note,
        validation=validation,
        inputs=inputs,
        outputs=outputs,
        seconds=time.perf_counter() - started,
        checkpoint=recovered,
    )


def _holders(graph_def: Any, interface: Interface) -> list[Any]:
    """The placeholder nodes in the interface's input order."""
    by_name = {n.name: n for n in placeholders(graph_def)}
    return [by_name[node_of(t)] for t, _, _ in interface.inputs]
