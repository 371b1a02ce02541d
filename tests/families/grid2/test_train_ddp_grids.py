"""The grid trainers data-parallel under torchrun (gloo, CPU): 2 processes at batch B/2 follow the loss curve
of one process at batch B (the same samples, lambdas and noise: the ranks take slices of one global batch),
rank 0 alone writes, the card records the world size, and --resume works under torchrun."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, photo_folder

from mscncodec.families.grid2.model import Grid2Model
from mscncodec.families.grid2.volume.model import Vol3Model
from mscncodec.models import from_state
from mscncodec.training import World

BIN = Path(sys.executable).parent
RTOL = 1e-4  # float sums in another order (a batch of B vs two of B/2, an all_reduce): far below this


def _torchrun(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """Two CPU processes (the one-process references run in this process: a start costs seconds here)."""
    r = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", *args], capture_output=True,
                       text=True, env={**os.environ, **env}, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _mscn(monkeypatch, args: list[str], env: dict) -> str:
    from click.testing import CliRunner

    from mscncodec.cli import main

    monkeypatch.setattr(sys, "argv", ["mscn", *args])
    r = CliRunner().invoke(main, args, env=env)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    assert r.exit_code == 0, r.output
    return r.output


def _records(log: Path) -> list[dict]:
    return [json.loads(ln) for ln in log.read_text().splitlines() if ln.startswith("{")]


def _max_rel(a: list[float], b: list[float]) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def _tensors_close(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


GRID2 = ["train", "image", "--arch", "grid2", "--levels", "3", "--hidden", "8", "--patch", "32", "--val-every", "1",
         "--no-progress"]


def test_grid2_two_ranks_follow_one_process(tmp_path, env, monkeypatch):
    data = photo_folder(tmp_path, 48)
    runs = {name: tmp_path / "models" / name for name in ("one", "two")}
    _mscn(monkeypatch, [*GRID2, "--data", str(data), "--out", str(runs["one"]), "--batch", "4", "--steps", "3",
                        "--threads", "1"], env)
    r = _torchrun([str(BIN / "mscn"), *GRID2, "--data", str(data), "--out", str(runs["two"]), "--batch", "2",
                   "--steps", "3"], env, tmp_path)
    assert r.stdout.count("wrote") == 1  # rank 0 alone reports
    one, two = (_records(runs[n].parent / f"{n}.run" / "train.log") for n in ("one", "two"))
    assert [r["step"] for r in two] == [1, 2, 3] == [r["step"] for r in one]
    for key in ("train_loss", "bpp_mid", "psnr_mid"):
        diff = _max_rel([r[key] for r in two], [r[key] for r in one])
        assert diff <= RTOL, (key, diff)
    assert len({r["train_loss"] for r in one}) == 3  # a curve, not a constant
    log = (runs["two"].parent / "two.run" / "train.log").read_text()
    assert log.count("# start step=0 world=2") == 1 and log.count("# wrote") == 1  # one writer
    ck1, ck2 = (torch.load(runs[n].parent / f"{n}.run" / "checkpoint.pt", weights_only=False) for n in ("one", "two"))
    assert ck2["step"] == 3 and ck2["origin"]["world_size"] == 2 and ck2["cfg"]["batch"] == 2
    assert _tensors_close(Grid2Model.from_state(ck2["model"]).tensors(),
                          Grid2Model.from_state(ck1["model"]).tensors()) < 1e-4
    assert not list((runs["two"].parent / "two.run").glob("*.tmp"))
    assert "world size 2 (data-parallel processes, batch 2 each)" in runs["two"].with_suffix(".md").read_text()
    model = from_state(torch.load(runs["two"].with_suffix(".pt"), map_location="cpu", weights_only=True))
    assert model.arch == "grid2" and model.meta["world_size"] == 2 and model.meta["steps"] == 3


@pytest.mark.slow  # the curve test covers the default run; this one the resume across world sizes
def test_grid2_resumes_under_torchrun(tmp_path, env, monkeypatch):
    """A run started on one process (batch 4) continues on two (batch 2 each) as it would have on one."""
    data = photo_folder(tmp_path, 48)
    one, two = tmp_path / "models" / "one", tmp_path / "models" / "two"
    args = [*GRID2, "--data", str(data), "--out", str(one), "--batch", "4", "--threads", "1"]
    _mscn(monkeypatch, [*args, "--steps", "2"], env)
    shutil.copytree(one.parent / "one.run", two.parent / "two.run")
    _mscn(monkeypatch, [*args, "--steps", "4", "--resume"], env)
    r = _torchrun([str(BIN / "mscn"), *GRID2, "--data", str(data), "--out", str(two), "--batch", "2", "--steps", "4",
                   "--resume"], env, tmp_path)
    assert r.stdout.count("wrote") == 1
    a, b = (_records(p.parent / f"{p.name}.run" / "train.log") for p in (one, two))
    assert [r["step"] for r in b] == [1, 2, 3, 4] == [r["step"] for r in a]
    assert _max_rel([r["train_loss"] for r in b], [r["train_loss"] for r in a]) <= RTOL
    log = (two.parent / "two.run" / "train.log").read_text()
    assert "# start step=0 world=1" in log and "# start step=2 world=2" in log
    ck = torch.load(two.parent / "two.run" / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 4 and ck["origin"]["world_size"] == 2


HOOK = '''
"""Three small synthetic volumes for the grid3 trainer's tests (never real data)."""
from pathlib import Path

import torch

from mscncodec.families.grid2.volume.fit import VolumeTarget
from mscncodec.families.grid2.volume.synthesis import cell_centres
from mscncodec.families.grid2.volume.train import VolumeSet


def volumes(root):
    root, shape, vols = Path(root), (4, 8, 16), []
    cz, cy, cx = cell_centres(shape)
    pts = torch.stack(torch.meshgrid(cz, cy, cx, indexing="ij"), -1).reshape(-1, 3)
    for i in range(3):
        vals = torch.sin(3 * pts[:, 1] + i) * torch.cos(2 * pts[:, 2] + pts[:, 0])
        vols.append(VolumeTarget(pts, vals.float(), torch.ones(len(pts)), (2, 4, 8), batch=200))
    return VolumeSet(vols, [], sorted(root.glob("*.txt")), root, "3 synthetic volumes 4x8x16")
'''


def test_grid3_two_ranks_follow_one_process_after_a_resume(tmp_path, monkeypatch, capsys):
    """A run started on one process (batch 4) and resumed on two (batch 2 each) steps as one process resumed."""
    data = tmp_path / "vols"
    data.mkdir()
    (data / "recipe.txt").write_text("3 synthetic volumes\n")
    (tmp_path / "tinyvols.py").write_text(HOOK)
    script = str(REPO / "scripts" / "train_grid3.py")
    outs = {name: tmp_path / "models" / f"g3{name}" for name in ("one", "two")}
    args = lambda name, batch, steps: [script, "series", "--data", str(data), "--out", str(outs[name]),
                                       "--hook", "tinyvols:volumes", "--levels", "2", "--steps", steps,
                                       "--val-every", "1", "--batch", batch]
    monkeypatch.syspath_prepend(str(tmp_path))
    for argv in (args("one", "4", "3"), args("one", "4", "6") + ["--resume"]):
        if "--resume" in argv:
            shutil.copytree(outs["one"].parent / "g3one.run", outs["two"].parent / "g3two.run")
        monkeypatch.setattr(sys, "argv", argv)
        runpy.run_path(script, run_name="__main__")
        assert capsys.readouterr().out.strip() == str(outs["one"].with_suffix(".pt"))
    r = _torchrun(args("two", "2", "6") + ["--resume"], {"PYTHONPATH": str(tmp_path), "MSCN_THREADS": "1"}, tmp_path)
    assert r.stdout.strip().splitlines() == [str(outs["two"].with_suffix(".pt"))]  # rank 0 alone reports
    one, two = (_records(outs[n].parent / f"g3{n}.run" / "train.log") for n in ("one", "two"))
    assert [r["step"] for r in two] == [1, 2, 3, 4, 5, 6] == [r["step"] for r in one]
    for key in ("loss", "distortion", "bits_per_point"):
        diff = _max_rel([r[key] for r in two[3:]], [r[key] for r in one[3:]])
        assert diff <= RTOL, (key, diff)
    assert len({r["loss"] for r in one[3:]}) == 3
    ck1, ck2 = (torch.load(outs[n].parent / f"g3{n}.run" / "checkpoint.pt", weights_only=False) for n in ("one", "two"))
    assert ck2["step"] == 6 and ck2["cfg"]["batch"] == 2
    # the decoder and every volume's latents, as one process stepped them
    assert _tensors_close(Vol3Model.from_state(ck2["model"]).theta, Vol3Model.from_state(ck1["model"]).theta) < 1e-4
    lat1 = {f"{i}.{j}": v for i, y in enumerate(ck1["model"]["latents"]) for j, v in enumerate(y)}
    lat2 = {f"{i}.{j}": v for i, y in enumerate(ck2["model"]["latents"]) for j, v in enumerate(y)}
    assert _tensors_close(lat2, lat1) < 1e-4 and max(float(v.abs().max()) for v in lat1.values()) > 0
    model = from_state(torch.load(outs["two"].with_suffix(".pt"), map_location="cpu", weights_only=True))
    assert model.meta["world_size"] == 2 and model.meta["steps"] == 6 and "calibration" in model.meta
    assert "world size 2 (data-parallel processes, 2 (volume, lambda) pairs" in outs["two"].with_suffix(".md").read_text()
    log = (outs["two"].parent / "g3two.run" / "train.log").read_text()
    assert "# start step=0 volumes=3 world=1" in log and log.count("# start step=3 volumes=3 world=2") == 1


def test_a_ranks_share_is_its_slice_of_the_global_batch():
    """What makes the curves equal, checked without processes: the crops and the quantisation noise of
    rank r of N at batch b are the r-th slice of one process's at batch N x b."""
    from mscncodec.families.grid2.train import step_noise
    from mscncodec.modalities.image import PatchSampler

    images = [np.random.default_rng(i).integers(0, 256, (40, 40 + 8 * i, 3), dtype=np.uint8) for i in range(3)]
    whole = PatchSampler(images, 16, 7).sample_u8(6)
    parts = [PatchSampler(images, 16, 7) for _ in range(2)]
    halves = [s.sample_u8(6, World(r, 2).share(3)) for r, s in enumerate(parts)]
    assert np.array_equal(np.concatenate(halves), whole)
    assert parts[0].rng.bit_generator.state == parts[1].rng.bit_generator.state  # both moved on as one would
    v = torch.zeros(3, 1, 5, 5)
    one = step_noise(0, 11, World(0, 1), 6)(torch.zeros(6, 1, 5, 5))
    two = [step_noise(0, 11, World(r, 2), 3)(v) for r in range(2)]
    assert torch.equal(torch.cat(two), one) and float(one.abs().max()) <= 0.5
    assert not torch.equal(step_noise(0, 12, World(0, 1), 6)(torch.zeros(6, 1, 5, 5)), one)
