"""Streams made by the shipped models before grid2 existed still decode, pixel for pixel.

The fixtures were encoded from ``source-64x96.png`` with the code of commit c5d611c (the last one
before grid2) and the shipped ``grid-l6`` / ``siren-full-w32-l05`` models; ``*.decoded.png`` is what
that code decoded. A change that breaks an old model's streams must retire the model explicitly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mscncodec import models
from mscncodec.modalities.image_codec import decode, describe

FIX = Path(__file__).resolve().parent / "fixtures"
REPO_MODELS = Path(__file__).resolve().parents[1] / "mscncodec" / "weights"


@pytest.fixture()
def shipped(monkeypatch):
    monkeypatch.setenv("MSCN_MODELS", str(REPO_MODELS))
    monkeypatch.setattr(models, "_cache", {})


@pytest.mark.parametrize("name,arch", [("grid-l6", "grid"), ("siren-full-w32-l05", "siren")])
def test_old_model_streams_decode_pixel_for_pixel(shipped, name, arch):
    data = (FIX / f"{name}.mscn").read_bytes()
    expected = np.asarray(Image.open(FIX / f"{name}.decoded.png"))
    assert np.array_equal(decode(data), expected)
    d = describe(data)
    assert d["header"]["model"] == name and d["header"]["arch"] == arch
