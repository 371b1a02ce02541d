"""Synthesis: the latent pyramid read at any point of the volume (trilinear per level), then a small MLP.

Points are in [-1, 1]^3, axes in the grids' order (slowest first), with cell-centred grids (``align_corners``
False): a grid of n cells covers the whole domain at every level, so the signal can be decoded on any grid
(a mesh at any resolution, a field on its own time x lat x lon points). A clamped axis repeats its edge; a
periodic one (longitude) wraps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mscncodec.families.grid2.synthesis import linear_cf
from mscncodec.families.grid2.volume.config import Vol3Config


def _wrapped(z: torch.Tensor, points: torch.Tensor, periodic: tuple[bool, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """A border of one cell wrapped onto each periodic axis of z (1, 1, *n) and the points moved to match."""
    if not any(periodic):
        return z, points
    cols = []
    for i, p in enumerate(periodic):
        c = points[:, i]
        if p:
            d, n = 2 + i, z.shape[2 + i]
            z = torch.cat([z.narrow(d, n - 1, 1), z, z.narrow(d, 0, 1)], d)
            c = ((c + 1) * n + 2) / (n + 2) - 1  # cell j of n is cell j + 1 of n + 2
        cols.append(c)
    return z, torch.stack(cols, 1)


def features(cfg: Vol3Config, latents: list[torch.Tensor], points: torch.Tensor) -> torch.Tensor:
    """Dequantised latents (finest first, each (1, 1, D, H, W)) at points (N, 3) -> (1, levels, N)."""
    out = []
    for z in latents:
        zw, pw = _wrapped(z, points, cfg.periodic)
        grid = pw.flip(1).reshape(1, -1, 1, 1, 3)  # grid_sample reads (x, y, z) = (last axis, ..., first)
        out.append(F.grid_sample(zw, grid, mode="bilinear", padding_mode="border", align_corners=False).reshape(1, -1))
    return torch.cat(out, 0)[None]


def synthesis(cfg: Vol3Config, p: dict[str, torch.Tensor], latents: list[torch.Tensor], points: torch.Tensor
              ) -> torch.Tensor:
    """The decoded signal (N,) at points (N, 3): a value, an SDF or an occupancy logit (the modality's)."""
    h = features(cfg, latents, points)
    n = len(cfg.hidden) + 1
    for i in range(n):
        h = linear_cf(p[f"syn.w{i}"], h, p[f"syn.b{i}"])
        if i < n - 1:
            h = F.relu(h)
    return h.reshape(-1)


def cell_centres(shape: tuple[int, ...]) -> list[torch.Tensor]:
    """Per axis, the centres of a regular grid's cells in [-1, 1]."""
    return [(2 * torch.arange(n, dtype=torch.float32) + 1) / n - 1 for n in shape]


def render(cfg: Vol3Config, p: dict[str, torch.Tensor], latents: list[torch.Tensor], shape: tuple[int, int, int],
           chunk: int = 1 << 18) -> torch.Tensor:
    """The signal at the centres of a regular grid of `shape` cells (slowest first), a few planes at a time."""
    cz, cy, cx = cell_centres(shape)
    out = torch.empty(shape)
    plane = shape[1] * shape[2]
    yx = torch.stack(torch.meshgrid(cy, cx, indexing="ij"), -1).reshape(-1, 2)
    step = max(1, chunk // plane)
    with torch.no_grad():
        for a in range(0, shape[0], step):
            zs = cz[a:a + step]
            pts = torch.cat([zs.repeat_interleave(plane)[:, None], yx.repeat(len(zs), 1)], 1)
            out[a:a + len(zs)] = synthesis(cfg, p, latents, pts).reshape(len(zs), shape[1], shape[2])
    return out
