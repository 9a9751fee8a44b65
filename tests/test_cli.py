"""The error boundary of the CLI: what reaches a user for each kind of failure (docs/cli.md,
"Errors and exit codes"). A user's mistake or the OS's refusal is one line and exit 1; a bug is
a traceback plus one line and exit 70; --verbose or BIGBIGAN_DEBUG=1 shows any traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from bigbigan.cli.main import EXIT_BUG, main
from bigbigan.errors import BigBiGANError, ParameterError


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], status: int = 1) -> str:
    """Run the CLI expecting failure; return its single stderr line (no traceback)."""
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"bigbigan {argv[0]}: error: "), err
    return err


@pytest.fixture
def pair(tmp_path: Path) -> list[str]:
    """Two small image batches (.npy) that compare can read."""
    rng = np.random.default_rng(0)
    ref = rng.random((2, 32, 32, 1), dtype=np.float32)
    np.save(tmp_path / "a.npy", ref)
    np.save(tmp_path / "b.npy", ref + np.float32(1e-3))
    return [str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A regular file: a path under it cannot be written, even by root (unlike chmod)."""
    path = tmp_path / "somefile"
    path.write_text("x")
    return path


@pytest.fixture(autouse=True)
def no_debug_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BIGBIGAN_DEBUG", raising=False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A make-inputs folder of 2 samples."""
    from bigbigan.inputs import make_inputs

    folder = tmp_path_factory.mktemp("in")
    make_inputs(folder, batch=2)
    return str(folder)


def test_generate_out_is_an_existing_folder(tiny_checkpoint, inputs, tmp_path, capsys):
    folder = tmp_path / "outdir"
    folder.mkdir()
    argv = ["generate", "--checkpoint", str(tiny_checkpoint), "--input", inputs]
    err = one_line_error([*argv, "--out", str(folder)], capsys)
    assert f"--out {folder}: is a folder" in err
    assert list(folder.iterdir()) == []


def test_generate_out_under_a_file(tiny_checkpoint, inputs, a_file, capsys):
    argv = ["generate", "--checkpoint", str(tiny_checkpoint), "--input", inputs]
    err = one_line_error([*argv, "--out", str(a_file / "out.bin")], capsys)
    assert str(a_file / "out.bin") in err and "cannot create directory" in err


@pytest.mark.parametrize("flag", ["--grid", "--summary"])
def test_compare_outputs_under_a_file(flag, pair, a_file, capsys):
    target = a_file / "report.out"
    err = one_line_error(["compare", *pair, flag, str(target)], capsys)
    assert str(target) in err


def test_permission_denied_names_the_output(pair, tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr("bigbigan.fsutil.tempfile.mkstemp", refuse)
    summary = tmp_path / "s.json"
    err = one_line_error(["compare", *pair, "--summary", str(summary)], capsys)
    assert f"{summary}: Permission denied (EACCES)" in err


def test_full_disk_is_one_line_and_leaves_no_partial_file(pair, tmp_path, monkeypatch, capsys):
    def half_then_full(self: Path, data: bytes) -> int:
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    out = tmp_path / "out"
    out.mkdir()
    summary = out / "summary.json"
    err = one_line_error(["compare", *pair, "--summary", str(summary)], capsys)
    assert f"{summary}: No space left on device (ENOSPC)" in err
    assert list(out.iterdir()) == []  # neither the summary nor a temporary file


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--dataset", "digits", "--out", "{tmp}/run"],
        ["evaluate", "--checkpoint", "{tmp}/none"],
        ["train-classifier", "--dataset", "digits", "--out", "{tmp}/clf"],
        ["generate", "--checkpoint", "{tmp}/none", "--input", "a.bin", "--out", "{tmp}/o.bin"],
    ],
)
@pytest.mark.parametrize("device", ["cuda", "0"])
def test_cuda_on_a_cpu_only_build(argv, device, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    err = one_line_error([*argv, "--device", device], capsys)
    shown = "cuda" if device == "cuda" else "cuda:0"
    assert f"--device {shown}: this torch build has no CUDA support" in err
    assert list(tmp_path.iterdir()) == []  # failed before any work


@pytest.mark.parametrize("command", ["train", "evaluate", "generate", "bench", "infer"])
def test_an_unknown_device_name(command, tmp_path, capsys):
    required = {
        "train": ["--out", str(tmp_path / "r")],
        "generate": ["--checkpoint", "c"],
        "infer": ["--model", "m.onnx"],
    }
    err = one_line_error([command, *required.get(command, []), "--device", "gpu"], capsys)
    assert "--device gpu: expected cpu, cuda, cuda:N or a GPU index N" in err


def test_an_internal_error_is_reported_as_a_bug(monkeypatch, capsys):
    def broken(module):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("bigbigan.model.networks.count_parameters", broken)
    assert main(["summary", "--ch", "8"]) == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    last = err.strip().splitlines()[-1]
    assert last == (
        "bigbigan summary: error: internal error (this is a bug; please report it with the "
        "traceback): ZeroDivisionError: division by zero"
    )


@pytest.mark.parametrize("how", ["--verbose before", "-v after", "BIGBIGAN_DEBUG"])
def test_verbose_shows_the_traceback_and_its_cause(how, inputs, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.json").write_text("{not json")  # read_document chains the JSON error
    argv = ["generate", "--checkpoint", str(run), "--input", inputs, "--out", str(tmp_path / "o")]
    if how == "--verbose before":
        argv = ["--verbose", *argv]
    elif how == "-v after":
        argv = [*argv, "-v"]
    else:
        monkeypatch.setenv("BIGBIGAN_DEBUG", "1")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "JSONDecodeError" in err  # the cause, chained with `raise ... from err`
    assert "The above exception was the direct cause of the following exception" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("bigbigan generate: error: ") and "not valid JSON" in last


def test_verbose_also_shows_a_cause_hidden_with_from_none(monkeypatch, tmp_path, capsys):
    """Code we call may still `raise ... from None`; under --verbose the boundary shows it."""

    def refuse(*args, **kwargs):
        try:
            {}["missing"]
        except KeyError:
            raise BigBiGANError("refused") from None

    monkeypatch.setattr("bigbigan.inputs.make_inputs", refuse)
    assert main(["--verbose", "make-inputs", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "KeyError: 'missing'" in err
    assert err.strip().splitlines()[-1] == "bigbigan make-inputs: error: refused"


def test_without_verbose_a_user_error_is_one_line(capsys):
    err = one_line_error(["summary", "--dataset", "nope"], capsys)
    assert "nope" in err


def test_a_parameter_error_names_the_flag(monkeypatch, tmp_path, capsys):
    def refuse(*args, **kwargs):
        raise ParameterError("num_classes", 3, "expected at least 10 labels")

    monkeypatch.setattr("bigbigan.inputs.make_inputs", refuse)
    err = one_line_error(["make-inputs", "--out", str(tmp_path)], capsys)
    assert err.endswith("error: --num-classes 3: expected at least 10 labels\n")
    assert str(ParameterError("num_classes", 3, "x")) == "num_classes=3: x"


def test_interrupted(monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bigbigan.model.networks.count_parameters", interrupt)
    assert main(["summary", "--ch", "8"]) == 130
    assert capsys.readouterr().err == "bigbigan summary: error: interrupted\n"


def test_usage_errors_keep_exit_2(pair, capsys):
    err = one_line_error(["compare", pair[0]], capsys, status=2)
    assert "give the reference and at least one file" in err
    with pytest.raises(SystemExit) as info:
        main(["compare", *pair, "--no-such-flag"])
    assert info.value.code == 2
