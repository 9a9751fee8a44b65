"""`bigbigan serve` below the page: the class-weight graph, the engine's requests (what they
run, that they agree with each other and with PyTorch, that concurrent calls do not mix), the
downloads, and the upload checks. The page itself is driven in a browser in
test_serve_browser.py. None of this needs Gradio."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bigbigan.binio import load_bin
from bigbigan.compile import CompileReport
from bigbigan.errors import BigBiGANError
from bigbigan.export import ExportReport
from bigbigan.serve.artefacts import (
    CLASS_WEIGHTS,
    Artefacts,
    build_mixer,
    class_weight_graph,
    describe,
)
from bigbigan.serve.engine import Engine, open_engine
from bigbigan.serve.uploads import MAX_UPLOAD_BYTES, UploadError, check_upload, load_upload
from bigbigan.shipped import MODELS_DIR

CLASSIFIER = MODELS_DIR / "classifier_fashion_mnist"  # 1 channel, 10 classes, as the tiny model


@pytest.fixture(scope="module")
def engine(
    tiny_checkpoint: Path,
    tiny_onnx: ExportReport,
    tiny_ort: CompileReport,
    tiny_encoder_onnx: ExportReport,
    tmp_path_factory: pytest.TempPathFactory,
) -> Engine:
    workdir = tmp_path_factory.mktemp("serve")
    artefacts = Artefacts(
        generator=tiny_ort.path,
        encoder=tiny_encoder_onnx.path,
        mixer=build_mixer(tiny_onnx.path, workdir),
    )
    engine = open_engine(
        workdir, checkpoint=tiny_checkpoint, classifier=CLASSIFIER, artefacts=artefacts
    )
    yield engine
    engine.close()


def _torch_images(checkpoint: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    from bigbigan.runtimes import TorchRunner

    with TorchRunner(checkpoint) as runner:
        return runner.infer(feed)["images"]


def test_class_weight_graph_matches_labels_for_one_hot(tiny_onnx: ExportReport) -> None:
    import onnx

    from bigbigan.runtimes.onnxruntime import import_onnxruntime

    ort = import_onnxruntime()
    model = onnx.load(str(tiny_onnx.path))
    labels = ort.InferenceSession(model.SerializeToString())
    weights = ort.InferenceSession(class_weight_graph(model, 10).SerializeToString())
    assert [i.name for i in weights.get_inputs()] == ["x1", CLASS_WEIGHTS]
    z = np.random.default_rng(3).standard_normal((5, 100)).astype(np.float32)
    y = np.array([0, 3, 9, 3, 1], np.int32)
    by_label = labels.run(None, {"x1": z, "x2": y})[0]
    by_weight = weights.run(None, {"x1": z, CLASS_WEIGHTS: np.eye(10, dtype=np.float32)[y]})[0]
    np.testing.assert_allclose(by_weight, by_label, atol=1e-6)
    with pytest.raises(BigBiGANError, match="embedding table of 10 rows, expected at least 11"):
        class_weight_graph(model, 11)


def test_a_generator_trained_with_label_dropout_walks_between_its_classes(tmp_path: Path) -> None:
    """Label dropout adds a "no label" row to the embedding table (the shipped model's recipe):
    the page's class weights cover the classes alone, and one-hot weights draw the class."""
    from bigbigan.config import TrainConfig
    from bigbigan.training.loop import model_config_for, train

    cfg = model_config_for("digits", ch=8, label_dropout=0.5, stochastic_encoder=True, ema=True)
    steps = TrainConfig(dataset="digits", batch_size=16, steps=2)
    run = train(steps, cfg, tmp_path / "run", progress=False)
    engine = open_engine(tmp_path / "serve", checkpoint=Path(run), echo=lambda _: None)
    try:
        grid = engine.grid([2, 7], [5], truncation=2.0).arrays["images"]
        between = engine.interpolate((5, 5), (2, 7), steps=3, truncation=2.0)
        assert between.arrays[CLASS_WEIGHTS].shape == (3, 10)
        np.testing.assert_allclose(between.arrays["images"][[0, -1]], grid, atol=1e-5)
    finally:
        engine.close()


def test_class_weight_graph_refuses_an_unconditional_generator(
    tiny_unconditional_checkpoint: Path, tmp_path: Path
) -> None:
    import onnx

    from bigbigan.export import export_onnx

    path = export_onnx(tiny_unconditional_checkpoint, tmp_path / "G.onnx").path
    with pytest.raises(BigBiGANError, match="one embedding lookup of label input x2, found 0"):
        class_weight_graph(onnx.load(str(path)), 10)


def test_describe_reads_how_a_model_was_made(
    tiny_checkpoint: Path, tiny_onnx: ExportReport, tiny_ort: CompileReport, tmp_path: Path
) -> None:
    assert describe(tiny_ort.path) == ("compiled ort", "fp32")
    assert describe(tiny_onnx.path) == ("exported onnx", "fp32")
    assert describe(tiny_checkpoint) == ("checkpoint", "fp32")
    bare = tmp_path / "G.engine"
    bare.write_bytes(b"")
    assert describe(bare) == ("engine", "fp32")  # no sidecar: the file type, fp32 assumed


def test_grid_rows_are_classes_columns_are_seeds_and_match_pytorch(
    engine: Engine, tiny_checkpoint: Path
) -> None:
    result = engine.grid([2, 5, 7], [10, 11], truncation=1.0)
    x1, x2, images = result.arrays["x1"], result.arrays["x2"], result.arrays["images"]
    assert x1.shape == (6, 100) and images.shape == (6, 32, 32, 1)
    assert x2.tolist() == [2, 2, 5, 5, 7, 7]
    np.testing.assert_array_equal(x1[0], engine.latent(10, 1.0))  # a column shares its latent
    np.testing.assert_array_equal(x1[4], engine.latent(10, 1.0))
    np.testing.assert_array_equal(x1[5], engine.latent(11, 1.0))
    assert np.abs(x1).max() <= 1.0
    assert [len(r) for r in result.rows] == [2, 2, 2] and len(result.labels) == 3
    reference = _torch_images(tiny_checkpoint, {"x1": x1, "x2": x2})
    np.testing.assert_allclose(images, reference, atol=1e-4)
    (call,) = result.calls
    assert (call.backend, call.made, call.precision, call.batch) == (
        "onnxruntime",
        "compiled ort",
        "fp32",
        6,
    )
    assert "generator: onnxruntime (compiled ort), fp32, batch 6" in result.timing


def test_interpolation_ends_are_the_grid_images(engine: Engine) -> None:
    grid = engine.grid([1, 8], [4, 6], truncation=2.0).arrays["images"]  # (1,4) (1,6) (8,4) (8,6)
    between = engine.interpolate((4, 6), (1, 8), steps=5, truncation=2.0)
    strip = between.arrays["images"]
    assert strip.shape == (5, 32, 32, 1) and between.calls[0].made == "compiled ort"
    assert CLASS_WEIGHTS in between.arrays and "x2" not in between.arrays
    np.testing.assert_allclose(strip[0], grid[0], atol=1e-5)  # seed 4, class 1
    np.testing.assert_allclose(strip[-1], grid[3], atol=1e-5)  # seed 6, class 8
    np.testing.assert_allclose(between.arrays[CLASS_WEIGHTS][2, [1, 8]], [0.5, 0.5])
    same = engine.interpolate((4, 6), (1, 1), steps=3, truncation=2.0)
    assert same.arrays["x2"].tolist() == [1, 1, 1] and CLASS_WEIGHTS not in same.arrays
    np.testing.assert_allclose(same.arrays["images"][0], grid[0], atol=1e-5)


def test_reconstruction_reads_the_class_and_uses_the_given_one(engine: Engine) -> None:
    image = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    read = engine.reconstruct(image)
    assert set(read.arrays) == {"x", "z", "x2", "images"}
    assert read.arrays["z"].shape == (1, 100) and read.arrays["images"].shape == (1, 32, 32, 1)
    assert [c.stage for c in read.calls] == ["classifier", "encoder", "generator", "classifier"]
    assert "classifier reads x as" in read.text and "the classifier's reading of x" in read.text
    given = engine.reconstruct(image, label=4)
    assert given.arrays["x2"].tolist() == [4] and "y = **4** (given)" in given.text
    np.testing.assert_array_equal(given.arrays["z"], read.arrays["z"])
    with pytest.raises(BigBiGANError, match=r"expected \[1, 32, 32, 1\]"):
        engine.reconstruct(image[..., 0])


def test_requests_refuse_out_of_range_values(engine: Engine) -> None:
    with pytest.raises(BigBiGANError, match="seeds: expected 1 to 16, found 17"):
        engine.grid([0], range(17), 2.0)
    with pytest.raises(BigBiGANError, match="class 10: expected 0 to 9"):
        engine.grid([10], [0], 2.0)
    with pytest.raises(BigBiGANError, match="classes: pick at least one"):
        engine.grid([], [0], 2.0)
    with pytest.raises(BigBiGANError, match="truncation 3: expected 0.1 to 2"):
        engine.grid([0], [0], 3.0)
    with pytest.raises(BigBiGANError, match="steps 1: expected 2 to 16"):
        engine.interpolate((0, 1), (0, 1), 1, 2.0)


def test_downloads_are_the_offline_format_inside_the_workdir(engine: Engine) -> None:
    result = engine.save(engine.grid([3], [0, 1, 2], truncation=2.0))
    names = sorted(p.name for p in result.files)
    assert names == sorted(
        ["grid.png"] + [f"{n}.bin{s}" for n in ("x1", "x2", "images") for s in ("", ".json")]
    )
    for path in result.files:
        assert path.is_relative_to(engine.workdir)
    for name, array in result.arrays.items():
        found = load_bin(result.png.parent / f"{name}.bin")  # dtype and shape from the sidecar
        assert found.dtype == array.dtype
        np.testing.assert_array_equal(found, array)
    with Image.open(result.png) as picture:
        assert picture.format == "PNG" and picture.width > 3 * 32


def test_concurrent_requests_do_not_mix(engine: Engine) -> None:
    jobs = [([c], [c, c + 20], 1.5) for c in range(8)]
    expected = [engine.grid(*job).arrays["images"] for job in jobs]
    found: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        start.wait()
        for _ in range(3):
            images = engine.grid(*jobs[i]).arrays["images"]
            assert i not in found or np.array_equal(found[i], images)
            found[i] = images

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(found) == list(range(len(jobs)))
    for i, images in found.items():
        np.testing.assert_array_equal(images, expected[i])


def _png(path: Path, size: tuple[int, int] = (64, 48), value: int = 200) -> Path:
    Image.new("L", size, value).save(path)
    return path


def test_upload_becomes_the_encoder_input(tmp_path: Path) -> None:
    path = tmp_path / "shirt.png"
    picture = Image.new("RGB", (64, 64), (0, 0, 0))
    picture.paste((255, 255, 255), (16, 0, 48, 64))
    picture.save(path)
    x = load_upload(path, resolution=32, channels=1)
    assert x.shape == (1, 32, 32, 1) and x.dtype == np.float32
    assert x[0, 16, 16, 0] == pytest.approx(1.0) and x[0, 16, 2, 0] == pytest.approx(0.0)
    inverted = load_upload(path, resolution=32, channels=1, invert=True)
    np.testing.assert_allclose(inverted, 1 - x)
    assert load_upload(path, resolution=32, channels=3).shape == (1, 32, 32, 3)


def test_upload_refuses_oversized_non_image_and_foreign_files(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(MAX_UPLOAD_BYTES))
    with pytest.raises(
        UploadError, match=r"upload refused: big.png is 1.0 MB, the limit is 1.0 MB"
    ):
        check_upload(big)
    text = tmp_path / "notes.txt"
    text.write_text("not a picture\n")
    with pytest.raises(UploadError, match=r"notes.txt is not an image \(PNG, JPEG"):
        check_upload(text)
    tiff = tmp_path / "scan.tif"
    Image.new("L", (8, 8)).save(tiff)
    with pytest.raises(UploadError, match="scan.tif is a TIFF image, expected PNG, JPEG"):
        check_upload(tiff)
    huge = _png(tmp_path / "huge.png", size=(5000, 5000), value=0)  # small file, many pixels
    with pytest.raises(UploadError, match="huge.png is 5000×5000 pixels, the limit is"):
        check_upload(huge)
    assert check_upload(_png(tmp_path / "ok.png"), name="shown name") == "PNG"
    with pytest.raises(UploadError, match="shown name is not an image"):
        check_upload(text, name="shown name")


def test_upload_limit_counts_bytes_not_pixels(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="PNG")  # ~1.4 MB: noise does not compress
    path = tmp_path / "noise.png"
    path.write_bytes(buffer.getvalue())
    assert path.stat().st_size > MAX_UPLOAD_BYTES
    with pytest.raises(UploadError, match="noise.png is 1.4 MB"):
        load_upload(path, resolution=32, channels=1)


def test_cli_serve_reports_a_missing_checkpoint(tmp_path: Path, capsys) -> None:
    from bigbigan.cli.main import main

    assert main(["serve", "--checkpoint", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bigbigan serve: error:") and len(err.splitlines()) == 1
    assert "nowhere" in err


def test_cli_serve_without_gradio_says_how_to_install_it(monkeypatch, capsys) -> None:
    import sys

    from bigbigan.cli.main import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    assert main(["serve"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "bigbigan serve: error: bigbigan serve needs Gradio: "
        "pip install -e '.[serve]' (or pip install gradio)"
    )


# `bigbigan serve` whose engine takes forever to open: it prints its temporary folder and waits
_SLOW_START = """
import sys, time
from bigbigan.cli.main import main
from bigbigan.serve import app, engine

def opening_forever(folder, **_):
    print(folder, flush=True)
    time.sleep(120)

app.import_gradio = lambda: None
engine.open_engine = opening_forever
sys.exit(main(["serve"]))
"""


def test_sigterm_stops_serve_as_ctrl_c_does_and_deletes_its_folder(tmp_path: Path) -> None:
    """`kill` (SIGTERM) mid-start: the same interrupt as Ctrl-C, exit 130 with one line, and the
    temporary folder deleted. In a fresh process, as a user's server is: a signal sent to this
    test process late in a full run crashes the interpreter (see test_train's SIGINT test)."""
    import signal
    import subprocess
    import sys

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_START],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        folder = Path(process.stdout.readline().strip())
        assert folder.parent == tmp_path and folder.name.startswith("bigbigan-serve-"), folder
        assert folder.is_dir()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "bigbigan serve: error: interrupted"
    assert not folder.exists()
