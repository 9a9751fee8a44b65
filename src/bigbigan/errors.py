"""User errors versus bugs: the CLI edge (`bigbigan.cli.main`) turns every `BigBiGANError` into
one line and exit 1, and anything else into an "internal error (this is a bug)" line with its
traceback (docs/cli.md, "Errors and exit codes").

Library code raises `BigBiGANError` (or a subclass) for anything a user can fix: a bad file, a
bad value, an unmet tolerance. It never prints or exits itself."""

from __future__ import annotations


class BigBiGANError(Exception):
    """A user-facing failure: bad input, missing file, unmet tolerance.

    The message is one line naming the file or flag, what was expected and what was found.
    """


class UsageError(BigBiGANError):
    """The command line itself is wrong (a flag combination the parser cannot check): the CLI
    prints it like argparse does and exits 2, before any work is done."""


class ParameterError(BigBiGANError):
    """A bad value of a named library parameter. The library names the parameter (`batch`);
    the CLI names the flag that set it (`--batch`), so one message serves both callers."""

    def __init__(self, parameter: str, value: object, problem: str):
        self.parameter, self.value, self.problem = parameter, value, problem
        super().__init__(f"{parameter}={value}: {problem}")

    def for_flag(self, flag: str) -> str:
        """The message as the CLI shows it: `--batch 0: expected a positive integer`."""
        return f"{flag} {self.value}: {self.problem}"


class DeviceError(BigBiGANError):
    """A device that this machine or this build cannot provide (`--device cuda` on a CPU-only
    torch, a GPU index beyond the visible ones)."""
