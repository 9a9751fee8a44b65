"""The models behind `bigbigan serve`, one copy of each, shared by every request.

Gradio runs requests on worker threads. Each request builds its own feed, gets its own output
arrays back and writes its downloads into its own folder, so no state is shared between requests
but the models; every model call holds one lock, which makes any backend safe to share (an
AOTInductor package runs calls one after the other anyway, runtimes/base.py) and keeps the
latency shown on the page the model's own, not that of a neighbour's request. Nothing here
imports Gradio: the page (app.py) is a thin layer over `Engine`.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.binio import save_bin
from bigbigan.classes import class_names
from bigbigan.errors import BigBiGANError
from bigbigan.images import save_labelled_rows
from bigbigan.serve.artefacts import CLASS_WEIGHTS, Artefacts, describe
from bigbigan.training.sampling import TRUNCATION, check_truncation, truncated_normal

MAX_SEEDS = 16  # grid columns and interpolation steps: keeps one request well under a second
MAX_TRUNCATION = TRUNCATION  # lower values trade variety for typical samples
KEEP_REQUESTS = 64  # download folders kept; older ones are deleted as new requests arrive
SCALE = 3  # PNG pixels per model pixel


@dataclass(frozen=True)
class Call:
    """One model call of a request, as the page reports it."""

    stage: str  # generator, encoder, classifier
    backend: str  # the runner's name, e.g. onnxruntime
    made: str  # how the file was made, e.g. "compiled ort"
    precision: str
    batch: int
    ms: float

    def __str__(self) -> str:
        return (
            f"{self.stage}: {self.backend} ({self.made}), {self.precision}, "
            f"batch {self.batch}, {self.ms:.1f} ms"
        )


@dataclass
class Result:
    """What one request shows: a picture, the arrays behind it (downloads) and its calls."""

    kind: str  # grid, interpolation, reconstruction: the PNG's file name
    rows: list[np.ndarray]  # NHWC images in [0, 1], one strip per row of the picture
    labels: list[str]  # one per row, drawn on its left
    arrays: dict[str, np.ndarray]  # file stem -> array: the offline format's inputs and outputs
    calls: list[Call] = field(default_factory=list)
    text: str = ""  # a line about what was read (reconstruction)
    png: Path | None = None
    files: list[Path] = field(default_factory=list)  # the downloads, once written

    @property
    def timing(self) -> str:
        """One line per model call, then the total model time."""
        total = sum(c.ms for c in self.calls)
        return "\n".join([*(f"- {c}" for c in self.calls), f"- model time: {total:.1f} ms"])


class _Model:
    """A loaded runner with what the page says about it."""

    def __init__(self, stage: str, runner: Any, path: Path) -> None:
        self.stage, self.runner = stage, runner
        self.made, self.precision = describe(path)
        self.inputs = [spec.name for spec in runner.inputs]
        self.output = runner.outputs[0].name

    def __call__(self, feed: dict[str, np.ndarray], calls: list[Call]) -> np.ndarray:
        started = time.perf_counter()
        out = self.runner.infer(feed)[self.output]
        ms = (time.perf_counter() - started) * 1e3
        batch = next(iter(feed.values())).shape[0]
        calls.append(Call(self.stage, self.runner.name, self.made, self.precision, batch, ms))
        return out


class Engine:
    """Grid, interpolation and reconstruction requests on one set of loaded models."""

    def __init__(
        self,
        *,
        generator: Any,
        encoder: Any,
        mixer: Any | None,
        classifier: Any | None,
        artefacts: Artefacts,
        dataset: str | None,
        z_dim: int,
        num_classes: int,
        conditional: bool,
        workdir: Path,
    ) -> None:
        self.generator = _Model("generator", generator, artefacts.generator)
        self.encoder = _Model("encoder", encoder, artefacts.encoder)
        self.mixer = _Model("generator", mixer, artefacts.mixer) if mixer is not None else None
        self.classifier = classifier
        self.artefacts = artefacts
        self.z_dim, self.num_classes, self.conditional = z_dim, num_classes, conditional
        self.class_names = class_names(dataset, num_classes)
        self.image_shape = tuple(encoder.inputs[0].shape[1:])  # (H, W, C)
        self.workdir = workdir
        self._lock = threading.Lock()

    # ---- requests ----

    def grid(self, classes: Sequence[int], seeds: Sequence[int], truncation: float) -> Result:
        """One row per class, one column per seed; a column shares its latent across rows."""
        seeds = self._seeds(seeds, "seeds")
        classes = self._classes(classes) if self.conditional else [0]
        z = np.stack([self.latent(s, truncation) for s in seeds])  # (S, z_dim)
        x1 = np.tile(z, (len(classes), 1))  # (K·S, z_dim), row-major by class
        x2 = np.repeat(np.asarray(classes, np.int32), len(seeds))
        feed = {"x1": x1, "x2": x2} if self.conditional else {"x1": x1}
        result = Result("grid", [], [], dict(feed))
        images = self._run(self.generator, feed, result.calls)
        result.arrays["images"] = images
        result.rows = [images[i * len(seeds) : (i + 1) * len(seeds)] for i in range(len(classes))]
        result.labels = [self.class_names[c] if self.conditional else "" for c in classes]
        result.text = f"seeds {', '.join(map(str, seeds))}; truncation {truncation:g}"
        return result

    def interpolate(
        self,
        seeds: tuple[int, int],
        classes: tuple[int, int],
        steps: int,
        truncation: float,
    ) -> Result:
        """A strip from (z_a, class_a) to (z_b, class_b); classes mix through class weights."""
        if not 2 <= steps <= MAX_SEEDS:
            raise BigBiGANError(f"steps {steps}: expected 2 to {MAX_SEEDS}")
        self._seeds(seeds, "seeds")
        a, b = self._classes(classes) if self.conditional else (0, 0)
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]  # (T, 1)
        za, zb = (self.latent(s, truncation) for s in seeds)
        feed: dict[str, np.ndarray] = {"x1": (1 - t) * za + t * zb}
        model = self.generator
        if self.conditional and a != b:
            if self.mixer is None:
                raise BigBiGANError("this page was started without the class-weight generator")
            eye = np.eye(self.num_classes, dtype=np.float32)
            feed[CLASS_WEIGHTS] = (1 - t) * eye[a] + t * eye[b]
            model = self.mixer
        elif self.conditional:
            feed["x2"] = np.full(steps, a, np.int32)
        result = Result("interpolation", [], [], dict(feed))
        images = self._run(model, feed, result.calls)
        result.arrays["images"] = images
        result.rows = [images]
        ends = [
            f"seed {s}" + (f" {self.class_names[c]}" if self.conditional else "")
            for s, c in zip(seeds, (a, b), strict=True)
        ]
        result.labels = [""]
        result.text = f"{ends[0]} → {ends[1]}, {steps} steps; truncation {truncation:g}"
        return result

    def reconstruct(self, image: np.ndarray, label: int | None = None) -> Result:
        """x -> z = E(x) -> G(z, y), y the given class or else the one the classifier reads
        from x; the classifier's reading of the reconstruction is reported beside it."""
        if image.shape != (1, *self.image_shape):
            raise BigBiGANError(
                f"image of shape {list(image.shape)}, expected {[1, *self.image_shape]}"
            )
        result = Result("reconstruction", [], [], {"x": image})
        read_x = self._read(image, result.calls)
        z = self._run(self.encoder, {self.encoder.inputs[0]: image}, result.calls)
        result.arrays["z"] = z
        if self.conditional:
            y = self._classes([label])[0] if label is not None else read_x
            feed = {"x1": z, "x2": np.asarray([0 if y is None else y], np.int32)}
        else:
            feed = {"x1": z}
        result.arrays.update({k: v for k, v in feed.items() if k != "x1"})
        recon = self._run(self.generator, feed, result.calls)
        result.arrays["images"] = recon
        read_rec = self._read(recon, result.calls)
        result.rows = [np.concatenate([image, recon])]
        result.labels = ["x, G(E(x), y)" if self.conditional else "x, G(E(x))"]
        parts = []
        if read_x is not None:
            parts.append(f"classifier reads x as **{self.class_names[read_x]}**")
        if self.conditional:
            given = "given" if label is not None else "the classifier's reading of x"
            given = given if label is not None or read_x is not None else "no classifier: 0"
            parts.append(f"y = **{self.class_names[int(feed['x2'][0])]}** ({given})")
        if read_rec is not None:
            parts.append(f"classifier reads G(E(x)) as **{self.class_names[read_rec]}**")
        result.text = "; ".join(parts)
        return result

    def warm_up(self) -> None:
        """One untimed call of each request kind at the page's default sizes: a session's first
        call allocates its buffers (shipped model, loaded 2-core machine: the first grid of 80
        took 0.95 s, the next five 0.44-0.56 s; the first strip 0.19 s, the next 0.10 s), and
        the page should report what a request costs, not that."""
        image = np.zeros((1, *self.image_shape), np.float32)
        self.grid(range(self.num_classes) if self.conditional else [0], range(8), MAX_TRUNCATION)
        last = self.num_classes - 1 if self.mixer is not None else 0
        self.interpolate((0, 1), (0, last), 10, MAX_TRUNCATION)
        self.reconstruct(image)

    # ---- helpers ----

    def latent(self, seed: int, truncation: float) -> np.ndarray:
        """The latent of `seed`: (z_dim,) float32, |z| <= truncation; the same for a seed on
        every call, so a grid column and an interpolation end agree."""
        rng = np.random.default_rng(seed)
        return truncated_normal(rng, (1, self.z_dim), threshold=check_truncation(truncation))[0]

    def save(self, result: Result) -> Result:
        """Write the request's PNG and its arrays (.bin + sidecar) into a fresh folder."""
        folder = self.workdir / "requests" / uuid.uuid4().hex
        folder.mkdir(parents=True)
        self._prune(folder.parent)
        result.png = folder / f"{result.kind}.png"
        save_labelled_rows(result.rows, result.labels, result.png, scale=SCALE)
        result.files = [result.png]
        for name, array in result.arrays.items():
            save_bin(folder / f"{name}.bin", array)
            result.files += [folder / f"{name}.bin", folder / f"{name}.bin.json"]
        return result

    def _prune(self, parent: Path) -> None:
        folders = sorted(parent.iterdir(), key=lambda p: p.stat().st_mtime)
        for old in folders[:-KEEP_REQUESTS]:
            shutil.rmtree(old, ignore_errors=True)

    def _seeds(self, seeds: Sequence[int], what: str) -> list[int]:
        seeds = [int(s) for s in seeds]
        if not 1 <= len(seeds) <= MAX_SEEDS:
            raise BigBiGANError(f"{what}: expected 1 to {MAX_SEEDS}, found {len(seeds)}")
        if any(not 0 <= s < 2**32 for s in seeds):
            raise BigBiGANError(f"{what}: expected integers from 0 to {2**32 - 1}")
        return seeds

    def _classes(self, classes: Sequence[int]) -> list[int]:
        classes = [int(c) for c in classes]
        if not classes:
            raise BigBiGANError("classes: pick at least one")
        bad = [c for c in classes if not 0 <= c < self.num_classes]
        if bad:
            raise BigBiGANError(f"class {bad[0]}: expected 0 to {self.num_classes - 1}")
        return classes

    def _run(self, model: _Model, feed: dict[str, np.ndarray], calls: list[Call]) -> np.ndarray:
        with self._lock:
            return model(feed, calls)

    def _read(self, images: np.ndarray, calls: list[Call]) -> int | None:
        """The evaluation classifier's class for one NHWC image, or None without one."""
        if self.classifier is None:
            return None
        import torch

        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # (1, C, H, W)
        with self._lock, torch.inference_mode():
            started = time.perf_counter()
            logits = self.classifier(x)
            ms = (time.perf_counter() - started) * 1e3
        calls.append(Call("classifier", "torch", "shipped classifier", "fp32", len(x), ms))
        return int(logits.argmax(1)[0])

    def close(self) -> None:
        for model in (self.generator, self.encoder, self.mixer):
            if model is not None:
                model.runner.close()


def open_engine(
    workdir: Path,
    *,
    checkpoint: Path,
    model: Path | None = None,
    classifier: Path | None = None,
    artefacts: Artefacts | None = None,
    echo: Callable[[str], None] = print,
) -> Engine:
    """Load the artefacts, once, building them into `workdir` first (artefacts.build) unless
    they are given."""
    from bigbigan.quality import classifier as classifier_module
    from bigbigan.runtimes import open_runner
    from bigbigan.serve import artefacts as build
    from bigbigan.training import checkpoint as ckpt_io

    ckpt = ckpt_io.read(checkpoint)
    cfg = ckpt.model
    paths = artefacts or build.build(
        checkpoint, workdir / "models", model=model, conditional=cfg.conditional, echo=echo
    )
    judge = None
    if classifier is not None:
        judge, info = classifier_module.load(classifier)
        if (info.config.channels, info.config.num_classes) != (cfg.channels, cfg.num_classes):
            raise BigBiGANError(
                f"--classifier {classifier}: made for {info.config.channels} channel(s) and "
                f"{info.config.num_classes} classes, the model has {cfg.channels} and "
                f"{cfg.num_classes}"
            )
    runners = [
        open_runner(p).load() if p is not None else None
        for p in (paths.generator, paths.encoder, paths.mixer)
    ]
    engine = Engine(
        generator=runners[0],
        encoder=runners[1],
        mixer=runners[2],
        classifier=judge,
        artefacts=paths,
        dataset=ckpt.dataset,
        z_dim=cfg.z_dim,
        num_classes=cfg.num_classes,
        conditional=cfg.conditional,
        workdir=workdir,
    )
    engine.warm_up()
    return engine
