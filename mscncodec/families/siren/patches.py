"""How the SIREN family sees an image: a grid of P x P patches, each one group (its own update of the
shared SIREN), evaluated at the same pixel-centre coordinates."""

from __future__ import annotations

import numpy as np
import torch


def grid_coords(p: int) -> torch.Tensor:
    """(p*p, 2) pixel-centre coordinates in [-1, 1], row-major (y, x)."""
    t = torch.linspace(-1.0, 1.0, p)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=1)


def patch_grid(h: int, w: int, p: int) -> tuple[int, int]:
    return -(-h // p), -(-w // p)


def to_patches(rgb: np.ndarray, p: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (N, p*p, 3) float in [-1, 1], edge-padded, row-major patch order."""
    h, w, _ = rgb.shape
    gh, gw = patch_grid(h, w, p)
    padded = np.pad(rgb, ((0, gh * p - h), (0, gw * p - w), (0, 0)), mode="edge")
    x = torch.from_numpy(padded).float().div_(127.5).sub_(1.0)
    x = x.reshape(gh, p, gw, p, 3).permute(0, 2, 1, 3, 4).reshape(gh * gw, p * p, 3)
    return x.contiguous()


def from_patches(x: torch.Tensor, h: int, w: int, p: int) -> np.ndarray:
    """Inverse of to_patches (crops the padding) -> uint8 (H, W, 3)."""
    gh, gw = patch_grid(h, w, p)
    img = x.reshape(gh, gw, p, p, 3).permute(0, 2, 1, 3, 4).reshape(gh * p, gw * p, 3)[:h, :w]
    return img.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).numpy()
