"""The `bigbigan` command: the parser assembled from one module per subcommand, and the one
error boundary every subcommand runs inside.

Exit codes (docs/cli.md): 0 success (compare: pass); 1 a user error (bad file or value, an OS
error such as a full disk, a missing device) or a failed check; 2 bad usage (the parser's
checks); 70 an internal error, i.e. a bug (sysexits' EX_SOFTWARE); 130 interrupted.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType

from bigbigan import __version__
from bigbigan.cli import (
    bench,
    compare,
    compile,
    evaluate,
    export,
    generate,
    import_pb,
    infer,
    layerwise,
    make_inputs,
    pipeline,
    serve,
    summary,
    train,
    train_classifier,
)
from bigbigan.cli.args import HelpFormatter, check_device, verbose
from bigbigan.errors import BigBiGANError, ParameterError, UsageError
from bigbigan.fsutil import command_scope
from bigbigan.training.resume import given_options

# The subcommand registry: a subcommand is one module with NAME, add_parser and run.
SUBCOMMANDS: tuple[ModuleType, ...] = (
    summary,
    train,
    make_inputs,
    generate,
    export,
    import_pb,
    compile,
    infer,
    compare,
    layerwise,
    evaluate,
    train_classifier,
    pipeline,
    bench,
    serve,
)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BUG = 70  # sysexits.h EX_SOFTWARE
EXIT_INTERRUPTED = 130
DEBUG_ENV = "BIGBIGAN_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    return _assemble()[0]


def _assemble() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's own parser, by name."""
    parser = argparse.ArgumentParser(
        prog="bigbigan",
        description="BigBiGAN from training to fast, verified offline inference.",
        epilog="Every flag, the grammar they share and the exit codes: docs/cli.md",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bigbigan {__version__}")
    verbose(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = {}
    for module in SUBCOMMANDS:
        commands[module.NAME] = module.add_parser(sub)
    return parser, commands


def _did_you_mean(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """An unknown subcommand: argparse's error, with the nearest command names."""
    word = next((a for a in argv if not a.startswith("-")), None)
    names = [m.NAME for m in SUBCOMMANDS]
    if word is None or word in names:
        return
    close = difflib.get_close_matches(word, names, n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; choose from {', '.join(names)}"
    parser.error(f"unknown command {word!r}{hint}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _assemble()
    _did_you_mean(parser, argv)
    args = parser.parse_args(argv)
    args.given = given_options(_assemble()[0], argv)
    debug = args.verbose or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        if getattr(args, "device", None) is not None:
            check_device(args.device)
        with command_scope():  # outputs never over inputs; undo folders of a failed command
            return args.func(args) or 0
    except KeyboardInterrupt:
        _report(args.command, "interrupted", None)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the one place every error is sorted
        return _boundary(commands[args.command], args.command, e, debug)


def _boundary(parser: argparse.ArgumentParser, command: str, e: Exception, debug: bool) -> int:
    """Sort an error: a user's gets one line (exit 1, or 2 for usage), a bug its traceback.
    `parser` is the subcommand's own, whose flags name the library's parameters."""
    if isinstance(e, BigBiGANError):
        _report(command, _user_message(parser, e), e if debug else None)
        return EXIT_USAGE if isinstance(e, UsageError) else EXIT_ERROR
    if isinstance(e, OSError):
        _report(command, os_message(e), e if debug else None)
        return EXIT_ERROR
    if _is_missing_cuda(e):
        message = f"this torch build has no CUDA support: {e}; use --device cpu"
        _report(command, message, e if debug else None)
        return EXIT_ERROR
    message = f"internal error (this is a bug; please report it with the traceback): {_one(e)}"
    _report(command, message, e)
    return EXIT_BUG


def _user_message(parser: argparse.ArgumentParser, e: BigBiGANError) -> str:
    if isinstance(e, ParameterError):
        flag = flag_for(parser, e.parameter)
        return e.for_flag(flag) if flag else str(e)
    return str(e)


def flag_for(parser: argparse.ArgumentParser, dest: str) -> str | None:
    """The visible flag of a subcommand's parser that stores `dest` (`batch` -> `--batch`)."""
    for action in parser._actions:
        if action.dest == dest and action.help is not argparse.SUPPRESS:
            return next((o for o in action.option_strings if o.startswith("--")), None)
    return None


def os_message(e: OSError) -> str:
    """One line: the path the OS refused (a rename's destination first) and its reason."""
    path = e.filename2 if e.filename2 is not None else e.filename
    reason = e.strerror or str(e)
    code = errno.errorcode.get(e.errno or 0)
    reason = f"{reason} ({code})" if code else reason
    return f"{os.fsdecode(path)}: {reason}" if path is not None else reason


def _is_missing_cuda(e: BaseException) -> bool:
    """torch's own assertion when CUDA is used on a CPU-only build (a path we did not check)."""
    return isinstance(e, (AssertionError, RuntimeError)) and "compiled with CUDA" in str(e)


def _one(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _report(command: str, message: str, shown: BaseException | None) -> None:
    """The traceback first (when asked for, or for a bug), then the one line, last on screen."""
    if shown is not None:
        _unsuppress(shown)
        traceback.print_exception(type(shown), shown, shown.__traceback__, file=sys.stderr)
    print(f"bigbigan {command}: error: {message}", file=sys.stderr)


def _unsuppress(e: BaseException | None) -> None:
    """Show the causes a `raise ... from None` hid (our library chains its causes with
    `from err`; code we call may not): with a traceback asked for, the boundary, not the raise
    site, decides what is worth seeing."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__suppress_context__ = False
        e = e.__cause__ or e.__context__


if __name__ == "__main__":
    sys.exit(main())
