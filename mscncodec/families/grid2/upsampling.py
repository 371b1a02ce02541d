"""Learned upsampling: each 2x step is a separable 4-tap transposed filter per stage, initialised bilinear.

Any number of spatial axes (the last ones of the tensor), each with its boundary rule: ``CLAMP`` replicates
the edge, ``PERIODIC`` wraps (longitude). grid2's grids are 2-D and clamped.
"""

from __future__ import annotations

import torch

from mscncodec.families.grid2.config import Grid2Config
from mscncodec.families.grid2.context import CLAMP, PERIODIC


def up2_along(x: torch.Tensor, k: torch.Tensor, dim: int, boundary: str = CLAMP) -> torch.Tensor:
    """2x along axis `dim` of x with the 4-tap transposed filter k (stride 2), written as its two polyphase
    halves, even = k1 x[j] + k3 x[j-1], odd = k2 x[j] + k0 x[j+1] (x[-1], x[n]: the edges replicated, or
    wrapped on a periodic axis): elementwise, so several times faster on the CPU than conv_transpose2d with
    one group per channel. Along the rows the halves interleave whole rows, so neither pass needs a transpose."""
    n = x.shape[dim]
    if boundary == PERIODIC:
        xp = torch.cat([x.narrow(dim, n - 1, 1), x, x.narrow(dim, 0, 1)], dim)
    else:
        xp = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)], dim)
    mid = xp.narrow(dim, 1, n)
    even = k[1] * mid + k[3] * xp.narrow(dim, 0, n)
    odd = k[2] * mid + k[0] * xp.narrow(dim, 2, n)
    return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)


def up2(x: torch.Tensor, k: torch.Tensor, boundary: tuple[str, ...] = (CLAMP, CLAMP)) -> torch.Tensor:
    """2x upsampling of every channel of x (B, C, *spatial) along its last len(boundary) axes, the last axis
    first, with the separable 4-tap filter k (bilinear at init)."""
    nd = len(boundary)
    for i in reversed(range(nd)):
        x = up2_along(x, k, x.dim() - nd + i, boundary[i])
    return x


def upsample_all(cfg: Grid2Config, p: dict[str, torch.Tensor], latents: list[torch.Tensor]) -> torch.Tensor:
    """Latent values (finest first) -> (B, levels, *spatial): coarsest first, each stage upsamples all the
    coarser channels together with its own learned filter and appends the grid of that resolution."""
    boundary = cfg.geometry.boundary
    u = latents[-1]
    for l in range(cfg.levels - 2, -1, -1):
        u = torch.cat([latents[l], up2(u, p["up.k"][l], boundary)], 1)
    return u
