"""The fault suite's tools: run a CLI command in a forked child (a real process that can be
killed, given a file-size limit, or left to hang) and look for anything left behind."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bigbigan.cli.main import main
from bigbigan.training import checkpoint

TINY_TRAIN = ["--dataset", "digits", "--ch", "8", "--batch-size", "16", "--seed", "3"]


@dataclass
class Result:
    status: int  # exit status; 128 + N for a child killed by signal N
    out: str
    err: str

    def one_line_error(self, *needles: str) -> str:
        """The command failed with exit 1 and exactly one stderr line containing `needles`."""
        assert self.status == 1, (self.status, self.err)
        lines = [ln for ln in re.split(r"[\r\n]", self.err) if ln.strip() and "%|" not in ln]
        assert len(lines) == 1, self.err
        assert "Traceback" not in self.err
        for needle in needles:
            assert needle in lines[0], (needle, lines[0])
        return lines[0]


def run_cli(
    argv: list[str],
    tmp: Path,
    *,
    fsize: int | None = None,
    before: Callable[[], None] | None = None,
    timeout: int = 300,
) -> Result:
    """`bigbigan ARGV` in a forked child: `fsize` caps the size of any file it writes
    (RLIMIT_FSIZE, SIGXFSZ ignored so that write() fails with EFBIG, as on a full disk);
    `before` runs in the child first (to plant a fault); a child still running after `timeout`
    seconds (a hang) gets SIGALRM."""
    out_path, err_path = tmp / f".out.{os.getpid()}", tmp / f".err.{os.getpid()}"
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 70
        try:
            with open(out_path, "w") as out, open(err_path, "w") as err:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout, sys.stderr = out, err
                signal.alarm(timeout)
                if fsize is not None:
                    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
                if before is not None:
                    before()
                try:
                    status = main(argv)
                except SystemExit as e:
                    status = e.code if isinstance(e.code, int) else 2
                except BaseException as e:  # a traceback: the test sees it in err
                    import traceback

                    traceback.print_exc()
                    status = 99 if not isinstance(e, KeyboardInterrupt) else 130
                out.flush()
                err.flush()
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(wait_status):
        status = 128 + os.WTERMSIG(wait_status)
    else:
        status = os.WEXITSTATUS(wait_status)
    result = Result(status, out_path.read_text(), err_path.read_text())
    out_path.unlink()
    err_path.unlink()
    return result


def leftovers(root: Path) -> list[str]:
    """Temporary files and folders anywhere under `root` (what a clean failure never leaves)."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.name.endswith(".tmp") or p.name.startswith(".trash_")
    )


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes: to show that nothing was changed or lost."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def weights(run: Path) -> dict[str, bytes]:
    """The bytes of the current checkpoint's tensor files."""
    folder = checkpoint.read(run).directory
    return {name: (folder / name).read_bytes() for name in checkpoint.read(run).files}


def legacy_copy(run: Path, dest: Path) -> Path:
    """The run's current checkpoint in the old layout (version 1: files beside the JSON)."""
    folder = checkpoint.read(run).directory
    dest.mkdir(parents=True)
    for name in (checkpoint.MODEL_FILE, checkpoint.STATE_FILE):
        if (folder / name).exists():
            shutil.copy(folder / name, dest / name)
    doc = json.loads((folder / checkpoint.CONFIG_FILE).read_text())
    doc["version"] = 1
    del doc["directory"]
    (dest / checkpoint.CONFIG_FILE).write_text(json.dumps(doc))
    return dest
