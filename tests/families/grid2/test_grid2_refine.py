"""families/grid2/refine.py and quantizer.py: the refinement's schedule as data (one Preset per effort), what it
does with it, and the quantisation proxies it uses."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import synthetic_image
from grid2_testing import CFG, FAST, H, W

from mscncodec.coding.latents import pad_image
from mscncodec.container import bitstream
from mscncodec.families.grid2 import encoder as grid2codec
from mscncodec.families.grid2 import frame
from mscncodec.families.grid2 import refine as refinement
from mscncodec.families.grid2.model import fresh_grid2_model
from mscncodec.families.grid2.quantizer import soft_round, ste
from mscncodec.families.grid2.refine import PRESETS, SOFT, STE, Phase, refine
from mscncodec.modalities.image_codec import encode_image


@pytest.fixture(scope="module")
def g2(isolated_models) -> str:
    fresh_grid2_model(CFG, name="g2t", seed=0).save(isolated_models / "g2t.pt")
    return "g2t"


def test_each_effort_has_a_preset_that_prints_its_schedule():
    assert set(PRESETS) == {"fast", "default", "max", "placebo"}  # placebo: test_grid2_device.py
    assert [(p.steps, p.update_steps) for p in PRESETS.values()] == [(8, 8), (50, 80), (400, 400), (10_000, 10_000)]
    text = str(PRESETS["default"])
    assert text.splitlines()[0] == "Preset 'default': 50 steps, 80 with a decoder update"
    assert "phase soft: 80% of the steps, lr x1 (cosine to x0.1), soft round + noise, T 0.3 -> 0.1, noise 1 step" in text
    assert "phase hard: 20% of the steps, lr x0.1 (cosine to x0.01), straight-through round" in text
    assert "Adam lr 0.05 (0.02 beyond 100 steps without an update)" in text
    soft, hard = PRESETS["max"].phases
    assert (soft.quantiser, hard.quantiser) == (SOFT, STE) and soft.noise == 1.0 and (soft.t0, soft.t1) == (0.3, 0.1)
    with pytest.raises(AttributeError):  # frozen: a preset is a value, edited with dataclasses.replace
        PRESETS["fast"].steps = 9  # type: ignore[misc]


def test_phase_bounds_split_the_steps():
    p = PRESETS["default"]
    assert p.bounds(20) == [0, 16, 20] and p.bounds(8) == [0, 6, 8] and p.bounds(0) == [0, 0, 0]
    three = replace(p, phases=(Phase("a", 0.5, 1.0, SOFT, 0.3, 0.1, 1.0), Phase("b", 0.25, 0.5, SOFT, 0.1, 0.1, 0.5),
                               Phase("c", 0.25, 0.1, STE)))
    assert three.bounds(8) == [0, 4, 6, 8]


def test_schedule_phases_soft_then_hard():
    preset = replace(PRESETS["default"], latent_lr=0.5)  # a tiny model from zero latents: let them move
    m = fresh_grid2_model(CFG, name="s", seed=0)
    img = synthetic_image(32, 32, seed=2)
    x = pad_image(img, CFG.align)
    y0 = [torch.zeros(1, 1, a, b) for a, b in CFG.grid_shapes(32, 32)]
    torch.manual_seed(0)
    y, delta, log = refine(m, x, y0, 2.0**-14, 1.0, 20, 32 * 32, preset=preset)  # distortion-heavy: PSNR must rise
    phases = [r["phase"] for r in log]
    assert phases == ["soft"] * 16 + ["hard"] * 4
    temps = [r["T"] for r in log if r["phase"] == "soft"]
    soft = preset.phases[0]
    assert temps[0] == pytest.approx(soft.t0) and all(a > b for a, b in zip(temps, temps[1:]))
    assert temps[-1] > soft.t1 * 0.99 and delta is None
    j = [frame.rd_cost(m, m.theta, x, v, 2.0**-14, 1.0, 32 * 32) for v in (y0, y)]
    assert j[1] < j[0]  # the rounded result is better than where it started
    assert not any(v.requires_grad for v in y)


def test_a_three_phase_preset_runs_its_phases_in_order():
    preset = replace(PRESETS["fast"], phases=(Phase("warm", 0.5, 1.0, SOFT, 0.5, 0.3, 1.0),
                                              Phase("cool", 0.25, 0.5, SOFT, 0.3, 0.1, 0.5), Phase("hard", 0.25, 0.1, STE)))
    m = fresh_grid2_model(CFG, name="s", seed=0)
    x = pad_image(synthetic_image(16, 16, seed=2), CFG.align)
    y0 = [torch.zeros(1, 1, a, b) for a, b in CFG.grid_shapes(16, 16)]
    _, _, log = refine(m, x, y0, 2.0**-10, 1.0, 8, 16 * 16, preset=preset)
    assert [r["phase"] for r in log] == ["warm"] * 4 + ["cool"] * 2 + ["hard"] * 2
    assert log[0]["T"] == 0.5 and log[4]["T"] == 0.3 and log[-1]["T"] == 0.0


def test_soft_round_limits():
    y = torch.linspace(-2.97, 3.03, 101)  # no exact half-integers (round() breaks those ties to even)
    assert torch.allclose(soft_round(y, 1e-3), torch.round(y), atol=1e-3)
    assert torch.allclose(soft_round(y, 100.0), y, atol=1e-3)
    v = torch.tensor([0.3, 1.7], requires_grad=True)
    out = ste(v)
    out.sum().backward()
    assert out.tolist() == [0.0, 2.0] and v.grad.tolist() == [1.0, 1.0]


def test_keep_best_never_ends_worse_than_the_amortised_start(g2, monkeypatch):
    """With a huge latent learning rate the refinement wrecks the latents; the encoder keeps the start."""
    img = synthetic_image(32, 48, seed=6)
    base = encode_image(img, bpp=6.0, model=g2, effort="fast", steps=0)
    monkeypatch.setitem(refinement.PRESETS, "fast", replace(PRESETS["fast"], latent_lr=50.0))
    wrecked = encode_image(img, bpp=6.0, model=g2, effort="fast", steps=6)
    assert wrecked == base


def test_a_refinement_with_an_update_never_ends_worse_than_the_amortised_start(g2, monkeypatch):
    """A refinement that blows up (here: learning rates ~10^3 times too high on the update and the latents)
    leaves the amortised start and the shared decoder in the file, as the refinement of latents alone does."""
    img = synthetic_image(H, W, seed=5)
    start = encode_image(img, bpp=4.0, model=g2 + "+dense", effort="fast", steps=0)  # (the variant's size fit)
    assert "QPRM" not in bitstream.unpack(start)[1]
    monkeypatch.setitem(refinement.PRESETS, "fast", replace(PRESETS["fast"], delta_lr=30.0, latent_lr=30.0))
    data = encode_image(img, bpp=4.0, model=g2 + "+dense", effort="fast", steps=6)
    assert "QPRM" not in bitstream.unpack(data)[1]
    assert bitstream.unpack(data)[1]["LATS"] == bitstream.unpack(start)[1]["LATS"]


@pytest.mark.parametrize("variant,table", [("g2t+dense", "UPDATE_EFFORT"), ("g2t", "EFFORT")])
def test_default_effort_refines_longer_where_the_decoder_update_is_sent(g2, variant, table, monkeypatch):
    """`default` spends the faster step on steps only where a decoder update is refined with the latents
    (the refinements asked for are recorded, and run 2 steps to keep the test short)."""
    assert grid2codec.UPDATE_EFFORT["default"] > grid2codec.EFFORT["default"]
    asked, real = [], refinement.refine

    def short(model, x, y0, lam, step, n_steps, *a, **k):
        asked.append(n_steps)
        return real(model, x, y0, lam, step, min(n_steps, 2), *a, **k)

    monkeypatch.setattr(refinement, "refine", short)
    data = encode_image(synthetic_image(24, 40, seed=3), bpp=6.0, model=variant, effort="default")
    assert asked and set(asked) == {getattr(grid2codec, table)["default"]} and len(data) <= 6.0 * 24 * 40 / 8


def test_the_effort_picks_its_preset(g2, monkeypatch):
    seen = []
    real = refinement.refine

    def spy(*a, **k):
        seen.append(k["preset"].effort)
        return real(*a, **k)

    monkeypatch.setattr(refinement, "refine", spy)
    encode_image(synthetic_image(24, 40, seed=3), bpp=6.0, model=g2, **FAST)
    encode_image(synthetic_image(24, 40, seed=3), bpp=6.0, model=g2, effort="max", steps=2)
    assert set(seen) == {"fast", "max"}


def _frame_and_start(g2: str, lam_idx: int = 120):
    from mscncodec import models
    from mscncodec.coding.latents import lambda_value, tied_step
    from mscncodec.families.grid2.quantizer import symbols_of

    model = models.load_model(g2)
    img = synthetic_image(H, W, seed=7)
    x = pad_image(img, model.cfg.align)
    lam, step = lambda_value(lam_idx), tied_step(lam_idx)
    with torch.no_grad():
        y0 = symbols_of(frame.analysis(model, x, torch.tensor([lam])), torch.tensor([step]))
    return model, x, y0, lam, step


def test_start_candidates_keep_the_cheapest_start(g2):
    """The chosen start costs no more (rounded rate + distortion / lambda) than the amortised start at lambda
    and than every candidate tried; with no offsets the start is the amortised one, unchanged."""
    from mscncodec.coding.latents import lambda_index, lambda_value, tied_step
    from mscncodec.families.grid2.quantizer import symbols_of

    model, x, y0, lam, step = _frame_and_start(g2)
    n = H * W
    assert refinement.start_candidates(model, x, y0, lam, step, n, ()) is y0
    chosen = refinement.start_candidates(model, x, y0, lam, step, n, (-16, -8, 8, 16))
    j = frame.rd_cost(model, model.theta, x, chosen, lam, step, n)
    assert j <= frame.rd_cost(model, model.theta, x, y0, lam, step, n)
    for d in (-16, -8, 8, 16):
        i = lambda_index(lam) + d
        with torch.no_grad():
            c = symbols_of(frame.analysis(model, x, torch.tensor([lambda_value(i)])), torch.tensor([tied_step(i)]))
        assert j <= frame.rd_cost(model, model.theta, x, [v * (tied_step(i) / step) for v in c], lam, step, n) + 1e-9


def test_the_refinement_starts_from_the_chosen_candidate(g2, monkeypatch):
    """refine_chosen hands the refinement the candidate start (the preset's offsets), and none where the
    preset has no candidates."""
    model, x, y0, lam, step = _frame_and_start(g2)
    starts, real = [], refinement.refine
    sentinel = [v + 0.25 for v in y0]

    def spy(model, x, y_start, *a, **k):
        starts.append(y_start)
        return real(model, x, y_start, *a, **k)

    monkeypatch.setattr(refinement, "refine", spy)
    monkeypatch.setattr(refinement, "start_candidates", lambda *a: sentinel)
    with_c = replace(PRESETS["fast"], candidates=(-8, 8))
    refinement.refine_chosen(model, x, y0, lam, step, 2, H * W, False, False, None, with_c)
    refinement.refine_chosen(model, x, y0, lam, step, 2, H * W, False, False, None, replace(with_c, candidates=()))
    assert starts[0] is sentinel and starts[1] is y0
    assert "start: the amortised latents at lambda or at lambda index -8, +8" in str(with_c)
