"""Big images in bounded memory: grid2's whole-image passes done tile by tile.

Why: a whole-image refinement step keeps about 1 KB of activations per pixel for the backward pass
(12 MP: 13 GB), and the analysis, rate and synthesis passes need hundreds of bytes per pixel. Above
``TILED_PIXELS`` the encoder and the decoder run those passes on ``TILE`` x ``TILE`` tiles that see a
margin of context on every side, so memory is set by the tile, and time stays linear in pixels.

Nothing here changes the stream: tiles change how the encoder searches for its latents and how the
decoder evaluates the synthesis, not what is sent; the latents are still coded by the exact ARM over
whole grids. Images up to ``TILED_PIXELS`` take the whole-image path untouched, so their streams and
decoded pixels are byte for byte what they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mscncodec.coding.latents import laplace_bits
from mscncodec.families.grid2.arm import arm_float
from mscncodec.families.grid2.config import Grid2Config
from mscncodec.families.grid2.network import analysis as analysis_whole
from mscncodec.families.grid2.synthesis import synthesis as synthesis_whole

TILED_PIXELS = 1 << 20  # 1.05 MP: above this, tiles (a whole-image encode needs ~1.45 GB per MP)
TILE = 512  # interior of a tile, pixels (a multiple of the coarsest grid's 64): ~0.5 GB of refinement per tile
HALO = 64  # context margin of a refinement tile: the ARM's neighbours and most of the upsampling's reach
SYNTH_HALO = 128  # margin of a synthesis-only tile: the upsampling's whole reach, so no seams (no gradients)

Box = tuple[int, int, int, int]  # top, bottom, left, right in pixels of the padded frame


def is_tiled(h: int, w: int) -> bool:
    """Whether an h x w image is encoded and decoded tile by tile."""
    return h * w > TILED_PIXELS


def padded_frame(rgb: np.ndarray, align: int) -> torch.Tensor:
    """(1, 3, Hp, Wp) uint8, edge-replicated to a multiple of align like `pad_image`, at a quarter of its
    float32 frame's memory; `pixels` gives a crop the float values `pad_image` would have."""
    h, w, _ = rgb.shape
    padded = np.pad(rgb, ((0, -h % align), (0, -w % align), (0, 0)), mode="edge")
    return torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[None]


def pixels(t: torch.Tensor) -> torch.Tensor:
    """A crop of a frame as floats in [0, 1] (a uint8 `padded_frame` is converted, a float one kept)."""
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t


@dataclass(frozen=True)
class Tile:
    """One tile: its interior (the part it is responsible for) and its outer box (interior plus context)."""

    inner: Box
    outer: Box

    def crop(self, t: torch.Tensor, level: int = 0) -> torch.Tensor:
        """The outer box of a (B, C, H >> level, W >> level) tensor: a view."""
        top, bottom, left, right = (v >> level for v in self.outer)
        return t[..., top:bottom, left:right]

    def interior(self, t: torch.Tensor, level: int = 0) -> torch.Tensor:
        """The interior of a whole-frame tensor at `level`: a view (to write results into)."""
        top, bottom, left, right = (v >> level for v in self.inner)
        return t[..., top:bottom, left:right]

    def local(self, t: torch.Tensor, level: int = 0) -> torch.Tensor:
        """The interior of a tensor already cropped to the outer box."""
        top, bottom, left, right = self.inner
        otop, oleft = self.outer[0], self.outer[2]
        return t[..., (top - otop) >> level:(bottom - otop) >> level, (left - oleft) >> level:(right - oleft) >> level]

    @property
    def pixels(self) -> int:
        top, bottom, left, right = self.inner
        return (bottom - top) * (right - left)


def tiles(hp: int, wp: int, halo: int | None = None, tile: int | None = None) -> list[Tile]:
    """Row-major tiles covering a padded hp x wp frame (multiples of the coarsest grid's stride); halo and
    tile default to HALO and TILE."""
    halo, tile = HALO if halo is None else halo, tile or TILE
    out = []
    for top in range(0, hp, tile):
        for left in range(0, wp, tile):
            bottom, right = min(top + tile, hp), min(left + tile, wp)
            out.append(Tile((top, bottom, left, right),
                            (max(top - halo, 0), min(bottom + halo, hp), max(left - halo, 0), min(right + halo, wp))))
    return out


def analysis(cfg: Grid2Config, p: dict[str, torch.Tensor], x: torch.Tensor, lam: torch.Tensor
             ) -> list[torch.Tensor]:
    """network.analysis of a big image (no gradients), tile by tile: each interior from its tile's outer box."""
    hp, wp = x.shape[2:]
    out = [torch.empty(1, 1, hp >> l, wp >> l, device=x.device) for l in range(cfg.levels)]  # float even for uint8
    with torch.no_grad():
        for t in tiles(hp, wp, SYNTH_HALO):
            part = analysis_whole(cfg, p, pixels(t.crop(x)), lam)
            for l in range(cfg.levels):
                t.interior(out[l], l).copy_(t.local(part[l], l))
    return out


ARM_REACH = 4  # latents of context the ARM needs on each side (3 causal rows / columns, the coarser grid's 3x3)


def inner_bits(cfg: Grid2Config, p: dict[str, torch.Tensor], values: list[torch.Tensor],
               ctx: list[torch.Tensor], lam: torch.Tensor, tile: Tile, levels: range | None = None) -> torch.Tensor:
    """Estimated bits of a tile's interior latents; values and ctx are cropped to its outer box (the margin
    is context only; on the coarsest grids it may be narrower than the ARM's reach, which a refinement
    tile accepts: its rate there is an estimate that steers the search)."""
    total = 0
    for l in levels if levels is not None else range(cfg.levels):
        mu, ls = arm_float(cfg, p, ctx, l, lam)
        total = total + tile.local(laplace_bits(values[l], mu, ls), l).sum()
    return total


def rate_bits(cfg: Grid2Config, p: dict[str, torch.Tensor], values: list[torch.Tensor],
              ctx: list[torch.Tensor], lam: torch.Tensor) -> torch.Tensor:
    """arm.rate_bits of a big frame (no gradients): tile by tile on the grids where the margin covers the
    ARM's reach, whole on the coarser ones (they hold a few percent of the latents)."""
    hp, wp = values[0].shape[2:]
    tiled = range(sum(1 for l in range(cfg.levels) if HALO >> l >= ARM_REACH))
    total = torch.zeros((), device=values[0].device)
    with torch.no_grad():
        for l in range(len(tiled), cfg.levels):
            mu, ls = arm_float(cfg, p, ctx, l, lam)
            total = total + laplace_bits(values[l], mu, ls).sum()
        for t in tiles(hp, wp):
            crop = [t.crop(v, l) for l, v in enumerate(values)]
            cctx = [t.crop(v, l) for l, v in enumerate(ctx)]
            total = total + inner_bits(cfg, p, crop, cctx, lam, t, tiled)
    return total


def synthesis(cfg: Grid2Config, p: dict[str, torch.Tensor], latents: list[torch.Tensor]) -> torch.Tensor:
    """synthesis.synthesis of a big frame (no gradients), tile by tile with the upsampling's whole reach."""
    hp, wp = latents[0].shape[2:]
    out = latents[0].new_empty(1, 3, hp, wp)
    with torch.no_grad():
        for t in tiles(hp, wp, SYNTH_HALO):
            t.interior(out).copy_(t.local(synthesis_whole(cfg, p, [t.crop(v, l) for l, v in enumerate(latents)])))
    return out


def squared_error(cfg: Grid2Config, p: dict[str, torch.Tensor], latents: list[torch.Tensor],
                  x: torch.Tensor) -> float:
    """Sum of squared differences between the synthesis of a big frame and x, tile by tile (no frame-sized
    temporaries)."""
    hp, wp = latents[0].shape[2:]
    total = 0.0
    with torch.no_grad():
        for t in tiles(hp, wp, SYNTH_HALO):
            part = t.local(synthesis_whole(cfg, p, [t.crop(v, l) for l, v in enumerate(latents)]))
            total += float((part - pixels(t.interior(x))).pow(2).sum())
    return total
