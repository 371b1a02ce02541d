"""The SIREN family on images: one group (its own sparse update of the shared SIREN) per P x P patch.

``encode(model, rgb, header, ...)`` fits and packs; ``decode(model, header, sections)`` renders every
patch in chunks. The image codec (modalities/image_codec.py) builds the header and checks the result.
"""

from __future__ import annotations

import numpy as np
import torch

from mscncodec.coding.update import dequantise_all, empty_update, unpack_update
from mscncodec.container import bitstream
from mscncodec.errors import MscnError, below_minimum
from mscncodec.families.siren import network as siren
from mscncodec.families.siren.encoder import BITS_PER_ENTRY, EFFORT, OPEN_HEADROOM, fit_and_pack
from mscncodec.families.siren.model import Model
from mscncodec.families.siren.patches import from_patches, grid_coords, patch_grid, to_patches

# Patches evaluated at once when rendering: bounds a decode's memory (32 patches of 32x32 = 32K pixels)
DECODE_CHUNK = 32
LAMBDA_RATE = 0.2  # the L0 weight at 1 bpp; lower rates need proportionally sparser updates


def encode_lambda(bpp: float) -> float:
    """L0 weight for encode-time fitting at a target rate: MSE (signal in [-1, 1]) + lam * E[open entries] /
    pixels-per-group, with lam ~ 1 / bpp."""
    return LAMBDA_RATE / bpp


def render(model: Model, delta: dict[str, torch.Tensor], n_groups: int) -> torch.Tensor:
    """Evaluate all patches in chunks (bounded memory), -> (G, P*P, 3) clamped to [-1, 1]."""
    coords = grid_coords(model.patch)
    outs = []
    with torch.no_grad():
        for a in range(0, n_groups, DECODE_CHUNK):
            d = {k: v[a : a + DECODE_CHUNK] for k, v in delta.items()}
            n = min(DECODE_CHUNK, n_groups - a)
            outs.append(siren.forward(model.cfg, model.theta, d, coords, n).clamp_(-1, 1))
    return torch.cat(outs)


def empty_update_bytes(m: Model, header: dict, n_groups: int) -> int:
    """Size of the stream that sends no update entry at all: the smallest a SIREN image stream can be."""
    return len(bitstream.pack(header, empty_update(m, n_groups)))


def encode(model: Model, rgb: np.ndarray, header: dict, *, bpp: float | None, quality: int | None, rate: float,
           steps: int | None, effort: str, progress: bool, lam: float | None = None,
           from_scratch: bool = False, device=None) -> tuple[bytes, dict]:
    """rgb (H x W x 3 uint8) -> (stream, {"open", "note"}); bpp: the real size's target (at or just under);
    rate: the rate aimed at (bpp, or the quality's nominal rate: it sets the L0 weight and the open gates).
    `device` is ignored: the SIREN family fits on the CPU (its patches are small; only grid2 takes a GPU)."""
    if effort not in EFFORT:
        raise MscnError(f"effort {effort!r} is grid2's: the SIREN family encodes at {', '.join(EFFORT)}")
    h, w, _ = rgb.shape
    p = model.patch
    target = to_patches(rgb, p)
    lam = encode_lambda(rate) if lam is None else lam
    target_bytes = int(np.floor(bpp * h * w / 8)) if bpp is not None else None
    if target_bytes is not None:  # refuse an unreachable size before fitting, not after
        floor, dense = empty_update_bytes(model, header, target.shape[0]), bitstream.min_image_bytes(h, w)
        if target_bytes < max(floor, dense):
            raise below_minimum(bpp, target_bytes, w, h, max(floor, dense),
                                "at its coarsest setting (no update sent)" if floor >= dense else bitstream.DENSITY_NOTE)
    final, floor = fit_and_pack(model, grid_coords(p), target, header, lam=lam,
                                open_per_group=rate * p * p / BITS_PER_ENTRY * OPEN_HEADROOM,
                                target_bytes=target_bytes, quality=quality, effort=effort, steps=steps,
                                from_scratch=from_scratch, progress=progress)
    if final is None:
        raise below_minimum(bpp, target_bytes, w, h, floor, "at its coarsest setting")
    note = ""
    if target_bytes is not None and final.size < 0.95 * target_bytes:
        note = (f"target {bpp} bpp not reached: this model tops out at {8 * final.size / (h * w):.4f} bpp "
                f"for this image at effort '{effort}'")
    n_open = int(sum((s != 0).sum() for s in final.symbols.values()))
    return bitstream.pack(header, final.sections), {"open": n_open, "note": note}


def decode(model: Model, header: dict, sections: dict[str, bytes]) -> np.ndarray:
    """-> H x W x 3 uint8."""
    h, w, p = header["height"], header["width"], header["patch"]
    gh, gw = patch_grid(h, w, p)
    symbols, steps = unpack_update(model, sections, gh * gw)
    pred = render(model, dequantise_all(symbols, steps), gh * gw)
    return from_patches(pred, h, w, p)
