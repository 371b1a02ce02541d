"""What the grid2 tests share: a tiny architecture (3 grids, narrow networks) and busy random decoders."""

from __future__ import annotations

import numpy as np
import torch

from mscncodec.families.grid2.config import Grid2Config, init_params

CFG = Grid2Config(levels=3, hidden=(8,), arm_hidden=6, analysis=4)
FAST = {"effort": "fast", "steps": 4}
H, W = 37, 53


def random_arm(cfg: Grid2Config, seed: int, scale: float = 0.5) -> dict[str, torch.Tensor]:
    """A decoder as a file might see it: the generic init plus a large random update (a busy ARM)."""
    p = init_params(cfg, seed=seed, analysis=False)
    g = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=g) for k, v in p.items()}


def random_symbols(shapes, seed: int, scale: float) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sym = [np.clip(np.round(rng.laplace(0, scale, s)), -255, 255).astype(np.int32) for s in shapes]
    sym[0].flat[0], sym[-1].flat[-1] = 255, -255
    return sym
