"""File-system discipline: atomic writes, regular files only, outputs never over inputs.

- `atomic_path`: a write goes to a temporary file beside its target and is renamed into place
  only if it completed; an OS error (full disk, file-size limit, a directory in the way) is one
  line naming the file, and the temporary file is removed, Ctrl-C included. Temporary files are
  named `.NAME.PID.XXXX.tmp`; one left by a killed process (its PID gone) is removed by the next
  write of NAME.
- `command_scope` (opened by the CLI around each command): the files a command reads as inputs
  (`note_input`) may not be written over (`guard_output`), compared by device and inode, so a
  symlink or hard link is caught too; a failed command removes the directories it created.
- `require_regular`: inputs, sidecars, checkpoints and models must be regular files, checked
  with `os.stat` before any `open` (a FIFO would block the reader forever).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigbigan.errors import BigBiGANError

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def os_error(path: str | os.PathLike[str], error: OSError) -> BigBiGANError:
    """`out/x.bin: No space left on device (ENOSPC)`: an OSError about `path` as one line, in
    the form the CLI gives any OSError (docs/cli.md)."""
    reason = error.strerror or str(error) or type(error).__name__
    code = errno.errorcode.get(error.errno or 0)
    return BigBiGANError(f"{path}: {reason} ({code})" if code else f"{path}: {reason}")


def require_regular(path: str | os.PathLike[str], what: str = "file") -> os.stat_result:
    """`os.stat` of `path` (following links), which must be a regular file: no FIFO, device,
    socket or directory is ever opened for reading."""
    try:
        st = os.stat(path)
    except FileNotFoundError as err:
        raise BigBiGANError(f"{path}: no such {what}") from err
    except OSError as e:
        raise os_error(path, e) from e
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise BigBiGANError(f"{path}: expected a regular {what}, found {kind}")
    return st


# --- the command scope: inputs that must not be overwritten, directories to undo -------------


@dataclass
class _Scope:
    inputs: dict[tuple[int, int], Path] = field(default_factory=dict)  # (dev, ino) -> as given
    input_paths: dict[str, Path] = field(default_factory=dict)  # resolved path -> as given
    created: list[Path] = field(default_factory=list)  # directories this command made
    kept: set[Path] = field(default_factory=set)  # created, but to keep even on failure


_scopes: list[_Scope] = []


@contextlib.contextmanager
def command_scope() -> Iterator[None]:
    """One command: inputs it reads are protected from its writes; if it fails (an error,
    Ctrl-C), the directories it created are removed, except those marked with `keep`."""
    scope = _Scope()
    _scopes.append(scope)
    try:
        yield
    except BaseException:
        _remove_created(scope)
        raise
    finally:
        _scopes.remove(scope)


def _remove_created(scope: _Scope) -> None:
    for directory in reversed(scope.created):
        if any(directory == k or directory in k.parents for k in scope.kept):
            continue
        shutil.rmtree(directory, ignore_errors=True)


def keep(directory: str | os.PathLike[str]) -> None:
    """Keep `directory` even if the command fails from here on (it holds a committed result,
    such as a checkpoint to resume from)."""
    if _scopes:
        _scopes[-1].kept.add(Path(directory).absolute())


def note_input(path: str | os.PathLike[str]) -> None:
    """Record that the current command reads `path`, so no write of it may replace it."""
    if not _scopes:
        return
    try:
        st = os.stat(path)
    except OSError:
        return
    _scopes[-1].inputs[(st.st_dev, st.st_ino)] = Path(path)
    _scopes[-1].input_paths[os.path.realpath(path)] = Path(path)


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _still_is(path: Path, st: os.stat_result) -> bool:
    """Whether `path` still names the file `st` describes (inode numbers are reused)."""
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def guard_output(path: str | os.PathLike[str], flag: str | None = None, reads: tuple = ()) -> None:
    """Refuse to write `path` over a file the command reads: those noted in the command scope,
    and `reads` (for library callers without a scope). Compared by device and inode (the file
    itself, whatever the name) and by resolved path (a file not yet written)."""
    name = f"{flag} {path}" if flag else str(path)
    for source in reads:
        if _same_file(path, source):
            raise BigBiGANError(f"{name}: is {source}, which this command reads; write elsewhere")
    if not _scopes:
        return
    scope = _scopes[-1]
    try:
        st = os.stat(path)
        source = scope.inputs.get((st.st_dev, st.st_ino))
    except OSError:
        source = None
    if source is not None and not _still_is(source, st):
        source = None  # the input was replaced since it was read and its inode number reused
    source = source or scope.input_paths.get(os.path.realpath(path))
    if source is not None:
        raise BigBiGANError(f"{name}: is {source}, which this command reads; write elsewhere")


# --- directories and atomic writes ------------------------------------------------------------


def ensure_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Create `path` (and parents) or fail with a one-line error naming the flag. Directories
    made here are removed again if the command fails (see `command_scope`)."""
    path = Path(path)
    missing = []
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        reason = "a file of that name exists"
        raise BigBiGANError(f"{flag} {path}: cannot create directory ({reason})") from err
    except OSError as e:
        raise BigBiGANError(f"{flag} {path}: cannot create directory ({e.strerror})") from e
    if missing and _scopes:
        _scopes[-1].created.append(missing[-1])  # the top one: removing it removes the rest
    if not os.access(path, os.W_OK):
        raise BigBiGANError(f"{flag} {path}: directory is not writable")
    return path


_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike[str], name: str | None = None) -> None:
    """Remove temporary files (of `name`, or of any file) that a killed process left in
    `directory`; those of live processes are left alone."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            match = _TMP.match(entry.name)
            mine = match and (name is None or match["name"] == name)
            if mine and not _pid_alive(int(match["pid"])):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, replaces_input: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    An OSError inside the block or at the rename becomes one line naming `path`; the temporary
    file is removed whatever happens. `replaces_input`: the caller means to replace a file it
    read (a checkpoint pointer, a log it trims), so the input guard is skipped.
    """
    path = Path(path)
    with contextlib.suppress(OSError):
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):  # a rename would replace a device, FIFO or socket node
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise BigBiGANError(f"{path}: is {kind}, expected a regular file or a new name")
    if not replaces_input:
        guard_output(path)
    parent = path.parent
    ensure_dir(parent, flag=f"{path}:")
    remove_stale_temporaries(parent, path.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise os_error(path, e) from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp's 0600 would survive the rename
        yield tmp_path
        if not replaces_input:
            guard_output(path)  # the block may have read it
        os.replace(tmp_path, path)
    except OSError as e:
        raise os_error(path, e) from e
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike[str], data: bytes, *, replaces_input: bool = False) -> None:
    with atomic_path(path, replaces_input=replaces_input) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str, *, replaces_input: bool = False) -> None:
    write_bytes(path, text.encode(), replaces_input=replaces_input)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a regular file, read in 1 MiB blocks."""
    require_regular(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json_document(
    path: str | os.PathLike[str], expected_format: str | None = None, max_bytes: int = 64 << 20
) -> dict[str, Any]:
    """A JSON object from `path`, and with `expected_format` one whose "format" key says so;
    anything else (bad JSON, a list, another format, not a regular file, larger than
    `max_bytes`) is a one-line error naming the file."""
    st = require_regular(path)
    if st.st_size > max_bytes:
        raise BigBiGANError(
            f"{path}: {st.st_size} bytes, expected a JSON document of at most {max_bytes}"
        )
    note_input(path)
    try:
        doc = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise BigBiGANError(f"{path}: not valid JSON ({e})") from e
    except OSError as e:
        raise os_error(path, e) from e
    if not isinstance(doc, dict):
        raise BigBiGANError(f"{path}: expected a JSON object, found {type(doc).__name__}")
    if expected_format is not None and doc.get("format") != expected_format:
        raise BigBiGANError(
            f"{path}: expected format {expected_format!r}, found {doc.get('format')!r}"
        )
    return doc


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike[str], flag: str = "--out") -> Iterator[None]:
    """An exclusive lock on `directory` for as long as the block runs (flock on the directory
    itself: no lock file to leave behind; the kernel drops it when the process dies)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise os_error(f"{flag} {directory}", e) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise os_error(f"{flag} {directory}", e) from e
            raise BigBiGANError(
                f"{flag} {directory}: another bigbigan process is writing to it; "
                "wait for it to finish or use another directory"
            ) from e
        yield
    finally:
        os.close(fd)
