"""Faults from outside (issue 30): the OS refusing a write (a read-only folder, the file-size limit of
`ulimit -f`), a missing output folder, and `kill -9` in the middle of an encode, a decode or a batch.

Each is run as the user runs it, `mscn` in a subprocess, and must end the same way: no traceback, one
`mscn: error:` line per failed file naming it and the cause, a non-zero exit, no partial or `.part` file,
no overwritten file, and (kill -9 of a batch with --jobs 2) no process of it left running.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PROVISIONAL, synthetic_image

_SCRIPT = Path(sys.executable).with_name("mscn")
MSCN = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "mscncodec.cli"]
FAST = ["--effort", "fast", "--steps", "2"]
LIMIT_KB = 1  # bash's `ulimit -f` counts 1024-byte blocks


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """One thread, and an empty models folder: the provisional models, nothing loaded from weights."""
    models = tmp_path_factory.mktemp("models-empty")
    return dict(os.environ, MSCN_THREADS="1", OMP_NUM_THREADS="1", MSCN_MODELS=str(models),
                PYTHONPATH=str(Path(__file__).resolve().parents[1]))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, env) -> Path:
    """big.png (its stream and its decoded PNG are over LIMIT_KB), tiny.png (its decoded PNG is under),
    and their streams, made in this process."""
    from mscncodec.container.files import image_file_bytes
    from mscncodec import decode as decode_image
    from mscncodec.modalities.image_codec import encode_image

    d = tmp_path_factory.mktemp("in")
    big = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)  # noise: PNG ~12 KB
    Image.fromarray(big).save(d / "big.png")
    Image.fromarray(synthetic_image(8, 8, seed=3)).save(d / "tiny.png")
    with pytest.MonkeyPatch.context() as mp:
        from mscncodec import models

        mp.setenv("MSCN_MODELS", env["MSCN_MODELS"])
        mp.setattr(models, "_cache", {})
        (d / "big.mscn").write_bytes(encode_image(big, model=PROVISIONAL, effort="fast", steps=2, quality=100))
        (d / "tiny.mscn").write_bytes(encode_image(synthetic_image(8, 8, seed=3), model=PROVISIONAL,
                                                   effort="fast", steps=2, quality=0))
        sizes = {n: len(image_file_bytes(decode_image((d / f"{n}.mscn").read_bytes()), ".png"))
                 for n in ("big", "tiny")}
    assert (d / "big.mscn").stat().st_size > 1024 * LIMIT_KB and sizes["big"] > 1024 * LIMIT_KB, sizes
    assert sizes["tiny"] < 1024 * LIMIT_KB, sizes
    return d


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def _errors(r: subprocess.CompletedProcess, n: int = 1) -> list[str]:
    """The stderr lines: `n` of them, each one `mscn: error:` line, no traceback."""
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == n and all(line.startswith("mscn: error: ") for line in lines), r.stderr
    return lines


def _drop_dac() -> None:
    """(preexec) As root, give up overriding file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) for
    the program about to run, so a read-only folder is read-only to it."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(97)


def run(args: list[str], env: dict, cwd: Path, *, shell_prefix: str = "", unprivileged: bool = False,
        timeout: float = 120) -> subprocess.CompletedProcess:
    if shell_prefix:  # e.g. "ulimit -f 1": the limit is set in the shell that then runs mscn
        cmd = ["bash", "-c", f'{shell_prefix}; exec "$@"', "bash", *MSCN, *args]
    else:
        cmd = [*MSCN, *args]
    preexec = _drop_dac if unprivileged and os.geteuid() == 0 else None
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)
    if r.returncode == 97 and preexec:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE: a read-only folder is writable")
    return r


# ---------------------------------------------------------------- the OS refuses the write

@pytest.fixture()
def read_only(tmp_path) -> Path:
    if not hasattr(os, "geteuid"):
        pytest.skip("POSIX permissions")
    d = tmp_path / "ro"
    d.mkdir()
    (d / "old.png").write_bytes(b"old")
    d.chmod(0o555)
    yield d
    d.chmod(0o755)


@pytest.mark.parametrize("how", ["encode", "decode", "batch"])
def test_a_read_only_output_folder_is_one_line(how, inputs, env, read_only, tmp_path):
    args = {"encode": ["encode", str(inputs / "big.png"), "-o", str(read_only / "x.mscn"), *FAST],
            "decode": ["decode", str(inputs / "big.mscn"), "-o", str(read_only / "old.png"), "--force"],
            "batch": ["decode", str(inputs / "big.mscn"), str(inputs / "tiny.mscn"), "--out-dir", str(read_only),
                      "--jobs", "2"]}[how]
    before = _listing(read_only)
    r = run(args, env, tmp_path, unprivileged=True)
    (line,) = _errors(r)
    assert r.returncode == 6 and "Permission denied" in line and str(read_only) in line, line
    assert _listing(read_only) == before  # nothing new, no .part, the old file untouched


@pytest.mark.parametrize("how", ["encode", "decode", "batch"])
def test_the_file_size_limit_is_one_line_per_file(how, inputs, env, tmp_path):
    """`ulimit -f`: the kernel's SIGXFSZ would kill mscn without a word; ignored, the write fails (EFBIG) and
    is reported. In a batch the file over the limit fails and the other one is written."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "big.png").write_bytes(b"old")
    args = {"encode": ["encode", str(inputs / "big.png"), "-o", str(out / "big.mscn"), *FAST,
                       "--quality", "100"],
            "decode": ["decode", str(inputs / "big.mscn"), "-o", str(out / "big.png"), "--force"],
            "batch": ["decode", str(inputs / "big.mscn"), str(inputs / "tiny.mscn"), "--out-dir", str(out),
                      "--force"]}[how]
    r = run(args, env, tmp_path, shell_prefix=f"ulimit -f {LIMIT_KB}")
    assert r.returncode == 6, (r.returncode, r.stderr)
    (line,) = _errors(r)
    assert "File too large" in line and str(out / "big.") in line, line
    written = _listing(out)
    assert written.pop("big.png") == b"old"  # not overwritten
    assert written == ({"tiny.png": (out / "tiny.png").read_bytes()} if how == "batch" else {})  # no .part


def test_a_missing_output_folder_is_one_line(inputs, env, tmp_path):
    r = run(["decode", str(inputs / "tiny.mscn"), "-o", str(tmp_path / "nope" / "x.png")], env, tmp_path)
    (line,) = _errors(r)
    assert r.returncode == 1 and "does not exist" in line and not (tmp_path / "nope").exists()


def test_a_full_disk_stops_a_batch(tmp_path, capsys):
    """ENOSPC (no tmpfs to fill here: the writer is made to fail): one line for the file, one for the rest,
    the jobs after it are not run, exit 6."""
    import errno

    from mscncodec import batch
    from mscncodec.container import files

    def full(path, data, force):
        raise files.write_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    ran = []
    jobs = [batch.Job(Path(f"in{i}.png"), tmp_path / f"in{i}.mscn") for i in range(3)]
    failures = batch.run(jobs, lambda i: ran.append(i) or i, lambda j: (j.src,), n_jobs=1, threads=1, progress=False,
                         desc="t", done=lambda job, result, say: full(job.out, b"", False))
    assert len(ran) == 1 and len(failures) == 1 and batch.exit_code(failures) == 6
    text = capsys.readouterr().err.strip().splitlines()
    assert text == [f"mscn: error: in0.png: cannot write {tmp_path / 'in0.mscn'}: No space left on device",
                    "mscn: error: stopping: 2 more files not written"], text


# ---------------------------------------------------------------- kill -9

def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (the children's children included)."""
    parent: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parent.setdefault(int(text[text.rindex(")") + 2:].split()[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parent.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] not in "ZX"


def _kill_when(args: list[str], env: dict, cwd: Path, ready, deadline: float = 90) -> subprocess.Popen:
    """Start mscn, wait until `ready(pid)`, then kill -9 it (the test fails if it ended first)."""
    p = subprocess.Popen([*MSCN, *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t = time.monotonic()
    while not ready(p.pid) and time.monotonic() - t < deadline:
        assert p.poll() is None, f"mscn ended before it was killed: {p.communicate()}"
        time.sleep(0.1)
    assert p.poll() is None
    os.kill(p.pid, signal.SIGKILL)
    p.wait(30)
    return p


def _torch_loaded(pid: int) -> bool:
    """Whether the process has begun to load torch (the start of its work)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _cpu_seconds(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    utime, stime = text[text.rindex(")") + 2:].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def _fitting(pid: int) -> bool:
    """Whether an encode is in its fit: torch loaded and more CPU time spent than its start takes."""
    return _torch_loaded(pid) and _cpu_seconds(pid) > START_CPU_S


START_CPU_S = 4.0  # CPU seconds of `mscn encode` before its fit (imports, model): about 2 on the 2-core machine


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


@needs_proc
@pytest.mark.parametrize("how", ["encode", "decode"])
def test_kill_9_leaves_no_partial_file(how, inputs, env, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    args = {"encode": ["encode", str(inputs / "big.png"), "-o", str(out / "x.mscn"), "--effort", "fast",
                       "--steps", "100000"],  # minutes of fitting: killed in the middle
            "decode": ["decode", str(inputs / "big.mscn"), "-o", str(out / "x.png")]}[how]
    p = _kill_when(args, env, tmp_path, _fitting if how == "encode" else _torch_loaded)
    assert p.returncode == -signal.SIGKILL
    assert _listing(out) == {}


@needs_proc
@pytest.mark.parametrize("when", ["loading", pytest.param("fitting", marks=pytest.mark.slow)])
def test_kill_9_of_a_batch_leaves_no_process(when, inputs, env, tmp_path):
    """--jobs 2: the two workers and the resource tracker go with the killed parent (within seconds), and
    there is no partial output. Killed while the workers load torch for their first job (their death signal
    is armed by then: it is set before a job starts), or, slow, in the middle of their fits."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        shutil.copy(inputs / "big.png", src / f"p{i}.png")
    out = tmp_path / "out"
    args = ["encode", *(str(src / f"p{i}.png") for i in range(3)), "--out-dir", str(out), "--jobs", "2", "-q",
            "--effort", "fast", "--steps", "100000"]
    seen: list[int] = []

    def workers_busy(pid: int) -> bool:  # the tracker and two workers, the workers past their start
        kids = _descendants(pid)
        seen[:] = sorted(set(seen) | set(kids))
        busy = _fitting if when == "fitting" else _torch_loaded
        return len(kids) >= 3 and sum(busy(k) for k in kids) >= 2

    p = _kill_when(args, env, tmp_path, workers_busy)
    assert p.returncode == -signal.SIGKILL and len(seen) >= 3
    t = time.monotonic()
    while any(_running(k) for k in seen) and time.monotonic() - t < 10:
        time.sleep(0.1)
    left = {k: Path(f"/proc/{k}/cmdline").read_bytes().replace(b"\0", b" ")[:120] for k in seen if _running(k)}
    for k in left:  # do not leave them to the next test
        os.kill(k, signal.SIGKILL)
    assert not left, left
    err = p.stderr.read()  # every writer is gone: EOF
    assert "Traceback" not in err and "leaked" not in err, err  # nor the resource tracker's warning
    assert not out.exists() or _listing(out) == {}


def test_without_a_death_signal_a_worker_watches_its_parent(monkeypatch):
    """Where there is no PR_SET_PDEATHSIG (not Linux) the worker's watcher thread ends it once it is
    re-parented (its parent died)."""
    import threading

    from mscncodec import _runtime

    exited = threading.Event()
    ppids = iter([100, 100, 100, 1])  # the check at the start, then the watcher's polls

    def fake_exit(code):
        exited.set()
        threading.Event().wait()  # the watcher stops here for good (a daemon thread): it must never reach the
        # real os._exit once the patches are undone

    monkeypatch.setattr(_runtime.sys, "platform", "darwin")
    monkeypatch.setattr(_runtime, "PARENT_POLL_S", 0.01)
    monkeypatch.setattr(_runtime.os, "getppid", lambda: next(ppids, 1))
    monkeypatch.setattr(_runtime.os, "_exit", fake_exit)
    _runtime.die_with_parent(100)
    assert exited.wait(5)
