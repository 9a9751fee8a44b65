"""The offline interface every stage agrees on: tensor names, tensor specs, feeds.

The export writes it into the ONNX file, every runtime reads it back from its model file, the
`.bin` files and `make-inputs` follow it, and `compare` relies on it (docs/architecture.md,
"The offline interface"). The generator takes `x1` float32 `[N, z_dim]` noise and `x2` int32
`[N]` labels and returns `images` float32 `[N, 32, 32, C]` (NHWC, in [0, 1]); the encoder takes
`x` images and returns `z`. The batch dim is dynamic (`None`) unless an export fixes it.

This module sits below the stages and the runtimes and imports neither: numpy only at import
time, torch and onnx inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bigbigan.documents import read_sidecar
from bigbigan.errors import BigBiGANError
from bigbigan.training.sampling import truncated_normal

if TYPE_CHECKING:
    from bigbigan.config import ModelConfig

GENERATOR_INPUTS = ("x1", "x2")  # noise float32 (N, z_dim), labels int32 (N,)
GENERATOR_OUTPUT = "images"  # float32 (N, 32, 32, C), NHWC in [0, 1]
ENCODER_INPUT = "x"  # float32 (N, 32, 32, C), NHWC in [0, 1]
ENCODER_OUTPUT = "z"  # float32 (N, z_dim)
MAX_BATCH = 4096  # upper bound of the symbolic batch dim of a dynamic export
_ROLES = {"x1": "noise input", "x2": "label input"}


@dataclass(frozen=True)
class TensorSpec:
    """What a model input or output expects. A `None` dim (usually the batch) is dynamic."""

    name: str  # shared input/output name, e.g. "x1"
    dtype: str  # canonical numpy name, e.g. "float32"; np.dtype objects are normalised to it
    shape: tuple[int | None, ...]  # e.g. (None, 100)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def model_name(self) -> str:
        """`model input x1` for the shared input names, `model tensor <name>` for others."""
        return f"model {'input' if self.name in _ROLES else 'tensor'} {self.name}"

    @property
    def role(self) -> str:
        """`noise input x1`, `label input x2`, or `tensor <name>` for other names."""
        return f"{_ROLES.get(self.name, 'tensor')} {self.name}"


def format_shape(shape: tuple[int | None, ...] | list[int]) -> str:
    """`(None, 100)` -> `[*, 100]`."""
    return "[" + ", ".join("*" if d is None else str(d) for d in shape) + "]"


def offline_specs(
    cfg: ModelConfig, encoder: bool = False
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The offline interface of a model config, dynamic batch: (inputs, outputs)."""
    image = (None, cfg.resolution, cfg.resolution, cfg.channels)  # NHWC
    if encoder:
        return [TensorSpec(ENCODER_INPUT, "float32", image)], [
            TensorSpec(ENCODER_OUTPUT, "float32", (None, cfg.z_dim))
        ]
    inputs = [TensorSpec(GENERATOR_INPUTS[0], "float32", (None, cfg.z_dim))]
    if cfg.conditional:
        inputs.append(TensorSpec(GENERATOR_INPUTS[1], "int32", (None,)))
    return inputs, [TensorSpec(GENERATOR_OUTPUT, "float32", image)]


# ---- specs as JSON (sidecars, summaries) ----


def specs_to_json(specs: list[TensorSpec]) -> list[dict]:
    """TensorSpecs as JSON-able dicts; a dynamic dim is null."""
    return [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in specs]


def specs_from_json(data: object, source: str) -> list[TensorSpec]:
    """The inverse of `specs_to_json`; anything malformed is an error naming `source`."""
    expected = 'expected [{"name": "x1", "dtype": "float32", "shape": [null, 100]}, ...]'
    if not isinstance(data, list) or not data:
        raise BigBiGANError(f"{source}: {expected}, found {str(data)[:80]}")
    specs = []
    for item in data:
        try:
            shape = item["shape"]
            if not isinstance(shape, list) or not all(
                d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0)
                for d in shape
            ):
                raise ValueError(shape)
            specs.append(TensorSpec(str(item["name"]), item["dtype"], tuple(shape)))
        except (KeyError, TypeError, ValueError) as err:
            raise BigBiGANError(f"{source}: {expected}, found {str(item)[:80]}") from err
    return specs


def read_model_sidecar(
    path: str | os.PathLike[str], expected_format: str | None = None, *, missing: str = ""
) -> dict[str, Any] | None:
    """The sidecar of a model file (`G.onnx.json`, `G.pt2.json`) with its `inputs`/`outputs`
    parsed into TensorSpecs. None when there is none, unless `missing` says what to do (then
    that hint ends the one-line error). With `expected_format` the document must be of that
    format and hold both spec lists (a runner that reads its tensor names from it)."""
    meta = read_sidecar(path, expected_format, missing=missing)
    if meta is None:
        return None
    for key in ("inputs", "outputs"):
        if key in meta or expected_format is not None:
            meta[key] = specs_from_json(meta.get(key), f"{path}.json {key}")
    return meta


def onnx_specs(model: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of an onnx.ModelProto as TensorSpecs; symbolic dims become None."""
    from onnx.helper import tensor_dtype_to_np_dtype

    def spec(value: Any) -> TensorSpec:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        return TensorSpec(value.name, tensor_dtype_to_np_dtype(tensor.elem_type), dims)

    initializers = {init.name for init in model.graph.initializer}
    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [spec(v) for v in model.graph.output]


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence torch.onnx's deprecation warnings and logger chatter (e.g. "torchvision is not
    installed") while the export and compile stages write the interface; failures still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


# ---- feeds ----


def dtype_mismatch(name: str, found: np.dtype, spec: TensorSpec) -> BigBiGANError:
    """`label.bin: dtype int64, model input x2 expects int32 (convert with .astype(np.int32))`."""
    msg = f"{name}: dtype {found.name}, {spec.model_name} expects {spec.dtype}"
    if found.kind in "iu" and spec.np_dtype.kind in "iu":
        msg += f" (convert with .astype(np.{spec.dtype}))"
    return BigBiGANError(msg)


def check_feed(
    feed: Mapping[str, np.ndarray], specs: list[TensorSpec], source: str = "model"
) -> dict[str, np.ndarray]:
    """Check `feed` against the model's inputs; return it as C-contiguous arrays in spec order.

    Exactly the model's input names; per input the same dtype, rank and every static dim; and
    inputs whose leading (batch) dim is dynamic must agree on it. Each failure is one line naming
    the input, what the model expects and what was found.
    """
    if not isinstance(feed, Mapping):
        raise BigBiGANError(f"{source}: feed must map input names to arrays, found {type(feed)}")
    names = [spec.name for spec in specs]
    missing = [name for name in names if name not in feed]
    if missing:
        raise BigBiGANError(
            f"{source}: missing input {', '.join(missing)}; the model's inputs are {names}"
        )
    extra = [name for name in feed if name not in names]
    if extra:
        raise BigBiGANError(
            f"{source}: unexpected input {', '.join(map(str, extra))}; "
            f"the model's inputs are {names}"
        )
    checked: dict[str, np.ndarray] = {}
    batch: tuple[str, int] | None = None
    for spec in specs:
        array = feed[spec.name]
        if not isinstance(array, np.ndarray):
            raise BigBiGANError(
                f"input {spec.name}: expected a numpy array, found {type(array).__name__}"
            )
        if array.dtype != spec.np_dtype:
            raise dtype_mismatch(f"input {spec.name}", array.dtype, spec)
        if array.ndim != len(spec.shape) or any(
            want is not None and got != want
            for got, want in zip(array.shape, spec.shape, strict=True)
        ):
            raise BigBiGANError(
                f"input {spec.name}: shape {format_shape(array.shape)}, {spec.model_name} "
                f"expects {format_shape(spec.shape)}"
            )
        if spec.shape and spec.shape[0] is None:
            if batch is None:
                batch = (spec.name, array.shape[0])
            elif array.shape[0] != batch[1]:
                raise BigBiGANError(
                    f"input {spec.name}: batch {array.shape[0]}, but input {batch[0]} has "
                    f"batch {batch[1]}; every input must have the same batch"
                )
        checked[spec.name] = np.ascontiguousarray(array)
    return checked


def validate_values(
    name_or_path: str | os.PathLike[str],
    array: np.ndarray,
    spec: TensorSpec | None,
    num_classes: int | None,
) -> None:
    """Reject NaN/Inf in float arrays and, given `num_classes`, integer labels outside range."""
    name = str(name_or_path)
    array = np.asarray(array)
    role = spec.role if spec is not None else "array"
    if array.dtype.kind in "fc":
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise BigBiGANError(f"{name}: {bad} NaN/Inf values in {role}")
    elif array.dtype.kind in "iu" and num_classes is not None:
        out = array[(array < 0) | (array >= num_classes)]
        if out.size:
            more = f" and {out.size - 1} more" if out.size > 1 else ""
            raise BigBiGANError(
                f"{name}: labels must be in [0, {num_classes}), found {out.flat[0]}{more}"
            )


def random_feed(
    specs: list[TensorSpec], batch: int, *, num_classes: int | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded inputs for any offline interface: float images (rank 4) uniform in [0, 1), other
    floats (noise) truncated normal, integer labels in [0, num_classes) (all 0 when unknown).
    A static leading dim wins over `batch`."""
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in specs:
        dims = [d if d is not None else batch for d in spec.shape[:1]]
        dims += [d if d is not None else 1 for d in spec.shape[1:]]
        shape = tuple(dims)
        kind = spec.np_dtype.kind
        if kind == "f" and len(shape) == 4:
            feed[spec.name] = rng.random(shape, dtype=np.float32).astype(spec.np_dtype)
        elif kind == "f":
            feed[spec.name] = truncated_normal(rng, shape).astype(spec.np_dtype)
        elif kind in "iu":
            high = num_classes or 1
            feed[spec.name] = rng.integers(0, high, shape).astype(spec.np_dtype)
        else:
            raise BigBiGANError(f"{spec.model_name}: cannot make sample {spec.dtype} inputs")
    return feed


def sample_inputs(
    cfg: ModelConfig, *, encoder: bool = False, batch: int = 8, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded inputs for a model's offline interface: truncated-normal noise and int32 labels
    in [0, num_classes) for the generator, uniform [0, 1) NHWC images for the encoder."""
    inputs, _ = offline_specs(cfg, encoder)
    return random_feed(inputs, batch, num_classes=cfg.num_classes, seed=seed)


# ---- outputs ----


def diff_stats(found: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(max, mean) absolute difference; NaN anywhere makes both NaN."""
    diff = np.abs(found.astype(np.float64) - reference.astype(np.float64))
    return float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0


def torch_outputs(module: Any, feed: dict[str, np.ndarray], specs: list[TensorSpec]) -> np.ndarray:
    """Run an offline PyTorch module on a numpy feed (in spec order): the reference output."""
    import torch

    with torch.inference_mode():
        out = module(*(torch.from_numpy(feed[spec.name]) for spec in specs))
    return out.numpy()
