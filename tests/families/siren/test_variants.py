"""Ablation variants of a model (NAME+dense, NAME+magnitude) encode, hit the rate and decode."""

import pytest

from conftest import synthetic_image
from mscncodec import models
from mscncodec.modalities.image_codec import decode, encode_image
from mscncodec.families.siren.model import fresh_model
from mscncodec.models import load_model
from mscncodec.families.siren.network import SirenConfig


@pytest.fixture
def gated_model(tmp_path, monkeypatch):
    monkeypatch.setenv("MSCN_MODELS", str(tmp_path))
    monkeypatch.setattr(models, "_cache", {})
    fresh_model(SirenConfig(width=8, depth=3), name="g", patch=16, log_alpha_init=1.0).save(tmp_path / "g.pt")
    return "g"


@pytest.mark.parametrize("variant", ["", "+dense", "+magnitude"])
def test_variant_round_trip_at_target_rate(gated_model, variant):
    img = synthetic_image(48, 64, seed=3)
    name = gated_model + variant
    data, rep = encode_image(img, bpp=2.0, model=name, effort="fast", steps=5, return_report=True)
    assert len(data) * 8 / (48 * 64) <= 2.0
    assert rep["model"] == name
    out = decode(data)  # the decoder finds the variant from the id in the stream
    assert out.shape == img.shape
    assert load_model(name).sparsity == (variant[1:] or "gates")


def test_variants_have_distinct_ids(gated_model):
    ids = {load_model(gated_model + v).model_id for v in ("", "+dense", "+magnitude")}
    assert len(ids) == 3
