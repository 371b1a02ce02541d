"""Errors the codec raises on purpose.

Every failure a user can cause (bad file, bad option, unreachable target) is an
``MscnError``; the CLI prints its message on one line and exits non-zero. Anything
else escaping is a bug.
"""


class MscnError(Exception):
    """Base class: a problem with the user's input or request, reported in one line."""

    exit_code = 1


class InputError(MscnError):
    """The input file cannot be read or is not a signal we can encode."""

    exit_code = 2


class BitstreamError(MscnError):
    """A .mscn stream is truncated, corrupted, foreign or from an incompatible model."""

    exit_code = 3


class RateError(MscnError):
    """The requested rate/quality cannot be reached."""

    exit_code = 4
