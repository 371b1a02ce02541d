"""Occupancy grids: binvox and .npy I/O, voxelisation of a mesh, and the occupancy metrics."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from mscncodec.errors import InputError
from mscncodec.modalities import voxels as V


def ball(n: int, r: float | None = None, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    shape = shape or (n, n, n)
    c = [(s - 1) / 2 for s in shape]
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= (r or n / 3) ** 2


# ---------------------------------------------------------------- binvox

@pytest.mark.parametrize("shape", [(8, 8, 8), (5, 7, 9), (1, 1, 1), (3, 1, 300), (17, 2, 5)])
def test_binvox_round_trip_random(shape):
    rng = np.random.default_rng(sum(shape))
    for p in (0.0, 0.1, 0.5, 1.0):
        occ = rng.random(shape) < p
        g = V.VoxelGrid(occ, (0.25, -1.5, 3.0), 2.5, "x")
        h = V.read_binvox(V.write_binvox(g))
        assert h.occ.shape == shape and h.occ.dtype == bool and np.array_equal(h.occ, occ)
        assert h.translate == (0.25, -1.5, 3.0) and h.scale == 2.5


def test_binvox_round_trip_structured_long_runs():
    occ = ball(40, shape=(40, 33, 70))  # runs far over 255: split into several pairs
    occ[:, :, :3] = True
    data = V.write_binvox(V.VoxelGrid(occ))
    body = data[data.index(b"data\n") + 5:]
    assert max(body[1::2]) == 255 and min(body[1::2]) >= 1
    assert np.array_equal(V.read_binvox(data).occ, occ)
    # translate/scale survive exactly (repr of floats)
    g = V.read_binvox(V.write_binvox(V.VoxelGrid(occ, (0.1, 1 / 3, -2e-7), 1 / 7)))
    assert g.translate == (0.1, 1 / 3, -2e-7) and g.scale == 1 / 7


def test_binvox_known_bytes():
    # spec: index = x * (width * height) + z * width + y; header dims are depth height width = (nx, nz, ny)
    data = b"#binvox 1\ndim 2 2 2\ntranslate 0 0 0\nscale 1\ndata\n" + bytes([0, 4, 1, 1, 0, 3])
    g = V.read_binvox(data)
    assert g.occ.shape == (2, 2, 2) and np.argwhere(g.occ).tolist() == [[1, 0, 0]]
    # non-cubic: dim 2 3 4 -> nx = 2, nz = 3, ny = 4; index 23 is x = 1, z = 2, y = 3 -- and 5 is x 0, z 1, y 1
    data = b"#binvox 1\ndim 2 3 4\ntranslate 1 2 3\nscale 0.5\ndata\n" + bytes([0, 5, 1, 1, 0, 17, 1, 1])
    g = V.read_binvox(data)
    assert g.occ.shape == (2, 4, 3)
    assert np.argwhere(g.occ).tolist() == [[0, 1, 1], [1, 3, 2]]
    assert g.translate == (1.0, 2.0, 3.0) and g.scale == 0.5
    assert V.write_binvox(g) == b"#binvox 1\ndim 2 3 4\ntranslate 1.0 2.0 3.0\nscale 0.5\ndata\n" + bytes(
        [0, 5, 1, 1, 0, 17, 1, 1])


def test_binvox_matches_trimesh_reader():
    from io import BytesIO

    from trimesh.exchange import binvox as tb

    occ = np.random.default_rng(3).random((6, 6, 6)) < 0.4
    p = tb.parse_binvox(BytesIO(V.write_binvox(V.VoxelGrid(occ))))
    dense = tb.voxel_from_binvox(p.rle_data, p.shape, p.translate, p.scale, axis_order="xzy").encoding.dense
    assert np.array_equal(dense, occ)


HEAD = b"#binvox 1\ndim 2 2 2\ntranslate 0 0 0\nscale 1\ndata\n"


@pytest.mark.parametrize("data, message", [
    (b"", "no 'data' line"),
    (b"PK\x03\x04 not a binvox\n", "does not start with '#binvox'"),
    (b"#binvox 2\ndim 2 2 2\ndata\n\x00\x08", "unsupported binvox version"),
    (b"#binvox 1\ntranslate 0 0 0\ndata\n\x00\x08", "no 'dim' line"),
    (b"#binvox 1\ndim 2 2\ndata\n\x00\x08", "bad binvox header line"),
    (b"#binvox 1\ndim a b c\ndata\n\x00\x08", "bad binvox header line"),
    (b"#binvox 1\ndim 2 2 2\ncolour red\ndata\n\x00\x08", "bad binvox header line"),
    (b"#binvox 1\ndim 0 2 2\ndata\n", "must be positive"),
    (b"#binvox 1\ndim 2000 2 2\ndata\n", "at most 1024 voxels per side"),
    (b"#binvox 1\ndim 1024 1024 1024\ndata\n", "voxels in all"),
    (b"#binvox 1\ndim 2 2 2\nscale -1\ndata\n\x00\x08", "scale positive"),
    (b"#binvox 1\ndim 2 2 2\nscale nan\ndata\n\x00\x08", "scale positive"),
    (HEAD + b"\x00\x08\x01", "odd number"),
    (HEAD + b"\x00\x04", "runs cover 4 of the grid's 8"),
    (HEAD, "runs cover 0 of the grid's 8"),
    (HEAD + b"\x00\x08\x01\x01", "more than"),
    (HEAD + b"\x00\x09", "more than"),
    (HEAD + b"\x02\x08", "run value 2"),
    (HEAD + b"\x00\x00\x00\x08", "run of length 0"),
    (b"#binvox 1\n" + b"\n" * 40, "no 'data' line"),
    (b"#binvox 1\xff\n", "not text"),
])
def test_binvox_bad_inputs(data, message):
    with pytest.raises(InputError, match=message) as e:
        V.read_binvox(data)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- files

def test_load_binvox_and_npy(tmp_path):
    occ = ball(12, shape=(12, 10, 9))
    p = tmp_path / "shape.binvox"
    p.write_bytes(V.write(V.VoxelGrid(occ, (1, 2, 3), 4.0), ".binvox"))
    g = V.load(p)
    assert g.name == "shape" and np.array_equal(g.occ, occ) and g.scale == 4.0
    q = tmp_path / "b.npy"
    q.write_bytes(V.write(g, ".npy"))
    assert np.load(q).dtype == bool and np.array_equal(V.load(q).occ, occ)
    for dtype in (np.uint8, np.int64, np.float32, np.float64):
        np.save(tmp_path / "n.npy", occ.astype(dtype))
        h = V.load(tmp_path / "n.npy")
        assert h.occ.dtype == bool and np.array_equal(h.occ, occ)
    np.save(tmp_path / "f.npy", np.asfortranarray(occ))
    assert np.array_equal(V.load(tmp_path / "f.npy").occ, occ)
    assert V.load(g) is not g and np.array_equal(V.load(g).occ, occ)


@pytest.mark.parametrize("array, message", [
    (np.full((3, 3, 3), 2, np.uint8), "must be boolean or 0/1, got the value 2"),
    (np.full((3, 3, 3), 0.5), "must be boolean or 0/1"),
    (np.full((3, 3, 3), np.nan), "must be boolean or 0/1"),
    (np.full((3, 3, 3), "1"), "must be boolean or 0/1, got dtype"),
    (np.zeros((4, 4), bool), "3-D, got 2-D"),
    (np.zeros((2, 2, 2, 2), bool), "3-D, got 4-D"),
    (np.zeros((3, 0, 3), bool), "is empty"),
])
def test_load_npy_refused(tmp_path, array, message):
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(InputError, match=message) as e:
        V.load(tmp_path / "a.npy")
    assert str(e.value).startswith(f"cannot read {tmp_path / 'a.npy'}: ") and "\n" not in str(e.value)


def test_load_file_errors(tmp_path):
    cases = {tmp_path / "missing.binvox": "no such file", tmp_path: "is a directory"}
    (tmp_path / "empty.binvox").write_bytes(b"")
    cases[tmp_path / "empty.binvox"] = "the file is empty"
    (tmp_path / "x.vox").write_bytes(b"x")
    cases[tmp_path / "x.vox"] = "unknown voxel extension"
    (tmp_path / "bad.binvox").write_bytes(b"#binvox 1\ndim 2 2 2\ndata\n\x00\x03")
    cases[tmp_path / "bad.binvox"] = "truncated"
    (tmp_path / "bad.npy").write_bytes(b"not numpy at all")
    cases[tmp_path / "bad.npy"] = "not a .npy array"
    np.save(tmp_path / "cut.npy", np.zeros((8, 8, 8), bool))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "cut.npy").read_bytes()[:-100])
    cases[tmp_path / "cut.npy"] = "not a .npy array"
    for path, message in cases.items():
        with pytest.raises(InputError, match=message) as e:
            V.load(path)
        assert "\n" not in str(e.value), path


def test_is_voxel_npy(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4), bool))
    np.save(tmp_path / "f.npy", np.zeros((3, 4)))
    np.save(tmp_path / "big.npy", np.zeros((2, 2, 2), np.float32))
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY junk")
    assert V.is_voxel_npy(tmp_path / "v.npy") and V.is_voxel_npy(tmp_path / "big.npy")
    assert not V.is_voxel_npy(tmp_path / "f.npy")
    assert not V.is_voxel_npy(tmp_path / "junk.npy")
    assert not V.is_voxel_npy(tmp_path / "missing.npy")
    assert not V.is_voxel_npy(tmp_path)


def test_write_refuses_unknown_suffix():
    with pytest.raises(InputError, match="cannot write voxels as"):
        V.write(V.VoxelGrid(np.ones((2, 2, 2), bool)), ".obj")


def test_validate():
    with pytest.raises(InputError, match="scale"):
        V.validate(V.VoxelGrid(np.ones((2, 2, 2), bool), scale=0.0))
    with pytest.raises(InputError, match="translate"):
        V.validate(V.VoxelGrid(np.ones((2, 2, 2), bool), translate=(0, float("inf"), 0)))
    with pytest.raises(InputError, match="3-D"):
        V.validate(V.VoxelGrid(np.ones((2, 2), bool)))


# ---------------------------------------------------------------- voxelisation

def test_voxelise_unit_cube():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    g = V.voxelise(box.vertices, box.faces, 16, pad=1)
    assert g.occ.shape == (16, 16, 16)
    n = int(g.occ.sum())
    assert 13**3 <= n <= 15**3  # the 14^3 inner voxels, within one voxel layer
    assert n == 14**3
    assert not g.occ[0].any() and not g.occ[-1].any() and not g.occ[:, :, 0].any()
    # voxel centres map back into the mesh's frame (binvox: translate + scale * (index + 0.5) / dim)
    c = g.centres(np.argwhere(g.occ))
    assert np.allclose(c.min(0), -0.5 + 0.5 / 14) and np.allclose(c.max(0), 0.5 - 0.5 / 14)
    assert np.isclose(g.scale, 16 / 14)
    # it survives binvox
    h = V.read_binvox(V.write_binvox(g))
    assert np.array_equal(h.occ, g.occ) and np.allclose(h.translate, g.translate) and h.scale == g.scale


def test_voxelise_non_cubic_box_is_centred_and_chunked(monkeypatch):
    monkeypatch.setattr(V, "_CHUNK", 100)  # many chunks: the result must not depend on them
    box = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    g = V.voxelise(box.vertices, box.faces, 12, pad=2)
    idx = np.argwhere(g.occ)
    assert idx.min(0).tolist() == [2, 4, 5] and idx.max(0).tolist() == [9, 7, 6]


def test_voxelise_refuses():
    box = trimesh.creation.box()
    with pytest.raises(InputError, match="resolution"):
        V.voxelise(box.vertices, box.faces, 2, pad=1)
    with pytest.raises(InputError, match="no faces"):
        V.voxelise(box.vertices, np.zeros((0, 3), int), 8)


# ---------------------------------------------------------------- metrics

def test_metrics_identical_and_shifted():
    a = ball(24)
    assert V.iou(a, a) == 1.0 and V.chamfer(a, a) == 0.0
    b = np.roll(a, 1, axis=0)
    assert 0.7 < V.iou(a, b) < 1.0
    d = V.chamfer(a, b)
    assert 0.0 < d <= 1.0 / 24  # a one-voxel shift moves surface points by at most one voxel
    assert V.chamfer(a, np.roll(a, 3, axis=0)) > d
    m = V.compare(V.VoxelGrid(a), V.VoxelGrid(b))
    assert m["iou"] == V.iou(a, b) and m["chamfer"] == d and m["occupied_ref"] == m["occupied_rec"] == a.sum()
    empty = np.zeros_like(a)
    assert V.iou(empty, empty) == 1.0 and V.iou(a, empty) == 0.0 and V.chamfer(empty, empty) == 0.0
    assert np.isnan(V.chamfer(a, empty))
    with pytest.raises(InputError, match="cannot compare"):
        V.iou(a, a[:-1])


def test_surface_voxels():
    o = np.zeros((5, 5, 5), bool)
    o[1:4, 1:4, 1:4] = True
    s = V.surface_voxels(o)
    assert len(s) == 26 and [2.5, 2.5, 2.5] not in s.tolist()
    full = np.ones((3, 3, 3), bool)  # the outside counts as empty
    assert len(V.surface_voxels(full)) == 26
    assert V.surface_voxels(np.zeros((3, 3, 3), bool)).shape == (0, 3)
