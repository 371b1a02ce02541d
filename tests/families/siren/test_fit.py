"""Batched SIREN, the Meta-SGD inner loop, encode-time refinement, hard-concrete gates."""

from __future__ import annotations

import math

import pytest
import torch

from mscncodec.families.siren import network as siren
from mscncodec.families.siren.fit import initial_state, inner_loop, mse_per_group, refine, group_loss
from mscncodec.families.siren.patches import grid_coords
from mscncodec.families.siren.model import fresh_model
from mscncodec.families.siren.network import SirenConfig
from mscncodec.coding.sparsity import closed_threshold, deterministic_gate, prob_open, sample_gate

G, PATCH = 4, 6


def _delta(cfg: SirenConfig, g: int, seed: int = 0, scale: float = 0.05) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(g, *s, generator=gen) * scale for k, s in cfg.update_shapes().items()}


@pytest.mark.parametrize("mode", ["full", "shift"])
def test_update_shapes(mode):
    cfg = SirenConfig(width=8, depth=3, mode=mode)
    shapes = cfg.update_shapes()
    if mode == "full":
        assert shapes == {"w0": (2, 8), "b0": (8,), "w1": (8, 8), "b1": (8,), "w2": (8, 3), "b2": (3,)}
    else:
        assert shapes == {"b0": (8,), "b1": (8,), "b2": (3,)}
    assert siren.macs_per_sample(cfg) == 2 * 8 + 8 * 8 + 8 * 3


@pytest.mark.parametrize("mode", ["full", "shift"])
def test_batched_forward_shape_and_group_independence(mode):
    cfg = SirenConfig(width=8, depth=4, mode=mode)
    theta = siren.init_params(cfg, seed=1)
    coords = grid_coords(PATCH)
    delta = _delta(cfg, G)
    out = siren.forward(cfg, theta, delta, coords, G)
    assert out.shape == (G, PATCH * PATCH, 3)
    assert torch.isfinite(out).all()

    changed = {k: v.clone() for k, v in delta.items()}
    for v in changed.values():
        v[0] += 0.3
    out2 = siren.forward(cfg, theta, changed, coords, G)
    assert not torch.allclose(out2[0], out[0])
    torch.testing.assert_close(out2[1:], out[1:], rtol=0, atol=1e-6)

    # each group evaluated alone gives the same result as in the batch
    for g in range(G):
        alone = siren.forward(cfg, theta, {k: v[g : g + 1] for k, v in delta.items()}, coords, 1)
        torch.testing.assert_close(alone[0], out[g], rtol=1e-5, atol=1e-5)


def test_zero_update_equals_shared_network_and_per_group_coords():
    cfg = SirenConfig(width=8, depth=3, mode="full")
    theta = siren.init_params(cfg, seed=2)
    coords = grid_coords(PATCH)
    zero = {k: torch.zeros(G, *s) for k, s in cfg.update_shapes().items()}
    base = siren.forward(cfg, theta, {}, coords, G)
    assert base.shape == (G, PATCH * PATCH, 3)
    torch.testing.assert_close(siren.forward(cfg, theta, zero, coords, G), base)
    per_group = coords.unsqueeze(0).expand(G, *coords.shape)
    torch.testing.assert_close(siren.forward(cfg, theta, zero, per_group, G), base)


def test_init_is_deterministic_and_seeded():
    cfg = SirenConfig(width=8, depth=3)
    a, b, c = siren.init_params(cfg, 0), siren.init_params(cfg, 0), siren.init_params(cfg, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["w1"], c["w1"])
    assert float(a["w0"].abs().max()) <= 1 / cfg.in_dim
    assert float(a["w1"].abs().max()) <= math.sqrt(6 / cfg.width) / cfg.w0


def test_config_validation():
    with pytest.raises(ValueError):
        SirenConfig(mode="diagonal")
    with pytest.raises(ValueError):
        SirenConfig(depth=1)


def _gated_model(mode: str = "full"):
    cfg = SirenConfig(width=8, depth=3, mode=mode)
    m = fresh_model(cfg, name="test-gated", patch=PATCH, gated=True, inner_steps=2, lam=0.01)
    return m


@pytest.mark.parametrize("mode", ["full", "shift"])
def test_inner_loop_second_order_gradients_reach_meta_parameters(mode):
    torch.manual_seed(0)
    m = _gated_model(mode)
    for group in (m.theta, m.log_alpha, m.lr_delta, m.lr_alpha):
        for t in group.values():
            t.requires_grad_(True)
    coords = grid_coords(PATCH)
    target = torch.rand(3, PATCH * PATCH, 3) * 2 - 1
    state = inner_loop(m, coords, target, create_graph=True)
    loss, dist = group_loss(m, state, coords, target, m.lam)
    assert loss.shape == (3,) and dist.shape == (3,)
    loss.mean().backward()
    for name, group in (("theta", m.theta), ("log_alpha", m.log_alpha), ("lr_delta", m.lr_delta)):
        grads = [t.grad for t in group.values()]
        assert all(g is not None for g in grads), name
        assert all(torch.isfinite(g).all() for g in grads), name
        assert any(float(g.abs().sum()) > 0 for g in grads), name


def test_inner_loop_first_order_returns_fresh_leaves():
    m = _gated_model()
    coords = grid_coords(PATCH)
    target = torch.rand(2, PATCH * PATCH, 3) * 2 - 1
    state = inner_loop(m, coords, target, steps=2)
    for d in (*state.delta.values(), *state.log_alpha.values()):
        assert d.requires_grad and d.grad_fn is None
        assert d.shape[0] == 2
    assert any(float(d.detach().abs().sum()) > 0 for d in state.delta.values())  # the steps moved delta


def test_refine_reduces_distortion():
    cfg = SirenConfig(width=16, depth=3, mode="full")
    m = fresh_model(cfg, name="test-ungated", patch=PATCH, gated=False)
    coords = grid_coords(PATCH)
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(2, PATCH * PATCH, 3, generator=gen) * 2 - 1
    state = initial_state(m, 2)
    with torch.no_grad():
        before = mse_per_group(siren.forward(cfg, m.theta, state.effective(m, False), coords, 2), target)
    state = refine(m, coords, target, state, steps=30, lam=0.0, lr=1e-2)
    with torch.no_grad():
        after = mse_per_group(siren.forward(cfg, m.theta, state.effective(m, False), coords, 2), target)
    assert (after < 0.7 * before).all(), (before, after)


def test_expected_open_counts_gates():
    m = _gated_model()
    state = initial_state(m, 5)
    n_entries = sum(math.prod(s) for s in m.cfg.update_shapes().values())
    eo = state.expected_open(m)
    assert eo.shape == (5,)
    expected = n_entries * float(prob_open(torch.tensor(2.0)))  # fresh_model's uniform initial logit
    torch.testing.assert_close(eo, torch.full((5,), expected))


# ------------------------------------------------------------------ hard-concrete gates


def test_deterministic_gate_exact_zero_and_one():
    t = closed_threshold()
    assert t == pytest.approx(math.log(0.1 / 1.1))
    below = torch.tensor([t - 1e-3, t - 0.5, -5.0, -50.0])
    assert (deterministic_gate(below) == 0).all()
    above = torch.tensor([-t + 1e-3, 4.0, 10.0, 50.0])  # closes at t, fully open from -t up
    assert (deterministic_gate(above) == 1).all()
    mid = deterministic_gate(torch.tensor([0.0]))
    assert 0 < float(mid) < 1 and float(mid) == pytest.approx(0.5)


def test_sample_gate_range_and_extremes():
    torch.manual_seed(0)
    la = torch.linspace(-6, 6, 2000)
    z = sample_gate(la)
    assert z.shape == la.shape
    assert float(z.min()) >= 0.0 and float(z.max()) <= 1.0
    assert (z == 0).any() and (z == 1).any()  # exact zeros and ones happen (hard concrete)
    assert float(sample_gate(torch.full((500,), -12.0)).max()) == 0.0
    assert float(sample_gate(torch.full((500,), 12.0)).min()) == 1.0


def test_sample_gate_is_differentiable():
    la = torch.zeros(100, requires_grad=True)
    torch.manual_seed(1)
    sample_gate(la).sum().backward()
    assert la.grad is not None and torch.isfinite(la.grad).all() and float(la.grad.abs().sum()) > 0


def test_prob_open_monotone_and_bounded():
    la = torch.linspace(-15, 15, 301)
    p = prob_open(la)
    assert (p[1:] >= p[:-1]).all() and (p[1:] > p[:-1]).any()
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    # P(z != 0) is 1/2 where the expected-L0 shift puts it, and matches Monte Carlo of sample_gate
    torch.manual_seed(2)
    for x in (-1.0, 0.5, 2.0):
        mc = float((sample_gate(torch.full((40000,), x)) > 0).float().mean())
        assert mc == pytest.approx(float(prob_open(torch.tensor(x))), abs=0.01)
