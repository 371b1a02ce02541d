"""Big frames cost in proportion to their size (issue 30, item 11): the coarser grid's padded symbols are
made once per grid, not once per chunk or block (that made a 24 MP decode quadratic: 4.3 s per MP against
~2.5 at 6 MP), and the encode report's PSNR works on slices of rows (its whole-image float64 copies set the
24 MP encoder's 2.5 GB peak). Timings are measured in experiments/2026-12-07-24mp/, not here."""

from __future__ import annotations

import tracemalloc

import numpy as np

from mscncodec.families.grid2 import latent_codec
from mscncodec.families.grid2.arm import FixedArm, lambda_fixed
from mscncodec.modalities.image import psnr
from grid2_testing import CFG, random_arm


def test_the_coarser_grid_is_padded_once_per_grid_whatever_the_chunking(monkeypatch):
    shapes = CFG.grid_shapes(45, 70)
    arm = FixedArm.from_params(random_arm(CFG, 0, scale=1.0))
    rng = np.random.default_rng(0)
    sym = [np.clip(np.round(rng.laplace(0, 3.0, s)), -255, 255).astype(np.int32) for s in shapes]
    lam_q = lambda_fixed(2.0**-5)
    calls = []
    real = latent_codec.coarse_padded

    def counted(coarse, geo=latent_codec.PLANE):
        calls.append(coarse.shape)
        return real(coarse, geo)

    monkeypatch.setattr(latent_codec, "coarse_padded", counted)
    monkeypatch.setattr(latent_codec, "COARSE_TABLE_BYTES", 0)  # the big-frame path: rows per chunk, no table
    monkeypatch.setattr(latent_codec, "ARM_CHUNK", 97)  # many chunks per grid
    monkeypatch.setattr(latent_codec, "WAVE_BLOCK", 97)  # many blocks per grid
    data = latent_codec.encode_latents(arm, sym, lam_q)
    n_chunked = sum(1 for s in shapes[:-1] if np.prod(s) > 97)  # grids with a coarser grid, coded in chunks
    assert 0 < len(calls) <= n_chunked
    calls.clear()
    out = latent_codec.decode_latents(arm, data, shapes, lam_q)
    assert all(np.array_equal(a, b) for a, b in zip(sym, out))
    assert 0 < len(calls) <= len(shapes) - 1  # one per grid that has a coarser one, not one per block


def test_psnr_in_slices_is_the_one_pass_value_in_bounded_memory():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    b = np.clip(a.astype(np.int16) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    tracemalloc.start()
    got = psnr(a, b)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got == 10.0 * np.log10(255.0**2 / mse)  # exact: integer partial sums
    assert peak < 100 << 20  # one pass: ~4 float64 copies of 9 M values, 290 MB
    assert psnr(a, a) == float("inf")
    assert np.isfinite(psnr(a[..., 0], b[..., 0]))  # grey
