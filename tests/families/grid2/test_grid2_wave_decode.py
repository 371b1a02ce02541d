"""The decoder's per-wave ARM (arm.WaveHead, latent_codec._WaveBlocks, issue 28): the same symbols as
arm_head + coder_params, wave for wave, including where its clamps bite and where it proves them no-ops."""

from __future__ import annotations

import math

import constriction
import numpy as np
import pytest
from grid2_testing import CFG, random_arm, random_symbols

from mscncodec.families.grid2 import arm as garm
from mscncodec.families.grid2 import context, latent_codec
from mscncodec.families.grid2.arm import (FixedArm, WaveHead, arm_head, coder_params, lambda_fixed, scale_index,
                                          scale_thresholds)
from mscncodec.families.grid2.config import A_BITS, A_MAX, SYMBOL_RANGE, W_BITS, W_MAX
from mscncodec.families.grid2.latent_codec import _FAMILY, _level_plan, decode_latents, encode_latents


def per_wave_reference(arm: FixedArm, data: bytes, shapes, lam_q: float, geo=context.PLANE) -> list[np.ndarray]:
    """The decoder before WaveHead: arm_head and coder_params on each wave's gathered context."""
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, np.uint32).copy())
    out = [None] * len(shapes)
    for l in range(len(shapes) - 1, -1, -1):
        shape = tuple(shapes[l])
        coarse = out[l + 1] if l + 1 < len(shapes) else None
        order, bounds, pre = _level_plan(arm, coarse, shape, l, lam_q, geo)
        zp = np.zeros(math.prod(geo.padded_shape(shape)))
        pos = context.padded_index(order, shape, geo)
        offs = context.neighbour_offsets(shape, geo)[None, :]
        for a, b in zip(bounds[:-1], bounds[1:]):
            mu, sc = coder_params(*arm_head(arm, zp[pos[a:b, None] + offs], pre[a:b]))
            zp[pos[a:b]] = dec.decode(_FAMILY, mu, sc)
        inner = context.box([0] * len(shape), shape, [p for p, _ in geo.pad])[1:]
        out[l] = zp.reshape(geo.padded_shape(shape))[inner].astype(np.int32)
    return out


def wild_arm(seed: int, h: int = CFG.arm_hidden, levels: int = CFG.levels) -> FixedArm:
    """Integer weights up to W_MAX: activations far past A_MAX, means past the symbol range."""
    rng = np.random.default_rng(seed)

    def w(*s):
        return rng.integers(-W_MAX, W_MAX + 1, s) * 2.0**-W_BITS

    def b(*s):
        return rng.integers(-(2**40), 2**40, s) * 2.0 ** -(W_BITS + A_BITS)

    return FixedArm.from_params({"arm.wn": w(h, 16), "arm.wc": w(h, 9), "arm.wl": w(h), "arm.b0": b(levels, h),
                                 "arm.w1": w(h, h), "arm.b1": b(h), "arm.w2": w(2, h), "arm.b2": b(2)})


def test_scale_thresholds_give_the_formulas_index():
    t = scale_thresholds()
    assert np.all(np.diff(t) > 0) and len(t) == garm.N_SCALES - 1
    rng = np.random.default_rng(0)
    x = np.concatenate([t - 1, t, t + 1, np.round(rng.normal(0, 2.0**20, 20000)),
                        np.round(rng.normal(0, 2.0**44, 20000)), [-(2.0**53), 2.0**53, 0.0]])
    assert np.array_equal(t.searchsorted(x, "right").astype(np.float64), scale_index(x))
    assert len(np.unique(scale_index(np.round(rng.normal(0, 2.0**20, 20000))))) > 50


@pytest.mark.parametrize("seed", range(4))
def test_wave_head_equals_arm_head(seed):
    """With every clamp, and with the clamps `clamps` says are no-ops left out, on a tame and a wild ARM."""
    rng = np.random.default_rng(seed)
    for arm, spread in ((FixedArm.from_params(random_arm(CFG, seed)), [1.0, 30.0, 300.0][seed % 3]),
                        (wild_arm(seed), 300.0)):
        head = WaveHead.of(arm)
        n = 3000
        neigh = np.clip(np.round(rng.laplace(0, spread, (n, 16))), -SYMBOL_RANGE, SYMBOL_RANGE)
        pre = np.round(rng.normal(0, 2.0**30, (n, arm.wn.shape[1])))
        want = coder_params(*arm_head(arm, neigh, pre))
        for clamps in ((True, True, True), head.clamps(WaveHead.pre(pre))):
            mu, sc = head(neigh, WaveHead.pre(pre), clamps)
            assert np.array_equal(mu, want[0]) and np.array_equal(sc, want[1])
    assert head.clamps(WaveHead.pre(pre)) == (True, True, True)  # the wild ARM needs all three
    z = np.maximum(np.floor((neigh @ arm.wn + pre) * 2.0**-W_BITS), 0)
    assert (z > A_MAX).any()  # ... and reaches the first one


@pytest.mark.parametrize("wild", [False, True])
@pytest.mark.parametrize("table_bytes", [0, 64 << 20])
@pytest.mark.parametrize("seed", range(3))
def test_blocked_wave_decode_equals_the_per_wave_reference(monkeypatch, seed, table_bytes, wild):
    """decode_latents, blocks ending mid-wave or not, the coarser grid's terms from its table or per latent,
    against the previous per-wave decoder and the encoder's symbols."""
    shapes = CFG.grid_shapes(*[(45, 70), (33, 20), (64, 64)][seed])
    arm = wild_arm(seed) if wild else FixedArm.from_params(random_arm(CFG, seed, scale=1.0))
    sym = random_symbols(shapes, seed, scale=[0.5, 3.0, 40.0][seed])
    lam_q = lambda_fixed(2.0 ** (-4 - seed))
    data = encode_latents(arm, sym, lam_q)
    monkeypatch.setattr(latent_codec, "COARSE_TABLE_BYTES", table_bytes)
    ref = per_wave_reference(arm, data, shapes, lam_q)
    assert all(np.array_equal(a, b) for a, b in zip(sym, ref))
    for block in (97, 1 << 16):
        monkeypatch.setattr(latent_codec, "WAVE_BLOCK", block)
        out = decode_latents(arm, data, shapes, lam_q)
        assert all(np.array_equal(a, b) and b.dtype == np.int32 for a, b in zip(sym, out))
