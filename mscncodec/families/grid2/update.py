"""The per-file decoder update of the variants that send one (``+dense``, ``+scratch``): its quantisation,
its sections (the update coder shared by the families, ``coding.update``) and the choice of its step."""

from __future__ import annotations

import logging
import math

import torch

from mscncodec.coding.quantize import dequantise, quantise, step_index
from mscncodec.families.grid2 import frame
from mscncodec.families.grid2.model import Grid2Model

log = logging.getLogger(__name__)

UPDATE_REL_STEPS = (0.0625, 0.125, 0.25, 0.5, 1.0)  # quantiser steps tried, relative to the rms of the sent entries


def update_sections(model: Grid2Model, values: dict[str, torch.Tensor], rel_step: float | None
                    ) -> tuple[list[tuple[str, bytes]], dict[str, torch.Tensor]]:
    """Quantise and code a dense update (rel_step None: all zero); -> sections, dequantised update."""
    from mscncodec.coding.update import pack_update

    symbols, steps = {}, {}
    for k, v in values.items():
        nz = v[v != 0]  # entries that never moved (exact zeros) do not set the step
        rms = float(nz.pow(2).mean().sqrt()) if nz.numel() else 1e-3
        steps[k] = step_index(max(rms, 1e-4) * (rel_step or 1.0))
        keep = torch.ones_like(v) * (rel_step is not None)
        symbols[k] = quantise(v[None], keep[None], steps[k])
    secs = pack_update(model, symbols, steps)
    return secs, {k: dequantise(s, steps[k])[0] for k, s in symbols.items()}


def effective(model: Grid2Model, delta: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The decoder parameters a file decodes with: theta0 plus its update."""
    if not delta:
        return model.theta
    return {k: model.theta[k] + delta[k] if k in delta else model.theta[k] for k in model.theta}


def choose_update(model: Grid2Model, x: torch.Tensor, y: list[torch.Tensor], delta: dict[str, torch.Tensor] | None,
                  lam: float, step: float, n_pix: int) -> tuple[dict, float | None, float]:
    """The decoder update's quantisation: {relative step or None: (sections, effective parameters)}, the
    key with the least estimated rate + distortion / lambda (None: no update; the generic start must send
    its decoder), and that cost. The update is quantised and added to theta0 on the CPU, as the decoder does,
    so the parameters the exact coder gets are the decoder's to the bit whatever device the fit ran on; the
    costs are measured on the fit's device (x's)."""
    candidates: dict = {None: ([], model.theta)}
    if delta is None:
        return candidates, None, math.inf
    on_cpu = frame.on_device(model, "cpu")
    delta = {k: v.cpu() for k, v in delta.items()}
    for rel in UPDATE_REL_STEPS if model.sparsity != "scratch" else UPDATE_REL_STEPS[:3]:
        secs, deq = update_sections(model, delta, rel)
        candidates[rel] = (secs, effective(on_cpu, deq))
    hard = [torch.round(v) for v in y]
    lam_t = torch.tensor([lam])
    best_j, chosen = math.inf, None
    for rel in [r for r in candidates if r is not None] + ([] if model.sparsity == "scratch" else [None]):
        secs, p = candidates[rel]
        p = {k: v.to(x.device) for k, v in p.items()}
        n_bytes = sum(len(b) for _, b in secs)
        with torch.no_grad():
            bits = frame.est_bits(model, p, y, lam_t) + 8 * n_bytes
        j = bits / n_pix + frame.mse(model, p, x, [v * step for v in hard]) / lam
        log.debug("update at relative step %s: %d B, estimated J %.4f", rel, n_bytes, j)
        if j < best_j:
            best_j, chosen = j, rel
    return candidates, chosen, best_j
