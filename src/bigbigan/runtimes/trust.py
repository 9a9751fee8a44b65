"""A `.pt2` package is an executable: loading one runs its shared library and unpickles its
Python parts. bigbigan loads only packages it compiled itself, or ones the user vouches for.

`bigbigan compile --target aoti` records the sha256 of every package it writes in a local trust
store, one empty file per digest (`<store>/pt2/<sha256>`: concurrent compiles never race on a
shared file). Before torch opens a `.pt2`, its digest must be in the store, or the user must
pass `--trust-model` (this run only). A package copied from elsewhere, or changed after it was
compiled, is refused with a line that says why and how.

The store is `$BIGBIGAN_TRUST_STORE`, else `$XDG_DATA_HOME/bigbigan`, else
`~/.local/share/bigbigan`. It records only what this user compiled on this machine; it is not
a signature, and anyone who can write the store can add to it (as they could edit the code).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import os_error, sha256_file

ENV = "BIGBIGAN_TRUST_STORE"
_vouched: set[str] = set()  # digests the user vouched for with --trust-model, this process only


def store() -> Path:
    """The trust store's directory (not created here)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bigbigan"


def _entry(digest: str) -> Path:
    return store() / "pt2" / digest


def record(path: str | os.PathLike[str]) -> str:
    """Trust the package at `path` (one this tool just compiled); return its digest."""
    digest = sha256_file(path)
    entry = _entry(digest)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(entry, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except OSError as e:
        where = f"trust store {entry.parent} (set {ENV} to a writable folder)"
        raise os_error(where, e) from e
    return digest


def vouch(path: str | os.PathLike[str]) -> None:
    """`--trust-model`: the user vouches for the package at `path`, for this process only."""
    if Path(path).suffix.lower() == ".pt2" and Path(path).is_file():
        _vouched.add(sha256_file(path))


def require_trusted(path: str | os.PathLike[str]) -> None:
    """Refuse a package that this tool did not compile and nobody vouched for. Reads only its
    bytes (a digest): nothing in it is unpacked, loaded or run."""
    digest = sha256_file(path)
    if digest in _vouched or _entry(digest).is_file():
        return
    raise BigBiGANError(
        f"{path}: refusing to load an AOTInductor package this bigbigan did not compile (a .pt2 "
        "runs its own code when loaded); compile it here with `bigbigan compile --target aoti`, "
        "or pass --trust-model if you trust where it came from"
    )
