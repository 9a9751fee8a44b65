"""`bigbigan serve`: a local Gradio page on the compiled generator (see docs/serve.md).

Gradio is the library ML users already know for model demos, and it brings what the page needs
without code of ours in JavaScript: uploads with drag and drop, a request queue that serves
several users at once, file downloads. It is an optional extra (`pip install -e '.[serve]'`).

Safe by default: the page binds 127.0.0.1 unless --host says otherwise; uploads are refused
above a size and outside a few image formats (uploads.py) with a message on the page; every
file, Gradio's upload cache included, lives in one temporary folder that is deleted on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.serve.engine import MAX_SEEDS, MAX_TRUNCATION, Engine, Result
from bigbigan.serve.uploads import MAX_UPLOAD_BYTES, load_upload
from bigbigan.training.sampling import MIN_TRUNCATION

DEFAULT_PORT = 7860
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CONCURRENCY = 4  # requests Gradio runs at once; model calls still take the engine's lock
READ_AS_CLASSIFIED = -1  # reconstruction class choice: the class the classifier reads from x
EXAMPLES_PER_CLASS = 1


def import_gradio() -> Any:
    """Gradio, or a one-line error saying how to install it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home (closed networks)
    try:
        import gradio
    except ImportError as err:
        raise BigBiGANError(
            "bigbigan serve needs Gradio: pip install -e '.[serve]' (or pip install gradio)"
        ) from err
    return gradio


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    """A fresh temporary folder for everything the server writes, deleted on exit.

    Libraries write beside us into the system's temporary folder (Gradio its upload cache,
    ONNX Runtime a session file, Inductor its cache): for the server's life that folder is
    this one, so nothing outlives it."""
    folder = Path(tempfile.mkdtemp(prefix="bigbigan-serve-"))
    redirected = {
        "TMPDIR": str(folder),
        "GRADIO_TEMP_DIR": str(folder / "gradio"),
        "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor"),
    }
    saved_env = {name: os.environ.get(name) for name in redirected}
    saved_tempdir = tempfile.tempdir
    os.environ.update(redirected)
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved_tempdir
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def stop_on_terminate() -> Iterator[None]:
    """SIGTERM (`kill`, systemd, a container stopping) stops the server as Ctrl-C does, so that
    its temporary folder is deleted. Python's default SIGTERM exits without cleaning up, and a
    server started in the background (`bigbigan serve &`) ignores Ctrl-C."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_images(engine: Engine, folder: Path, dataset: str | None) -> list[Path]:
    """A few images to reconstruct without an upload: real test images when the dataset is
    installed, else the generator's own samples (seed 0, one per class)."""
    from PIL import Image

    images: np.ndarray | None = None
    labels: list[int] = []
    if dataset is not None:
        with contextlib.suppress(BigBiGANError, OSError):
            from bigbigan.training.data import load_dataset

            x, y = load_dataset(dataset, "test")
            first = {int(c): i for i, c in reversed(list(enumerate(y.tolist())))}
            labels = sorted(first)[: engine.num_classes]
            images = x[[first[c] for c in labels]].permute(0, 2, 3, 1).numpy()
    source = "test"
    if images is None:
        labels = list(range(engine.num_classes if engine.conditional else 4))
        classes, seeds = (labels, [0]) if engine.conditional else ([0], labels)
        images = engine.grid(classes, seeds, MAX_TRUNCATION).arrays["images"]
        source = "generated"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for image, label in zip(images, labels, strict=True):
        name = engine.class_names[label] if engine.conditional else f"sample {label}"
        path = folder / f"{source} {name.replace('/', '-')}.png"
        pixels = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        picture.resize((picture.width * 4, picture.height * 4), Image.NEAREST).save(path)
        paths.append(path)
    return paths


def _header(engine: Engine, checkpoint: Path, classifier: Path | None) -> str:
    arts = engine.artefacts
    lines = [
        "# BigBiGAN",
        f"Checkpoint `{checkpoint.name}`; every picture below is drawn by the models listed "
        "here, and each request reports which one ran, at what precision and how long it took.",
        "",
        f"- generator: `{arts.generator.name}` on {engine.generator.runner.name} "
        f"({engine.generator.made}, {engine.generator.precision})",
        f"- encoder: `{arts.encoder.name}` on {engine.encoder.runner.name}",
    ]
    if engine.mixer is not None and arts.mixer is not None:
        lines.append(
            f"- between two classes: `{arts.mixer.name}` on {engine.mixer.runner.name} "
            f"({engine.mixer.made}), the generator with class weights instead of a class index"
        )
    if classifier is not None:
        lines.append(f"- class read by the evaluation classifier `{classifier.name}`")
    return "\n".join(lines)


def _shown(result: Result, engine: Engine) -> tuple[str, str, list[str]]:
    """(PNG, status markdown, download paths) of a finished request."""
    engine.save(result)
    status = (result.text + "\n\n" if result.text else "") + result.timing
    return str(result.png), status, [str(p) for p in result.files]


def _failed(error: BigBiGANError) -> tuple[None, str, None]:
    return None, f"**{error}**", None


def _guarded(func: Callable[..., Result], engine: Engine) -> Callable[..., Any]:
    """A Gradio handler: the request's picture, timing and downloads, or its error message."""

    def handler(*args: Any) -> tuple[Any, str, Any]:
        try:
            return _shown(func(*args), engine)
        except BigBiGANError as e:
            return _failed(e)

    return handler


def _truncation(gr: Any) -> Any:
    return gr.Slider(
        MIN_TRUNCATION,
        MAX_TRUNCATION,
        value=MAX_TRUNCATION,
        step=0.1,
        label="truncation",
        info="|z| ≤ this; 2 is the training noise, lower is more typical and less varied",
    )


@contextlib.contextmanager
def _section(gr: Any, title: str, name: str) -> Iterator[list[Any]]:
    """A row of the page: the block's controls on the left, then `_outputs` on the right; the
    yielded list holds the outputs once the block is done."""
    outputs: list[Any] = []
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280):
            gr.Markdown(f"## {title}")
            yield outputs
        outputs.extend(_outputs(gr, name))


def _outputs(gr: Any, name: str) -> list[Any]:
    """The right-hand column of a section: picture, status (timing or error), downloads."""
    with gr.Column(scale=2):
        image = gr.Image(label=name, type="filepath", interactive=False, elem_id=f"{name}-image")
        status = gr.Markdown(elem_id=f"{name}-status")
        files = gr.File(
            label="downloads: .bin + .json sidecar (the offline format), PNG",
            file_count="multiple",
            height=160,
            elem_id=f"{name}-files",
        )
    return [image, status, files]


def build_page(
    engine: Engine,
    *,
    checkpoint: Path,
    classifier: Path | None,
    examples: list[Path],
) -> Any:
    """The Gradio Blocks of the page; every handler goes through `engine`.

    Longer than our functions usually are, on purpose: Gradio builds a page from the nesting of
    `with` blocks, so this reads top to bottom as the page does, and each section's widgets stay
    beside the handler and `.click` wiring that use them (split up, the widgets would travel
    between functions as long tuples)."""
    gr = import_gradio()
    classes = [(name, i) for i, name in enumerate(engine.class_names)]

    def grid(chosen: list[int], first: float | None, count: float, truncation: float) -> Result:
        start = int(first or 0)
        return engine.grid(chosen or [], range(start, start + int(count)), truncation)

    def interpolate(
        seed_a: float | None,
        seed_b: float | None,
        class_a: int | None,
        class_b: int | None,
        steps: float,
        truncation: float,
    ) -> Result:
        seeds = (int(seed_a or 0), int(seed_b or 0))
        return engine.interpolate(
            seeds, (int(class_a or 0), int(class_b or 0)), int(steps), truncation
        )

    def reconstruct(path: str | None, label: int | None, invert: bool) -> Result:
        if not path:
            raise BigBiGANError("upload an image, drop one on the box, or pick a test image")
        height, _, channels = engine.image_shape
        image = load_upload(Path(path), resolution=height, channels=channels, invert=invert)
        chosen = None if label is None or label == READ_AS_CLASSIFIED else int(label)
        return engine.reconstruct(image, chosen)

    with gr.Blocks(title="BigBiGAN") as page:
        gr.Markdown(_header(engine, checkpoint, classifier), elem_id="header")
        with _section(gr, "Class × seed grid", "grid") as grid_outputs:
            grid_classes = gr.CheckboxGroup(
                classes,
                value=[i for _, i in classes],
                label="classes (rows)",
                visible=engine.conditional,
                elem_id="grid-classes",
            )
            grid_seed = gr.Number(0, precision=0, minimum=0, label="first seed")
            grid_count = gr.Slider(1, MAX_SEEDS, value=8, step=1, label="seeds (columns)")
            grid_trunc = _truncation(gr)
            grid_run = gr.Button("Generate grid", variant="primary", elem_id="grid-run")
        with _section(gr, "Interpolation", "interp") as interp_outputs:
            with gr.Row():
                seed_a = gr.Number(0, precision=0, minimum=0, label="seed A")
                seed_b = gr.Number(1, precision=0, minimum=0, label="seed B")
            with gr.Row(visible=engine.conditional):
                class_a = gr.Dropdown(classes, value=0, label="class A")
                last = min(7, engine.num_classes - 1)
                class_b = gr.Dropdown(classes, value=last, label="class B")
            steps = gr.Slider(2, MAX_SEEDS, value=10, step=1, label="steps")
            interp_trunc = _truncation(gr)
            interp_run = gr.Button("Interpolate", variant="primary", elem_id="interp-run")
        with _section(gr, "Reconstruction G(E(x), y)", "recon") as recon_outputs:
            limit = f"{MAX_UPLOAD_BYTES >> 20} MB"
            upload = gr.File(
                label=f"upload or drop an image (PNG, JPEG, BMP, GIF, WebP; up to {limit})",
                type="filepath",
                elem_id="upload",
            )
            if examples:
                picks = [[str(p)] for p in examples]
                gr.Examples(picks, inputs=[upload], label="or pick a test image")
            recon_class = gr.Dropdown(
                [("as the classifier reads x", READ_AS_CLASSIFIED), *classes],
                value=READ_AS_CLASSIFIED,
                label="class y",
                visible=engine.conditional,
            )
            invert = gr.Checkbox(False, label="invert (dark object on a light background)")
            recon_run = gr.Button("Reconstruct", variant="primary", elem_id="recon-run")

        grid_run.click(
            _guarded(grid, engine),
            [grid_classes, grid_seed, grid_count, grid_trunc],
            grid_outputs,
            api_name="grid",
        )
        interp_run.click(
            _guarded(interpolate, engine),
            [seed_a, seed_b, class_a, class_b, steps, interp_trunc],
            interp_outputs,
            api_name="interpolate",
        )
        recon_inputs = [upload, recon_class, invert]
        recon = _guarded(reconstruct, engine)
        upload.upload(recon, recon_inputs, recon_outputs, api_name="upload")
        recon_run.click(recon, recon_inputs, recon_outputs, api_name="reconstruct")
    return page.queue(default_concurrency_limit=CONCURRENCY)


def serve(
    *,
    checkpoint: Path,
    model: Path | None = None,
    classifier: Path | None = None,
    read_classes: bool = True,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    echo: Callable[[str], None] = print,
) -> None:
    """Build the artefacts, load them once, serve the page until Ctrl-C or SIGTERM, clean up.

    `classifier` defaults to the shipped one for the checkpoint's dataset; `read_classes=False`
    runs without one. Everything, imports included, happens inside the workspace, so that no
    library has written to the system's temporary folder before it is redirected."""
    with stop_on_terminate(), workspace() as folder:
        from bigbigan.quality.evaluate import default_classifier_path
        from bigbigan.serve.engine import open_engine
        from bigbigan.training import checkpoint as ckpt_io

        dataset = ckpt_io.read(checkpoint).dataset
        gr = import_gradio()
        if classifier is None and read_classes and dataset is not None:
            classifier = default_classifier_path(dataset)
        engine = open_engine(
            folder,
            checkpoint=checkpoint,
            model=model,
            classifier=classifier if read_classes else None,
            echo=echo,
        )
        try:
            examples = test_images(engine, folder / "examples", dataset)
            page = build_page(
                engine, checkpoint=checkpoint, classifier=classifier, examples=examples
            )
            theme = gr.themes.Default(
                font=["ui-sans-serif", "system-ui", "sans-serif"],  # no web fonts: offline
                font_mono=["ui-monospace", "monospace"],
            )
            page.launch(
                server_name=host,
                server_port=port,
                max_file_size=4 * MAX_UPLOAD_BYTES,  # Gradio's own cap; ours gives the message
                # No allowed_paths: the page serves only the files Gradio copied into its cache
                # (what handlers returned, uploads), not the models beside them.
                theme=theme,
                ssr_mode=False,  # no Node.js server beside Python's
                quiet=True,
                prevent_thread_lock=True,  # return once the port answers, to say so
            )
            if host not in LOOPBACK:
                echo(f"note: --host {host} makes the page reachable from other machines")
            echo(f"serving on http://{host}:{port} (Ctrl-C stops; temporary folder {folder})")
            page.block_thread()
        finally:
            engine.close()
