"""The voxels codec on grid3: round trips, byte targets, decoding at another resolution, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError, LimitError, MscnError, RateError
from mscncodec.families.grid2.volume.config import Vol3Config
from mscncodec.families.grid2.volume.model import fresh_vol3_model
from mscncodec.modalities import by_name, for_input
from mscncodec.modalities import voxels as V
from mscncodec.modalities import voxels_codec as C

TARGET = 300


def ball(shape=(16, 16, 16), r=5.0) -> np.ndarray:
    c = [(s - 1) / 2 for s in shape]
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= r**2


@pytest.fixture(scope="module")
def model():
    return fresh_vol3_model(Vol3Config(levels=3), name="t", modality="voxels")


@pytest.fixture(autouse=True)
def _known_model(model, monkeypatch):
    monkeypatch.setattr(C, "stream_model", lambda header, modality: model)


@pytest.fixture(scope="module")
def grid():
    return V.VoxelGrid(ball(), (0.5, -1.0, 2.0), 3.0, "ball")


@pytest.fixture(scope="module")
def stream(model, grid):
    return C.encode_voxels(grid, target_bytes=TARGET, model=model, steps=20)


def test_round_trip_shape_dtype_placement(stream, grid):
    assert len(stream) <= TARGET
    g = C.decode_voxels(stream)
    assert g.shape == (16, 16, 16) and g.occ.dtype == bool
    assert g.translate == pytest.approx(grid.translate) and g.scale == pytest.approx(grid.scale)
    assert V.read_binvox(C.write(g, ".binvox")).shape == (16, 16, 16)


def test_bytes_at_or_under_target_and_report(model, grid):
    for t in (200, 500):
        data, rep = C.encode_voxels(grid, target_bytes=t, model=model, steps=20, return_report=True)
        assert len(data) <= t and rep["bytes"] == len(data)
        assert 0.0 <= rep["iou"] <= 1.0 and "IoU" in C.encode_summary(rep)


def test_decode_at_other_resolutions(stream, model):
    assert C.decode_voxels(stream, resolution=32).shape == (32, 32, 32)
    assert C.decode_voxels(stream, resolution=8).shape == (8, 8, 8)
    with pytest.raises(MscnError, match="resolution"):
        C.decode_voxels(stream, resolution=0)


def test_non_cubic_grid_scales_longest_side(model):
    g = V.VoxelGrid(ball((16, 8, 12), 3.0))
    data = C.encode_voxels(g, target_bytes=250, model=model, steps=20)
    assert C.decode_voxels(data).shape == (16, 8, 12)
    assert C.decode_voxels(data, resolution=32).shape == (32, 16, 24)


def test_deterministic(stream, model, grid):
    assert C.encode_voxels(grid, target_bytes=TARGET, model=model, steps=20) == stream


def test_too_short_stream_refused(model):
    big = V.VoxelGrid(np.zeros((256, 256, 256), bool))
    header = C.header_for(model, big)
    data = bitstream.pack(header, [("GRD3", b"\0" * 8), ("LATS", b"\0" * 4)])
    assert len(data) < C.min_voxel_bytes((256, 256, 256))
    with pytest.raises(BitstreamError, match="bits per voxel"):
        C.decode_voxels(data)
    with pytest.raises(BitstreamError, match="bits per voxel"):
        C.describe(data)


def test_decode_limit_refused(stream):
    header, _ = bitstream.unpack(stream)
    assert C.decode_limits(header, {}, 0, 16**3)["max_voxels"] == 16**3
    with pytest.raises(LimitError, match="exceeds the limit"):
        C.decode_limits(header, {"resolution": 17}, 0, 16**3)
    with pytest.raises(LimitError, match="exceeds the limit"):
        C.decode_voxels(stream, max_voxels=1000)


def test_target_below_floor_and_bad_options(model, grid):
    with pytest.raises(RateError):
        C.encode_voxels(grid, target_bytes=20, model=model, steps=20)
    with pytest.raises(MscnError, match="decode option"):
        C.encode_voxels(grid, target_bytes=TARGET, model=model, steps=20, resolution=32)
    assert len(C.encode_voxels(grid, target_bytes=TARGET, model=model, steps=20, resolution=None)) <= TARGET


def test_describe_and_registry(stream, grid):
    d = C.describe(stream)
    assert d["bytes"] == len(stream) and "GRD3" in str(d["sections"]) and "LATS" in str(d["sections"])
    assert "lambda" in d["header"] and d["header"]["model"] == "(unknown to this decoder)"
    m = by_name("voxels")
    assert m.code == 4 and for_input("x.binvox") is m
    info = C.signal_info(C.decode_voxels(stream))
    assert "16x16x16" in C.decode_summary({**info, "bytes": len(stream)})


def test_surface_band():
    occ = ball()
    band = C.surface_band(occ)
    assert band.any() and not band[8, 8, 8] and not band[0, 0, 0]
    t = C.volume_target(occ)
    assert t.loss == "bce" and t.finest == (8, 8, 8) and abs(float(t.weights.mean()) - 1) < 1e-5


def test_a_3d_npy_is_routed_to_the_voxels_codec(tmp_path):
    """.npy belongs to the field modality by extension; a 3-D one is an occupancy grid (issue 29)."""
    from mscncodec.container import bitstream as _bs
    from mscncodec.families.grid2.volume.config import Vol3Config as _Cfg
    from mscncodec.families.grid2.volume.model import fresh_vol3_model as _fresh
    from mscncodec.modalities.sphere_codec import encode_field

    occ = np.zeros((16, 16, 16), bool)
    occ[4:12, 4:12, 4:12] = True
    np.save(tmp_path / "cube.npy", occ)
    m = _fresh(_Cfg(levels=3), name="t-vox", modality="voxels")
    data = encode_field(tmp_path / "cube.npy", target_bytes=300, model=m, effort="fast", steps=5)
    assert _bs.unpack(data)[0]["modality"] == _bs.modality_code("voxels")
