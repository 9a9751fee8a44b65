"""The offline stages at tiny size: make-inputs, generate, infer (msame), compare, and every
bad input a user can hand them (one-line error, exit 1, nothing written)."""

import json

import numpy as np
import pytest

from bigbigan.binio import load_bin
from bigbigan.cli.main import main
from bigbigan.compare.files import compare_arrays, load_outputs
from bigbigan.errors import BigBiGANError
from bigbigan.generate import generate
from bigbigan.infer import infer
from bigbigan.inputs import make_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("in"), batch=6, seed=5)


def cli_error(argv, capsys):
    """Run the CLI expecting failure; return its one error line."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_make_inputs_is_deterministic_and_in_range(tmp_path, inputs):
    again = make_inputs(tmp_path, batch=6, seed=5)
    for a, b in zip(inputs, again, strict=True):
        assert a.read_bytes() == b.read_bytes()
    noise, labels = load_bin(inputs[0]), load_bin(inputs[1])
    assert noise.dtype == np.float32 and noise.shape == (6, 100)
    assert np.abs(noise).max() <= 2.0
    assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < 10
    assert [p.name for p in inputs] == ["fake_image.bin", "label.bin"]
    other = make_inputs(tmp_path / "s6", batch=6, seed=6)
    assert other[0].read_bytes() != inputs[0].read_bytes()


def test_make_inputs_real_images_for_the_encoder(tmp_path):
    (images,) = make_inputs(tmp_path, batch=4, dataset="digits")
    array = load_bin(images)
    assert array.shape == (4, 32, 32, 1) and array.min() >= 0 and array.max() <= 1
    assert load_bin(tmp_path / "label.bin").shape == (4,)


def test_infer_writes_msame_outputs_and_timing(tmp_path, tiny_onnx, inputs):
    result = infer(tiny_onnx.path, inputs, tmp_path, loop=3)
    assert [p.name for p in result.outputs] == ["G_output_0.bin"]
    assert len(result.loop_ms) == 3 and result.images_per_s > 0
    summary = json.loads((tmp_path / "G_summary.json").read_text())
    assert summary["timing"]["runs"] == 3 and summary["timing"]["batch"] == 6
    assert summary["outputs"]["files"] == [str(result.outputs[0])]
    images = load_bin(result.outputs[0])
    assert images.shape == (6, 32, 32, 1)


def test_infer_matches_generate_and_is_deterministic(tmp_path, tiny_checkpoint, tiny_onnx, inputs):
    reference = generate(tiny_checkpoint, inputs, tmp_path / "ref.bin")
    onnx_out = infer(tiny_onnx.path, inputs, tmp_path / "a").outputs[0]
    again = infer(tiny_onnx.path, inputs, tmp_path / "b").outputs[0]
    assert onnx_out.read_bytes() == again.read_bytes()
    assert np.abs(load_bin(onnx_out) - reference).max() <= 1e-5
    torch_out = infer(tiny_checkpoint, inputs, tmp_path / "t").outputs[0]
    assert np.array_equal(load_bin(torch_out), reference)


def test_infer_reads_foreign_raw_files(tmp_path, tiny_onnx, inputs):
    """Files written by another program in msame's raw format: no sidecar, just bytes."""
    noise, labels = load_bin(inputs[0]), load_bin(inputs[1])
    noise.tofile(tmp_path / "x1.bin")
    labels.astype("<i4").tofile(tmp_path / "x2.bin")
    result = infer(tiny_onnx.path, [tmp_path / "x1.bin", tmp_path / "x2.bin"], tmp_path / "o")
    expected = infer(tiny_onnx.path, inputs, tmp_path / "e")
    assert result.outputs[0].read_bytes() == expected.outputs[0].read_bytes()


def test_infer_txt_output(tmp_path, tiny_onnx, inputs):
    (path,) = infer(tiny_onnx.path, inputs, tmp_path, outfmt="TXT").outputs
    rows = path.read_text().splitlines()
    assert path.name == "G_output_0.txt" and len(rows) == 6 and len(rows[0].split()) == 1024


def test_compare_statistics_and_tolerance(tmp_path):
    ref = np.zeros((2, 4, 4, 1), np.float32)
    other = ref.copy()
    other[0, 0, 0, 0] = 0.5
    arrays = [ref, other]
    (result,) = compare_arrays(arrays, ["a", "b"], ["a.bin", "b.bin"], tolerance=0.02)
    assert result.stats["max_abs_diff"] == 0.5
    assert result.stats["mean_abs_diff"] == pytest.approx(0.5 / 32)
    assert result.passed is True
    (result,) = compare_arrays(arrays, ["a", "b"], ["a.bin", "b.bin"], tolerance=0.01)
    assert result.passed is False and result.needed == pytest.approx(0.5 / 32)


def test_cli_compare_writes_grid_and_fails_above_tolerance(tmp_path, capsys):
    from bigbigan.binio import save_bin

    rng = np.random.default_rng(0)
    ref = rng.random((9, 32, 32, 1), dtype=np.float32)
    save_bin(tmp_path / "ref.bin", ref)
    (ref + 0.01).astype(np.float32).tofile(tmp_path / "msame.bin")  # no sidecar, as msame writes
    grid = tmp_path / "grid.png"
    argv = ["compare", str(tmp_path / "ref.bin"), str(tmp_path / "msame.bin")]
    assert main([*argv, "--grid", str(grid), "--tolerance", "0.02"]) == 0
    assert grid.read_bytes().startswith(b"\x89PNG")
    capsys.readouterr()
    assert main([*argv, "--tolerance", "0.001", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["pairs"][0]["mean_abs_diff"] == pytest.approx(0.01, rel=1e-3)
    assert report["pairs"][0]["passed"] is False


def test_load_outputs_rejects_a_mismatched_file(tmp_path):
    from bigbigan.binio import save_bin

    save_bin(tmp_path / "ref.bin", np.zeros((4, 32, 32, 1), np.float32))
    np.zeros(100, np.float32).tofile(tmp_path / "bad.bin")
    with pytest.raises(BigBiGANError, match="bad.bin"):
        load_outputs([tmp_path / "ref.bin", tmp_path / "bad.bin"])


# ---- bad input: each a one-line error naming the file or flag, and no output written ----


@pytest.fixture
def bad_dir(tmp_path, inputs):
    return tmp_path


def run_bad(capsys, tiny_onnx, files, out):
    err = cli_error(
        [
            "infer",
            "--model",
            str(tiny_onnx.path),
            "--input",
            ",".join(map(str, files)),
            "--output",
            str(out),
        ],
        capsys,
    )
    assert not list(out.glob("*.bin")), "no output may be written on bad input"
    return err


def test_bad_size_without_sidecar(tmp_path, tiny_onnx, inputs, capsys):
    np.zeros(250, np.float32).tofile(tmp_path / "x1.bin")  # 1000 bytes: not k * 400
    err = run_bad(capsys, tiny_onnx, [tmp_path / "x1.bin", inputs[1]], tmp_path / "o")
    assert "x1.bin" in err and "1000 bytes" in err and "400 bytes each" in err


def test_size_disagreeing_with_sidecar(tmp_path, tiny_onnx, inputs, capsys):
    bad = tmp_path / "fake_image.bin"
    bad.write_bytes(inputs[0].read_bytes()[:-4])
    (tmp_path / "fake_image.bin.json").write_text(
        inputs[0].with_name("fake_image.bin.json").read_text()
    )
    err = run_bad(capsys, tiny_onnx, [bad, inputs[1]], tmp_path / "o")
    assert "fake_image.bin" in err and "sidecar" in err


def test_int64_labels_are_named(tmp_path, tiny_onnx, inputs, capsys):
    from bigbigan.binio import save_bin

    save_bin(tmp_path / "label.bin", load_bin(inputs[1]).astype(np.int64))
    err = run_bad(capsys, tiny_onnx, [inputs[0], tmp_path / "label.bin"], tmp_path / "o")
    assert "int64" in err and "int32" in err and "label.bin" in err


def test_labels_out_of_range(tmp_path, tiny_onnx, inputs, capsys):
    from bigbigan.binio import save_bin

    save_bin(tmp_path / "label.bin", np.full(6, 12, np.int32))
    err = run_bad(capsys, tiny_onnx, [inputs[0], tmp_path / "label.bin"], tmp_path / "o")
    assert "[0, 10)" in err and "12" in err


def test_nan_in_noise(tmp_path, tiny_onnx, inputs, capsys):
    from bigbigan.binio import save_bin

    noise = load_bin(inputs[0]).copy()
    noise[2, 3] = np.nan
    save_bin(tmp_path / "x1.bin", noise)
    err = run_bad(capsys, tiny_onnx, [tmp_path / "x1.bin", inputs[1]], tmp_path / "o")
    assert "NaN/Inf" in err and "x1.bin" in err


@pytest.mark.parametrize("count", [1, 3])
def test_wrong_number_of_input_files(tmp_path, tiny_onnx, inputs, capsys, count):
    files = [inputs[0], inputs[1], inputs[1]][:count]
    err = run_bad(capsys, tiny_onnx, files, tmp_path / "o")
    assert f"{count} file(s) given" in err and "x1, x2" in err


def test_model_that_is_not_what_its_extension_says(tmp_path, inputs, capsys):
    fake = tmp_path / "G.onnx"
    fake.write_bytes(b"this is not a protobuf")
    err = cli_error(
        [
            "infer",
            "--model",
            str(fake),
            "--input",
            f"{inputs[0]},{inputs[1]}",
            "--output",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert "G.onnx" in err


def test_output_directory_that_cannot_be_written(tmp_path, tiny_onnx, inputs, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = cli_error(
        [
            "infer",
            "--model",
            str(tiny_onnx.path),
            "--input",
            f"{inputs[0]},{inputs[1]}",
            "--output",
            str(blocker / "sub"),
        ],
        capsys,
    )
    assert "--output" in err
