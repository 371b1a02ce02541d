"""Uniform quantisation of a sparse update, one step size per tensor.

Step sizes come from a shared log-spaced table (9% apart) and only their index is
sent, so both ends use the same float. A symbol of zero means "not sent": the
mask is exactly the set of non-zero symbols.
"""

from __future__ import annotations

import numpy as np
import torch

STEP_BASE = 160
STEP_PER_OCTAVE = 8


def step_size(idx: int) -> float:
    return float(2.0 ** ((idx - STEP_BASE) / STEP_PER_OCTAVE))


def step_index(step: float) -> int:
    return int(np.clip(np.round(STEP_PER_OCTAVE * np.log2(max(step, 1e-30)) + STEP_BASE), 0, 255))


def quantise(values: torch.Tensor, keep: torch.Tensor, idx: int) -> np.ndarray:
    """int32 symbols, zero outside `keep`."""
    q = torch.round(values.detach() / step_size(idx)) * keep
    return q.to(torch.int32).numpy()


def dequantise(symbols: np.ndarray, idx: int) -> torch.Tensor:
    return torch.from_numpy(symbols.astype(np.float32) * np.float32(step_size(idx)))


def ste_round(values: torch.Tensor, step: float) -> torch.Tensor:
    """Round to the step grid in the forward pass, identity gradient (quantisation-aware fitting)."""
    return values + (torch.round(values / step) * step - values).detach()
