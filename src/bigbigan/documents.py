"""Every JSON document bigbigan writes, under one header, and the sidecars beside other files.

A document starts with `{"format": "bigbigan-<kind>", "version": N, ...}` (docs/architecture.md,
"File formats"): checkpoints, classifiers, the export and compile sidecars, `.bin` sidecars, the
infer summary, compare and layerwise reports, bench results, shard manifests. It is written
atomically (temp file + rename), so a reader never sees half of one.

Readers also accept what earlier versions wrote: the `schema`/`schema_version` header of the
first infer summaries and compare/layerwise reports (read as `format`/`version`), export and
compile sidecars written before they carried a version (their readers ask for none), and `.bin`
sidecars written by hand or by another tool, which have no header at all and need none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import write_text

PREFIX = "bigbigan-"
OLD_HEADER = {"schema": "format", "schema_version": "version"}  # the first wave's spelling


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar of any file we write: `x.bin` -> `x.bin.json`, `G.onnx` -> `G.onnx.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def document(doc_format: str, body: Mapping[str, Any], version: int = 1) -> dict[str, Any]:
    """`body` under the header: `{"format": doc_format, "version": version, **body}`."""
    if not doc_format.startswith(PREFIX):
        raise ValueError(f"document format {doc_format!r} must start with {PREFIX!r}")
    clash = [key for key in ("format", "version", *OLD_HEADER) if key in body]
    if clash:
        raise ValueError(f"document body must not hold header keys {clash}")
    return {"format": doc_format, "version": version, **body}


def document_text(
    doc_format: str, body: Mapping[str, Any], version: int = 1, indent: int | None = 2
) -> str:
    """The JSON text of `document(...)`, newline-terminated (for writing inside a caller's
    own atomic block, or printing)."""
    return json.dumps(document(doc_format, body, version), indent=indent) + "\n"


def write_document(
    path: str | os.PathLike[str],
    doc_format: str,
    body: Mapping[str, Any],
    *,
    version: int = 1,
    indent: int | None = 2,
) -> Path:
    """Write `body` under the header to `path`, atomically; return the path."""
    path = Path(path)
    write_text(path, document_text(doc_format, body, version, indent))
    return path


def normalise_header(doc: dict[str, Any]) -> dict[str, Any]:
    """Old `schema`/`schema_version` keys read as `format`/`version`."""
    for old, new in OLD_HEADER.items():
        if old in doc and new not in doc:
            doc[new] = doc.pop(old)
    return doc


def read_document(
    path: str | os.PathLike[str],
    expected_format: str | None = None,
    versions: Collection[int] | None = None,
) -> dict[str, Any]:
    """A JSON object from `path`, its header normalised (see the module docstring).

    With `expected_format` the document must say that format; with `versions` its version must
    be one of them. Anything
    else (unreadable, bad JSON, a list, another format or version) is one line naming the file.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise BigBiGANError(f"{path}: cannot read ({e.strerror})") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BigBiGANError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise BigBiGANError(f"{path}: expected a JSON object, found {type(doc).__name__}")
    doc = normalise_header(doc)
    if expected_format is not None and doc.get("format") != expected_format:
        raise BigBiGANError(
            f"{path}: expected format {expected_format!r}, found {doc.get('format')!r}"
        )
    if versions is not None and doc.get("version") not in versions:
        wanted = " or ".join(str(v) for v in sorted(versions))
        raise BigBiGANError(
            f"{path}: {doc.get('format')} version {doc.get('version')!r}, this bigbigan reads "
            f"version {wanted}"
        )
    return doc


def read_sidecar(
    path: str | os.PathLike[str], expected_format: str | None = None, *, missing: str = ""
) -> dict[str, Any] | None:
    """The sidecar document beside `path`; None when there is none, or, given `missing` (what
    to do about it), a one-line error naming the sidecar."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        if missing:
            raise BigBiGANError(f"{path}: no sidecar {sidecar.name}; {missing}")
        return None
    return read_document(sidecar, expected_format)
