"""Decoding of the latent-grid family (``grid``), kept so that old ``grid-*`` streams decode pixel for
pixel; grid2 replaced it for encoding (its encoder and trainer are gone, see docs/decisions/).

Streams carry: ``GRID`` (lambda index, latent step index), ``QPRM``/``MASK``/``VALS`` (the decoder
update, the shared update coder) and ``LATS`` (latents range-coded with the checkerboard context model).
"""

from __future__ import annotations


import constriction
import numpy as np
import torch

from mscncodec.coding import latents as lt
from mscncodec.coding.latents import grid_header, grid_section, latent_step
from mscncodec.coding.quantize import dequantise
from mscncodec.errors import BitstreamError
from mscncodec.families.grid import network as grid
from mscncodec.families.grid.model import GridModel

GRID = grid_section("GRID")  # lambda index, latent-step index


def grid_shapes(cfg: grid.GridConfig, h: int, w: int) -> list[tuple[int, int]]:
    hp, wp = h + (-h % cfg.align), w + (-w % cfg.align)
    return [(hp // cfg.scale(l), wp // cfg.scale(l)) for l in range(cfg.levels)]


_FAMILY = constriction.stream.model.QuantizedLaplace(-grid.SYMBOL_RANGE, grid.SYMBOL_RANGE + 1)


def _level_params(cfg, params, decoded: list, level: int, lam_t: torch.Tensor, sel: np.ndarray,
                  anchors: torch.Tensor | None, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Snapped (mean, scale) in symbol units at the positions `sel` of one grid, for one checkerboard pass.

    Encoder and decoder both call exactly this, on identical inputs, so they build
    identical probability models.
    """
    coarse = grid.coarse_context(decoded, level)
    neigh = torch.zeros_like(decoded[level]) if anchors is None else anchors
    with torch.no_grad():
        mu, ls = grid.context_pass(cfg, params, level, coarse, neigh, lt.lambda_feature(lam_t),
                                   keep=torch.from_numpy(sel))
    return grid.snap_params(mu.numpy().reshape(-1), ls.numpy().reshape(-1), step)


def decode_latents(cfg, params, data: bytes, shapes: list[tuple[int, int]], lam_idx: int, step_idx: int
                   ) -> list[torch.Tensor]:
    if len(data) % 4:
        raise BitstreamError("corrupted .mscn file (latent section length is not a multiple of 4)")
    step = latent_step(step_idx)
    lam_t = torch.tensor([lt.lambda_value(lam_idx)])
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, np.uint32).copy())
    decoded: list[torch.Tensor] = [torch.zeros(1, 1, *s) for s in shapes]
    for l in range(cfg.levels - 1, -1, -1):
        mask = grid.checkerboard(*shapes[l]).numpy().astype(bool)
        sym = np.zeros(shapes[l], np.int32)
        for first in (True, False):
            sel = mask if first else ~mask
            anchors = None if first else decoded[l] * torch.from_numpy(mask).float()
            mu, sc = _level_params(cfg, params, decoded, l, lam_t, sel, anchors, step)
            if mu.size:
                try:
                    sym[sel] = np.asarray(dec.decode(_FAMILY, mu, sc), np.int32)
                except (AssertionError, ValueError):
                    raise BitstreamError("corrupted .mscn file (invalid latent data)") from None
            decoded[l] = torch.from_numpy(sym.astype(np.float32) * np.float32(step))[None, None]
    return decoded


def decode(model: GridModel, header: dict, sections: dict[str, bytes]) -> np.ndarray:
    """-> H x W x 3 uint8."""
    from mscncodec.coding.update import unpack_update

    cfg = model.cfg
    lam_idx, step_idx = grid_header(model, header, sections, GRID)
    symbols, steps = unpack_update(model, sections, 1)
    params = grid.effective(model.theta, {k: dequantise(s, steps[k])[0] for k, s in symbols.items()})
    h, w = header["height"], header["width"]
    lat = decode_latents(cfg, params, sections["LATS"], grid_shapes(cfg, h, w), lam_idx, step_idx)
    with torch.no_grad():
        out = grid.synthesis(cfg, params, lat)[0, :, :h, :w]
    return (out.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


def describe(model: GridModel, sections: dict[str, bytes]) -> dict[str, str]:
    """The GRID section's lambda and latent step, for `mscn info`."""
    return GRID.describe(sections)
