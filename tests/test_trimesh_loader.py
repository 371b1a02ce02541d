"""The trimesh loader and exporter (issue 31): `import mscncodec.trimesh_plugin`, then trimesh loads .mscn."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import trimesh

import mscncodec.trimesh_plugin  # noqa: F401 - registers the file type
from mscncodec import api
from mscncodec.errors import BitstreamError, MscnError

REPO = Path(__file__).resolve().parents[1]
STREAM = REPO / "tests" / "fixtures" / "golden" / "mesh-shape-3000B.mscn"
RES = 32  # a coarse decoding grid keeps the marching cubes fast


def test_registered_with_trimesh():
    assert "mscn" in trimesh.available_formats()


def test_load_mesh_equals_api_decode():
    ref = api.decode(STREAM.read_bytes(), resolution=RES)
    mesh = trimesh.load_mesh(STREAM, process=False, resolution=RES)
    assert isinstance(mesh, trimesh.Trimesh)
    np.testing.assert_array_equal(mesh.vertices, ref.vertices)
    np.testing.assert_array_equal(mesh.faces, ref.faces)


def test_load_forms():
    """A file object with its type; trimesh.load(force="mesh"); plain trimesh.load's Scene of one mesh."""
    ref = api.decode(STREAM.read_bytes(), resolution=RES)
    from_bytes = trimesh.load_mesh(io.BytesIO(STREAM.read_bytes()), file_type="mscn", process=False, resolution=RES)
    np.testing.assert_array_equal(from_bytes.faces, ref.faces)
    forced = trimesh.load(STREAM, force="mesh", process=False, resolution=RES)
    assert isinstance(forced, trimesh.Trimesh) and len(forced.faces) == len(ref.faces)
    scene = trimesh.load(STREAM, process=False, resolution=RES)
    assert isinstance(scene, trimesh.Scene) and len(scene.geometry) == 1
    np.testing.assert_array_equal(next(iter(scene.geometry.values())).faces, ref.faces)


def test_an_image_stream_is_refused_by_name():
    image = REPO / "tests" / "fixtures" / "golden" / "image-grid2-l7-0.5bpp.mscn"
    with pytest.raises(BitstreamError, match="is an image stream, not a mesh"):
        trimesh.load_mesh(image)


def test_a_truncated_stream_is_refused():
    data = STREAM.read_bytes()
    with pytest.raises(BitstreamError, match="truncated .mscn file"):
        trimesh.load_mesh(io.BytesIO(data[: len(data) // 2]), file_type="mscn")


def test_export_encodes_through_the_api(tmp_path):
    src = trimesh.load_mesh(REPO / "examples" / "shape.obj")
    out = tmp_path / "shape.mscn"
    src.export(out, bytes=2000, effort="fast", steps=20, resolution=RES)
    data = out.read_bytes()
    assert 0 < len(data) <= 2000
    info = api.describe(data)
    assert info["header"]["modality"] == "mesh" and int(info["header"]["resolution"]) == RES
    back = trimesh.load_mesh(out, process=False)
    assert isinstance(back, trimesh.Trimesh) and len(back.faces) > 0
    # the decoded surface sits where the input was (the header's frame)
    np.testing.assert_allclose(back.bounds, src.bounds, atol=0.15 * np.ptp(src.bounds, axis=0).max())


def test_unknown_export_option_is_refused():
    src = trimesh.creation.box()
    with pytest.raises(MscnError, match="unknown .mscn export option bites"):
        src.export(file_type="mscn", bites=2000)
