"""Shared argument groups: one definition per flag, composed by every subcommand.

A flag means the same thing in every subcommand that takes it (docs/cli.md, "Grammar"): each is
declared here once, as a plain function a subcommand calls with its own default and help. A
renamed flag keeps its old spelling as a hidden alias (`alias`), so old command lines still run.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from bigbigan.errors import BigBiGANError, DeviceError

# ---- value types (argparse turns their ArgumentTypeError into a usage error, exit 2) ----


def positive(text: str) -> int:
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text}")
    return value


def non_negative(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected zero or a positive integer, found {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected an integer, found {text}") from e


def seconds(text: str) -> float:
    """A positive, finite number (a duration, a size in MB)."""
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a number, found {text}") from e
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, found {text}")
    return value


_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def device_name(text: str) -> str:
    """msame's bare device id `N` is `cuda:N`; anything else is checked by `check_device`, so
    that a bad name is one line and exit 1, like every other bad value of a device."""
    name = text.strip().lower()
    return f"cuda:{int(name)}" if name.isdigit() else name


def check_device(device: str) -> None:
    if not _DEVICE.fullmatch(device):
        raise DeviceError(
            f"--device {device}: expected cpu, cuda, cuda:N or a GPU index N (msame's --device)"
        )


# ---- help ----


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter, minus the noise of `(default: None)` and `False`."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action) or ""


def command(
    subparsers: argparse._SubParsersAction, name: str, help: str, run: Callable[..., int | None]
) -> argparse.ArgumentParser:
    """A subcommand's parser: its help shows defaults, it takes --verbose, it calls `run`."""
    parser = subparsers.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
    verbose(parser)
    parser.set_defaults(func=run)
    return parser


def alias(parser: argparse.ArgumentParser, old: str, dest: str, **kwargs: object) -> None:
    """Accept a former spelling of a flag, hidden from --help, writing the same `dest`."""
    parser.add_argument(old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def verbose(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    """`--verbose`, before or after the subcommand (the subcommand's copy must not reset it)."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="show the traceback of any error (also: BIGBIGAN_DEBUG=1)",
    )


# ---- groups ----


def architecture(parser: argparse.ArgumentParser) -> None:
    """The architecture of a new model (train, summary): dataset, width, conditioning."""
    parser.add_argument("--dataset", default="fashion_mnist", help="sets channels and init")
    parser.add_argument("--ch", type=positive, default=64, help="base width (reference: 64)")
    parser.add_argument("--unconditional", action="store_true", help="no class conditioning")


def data(parser: argparse.ArgumentParser, help: str = "dataset directory") -> None:
    parser.add_argument("--data-dir", help=f"{help} (fashion_mnist: Debian's by default)")


def checkpoint(parser: argparse.ArgumentParser, help: str = "", required: bool = False) -> None:
    """`--checkpoint`: a run folder, its checkpoint.json or its model.safetensors."""
    what = "run folder, its checkpoint.json or its model.safetensors"
    parser.add_argument(
        "--checkpoint", required=required, help=f"{what}{'; ' + help if help else ''}"
    )


def device(parser: argparse.ArgumentParser, help: str = "") -> None:
    parser.add_argument(
        "--device",
        type=device_name,
        default="cpu",
        help="cpu, cuda, cuda:N, or N (msame's device id: cuda:N)" + (f"; {help}" if help else ""),
    )


def seed(parser: argparse.ArgumentParser, help: str = "random seed") -> None:
    parser.add_argument("--seed", type=int, default=0, help=help)


def batch(
    parser: argparse.ArgumentParser,
    default: int | None = None,
    help: str = "batch size",
    old: str | None = None,
) -> None:
    """`--batch`: images per model call; `old` keeps a former spelling (`--batch-size`)."""
    parser.add_argument("--batch", type=positive, default=default, help=help)
    if old:
        alias(parser, old, "batch", type=positive)


def count(parser: argparse.ArgumentParser, default: int | None, help: str) -> None:
    """`--count`: how many samples a command generates."""
    parser.add_argument("--count", type=positive, default=default, help=help)


def threads(
    parser: argparse.ArgumentParser, help: str = "CPU threads", default: int | None = None
) -> None:
    parser.add_argument("--threads", type=positive, default=default, help=help)


def timing(
    parser: argparse.ArgumentParser,
    loop: int | None,
    warmup: int | None = 0,
    duration: bool = False,
    note: str = "",
) -> None:
    """`--warmup N` untimed calls, then `--loop N` timed calls (msame's name; `--repeats` is the
    same flag) or, with `duration`, `--duration S` seconds of timed calls instead."""
    if warmup is not None:
        parser.add_argument(
            "--warmup", type=non_negative, default=warmup, help="untimed calls first"
        )
    runs = parser.add_mutually_exclusive_group() if duration else parser
    runs.add_argument(
        "--loop", "--repeats", dest="loop", type=positive, default=loop, help="timed calls" + note
    )
    if duration:
        runs.add_argument("--duration", type=seconds, help="time calls for this many seconds")


def tolerance(parser: argparse.ArgumentParser, default: float | None, statistic: str) -> None:
    """`--tolerance T`: fail when the output's |difference| from its reference, reduced by
    `statistic` (max or mean, named in the help), is above T."""
    parser.add_argument(
        "--tolerance",
        type=float,
        default=default,
        help=f"fail above this {statistic} |difference| from the reference",
    )


def tolerances(parser: argparse.ArgumentParser) -> None:
    """The comparator's tolerances (compare, layerwise): per-output atol/rtol and a statistic."""
    from bigbigan.compare.statistics import STATISTICS

    parser.add_argument("--atol", action="append", help="absolute tolerance: 1e-5 or NAME:1e-4")
    parser.add_argument("--rtol", action="append", help="relative tolerance: 1e-3 or NAME:1e-2")
    parser.add_argument("--statistic", choices=STATISTICS, help="how |diff| is reduced")
    parser.add_argument("--quantile", type=float, default=0.99, help="for --statistic quantile")
    tolerance(parser, None, "mean (= --atol T --statistic mean)")


def inputs(parser: argparse.ArgumentParser, help: str = "") -> None:
    parser.add_argument(
        "--input",
        help="a.bin,b.npy in model input order, or x2:b.bin,x1:a.bin by name, or folders of "
        "per-sample files (one per input), or a make-inputs folder; default: seeded synthetic"
        + (f"; {help}" if help else ""),
    )


def out(
    parser: argparse.ArgumentParser,
    kind: str,
    help: str,
    default: str | None = None,
    required: bool = False,
) -> None:
    """`--out`: a FILE when the command writes one artefact, a FOLDER when it writes several."""
    metavar = "FILE" if kind == "file" else "DIR"
    parser.add_argument("--out", metavar=metavar, default=default, required=required, help=help)


def json_flag(parser: argparse.ArgumentParser, help: str = "print one JSON object") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def summary(parser: argparse.ArgumentParser, help: str = "also write the JSON report here") -> None:
    parser.add_argument("--summary", metavar="FILE", help=help)


# ---- checks a subcommand runs before its work ----


def output_file(path: str | None, flag: str = "--out") -> None:
    """A one-file output must not name an existing folder (the rule of docs/cli.md)."""
    if path is not None and Path(path).is_dir():
        raise BigBiGANError(
            f"{flag} {path}: is a folder; this command writes one file there "
            f"(give a file name, e.g. {Path(path) / 'out.bin'})"
        )


def torch_device(device: str) -> None:
    """Fail in one line when torch cannot give us `device` (a CPU-only build, no GPU visible,
    an index beyond the visible GPUs) instead of torch's assertion deep inside the work."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.backends.cuda.is_built():
        raise DeviceError(
            f"--device {device}: this torch build has no CUDA support "
            f"(torch {torch.__version__}); use --device cpu"
        )
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {device}: no CUDA GPU is visible; use --device cpu")
    _, _, index = device.partition(":")
    if index and int(index) >= torch.cuda.device_count():
        raise DeviceError(
            f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible"
        )


def split_list(text: str | None) -> list[str] | None:
    """`a.bin,b.bin` -> ["a.bin", "b.bin"] (empty items dropped); None stays None."""
    return [item for item in text.split(",") if item] if text else None
