"""Uniform quantisation of a sparse update, one step size per tensor.

Step sizes come from a shared log-spaced table (9% apart) and only their index is
sent, so both ends use the same float. A symbol of zero means "not sent": the
mask is exactly the set of non-zero symbols.
"""

from __future__ import annotations

import numpy as np

from mscncodec._lazy import torch  # the update decode needs only the step table

STEP_BASE = 160
STEP_PER_OCTAVE = 8
MAX_SYMBOL = 4095  # larger magnitudes are clipped (a categorical value table costs R bytes; a Laplace model 3)


def step_size(idx: int) -> float:
    return float(2.0 ** ((idx - STEP_BASE) / STEP_PER_OCTAVE))


def step_index(step: float) -> int:
    return int(np.clip(np.round(STEP_PER_OCTAVE * np.log2(max(step, 1e-30)) + STEP_BASE), 0, 255))


def quantise(values: torch.Tensor, keep: torch.Tensor, idx: int, min_one: bool = False) -> np.ndarray:
    """int32 symbols, zero outside `keep`.

    min_one: a kept entry that would round to zero is sent as +-1 instead, so the
    selection alone decides what is sent (used at the rate cut, before the values
    are refined; a zero would silently drop an entry the cut paid for).
    """
    v = values.detach()
    q = torch.round(v / step_size(idx))
    if min_one:
        q = torch.where(q == 0, torch.where(v < 0, -1.0, 1.0), q)
    return (q.clamp(-MAX_SYMBOL, MAX_SYMBOL) * keep).to(torch.int32).numpy()


def dequantise(symbols: np.ndarray, idx: int) -> torch.Tensor:
    return torch.from_numpy(symbols.astype(np.float32) * np.float32(step_size(idx)))


def ste_round(values: torch.Tensor, step: float) -> torch.Tensor:
    """Round to the step grid in the forward pass, identity gradient (quantisation-aware fitting)."""
    return values + (torch.round(values / step) * step - values).detach()
