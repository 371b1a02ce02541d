"""The decoder's float half in numpy: learned upsampling and synthesis, the twins of ``upsampling.py`` and
``synthesis.py`` (forward only, one image, float32), for the torch-free image decode (``decode_np.py``,
issue 28).

The pixels must be the torch decoder's, so every float32 operation is torch's, in torch's order. The 2x
steps are elementwise products and sums: the same IEEE operations give the same bits. A layer (a 1x1
layer, or a 3x3 convolution as one product over the nine shifted copies) is torch's ``addmm`` on the CPU,
whose rounding depends on the kernel it reaches; measured with torch 2.13's CPU build (MKL) on every shape
grid2 uses, on any number of threads and pixels (``docs/decisions/grid2-encoder.md``, "Decode start-up"):

* a layer of more than ``NARROW`` outputs (the hidden layers) sums its products in input order with fused
  multiply-adds from zero, then adds the bias. OpenBLAS (numpy's BLAS) sums a product of at most three rows
  exactly so, and wider ones otherwise, so the product is taken three rows at a time;
* a layer of at most ``NARROW`` outputs (the RGB layer, the convolutions) starts from the bias and adds each
  product, rounded, in input order (no fused multiply-add): written out here as such (``_sum_in_order``).

Another CPU or BLAS build may round otherwise: ``tests/families/grid2/test_grid2_decode_np.py`` compares the
pixels with the torch decoder's on every golden stream and a fresh encode wherever the tests run.
"""

from __future__ import annotations

import numpy as np

from mscncodec.families.grid2.config import Grid2Config
from mscncodec.families.grid2.context import CLAMP, PERIODIC


def up2_along(x: np.ndarray, k: np.ndarray, axis: int, boundary: str = CLAMP) -> np.ndarray:
    """``upsampling.up2_along``: even = k1 x[j] + k3 x[j-1], odd = k2 x[j] + k0 x[j+1], edges replicated
    (or wrapped on a periodic axis), the halves interleaved along `axis`."""
    n = x.shape[axis]
    first, last = np.take(x, [0], axis), np.take(x, [n - 1], axis)
    before, after = (last, first) if boundary == PERIODIC else (first, last)
    prev = np.concatenate([before, np.take(x, np.arange(n - 1), axis)], axis)
    nxt = np.concatenate([np.take(x, np.arange(1, n), axis), after], axis)
    even = k[1] * x + k[3] * prev
    odd = k[2] * x + k[0] * nxt
    out = np.stack([even, odd], axis + 1)
    return out.reshape(*x.shape[:axis], 2 * n, *x.shape[axis + 1:])


def up2(x: np.ndarray, k: np.ndarray, boundary: tuple[str, ...] = (CLAMP, CLAMP)) -> np.ndarray:
    """``upsampling.up2`` on (C, *spatial): the last axis first."""
    nd = len(boundary)
    for i in reversed(range(nd)):
        x = up2_along(x, k, x.ndim - nd + i, boundary[i])
    return x


def upsample_all(cfg: Grid2Config, p: dict[str, np.ndarray], latents: list[np.ndarray]) -> np.ndarray:
    """Latent values (finest first, each (*spatial) float32) -> (levels, *spatial), coarsest first."""
    boundary = cfg.geometry.boundary
    u = latents[-1][None]
    for l in range(cfg.levels - 2, -1, -1):
        u = np.concatenate([latents[l][None], up2(u, p["up.k"][l], boundary)], 0)
    return u


NARROW = 3  # layers of at most this many outputs: torch sums from the bias without fused multiply-adds
BLAS_ROWS = 3  # OpenBLAS sums a product of at most this many rows in input order with fused multiply-adds
CHUNK = 1 << 14  # pixels per step of the in-order sums: their work arrays stay in the cache


def linear(w: np.ndarray, x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """torch's ``addmm(b, w, x)``: weights (O, K[, 1, 1]), features (K, N), bias (O,) -> (O, N) float32."""
    w = w.reshape(w.shape[0], -1)
    out = np.empty((w.shape[0], x.shape[1]), np.float32)
    if w.shape[0] <= NARROW:
        for a in range(0, x.shape[1], CHUNK):
            _sum_in_order(w, b, lambda k: x[k, a : a + CHUNK], out[:, a : a + CHUNK])
        return out
    for r in range(0, w.shape[0], BLAS_ROWS):
        np.matmul(w[r : r + BLAS_ROWS], x, out=out[r : r + BLAS_ROWS])
    out += b[:, None]
    return out


def _sum_in_order(w: np.ndarray, b: np.ndarray, term, out: np.ndarray) -> None:
    """out (O, *block) = the bias, then each rounded product w[:, k] * term(k) added in k order (term(k): input
    k over the block, a view)."""
    lead = (slice(None),) + (None,) * (out.ndim - 1)
    tmp = np.empty_like(out)
    out[...] = b[lead]
    for k in range(w.shape[1]):
        np.multiply(w[:, k][lead], term(k), out=tmp)
        out += tmp


def conv3x3_replicate(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``synthesis.conv3x3_replicate`` forward on (C, H, W): a layer over the nine shifted copies of the
    edge-replicated input, inputs ordered (dy, dx, channel) like torch's columns."""
    c, hh, ww = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    wm = w.transpose(0, 2, 3, 1).reshape(w.shape[0], 9 * c)
    if wm.shape[0] > NARROW:
        cols = np.empty((9, c, hh, ww), np.float32)
        for i in range(9):
            cols[i] = xp[:, i // 3 : i // 3 + hh, i % 3 : i % 3 + ww]
        return linear(wm, cols.reshape(9 * c, hh * ww), b).reshape(-1, hh, ww)
    out = np.empty((wm.shape[0], hh, ww), np.float32)
    rows = max(1, CHUNK // ww)  # a block of whole rows, read from the padded input (no shifted copies)
    for r in range(0, hh, rows):
        def term(k: int, r: int = r) -> np.ndarray:
            i, ch = divmod(k, c)
            return xp[ch, r + i // 3 : r + rows + i // 3, i % 3 : i % 3 + ww][: hh - r]

        _sum_in_order(wm, b, term, out[:, r : r + rows])
    return out


def synthesis(cfg: Grid2Config, p: dict[str, np.ndarray], latents: list[np.ndarray]) -> np.ndarray:
    """Dequantised latents (finest first, float32) -> RGB (3, H, W) float32, roughly in [0, 1]."""
    up = upsample_all(cfg, p, latents)
    _, hh, ww = up.shape
    h = up.reshape(up.shape[0], hh * ww)
    n = len(cfg.hidden) + 1
    for i in range(n):
        h = linear(p[f"syn.w{i}"], h, p[f"syn.b{i}"])
        if i < n - 1:
            np.maximum(h, 0, out=h)
    h = h.reshape(3, hh, ww)
    h = h + conv3x3_replicate(h, p["syn.c1w"], p["syn.c1b"])
    h = h + conv3x3_replicate(np.maximum(h, 0), p["syn.c2w"], p["syn.c2b"])
    return h + np.float32(0.5)
