"""A user's worst day outside training: outputs aimed at inputs, absurd sizes, FIFOs, full
disks, directories in the way, Ctrl-C mid-write, stray temporaries, hostile `.pt2` packages,
big-endian arrays. Each case: exit status, one line naming the flag or file, nothing lost and
nothing left behind."""

from __future__ import annotations

import os
import shutil
import zipfile

import numpy as np
import pytest
from faultkit import leftovers, legacy_copy, run_cli, snapshot

from bigbigan.errors import BigBiGANError
from bigbigan.training import checkpoint

HUGE = "1000000000"


def _generate(ckpt, inputs, out):
    return ["generate", "--checkpoint", str(ckpt), "--input", str(inputs), "--out", str(out)]


# --- no command writes over a file it reads ---------------------------------------------------


def test_generate_over_the_old_layout_weights_is_refused(tmp_path, tiny_checkpoint, tiny_inputs):
    legacy = legacy_copy(tiny_checkpoint, tmp_path / "legacy")
    before = snapshot(legacy)
    result = run_cli(_generate(legacy, tiny_inputs, legacy / "model.safetensors"), tmp_path)
    result.one_line_error("--out", "model.safetensors", "which this command reads")
    assert snapshot(legacy) == before


@pytest.mark.parametrize("target", ["fake_image.bin", "label.bin.json", "hardlink"])
def test_generate_over_its_input_is_refused(tmp_path, tiny_checkpoint, tiny_inputs, target):
    inputs = tmp_path / "in"
    shutil.copytree(tiny_inputs, inputs)
    out = inputs / target
    if target == "hardlink":
        out = tmp_path / "elsewhere.bin"
        os.link(inputs / "fake_image.bin", out)
    before = snapshot(inputs)
    result = run_cli(_generate(tiny_checkpoint, inputs, out), tmp_path)
    result.one_line_error("which this command reads")
    assert snapshot(inputs) == before and leftovers(tmp_path) == []


def test_generate_library_call_refuses_too(tmp_path, tiny_checkpoint, tiny_inputs):
    from bigbigan.generate import generate
    from bigbigan.inputs import input_files

    files = input_files(tiny_inputs)
    with pytest.raises(BigBiGANError, match="which this command reads"):
        generate(tiny_checkpoint, files, files[0])


def test_infer_summary_over_an_input_or_the_model_is_refused(
    tmp_path, tiny_checkpoint, tiny_inputs
):
    inputs = tmp_path / "in"
    shutil.copytree(tiny_inputs, inputs)
    before = snapshot(inputs)
    argv = ["infer", "--model", str(tiny_checkpoint), "--input", str(inputs)]
    run_cli([*argv, "--summary", str(inputs / "label.bin")], tmp_path).one_line_error(
        "which this command reads"
    )
    assert snapshot(inputs) == before
    weights_json = checkpoint.resolve(tiny_checkpoint)
    model_before = weights_json.read_bytes()
    run_cli([*argv, "--summary", str(weights_json)], tmp_path).one_line_error("reads")
    assert weights_json.read_bytes() == model_before


def test_compare_grid_over_an_input_is_refused(tmp_path, tiny_checkpoint, tiny_inputs):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    assert run_cli(_generate(tiny_checkpoint, tiny_inputs, a), tmp_path).status == 0
    shutil.copy(a, b)
    shutil.copy(f"{a}.json", f"{b}.json")
    before = snapshot(tmp_path)
    result = run_cli(["compare", str(a), str(b), "--grid", str(b)], tmp_path)
    result.one_line_error("which this command reads")
    assert snapshot(tmp_path) == before


# --- sizes checked before allocation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["make-inputs", "--batch", HUGE], "--batch 1000000000 x --z-dim 100: needs"),
        (
            ["make-inputs", "--z-dim", "400000000000"],
            "--z-dim 400000000000: needs",
        ),
    ],
)
def test_make_inputs_with_absurd_sizes(tmp_path, argv, needle):
    out = tmp_path / "new" / "in"
    line = run_cli([*argv, "--out", str(out)], tmp_path).one_line_error(needle, "is available")
    assert "GiB" in line or "TiB" in line
    assert not (tmp_path / "new").exists()  # the folder it created is removed


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["summary", "--ch", "8000000"], "--ch 8000000: needs at least"),
        (["train", "--dataset", "digits", "--ch", "8000000"], "--ch 8000000: needs at least"),
        (
            ["generate", "--count", "10000000000000", "--shard-size", "1"],
            "--count 10000000000000 / --shard-size 1: needs at least",
        ),
    ],
)
def test_absurd_widths_and_counts(tmp_path, tiny_checkpoint, argv, needle):
    out = tmp_path / "new"
    if argv[0] == "train":
        argv = [*argv, "--out", str(out)]
    elif argv[0] == "generate":
        argv = [*argv, "--checkpoint", str(tiny_checkpoint), "--shard-out", str(out)]
    run_cli(argv, tmp_path).one_line_error(needle, "is available")
    assert not out.exists()


def test_infer_with_a_huge_batch(tmp_path, tiny_checkpoint):
    result = run_cli(["infer", "--model", str(tiny_checkpoint), "--batch", HUGE], tmp_path)
    result.one_line_error("--batch 1000000000: needs at least")


def test_npy_whose_header_claims_a_billion_rows(tmp_path, tiny_checkpoint, tiny_inputs):
    evil = tmp_path / "evil.npy"
    with open(evil, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 100)}
        )
        f.write(b"\0" * 4000)
    argv = ["infer", "--model", str(tiny_checkpoint), "--input", f"{evil},{tiny_inputs}/label.bin"]
    run_cli(argv, tmp_path).one_line_error(str(evil), "header claims", "the file holds")


def test_npy_holding_pickled_objects_is_refused_unread(tmp_path, tiny_checkpoint, tiny_inputs):
    evil = tmp_path / "evil.npy"
    np.save(evil, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    argv = ["infer", "--model", str(tiny_checkpoint), "--input", f"{evil},{tiny_inputs}/label.bin"]
    run_cli(argv, tmp_path).one_line_error(str(evil), "Python objects")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--streams", "100000"], "--streams 100000: more copies than the"),
        (["--batch", "2", "--micro-batch", "4"], "--micro-batch 4: larger than the batch of 2"),
    ],
)
def test_streams_and_micro_batch_are_bounded(tmp_path, tiny_onnx, flags, needle):
    result = run_cli(["infer", "--model", str(tiny_onnx.path), *flags], tmp_path)
    result.one_line_error(needle)


# --- only regular files are read --------------------------------------------------------------


def test_a_fifo_sidecar_does_not_hang(tmp_path, tiny_checkpoint, tiny_inputs):
    inputs = tmp_path / "in"
    shutil.copytree(tiny_inputs, inputs)
    (inputs / "fake_image.bin.json").unlink()
    os.mkfifo(inputs / "fake_image.bin.json")
    result = run_cli(_generate(tiny_checkpoint, inputs, tmp_path / "o.bin"), tmp_path, timeout=120)
    result.one_line_error("fake_image.bin.json", "found a FIFO")


def test_a_fifo_checkpoint_json_does_not_hang(tmp_path, tiny_inputs):
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / "checkpoint.json")
    argv = _generate(tmp_path / "run", tiny_inputs, tmp_path / "o.bin")
    run_cli(argv, tmp_path, timeout=120).one_line_error("checkpoint.json", "found a FIFO")


@pytest.mark.parametrize("name", ["G.onnx", "noise.npy", "noise.bin"])
def test_fifo_models_and_inputs_do_not_hang(tmp_path, tiny_checkpoint, tiny_inputs, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    if name == "G.onnx":
        argv = ["infer", "--model", str(fifo)]
    else:
        argv = [
            "infer",
            "--model",
            str(tiny_checkpoint),
            "--input",
            f"{fifo},{tiny_inputs}/label.bin",
        ]
    result = run_cli(argv, tmp_path, timeout=120)
    result.one_line_error(name)


# --- OS errors at a write ---------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["generate", "make-inputs", "infer", "export"])
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, tiny_checkpoint, tiny_inputs, stage):
    out = tmp_path / "new" / "out"
    argv = {
        "generate": _generate(tiny_checkpoint, tiny_inputs, out / "o.bin"),
        "make-inputs": ["make-inputs", "--out", str(out)],
        "infer": ["infer", "--model", str(tiny_checkpoint), "--output", str(out)],
        "export": ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out / "G.onnx")],
    }[stage]
    result = run_cli(argv, tmp_path, fsize=2000)
    result.one_line_error("File too large")
    assert not (tmp_path / "new").exists()


def test_a_full_disk_keeps_an_existing_output_folder(tmp_path, tiny_inputs):
    out = tmp_path / "in"
    shutil.copytree(tiny_inputs, out)
    before = snapshot(out)
    result = run_cli(["make-inputs", "--out", str(out), "--batch", "64"], tmp_path, fsize=2000)
    result.one_line_error("File too large")
    assert snapshot(out) == before  # the old files stand, no temporaries


def test_a_directory_in_the_way_leaves_no_stray_sidecar(tmp_path, tiny_checkpoint, tiny_inputs):
    (tmp_path / "o.bin").mkdir()
    result = run_cli(_generate(tiny_checkpoint, tiny_inputs, tmp_path / "o.bin"), tmp_path)
    line = result.one_line_error("o.bin")
    assert "is a folder" in line or "is a directory" in line
    assert not (tmp_path / "o.bin.json").exists() and leftovers(tmp_path) == []


def test_a_fifo_or_device_as_output_is_not_replaced(tmp_path, tiny_checkpoint):
    fifo = tmp_path / "summary.json"
    os.mkfifo(fifo)
    argv = ["infer", "--model", str(tiny_checkpoint), "--batch", "2", "--summary"]
    run_cli([*argv, str(fifo)], tmp_path).one_line_error("summary.json", "is a FIFO")
    assert fifo.is_fifo()
    run_cli([*argv, "/dev/null"], tmp_path).one_line_error("/dev/null", "a character device")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_a_file_in_the_way_of_a_folder(tmp_path):
    (tmp_path / "f").write_text("mine")
    result = run_cli(["make-inputs", "--out", str(tmp_path / "f" / "in")], tmp_path)
    result.one_line_error("--out")
    assert (tmp_path / "f").read_text() == "mine"


def test_ctrl_c_at_the_rename_leaves_nothing(tmp_path):
    out = tmp_path / "new"

    def interrupt_renames() -> None:
        def replace(*args, **kwargs):
            raise KeyboardInterrupt

        os.replace = replace

    result = run_cli(["make-inputs", "--out", str(out)], tmp_path, before=interrupt_renames)
    assert result.status == 130
    assert not out.exists() and leftovers(tmp_path) == []


def test_stray_temporaries_of_dead_processes_are_cleaned(tmp_path):
    out = tmp_path / "in"
    out.mkdir()
    dead = out / ".fake_image.bin.999999999.abcd.tmp"
    alive = out / f".fake_image.bin.{os.getpid()}.abcd.tmp"
    dead.write_bytes(b"half")
    alive.write_bytes(b"being written")
    assert run_cli(["make-inputs", "--out", str(out)], tmp_path).status == 0
    assert not dead.exists() and alive.exists()


def test_train_classifier_refuses_to_overwrite(tmp_path):
    out = tmp_path / "clf"
    out.mkdir()
    (out / "classifier.json").write_text("{}")
    result = run_cli(["train-classifier", "--dataset", "digits", "--out", str(out)], tmp_path)
    result.one_line_error("--out", "already holds a classifier")
    assert (out / "classifier.json").read_text() == "{}"


def test_big_endian_bin_named_by_its_sidecar_is_converted(tmp_path):
    from bigbigan.binio import load_bin

    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    values.astype(">f4").tofile(tmp_path / "be.bin")
    (tmp_path / "be.bin.json").write_text('{"dtype": ">f4", "shape": [2, 3]}')
    np.testing.assert_array_equal(load_bin(tmp_path / "be.bin"), values)


def test_big_endian_npy_is_converted(tmp_path, tiny_checkpoint, tiny_inputs):
    from bigbigan.binio import load_bin

    noise = load_bin(tiny_inputs / "fake_image.bin")
    labels = load_bin(tiny_inputs / "label.bin")
    np.save(tmp_path / "le.npy", noise)
    np.save(tmp_path / "be.npy", noise.astype(">f4"))
    np.save(tmp_path / "y.npy", labels.astype(">i4"))
    for name in ("le", "be"):
        argv = _generate(tiny_checkpoint, f"{tmp_path}/{name}.npy,{tmp_path}/y.npy", "x")
        argv[-1] = str(tmp_path / f"{name}.bin")
        assert run_cli(argv, tmp_path).status == 0
    assert (tmp_path / "le.bin").read_bytes() == (tmp_path / "be.bin").read_bytes()


# --- .pt2 packages are executables ------------------------------------------------------------


class Payload:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(tmp_path):
    import json
    import pickle

    marker = tmp_path / "PAYLOAD_RAN"
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(Payload(str(marker))))
        archive.writestr("evil/data/aotinductor/model/model.wrapper.so", b"\x7fELF")
        archive.writestr("evil/version", "6")
    spec = [{"name": "x1", "dtype": "float32", "shape": [None, 100]}]
    out = [{"name": "images", "dtype": "float32", "shape": [None, 32, 32, 1]}]
    sidecar = {"format": "bigbigan-aoti", "inputs": spec, "outputs": out, "device": "cpu"}
    (tmp_path / "evil.pt2.json").write_text(json.dumps(sidecar))
    return evil, marker


def test_a_planted_pt2_payload_never_runs(tmp_path):
    evil, marker = _plant(tmp_path)
    result = run_cli(["infer", "--model", str(evil)], tmp_path)
    line = result.one_line_error(str(evil), "did not compile", "--trust-model")
    assert "bigbigan compile --target aoti" in line
    assert not marker.exists()
    with pytest.raises(BigBiGANError, match="did not compile"):  # a runner built by hand
        from bigbigan.runtimes.aoti import AOTIRunner

        AOTIRunner(evil).load()
    assert not marker.exists()


@pytest.mark.slow
def test_compiled_packages_are_trusted_and_changed_ones_are_not(tmp_path, tiny_aoti, monkeypatch):
    ok = run_cli(["infer", "--model", str(tiny_aoti.path)], tmp_path)
    assert ok.status == 0, ok.err
    copy = tmp_path / "G.pt2"
    shutil.copy(tiny_aoti.path, copy)
    shutil.copy(f"{tiny_aoti.path}.json", f"{copy}.json")
    with zipfile.ZipFile(copy, "a") as archive:
        archive.writestr("G/extra.txt", "changed after compile")
    run_cli(["infer", "--model", str(copy)], tmp_path).one_line_error("did not compile")
    trusted = run_cli(["infer", "--model", str(copy), "--trust-model"], tmp_path)
    assert trusted.status == 0, trusted.err
    monkeypatch.setenv("BIGBIGAN_TRUST_STORE", str(tmp_path / "empty"))  # another user
    run_cli(["infer", "--model", str(tiny_aoti.path)], tmp_path).one_line_error("did not compile")


def test_ctrl_c_in_sharded_generation_keeps_the_finished_shards(tmp_path, tiny_checkpoint):
    out = tmp_path / "shards"
    argv = ["generate", "--checkpoint", str(tiny_checkpoint), "--count", "4"]
    argv += ["--shard-size", "2", "--batch", "2", "--shard-out", str(out)]

    def interrupt_second_shard() -> None:
        from bigbigan import generate

        real = generate._write_shard

        def write_shard(runner, directory, shard, params):
            if shard.index == 1:
                raise KeyboardInterrupt
            return real(runner, directory, shard, params)

        generate._write_shard = write_shard

    assert run_cli(argv, tmp_path, before=interrupt_second_shard).status == 130
    assert (out / "shard_00000.json").is_file() and leftovers(out) == []
    again = run_cli(argv, tmp_path)
    assert again.status == 0 and "1 written, 1 verified and kept" in again.out, again.err


def test_a_replaced_input_does_not_block_a_file_that_reuses_its_inode(tmp_path):
    """A command that read checkpoint.json and then replaced it (a resumed run's commit) may
    write a new file that the filesystem gives the old inode number; only the file an input
    path still names is protected."""
    from bigbigan import fsutil

    read = tmp_path / "checkpoint.json"
    read.write_text("{}")
    out = tmp_path / "samples.png"
    out.write_bytes(b"png")
    with fsutil.command_scope():
        fsutil.note_input(read)
        fsutil.guard_output(tmp_path / "other.png")
        st = os.stat(out)  # stand in for inode reuse: the scope's record now names `out`'s inode
        scope = fsutil._scopes[-1]
        scope.inputs = {(st.st_dev, st.st_ino): read}
        fsutil.guard_output(out)  # `read` is another file now: allowed
        with pytest.raises(BigBiGANError, match="which this command reads"):
            fsutil.guard_output(read)  # the input itself still is refused
