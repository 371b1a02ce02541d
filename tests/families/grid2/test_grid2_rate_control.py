"""families/grid2/rate_control.py (lambda aims, the size fit on real bytes), update.py and the dead-zone
quantiser: synthetic streams, the tiny model, and the shipped model on the bundled example."""

from __future__ import annotations

import logging
import struct

import numpy as np
import pytest
import torch
from conftest import REPO
from grid2_testing import CFG

from mscncodec import models
from mscncodec.container import bitstream
from mscncodec.families.grid2 import rate_control
from mscncodec.families.grid2.model import fresh_grid2_model
from mscncodec.families.grid2.quantizer import DEADZONE_LEVEL_GAIN, MAX_DEADZONE, quantise, sparse_levels
from mscncodec.families.grid2.rate_control import FINER, LAMBDA_SEARCH, fit_size, secant_index
from mscncodec.families.grid2.update import choose_update
from mscncodec.modalities.image_codec import decode, encode_image


@pytest.fixture(scope="module")
def g2(isolated_models) -> str:
    fresh_grid2_model(CFG, name="g2t", seed=0).save(isolated_models / "g2t.pt")
    return "g2t"


@pytest.fixture()
def debug_log(caplog):
    caplog.set_level(logging.DEBUG, logger="mscncodec.families.grid2")
    return caplog


def _shipped(monkeypatch) -> str:
    if not (REPO / "mscncodec" / "weights" / "grid2-l7.pt").is_file():
        pytest.fail("mscncodec/weights/grid2-l7.pt is missing (the shipped grid2 model)")
    monkeypatch.setenv("MSCN_MODELS", str(REPO / "mscncodec" / "weights"))
    monkeypatch.setattr(models, "_cache", {})
    return "grid2-l7"


def _example() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(REPO / "examples" / "example.png").convert("RGB"))  # the bundled 256x256 example


# ---------------------------------------------------------------- the shipped model

@pytest.mark.parametrize("bpp", [0.1, 1.0])
def test_rate_control_lands_at_or_just_under_the_target(monkeypatch, bpp):
    name = _shipped(monkeypatch)
    img = _example()
    data, rep = encode_image(img, bpp=bpp, model=name, return_report=True, effort="fast", steps=3)
    target = int(np.floor(bpp * img.shape[0] * img.shape[1] / 8))
    assert len(data) <= target and len(data) >= 0.85 * target
    assert rep["psnr"] > (18 if bpp < 0.5 else 30)
    hdr = struct.unpack("<BB", bitstream.unpack(data)[1]["GRD2"])
    assert 0 <= hdr[0] <= 255


def test_lambda_is_aimed_again_when_the_refined_stream_overshoots(monkeypatch, debug_log):
    """A calibration that says the refinement halves the rate makes lambda's first aim twice too rich: the
    tied-step stream overshoots, lambda is aimed again from this image's own growth, and the file is as
    good as with an honest calibration (the size fit alone cut it with a dead zone or a coarser step)."""
    name = _shipped(monkeypatch)
    img = _example()
    honest = encode_image(img, bpp=0.5, model=name, return_report=True, effort="fast", steps=3)
    debug_log.clear()
    monkeypatch.setattr(rate_control, "rate_growth", lambda model, n: 0.5)
    data, rep = encode_image(img, bpp=0.5, model=name, return_report=True, effort="fast", steps=3)
    assert "lambda index" in debug_log.text and "->" in debug_log.text  # the second aim happened
    assert len(data) <= int(0.5 * 256 * 256 / 8)
    assert rep["psnr"] > honest[1]["psnr"] - 0.5


def test_a_plain_model_aims_a_third_time_when_the_second_aim_misses(monkeypatch, debug_log):
    """Where the re-aimed refinement overshoots as well, the plain model gets the secant aim the update
    variants had. The second aim is forced 3 lambda indices too rich."""
    name = _shipped(monkeypatch)
    img = _example()
    monkeypatch.setattr(rate_control, "rate_growth", lambda model, n: 0.5)
    real, calls = rate_control.lambda_for, []

    def second_too_rich(model, x, target_bits, guess, **top):
        idx, y, est = real(model, x, target_bits, guess, **top)
        calls.append(idx)
        return (idx - 3, None, est) if len(calls) == 2 else (idx, y, est)

    monkeypatch.setattr(rate_control, "lambda_for", second_too_rich)
    data, rep = encode_image(img, bpp=0.5, model=name, return_report=True, effort="fast", steps=3)
    assert len(calls) == 2 and debug_log.text.count("tied-step size") == 2  # both misses measured, then the third aim
    assert 0.85 * int(0.5 * 256 * 256 / 8) <= len(data) <= int(0.5 * 256 * 256 / 8)
    assert decode(data).shape == img.shape


def test_lambda_is_aimed_again_with_the_decoder_update_counted(monkeypatch, debug_log):
    """The variants that send a decoder update get the second aim too (the update changes the rate far
    more than latents alone do), with the update's own bytes and ARM in the tied-step size."""
    name = _shipped(monkeypatch) + "+dense"
    img = _example()
    monkeypatch.setattr(rate_control, "rate_growth", lambda model, n: 0.5)
    data, rep = encode_image(img, bpp=0.5, model=name, return_report=True, effort="fast", steps=6)
    assert "tied-step size" in debug_log.text and "->" in debug_log.text
    assert 0.85 * int(0.5 * 256 * 256 / 8) <= len(data) <= int(0.5 * 256 * 256 / 8)
    assert decode(data).shape == img.shape


def test_scratch_searches_lambda_then_refines_and_round_trips(g2, debug_log):
    from conftest import synthetic_image

    img = synthetic_image(32, 48, seed=5)
    data, rep = encode_image(img, bpp=8.0, model=f"{g2}+scratch", return_report=True, effort="fast", steps=20)
    assert "scratch search: corrected lambda index" in debug_log.text
    assert len(data) <= 8.0 * 32 * 48 / 8 and decode(data).shape == img.shape


# ---------------------------------------------------------------- the aims' arithmetic

def test_the_third_aim_interpolates_the_two_real_sizes():
    """Log size is close to linear in the lambda index: the third aim lands between the two tried indices,
    nearer the one whose size is nearer the goal, and inside the search range."""
    tried = {118: (18100,), 106: (27044,)}
    i = secant_index(tried, 0.98 * 24576)
    assert 106 < i < 118 and abs(i - 106) < abs(i - 118)
    s = 27044 * (18100 / 27044) ** ((i - 106) / 12)  # the size the line predicts at i
    assert abs(s / (0.98 * 24576) - 1) < 0.04
    lo, hi = LAMBDA_SEARCH
    assert lo <= secant_index({hi - 1: (1000,), hi: (900,)}, 10) <= hi


def test_the_third_aim_does_not_follow_sizes_that_do_not_fall():
    """At the model's rate floor a higher lambda no longer makes the file smaller (kodim15 at 0.1 bpp: 5062 B
    at index 163, 5098 B at 183): the aim stays at the smaller of the two, and an extrapolation stays near them."""
    assert secant_index({163: (5062,), 183: (5098,)}, 0.98 * 4915) == 163
    assert secant_index({163: (5098,), 183: (5062,)}, 0.98 * 4915) == LAMBDA_SEARCH[1]
    i = secant_index({100: (20000,), 104: (19000,)}, 5000)  # far below both: a long extrapolation
    assert 104 < i <= 104 + 2 * 4


def test_rate_growth_reads_the_models_calibration(g2, isolated_models):
    m = models.load_model(g2)
    rate_control.growth_table.cache_clear()
    assert rate_control.rate_growth(m, 100) == 1.0  # no calibration file: no correction
    path = isolated_models / "g2t-cal.growth.json"
    path.write_text('{"growth": {"10": 1.05, "100": 1.2, "300": 1.3}}')
    cal = m.variant("dense")
    cal = type(m)(**{**cal.__dict__, "name": "g2t-cal"})
    assert rate_control.growth_file(cal) == path
    g = [rate_control.rate_growth(cal, n) for n in (0, 10, 50, 100, 300, 2000)]
    assert g[0] == 1.0 and g[1] == pytest.approx(1.05) and g[3] == pytest.approx(1.2)
    assert all(a <= b for a, b in zip(g, g[1:])) and g[-1] <= 4.0


def test_an_update_variant_reads_its_own_calibration_where_there_is_one(g2, isolated_models):
    """The update lowers the latents' rate and costs bytes of its own, so +dense aims with its own growth;
    without a file of its own it shares the base model's."""
    dense = models.load_model(g2).variant("dense")
    assert dense.name == f"{g2}+dense"
    base, own = isolated_models / f"{g2}.growth.json", isolated_models / f"{g2}+dense.growth.json"
    base.write_text('{"growth": {"50": 0.9}}')
    rate_control.growth_table.cache_clear()  # read once per process; an earlier test read "no file"
    try:
        assert rate_control.growth_file(dense) == base
        own.write_text('{"growth": {"50": 0.6}}')
        assert rate_control.growth_file(dense) == own
        assert rate_control.rate_growth(dense, 50) == pytest.approx(0.6)
        assert rate_control.rate_growth(models.load_model(g2), 50) == pytest.approx(0.9)
    finally:
        base.unlink()
        own.unlink(missing_ok=True)
        rate_control.growth_table.cache_clear()


def test_an_update_that_does_not_pay_sends_no_section(g2):
    """Where no quantised update beats the shared decoder, the stream carries no update section at all
    (an all-zero update would still cost its mask and step bytes)."""
    m = models.load_model(g2 + "+dense")
    x = torch.rand(1, 3, 64, 64)
    y = [torch.zeros(1, 1, a, b) for a, b in m.cfg.grid_shapes(64, 64)]
    zero = {k: torch.zeros_like(v) for k, v in m.theta.items()}
    candidates, chosen, _ = choose_update(m, x, y, zero, 2.0**-8, 1.0, 64 * 64)
    assert chosen is None and candidates[None] == ([], m.theta)
    assert all(secs for rel, (secs, _) in candidates.items() if rel is not None)


# ---------------------------------------------------------------- the size fit

def test_the_dead_zone_spares_grids_that_are_mostly_nonzero():
    s = 2.0
    mostly_zero = np.zeros((8, 8)); mostly_zero[0, :3] = 2.5  # |v / s| = 1.25: a +-1 latent
    mostly_one = np.full((8, 8), 2.5)
    assert sparse_levels([mostly_zero, mostly_one], s) == {0}
    # the level weight: a +-1 latent of grid 2 counts 4x in the dead zone's threshold
    v = np.full((2, 2), 1.25 * s)
    assert np.all(quantise(v, s, 1.3, 0) == 0)
    assert np.all(quantise(v, s, 1.3, 2) == 1)
    assert np.all(quantise(v, s, 1.3 * DEADZONE_LEVEL_GAIN**2, 2) == 0)
    assert np.all(quantise(v, s, 0.5, 2) == 1)  # the plain dead zone is rounding


@pytest.mark.parametrize("target", [50, 900, 1000, 1234, 5000, 18500, 30000])
def test_size_fit_lands_at_or_just_under_the_target_in_few_packs(target):
    """A synthetic stream whose size falls with the step index and with every zeroed latent."""
    mags = np.sort(np.random.default_rng(0).uniform(0.5, MAX_DEADZONE, 4000))
    calls = []

    def pack(idx, deadzone=0.5):
        calls.append((idx, deadzone))
        zeroed = int(np.searchsorted(mags, deadzone))
        return b"x" * max(int(20000 * 2.0 ** ((128 - idx) / 12)) - zeroed // 4, 40)

    data, idx, _ = fit_size(pack, lambda i: mags, 128, target)
    if target < 40 + 20000 * 2.0 ** ((128 - 255) / 12) - 1000:
        assert data is None
        return
    assert data is not None and len(data) <= target
    assert len(data) >= 0.97 * target or idx == 128 - FINER
    assert len(calls) <= (11 if 15000 < target < 25000 else 24)  # near the tied step: few packs


def test_size_fit_over_the_target_zeroes_small_latents_before_a_coarser_step():
    """As measured at 0.1 bpp with the shipped model: a coarser step than lambda's makes the stream *bigger*
    (the lambda-conditioned ARM), so the fit must stay at the tied step and use the dead zone."""
    mags = np.sort(np.random.default_rng(1).uniform(0.5, MAX_DEADZONE, 4000))

    def pack(idx, deadzone=0.5):
        zeroed = int(np.searchsorted(mags, deadzone))
        return b"x" * (10000 + 40 * abs(idx - 128) - zeroed)

    data, idx, _ = fit_size(pack, lambda i: mags, 128, 9000)
    assert idx == 128 and 0.99 * 9000 <= len(data) <= 9000


@pytest.mark.parametrize("finer_is_better", [False, True])
def test_size_fit_takes_the_stream_that_decodes_best_among_those_that_fit(finer_is_better):
    """Given the distortion of each candidate, the fit returns the best-decoding stream under the target, not
    the biggest: latents refined at the tied step lose quality at a finer one, and a dead zone that fills a
    small gap zeroes many of them (kodim01 at 0.5 bpp, max: -1.5 dB for 0.5 % more bytes)."""
    mags = np.sort(np.random.default_rng(2).uniform(0.5, MAX_DEADZONE, 4000))

    def pack(idx, deadzone=0.5):
        zeroed = int(np.searchsorted(mags, deadzone))
        return b"x" * (int(20000 * 2.0 ** ((128 - idx) / 12)) - zeroed // 4)

    def mse(idx, deadzone):
        finer = 128 - idx
        return 1.0 + (-0.01 if finer_is_better else 0.01) * finer + (deadzone > 0.5) * 0.5

    data, idx, biggest = fit_size(pack, lambda i: mags, 128, 22000, mse)
    assert len(data) <= 22000 and biggest <= 22000 and biggest >= 0.97 * 22000
    if finer_is_better:  # the finest plain step that fits (here the dead-zone fill costs more than it saves)
        assert idx < 128 and data == pack(idx) and len(pack(idx - 1)) > 22000
    else:
        assert idx == 128 and data == pack(128)
    assert fit_size(pack, lambda i: mags, 128, 22000)[0] == b"x" * biggest  # without mse: the biggest
