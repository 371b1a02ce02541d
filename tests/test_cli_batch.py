"""Batch mode (`mscn encode A B C --out-dir DIR`, `mscn decode X Y --out-dir DIR --format F`, --jobs) and
the global --threads option."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from click.testing import CliRunner
from PIL import Image

import mscncodec
from mscncodec import batch
from mscncodec.cli import main
from mscncodec.modalities import mesh as mmod

from conftest import PROVISIONAL, synthetic_image

pytestmark = pytest.mark.usefixtures("isolated_models")

FAST = ["--effort", "fast", "--steps", "2"]  # images: random-w32d5, meshes: random-sdf-w32d5+dense (no trained models)


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(synthetic_image(24, 32, seed=1)).save(d / "a.png")
    Image.fromarray(synthetic_image(32, 24, seed=2, channels=1)).save(d / "b.png")
    tm = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    tm.export(d / "c.obj")
    return d


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


def _errors(r) -> list[str]:
    lines = r.stderr.strip().splitlines()
    assert all(line.startswith("mscn: error: ") for line in lines), r.stderr
    assert "Traceback" not in r.output
    return lines


def test_encode_and_decode_a_mixed_batch(runner, inputs, tmp_path):
    out, back = tmp_path / "out", tmp_path / "back"
    r = runner.invoke(main, ["encode", *(str(inputs / n) for n in ("a.png", "b.png", "c.obj")), "--out-dir", str(out),
                             *FAST, "--resolution", "32"])  # --resolution concerns the mesh only
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    assert sorted(_listing(out)) == ["a.mscn", "b.mscn", "c.mscn"]  # no temporaries, the folder was created
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3 and sum("PSNR" in x for x in lines) == 2 and sum("Chamfer" in x and "32^3" in x
                                                                             for x in lines) == 1
    # the same bytes as the single-file form
    single = tmp_path / "single.mscn"
    assert runner.invoke(main, ["encode", str(inputs / "a.png"), "-o", str(single), *FAST, "-q"]).exit_code == 0
    assert single.read_bytes() == (out / "a.mscn").read_bytes()

    r = runner.invoke(main, ["decode", *(str(out / n) for n in ("a.mscn", "b.mscn", "c.mscn")), "--out-dir", str(back),
                             "-v"])
    assert r.exit_code == 0, r.output
    assert sorted(_listing(back)) == ["a.png", "b.png", "c.ply"]  # png for images, ply for meshes
    with Image.open(back / "a.png") as im:
        assert im.size == (32, 24) and im.mode == "RGB"
    with Image.open(back / "b.png") as im:
        assert im.size == (24, 32) and im.mode == "L"
    np.testing.assert_array_equal(np.asarray(Image.open(back / "a.png")), mscncodec.decode((out / "a.mscn").read_bytes()))
    mesh = mmod.load(back / "c.ply")
    assert len(mesh.faces) > 0
    assert len(r.stdout.strip().splitlines()) == 3 and "vertices" in r.stdout


def test_bad_files_are_one_line_each_and_skipped(runner, inputs, tmp_path):
    out = tmp_path / "out"
    (inputs / "t.png").write_text("not a PNG\n")
    r = runner.invoke(main, ["encode", str(inputs / "a.png"), str(inputs / "t.png"), str(inputs / "nope.png"),
                             str(inputs / "b.png"), "--out-dir", str(out), *FAST, "-q"])
    assert r.exit_code == 2, r.output  # both failures are input errors (exit code 2)
    lines = _errors(r)
    assert len(lines) == 2
    assert "t.png" in lines[0] + lines[1] and "nope.png: no such file" in lines[0] + lines[1]
    assert sorted(_listing(out)) == ["a.mscn", "b.mscn"]
    assert r.stdout == ""

    # decode: a corrupted stream (exit 3) and a missing one (exit 2): mixed codes exit 1
    bad = out / "bad.mscn"
    bad.write_bytes((out / "a.mscn").read_bytes()[:-5])
    back = tmp_path / "back"
    r = runner.invoke(main, ["decode", str(out / "a.mscn"), str(bad), str(out / "gone.mscn"), str(out / "b.mscn"),
                             "--out-dir", str(back)])
    assert r.exit_code == 1, r.output
    lines = _errors(r)
    assert len(lines) == 2 and any("truncated" in x and "bad.mscn" in x for x in lines)
    assert sorted(_listing(back)) == ["a.png", "b.png"]


def test_a_failure_while_coding_is_reported_and_the_rest_is_written(runner, inputs, tmp_path):
    """An input that fails in the encoder itself (not at planning): a translucent PNG."""
    rgba = np.dstack([synthetic_image(16, 16, seed=3), np.full((16, 16), 100, np.uint8)])
    Image.fromarray(rgba).save(inputs / "glass.png")
    out = tmp_path / "out"
    r = runner.invoke(main, ["encode", str(inputs / "glass.png"), str(inputs / "a.png"), "--out-dir", str(out), *FAST,
                             "-q"])
    assert r.exit_code == 2
    (line,) = _errors(r)
    assert "glass.png" in line and "translucent" in line
    assert sorted(_listing(out)) == ["a.mscn"]


def test_never_overwrite_without_force(runner, inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mscn").write_bytes(b"keep me")
    args = ["encode", str(inputs / "a.png"), str(inputs / "b.png"), "--out-dir", str(out), *FAST, "-q"]
    r = runner.invoke(main, args)
    assert r.exit_code == 1
    (line,) = _errors(r)
    assert "a.mscn exists (use --force to overwrite)" in line
    assert (out / "a.mscn").read_bytes() == b"keep me" and (out / "b.mscn").exists()
    r = runner.invoke(main, [*args, "--force"])
    assert r.exit_code == 0, r.output
    assert (out / "a.mscn").read_bytes()[:4] == b"MSCN"


def test_never_overwrite_an_input_even_with_force(runner, inputs, tmp_path):
    # decode: a stream whose output name is itself (a .mscn file called x.png, decoded into its own folder)
    stream = mscncodec.encode(synthetic_image(16, 16, seed=5), model=PROVISIONAL, effort="fast", steps=1)
    (inputs / "x.png").write_bytes(stream)
    r = runner.invoke(main, ["decode", str(inputs / "x.png"), "--out-dir", str(inputs), "--force"])
    assert r.exit_code == 1
    (line,) = _errors(r)
    assert "is an input file" in line
    assert (inputs / "x.png").read_bytes() == stream
    # encode: the output would be a link to one of the inputs (here: to another input than its own)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mscn").symlink_to(inputs / "b.png")
    before = (inputs / "b.png").read_bytes()
    r = runner.invoke(main, ["encode", str(inputs / "a.png"), str(inputs / "b.png"), "--out-dir", str(out), *FAST,
                             "-q", "--force"])
    assert r.exit_code == 1
    (line,) = _errors(r)
    assert "a.mscn is an input file" in line
    assert (inputs / "b.png").read_bytes() == before and (out / "b.mscn").exists()


def test_inputs_with_the_same_name_do_not_clobber_each_other(runner, inputs, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(synthetic_image(16, 16, seed=8)).save(other / "a.png")
    out = tmp_path / "out"
    r = runner.invoke(main, ["encode", str(inputs / "a.png"), str(other / "a.png"), "--out-dir", str(out), *FAST, "-q"])
    assert r.exit_code == 1
    (line,) = _errors(r)
    assert str(other / "a.png") in line and "also the output of" in line
    assert mscncodec.decode((out / "a.mscn").read_bytes()).shape == (24, 32, 3)  # the first one's


@pytest.mark.parametrize("args,words", [
    (["-o", "x.mscn"], "-o names one output but 2 inputs"),
    (["-o", "x.mscn", "--out-dir", "d"], "either -o OUTPUT or --out-dir DIR"),
    ([], "give -o OUTPUT"),
    (["--out-dir", "d", "--bpp", "1", "--quality", "3"], "only one of --bpp or --quality"),
])
def test_encode_usage_errors_are_one_line_and_write_nothing(runner, inputs, tmp_path, args, words):
    os.chdir(tmp_path)
    r = runner.invoke(main, ["encode", str(inputs / "a.png"), str(inputs / "b.png"), *args])
    assert r.exit_code == 1
    (line,) = _errors(r)
    assert words in line and r.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_an_option_for_no_input_is_refused(runner, inputs, tmp_path):
    r = runner.invoke(main, ["encode", str(inputs / "a.png"), "--out-dir", str(tmp_path / "o"), "--resolution", "64"])
    assert r.exit_code == 1 and "--resolution applies to none of the inputs (image)" in _errors(r)[0]
    r = runner.invoke(main, ["encode", str(inputs / "c.obj"), "--out-dir", str(tmp_path / "o"), "--bpp", "0.5"])
    assert r.exit_code == 1 and "--bpp applies to none of the inputs (mesh)" in _errors(r)[0]
    assert not (tmp_path / "o").exists()


def test_decode_format(runner, inputs, tmp_path):
    out = tmp_path / "s"
    assert runner.invoke(main, ["encode", str(inputs / "a.png"), str(inputs / "c.obj"), "--out-dir", str(out), *FAST,
                                "--resolution", "16", "-q"]).exit_code == 0
    back = tmp_path / "back"
    r = runner.invoke(main, ["decode", str(out / "a.mscn"), str(out / "c.mscn"), "--out-dir", str(back), "--format",
                             "png"])
    assert r.exit_code == 1
    (line,) = _errors(r)
    assert "unknown output format '.png' for the mesh" in line
    assert sorted(_listing(back)) == ["a.png"]
    r = runner.invoke(main, ["decode", str(out / "c.mscn"), "--out-dir", str(back), "--format", ".OBJ"])
    assert r.exit_code == 0, r.output
    assert (back / "c.obj").exists()
    r = runner.invoke(main, ["decode", str(out / "a.mscn"), "-o", str(back / "z.png"), "--format", "png"])
    assert r.exit_code == 1 and "--format is for --out-dir" in _errors(r)[0]


def test_one_progress_bar_over_the_files(runner, inputs, tmp_path, monkeypatch):
    """One bar (total = the number of jobs, one tick per file); the encoder draws none of its own; lines go
    through the bar while it is shown."""
    from mscncodec import _runtime, api

    bars, progress_asked = [], []

    class Bar:
        disable = False

        def __init__(self, **kw):
            self.kw, self.n, self.lines, self.closed = kw, 0, [], False
            bars.append(self)

        def update(self, n):
            self.n += n

        def write(self, msg, file=None):
            self.lines.append(msg)

        def close(self):
            self.closed = True

    real_encode = api.encode

    def spy(src, **kw):
        progress_asked.append(kw.get("progress"))
        return real_encode(src, **kw)

    monkeypatch.setattr(_runtime, "progress_bar", lambda iterable=None, **kw: Bar(**kw))
    monkeypatch.setattr(api, "encode", spy)
    (inputs / "t.png").write_text("nope")
    r = runner.invoke(main, ["encode", str(inputs / "a.png"), str(inputs / "b.png"), str(inputs / "t.png"),
                             "--out-dir", str(tmp_path / "o"), *FAST])
    assert r.exit_code == 2
    (bar,) = bars
    assert bar.kw["total"] == 3 and bar.n == 3 and bar.closed
    assert progress_asked == [False, False, False]
    assert sum("PSNR" in x for x in bar.lines) == 2 and sum(x.startswith("mscn: error:") for x in bar.lines) == 1
    assert r.stdout == ""  # everything went through the bar


def test_jobs_give_the_same_files(runner, inputs, tmp_path):
    names = [str(inputs / "a.png"), str(inputs / "b.png")]
    r1 = runner.invoke(main, ["encode", *names, "--out-dir", str(tmp_path / "one"), *FAST, "-q"])
    r2 = runner.invoke(main, ["--threads", "2", "encode", *names, "--out-dir", str(tmp_path / "two"), *FAST, "-q",
                              "--jobs", "2"])
    assert r1.exit_code == 0 and r2.exit_code == 0, r2.output
    assert _listing(tmp_path / "one") == _listing(tmp_path / "two")
    (inputs / "t.png").write_text("nope")
    r3 = runner.invoke(main, ["decode", str(tmp_path / "two" / "a.mscn"), str(inputs / "t.png"), "--out-dir",
                              str(tmp_path / "back"), "--jobs", "2"])
    assert r3.exit_code == 3 and "not a .mscn" in _errors(r3)[0]
    assert sorted(_listing(tmp_path / "back")) == ["a.png"]


def _threads_in_worker() -> int:
    return torch.get_num_threads()


def test_workers_share_the_threads(tmp_path):
    jobs = [batch.Job(tmp_path / f"{i}", tmp_path / f"{i}.out") for i in range(4)]
    got = []
    failures = batch.run(jobs, _threads_in_worker, lambda j: (), n_jobs=2, threads=4, progress=False, desc="t",
                         done=lambda job, result, say: got.append(result))
    assert failures == [] and got == [2, 2, 2, 2]


# ---------------------------------------------------------------- --threads

def test_threads_option_reaches_torch(runner, tmp_path, monkeypatch):
    from mscncodec import api

    stream = tmp_path / "s.mscn"
    stream.write_bytes(mscncodec.encode(synthetic_image(16, 16, seed=5), model=PROVISIONAL, effort="fast", steps=1))
    seen = []
    real = api.describe
    monkeypatch.setattr(api, "describe", lambda data: seen.append(torch.get_num_threads()) or real(data))
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("MSCN_THREADS", "1")
        for n in (3, 2):
            assert runner.invoke(main, ["--threads", str(n), "info", str(stream)]).exit_code == 0
        assert runner.invoke(main, ["info", str(stream)]).exit_code == 0  # MSCN_THREADS when no --threads
        monkeypatch.delenv("MSCN_THREADS")
        from mscncodec import _runtime

        monkeypatch.setattr(_runtime, "idle_cpus", lambda before=None: 5)
        assert runner.invoke(main, ["info", str(stream)]).exit_code == 0  # the default: the CPUs left idle
        assert seen == [3, 2, 1, 5]
        r = runner.invoke(main, ["--threads", "0", "info", str(stream)])
        assert r.exit_code == 2 and "--threads" in r.output
        monkeypatch.setenv("MSCN_THREADS", "many")
        r = runner.invoke(main, ["info", str(stream)])
        assert r.exit_code == 1 and r.stderr.strip() == "mscn: error: MSCN_THREADS must be a whole number of threads, got 'many'"
    finally:
        torch.set_num_threads(before)
