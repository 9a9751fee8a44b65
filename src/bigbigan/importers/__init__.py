"""Models from elsewhere: a frozen TensorFlow `.pb` (the original system's `bigbigan.pb`) is a
model everywhere a model is accepted, through an ONNX import made once and cached.

    onnx_path = resolve_model("bigbigan.pb")   # imports on first use; later calls reuse it

The cache is keyed by the `.pb`'s sha256: `bigbigan.<sha256[:12]>.onnx` beside the `.pb` (or,
where that folder is not writable, in `$XDG_CACHE_HOME/bigbigan/imports/`), with the import
sidecar recording the digest; a changed `.pb` gets a new import. When the graph is the reference
generator, a recovered PyTorch checkpoint `bigbigan.<sha256[:12]>.checkpoint/` goes beside it
and the sidecar names it (aoti, layerwise, bench and evaluate need one: `resolve_checkpoint`).
Importing this module is cheap: TensorFlow and tf2onnx load only when an import actually runs
(bigbigan.importers.tensorflow).
See docs/import.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bigbigan.documents import read_document, sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import sha256_file

PB_SUFFIXES = (".pb",)
IMPORT_FORMAT = "bigbigan-import"  # the "format" of an import sidecar (G.onnx.json)
DIGEST_CHARS = 12  # of the sha256 in a cached import's file name


def is_frozen_graph(path: str | Path) -> bool:
    """A TensorFlow frozen GraphDef, by file type."""
    return Path(path).suffix.lower() in PB_SUFFIXES


def cache_dir() -> Path:
    """Where imports go when the `.pb`'s own folder is read-only."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bigbigan" / "imports"


def cached_path(pb: Path, digest: str) -> Path:
    """`bigbigan.pb` -> `bigbigan.<digest>.onnx` beside it, or in cache_dir() when the folder
    is not writable."""
    name = f"{pb.stem}.{digest[:DIGEST_CHARS]}.onnx"
    folder = pb.resolve().parent
    return folder / name if os.access(folder, os.W_OK) else cache_dir() / name


def import_matches(onnx_path: Path, digest: str) -> bool:
    """Is `onnx_path` a finished import (ONNX and sidecar) of the `.pb` with this digest?"""
    sidecar = sidecar_path(onnx_path)
    if not (onnx_path.is_file() and sidecar.is_file()):
        return False
    try:
        meta = read_document(sidecar, IMPORT_FORMAT)
    except BigBiGANError:
        return False
    source = meta.get("source")
    return isinstance(source, dict) and source.get("sha256") == digest


def resolve_model(path: str | Path, *, echo: bool = True) -> Path:
    """`path` itself, or for a `.pb` its cached ONNX import (made now if missing or stale)."""
    path = Path(path)
    if not is_frozen_graph(path):
        return path
    if not path.is_file():
        raise BigBiGANError(f"{path}: no such file")
    digest = sha256_file(path)
    onnx_path = cached_path(path, digest)
    if import_matches(onnx_path, digest):
        return onnx_path
    from bigbigan.importers.tensorflow import import_pb

    if echo:
        print(f"bigbigan: importing {path} into {onnx_path} (once; cached)", file=sys.stderr)
    report = import_pb(
        path,
        onnx_path,
        checkpoint_out=onnx_path.with_suffix(".checkpoint"),
        checkpoint_optional=True,
    )
    if echo:
        print(f"bigbigan: {report.one_line()}", file=sys.stderr)
    return onnx_path


def resolve_checkpoint(path: str | Path) -> Path:
    """`path` itself, or for a `.pb` the checkpoint recovered with its cached import (an error
    saying why when the graph is not the reference generator)."""
    path = Path(path)
    if not is_frozen_graph(path):
        return path
    onnx_path = resolve_model(path)
    meta = read_document(sidecar_path(onnx_path), IMPORT_FORMAT)
    if not meta.get("checkpoint"):
        reason = meta.get("checkpoint_recovery") or "no checkpoint recorded"
        raise BigBiGANError(f"{path}: needs a PyTorch checkpoint of its generator: {reason}")
    return Path(meta["checkpoint"])
