"""Big images in bounded memory (families/grid2/tiles.py; the chunked exact ARM: test_grid2_latent_codec.py): same
stream format, the whole-image results where they must be exact, close ones where tiles only change the search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import synthetic_image

from grid2_testing import CFG, random_arm

from mscncodec.families.grid2 import encoder as grid2codec
from mscncodec.families.grid2 import refine as refinement
from mscncodec.families.grid2 import tiles
from mscncodec.families.grid2.arm import rate_bits
from mscncodec.families.grid2.config import init_params
from mscncodec.families.grid2.model import fresh_grid2_model
from mscncodec.families.grid2.network import analysis
from mscncodec.families.grid2.synthesis import synthesis
from mscncodec.modalities.image import psnr
from mscncodec.modalities.image_codec import decode, encode_image


def test_tiles_cover_the_frame_once():
    ts = tiles.tiles(128, 192, halo=8, tile=64)
    cover = np.zeros((128, 192), int)
    for t in ts:
        top, bottom, left, right = t.inner
        cover[top:bottom, left:right] += 1
        assert t.outer[0] <= top and t.outer[1] >= bottom and t.outer[2] <= left and t.outer[3] >= right
    assert (cover == 1).all() and len(ts) == 6


def _frame(seed: int, h: int = 96, w: int = 160) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.round(3 * torch.randn(1, 1, a, b, generator=g)) for a, b in CFG.grid_shapes(h, w)]


def test_tiled_rate_and_synthesis_equal_the_whole_image_ones(monkeypatch):
    monkeypatch.setattr(tiles, "TILE", 32)
    monkeypatch.setattr(tiles, "HALO", 8)
    monkeypatch.setattr(tiles, "SYNTH_HALO", 16)
    p = random_arm(CFG, 1, scale=0.3)
    y = _frame(2)
    lam = torch.tensor([2.0**-6])
    with torch.no_grad():
        whole_bits = float(rate_bits(CFG, p, y, y, lam))
        whole_img = synthesis(CFG, p, y)
    assert float(tiles.rate_bits(CFG, p, y, y, lam)) == pytest.approx(whole_bits, rel=2e-6)
    assert torch.allclose(tiles.synthesis(CFG, p, y), whole_img, atol=1e-5)


def test_big_images_encode_tile_by_tile_and_decode(isolated_models, monkeypatch):
    """An image over TILED_PIXELS (lowered here) is refined tile by tile: a valid stream of the same format,
    at the target size, with about the quality of the whole-image encode; the decoder's tiled synthesis
    gives what the whole-image one gives."""
    fresh_grid2_model(CFG, name="g2tiles", seed=0).save(isolated_models / "g2tiles.pt")
    img = synthetic_image(96, 160, seed=3)
    kw = {"bpp": 3.0, "model": "g2tiles", "effort": "fast", "steps": 6}
    whole = encode_image(img, **kw)
    calls = []
    monkeypatch.setattr(tiles, "TILED_PIXELS", 4000)
    monkeypatch.setattr(tiles, "TILE", 32)
    monkeypatch.setattr(tiles, "HALO", 8)
    monkeypatch.setattr(tiles, "SYNTH_HALO", 16)
    real = refinement.refine
    monkeypatch.setattr(refinement, "refine", lambda *a, **k: calls.append(k.get("tile")) or real(*a, **k))
    tiled = encode_image(img, **kw)
    assert len(calls) == 15 and all(isinstance(t, tiles.Tile) for t in calls)
    assert len(tiled) <= 3.0 * 96 * 160 / 8
    out_tiled = decode(tiled)
    assert abs(psnr(img, out_tiled) - psnr(img, decode(whole))) < 1.5
    monkeypatch.setattr(tiles, "TILED_PIXELS", 1 << 30)
    assert np.abs(decode(tiled).astype(int) - out_tiled.astype(int)).max() <= 1


def test_a_routed_decoder_update_leaves_big_and_small_images_to_the_base_model(isolated_models, monkeypatch):
    """The update variants refine the whole frame at once (no tiles): where routing.json sends an effort to
    one, an image over TILED_PIXELS (lowered here) gets the base model, tile by tile, and so does one under
    the effort's UPDATE_MIN_PIXELS (lowered too: the update's bytes do not pay there); one between, the route."""
    import json

    from mscncodec import models
    from mscncodec.container import bitstream

    fresh_grid2_model(CFG, name="g2route", seed=0).save(isolated_models / "g2route.pt")
    (isolated_models / "routing.json").write_text(json.dumps({"default_arch": "grid2", "arch_routes": {"grid2": [
        {"max_bpp": 1e9, "model": "g2route"}, {"max_bpp": 1e9, "model": "g2route+dense", "effort": "default"}]}}))
    ids = {n: models.load_model(n).model_id for n in ("g2route", "g2route+dense")}
    monkeypatch.setattr(tiles, "TILED_PIXELS", 4000)
    monkeypatch.setattr(tiles, "TILE", 32)
    monkeypatch.setattr(tiles, "HALO", 8)
    monkeypatch.setattr(tiles, "SYNTH_HALO", 16)
    monkeypatch.setitem(grid2codec.UPDATE_MIN_PIXELS, "default", 2000)
    kw = {"bpp": 3.0, "arch": "grid2", "effort": "default", "steps": 2}
    big = encode_image(synthetic_image(96, 160, seed=3), **kw)
    mid = encode_image(synthetic_image(48, 64, seed=3), **kw)
    small = encode_image(synthetic_image(32, 48, seed=3), **kw)
    assert bitstream.unpack(big)[0]["model_id"] == ids["g2route"]
    assert bitstream.unpack(mid)[0]["model_id"] == ids["g2route+dense"]
    assert bitstream.unpack(small)[0]["model_id"] == ids["g2route"]
    assert decode(big).shape == (96, 160, 3)


def test_the_compact_frame_gives_pad_images_floats():
    from mscncodec.coding.latents import pad_image

    img = synthetic_image(45, 70, seed=4)
    frame = tiles.padded_frame(img, 16)
    assert frame.dtype == torch.uint8 and frame.shape == (1, 3, 48, 80)
    assert torch.equal(tiles.pixels(frame), pad_image(img, 16))
    t = tiles.tiles(48, 80, halo=16, tile=32)[1]
    assert torch.equal(tiles.pixels(t.crop(frame)), t.crop(pad_image(img, 16)))


def test_tiled_analysis_of_the_compact_frame_equals_the_whole_one(monkeypatch):
    from mscncodec.coding.latents import pad_image

    monkeypatch.setattr(tiles, "TILE", 32)
    monkeypatch.setattr(tiles, "SYNTH_HALO", 32)  # wider than this small analysis net's reach
    p = init_params(CFG, seed=3)
    img = synthetic_image(96, 160, seed=5)
    lam = torch.tensor([2.0**-6])
    with torch.no_grad():
        whole = analysis(CFG, p, pad_image(img, 4), lam)
    tiled = tiles.analysis(CFG, p, tiles.padded_frame(img, 4), lam)
    assert all(t.dtype == torch.float32 and torch.allclose(t, v, atol=1e-5) for t, v in zip(tiled, whole))
