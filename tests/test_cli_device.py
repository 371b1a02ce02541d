"""`mscn encode --device auto|cpu|cuda` and `--effort placebo` (issue 28): where the options go, and the
one-line refusals (CUDA asked for where torch sees no GPU, a device for a mesh, placebo for SIREN)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import trimesh
from click.testing import CliRunner
from PIL import Image

from mscncodec.cli import main
from mscncodec.errors import MscnError
from mscncodec.families.grid2.config import Grid2Config
from mscncodec.families.grid2.model import fresh_grid2_model
from mscncodec.modalities import image_codec, mesh_codec

from conftest import PROVISIONAL, synthetic_image

pytestmark = pytest.mark.usefixtures("isolated_models")

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(synthetic_image(24, 32, seed=1)).save(d / "a.png")
    trimesh.creation.icosphere(subdivisions=1, radius=1.0).export(d / "c.obj")
    return d


@pytest.fixture()
def tiny_grid2(isolated_models) -> str:
    fresh_grid2_model(Grid2Config(levels=3, hidden=(8,), arm_hidden=6, analysis=4), name="g2cli", seed=0).save(
        isolated_models / "g2cli.pt")
    return "g2cli"


def _one_line(r, words: str) -> None:
    assert r.exit_code != 0 and isinstance(r.exception, SystemExit), (r.exit_code, r.output, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mscn: error:") and words in lines[0], r.stderr
    assert "Traceback" not in r.output and r.stdout == ""


@no_cuda
def test_cuda_without_a_gpu_is_one_line_and_a_non_zero_exit(runner, inputs, tmp_path):
    out = tmp_path / "a.mscn"
    _one_line(runner.invoke(main, ["encode", str(inputs / "a.png"), "-o", str(out), "--device", "cuda"]), "no CUDA GPU")
    assert not out.exists()
    batch = tmp_path / "batch"
    _one_line(runner.invoke(main, ["encode", str(inputs / "a.png"), "--out-dir", str(batch), "--device", "cuda"]),
              "no CUDA GPU")
    assert not batch.exists()


def test_unknown_device_is_refused_by_the_option(runner, inputs, tmp_path):
    r = runner.invoke(main, ["encode", str(inputs / "a.png"), "-o", str(tmp_path / "a.mscn"), "--device", "tpu"])
    assert r.exit_code == 2 and "tpu" in r.stderr


def test_a_device_for_a_mesh_is_refused(runner, inputs, tmp_path):
    r = runner.invoke(main, ["encode", str(inputs / "c.obj"), "-o", str(tmp_path / "c.mscn"), "--device", "cpu"])
    _one_line(r, "device")


def test_images_default_to_auto_and_other_modalities_get_no_device(runner, inputs, tmp_path, monkeypatch):
    seen = {}

    def fake(name):
        def f(src, **kw):
            seen[name] = kw.get("device", "(none)")
            raise MscnError("stop here")
        return f

    monkeypatch.setattr(image_codec, "encode_image", fake("image"))
    monkeypatch.setattr(mesh_codec, "encode_mesh", fake("mesh"))
    runner.invoke(main, ["encode", str(inputs / "a.png"), "-o", str(tmp_path / "a.mscn")])
    runner.invoke(main, ["encode", str(inputs / "c.obj"), "-o", str(tmp_path / "c.mscn")])
    assert seen == {"image": "auto", "mesh": "(none)"}
    runner.invoke(main, ["encode", str(inputs / "a.png"), "-o", str(tmp_path / "a.mscn"), "--device", "cpu"])
    assert seen["image"] == "cpu"


def test_a_batch_gives_images_auto_and_meshes_nothing(runner, inputs, tmp_path, monkeypatch):
    from mscncodec import batch

    seen = []
    monkeypatch.setattr(batch, "run", lambda jobs, *a, **k: seen.extend(j.options for j in jobs) or [])
    r = runner.invoke(main, ["encode", str(inputs / "a.png"), str(inputs / "c.obj"), "--out-dir", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert [o.get("device", "(none)") for o in seen] == ["auto", "(none)"]


def test_placebo_on_the_cpu_encodes_with_few_steps(runner, inputs, tmp_path, tiny_grid2):
    out = tmp_path / "a.mscn"
    r = runner.invoke(main, ["encode", str(inputs / "a.png"), "-o", str(out), "--model", tiny_grid2, "--bpp", "4",
                             "--effort", "placebo", "--steps", "2", "--device", "cpu", "-q"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert out.stat().st_size <= 4 * 24 * 32 / 8


def test_placebo_is_grid2_only(runner, inputs, tmp_path):
    r = runner.invoke(main, ["encode", str(inputs / "a.png"), "-o", str(tmp_path / "a.mscn"), "--model", PROVISIONAL,
                             "--effort", "placebo", "--bpp", "2"])
    _one_line(r, "grid2's")
