"""What `bigbigan serve` runs, built once at start-up into its temporary folder.

From a checkpoint: the generator exported to ONNX and compiled by `compile --target ort` (the
fastest build that takes seconds, not minutes: on the first shipped ch=16 model compiled ORT is
the fastest fp32 path, docs/performance.md), the encoder exported to ONNX, and a second compiled
generator whose label input is a vector of class weights instead of a class index, so that the
page can walk between two classes. A generator the user names (`--model`, any file `infer`
opens) replaces the first; the other two still come from the checkpoint.

The class-weight generator is the exported graph with one node changed: the embedding lookup
`Gather(embedding, Cast(x2))` becomes `MatMul(class_weights, embedding)`. For one-hot weights
the two are the same function (tested); a mix of two one-hots mixes the two class embeddings.
A model trained with label dropout has one more row, "no label", which the weights leave out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigbigan.errors import BigBiGANError

CLASS_WEIGHTS = "class_weights"  # the class-weight generator's label input: float32 (N, classes)


@dataclass(frozen=True)
class Artefacts:
    """Paths of the three models a page needs (mixer is None for an unconditional model)."""

    generator: Path
    encoder: Path
    mixer: Path | None


def describe(path: Path) -> tuple[str, str]:
    """(how the file was made, precision), read from its sidecar: `compiled ort` / `fp32`."""
    sidecar = path / "checkpoint.json" if path.is_dir() else path.with_name(path.name + ".json")
    try:
        meta: Any = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        return ("checkpoint" if path.is_dir() else path.suffix.lstrip(".")), "fp32"
    if meta.get("format") == "bigbigan-compiled":
        return f"compiled {meta.get('target')}", str(meta.get("precision", "fp32"))
    if meta.get("format") == "bigbigan-onnx":
        return "exported onnx", "fp32"
    return "checkpoint", "fp32"


def class_weight_graph(model: Any, num_classes: int) -> Any:
    """A copy of an exported conditional generator whose int32 label input `x2` (N,) is
    replaced by float32 class weights (N, num_classes) multiplying the table's class rows."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    casts = {n.output[0]: n for n in graph.node if n.op_type == "Cast" and n.input[0] == "x2"}
    lookups = [
        n
        for n in graph.node
        if n.op_type == "Gather"
        and n.input[0] in initializers
        and (n.input[1] == "x2" or n.input[1] in casts)
    ]
    if len(lookups) != 1 or not any(i.name == "x2" for i in graph.input):
        raise BigBiGANError(
            "generator graph: expected one embedding lookup of label input x2, "
            f"found {len(lookups)}; class interpolation needs a conditional export"
        )
    lookup = lookups[0]
    table = numpy_helper.to_array(initializers[lookup.input[0]])
    if table.shape[0] < num_classes:
        raise BigBiGANError(
            f"generator graph: embedding table of {table.shape[0]} rows, expected at least "
            f"{num_classes} (one per class)"
        )
    mixed = onnx.ModelProto()
    mixed.CopyFrom(model)
    rows = next(i for i in mixed.graph.initializer if i.name == lookup.input[0])
    rows.CopyFrom(numpy_helper.from_array(table[:num_classes], rows.name))  # read only here
    nodes = [
        helper.make_node("MatMul", [CLASS_WEIGHTS, lookup.input[0]], list(lookup.output))
        if n.op_type == "Gather" and list(n.output) == list(lookup.output)
        else n
        for n in mixed.graph.node
        if not (n.op_type == "Cast" and n.input[0] == "x2")
    ]
    del mixed.graph.node[:]
    mixed.graph.node.extend(nodes)
    batch = next(i for i in mixed.graph.input if i.name == "x2").type.tensor_type.shape.dim[0]
    weights = helper.make_tensor_value_info(CLASS_WEIGHTS, onnx.TensorProto.FLOAT, [1, 1])
    dims = weights.type.tensor_type.shape.dim
    dims[0].CopyFrom(batch)
    dims[1].dim_value = num_classes
    inputs = [weights if i.name == "x2" else i for i in mixed.graph.input]
    del mixed.graph.input[:]
    mixed.graph.input.extend(inputs)
    onnx.checker.check_model(mixed)
    return mixed


def build(
    checkpoint: Path,
    folder: Path,
    *,
    model: Path | None = None,
    conditional: bool = True,
    echo: Callable[[str], None] = print,
) -> Artefacts:
    """Export and compile into `folder` what the page runs; `model` skips the generator build."""
    from bigbigan.compile import compile_model
    from bigbigan.export import export_onnx

    echo(f"exporting the generator of {checkpoint} ...")
    g_onnx = export_onnx(checkpoint, folder / "G.onnx").path
    if model is None:
        echo("compiling it (compile --target ort) ...")
        model = compile_model(g_onnx, target="ort", out=folder / "G.ort.onnx").path
    echo("exporting the encoder ...")
    encoder = export_onnx(checkpoint, folder / "E.onnx", encoder=True).path
    mixer = None
    if conditional:
        echo("compiling the class-weight generator ...")
        mixer = build_mixer(g_onnx, folder)
    return Artefacts(generator=model, encoder=encoder, mixer=mixer)


def build_mixer(g_onnx: Path, folder: Path) -> Path:
    """The class-weight generator of an exported `g_onnx`, compiled (`ort`) into `folder`."""
    import onnx

    from bigbigan.compile import compile_model
    from bigbigan.documents import read_sidecar
    from bigbigan.fsutil import atomic_path

    num_classes = read_sidecar(g_onnx, missing="export it with `bigbigan export`")["model"][
        "num_classes"
    ]
    source = folder / "G_class_weights.onnx"
    with atomic_path(source) as tmp:
        onnx.save(class_weight_graph(onnx.load(str(g_onnx)), num_classes), str(tmp))
    return compile_model(source, target="ort", out=folder / "G_class_weights.ort.onnx").path
