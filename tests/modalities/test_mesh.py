"""Meshes: the modality (load, validate, frame, signed distances, surface extraction), the mesh header,
the codec round trip, the registry, the CLI, and image encodes unchanged by the restructure."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import trimesh
from click.testing import CliRunner
from conftest import REPO

import mscncodec
from mscncodec.container import bitstream
from mscncodec import models
from mscncodec.api import decode, encode, stream_modality
from mscncodec.cli import main
from mscncodec.errors import BitstreamError, InputError, MscnError
from mscncodec.modalities.mesh_codec import decode_mesh, encode_mesh
from mscncodec.modalities import REGISTRY, by_code, for_input
from mscncodec.modalities import mesh as mmod

FIX = REPO / "tests" / "fixtures"
REPO_MODELS = REPO / "mscncodec" / "weights"
PROVISIONAL = "random-sdf-w32d5+dense"  # a plain SIREN init, dense update: the tests do not depend on a trained model


def _sphere(center=(5.0, -3.0, 2.0), radius=3.0) -> mmod.Mesh:
    tm = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    return mmod.Mesh(np.asarray(tm.vertices) + np.asarray(center), np.asarray(tm.faces, np.int64))


@pytest.fixture(scope="module")
def sphere_stream() -> tuple[mmod.Mesh, bytes]:
    """One encode shared by the round-trip tests (fast effort, a few hundred steps from a plain init)."""
    torch.set_num_threads(1)
    mesh = _sphere()
    return mesh, encode_mesh(mesh, target_bytes=3000, model=PROVISIONAL, effort="fast", steps=250)


# ---------------------------------------------------------------- modality

def test_frame_maps_the_longest_side_into_the_unit_cube_and_back():
    mesh = _sphere()
    fr = mmod.frame_for(mesh)
    unit = fr.to_unit(mesh.vertices)
    assert np.allclose(np.abs(unit).max(), mmod.FILL, atol=1e-5)
    assert np.allclose(fr.from_unit(unit), mesh.vertices, atol=1e-5)
    assert isinstance(fr.scale, float) and np.float32(fr.scale) == fr.scale  # what the header stores


def test_signed_distance_is_negative_inside_and_exact_for_a_sphere():
    tm = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    q = np.array([[0, 0, 0], [0.9, 0, 0], [0, 0.3, 0]], np.float64)
    d = mmod.signed_distance(np.asarray(tm.vertices), np.asarray(tm.faces), q)
    assert np.allclose(d, [-0.5, 0.4, -0.2], atol=2e-3)


def test_winding_number_keeps_inside_inside_when_a_face_is_missing():
    box = trimesh.creation.box((1, 1, 1))
    faces = np.asarray(box.faces)[1:]  # a hole: not watertight any more
    assert not trimesh.Trimesh(box.vertices, faces).is_watertight
    inside = mmod.winding_inside(np.asarray(box.vertices), faces, np.array([[0, 0, 0], [0.2, -0.2, 0.1], [2, 0, 0]]))
    assert inside.tolist() == [True, True, False]


def test_sdf_samples_cover_the_band_and_the_cube():
    mesh = _sphere(center=(0, 0, 0), radius=1.0)
    fr = mmod.frame_for(mesh)
    q, s = mmod.sdf_samples(mmod.Mesh(fr.to_unit(mesh.vertices), mesh.faces), 5000, seed=1)
    assert q.shape == (5000, 3) and s.shape == (5000,) and q.dtype == np.float32
    assert np.abs(q).max() <= 1.0
    assert (np.abs(s) < 0.01).mean() > 0.2  # most samples near the surface
    r = np.linalg.norm(q, axis=1)
    assert np.allclose(s, r - mmod.FILL, atol=0.01)  # the sphere's radius is FILL in the unit cube


def test_extract_surface_of_an_analytic_sdf_and_of_nothing():
    m = mmod.extract_surface(lambda p: np.linalg.norm(p, axis=1) - 0.5, 48)
    r = np.linalg.norm(m.vertices, axis=1)
    assert len(m.faces) > 500 and np.abs(r - 0.5).max() < 0.02
    assert trimesh.Trimesh(m.vertices, m.faces).volume > 0  # outward normals
    assert mmod.extract_surface(lambda p: np.ones(len(p)), 16).is_empty


@pytest.mark.parametrize("case,words", [
    ("missing", "no such file"),
    ("directory", "directory"),
    ("empty.obj", "empty"),
    ("garbage.obj", "no faces"),
    ("point.obj", "degenerate"),
    ("flat.obj", "flat"),
    ("mesh.xyz", "extension"),
    ("nan.obj", "non-finite"),
])
def test_bad_mesh_inputs_are_one_clean_error(tmp_path, case, words):
    p = tmp_path / case
    if case == "directory":
        p.mkdir()
    elif case == "empty.obj":
        p.write_bytes(b"")
    elif case == "garbage.obj":
        p.write_text("hello world\nthis is not a mesh\n")
    elif case == "point.obj":
        p.write_text("v 0 0 0\nv 0 0 0\nv 0 0 0\nf 1 2 3\n")
    elif case == "flat.obj":
        p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\nf 2 4 3\n")
    elif case == "mesh.xyz":
        p.write_text("v 0 0 0\n")
    elif case == "nan.obj":
        p.write_text("v 0 0 0\nv 1 0 0\nv 0 nan 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    with pytest.raises(InputError) as e:
        mmod.load(p)
    assert words in str(e.value)


# ---------------------------------------------------------------- container and registry

def test_mesh_header_is_declared_as_data_and_round_trips():
    h = {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": 2, "arch": 1, "model_id": b"\1" * 8,
         "resolution": 200, "center_x": 1.5, "center_y": -2.0, "center_z": 0.25, "scale": 3.0}
    data = bitstream.pack(h, [("MASK", b"ab")])
    assert len(data) == bitstream.header_size(2) + 8 + 2
    header, sections = bitstream.unpack(data)
    assert header["resolution"] == 200 and header["center_y"] == -2.0 and header["scale"] == 3.0
    shown = bitstream.describe_header(header)
    assert set(shown) >= {"resolution", "center_x", "center_y", "center_z", "scale"} and "height" not in shown
    for bad, words in [({"scale": 0.0}, "positive"), ({"scale": float("nan")}, "finite"),
                       ({"resolution": 4}, "resolution"), ({"center_x": float("inf")}, "finite")]:
        with pytest.raises(BitstreamError, match=words):
            bitstream.pack({**h, **bad}, [("MASK", b"ab")])


def test_an_unknown_modality_in_a_stream_is_refused_cleanly(tmp_path):
    h = {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": 2, "arch": 1, "model_id": b"\1" * 8,
         "resolution": 64, "center_x": 0.0, "center_y": 0.0, "center_z": 0.0, "scale": 1.0}
    data = bytearray(bitstream.pack(h, [("MASK", b"ab")]))
    data[5] = 9  # the modality byte
    with pytest.raises(BitstreamError, match="unsupported modality 9"):
        decode(bytes(data))
    with pytest.raises(BitstreamError, match="unsupported modality"):
        by_code(9)
    (tmp_path / "x.mscn").write_bytes(bytes(data))
    r = CliRunner().invoke(main, ["decode", str(tmp_path / "x.mscn"), "-o", str(tmp_path / "x.ply")])
    assert r.exit_code == BitstreamError.exit_code and "unsupported modality 9" in r.output
    assert not (tmp_path / "x.ply").exists()


def test_registry_dispatches_by_extension_and_code():
    assert set(REGISTRY) >= {"image", "mesh"}
    assert for_input("a.OBJ").name == "mesh" and for_input("b.stl").name == "mesh"
    assert for_input("c.png").name == "image" and for_input("d.unknown").name == "image"
    assert by_code(1).name == "image" and by_code(2).name == "mesh"
    assert all(m.code in bitstream.MODALITIES for m in REGISTRY.values())


def test_options_of_another_modality_are_refused():
    with pytest.raises(MscnError, match="bpp"):
        encode(_sphere(), bpp=0.5)
    with pytest.raises(MscnError, match="resolution"):
        encode(np.zeros((16, 16, 3), np.uint8), resolution=64)


def test_mesh_models_are_not_used_for_images_and_back():
    with pytest.raises(MscnError, match="not images"):
        mscncodec.encode_image(np.zeros((32, 32, 3), np.uint8), bpp=1.0, model=PROVISIONAL)
    with pytest.raises(MscnError, match="not meshes"):
        encode_mesh(_sphere(), target_bytes=2000, model="random-w32d5")


# ---------------------------------------------------------------- codec

def test_round_trip_size_surface_and_transform(sphere_stream):
    mesh, data = sphere_stream
    assert 0.9 * 3000 <= len(data) <= 3000  # the real file, at or just under the target
    assert stream_modality(data).name == "mesh"
    rec = decode(data, resolution=64)
    assert isinstance(rec, mmod.Mesh) and len(rec.faces) > 100
    # the transform is restored: the surface sits where the input was, at its size
    r = np.linalg.norm(rec.vertices - np.array([5.0, -3.0, 2.0]), axis=1)
    assert abs(np.median(r) - 3.0) < 0.15
    from mscncodec.modalities.mesh_metrics import compare

    m = compare(mesh, rec, n_samples=20_000, points=False)
    assert m["chamfer_l1"] < 0.03 and m["iou"] > 0.85  # a plain init after 250 steps: rough, but in place


def test_decoding_at_a_finer_grid_gives_a_finer_surface(sphere_stream):
    _, data = sphere_stream
    coarse, fine = decode_mesh(data, resolution=32), decode_mesh(data, resolution=96)
    assert len(fine.faces) > 4 * len(coarse.faces)
    with pytest.raises(MscnError, match="resolution"):
        decode_mesh(data, resolution=5000)


def test_a_mesh_with_a_hole_still_encodes_a_closed_surface():
    """Not watertight (one face missing): the winding number still knows inside from outside."""
    box = trimesh.creation.box((2.0, 1.0, 1.0))
    holed = mmod.Mesh(np.asarray(box.vertices), np.asarray(box.faces, np.int64)[1:])
    assert not trimesh.Trimesh(holed.vertices, holed.faces).is_watertight
    data = encode_mesh(holed, target_bytes=2500, model=PROVISIONAL, effort="fast", steps=150)
    rec = decode_mesh(data, resolution=48)
    from mscncodec.modalities.mesh_metrics import compare

    m = compare(mmod.Mesh(np.asarray(box.vertices), np.asarray(box.faces, np.int64)), rec, n_samples=10_000, points=False)
    assert m["iou"] > 0.8


def test_mesh_encode_is_deterministic_and_respects_a_small_target():
    mesh = _sphere(radius=1.0)
    a = encode_mesh(mesh, target_bytes=1500, model=PROVISIONAL, effort="fast", steps=5)
    b = encode_mesh(mesh, target_bytes=1500, model=PROVISIONAL, effort="fast", steps=5)
    assert a == b and len(a) <= 1500


def test_an_unreachable_byte_target_is_a_rate_error():
    from mscncodec.errors import RateError

    with pytest.raises(RateError, match="below this codec's minimum"):
        encode_mesh(_sphere(), target_bytes=20, model=PROVISIONAL, effort="fast", steps=0)


def test_image_stream_is_refused_by_the_mesh_decoder_and_back(sphere_stream):
    _, data = sphere_stream
    from mscncodec.modalities.image_codec import decode as decode_image

    with pytest.raises(BitstreamError, match="not an image stream"):
        decode_image(data)
    img = mscncodec.encode_image(np.full((32, 32, 3), 128, np.uint8), bpp=2.0, arch="siren", effort="fast", steps=2)
    with pytest.raises(BitstreamError, match="not a mesh stream"):
        decode_mesh(img)


# ---------------------------------------------------------------- CLI

def test_cli_encode_info_decode_a_mesh(tmp_path, sphere_stream, monkeypatch):
    mesh, _ = sphere_stream
    src = tmp_path / "ball.obj"
    src.write_bytes(mmod.encode_file(mesh, ".obj"))
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(src), "-o", str(tmp_path / "ball.mscn"), "--bytes", "2500",
                             "--model", PROVISIONAL, "--effort", "fast", "--steps", "20", "-q"])
    assert r.exit_code == 0, r.output
    assert len((tmp_path / "ball.mscn").read_bytes()) <= 2500
    r = runner.invoke(main, ["info", str(tmp_path / "ball.mscn")])
    assert r.exit_code == 0 and "mesh" in r.output and "resolution" in r.output and "center_x" in r.output
    r = runner.invoke(main, ["decode", str(tmp_path / "ball.mscn"), "-o", str(tmp_path / "ball.png")])
    assert r.exit_code != 0 and "unknown output format" in r.output and not (tmp_path / "ball.png").exists()
    r = runner.invoke(main, ["encode", str(src), "-o", str(tmp_path / "x.mscn"), "--bpp", "0.5"])
    assert r.exit_code != 0 and "bpp" in r.output and not (tmp_path / "x.mscn").exists()
    for ext in (".ply", ".stl"):
        out = tmp_path / f"ball{ext}"
        r = runner.invoke(main, ["decode", str(tmp_path / "ball.mscn"), "-o", str(out), "--resolution", "32"])
        assert r.exit_code == 0, r.output
        assert len(mmod.read_bytes(out.read_bytes(), ext).faces) > 0


# ---------------------------------------------------------------- training

def test_train_mesh_writes_model_card_checkpoint_resumes_and_exports(tmp_path, monkeypatch):
    data = tmp_path / "shapes"
    data.mkdir()
    for i, tm in enumerate([trimesh.creation.icosphere(2), trimesh.creation.box((1, 2, 3)),
                            trimesh.creation.torus(1.0, 0.3), trimesh.creation.capsule(1.0, 0.4)]):
        (data / f"s{i}.obj").write_bytes(mmod.encode_file(mmod.Mesh(np.asarray(tm.vertices), np.asarray(tm.faces)), ".obj"))
    out = tmp_path / "models" / "tinysdf"
    monkeypatch.setenv("MSCN_MODELS", str(out.parent))
    monkeypatch.setattr(models, "_cache", {})
    args = ["train", "mesh", "--data", str(data), "--out", str(out), "--width", "8", "--depth", "3", "--batch", "2",
            "--points", "256", "--pool", "2048", "--val-every", "1", "--threads", "1", "--no-progress"]
    runner = CliRunner()
    import sys

    monkeypatch.setattr(sys, "argv", ["mscn", *args, "--steps", "2"])  # the card records the command line
    r = runner.invoke(main, args + ["--steps", "2"])
    assert r.exit_code == 0, (r.output, r.exception)
    card = out.with_suffix(".md").read_text()
    assert "2 outer steps" in card and "sha256" in card and "mscn train mesh" in card and "meshes-test" in card
    m = models.load_model("tinysdf")
    assert m.modality == "mesh" and m.cfg.in_dim == 3 and m.model_id.hex() in card
    r = runner.invoke(main, args + ["--steps", "3", "--resume"])
    assert r.exit_code == 0, (r.output, r.exception)
    log = (out.parent / "tinysdf.run" / "train.log").read_text()
    assert "# start step=0" in log and "# start step=2" in log
    r = runner.invoke(main, args + ["--steps", "3", "--export-only"])
    assert r.exit_code == 0 and "3 outer steps" in out.with_suffix(".md").read_text()
    # the trained model codes a mesh end to end, and the image codec refuses it
    monkeypatch.setattr(models, "_cache", {})
    data_bytes = encode_mesh(_sphere(), target_bytes=1500, model="tinysdf+dense", effort="fast", steps=3)
    assert len(data_bytes) <= 1500 and decode_mesh(data_bytes, resolution=16) is not None
    r = runner.invoke(main, ["train", "mesh", "--data", str(data), "--out", str(tmp_path / "x"), "--export-only"])
    assert r.exit_code != 0 and "checkpoint" in r.output


def test_mesh_quality_names_a_size_and_grows_with_it():
    from mscncodec.modalities.mesh_codec import quality_bytes

    mesh = _sphere(radius=1.0)
    lo = encode_mesh(mesh, quality=10, model=PROVISIONAL, effort="fast", steps=5)
    hi = encode_mesh(mesh, quality=40, model=PROVISIONAL, effort="fast", steps=5)
    assert len(lo) <= round(quality_bytes(10)) and len(hi) <= round(quality_bytes(40))
    assert len(hi) > len(lo)
