"""msame-compatible raw `.bin` files: little-endian, C order, no header, plus a JSON sidecar.

Every `.bin` this project writes gets `name.bin.json` beside it: the document header and
`{"dtype": "float32", "shape": [256, 100]}` (docs/architecture.md, "File formats"). When reading,
the sidecar wins (a hand-written one needs only dtype and shape); without one (a file from msame
or another tool), the dtype and shape come from the model's input spec, with the batch size
inferred from the file size.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from bigbigan import limits
from bigbigan.documents import document_text, sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import atomic_path, note_input, require_regular, write_text
from bigbigan.interface import TensorSpec, dtype_mismatch, format_shape

# Kinds of dtype a raw file can hold: bool, signed/unsigned int, float, complex.
_RAW_KINDS = "biufc"
SIDECAR_FORMAT = "bigbigan-bin"


def _raw(array: np.ndarray) -> np.ndarray:
    """The array as little-endian, C-contiguous, with a dtype a raw file can hold."""
    array = np.asarray(array)
    if array.dtype.kind not in _RAW_KINDS:
        raise BigBiGANError(
            f"cannot write dtype {array.dtype} as raw binary: expected a bool, int or float array"
        )
    return np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")


def save_bin(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` as raw little-endian C-order bytes, atomically, plus its JSON sidecar."""
    raw = _raw(array)
    meta = {"dtype": raw.dtype.name, "shape": list(raw.shape)}
    sidecar = sidecar_path(path)
    placed = False
    # The data goes to a temp file first; the sidecar is placed just before the data's rename,
    # and removed again if that rename fails, so no sidecar is left without its file.
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # not tofile: its short write hides the errno
                f.write(raw.data if raw.ndim else raw.tobytes())
            write_text(sidecar, document_text(SIDECAR_FORMAT, meta, indent=None))
            placed = True
    except BaseException:
        if placed:
            sidecar.unlink(missing_ok=True)
        raise


def save_txt(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` like msame `--outfmt TXT`: one row per line of `[shape[0], -1]`, spaces.

    Floats are written with enough digits to read back exactly (9 for float32, 17 for float64).
    """
    array = np.asarray(array)
    if array.dtype.kind not in _RAW_KINDS:
        raise BigBiGANError(
            f"{path}: cannot write dtype {array.dtype} as text: expected a bool, int or float array"
        )
    rows = 1 if array.ndim == 0 else array.shape[0]
    cols = math.prod(array.shape[1:]) if array.ndim > 0 else 1
    table = array.reshape(rows, cols)
    if array.dtype.kind == "f":
        digits = 9 if array.dtype.itemsize <= 4 else 17
        lines = (" ".join(format(float(v), f".{digits}g") for v in row) for row in table)
    elif array.dtype.kind == "c":
        lines = (" ".join(str(complex(v)) for v in row) for row in table)
    else:
        lines = (" ".join(str(int(v)) for v in row) for row in table)
    write_text(path, "".join(line + "\n" for line in lines))


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` as a `.npy` file (no pickles, no sidecar: the header holds dtype and shape)."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def _read_sidecar(sidecar: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """Parse `x.bin.json`; any problem is an error naming the sidecar."""
    expected = 'expected {"dtype": "float32", "shape": [256, 100]}'
    if require_regular(sidecar, "sidecar").st_size > 1 << 20:
        raise BigBiGANError(f"{sidecar}: larger than 1 MiB, {expected}")
    note_input(sidecar)
    try:
        meta = json.loads(sidecar.read_text())
    except OSError as e:
        raise BigBiGANError(f"{sidecar}: cannot read sidecar ({e.strerror})") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BigBiGANError(f"{sidecar}: sidecar is not valid JSON ({e}), {expected}") from e
    if not isinstance(meta, dict) or "dtype" not in meta or "shape" not in meta:
        raise BigBiGANError(f"{sidecar}: {expected}, found {json.dumps(meta)[:80]}")
    try:
        dtype = np.dtype(meta["dtype"])
    except (TypeError, ValueError):
        dtype = None
    if not isinstance(meta["dtype"], str) or dtype is None or dtype.kind not in _RAW_KINDS:
        raise BigBiGANError(
            f"{sidecar}: dtype must be a numeric numpy name, found {meta['dtype']!r}"
        )
    shape = meta["shape"]
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise BigBiGANError(
            f"{sidecar}: shape must be a list of non-negative integers, found {shape!r}"
        )
    return dtype, tuple(shape)


read_sidecar = _read_sidecar  # public: compare reads sidecars found elsewhere in a run


def _check_batch(name: str, found: int, spec: TensorSpec | None, batch: int | None) -> None:
    """The batch the file holds must equal `--batch` (if given) and a static spec batch."""
    if batch is not None and found != batch:
        raise BigBiGANError(f"{name}: holds a batch of {found}, expected batch {batch}")
    if spec is not None and spec.shape and spec.shape[0] is not None and found != spec.shape[0]:
        raise BigBiGANError(
            f"{name}: holds a batch of {found}, {spec.model_name} has static batch {spec.shape[0]}"
        )


def load_bin(
    path: str | os.PathLike[str],
    spec: TensorSpec | None = None,
    *,
    batch: int | None = None,
) -> np.ndarray:
    """Read a raw `.bin`, taking dtype and shape from its sidecar or else from `spec`.

    With a sidecar, the file size must match it and, given a spec, so must the dtype and every
    non-batch dim. Without one, the batch is the file size over the size of one sample of `spec`.
    `batch`, when given, is the batch size the file must hold.
    """
    path = Path(path)
    name = str(path)
    order = "<"  # what this project writes and msame reads
    if not path.exists():
        raise BigBiGANError(f"{name}: no such file")
    size = require_regular(path, ".bin file").st_size
    note_input(path)
    sidecar = sidecar_path(path)

    if sidecar.exists():
        dtype, shape = _read_sidecar(sidecar)
        # A sidecar may name big-endian data (">f4", from another tool): read it as such.
        order, dtype = (">" if dtype.byteorder == ">" else "<"), dtype.newbyteorder("=")
        expected = dtype.itemsize * math.prod(shape)
        if size != expected:
            raise BigBiGANError(
                f"{name}: {size} bytes, sidecar {sidecar.name} says {dtype.name} "
                f"{format_shape(shape)} = {expected} bytes"
            )
        if spec is not None:
            if dtype != spec.np_dtype:
                raise dtype_mismatch(name, dtype, spec)
            if len(shape) != len(spec.shape) or any(
                want is not None and got != want
                for got, want in zip(shape[1:], spec.shape[1:], strict=True)
            ):
                raise BigBiGANError(
                    f"{name}: shape {format_shape(shape)}, {spec.model_name} expects "
                    f"{format_shape(spec.shape)}"
                )
        if shape:
            _check_batch(name, shape[0], spec, batch)
    elif spec is None:
        raise BigBiGANError(
            f"{name}: no sidecar {sidecar.name} to give dtype and shape; write one "
            '(e.g. {"dtype": "float32", "shape": [256, 100]}) or pass the model'
        )
    else:
        dtype = spec.np_dtype
        if not spec.shape:  # a scalar input
            if size != dtype.itemsize:
                raise BigBiGANError(
                    f"{name}: {size} bytes, {spec.model_name} expects one {dtype.name} "
                    f"scalar ({dtype.itemsize} bytes)"
                )
            shape = ()
        else:
            rest = spec.shape[1:]
            if any(d is None for d in rest):
                raise BigBiGANError(
                    f"{name}: no sidecar {sidecar.name}, and {spec.model_name} "
                    f"{format_shape(spec.shape)} has dynamic dims besides the batch; "
                    "write a sidecar"
                )
            dims = tuple(d for d in rest if d is not None)
            sample = dtype.itemsize * math.prod(dims)
            if sample == 0 or size == 0 or size % sample:
                raise BigBiGANError(
                    f"{name}: {size} bytes is not a whole number of {dtype.name} "
                    f"{format_shape((None, *dims))} samples ({sample} bytes each)"
                )
            _check_batch(name, size // sample, spec, batch)
            shape = (size // sample, *dims)

    data = np.fromfile(path, dtype=dtype.newbyteorder(order))
    return data.astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """A `.npy` array, read without pickles; any failure is a one-line error naming the file."""
    path = Path(path)
    require_regular(path, ".npy file")
    limits.check_npy(path)
    note_input(path)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise BigBiGANError(f"{path}: not a plain numeric .npy array ({e})") from e
    except (OSError, EOFError) as e:
        raise BigBiGANError(f"{path}: unreadable .npy file ({e})") from e
    if not array.dtype.isnative:  # big-endian data: the same values in this machine's order
        array = array.astype(array.dtype.newbyteorder("="))
    return array
