"""Quantisation of the latents: the differentiable proxies training and refinement use (soft rounding,
straight-through rounding), symbol units, and the dead-zone quantiser the size fit packs with."""

from __future__ import annotations

import math

import numpy as np
import torch

from mscncodec.coding.latents import MAX_DEADZONE
from mscncodec.families.grid2.config import SYMBOL_RANGE


def soft_round(y: torch.Tensor, t: float) -> torch.Tensor:
    """C3's soft rounding: identity as t -> inf, rounding as t -> 0, differentiable in between."""
    m = torch.floor(y) + 0.5
    return m + 0.5 * torch.tanh((y - m) / t) / math.tanh(0.5 / t)


def ste(y: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through gradient."""
    return y + (torch.round(y) - y).detach()


def symbols_of(values: list[torch.Tensor], step: torch.Tensor) -> list[torch.Tensor]:
    """Latent values -> symbol units (divided by the per-sample step), clamped to the coder's range."""
    s = step.reshape(-1, 1, 1, 1).to(values[0].device)
    return [(v / s).clamp(-SYMBOL_RANGE, SYMBOL_RANGE) for v in values]


# ---------------------------------------------------------------- the dead-zone quantiser (packing)

QUANT_BLOCK = 1 << 20  # latents per block of the elementwise quantisation (bounds its float64 temporaries)
DEADZONE_LEVEL_GAIN = 2.0  # a coarser grid's latent is zeroed as if this much bigger per level (see quantise)


def row_blocks(v: np.ndarray) -> list[slice]:
    """Row slices of a grid holding about QUANT_BLOCK latents each: elementwise work done per block gives
    the same numbers as on the whole grid, with temporaries of one block."""
    rows = max(QUANT_BLOCK // max(v.shape[1], 1), 1)
    return [slice(a, a + rows) for a in range(0, v.shape[0], rows)]


def sparse_levels(yv: list[np.ndarray], s: float) -> set[int]:
    """The grids whose latents are mostly zero at step s: the only ones the size fit's dead zone touches.
    Why: where a grid is mostly +-1 the ARM expects +-1 and a zero costs *more* bits (docs/decisions/grid2-encoder.md)."""
    return {l for l, v in enumerate(yv)
            if sum(int(np.count_nonzero(np.abs(v[rows]) < 0.5 * s)) for rows in row_blocks(v)) >= 0.5 * v.size}


def quantise(v: np.ndarray, s: float, deadzone: float, level: int = 0,
             cap: float = MAX_DEADZONE) -> np.ndarray:
    """Latent values of grid `level` -> int32 symbols at step s (block by block). The dead zone zeroes
    |value / s| < 0.5 as rounding does, and where |value / s| < cap (MAX_DEADZONE) also |value / s| * g**level <
    deadzone (g: DEADZONE_LEVEL_GAIN). Why the level weight: a latent of a coarser grid reaches ~4x the
    pixels, so zeroing it costs more distortion for the same bits (a plain threshold zeroed the coarsest
    grids first). `cap` inf: any latent may be zeroed (the size fit's very last resort, down to empty grids)."""
    out = np.empty(v.shape, np.int32)
    w = DEADZONE_LEVEL_GAIN**level
    for rows in row_blocks(v):
        r = v[rows] / s
        q = np.clip(np.round(r), -SYMBOL_RANGE, SYMBOL_RANGE)
        a = np.abs(r)
        out[rows] = np.where((a < 0.5) | ((a < cap) & (a * w < deadzone)), 0, q)
    return out


def deadzone_magnitudes(yv: list[np.ndarray], s: float, sparse: set[int], cap: float = MAX_DEADZONE) -> np.ndarray:
    """The level-weighted magnitudes |value / s| * g**level in [0.5, cap) of the sparse grids' latents, sorted:
    the dead zones at which one more latent is zeroed."""
    parts = []
    for l, v in enumerate(yv):
        for rows in (row_blocks(v) if l in sparse else ()):
            r = np.abs(v[rows].reshape(-1)) / s
            parts.append(r[(r >= 0.5) & (r < cap)] * DEADZONE_LEVEL_GAIN**l)
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0)  # no sparse grid: nothing to zero
