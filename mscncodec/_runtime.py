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


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (taskset, cpusets,
    `docker --cpuset-cpus`), which os.cpu_count() ignores, else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def default_threads() -> int:
    """torch threads when none are asked for: MSCN_THREADS if set (and not 0), else available_cpus()."""
    from mscncodec.errors import MscnError

    raw = os.environ.get("MSCN_THREADS", "").strip() or "0"
    try:
        n = int(raw)
    except ValueError:
        raise MscnError(f"MSCN_THREADS must be a whole number of threads, got {raw!r}") from None
    if n < 0:
        raise MscnError(f"MSCN_THREADS must be a whole number of threads, got {raw!r}")
    return n or available_cpus()


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads: n, else default_threads() (MSCN_THREADS, else every CPU this process
    may use). Returns the number set."""
    import torch

    n = n or default_threads()
    torch.set_num_threads(n)
    return n


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
