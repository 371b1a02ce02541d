"""Occupancy-grid baselines: lossless round trips (context-model coder included), downsampling, the bench files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mscncodec.bench import voxels as BV
from mscncodec.modalities.voxels import VoxelGrid


def ball(n: int, r: float | None = None, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    shape = shape or (n, n, n)
    c = [(s - 1) / 2 for s in shape]
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= (r or n / 3) ** 2


def smooth_shape(n: int) -> np.ndarray:
    """A ball with a torus through it and a box cut out: smooth surfaces, not one symmetric blob."""
    x, y, z = (a / (n - 1) * 2 - 1 for a in np.ogrid[:n, :n, :n])
    b = x**2 + (y - 0.1) ** 2 + z**2 < 0.45
    t = (np.sqrt(x**2 + z**2) - 0.6) ** 2 + (y + 0.2) ** 2 < 0.03
    cut = (x > 0.2) & (y > 0.2) & (z > -0.3)
    return (b | t) & ~cut


@pytest.mark.parametrize("name", list(BV.LOSSLESS))
@pytest.mark.parametrize("occ", [ball(32), smooth_shape(24), np.zeros((5, 6, 7), bool), np.ones((3, 2, 9), bool),
                                 np.random.default_rng(0).random((9, 4, 13)) < 0.3, np.ones((1, 1, 1), bool),
                                 ball(10, shape=(2, 1, 10))])
def test_lossless_round_trip(name, occ):
    data = BV.encode_lossless(name, occ)
    assert isinstance(data, bytes)
    back = BV.decode_lossless(name, data)
    assert back.dtype == bool and back.shape == occ.shape and np.array_equal(back, occ)


def test_context_coder_beats_packbits_xz():
    for occ in (ball(32), smooth_shape(32)):
        sizes = BV.lossless_sizes(occ)
        assert sizes["context-ac"] < sizes["packbits+xz"]
        name, data = BV.best_lossless(occ)
        assert len(data) == min(sizes.values()) and sizes[name] == len(data)


def test_context_coder_is_adaptive_on_noise():
    occ = np.random.default_rng(1).random((16, 16, 16)) < 0.05  # no structure: close to the entropy, not worse
    h = -(0.05 * np.log2(0.05) + 0.95 * np.log2(0.95)) * occ.size / 8
    assert len(BV.context_encode(occ)) < 1.3 * h + 100


@pytest.mark.parametrize("k", BV.DOWNSAMPLE)
def test_downsample_baseline(k):
    occ = ball(32, r=11)
    inner, data = BV.downsample_encode(occ, k)
    assert inner in BV.LOSSLESS
    rec = BV.downsample_decode(data)
    assert rec.shape == occ.shape and rec.dtype == bool
    from mscncodec.modalities.voxels import iou

    assert 0.8 < iou(occ, rec) < 1.0
    assert len(data) < len(BV.best_lossless(occ)[1])


def test_downsample_non_multiple_shape():
    occ = ball(0, r=5, shape=(13, 11, 17))
    for k in BV.DOWNSAMPLE:
        assert BV.downsample(occ, k).shape == tuple(-(-s // k) for s in occ.shape)
        rec = BV.downsample_decode(BV.downsample_encode(occ, k)[1])
        assert rec.shape == occ.shape


def test_upsample_of_downsample_is_identity_on_blocks():
    coarse = np.zeros((4, 4, 4), bool)
    coarse[1:3, 1:3, 1:3] = True
    fine = np.repeat(np.repeat(np.repeat(coarse, 2, 0), 2, 1), 2, 2)
    assert np.array_equal(BV.downsample(fine, 2), coarse)
    up = BV.upsample(coarse, 2, fine.shape)
    # trilinear at the centres: the 4^3 block, its corner voxels rounded off (3 of 8 neighbours occupied -> 0.42)
    assert up[3:5, 3:5, 3:5].all() and not up[:2].any() and up.sum() < fine.sum()


def test_baseline_points_and_bench(tmp_path):
    occ = ball(16)
    pts = BV.baseline_points(occ)
    names = [p["codec"] for p in pts]
    assert names == list(BV.LOSSLESS) + [f"downsample-{k}" for k in BV.DOWNSAMPLE]
    for p in pts:
        assert p["bytes"] > 0 and 0 < p["iou"] <= 1 and p["chamfer"] >= 0
    calls = []

    def mscn_encode(g: VoxelGrid, target: int) -> bytes:
        calls.append(target)
        if target < 20:
            from mscncodec.errors import RateError

            raise RateError(f"target {target} bytes is below the minimum")
        return BV.downsample_encode(g.occ, 2)[1]

    rows = BV.run_voxel_bench([("ball", VoxelGrid(occ)), ("box", VoxelGrid(np.pad(np.ones((6, 8, 5), bool), 3)))],
                              mscn_encode, lambda d: VoxelGrid(BV.downsample_decode(d)), sizes=(0.01, 0.5, 64),
                              out=tmp_path)
    for f in ("results.json", "results.csv", "summary.md", "rd.png"):
        assert (tmp_path / f).stat().st_size > 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data) == len(rows) == 2 * (len(pts) + 3)
    assert calls[2] == 64 and any(r.get("error") for r in data)
    summary = (tmp_path / "summary.md").read_text()
    assert "best lossless" in summary and "## box" in summary and "mscn" in summary
    assert BV.run_voxel_bench([("ball", VoxelGrid(occ))], out=tmp_path / "only")[-1]["codec"] == "downsample-4"
