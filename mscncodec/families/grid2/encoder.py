"""Encode an image with the grid2 family (``--arch grid2``): the parts, in order.

1. *lambda first* (``rate_control.first_aim``): the analysis network predicts the latents, and lambda is
   aimed so that their estimated rate, grown by what the refinement adds, fits the target.
2. *Refinement* at that fixed lambda (``refine.py``, the effort's ``Preset``), of the latents and, for the
   ``+dense`` / ``+scratch`` variants, of an update of the decoder (``update.py``); where the refined
   stream's real size misses the target, lambda is aimed again (``rate_control.aim_again``).
3. *Packing on the real size* (``rate_control.fit_size``): latents are range-coded by the exact ARM
   (``latent_codec.py``); the latent step and then a dead zone (``quantizer.py``) put the real file at or
   just under the target.

Streams carry ``GRD2`` (lambda index, latent step index), the decoder update (``QPRM``/``MASK``/``VALS``,
only for variants that send one) and ``LATS``. Decoding: ``decoder.py``.

*Where it runs* (``device``): parts 1 and 2 (the analysis, the refinement, the rate estimates that steer them)
on the fit's device, a copy of the model there (``frame.on_device``); everything that touches the exact integer
ARM or the bytes (the decoder update's quantisation, ``tied_size``, part 3) on the CPU, the latents brought back
before they are quantised. So a stream encoded on a GPU decodes bit-exactly on any CPU.
"""

from __future__ import annotations

import hashlib
import logging
import math

import numpy as np
import torch

from mscncodec._runtime import resolve_device
from mscncodec.coding.latents import (MAX_DEADZONE, lambda_index, lambda_value, latent_step, pad_image,
                                      step_index_for, tied_step)
from mscncodec.container import bitstream
from mscncodec.errors import ModelFloorError, MscnError, below_minimum
from mscncodec.families.grid2 import frame, rate_control, tiles
from mscncodec.families.grid2 import refine as refinement
from mscncodec.families.grid2.config import GRD2
from mscncodec.families.grid2.frame import tiled_frame
from mscncodec.families.grid2.latent_codec import LatentCodec
from mscncodec.families.grid2.model import Grid2Model
from mscncodec.families.grid2.quantizer import deadzone_magnitudes, quantise, sparse_levels, symbols_of
from mscncodec.families.grid2.refine import PRESETS

log = logging.getLogger(__name__)

# The encoder's revision per variant: raised when an encoder's streams change while staying readable, so that
# the bench's cache keys (bench/inr.py reads the two names) change with them. History: docs/decisions/grid2-encoder.md.
ENCODER_REVISION = 4  # the plain models (variant "none")
UPDATE_REVISION = 10  # the variants that send a decoder update
VERSION = {"none": ENCODER_REVISION, "dense": UPDATE_REVISION, "scratch": UPDATE_REVISION}

EFFORT = {e: p.steps for e, p in PRESETS.items()}  # refinement steps per effort
UPDATE_EFFORT = {e: p.update_steps for e, p in PRESETS.items()}  # the same with a decoder update

# The smallest image a *routed* decoder update is used for, per effort: its 0.5-1.5 KB weigh more per pixel on a
# small image than they gain there.
UPDATE_MIN_PIXELS = {"default": 1 << 18}


def routed_update_fits(cfg, h: int, w: int, effort: str | None) -> bool:
    """Whether a decoder-update variant that routing chose should encode an h x w image: not below the
    effort's UPDATE_MIN_PIXELS, and not a tiled one (those variants refine the whole frame at once, ~1.45 GB
    per MP). Where it should not, the router takes the base model (image_codec._pick_model)."""
    return h * w >= UPDATE_MIN_PIXELS.get(effort or "default", 0) and not tiled_frame(cfg, h, w)


def container_bytes(model: Grid2Model, header: dict) -> int:
    """A lower bound on every grid2 stream of this header: the container, the GRD2 section, the decoder
    update only where it must be sent (+scratch, here all zero) and an empty latent section."""
    from mscncodec.coding.update import empty_update

    secs = empty_update(model) if model.sparsity == "scratch" else []
    return len(bitstream.pack(header, [GRD2.pack(**{"lambda": 0, "latent_step": 0}), *secs, ("LATS", b"")]))


def encode(model: Grid2Model, rgb: np.ndarray, header: dict, *, bpp: float | None, quality: int | None,
           steps: int | None, effort: str, progress: bool, rate: float | None = None, lam: float | None = None,
           from_scratch: bool = False, device=None, reconstruct: bool = False) -> tuple[bytes, dict]:
    """rgb (H x W x 3 uint8) -> (stream, info); `header` is the container header the caller built. `rate`,
    `lam` and `from_scratch` are the SIREN family's knobs and unused here: grid2 aims lambda itself, and its
    generic start is the +scratch variant. `device` (``_runtime.resolve_device``; default the CPU): where the
    fit runs. `reconstruct`: info["reconstruction"] is the image the stream decodes to, rendered on the CPU
    from the symbols and decoder parameters the encoder coded (what a check of decode exactness compares with)."""
    if model.sparsity not in VERSION:
        raise MscnError(f"the grid2 variant {model.sparsity!r} only decodes old streams; it encodes nothing")
    cfg = model.cfg
    h, w, _ = rgb.shape
    n_pix = h * w
    tiled = tiled_frame(cfg, h, w) and not model.sends_update
    x = tiles.padded_frame(rgb, cfg.align) if tiled else pad_image(rgb, cfg.align)  # tiled: uint8, float per tile
    preset = PRESETS[effort]
    n_steps = (preset.update_steps if model.sends_update else preset.steps) if steps is None else steps
    target_bytes = int(math.floor(bpp * n_pix / 8)) if bpp is not None else None
    overhead = bitstream.HEADER_SIZE + 8 * 5 + 8  # typical container bytes, for aiming lambda
    if target_bytes is not None:  # refuse a size no stream can have before any work
        floor, dense = container_bytes(model, header), bitstream.min_image_bytes(h, w)
        if target_bytes < max(floor, dense):
            raise below_minimum(bpp, target_bytes, w, h, max(floor, dense),
                                "for the container alone" if floor >= dense else bitstream.DENSITY_NOTE)
        latent_bits = 8 * max(target_bytes - overhead, 1)  # what the latents may spend (aim, not a bound)

    dev = resolve_device(device)
    if effort == "placebo" and dev.type == "cpu" and n_steps > PRESETS["max"].update_steps:
        log.warning("effort 'placebo' on the CPU: %d refinement steps, hours per photo (it is meant for a GPU: "
                    "--device cuda)", n_steps)
    fit = frame.on_device(model, dev)  # the model the fit uses (a copy on a GPU); `model` stays on the CPU
    x = x.to(dev)

    # 1. lambda, fixed from here on
    y0 = est0 = None
    if target_bytes is None:
        q = 50 if quality is None else quality
        lam_idx = lambda_index(2.0 ** (-3.0 - 10.0 * q / 100))
    else:
        lam_idx, y0, est0 = rate_control.first_aim(fit, x, latent_bits, n_steps, bpp)
    lam, step = lambda_value(lam_idx), tied_step(lam_idx)
    log.debug("lambda index %d (2^%.2f), step %.4g", lam_idx, math.log2(lam), step)
    if y0 is None:
        with torch.no_grad():
            if model.analysis:
                y0 = symbols_of(frame.analysis(fit, x, torch.tensor([lam])), torch.tensor([step]))
            else:
                y0 = [torch.zeros(1, 1, a, b, device=dev) for a, b in cfg.grid_shapes(h, w)]

    # 2. refinement at fixed lambda (the generic start searches its lambda first: it has no amortised rate)
    delta0 = None
    if model.sparsity == "scratch" and target_bytes is not None and n_steps >= 20:
        y0, delta0, lam_idx, n_steps = rate_control.scratch_search(fit, x, y0, lam_idx, n_steps, n_pix,
                                                                   latent_bits, preset)
        lam, step = lambda_value(lam_idx), tied_step(lam_idx)

    def refine_at(y_start: list[torch.Tensor], lam: float, step: float, delta0: dict | None = None):
        """The refinement on the fit's device; its latents and decoder parameters back on the CPU (the
        exact coder's side: tied_size, the size fit)."""
        y, cands, chosen = refinement.refine_chosen(fit, x, y_start, lam, step, n_steps, n_pix, tiled, progress,
                                                    delta0, preset)
        cands = {k: (secs, {n: t.cpu() for n, t in p.items()}) for k, (secs, p) in cands.items()}
        return [v.cpu() for v in y], cands, chosen

    y, candidates, chosen = refine_at(y0, lam, step, delta0)
    if target_bytes is not None and model.analysis and not tiled:  # 2b. the real size: aimed again where it misses
        lam_idx, y, candidates, chosen = rate_control.aim_again(fit, x, header, target_bytes, est0,
                                                                (lam_idx, y, candidates, chosen), refine_at)
        lam, step = lambda_value(lam_idx), tied_step(lam_idx)
    y0 = fit = None
    # from here on the CPU; a big image's frame is dropped: only the update variants' size fit ranks by distortion
    x = x.cpu() if model.sends_update else None

    # 3. the real size (the decoder update, if any, quantised as chosen above)
    yv = [v[0, 0].numpy().astype(np.float64) * step for v in y]  # latent values
    y = None

    def symbols(step_idx: int, deadzone: float) -> list[np.ndarray]:
        s = latent_step(step_idx)
        return [quantise(v, s, deadzone if l in sparse else 0.5, l, cap) for l, v in enumerate(yv)]

    packed: dict[bytes, tuple] = {}  # a stream's digest -> how it was quantised (for `reconstruct`)
    sizes: dict[tuple[int, float], int] = {}

    def pack(step_idx: int, deadzone: float = 0.5, coding: int | None = None) -> bytes:
        usecs, params = candidates[chosen]
        c = code_idx if coding is None else coding  # the context model's lambda (rate_control.coding_lambda)
        lats = LatentCodec(cfg, params, lambda_value(c)).compress(symbols(step_idx, deadzone))
        data = bitstream.pack(header, [GRD2.pack(**{"lambda": c, "latent_step": step_idx}), *usecs, ("LATS", lats)])
        sizes.setdefault((step_idx, deadzone), len(data))  # the first (tied step, plain) says if the fit cut
        if reconstruct:
            packed[hashlib.blake2b(data, digest_size=16).digest()] = (step_idx, deadzone, set(sparse), cap, chosen)
        return data

    def mse(step_idx: int, deadzone: float) -> float:
        s = np.float32(latent_step(step_idx))  # the decoder's latent values
        lat = [torch.from_numpy(v.astype(np.float32) * s)[None, None] for v in symbols(step_idx, deadzone)]
        return frame.mse(model, candidates[chosen][1], x, lat)

    def magnitudes(step_idx: int) -> np.ndarray:
        return deadzone_magnitudes(yv, latent_step(step_idx), sparse, cap)

    base_idx = step_index_for(lam)
    sparse = sparse_levels(yv, latent_step(base_idx))
    cap = MAX_DEADZONE  # the largest latent (in steps) the dead zone may zero
    code_idx = rate_control.coding_lambda(lambda c: len(pack(base_idx, 0.5, c)), lam_idx)
    sizes.clear()  # (those sizes were the search's)
    if code_idx != lam_idx:
        log.debug("context model conditioned on lambda index %d (aimed %d)", code_idx, lam_idx)
    best_of = mse if model.sends_update else None  # measured so far for the variants that refine with an update
    note, last_resort, dropped = "", False, False
    if target_bytes is None:
        data = pack(base_idx)
    else:
        data, _, biggest = rate_control.fit_size(pack, magnitudes, base_idx, target_bytes, best_of)
        if data is None and chosen is not None and model.sparsity != "scratch":
            chosen = None  # the decoder update's bytes do not fit: the shared decoder, no update sent
            data, _, biggest = rate_control.fit_size(pack, magnitudes, base_idx, target_bytes, best_of)
            dropped = data is not None
        if data is None and len(sparse) < len(yv):  # last resort: the dead zone on every grid (it costs
            sparse = set(range(len(yv)))           # distortion, but the file exists)
            data, _, biggest = rate_control.fit_size(pack, magnitudes, base_idx, target_bytes, best_of)
            last_resort = data is not None
        if data is None:  # the very last: a dead zone without a cap, down to the empty grids, whose cost is the
            sparse, cap = set(range(len(yv))), math.inf  # model's floor (what its context model charges for zeros)
            data, _, biggest = rate_control.fit_size(pack, magnitudes, base_idx, target_bytes, best_of)
            last_resort = data is not None
        if data is None:  # this model's floor, not the format's: a router may take a model made for lower rates
            raise below_minimum(bpp, target_bytes, w, h, len(pack(255, math.inf)),
                                f"at model {model.name}'s coarsest setting", ModelFloorError)
        if biggest < 0.95 * target_bytes:
            note = (f"target {bpp} bpp not reached: {8 * len(data) / n_pix:.4f} bpp at the finest latent step "
                    f"this encode allows (effort '{effort}')")
        elif len(data) < 0.95 * target_bytes:
            note = (f"target {bpp} bpp not reached: {8 * len(data) / n_pix:.4f} bpp decodes better than the bigger "
                    f"streams that fit (at finer latent steps)")
    # strained: the last resort; or the tied step overshoots at or above the largest lambda the model was trained
    # at (lambda cannot go further: the size fit cut); or the aim needed the top half octave of that range, where
    # the models routed above 0.125 bpp are poor: a router may try a model made for lower rates (it compares)
    top = rate_control.trained_top(model)
    strained = "" if target_bytes is None else (
        "every grid's small latents zeroed to fit" if last_resort else
        "cut to fit beyond its trained lambda range" if sizes.get((base_idx, 0.5), 0) > target_bytes and lam_idx >= top
        else "at the top of its trained lambda range" if lam_idx >= top - rate_control.TOP_RANGE else "")
    if dropped or last_resort:
        why = ["the decoder update did not fit: none sent"] * dropped + [strained] * last_resort
        note = "; ".join([*why, *([note] if note else [])])
        log.info("%s", note)
    n_sent = sum(v.numel() for v in model.theta.values()) if chosen is not None else 0
    info = {"note": note, "open": n_sent, "lambda": lam, "steps": n_steps, "strained": strained}
    if reconstruct:
        step_idx, deadzone, sparse, cap, chosen = packed[hashlib.blake2b(data, digest_size=16).digest()]
        info["reconstruction"] = frame.render(model, candidates[chosen][1], symbols(step_idx, deadzone),
                                              latent_step(step_idx), h, w)
    return data, info
