"""The CLI grammar of docs/cli.md: one name per thing, old spellings still accepted, help that
shows defaults and choices, --version, "did you mean", msame's device id, NPY outputs, the
layerwise subcommand and an honest ascend message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bigbigan import __version__
from bigbigan.cli.main import SUBCOMMANDS, build_parser, main


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("name", [m.NAME for m in SUBCOMMANDS])
def test_every_help_runs_and_shows_defaults(name, capsys):
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: bigbigan {name}")
    assert "(default: " in out and "--verbose" in out
    assert "(default: None)" not in out


def test_help_shows_choices(capsys):
    with pytest.raises(SystemExit):
        main(["compile", "--help"])
    out = capsys.readouterr().out
    assert "{auto,ort,aoti,tensorrt,openvino,ascend}" in out and "{basic,extended,all}" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"bigbigan {__version__}\n"


def test_python_dash_m_runs_the_same_cli():
    done = subprocess.run(
        [sys.executable, "-m", "bigbigan", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == f"bigbigan {__version__}"


@pytest.mark.parametrize(("typed", "meant"), [("genrate", "generate"), ("comapre", "compare")])
def test_did_you_mean(typed, meant, capsys):
    with pytest.raises(SystemExit) as info:
        main([typed, "--out", "x"])
    assert info.value.code == 2
    assert f"unknown command '{typed}'; did you mean {meant}" in capsys.readouterr().err


def test_an_unknown_command_far_from_any_lists_them(capsys):
    with pytest.raises(SystemExit):
        main(["zzzz"])
    assert "choose from summary, train," in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "device"), [("0", "cuda:0"), ("3", "cuda:3"), ("CPU", "cpu"), ("cuda:1", "cuda:1")]
)
def test_device_takes_msame_device_ids(text, device):
    assert parse("infer", "--model", "m", "--device", text).device == device


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["train", "--out", "r", "--batch-size", "16"], "batch", 16),
        (["train", "--out", "r", "--batch", "16"], "batch", 16),
        (["evaluate", "--batch-size", "50", "--n", "100"], "count", 100),
        (["train-classifier", "--out", "c", "--batch-size", "8"], "batch", 8),
        (["bench", "--repeats", "3"], "loop", 3),
        (["bench", "--loop", "3"], "loop", 3),
        (["infer", "--model", "m", "--output", "o"], "output", "o"),
        (["infer", "--model", "m", "--out", "o", "--repeats", "4"], "loop", 4),
        (["compare", "m.onnx", "--layerwise", "--layerwise-memory", "64"], "layerwise_memory", 64),
        (["layerwise", "m.onnx", "--memory", "64"], "layerwise_memory", 64),
    ],
)
def test_old_and_new_spellings_mean_the_same(argv, dest, value):
    assert getattr(parse(*argv), dest) == value


def test_hidden_aliases_stay_out_of_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--batch BATCH" in out and "--batch-size" not in out


def test_forwarded_argv_keeps_verbose():
    from bigbigan.training import distributed

    args = parse("-v", "train", "--out", "r", "--batch-size", "16", "--nproc", "2")
    forwarded = distributed.forwarded_argv("train", vars(args))
    assert "--verbose" in forwarded and "--batch" in forwarded
    again = parse(*forwarded)
    assert {**vars(again), "nproc": 2} == vars(args)


def test_checkpoint_accepts_the_folder_its_json_or_its_weights(tiny_checkpoint: Path):
    from bigbigan.training import checkpoint

    json_path = checkpoint.resolve(tiny_checkpoint)
    assert json_path == tiny_checkpoint / "checkpoint.json"
    assert checkpoint.resolve(json_path) == json_path
    step_folder = checkpoint.read(tiny_checkpoint).directory  # docs/checkpoints.md
    weights = step_folder / "model.safetensors"
    assert checkpoint.resolve(weights) == step_folder / "checkpoint.json"


def test_generate_from_model_safetensors(tiny_checkpoint, tmp_path, capsys):
    from bigbigan.inputs import make_inputs
    from bigbigan.training import checkpoint

    make_inputs(tmp_path / "in", batch=2)
    argv = ["generate", "--input", str(tmp_path / "in")]
    weights = str(checkpoint.read(tiny_checkpoint).directory / "model.safetensors")
    assert main([*argv, "--checkpoint", weights, "--out", str(tmp_path / "a.bin")]) == 0
    folder = str(tiny_checkpoint)
    assert main([*argv, "--checkpoint", folder, "--out", str(tmp_path / "b.bin")]) == 0
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()


def test_infer_writes_npy_outputs(tiny_onnx, tmp_path, capsys):
    argv = ["infer", "--model", str(tiny_onnx.path), "--batch", "2", "--seed", "3"]
    assert main([*argv, "--out", str(tmp_path / "npy"), "--outfmt", "npy"]) == 0
    assert main([*argv, "--output", str(tmp_path / "bin")]) == 0
    from bigbigan.binio import load_bin

    npy = np.load(tmp_path / "npy" / "G_output_0.npy", allow_pickle=False)
    assert npy.dtype == np.float32 and npy.shape == (2, 32, 32, 1)
    np.testing.assert_array_equal(npy, load_bin(tmp_path / "bin" / "G_output_0.bin"))
    assert not (tmp_path / "npy" / "G_output_0.npy.json").exists()


def test_compile_ascend_says_it_wrote_onnx_not_om(tiny_onnx, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no atc here, whatever the machine has
    out = tmp_path / "G.om"
    argv = ["compile", str(tiny_onnx.path), "--target", "ascend", "--out", str(out)]
    assert main([*argv, "--batch", "2"]) == 0
    text = capsys.readouterr().out
    assert "a static-batch ONNX model for atc, NOT an .om" in text
    assert "atc --framework=5" in text and not out.exists()
    assert (tmp_path / "G.static.onnx").exists()


def test_layerwise_subcommand_matches_compare_layerwise(tiny_onnx, capsys):
    import json

    argv = ["--batch", "2", "--json"]
    assert main(["layerwise", str(tiny_onnx.path), *argv]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert main(["compare", str(tiny_onnx.path), "--layerwise", *argv]) == 0
    through_compare = json.loads(capsys.readouterr().out)
    assert alone["passed"] is True
    assert [r["layer"] for r in alone["layers"]] == [r["layer"] for r in through_compare["layers"]]
