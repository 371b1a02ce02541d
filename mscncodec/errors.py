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


class ModelFloorError(RateError):
    """The target is under the smallest stream *this model* writes for the image (its fixed costs: what its
    entropy model charges for grids it cannot leave out, a decoder update), though not under the format's
    minimum: a model made for lower rates may reach it. The image codec falls back to one where it routed
    the model; with an explicit model it is the refusal."""


class LimitError(MscnError):
    """The work asked for exceeds a limit the caller set (--max-pixels, --max-voxels): refused before any
    large allocation. The signal itself may be fine; raise the limit to accept it."""

    exit_code = 5


class OutputError(MscnError):
    """An output cannot be written: the OS refused (a read-only folder, a full disk, the file-size limit,
    a folder we may not search). Nothing is left behind: no part of the file, and an existing file
    stays as it was. ``errno`` is the OS's error number (None where there was none)."""

    exit_code = 6
    errno: int | None = None

    @property
    def stops_batch(self) -> bool:
        """Whether the next output would fail the same way whatever it holds (the disk or a quota is full):
        a batch stops rather than recompute every remaining file for nothing."""
        import errno

        return self.errno in (errno.ENOSPC, errno.EDQUOT)


def below_minimum(bpp: float, target_bytes: int, width: int, height: int, floor_bytes: int, how: str,
                  error: type[RateError] = RateError) -> RateError:
    """The RateError of an image target under the smallest stream the codec can write for it.

    Every image family words it the same way and names the minimum rate, in bpp and in bytes;
    `how` says what that minimum is (e.g. "at its coarsest setting"); `error` a subclass where the
    minimum is one model's, not the format's (ModelFloorError).
    """
    e = error(f"target {bpp:.4g} bpp ({target_bytes} bytes) is below this codec's minimum for a "
              f"{width}x{height} image: {8 * floor_bytes / (width * height):.4f} bpp ({floor_bytes} bytes) {how}")
    e.floor_bytes = floor_bytes
    return e
