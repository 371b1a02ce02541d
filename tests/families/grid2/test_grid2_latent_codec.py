"""families/grid2/arm.py and latent_codec.py: the exact ARM, its float twin, and the LatentCodec that owns both
(compress / decompress bit-exactly on odd sizes, chunked or whole, and with the geometry as a parameter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from grid2_testing import CFG, random_arm, random_symbols

from mscncodec.errors import BitstreamError
from mscncodec.families.grid2 import arm as garm
from mscncodec.families.grid2 import context, latent_codec
from mscncodec.families.grid2.arm import FixedArm, arm_fixed, coarse_fixed, coder_params, lambda_fixed
from mscncodec.families.grid2.context import CLAMP, PERIODIC, Geometry
from mscncodec.families.grid2.latent_codec import LatentCodec, decode_latents, encode_latents


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", [(37, 53), (1, 1), (64, 7), (5, 130)])
def test_latent_codec_round_trips_bit_exactly_on_odd_sizes(seed, size):
    shapes = CFG.grid_shapes(*size)
    codec = LatentCodec(CFG, random_arm(CFG, seed), 2.0 ** (-3 - seed))
    sym = random_symbols(shapes, seed, scale=[0.3, 2.0, 20.0][seed % 3])
    data = codec.compress(sym)
    out = codec.decompress(data, shapes)
    assert all(np.array_equal(a, b) and b.dtype == np.int32 for a, b in zip(sym, out))
    # the same bytes as the module's coder functions with the fixed ARM
    assert data == encode_latents(FixedArm.from_params(codec.params), sym, lambda_fixed(codec.lam))


def test_latent_codec_estimates_bits_with_its_float_twin():
    """bits() is the float ARM's rate (what training and refinement minimise): the real coded size follows it."""
    p = random_arm(CFG, 2, scale=0.1)
    shapes = CFG.grid_shapes(64, 64)
    sym = random_symbols(shapes, 1, 1.5)
    ctx = [torch.from_numpy(s.astype(np.float32))[None, None] for s in sym]
    est = float(LatentCodec(CFG, p, torch.tensor([2.0**-8])).bits(ctx, ctx))
    real = 8 * len(LatentCodec(CFG, p, 2.0**-8).compress(sym))
    assert real == pytest.approx(est, rel=0.05, abs=64)
    mu, ls = LatentCodec(CFG, p, 2.0**-8).forward(ctx, 0)
    assert mu.shape == ls.shape == (1, 1, 64, 64)
    with pytest.raises(TypeError):  # the coder needs the table's float lambda, not a float32 copy
        LatentCodec(CFG, p, torch.tensor([2.0**-8])).compress(sym)


def test_corrupt_latents_are_bitstream_errors():
    shapes = CFG.grid_shapes(9, 9)
    codec = LatentCodec(CFG, random_arm(CFG, 1), 2.0**-6)
    with pytest.raises(BitstreamError, match="multiple of 4"):
        codec.decompress(b"abc", shapes)


@pytest.mark.parametrize("boundary", [(CLAMP, PERIODIC), (PERIODIC, PERIODIC)])
def test_a_periodic_axis_round_trips(boundary):
    """The coder with the coarser grid wrapped on a periodic axis: one-pass and wave-by-wave agree."""
    geo = Geometry(boundary=boundary)
    arm = FixedArm.from_params(random_arm(CFG, 7, scale=1.0))
    shapes = CFG.grid_shapes(16, 24)
    sym = random_symbols(shapes, 7, 3.0)
    data = encode_latents(arm, sym, 41.0, geo)
    assert data != encode_latents(arm, sym, 41.0)  # the wrapped context changes the probabilities
    assert all(np.array_equal(a, b) for a, b in zip(sym, decode_latents(arm, data, shapes, 41.0, geo)))


def test_three_dimensional_grids_round_trip():
    """The wavefront coder over 3-D grids (a geometry with 6 neighbours and a 2x2x2 coarse block): the
    decoder's waves read only what is decoded, or the symbols would not come back."""
    geo = Geometry(boundary=(CLAMP, CLAMP, PERIODIC),
                   neighbours=((0, 0, -1), (0, -1, 0), (0, -1, 1), (-1, 0, 0), (-1, 1, 1), (0, -1, -1)),
                   coarse=tuple((a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)), slopes=(4, 2, 1))
    rng = np.random.default_rng(5)
    h = 5
    arm = FixedArm(wn=np.round(rng.normal(0, 40, (6, h))) * 2.0**8, wc=np.round(rng.normal(0, 40, (8, h))),
                   wl=np.round(rng.normal(0, 40, h)), b0=np.round(rng.normal(0, 2**14, (2, h))),
                   w1=np.round(rng.normal(0, 60, (h, h))), b1=np.round(rng.normal(0, 2**14, h)),
                   w2=np.round(rng.normal(0, 60, (h, 2))), b2=np.round(rng.normal(0, 2**14, 2)))
    shapes = [(4, 6, 8), (2, 3, 4)]
    sym = [np.clip(np.round(rng.laplace(0, 4, s)), -255, 255).astype(np.int32) for s in shapes]
    data = encode_latents(arm, sym, 30.0, geo)
    out = decode_latents(arm, data, shapes, 30.0, geo)
    assert all(np.array_equal(a, b) for a, b in zip(sym, out))


def test_fixed_point_arm_is_the_same_in_one_pass_and_wave_by_wave():
    """The encoder's one-pass probabilities equal the decoder's per-wave ones, index for index."""
    rng = np.random.default_rng(3)
    for seed in range(20):
        h, w = rng.integers(1, 40, 2)
        arm = FixedArm.from_params(random_arm(CFG, seed, scale=2.0))
        sym = np.clip(np.round(rng.laplace(0, 8, (h, w))), -255, 255)
        coarse = np.clip(np.round(rng.laplace(0, 8, ((h + 1) // 2, (w + 1) // 2))), -255, 255)
        ct = coarse_fixed(arm, coarse, (h, w))
        m_all, s_all = arm_fixed(arm, 1, context.all_neighbours(sym), ct, 37.0)
        zp = context.zero_padded(sym).reshape(-1)
        pidx, offs = context.padded_index(np.arange(h * w), (h, w)), context.neighbour_offsets((h, w))
        for wave in context.wave_order((h, w)):
            m, s = arm_fixed(arm, 1, zp[pidx[wave][:, None] + offs], ct[wave], 37.0)
            assert np.array_equal(m, m_all[wave]) and np.array_equal(s, s_all[wave])


def test_float_arm_matches_the_fixed_point_one():
    """Training's float ARM and the coder's integer ARM differ only by the fixed-point roundings."""
    p = random_arm(CFG, 5, scale=0.3)
    shapes = CFG.grid_shapes(32, 48)
    sym = random_symbols(shapes, 5, 3.0)
    lam = 2.0**-8
    ctx = [torch.from_numpy(s.astype(np.float32))[None, None] for s in sym]
    mu, ls = garm.arm_float(CFG, p, ctx, 0, torch.tensor([lam]))
    arm = FixedArm.from_params(p)
    mi, si = arm_fixed(arm, 0, context.all_neighbours(sym[0]), coarse_fixed(arm, sym[1], shapes[0]), lambda_fixed(lam))
    m_q, s_q = coder_params(mi, si)
    mu = mu.numpy().reshape(-1)
    d = np.abs(m_q - mu)  # the 1/16 mean grid, plus rare ReLU units that sit at zero and flip
    assert np.quantile(d, 0.99) < 0.1 and d.max() < 0.5
    assert np.quantile(np.abs(np.log(s_q) - ls.numpy().reshape(-1)), 0.99) < 0.08


def test_bulk_and_small_arm_paths_agree_exactly(monkeypatch):
    """The encoder's bulk path (torch) and the decoder's per-wave path (numpy) give identical indices."""
    rng = np.random.default_rng(11)
    arm = FixedArm.from_params(random_arm(CFG, 4, scale=1.0))
    n = 3 * garm.BULK
    neigh = np.clip(np.round(rng.laplace(0, 30, (n, 16))), -255, 255)
    ct = np.round(rng.normal(0, 2.0**20, (n, CFG.arm_hidden)))
    for lvl in range(CFG.levels):
        m1, s1 = arm_fixed(arm, lvl, neigh, ct, 53.0)
        monkeypatch.setattr(garm, "BULK", 10 * n)  # force the numpy path
        m2, s2 = arm_fixed(arm, lvl, neigh, ct, 53.0)
        monkeypatch.setattr(garm, "BULK", 4096)
        assert np.array_equal(m1, m2) and np.array_equal(s1, s2)
        assert len(np.unique(s1)) > 10  # the test exercises many scales, not a saturated corner


@pytest.mark.parametrize("table_bytes", [0, 64 << 20])
@pytest.mark.parametrize("seed", range(3))
def test_chunked_arm_gives_the_same_stream_and_decodes(monkeypatch, seed, table_bytes):
    """Packing and unpacking a few thousand latents at a time is exact: the same bytes as one pass, with the
    coarser grid's terms gathered from its table (table_bytes > 0) or computed per latent (0)."""
    shapes = CFG.grid_shapes(45, 70)
    arm = FixedArm.from_params(random_arm(CFG, seed, scale=1.0))
    rng = np.random.default_rng(seed)
    sym = [np.clip(np.round(rng.laplace(0, 3.0, s)), -255, 255).astype(np.int32) for s in shapes]
    lam_q = lambda_fixed(2.0**-5)
    whole = encode_latents(arm, sym, lam_q)
    monkeypatch.setattr(latent_codec, "ARM_CHUNK", 97)  # every grid chunked, blocks ending mid-wave
    monkeypatch.setattr(latent_codec, "COARSE_TABLE_BYTES", table_bytes)
    assert encode_latents(arm, sym, lam_q) == whole
    out = decode_latents(arm, whole, shapes, lam_q)
    assert all(np.array_equal(a, b) for a, b in zip(sym, out))
