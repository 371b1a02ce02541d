"""Process-wide runtime tuning, applied once at import.

glibc returns large freed blocks to the OS and page-faults them back on the next
training step; on the 2-core CI machine this made every fitting step 2-2.6x slower.
Raising the mmap and trim thresholds keeps those blocks in the heap.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied = False


def tune_allocator() -> bool:
    """Raise glibc's mmap/trim thresholds (no-op elsewhere). Returns True if applied."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 2**31 - 1) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    except (OSError, AttributeError):
        return False
    _applied = bool(ok)
    return _applied


def set_threads(n: int | None = None) -> None:
    """Use all cores for intra-op parallelism unless MSCN_THREADS says otherwise."""
    import torch

    n = n or int(os.environ.get("MSCN_THREADS", "0")) or os.cpu_count() or 1
    torch.set_num_threads(n)


def show_progress(progress: bool = True) -> bool:
    """Whether to draw a progress bar: asked for, and stderr is a terminal.

    A tqdm bar redraws itself with carriage returns many times a second; in a log file
    or a CI transcript (stderr not a terminal) that is thousands of lines of noise.
    """
    if not progress:
        return False
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable=None, *, progress: bool = True, **kw):
    """The one way mscn makes a tqdm bar: disabled unless show_progress(progress)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not show_progress(progress), **kw)
