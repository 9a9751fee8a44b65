"""Every example command of the README runs, at tiny size, so the docs cannot drift.

Each line of a ```sh block is a command. A `bigbigan ...` command runs in one temporary folder,
in README order (later commands read what earlier ones wrote: in/, gpu_out.bin, G.onnx, runs/fm),
after the rewrite table below shrinks it; every other command, and the few `bigbigan` ones that
cannot run here, must be in SKIPS with the reason. A new README command that is neither runnable
nor listed fails `test_readme_commands_are_known`, naming it. ```python blocks are executed too,
in the same folder, after the commands.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SRC = ROOT / "src"

# The rewrite table: flag -> tiny value (only flags the command already has are rewritten).
TINY = {
    "--ch": "8",
    "--batch": "4",
    "--steps": "2",
    "--loop": "1",
    "--repeats": "1",
    "--warmup": "0",
    "--micro-batch": "2",
    "--count": "8",
    "--nproc": "2",
    "--batch-sizes": "1,2",
    "--dataset": "digits",  # scikit-learn's bundled digits: no data download, seconds to train
}
# Flags added per subcommand (replacing the command's own value when it has one).
ADDED = {
    "bench": {"--batch-sizes": "1,2", "--backends": "torch,onnxruntime", "--precisions": "fp32"},
    # real test images are still all classified (batch 500); the probes fit on 500 images
    "evaluate": {"--count": "16", "--probe-train": "500"},
    "pipeline": {"--batch": "4", "--loop": "1"},
}
# `--epochs N`: train runs `--steps 2` instead; other subcommands (train-classifier) 1 epoch.
EPOCHS = {"train": ("--steps", "2")}

SKIPS = {
    "make ": "make creates .venv and installs; `make demo` runs `bigbigan pipeline` "
    "(test_pipeline.py), `make bench` runs `bigbigan bench` (run below)",
    "pip install": "installs packages from the network",
    "bash benchmarks/gpu.sh": "needs an NVIDIA GPU",
    "torchrun ": "`--device cuda`: needs NVIDIA GPUs (the CPU `--nproc 2` command below runs)",
    "bigbigan serve": "starts a web server that runs until Ctrl-C (tests/test_serve*.py)",
}
# The original system's files (its frozen .pb, sidecar-less .bin, its run folder): the user
# brings them, no README command makes them; tests/test_import_*.py build them in TensorFlow.
ORIGINAL_FILES = ("bigbigan.pb", "pb_out.bin", "om_out/", "DIR")
NOT_SHRUNK = {"summary"}  # instant; its documented output is checked as written


@dataclass
class Command:
    line: str  # as written in the README
    argv: list[str]  # after `bigbigan`, before rewriting
    expected_json: object = None  # a `# {...}` line right after it: the documented output


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def readme_lines() -> list[tuple[str, object]]:
    """Each command line of the README's sh blocks (comment removed) and the JSON documented
    as its output, if the next line is a `# {...}` comment."""
    found: list[tuple[str, object]] = []
    for block in _blocks(README.read_text(), "sh"):
        for raw in block.splitlines():
            code = raw.split(" #")[0].strip() if not raw.lstrip().startswith("#") else ""
            if code:
                found.append((code, None))
            elif found and raw.strip().startswith("# {"):
                found[-1] = (found[-1][0], json.loads(raw.strip()[2:]))
    return found


def skip_reason(line: str) -> str | None:
    for prefix, reason in SKIPS.items():
        if line.startswith(prefix) or f"&& {prefix}" in line:
            return reason
    if any(name in line for name in ORIGINAL_FILES):
        missing = importlib.util.find_spec("tensorflow") is None
        return "the user's own TensorFlow .pb and files (no README command makes them)" + (
            "; the tf extra is not installed either" if missing else ""
        )
    return None


def commands() -> tuple[list[Command], list[tuple[str, str]]]:
    """The runnable bigbigan commands and the skipped (line, reason) pairs."""
    run, skipped = [], []
    for line, expected in readme_lines():
        reason = skip_reason(line)
        if reason:
            skipped.append((line, reason))
        elif line.startswith("bigbigan "):
            run.append(Command(line, shlex.split(line)[1:], expected))
        else:
            skipped.append((line, ""))  # unknown: test_readme_commands_are_known fails on it
    return run, skipped


def tiny(argv: list[str]) -> list[str]:
    """`argv` rewritten by the table."""
    sub, args = argv[0], list(argv[1:])
    if sub in NOT_SHRUNK:
        return list(argv)
    out: list[str] = []
    i = 0
    while i < len(args):
        flag = args[i]
        takes_value = i + 1 < len(args) and not args[i + 1].startswith("--")
        if flag == "--epochs" and takes_value:
            out += list(EPOCHS.get(sub, ("--epochs", "1")))
            i += 2
        elif flag in TINY and takes_value:
            out += [flag, TINY[flag]]
            i += 2
        else:
            out.append(flag)
            i += 1
    for flag, value in ADDED.get(sub, {}).items():
        out = _set(out, flag, value)
    return [sub, *out]


def _set(args: list[str], flag: str, value: str) -> list[str]:
    if flag in args:
        args = list(args)
        args[args.index(flag) + 1] = value
        return args
    return [*args, flag, value]


def _workdir(tmp: Path, runnable: list[Command]) -> None:
    """The README's relative `models/...` paths: links to the shipped ones, except folders a
    command writes (`--out models/x`), which stay inside `tmp`."""
    written = {c.argv[c.argv.index("--out") + 1] for c in runnable if "--out" in c.argv}
    (tmp / "models").mkdir()
    for entry in (ROOT / "models").iterdir():
        if f"models/{entry.name}" not in written:
            (tmp / "models" / entry.name).symlink_to(entry)


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-m", "bigbigan", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_readme_commands_are_known():
    """Every README command either runs here or is skipped with a stated reason."""
    run, skipped = commands()
    unknown = [line for line, reason in skipped if not reason]
    assert not unknown, f"README commands neither runnable nor in SKIPS: {unknown}"
    assert any(c.argv[0] == "pipeline" for c in run)


def test_rewrite_table():
    argv = ["train", "--dataset", "fashion_mnist", "--epochs", "10", "--out", "runs/fm"]
    assert tiny(argv) == ["train", "--dataset", "digits", "--steps", "2", "--out", "runs/fm"]
    assert tiny(["train-classifier", "--epochs", "8"]) == ["train-classifier", "--epochs", "1"]
    assert tiny(["bench", "--ch", "64"])[:3] == ["bench", "--ch", "8"]
    assert tiny(["summary", "--dataset", "mnist"]) == ["summary", "--dataset", "mnist"]


@pytest.mark.slow
def test_readme_examples_run(tmp_path):
    """Each runnable README command, tiny, in README order, exits 0 (and prints what the README
    says when it documents the output); then the README's Python blocks run."""
    run, _ = commands()
    _workdir(tmp_path, run)
    for command in run:
        argv = tiny(command.argv)
        done = _run(argv, tmp_path)
        assert done.returncode == 0, (
            f"README: {command.line}\nran: bigbigan {shlex.join(argv)}\n"
            f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
        if command.expected_json is not None:
            assert json.loads(done.stdout) == command.expected_json, command.line
    for source in _blocks(README.read_text(), "python"):
        code = subprocess.run(
            [sys.executable, "-c", source],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(SRC)},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert code.returncode == 0, f"README python block failed:\n{source}\n{code.stderr}"
