"""The encoder-side analysis network: an image and lambda -> every grid's latents in one pass (amortised).

The decoder's parts live beside it: ``config.py`` (architecture, seeded init), ``upsampling.py``,
``synthesis.py``, ``arm.py`` (the context model), ``context.py`` (its geometry).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mscncodec.coding.latents import lambda_feature
from mscncodec.families.grid2.config import Grid2Config


def analysis(cfg: Grid2Config, p: dict[str, torch.Tensor], x: torch.Tensor, lam: torch.Tensor) -> list[torch.Tensor]:
    """Image (B,3,H,W) in [0,1] (H, W multiples of align) and lambda (B,) -> latent values
    [(B,1,H/2**l,W/2**l)], finest first (the caller divides by the step). Strided 3x3 convolutions
    down to the coarsest grid, then a top-down path so each level knows what the coarser ones carry."""
    u = F.pixel_unshuffle(x - 0.5, 2)
    feat = lambda_feature(lam)[:, None, None, None].expand(-1, 1, *u.shape[2:])
    h = F.gelu(F.conv2d(torch.cat([u, feat], 1), p["ana.in.w"], p["ana.in.b"], padding=1))
    downs = {1: h}
    for l in range(2, cfg.levels):
        h = F.gelu(F.conv2d(h, p[f"ana.d{l}.w"], p[f"ana.d{l}.b"], stride=2, padding=1))
        downs[l] = h
    outs: list[torch.Tensor] = [None] * cfg.levels  # type: ignore[list-item]
    t = downs[cfg.levels - 1]
    outs[-1] = F.conv2d(t, p[f"ana.o{cfg.levels - 1}.w"], p[f"ana.o{cfg.levels - 1}.b"])
    for l in range(cfg.levels - 2, 0, -1):
        up = F.interpolate(t, scale_factor=2, mode="nearest")
        t = F.gelu(F.conv2d(torch.cat([downs[l], up], 1), p[f"ana.u{l}.w"], p[f"ana.u{l}.b"], padding=1))
        outs[l] = F.conv2d(t, p[f"ana.o{l}.w"], p[f"ana.o{l}.b"])
    outs[0] = F.pixel_shuffle(F.conv2d(t, p["ana.o0.w"], p["ana.o0.b"], padding=1), 2)
    return outs
