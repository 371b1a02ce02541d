"""Low rates (issue 28, item 4): every rate the shipped grid2 starts can reach is reached, a routed model that
cannot reach it falls back to one that can (and says so), and a rate under the container is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import mscncodec
from mscncodec import models
from mscncodec.errors import ModelFloorError, RateError
from mscncodec.modalities.image_codec import encode_image, fallback_models

from conftest import load_photo


@pytest.fixture(autouse=True)
def shipped(monkeypatch):
    monkeypatch.delenv("MSCN_MODELS", raising=False)  # the weights shipped in the package
    monkeypatch.delenv("MSCN_DEFAULT_MODEL", raising=False)
    monkeypatch.setattr(models, "_cache", {})


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return np.ascontiguousarray(load_photo()[100:228, 150:278])  # 128 x 128 of a test photo


@pytest.mark.parametrize("bpp", [0.05, 2.0])
def test_the_ends_of_the_rate_range_are_reached_at_fast(crop, bpp):
    data, rep = encode_image(crop, bpp=bpp, effort="fast", return_report=True)
    target = int(bpp * crop.size / 3 / 8)
    assert target * 0.75 <= len(data) <= target, (len(data), target, rep["note"])
    assert mscncodec.decode(data).shape == crop.shape
    assert rep["psnr"] > (10 if bpp < 0.1 else 30)  # 0.05 bpp here is 102 bytes, 49 of them the container


def test_a_routed_update_variant_that_cannot_fit_falls_back_and_says_so(crop, monkeypatch, caplog):
    """A decoder-update variant routed for every rate (its floor, ~0.2 bpp here, is above 0.1 bpp): the encode
    falls back to the low-rate model, reports it in the note and the log, and writes that model's stream."""
    routes = {"default_arch": "grid2", "arch_routes": {"grid2": [
        {"max_bpp": 1e9, "model": "grid2-l7-ft256+dense", "effort": "fast"},
        {"max_bpp": 0.125, "model": "grid2-l7-c256"}, {"max_bpp": 1e9, "model": "grid2-l7-ft256c"}]}}
    monkeypatch.setattr(models, "_routing_file", lambda: json.loads(json.dumps(routes)))
    m = models.load_model("grid2-l7-ft256+dense")
    assert [f.name for f in fallback_models(m, "fast", crop.shape[:2])] == ["grid2-l7-c256"]
    with caplog.at_level("INFO", logger="mscncodec"):
        data, rep = encode_image(crop, bpp=0.1, effort="fast", steps=2, return_report=True)
    assert rep["model"] == "grid2-l7-c256" and len(data) <= int(0.1 * 128 * 128 / 8)
    assert rep["note"].startswith("routed model grid2-l7-ft256+dense ") and "coded with grid2-l7-c256" in rep["note"]
    assert any("coded with grid2-l7-c256" in r.getMessage() for r in caplog.records)
    assert mscncodec.decode(data).shape == crop.shape
    with pytest.raises(ModelFloorError):  # an explicit model does not fall back: its floor is the refusal
        encode_image(crop, bpp=0.1, effort="fast", steps=2, model="grid2-l7-ft256+dense")


def test_a_rate_under_the_container_is_refused_in_one_line(tmp_path):
    """64 x 64 at 0.05 bpp is 25 bytes, under the 49-byte container: no model can write it (no fallback tried)."""
    from mscncodec.cli import main

    Image.fromarray(load_photo()[:64, :64]).save(tmp_path / "s.png")
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "s.png"), "-o", str(tmp_path / "s.mscn"), "--bpp", "0.05",
                                  "--effort", "fast"])
    assert r.exit_code == RateError.exit_code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "for the container alone" in lines[0] and "Traceback" not in r.output, r.stderr
    assert not (tmp_path / "s.mscn").exists()


def test_the_low_rate_start_aims_past_the_others_lambda_ceiling():
    from mscncodec.coding.latents import lambda_index
    from mscncodec.families.grid2.rate_control import LAMBDA_SEARCH, lambda_top, trained_top

    assert lambda_top(models.load_model("grid2-l7-c256")) == lambda_index(1.0)  # trained to 2^-1: 2^0
    assert lambda_top(models.load_model("grid2-l7-ft256c")) == LAMBDA_SEARCH[1]  # trained to 2^-3: 2^-2 as before
    assert trained_top(models.load_model("grid2-l7-ft256c")) == lambda_index(2.0**-3)
