"""The latent-grid networks (mscncodec/grid.py): rate model, context passes, shapes, cost.

Everything here runs on tiny configs and a handful of latents (well under a second each).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mscncodec.coding import latents as lt
from mscncodec.families.grid import network as grid

CFG = grid.GridConfig(levels=3, hidden=(8,), ctx_hidden=4, analysis=4)


def _laplace_cdf(x: torch.Tensor, b: float) -> torch.Tensor:
    """F(x) of a zero-mean Laplace with scale b, float64."""
    return torch.where(x < 0, 0.5 * torch.exp(x / b), 1.0 - 0.5 * torch.exp(-x / b))


def _analytic_bits(z: torch.Tensor, mu: float, b: float) -> torch.Tensor:
    mass = _laplace_cdf(z - mu + 0.5, b) - _laplace_cdf(z - mu - 0.5, b)
    return -torch.log2(mass.clamp(min=lt.MIN_LIKELIHOOD))


def _latents(cfg: grid.GridConfig, b: int, h: int, w: int, seed: int, scale: float = 3.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.round(torch.randn(b, 1, h // cfg.scale(l), w // cfg.scale(l), generator=g) * scale)
            for l in range(cfg.levels)]


def _per_sample(p: dict[str, torch.Tensor], b: int, seed: int) -> dict[str, torch.Tensor]:
    """theta + a random per-sample delta (leading batch axis), as the inner loop produces."""
    g = torch.Generator().manual_seed(seed)
    return grid.effective(p, {k: 0.05 * torch.randn(b, *v.shape, generator=g) for k, v in p.items()})


# ---------------------------------------------------------------- laplace_bits

Z = torch.tensor([0.0, 0.2, -0.3, 0.49, 0.5, 0.51, -0.5, 1.0, -2.0, 3.7, 12.0, -40.0, 255.0], dtype=torch.float64)


@pytest.mark.parametrize("mu", [0.0, 0.25, -1.7, 3.0625])
@pytest.mark.parametrize("scale", [0.04, 0.3, 1.0, 6.0, 64.0])
def test_laplace_bits_is_minus_log2_of_the_unit_bin_mass(mu, scale):
    log_scale = torch.full_like(Z, math.log(scale))
    got = lt.laplace_bits(Z, torch.tensor(mu, dtype=torch.float64), log_scale)
    want = _analytic_bits(Z, mu, scale)
    assert got.shape == Z.shape
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_laplace_bits_known_values_and_floor():
    one = torch.tensor([0.0], dtype=torch.float64)
    # unit scale, centred bin: P = 1 - exp(-1/2)
    b0 = lt.laplace_bits(one, one * 0, one * 0)
    assert float(b0) == pytest.approx(-math.log2(1 - math.exp(-0.5)), rel=1e-12)
    # bin [0.5, 1.5] on one side: P = (exp(-1/2) - exp(-3/2)) / 2
    b1 = lt.laplace_bits(one + 1, one * 0, one * 0)
    assert float(b1) == pytest.approx(-math.log2(0.5 * (math.exp(-0.5) - math.exp(-1.5))), rel=1e-12)
    # symmetric about the mean
    zs = torch.tensor([1.3, 2.0, 7.0], dtype=torch.float64)
    torch.testing.assert_close(lt.laplace_bits(0.4 + zs, torch.tensor(0.4, dtype=torch.float64), zs * 0),
                               lt.laplace_bits(0.4 - zs, torch.tensor(0.4, dtype=torch.float64), zs * 0))
    # far tails are charged exactly the floor, -log2(MIN_LIKELIHOOD) bits
    far = torch.tensor([60.0, -200.0, 255.0])
    floor = lt.laplace_bits(far, torch.zeros(3), torch.full((3,), math.log(0.5)))
    torch.testing.assert_close(floor, torch.full((3,), -math.log2(lt.MIN_LIKELIHOOD)))


def test_laplace_bits_cost_grows_away_from_the_mean_and_with_certainty():
    z = torch.arange(0, 12, dtype=torch.float64)
    bits = lt.laplace_bits(z, torch.zeros(()), torch.zeros(()))
    assert (bits.diff() > 0).all()  # unimodal: each step further costs more
    # the mean itself is cheaper under a narrower model, a far value is dearer
    narrow, wide = math.log(0.2), math.log(4.0)
    assert lt.laplace_bits(torch.zeros(1), torch.zeros(1), torch.tensor([narrow])) < \
        lt.laplace_bits(torch.zeros(1), torch.zeros(1), torch.tensor([wide]))
    assert lt.laplace_bits(torch.tensor([5.0]), torch.zeros(1), torch.tensor([narrow])) > \
        lt.laplace_bits(torch.tensor([5.0]), torch.zeros(1), torch.tensor([wide]))


def test_laplace_bits_gradients_are_finite():
    """float32 as in training: at the mean, on the bin edge, in the tails, at the extreme scales, with noise."""
    g = torch.Generator().manual_seed(0)
    base = torch.tensor([0.0, 0.5, -0.5, 0.4999, 1.0, -3.0, 30.0, -255.0, 255.0])
    z = torch.cat([base, base + torch.empty(9).uniform_(-0.5, 0.5, generator=g)]).requires_grad_(True)
    mu = torch.full_like(z.detach(), 0.125).requires_grad_(True)
    for s in (grid.SCALE_MIN, 0.5, 1.0, grid.SCALE_MAX):
        ls = torch.full_like(z.detach(), math.log(s)).requires_grad_(True)
        bits = lt.laplace_bits(z, mu, ls)
        assert torch.isfinite(bits).all()
        gz, gmu, gls = torch.autograd.grad(bits.sum(), [z, mu, ls])
        for gr in (gz, gmu, gls):
            assert torch.isfinite(gr).all(), (s, gr)
        # a value above the mean (outside its bin, not floored) gets pushed back towards it
        i = 4  # z = 1.0, mu = 0.125
        if bits[i] < -math.log2(lt.MIN_LIKELIHOOD) - 1e-3:
            assert gz[i] > 0 and gmu[i] < 0


@pytest.mark.parametrize("step", [1.0, 0.5, 2.0])
def test_rate_bits_sums_laplace_bits_over_levels_per_sample(step):
    """rate_bits = sum over grids of the bits of each latent's bin of width `step` (per sample)."""
    p = grid.init_params(CFG, seed=1, analysis=False)
    lat = [z * step for z in _latents(CFG, 2, 2 * CFG.align, 3 * CFG.align, seed=2)]
    lam = torch.tensor([2.0**-8, 2.0**-11])
    steps = torch.full((2,), step)
    total = grid.rate_bits(CFG, p, lat, lam, steps)
    assert total.shape == (2,)
    want = torch.zeros(2)
    for l in range(CFG.levels):
        mu, ls, _ = grid.latent_params(CFG, p, lat, l, lam)
        want += lt.laplace_bits(lat[l] / step, mu / step, ls - math.log(step)).sum(dim=(1, 2, 3))
    torch.testing.assert_close(total, want)
    zeros = [torch.zeros_like(z) for z in lat]
    assert (grid.rate_bits(CFG, p, zeros, lam, steps) < total).all()  # all-zero latents are cheap under the init
    # each sample is costed on its own
    torch.testing.assert_close(grid.rate_bits(CFG, p, [z[1:] for z in lat], lam[1:], steps[1:]), total[1:])


def test_step_for_grows_like_the_square_root_of_lambda():
    lam = torch.tensor([2.0**-9.5, 2.0**-7.5, 2.0**-11.5, 2.0**-13.5])
    torch.testing.assert_close(lt.step_for(lam), torch.tensor([1.0, 2.0, 0.5, 0.25]))


# ---------------------------------------------------------------- checkerboard / context passes

def test_checkerboard_anchors():
    m = grid.checkerboard(3, 5)
    assert m.shape == (3, 5)
    assert m[0, 0] == 1 and m[0, 1] == 0 and m[1, 0] == 0 and m[1, 1] == 1
    assert int(m.sum()) == 8  # ceil(15 / 2)
    # every non-anchor's 4-neighbours are anchors
    pad = torch.nn.functional.pad(m, (1, 1, 1, 1), value=1.0)
    neigh = pad[:-2, 1:-1] * pad[2:, 1:-1] * pad[1:-1, :-2] * pad[1:-1, 2:]
    assert (neigh[m == 0] == 1).all()


@pytest.mark.parametrize("batched", [False, True], ids=["shared", "per-sample"])
@pytest.mark.parametrize("hw", [(2 * CFG.align, 3 * CFG.align), (3 * CFG.align, CFG.align)])
def test_latent_params_matches_two_context_passes(batched, hw):
    """The fused training-time model equals the decoder's two checkerboard passes."""
    p = grid.init_params(CFG, seed=5, analysis=False)
    if batched:
        p = _per_sample(p, 2, seed=6)
    lat = _latents(CFG, 2, *hw, seed=7)
    lam = torch.tensor([2.0**-7, 2.0**-12])
    lf = lt.lambda_feature(lam)
    for level in range(CFG.levels):
        mu, ls, mask = grid.latent_params(CFG, p, lat, level, lam)
        z = lat[level]
        assert mu.shape == ls.shape == z.shape
        torch.testing.assert_close(mask, grid.checkerboard(*z.shape[2:]))
        coarse = grid.coarse_context(lat, level)
        mu_a, ls_a = grid.context_pass(CFG, p, level, coarse, torch.zeros_like(z), lf)
        mu_n, ls_n = grid.context_pass(CFG, p, level, coarse, z * mask, lf)
        anchor = mask.bool()
        torch.testing.assert_close(mu, torch.where(anchor, mu_a, mu_n), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ls, torch.where(anchor, ls_a, ls_n), rtol=1e-5, atol=1e-5)
        # the non-anchor pass really depends on the anchors (else the test above proves little)
        assert not torch.allclose(mu_a[:, :, ~anchor], mu_n[:, :, ~anchor])
        lo, hi = math.log(grid.SCALE_MIN), math.log(grid.SCALE_MAX)
        assert ls.min() >= lo - 1e-6 and ls.max() <= hi + 1e-6


def test_anchor_parameters_ignore_the_grids_own_values():
    """Anchors are decoded first: their model may depend on coarser grids only."""
    p = grid.init_params(CFG, seed=8, analysis=False)
    lat = _latents(CFG, 1, 2 * CFG.align, 2 * CFG.align, seed=9)
    other = [lat[0] + 5.0] + lat[1:]
    lam = torch.tensor([2.0**-9])
    mu, ls, mask = grid.latent_params(CFG, p, lat, 0, lam)
    mu2, ls2, _ = grid.latent_params(CFG, p, other, 0, lam)
    a = mask.bool()
    torch.testing.assert_close(mu[..., a], mu2[..., a])
    torch.testing.assert_close(ls[..., a], ls2[..., a])
    assert not torch.allclose(mu[..., ~a], mu2[..., ~a])
    # the coarsest grid has no coarser context: changing a finer grid does not move it
    top = CFG.levels - 1
    mu_t, _, _ = grid.latent_params(CFG, p, lat, top, lam)
    mu_t2, _, _ = grid.latent_params(CFG, p, other, top, lam)
    torch.testing.assert_close(mu_t, mu_t2)


@pytest.mark.parametrize("batched", [False, True], ids=["shared", "per-sample"])
def test_context_pass_keep_returns_the_kept_positions(batched):
    p = grid.init_params(CFG, seed=10, analysis=False)
    if batched:
        p = _per_sample(p, 2, seed=11)
    lat = _latents(CFG, 2, 3 * CFG.align, 5 * CFG.align, seed=12)
    lf = lt.lambda_feature(torch.tensor([2.0**-8, 2.0**-10]))
    level = 1
    z = lat[level]
    mask = grid.checkerboard(*z.shape[2:])
    coarse = grid.coarse_context(lat, level)
    mu, ls = grid.context_pass(CFG, p, level, coarse, z * mask, lf)
    rng = np.random.default_rng(0)
    for keep in (~mask.bool(), mask.bool(), torch.from_numpy(rng.random(tuple(z.shape[2:])) < 0.3),
                 torch.ones(z.shape[2:], dtype=torch.bool)):
        km, kl = grid.context_pass(CFG, p, level, coarse, z * mask, lf, keep=keep)
        n = int(keep.sum())
        assert km.shape == kl.shape == (2, n)
        torch.testing.assert_close(km, mu[:, 0][:, keep], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(kl, ls[:, 0][:, keep], rtol=1e-5, atol=1e-5)


def test_context_pass_with_an_empty_keep_mask():
    p = grid.init_params(CFG, seed=0, analysis=False)
    z = torch.zeros(1, 1, 1, 1)
    keep = ~grid.checkerboard(1, 1).bool()  # a 1x1 grid has one anchor and no other position
    mu, ls = grid.context_pass(CFG, p, 2, z, z, torch.zeros(1), keep=keep)
    assert mu.shape == ls.shape == (1, 0)


# ---------------------------------------------------------------- networks: shapes, init, cost

@pytest.mark.parametrize("cfg", [CFG, grid.GridConfig(levels=3, first=0, hidden=(8,), ctx_hidden=4, analysis=4),
                                 grid.GridConfig(levels=2, first=2, hidden=(6, 5), conv3=False, ctx_hidden=3, analysis=3)],
                         ids=["L3", "L3-full-res", "L2-quarter-noconv"])
def test_analysis_and_synthesis_shapes_for_a_batch_of_crops(cfg):
    p = grid.init_params(cfg, seed=0)
    h, w = 2 * cfg.align, 3 * cfg.align
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    lam = torch.tensor([2.0**-7, 2.0**-12])
    lat = grid.analysis(cfg, p, x, lam)
    assert [cfg.scale(l) for l in range(cfg.levels)] == [2 ** (cfg.first + l) for l in range(cfg.levels)]
    assert [tuple(z.shape) for z in lat] == [(2, 1, h // cfg.scale(l), w // cfg.scale(l)) for l in range(cfg.levels)]
    assert all(torch.isfinite(z).all() for z in lat)
    # lambda conditions the prediction
    lat2 = grid.analysis(cfg, p, x, lam.flip(0))
    assert not torch.allclose(lat[0], lat2[0])
    dec = {k: v for k, v in p.items() if not k.startswith("ana.")}
    out = grid.synthesis(cfg, dec, lat)
    assert out.shape == (2, 3, h, w) and torch.isfinite(out).all()
    out_b = grid.synthesis(cfg, _per_sample(dec, 2, seed=1), lat)  # per-sample (grouped) weights
    assert out_b.shape == (2, 3, h, w) and not torch.allclose(out, out_b)
    # per-sample weights equal to theta give exactly the shared result
    same = grid.effective(dec, {k: torch.zeros(2, *v.shape) for k, v in dec.items()})
    torch.testing.assert_close(grid.synthesis(cfg, same, lat), out, rtol=1e-5, atol=1e-5)
    # each sample is independent of the others
    torch.testing.assert_close(grid.synthesis(cfg, dec, [z[1:] for z in lat]), out[1:], rtol=1e-5, atol=1e-5)


def test_init_params_is_seeded_and_complete():
    a, b, c = grid.init_params(CFG, seed=3), grid.init_params(CFG, seed=3), grid.init_params(CFG, seed=4)
    shapes = {**CFG.update_shapes(), **CFG.analysis_shapes()}
    assert set(a) == set(shapes)
    assert all(tuple(a[k].shape) == s and a[k].dtype == torch.float32 for k, s in shapes.items())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    dec = grid.init_params(CFG, seed=3, analysis=False)
    assert set(dec) == set(CFG.update_shapes())
    assert all(torch.equal(dec[k], a[k]) for k in dec)  # the decoder-side part does not depend on `analysis`
    torch.testing.assert_close(a["ctx.lvl"][:, 1], torch.full((CFG.levels,), math.log(0.5)))
    assert torch.all(a["syn.cb"] == 0)


def test_config_dict_round_trip_and_alignment():
    cfg = grid.GridConfig(levels=5, first=0, hidden=(12, 7), conv3=False, ctx_hidden=6, analysis=5)
    d = cfg.to_dict()
    assert d["hidden"] == [12, 7]
    assert grid.GridConfig.from_dict(d) == cfg
    assert cfg.align == 2 ** (cfg.first + 4) and CFG.align == 2 ** (CFG.first + 2)
    assert grid.GridConfig(levels=3, first=0).align == 4 and grid.GridConfig(levels=3, first=2).align == 16
    assert set(cfg.analysis_shapes()) & set(cfg.update_shapes()) == set()
    assert cfg.synthesis_shapes()["syn.w0"] == (12, 5, 1, 1) and "syn.cw" not in cfg.synthesis_shapes()


def test_macs_per_pixel_positive_and_grows_with_width():
    base = grid.GridConfig(levels=3, hidden=(8,), ctx_hidden=4)
    assert base.macs_per_pixel() > 0
    widths = [grid.GridConfig(levels=3, hidden=(w,), ctx_hidden=4).macs_per_pixel() for w in (4, 8, 16, 32)]
    assert widths == sorted(widths) and len(set(widths)) == 4
    assert grid.GridConfig(levels=3, hidden=(8, 8), ctx_hidden=4).macs_per_pixel() > base.macs_per_pixel()
    assert grid.GridConfig(levels=3, hidden=(8,), ctx_hidden=8).macs_per_pixel() > base.macs_per_pixel()
    assert grid.GridConfig(levels=4, hidden=(8,), ctx_hidden=4).macs_per_pixel() > base.macs_per_pixel()
    # a full-resolution finest grid costs more context-model work per pixel than a half-resolution one
    assert grid.GridConfig(levels=3, first=0, hidden=(8,), ctx_hidden=4).macs_per_pixel() > base.macs_per_pixel()
    no_conv = grid.GridConfig(levels=3, hidden=(8,), conv3=False, ctx_hidden=4)
    assert base.macs_per_pixel() - no_conv.macs_per_pixel() == pytest.approx(81)  # a 3x3 conv, 3 -> 3 channels


# ---------------------------------------------------------------- lambda table, snapping

def test_lambda_index_inverts_lambda_value_and_clamps():
    for i in range(256):
        assert lt.lambda_index(lt.lambda_value(i)) == i
    assert lt.lambda_value(0) == pytest.approx(2.0**lt.LOG2_LAMBDA_MIN)
    assert lt.lambda_index(1e-30) == 0 and lt.lambda_index(1e6) == 255
    vals = [lt.lambda_value(i) for i in range(256)]
    assert vals == sorted(vals)


@pytest.mark.parametrize("step", [1.0, 0.5, 1.4142135623730951])
def test_snap_params_grids(step):
    rng = np.random.default_rng(0)
    mu = rng.normal(0, 5, 200)
    ls = rng.uniform(-6, 6, 200)
    m, s = grid.snap_params(mu, ls, step)
    assert m.dtype == np.float64 and s.dtype == np.float64
    np.testing.assert_allclose(m * step / grid.MEAN_GRID, np.round(m * step / grid.MEAN_GRID), atol=1e-9)
    assert np.all(np.abs(m * step - mu) <= grid.MEAN_GRID / 2 + 1e-12)
    assert np.all(s * step >= grid.SCALE_MIN * (1 - 1e-12)) and np.all(s * step <= grid.SCALE_MAX * (1 + 1e-12))
    assert len(np.unique(np.round(s * step, 12))) <= grid.N_SCALES
    m2, s2 = grid.snap_params(m * step, np.log(s * step), step)  # idempotent
    np.testing.assert_allclose(m2, m, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s2, s, rtol=1e-12)
