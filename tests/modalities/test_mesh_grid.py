"""The mesh route on grid3 (modalities/mesh_grid.py through mesh_codec): rate, frame, resolution, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from mscncodec import models
from mscncodec.container import bitstream
from mscncodec.families.grid2.volume.config import Vol3Config
from mscncodec.families.grid2.volume.model import fresh_vol3_model
from mscncodec.modalities import mesh as mmod
from mscncodec.modalities import mesh_codec, mesh_grid

TARGET = 1500


@pytest.fixture(scope="module")
def model():
    return fresh_vol3_model(Vol3Config(levels=3), name="t", modality="mesh")


@pytest.fixture(autouse=True, scope="module")
def known(model):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "list_models", lambda: [model])
        # an untrained ARM spends ~0.7 bit on every latent: a 16^3 grid keeps the fast tests' streams small
        mp.setattr(mesh_grid, "finest_for", lambda target_bytes: (16, 16, 16))
        yield


@pytest.fixture(scope="module")
def box():
    import trimesh

    tm = trimesh.creation.box(extents=(2.0, 1.2, 0.8))
    tm.apply_translation((5.0, -1.0, 2.0))
    return mmod.Mesh(np.asarray(tm.vertices, np.float64), np.asarray(tm.faces, np.int64))


@pytest.fixture(scope="module")
def stream(model, box, known):
    return mesh_codec.encode_mesh(box, target_bytes=TARGET, model=model, effort="fast", steps=20, resolution=48)


def test_at_or_under_target(stream, model):
    assert len(stream) <= TARGET
    header, sections = bitstream.unpack(stream)
    assert header["model_id"] == model.model_id and "LATS" in sections and "GRD3" in sections


def test_decodes_in_the_input_frame(stream, box):
    rec = mesh_codec.decode_mesh(stream)
    assert len(rec.faces) > 0
    lo, hi = box.vertices.min(0), box.vertices.max(0)
    centre = rec.vertices.mean(0)
    assert np.all(centre > lo) and np.all(centre < hi)  # the surface is back where the box was
    fr = mmod.frame_for(box)  # and inside the unit cube's place in the input's coordinates
    assert np.all(rec.vertices.min(0) >= np.asarray(fr.center) - fr.scale - 1e-6)
    assert np.all(rec.vertices.max(0) <= np.asarray(fr.center) + fr.scale + 1e-6)


def test_other_resolution_and_sdf(stream):
    a = mesh_codec.decode_mesh(stream, resolution=32)
    b = mesh_codec.decode_mesh(stream, resolution=160)  # above EVAL_MAX: evaluated at 128^3, upsampled
    assert len(a.faces) > 0 and len(b.faces) > len(a.faces)
    header, sdf = mesh_codec.sdf_function(stream)
    d = sdf(np.zeros((5, 3), np.float32))
    assert d.shape == (5,) and np.all(np.abs(d) <= mesh_grid.TRUNCATION_G3 * 1.5 + 1.0)


def test_deterministic(stream, model, box):
    again = mesh_codec.encode_mesh(box, target_bytes=TARGET, model=model, effort="fast", steps=20, resolution=48)
    assert again == stream
    assert np.array_equal(mesh_codec.decode_mesh(stream).vertices, mesh_codec.decode_mesh(stream).vertices)


def test_describe(stream, model):
    d = mesh_codec.describe(stream)
    assert d["bytes"] == len(stream)
    assert d["header"]["model"] == model.name and "grid3" in d["header"]["network"]


def test_target_too_small(model, box):
    from mscncodec.errors import RateError

    with pytest.raises(RateError):
        mesh_codec.encode_mesh(box, target_bytes=40, model=model, effort="fast", steps=4)
