"""The one place a backend is added.

A backend is one module under `bigbigan.runtimes` that registers, when imported, what it offers:

- a runner (`register_runner`): the `Runner` subclass `infer` opens by file extension or by
  `--backend`, and that `bench` rows open;
- compile targets and their builders (`register_target`, `@builder(target, precision)`):
  what `bigbigan compile --target` and `pipeline --targets` offer;
- bench rows (`@bench_rows(name)`): a function of the run's settings returning `BenchRow`s,
  plain data that `bench` turns into `open_runner(model, backend=..., **options)` calls.

Adding a backend is writing that module and naming it in BACKEND_MODULES below; nothing else
in the package lists backends (docs/backends.md walks through OpenVINO as the example).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bigbigan.errors import BigBiGANError

if TYPE_CHECKING:
    from bigbigan.runtimes.base import Runner
    from bigbigan.runtimes.build import CompileJob, CompileReport

# The backend modules under bigbigan.runtimes, in the order they are listed everywhere
# (`--target` choices, bench rows): the one line to extend when a backend is added.
BACKEND_MODULES = ("torch", "onnxruntime", "aoti", "tensorrt", "openvino", "ascend")

PRECISIONS = ("fp32", "fp16", "bf16", "int8")

Builder = Callable[["CompileJob"], "CompileReport"]


@dataclass
class Target:
    """A `compile --target`: what its `--out` may be called and how each precision is built."""

    name: str
    suffixes: tuple[str, ...]  # file extensions --out may have; () = any (the builder decides)
    artifact: str  # the file name `pipeline` writes it to, e.g. "G.ort.onnx"
    runnable: bool = True  # False: its artifact runs elsewhere (ascend's .om), pipeline notes it
    builders: dict[str, Builder] = field(default_factory=dict)  # precision -> builder


@dataclass(frozen=True)
class BenchSettings:
    """What a backend's bench rows may depend on."""

    device: str
    precisions: Sequence[str]
    streams: int  # ONNX Runtime rows also as this many single-thread copies (> 1)
    micro_batch: int  # AOTInductor rows also in slices of this size (> 0)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


@dataclass(frozen=True)
class BenchRow:
    """One bench row as data: the model it runs and the `open_runner` arguments that open it."""

    backend: str  # the row label's first word, and its `bench --backends` name
    precision: str
    variant: str = ""  # "", "channels-last", "2 streams", "micro-batch 32", ...
    model: str = "onnx"  # "checkpoint", "onnx" (the plain export) or a compile target's name
    artifact: str = ""  # compiled models: the file name under bench's artifacts/
    runner: str | None = None  # open_runner(backend=...); None: by the file's extension
    options: Mapping[str, Any] = field(default_factory=dict)  # open_runner keyword arguments
    min_batch: int = 1  # smaller batches skip the row (a split below its slice size)
    note: str = ""


RowsFunction = Callable[[BenchSettings], list[BenchRow]]

RUNNERS: dict[str, type[Runner]] = {}  # backend name -> runner class
SUFFIXES: dict[str, str] = {}  # file extension -> backend name
TARGETS: dict[str, Target] = {}  # compile target name -> target
BENCH: dict[str, RowsFunction] = {}  # bench backend name -> its rows


def register_runner(cls: type[Runner]) -> type[Runner]:
    """Register a runner class under `cls.name`; it opens files with `cls.suffixes` by default.
    An extension claimed by two runners is a programming error (the first keeps it)."""
    RUNNERS[cls.name] = cls
    for suffix in cls.suffixes:
        owner = SUFFIXES.setdefault(suffix, cls.name)
        if owner != cls.name:
            raise ValueError(f"{cls.name}: extension {suffix} already belongs to {owner}")
    return cls


def register_target(
    name: str, *, suffixes: tuple[str, ...], artifact: str, runnable: bool = True
) -> Target:
    """Register a compile target; its builders are added with `@builder(name, precision)`."""
    TARGETS[name] = Target(name, suffixes, artifact, runnable)
    return TARGETS[name]


def builder(target: str, precision: str = "fp32") -> Callable[[Builder], Builder]:
    """Register a function CompileJob -> CompileReport as (target, precision)'s builder."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision}: expected one of {PRECISIONS}")

    def register(func: Builder) -> Builder:
        TARGETS[target].builders[precision] = func
        return func

    return register


def bench_rows(name: str) -> Callable[[RowsFunction], RowsFunction]:
    """Register a function BenchSettings -> [BenchRow] as bench backend `name`'s rows."""

    def register(func: RowsFunction) -> RowsFunction:
        BENCH[name] = func
        return func

    return register


_loaded = False


def load() -> None:
    """Import every module in BACKEND_MODULES once (each registers itself on import; none
    imports its heavy library before it is used)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BACKEND_MODULES:
            importlib.import_module(f"bigbigan.runtimes.{module}")
        _in_module_order()


def _in_module_order() -> None:
    """List backends in BACKEND_MODULES order, whichever module another import loaded first
    (`compile` imports onnxruntime's runner before `load` runs): choices, tables and error
    messages then read the same on every path."""
    rank = {name: i for i, name in enumerate(BACKEND_MODULES)}

    def order(table: dict, key: Callable[[Any], str]) -> None:
        items = sorted(table.items(), key=lambda item: rank.get(key(item), len(rank)))
        table.clear()
        table.update(items)

    def module_of(obj: object) -> str:
        return getattr(obj, "__module__", "").rsplit(".", 1)[-1]

    order(RUNNERS, lambda item: module_of(item[1]))
    order(TARGETS, lambda item: min((module_of(b) for b in item[1].builders.values()), default=""))
    order(BENCH, lambda item: module_of(item[1]))


def runners() -> tuple[str, ...]:
    """The `--backend` names."""
    load()
    return tuple(RUNNERS)


def runner(name: str, flag: str = "--backend") -> type[Runner]:
    """The registered runner class `name`, or a one-line error listing the known ones."""
    load()
    if name not in RUNNERS:
        raise BigBiGANError(f"{flag} {name}: expected one of {', '.join(RUNNERS)}")
    return RUNNERS[name]


def targets() -> tuple[str, ...]:
    """The `compile --target` names."""
    load()
    return tuple(TARGETS)


def bench_backends() -> tuple[str, ...]:
    """The `bench --backends` names, in row order."""
    load()
    return tuple(BENCH)


def target(name: str, flag: str = "--target") -> Target:
    """The registered target `name`, or a one-line error listing the known ones."""
    load()
    if name not in TARGETS:
        raise BigBiGANError(f"{flag} {name}: expected one of {', '.join(TARGETS)}")
    return TARGETS[name]


def runner_for_suffix(suffix: str) -> type[Runner] | None:
    """The runner that opens files ending in `suffix` (lower case, with the dot), if any."""
    load()
    name = SUFFIXES.get(suffix)
    return RUNNERS[name] if name is not None else None


def plan_rows(backends: Sequence[str], settings: BenchSettings) -> list[BenchRow]:
    """Every bench row of the selected backends, in registration order."""
    load()
    return [row for name, rows in BENCH.items() if name in backends for row in rows(settings)]
