"""Process-wide runtime tuning: threads, progress bars, logging, and the allocator.

glibc returns large freed blocks to the OS and page-faults them back on the next
training step; on the 2-core CI machine this made every fitting step 2-2.6x slower.
Raising the mmap and trim thresholds keeps those blocks in the heap. That changes the
whole process, so it is an explicit call (``tune_allocator()``: the CLI, its batch
workers and the scripts make it), never a side effect of ``import mscncodec``.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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


def ignore_file_size_signal() -> None:
    """Ignore SIGXFSZ (where there is one): past the file-size limit (``ulimit -f``) the kernel sends it,
    and by default it kills the process with a core dump and no word; ignored, the write fails with EFBIG,
    an OSError the CLI reports in one line (issue 30). Process-wide, so the CLI calls it, not an import;
    an ignored signal stays ignored in the processes this one spawns."""
    import signal

    if hasattr(signal, "SIGXFSZ"):
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except (ValueError, OSError):  # not the main thread
            pass


_PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 1.0  # how often a worker without PR_SET_PDEATHSIG looks whether its parent is still there


def die_with_parent(parent_pid: int) -> None:
    """Make this worker process end when `parent_pid` (the process that started it) does, however that dies
    (kill -9 included), so a killed ``mscn encode --jobs N`` or ``mscn bench --jobs N`` leaves no worker
    computing under PID 1 (issue 30). Call it first thing in the worker (a pool initializer).

    On Linux the kernel sends SIGKILL at the parent's death (prctl PR_SET_PDEATHSIG, set in the worker
    itself: it follows the parent *thread* that forked it, the pool's submitting thread); the parent may
    have died before that call, so the parent pid is checked after it. Everywhere, and as a second guard,
    a daemon thread polls os.getppid() every PARENT_POLL_S seconds and exits the process when it changes
    (an orphan is re-parented). With the workers gone the multiprocessing resource tracker, which exits at
    the end of its pipe once no process holds it, ends too.
    """
    import threading

    if sys.platform.startswith("linux"):
        try:
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="mscn-parent-watch", daemon=True).start()


def quiet_resource_tracker() -> None:
    """Keep multiprocessing's resource tracker from warning "There appear to be N leaked semaphore objects"
    when a parent with a process pool is killed: it cleans them up, which is its job, and the two lines of
    warning land on the user's terminal after mscn is gone. The tracker is started with this interpreter's
    -W options, so the filter goes into sys.warnoptions before a pool starts it."""
    option = "ignore:resource_tracker:UserWarning"
    if option not in sys.warnoptions:
        sys.warnoptions.append(option)


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (taskset, cpusets,
    `docker --cpuset-cpus`), which os.cpu_count() ignores, else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


IDLE_WINDOW = 0.1  # seconds over which idle_cpus reads /proc/stat (torch's import usually covers it)
BUSY_SHARE = 0.3  # a CPU counts as taken when other processes use this share of it or more


@dataclass(frozen=True)
class CpuSample:
    """Jiffies of the CPUs this process may run on, and our own CPU seconds, at one moment."""

    when: float
    busy: float
    total: float
    own: float


def cpu_sample() -> CpuSample | None:
    """Busy and total jiffies of our CPUs from /proc/stat (None where there is none: not Linux)."""
    try:
        cpus = os.sched_getaffinity(0)
        lines = Path("/proc/stat").read_text().splitlines()
    except (AttributeError, OSError):
        return None
    busy = total = 0.0
    for line in lines:
        name, *vals = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus and len(vals) >= 5:
            v = [float(x) for x in vals[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(v)
            busy += sum(v) - v[3] - v[4]
    return CpuSample(time.monotonic(), busy, total, time.process_time()) if total else None


def idle_cpus(before: CpuSample | None = None) -> int:
    """Our CPUs that other processes leave idle, read over IDLE_WINDOW seconds from `before` (our own CPU
    time in the window is not counted). Why: torch's threads wait for each other at every operation, so one
    thread on a CPU another job holds stalls them all -- a default-effort grid2 encode took 118 s with 2
    threads against 17 s with 1 while the other core trained (experiments/2026-11-threads/). At least 1."""
    n = available_cpus()
    before = before or cpu_sample()
    if before is None or n == 1:
        return n
    time.sleep(max(0.0, IDLE_WINDOW - (time.monotonic() - before.when)))
    after = cpu_sample()
    if after is None or after.total <= before.total:
        return n
    busy = n * (after.busy - before.busy) / (after.total - before.total)
    own = (after.own - before.own) / max(after.when - before.when, 1e-6)
    others = max(busy - own, 0.0)
    return max(1, n - int(others + 1.0 - BUSY_SHARE))


def default_threads(before: CpuSample | None = None) -> int:
    """torch threads when none are asked for: MSCN_THREADS if set (and not 0), else idle_cpus() (every CPU
    this process may run on that no other process is using; `before`: a cpu_sample taken earlier, so the
    window overlaps work already being done)."""
    from mscncodec.errors import MscnError

    raw = os.environ.get("MSCN_THREADS", "").strip() or "0"
    try:
        n = int(raw)
    except ValueError:
        raise MscnError(f"MSCN_THREADS must be a whole number of threads, got {raw!r}") from None
    if n < 0:
        raise MscnError(f"MSCN_THREADS must be a whole number of threads, got {raw!r}")
    return n or idle_cpus(before)


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads: n, else default_threads() (MSCN_THREADS, else the CPUs this process may
    use that are idle; measured across torch's import). Returns the number set."""
    before = cpu_sample() if not n else None
    import torch

    n = n or default_threads(before)
    torch.set_num_threads(n)
    return n


def set_logging(level: str | None = None) -> None:
    """Send the package's log records (``logging.getLogger("mscncodec...")``) to stderr at MSCN_LOG's level
    (debug, info, warning: the default; MSCN_DEBUG=1 means debug), unless the host configured logging."""
    import logging

    name = (level or os.environ.get("MSCN_LOG") or ("debug" if os.environ.get("MSCN_DEBUG") else "warning")).upper()
    log = logging.getLogger("mscncodec")
    log.setLevel(getattr(logging, name, logging.WARNING))
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
        log.addHandler(handler)


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


DEVICES = ("auto", "cpu", "cuda")  # what `mscn encode --device` takes


def resolve_device(device=None):
    """The torch device an encode's fit runs on: None or "cpu" the CPU (the exact coding always is),
    "auto" CUDA where torch sees a GPU, else the CPU; "cuda" (or "cuda:N") a GPU, an MscnError where there is
    none; a torch.device is taken as it is."""
    import torch

    from mscncodec.errors import MscnError

    if isinstance(device, torch.device):
        return device
    name = "cpu" if device is None else str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise MscnError(f"--device {name}: no CUDA GPU is available to this torch ({torch.__version__}); "
                            "use --device cpu or auto")
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise MscnError(f"unknown device {device!r} ({', '.join(DEVICES)})") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MscnError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return dev
    raise MscnError(f"unknown device {device!r} ({', '.join(DEVICES)})")
