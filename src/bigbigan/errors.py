"""The one exception type users see: the CLI prints its message and exits 1."""


class BigBiGANError(Exception):
    """A user-facing failure: bad input, missing file, unmet tolerance.

    The message is one line naming the file or flag, what was expected and what was found.
    """
