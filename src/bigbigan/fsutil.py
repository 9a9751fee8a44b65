"""Atomic file writes: a reader never sees a half-written output."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bigbigan.errors import BigBiGANError


def ensure_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Create `path` (and parents) or fail with a one-line error naming the flag."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BigBiGANError(f"{flag} {path}: cannot create directory ({e.strerror})") from None
    if not os.access(path, os.W_OK):
        raise BigBiGANError(f"{flag} {path}: directory is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.
    An OS error on the temporary file (a full disk, a folder in the way) names `path`, the
    output the user asked for."""
    path = Path(path)
    ensure_dir(path.parent or Path("."), flag=f"{path}:")
    with _naming(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp's 0600 would survive the rename
    try:
        with _naming(path, tmp_path):
            yield tmp_path
            os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def _naming(path: Path, tmp: Path | None = None) -> Iterator[None]:
    """Re-label an OSError about our temporary file (or about no file) as one about `path`."""
    try:
        yield
    except OSError as e:
        if e.filename is None or (tmp is not None and os.fsdecode(e.filename) == str(tmp)):
            e.filename, e.filename2 = str(path), None
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode())


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json_document(
    path: str | os.PathLike[str], expected_format: str | None = None
) -> dict[str, Any]:
    """A JSON object from `path`, and with `expected_format` one whose "format" key says so;
    anything else (bad JSON, a list, another format) is a one-line error naming the file."""
    try:
        doc = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BigBiGANError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise BigBiGANError(f"{path}: expected a JSON object, found {type(doc).__name__}")
    if expected_format is not None and doc.get("format") != expected_format:
        raise BigBiGANError(
            f"{path}: expected format {expected_format!r}, found {doc.get('format')!r}"
        )
    return doc
