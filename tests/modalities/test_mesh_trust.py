"""Meshes the encoder must not code as something else (issue 30 items 4, 9, 10): inward-facing and mixed
winding, holes and non-manifold edges, open sheets that bound nothing, and binary STL files whose triangle count
disagrees with their length."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
import trimesh
from click.testing import CliRunner

from mscncodec.cli import main
from mscncodec.errors import InputError, MscnError
from mscncodec.modalities import mesh as mmod
from mscncodec.modalities.mesh_codec import decode_mesh, encode_mesh
from mscncodec.modalities.mesh_metrics import compare

PROVISIONAL = "random-sdf-w32d5+dense"  # a plain SIREN init (as tests/modalities/test_mesh.py): no trained model


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _box(size=(2.0, 1.0, 1.0)) -> mmod.Mesh:
    tm = trimesh.creation.box(size)
    return mmod.Mesh(np.asarray(tm.vertices, np.float64), np.asarray(tm.faces, np.int64))


def _normals(m: mmod.Mesh) -> np.ndarray:
    return trimesh.Trimesh(m.vertices, m.faces, process=False).face_normals


def _unit(m: mmod.Mesh) -> mmod.Mesh:
    return mmod.Mesh(mmod.frame_for(m).to_unit(m.vertices), m.faces)


def _sheet() -> mmod.Mesh:
    """An undulating open sheet (a terrain): thick enough for validate(), bounding nothing."""
    x, y = np.meshgrid(np.linspace(-1, 1, 21), np.linspace(-1, 1, 21), indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), 0.3 * np.sin(3 * x.ravel())], 1)
    i = np.arange(20)[:, None] * 21 + np.arange(20)[None, :]
    a, b, c, d = i.ravel(), i.ravel() + 21, i.ravel() + 22, i.ravel() + 1
    return mmod.Mesh(v, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int64))


def _one_line_error(result, code: int, words: str) -> None:
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mscn: error:"), result.stderr
    assert words.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in result.output and "ModuleNotFoundError" not in result.output


# ---------------------------------------------------------------- item 9: orientation

def test_inward_facing_triangles_give_the_same_inside():
    box = _box()
    q = np.array([[0, 0, 0], [0.9, 0.4, -0.4], [1.2, 0, 0], [0, 0.7, 0]])
    flipped = box.faces[:, ::-1]
    assert mmod.winding_numbers(box.vertices, flipped, q[:1])[0] < -0.9  # w ~ -1 inside: the old `w >= 0.5` said outside
    assert mmod.winding_inside(box.vertices, flipped, q).tolist() == [True, True, False, False]
    assert mmod.winding_inside(box.vertices, box.faces, q).tolist() == [True, True, False, False]


def test_sdf_samples_do_not_depend_on_the_winding():
    box = _unit(_box())
    flipped = mmod.Mesh(box.vertices, box.faces[:, ::-1].copy())
    q, s = mmod.sdf_samples(box, 4000, seed=3)
    assert (s < 0).mean() > 0.3  # there is an inside at all
    assert np.allclose(mmod.signed_distance(flipped.vertices, flipped.faces, q), s, atol=1e-6)
    _, s2 = mmod.sdf_samples(flipped, 4000, seed=3)  # (other points: reversing a triangle moves its samples)
    assert abs((s2 < 0).mean() - (s < 0).mean()) < 0.03


def test_a_mesh_facing_inwards_encodes_like_facing_outwards():
    """Before: the flipped box was coded as empty space (Chamfer 0.0103 of the diagonal at 4 KB against 0.0022)."""
    box = _box()
    flipped = mmod.Mesh(box.vertices, box.faces[:, ::-1].copy())
    res = []
    for m in (box, flipped):
        data = encode_mesh(m, target_bytes=2500, model=PROVISIONAL, effort="fast", steps=150)
        res.append(compare(box, decode_mesh(data, resolution=48), n_samples=10_000, points=False))
    assert all(r["iou"] > 0.8 and r["chamfer_l1"] < 0.03 for r in res), res  # (measured: 0.93 / 0.0186, 0.96 / 0.0123)
    assert res[1]["chamfer_l1"] < 2 * res[0]["chamfer_l1"]


def test_a_patch_wound_against_the_rest_is_turned_round():
    """One face of a box (two triangles) wound the other way: inside and outside swap next to it unless the
    winding is made consistent; the minority is what turns."""
    box = _box()
    f = box.faces.copy()
    px = _normals(box)[:, 0] > 0.5
    f[px] = f[px][:, ::-1]
    fixed = mmod.orient_consistently(f)
    assert np.array_equal(fixed, box.faces)
    # half the triangles flipped: still each patch made consistent (either way round: |w| does not mind)
    g = box.faces.copy()
    g[::2] = g[::2][:, ::-1]
    h = mmod.orient_consistently(g)
    assert np.array_equal(h, box.faces) or np.array_equal(h, box.faces[:, ::-1])
    # and the signed distances equal the box's (unfixed, a slab outside the flipped face was "inside")
    q, s = mmod.sdf_samples(_unit(box), 3000, seed=1)
    unit = _unit(box).vertices
    assert not np.allclose(mmod.signed_distance(unit, f, q), s, atol=1e-6)
    assert np.allclose(mmod.signed_distance(unit, mmod.solid(mmod.Mesh(box.vertices, f))[0].faces, q), s, atol=1e-6)


def test_a_cavity_facing_inwards_stays_a_cavity():
    """A hollow ball: the outer shell faces out, the inner one in. Each patch keeps its own orientation (the
    majority of its faces), so the cavity keeps w ~ 0, and the opposite components both count with |w|."""
    outer = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    inner = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    v = np.vstack([outer.vertices, inner.vertices])
    f = np.vstack([outer.faces, inner.faces[:, ::-1] + len(outer.vertices)]).astype(np.int64)
    shell, note = mmod.solid(mmod.Mesh(v, f))
    assert note == ""  # closed, each shell consistent: nothing to say
    assert np.array_equal(shell.faces, f)
    inside = mmod.winding_inside(shell.vertices, shell.faces, np.array([[0, 0, 0], [0.75, 0, 0], [1.5, 0, 0]]))
    assert inside.tolist() == [False, True, False]
    # two separate boxes facing opposite ways: both solid
    b = _box((1, 1, 1))
    v2 = np.vstack([b.vertices, b.vertices + [3, 0, 0]])
    f2 = np.vstack([b.faces, b.faces[:, ::-1] + 8])
    assert mmod.winding_inside(v2, f2, np.array([[0, 0, 0], [3, 0, 0], [1.5, 0, 0]])).tolist() == [True, True, False]


def test_voxelise_and_the_metrics_also_ignore_the_winding():
    from mscncodec.modalities import voxels
    from mscncodec.modalities.mesh_metrics import winding_inside

    box = _box((2.0, 1.1, 0.9))  # no voxel centre on a face (there w = 1/2, and either side is right)
    flipped = mmod.Mesh(box.vertices, box.faces[:, ::-1].copy())
    q = np.array([[0, 0, 0], [1.5, 0, 0]])
    assert winding_inside(flipped.vertices, flipped.faces, q).tolist() == [True, False]
    a = voxels.voxelise(box.vertices, box.faces, 16).occ
    b = voxels.voxelise(flipped.vertices, flipped.faces, 16).occ
    f = box.faces.copy()
    f[::2] = f[::2][:, ::-1]  # every other triangle wound the other way: made consistent first
    c = voxels.voxelise(box.vertices, f, 16).occ
    assert np.array_equal(a, c)
    assert a.sum() > 0 and np.array_equal(a, b)


# ---------------------------------------------------------------- item 4: holes, non-manifold edges, sheets

def test_a_box_without_one_face_encodes_the_closed_box():
    """One whole face (two triangles) missing: w = 5/6 at the centre, 1/2 across the hole: the winding number
    closes it, and the stream decodes to the box."""
    box = _box()
    keep = ~(_normals(box)[:, 0] > 0.5)
    holed = mmod.Mesh(box.vertices, box.faces[keep])
    assert keep.sum() == 10 and not trimesh.Trimesh(holed.vertices, holed.faces).is_watertight
    cube = _box((1.0, 1.0, 1.0))
    w = mmod.winding_numbers(cube.vertices, cube.faces[keep], np.array([[0, 0, 0], [0.5, 0.1, -0.2]]))
    assert np.allclose(w, [5 / 6, 1 / 2], atol=0.01)
    assert mmod.ambiguous_share(_unit(holed).vertices, holed.faces) < 0.05
    data = encode_mesh(holed, target_bytes=2500, model=PROVISIONAL, effort="fast", steps=150)
    m = compare(box, decode_mesh(data, resolution=48), n_samples=10_000, points=False)
    assert m["iou"] > 0.8 and m["chamfer_l1"] < 0.03


def _welded(*parts: tuple[np.ndarray, np.ndarray]) -> mmod.Mesh:
    v = np.vstack([p[0] for p in parts])
    f = np.vstack([p[1] + sum(len(q[0]) for q in parts[:k]) for k, p in enumerate(parts)])
    u, inv = np.unique(np.round(v, 9), axis=0, return_inverse=True)
    return mmod.Mesh(u, inv.reshape(-1)[f].astype(np.int64))


def test_non_manifold_edges_with_a_clear_inside_are_accepted_with_a_note():
    """Two cubes sharing an edge (four faces on it); two cubes glued face to face, the shared square kept
    (an inner wall: four faces on each of its edges). The winding number still has a clear inside (the wall's
    two copies cancel), so solid() passes them and says what it saw."""
    b = _box((1, 1, 1))
    edge = _welded((b.vertices, b.faces), (b.vertices + [1.0, 1.0, 0.0], b.faces))
    assert mmod.ambiguous_share(_unit(edge).vertices, edge.faces) < 0.05
    _, note = mmod.solid(edge)
    assert note.startswith("the mesh is non-manifold (1 edges with more than two faces)"), note
    glued = _welded((b.vertices, b.faces), (b.vertices + [1.0, 0.0, 0.0], b.faces))
    solid, note = mmod.solid(glued)
    assert "non-manifold (4 edges" in note and "decoded surface is closed" in note, note
    q = np.array([[0.25, 0, 0], [0.75, 0, 0], [0.5, 0.2, 0.1], [2.0, 0, 0]])
    assert mmod.winding_inside(solid.vertices, solid.faces, q).tolist() == [True, True, True, False]


def test_an_open_mesh_says_so_in_the_summary(tmp_path):
    box = _box()
    holed = mmod.Mesh(box.vertices, box.faces[~(_normals(box)[:, 0] > 0.5)])
    _, note = mmod.solid(holed)
    assert note.startswith("the mesh is open (4 boundary edges); the winding number gave it an inside"), note
    assert mmod.solid(box)[1] == ""
    src = tmp_path / "holed.obj"
    src.write_bytes(mmod.encode_file(holed, ".obj"))
    r = CliRunner().invoke(main, ["encode", str(src), "-o", str(tmp_path / "h.mscn"), "--bytes", "2000",
                                  "--model", PROVISIONAL, "--effort", "fast", "--steps", "3"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "note: the mesh is open (4 boundary edges)" in r.stdout


def test_an_open_sheet_is_refused_in_one_line(tmp_path):
    sheet = _sheet()
    assert mmod.ambiguous_share(_unit(sheet).vertices, sheet.faces) > 0.9
    with pytest.raises(InputError, match="encloses no clear volume"):
        encode_mesh(sheet, target_bytes=2500, model=PROVISIONAL, effort="fast", steps=5)
    src = tmp_path / "terrain.obj"
    src.write_bytes(mmod.encode_file(sheet, ".obj"))
    r = CliRunner().invoke(main, ["encode", str(src), "-o", str(tmp_path / "t.mscn"), "--bytes", "2500",
                                  "--effort", "fast"])
    _one_line_error(r, InputError.exit_code, "encloses no clear volume")
    assert not (tmp_path / "t.mscn").exists()


# ---------------------------------------------------------------- item 10: STL files that lie about their length

def _binary_stl(n_claimed: int, tris: np.ndarray, header: bytes = b"\0" * 80) -> bytes:
    rec = np.zeros(len(tris), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    rec["v"] = tris
    return header[:80].ljust(80, b"\0") + struct.pack("<I", n_claimed) + rec.tobytes()


def _tetra() -> np.ndarray:
    p = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    return p[np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])]


def test_a_binary_stl_claiming_more_triangles_than_it_holds_is_refused_naming_the_count(tmp_path):
    bad = tmp_path / "bad.stl"
    bad.write_bytes(_binary_stl(2**31 - 1, _tetra()[:3]))
    with pytest.raises(InputError, match=r"claims 2,147,483,647 triangles .* holds 234 bytes \(3 triangles\)"):
        mmod.load(bad)
    r = CliRunner().invoke(main, ["encode", str(bad), "-o", str(tmp_path / "x.mscn"), "--bytes", "4000"])
    _one_line_error(r, InputError.exit_code, "binary STL claims 2,147,483,647 triangles")
    # a truncated file, and one with bytes after its last triangle, the same way
    cut = tmp_path / "cut.stl"
    cut.write_bytes(_binary_stl(4, _tetra())[:-30])
    with pytest.raises(InputError, match="claims 4 triangles"):
        mmod.load(cut)
    tiny = tmp_path / "tiny.stl"
    tiny.write_bytes(b"\x01\x02\x03")
    with pytest.raises(MscnError, match="neither ASCII STL nor a binary STL"):
        mmod.load(tiny)


def test_good_stl_files_still_load(tmp_path):
    ok = tmp_path / "ok.stl"
    ok.write_bytes(_binary_stl(4, _tetra(), header=b"solid exported by a CAD tool \xff\xfe"))  # binary, "solid" header
    assert len(mmod.load(ok).faces) == 4
    asc = tmp_path / "asc.stl"
    text = trimesh.creation.box().export(file_type="stl_ascii")
    asc.write_bytes(text.encode() if isinstance(text, str) else text)
    assert len(mmod.load(asc).faces) == 12


def test_text_meshes_that_are_not_utf8_load(tmp_path):
    """trimesh guesses the encoding of a non-UTF-8 text file with charset_normalizer, which it does not
    install: a Latin-1 comment made a valid OBJ fail with "ModuleNotFoundError"."""
    src = tmp_path / "caf\u00e9.obj"
    src.write_bytes(b"# cr\xe9\xe9 par un caf\xe9\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n"
                    b"f 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    assert mmod.load(src).faces.tolist() == [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]
    off = tmp_path / "t.off"
    off.write_bytes(b"OFF\n# \xe9\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n")
    assert len(mmod.load(off).faces) == 4
