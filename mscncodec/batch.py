"""Batch mode of ``mscn encode`` / ``mscn decode``: many inputs into one folder, one progress bar, and
optionally several worker processes (``--jobs``).

Every input is one job. A job that fails (any MscnError: unreadable input, corrupted stream, a limit,
an existing output) is reported on one stderr line and skipped; the others are written. Outputs are
named ``DIR/<stem>.mscn`` (encode) or ``DIR/<stem>.<format>`` (decode; by default the modality's
``default_output``: .png for images, .ply for meshes). The parent process plans (checks every input and
output before any work), hands the coding to the workers, and writes each result atomically with the
single-file rules: never over an existing file without --force, never over an input, even with --force.

Workers are started with ``spawn`` (forking a process whose torch/OpenMP threads are running can
deadlock the children) and get ``threads // jobs`` torch threads each. They end with the parent, however
it dies (``kill -9`` included: ``_runtime.die_with_parent``), so no worker goes on computing as an orphan,
and with them the multiprocessing resource tracker.

OS errors (issue 30) are failures like the others: an input the OS will not let us read, or an output it
will not let us write (a read-only folder, the file-size limit of ``ulimit -f``) is one line naming the
file and the cause, nothing of that output is left (no ``.part`` file, an existing file untouched), and
the batch goes on with the other files; the exit code is then non-zero. A full disk or quota (ENOSPC,
EDQUOT: ``OutputError.stops_batch``) stops the batch instead: every later output would fail the same way
after minutes of coding, so the jobs still running are ended, and one more line says how many files
were not written.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mscncodec.errors import MscnError


@dataclass
class Job:
    src: Path
    out: Path
    options: dict = field(default_factory=dict)  # what the worker passes to the API for this input


@dataclass
class Failure:
    src: Path
    error: MscnError

    def line(self) -> str:
        """The one stderr line: the message, naming the input if it does not already."""
        msg = str(self.error)
        return msg if str(self.src) in msg else f"{self.src}: {msg}"


# ---------------------------------------------------------------- work done in a worker (or in-process)

def encode_one(src: str, options: dict) -> tuple[bytes, dict]:
    """Encode one input: (stream, report)."""
    from mscncodec.api import encode

    return encode(Path(src), return_report=True, progress=False, **options)


def decode_one(src: str, suffix: str, options: dict) -> tuple[bytes, dict]:
    """Decode one stream into the bytes of its output file; (file bytes, summary for --verbose)."""
    import time

    from mscncodec.api import decode, stream_modality
    from mscncodec.container.files import read_input

    data = read_input(Path(src))
    mod = stream_modality(data)
    check_format(mod, suffix, src)
    t = time.perf_counter()
    signal = decode(data, **options)
    info = mod.signal_info(signal, len(data), time.perf_counter() - t)
    return mod.write(signal, suffix), info


def check_format(mod, suffix: str, src) -> None:
    if "*" not in mod.outputs and suffix.lower() not in mod.outputs:
        raise MscnError(f"unknown output format {suffix or '(none)'!r} for the {mod.name} in {src} "
                        f"(use {', '.join(mod.outputs)})")


def _start_worker(parent_pid: int) -> None:
    """A worker's initializer: end with the batch that started it, even a killed one."""
    from mscncodec._runtime import die_with_parent

    die_with_parent(parent_pid)


def _in_worker(threads: int, work: Callable, *args):
    """Run one job in a worker process with its share of the torch threads (set per job: importing the
    job's function may have changed them)."""
    import torch

    from mscncodec._runtime import set_logging, tune_allocator

    tune_allocator()  # a spawned worker is a fresh process: the CLI's tuning does not carry over
    set_logging()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return work(*args)


# ---------------------------------------------------------------- planning (parent, before any work)

class _Inputs:
    """The inputs of a batch, to tell whether an output path names one of them (links included)."""

    def __init__(self, paths: list[Path]):
        self.resolved, self.ids = set(), set()
        for p in paths:
            try:
                self.resolved.add(p.resolve())
                st = p.stat()
                self.ids.add((st.st_dev, st.st_ino))
            except (OSError, RuntimeError):
                pass

    def holds(self, out: Path) -> bool:
        try:
            if out.resolve() in self.resolved:
                return True
            st = out.stat()
        except (OSError, RuntimeError):
            return False
        return (st.st_dev, st.st_ino) in self.ids


def prepare_out_dir(out_dir: Path) -> None:
    """The output folder exists (created, with its parents, if missing), is a folder, and we may write in it
    (else one OutputError for the whole batch)."""
    from mscncodec.container.files import may_write_in, write_error

    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise MscnError(f"--out-dir {out_dir} is not a folder")
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(out_dir, e, f"cannot create --out-dir {out_dir}") from None
    if not may_write_in(out_dir):  # one line for the batch, not one per file after its work
        raise write_error(out_dir, PermissionError(errno.EACCES, os.strerror(errno.EACCES)),
                          f"cannot write in --out-dir {out_dir}")


def plan(srcs: list[Path], out_dir: Path, name: Callable[[Path], tuple[str, dict]], force: bool
         ) -> tuple[list[Job], list[Failure]]:
    """One job per input, in order, or a Failure: the input is unreadable, `name(src)` (-> output suffix
    and per-input options) raises, the output is an input, exists without --force, or is already another
    input's output."""
    from mscncodec.container.files import check_input, os_error, write_error

    inputs = _Inputs(srcs)
    jobs: list[Job] = []
    failures: list[Failure] = []
    taken: dict[Path, Path] = {}
    for src in srcs:
        try:
            check_input(src)
            suffix, options = name(src)
            out = out_dir / f"{src.stem}{suffix}"
            if inputs.holds(out):
                raise MscnError(f"output {out} is an input file: refusing to overwrite it (even with --force)")
            key = Path(os.path.normcase(os.path.abspath(out)))
            if key in taken:
                raise MscnError(f"output {out} is also the output of {taken[key]} (inputs with the same name)")
            try:
                if out.is_dir():
                    raise MscnError(f"{out} is a directory")
                if out.exists() and not force:
                    raise MscnError(f"{out} exists (use --force to overwrite)")
            except OSError as e:  # an --out-dir we may not search
                raise write_error(out, e) from None
            taken[key] = src
            jobs.append(Job(src, out, options))
        except MscnError as e:
            failures.append(Failure(src, e))
        except OSError as e:  # one a reader raised itself, unnamed
            failures.append(Failure(src, os_error(e)))
    return jobs, failures


# ---------------------------------------------------------------- running

def run(jobs: list[Job], work: Callable, args: Callable[[Job], tuple], *, n_jobs: int, threads: int,
        progress: bool, desc: str, done: Callable[[Job, object, Callable[[str, bool], None]], None]
        ) -> list[Failure]:
    """Run `work(*args(job))` for every job (in this process when n_jobs is 1, else in n_jobs spawned
    workers), with one progress bar; `done(job, result, say)` gets each result as it comes (it writes the
    output). Returns the jobs that failed: an MscnError or an OSError in `work` or in `done`, or a worker
    that died. An error that ``stops_batch`` (a full disk) ends the run: the jobs not finished are not
    written, and one more line says how many."""
    from concurrent.futures.process import BrokenProcessPool

    from mscncodec._runtime import progress_bar, quiet_resource_tracker
    from mscncodec.container.files import os_error

    failures: list[Failure] = []
    finished = 0
    bar = progress_bar(total=len(jobs), progress=progress, desc=desc, unit="file", leave=False)

    def say(msg: str, err: bool = False) -> None:
        stream = sys.stderr if err else sys.stdout
        if bar.disable:
            print(msg, file=stream, flush=True)
        else:
            bar.write(msg, file=stream)

    def finish(job: Job, get: Callable[[], object]) -> bool:
        """Write one result (or report its failure); False when the batch must stop."""
        nonlocal finished
        finished += 1
        error = None
        try:
            done(job, get(), say)
        except MscnError as e:
            error = e
        except OSError as e:  # a reader or writer that did not name its file
            error = os_error(e)
        except BrokenProcessPool as e:  # killed (the OOM killer), or crashed hard
            error = MscnError(f"the worker process coding it died ({e})")
        if error is not None:
            failures.append(Failure(job.src, error))
            say(f"mscn: error: {failures[-1].line()}", err=True)
        bar.update(1)
        if getattr(error, "stops_batch", False):
            left = len(jobs) - finished
            if left:
                say(f"mscn: error: stopping: {left} more file{'s' * (left != 1)} not written", err=True)
            return False
        return True

    try:
        workers = min(n_jobs, len(jobs))
        if workers <= 1:
            for job in jobs:
                if not finish(job, lambda job=job: work(*args(job))):
                    break
        else:
            per = max(1, threads // workers)
            quiet_resource_tracker()
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_start_worker, initargs=(os.getpid(),)) as pool:
                futures = {pool.submit(_in_worker, per, work, *args(job)): job for job in jobs}
                try:
                    for f in as_completed(futures):
                        if not finish(futures[f], f.result):
                            _stop(pool)
                            break
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        bar.close()
    return failures


def _stop(pool: ProcessPoolExecutor) -> None:
    """End a pool now: queued jobs cancelled, the running ones' workers terminated (their results could not
    be written anyway)."""
    running = list((getattr(pool, "_processes", None) or {}).values())  # CPython's pid -> Process (shutdown drops it)
    pool.shutdown(wait=False, cancel_futures=True)
    for p in running:
        try:
            p.terminate()
        except (OSError, ValueError):
            pass


def exit_code(failures: list[Failure]) -> int:
    """0 if nothing failed; else the failures' common exit code, or 1 when they differ."""
    codes = {f.error.exit_code for f in failures}
    return 0 if not codes else codes.pop() if len(codes) == 1 else 1


__all__ = ["Job", "Failure", "plan", "run", "exit_code", "encode_one", "decode_one", "prepare_out_dir"]
