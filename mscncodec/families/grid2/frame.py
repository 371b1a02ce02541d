"""One image's whole-frame passes as the encoder measures them: analysis, rate, synthesis, distortion and
rate + distortion / lambda, whole up to ``tiles.TILED_PIXELS`` and tile by tile above (``tiles.py``).

Each pass runs where its tensors are (the fit's device: ``on_device``); lambda, a small CPU tensor, follows
them. The exact coding and the rendering of what a stream decodes to (``render``) are CPU work.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mscncodec.families.grid2 import network, tiles
from mscncodec.families.grid2.arm import rate_bits
from mscncodec.families.grid2.model import Grid2Model
from mscncodec.families.grid2.synthesis import synthesis as synthesis_whole


def tiled_frame(cfg, h: int, w: int) -> bool:
    """Whether an h x w image (padded to the grids' alignment) is worked on tile by tile."""
    return tiles.is_tiled(h + (-h % cfg.align), w + (-w % cfg.align))


def big(x: torch.Tensor) -> bool:
    """Whether a (padded) frame or full-resolution grid is worked on tile by tile."""
    return tiles.is_tiled(*x.shape[2:])


def on_device(model: Grid2Model, device: torch.device | str) -> Grid2Model:
    """The model whose tensors (theta0, analysis) the fit uses on `device`: the model itself where they are
    there already (the CPU), else a copy; the cached model, whose theta0 the exact coder reads, is never moved."""
    device = torch.device(device)
    tensors = (*model.theta.values(), *model.analysis.values())
    if device.type == "cpu" and all(t.device.type == "cpu" for t in tensors):
        return model
    return dataclasses.replace(model, theta={k: v.to(device) for k, v in model.theta.items()},
                               analysis={k: v.to(device) for k, v in model.analysis.items()})


def analysis(model: Grid2Model, x: torch.Tensor, lam: torch.Tensor) -> list[torch.Tensor]:
    lam = lam.to(x.device)
    return (tiles.analysis if big(x) else network.analysis)(model.cfg, model.analysis, x, lam)


def rate(model: Grid2Model, params, values: list[torch.Tensor], ctx: list[torch.Tensor], lam: torch.Tensor):
    lam = lam.to(values[0].device)
    return (tiles.rate_bits if big(values[0]) else rate_bits)(model.cfg, params, values, ctx, lam)


def synthesis(model: Grid2Model, params, latents: list[torch.Tensor]) -> torch.Tensor:
    return (tiles.synthesis if big(latents[0]) else synthesis_whole)(model.cfg, params, latents)


def est_bits(model: Grid2Model, params, y: list[torch.Tensor], lam: torch.Tensor) -> float:
    """Estimated bits of the rounded latents y (symbol units)."""
    hard = [torch.round(v) for v in y]
    return float(rate(model, params, hard, hard, lam))


def mse(model: Grid2Model, params, x: torch.Tensor, latents: list[torch.Tensor]) -> float:
    """Mean squared error (0..1 scale) of the synthesis from latent values against the (padded) frame x."""
    with torch.no_grad():
        if big(x):
            return tiles.squared_error(model.cfg, params, latents, x) / x.numel()
        return float((synthesis_whole(model.cfg, params, latents) - x).pow(2).mean())


def rd_cost(model: Grid2Model, params, x: torch.Tensor, y: list[torch.Tensor], lam: float, step: float,
            n_pix: int) -> float:
    """Estimated bpp + MSE / lambda of the rounded latents y (symbol units)."""
    hard = [torch.round(v) for v in y]
    with torch.no_grad():
        bits = float(rate(model, params, hard, hard, torch.tensor([lam])))
    return bits / n_pix + mse(model, params, x, [v * step for v in hard]) / lam


def render(model: Grid2Model, params, symbols: list[np.ndarray], step: float, h: int, w: int) -> np.ndarray:
    """What a stream decodes to, on the CPU: the latent symbols (finest first) at latent step `step`,
    synthesised with the decoder parameters `params` and cropped to h x w -> H x W x 3 uint8 (the decoder's
    last step; the encoder's own reconstruction of the stream it wrote)."""
    s = np.float32(step)
    with torch.no_grad():
        lat = [torch.from_numpy(v.astype(np.float32) * s)[None, None] for v in symbols]
        out = synthesis(model, params, lat)[0, :, :h, :w]
    return out.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()  # in place: no copies
