"""Encode and decode with the latent-grid family (``--arch grid``).

Encoding, for a target rate:

1. *Amortised start.* The analysis network predicts the latents for a range of
   lambdas; a bisection on the lambda table picks the one whose estimated rate is
   nearest the target (each try is one cheap forward pass).
2. *Refinement.* Adam on the latents (noise for the rate term, straight-through
   rounding for the synthesis, exact rounding for the last steps) and on the
   file's sparse gated update of the decoder networks (started with the model's
   Meta-SGD inner step), minimising rate + MSE / lambda. Every few steps lambda is
   nudged so the estimated rate tracks the target.
3. *Packing on the real size.* The update is quantised (step chosen by rate +
   distortion) and coded with the gate priors (as for SIREN); the latents are
   range-coded with the context model. The global latent step (sent as an index)
   and then a dead zone (zeroing the latents nearest zero) put the real file at or
   just under the target.

Streams carry: ``GRID`` (lambda index, latent step index), ``QPRM``/``MASK``/
``VALS`` (the network update, same coding as the SIREN family) and ``LATS``.
"""

from __future__ import annotations

import math
import os
import struct
import sys

import constriction
import numpy as np
import torch

from mscncodec._runtime import progress_bar
from mscncodec.coding import latents as lt
from mscncodec.container import bitstream
from mscncodec.families.grid import network as grid
from mscncodec.errors import BitstreamError, below_minimum
from mscncodec.coding.sparsity import gate_shift_for
from mscncodec.families.grid.train import BITS_PER_ENTRY, inner_loop, quantised_latents, rd_loss
from mscncodec.models import GridModel
from mscncodec.optim import Adam
from mscncodec.coding.quantize import dequantise, quantise, step_index
from mscncodec.coding.sparsity import deterministic_gate, prob_open, sample_gate
from mscncodec.coding.latents import MAX_DEADZONE, grid_header, latent_step, pad_image, step_index_for, tied_step

EFFORT = {"fast": 40, "default": 150, "max": 600}  # full-image refinement steps
LATENT_LR = {"gates": 0.2, "dense": 0.2, "scratch": 0.2}  # Adam on latents, in units of the latent step
DELTA_LR = 5e-3
GATE_LR = 3e-2
UPDATE_REL_STEPS = (0.0625, 0.125, 0.25, 0.5)  # update quantisation steps tried, relative to the rms of the sent entries
HARD_FRACTION = 0.2  # last fraction of refinement steps uses exact rounding for the rate too
CONTROL_EVERY = 5
OPEN_FRACTION = 1.0  # share of the update entries whose gates start open at encode time
FINER_STEPS = 32  # the final size fit may refine the latent step by at most an octave










def grid_shapes(cfg: grid.GridConfig, h: int, w: int) -> list[tuple[int, int]]:
    hp, wp = h + (-h % cfg.align), w + (-w % cfg.align)
    return [(hp // cfg.scale(l), wp // cfg.scale(l)) for l in range(cfg.levels)]


# ---------------------------------------------------------------- the latents' coder

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


def encode_latents(cfg, params, symbols: list[np.ndarray], lam_idx: int, step_idx: int) -> bytes:
    """Coarsest grid first; per grid the anchors, then the rest (the decoder's order)."""
    step = latent_step(step_idx)
    lam_t = torch.tensor([lt.lambda_value(lam_idx)])
    decoded = [torch.from_numpy(s.astype(np.float32) * np.float32(step))[None, None] for s in symbols]
    enc = constriction.stream.queue.RangeEncoder()
    for l in range(cfg.levels - 1, -1, -1):
        mask = grid.checkerboard(*symbols[l].shape).numpy().astype(bool)
        for first in (True, False):
            sel = mask if first else ~mask
            anchors = None if first else decoded[l] * torch.from_numpy(mask).float()
            mu, sc = _level_params(cfg, params, decoded, l, lam_t, sel, anchors, step)
            sym = symbols[l][sel].astype(np.int32)
            if sym.size:
                enc.encode(sym, _FAMILY, mu, sc)
    return enc.get_compressed().tobytes()


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


# ---------------------------------------------------------------- update (delta) packing

def _update_sections(model: GridModel, values: dict[str, torch.Tensor], sent: dict[str, torch.Tensor],
                     rel_step: float | None) -> tuple[list[tuple[str, bytes]], dict[str, torch.Tensor]]:
    """Quantise and code the update (rel_step None: send none of it); returns the sections and the
    dequantised update the decoder will see."""
    from mscncodec.coding.update import pack_update  # the SIREN family's update coding, shared

    symbols, steps = {}, {}
    for k, v in values.items():
        keep = sent[k].float() * (rel_step is not None)
        sel = v[sent[k]]
        rms = float(sel.pow(2).mean().sqrt()) if sel.numel() else 1e-3
        steps[k] = step_index(max(rms, 1e-4) * (rel_step or 1.0))
        symbols[k] = quantise(v, keep, steps[k])
    secs = pack_update(model, symbols, steps)
    return secs, {k: dequantise(s, steps[k]) for k, s in symbols.items()}


# ---------------------------------------------------------------- encode

LAMBDA_SEARCH = (lt.lambda_index(2.0**-13), lt.lambda_index(2.0**-1))  # a little beyond the trained range
SCRATCH_LAMBDA = lt.lambda_index(2.0**-9)


def _lambda_for(model: GridModel, x: torch.Tensor, target_bits: float) -> int:
    """Lambda index whose amortised latents have an estimated rate nearest the target (bisection)."""
    lo, hi = LAMBDA_SEARCH  # index up = larger lambda = lower rate

    def bits(i: int) -> float:
        lam = torch.tensor([lt.lambda_value(i)])
        step = torch.tensor([tied_step(i)])
        with torch.no_grad():
            lat = grid.analysis(model.cfg, model.analysis, x, lam)
            hard, _ = quantised_latents(lat, noisy=False, step=step)
            return float(grid.rate_bits(model.cfg, model.theta, hard, lam, step))

    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bits(mid) > target_bits:
            lo = mid
        else:
            hi = mid
    return hi


def container_bytes(model: GridModel, header: dict) -> int:
    """A lower bound on every grid stream of this header: the container, the GRID section, an update
    that sends nothing and an empty latent section."""
    from mscncodec.coding.update import empty_update

    return len(bitstream.pack(header, [("GRID", b"\0\0"), *empty_update(model), ("LATS", b"")]))


def encode(model: GridModel, rgb: np.ndarray, channels: int, *, bpp: float | None, quality: int | None,
           steps: int | None, effort: str, progress: bool) -> tuple[bytes, dict]:
    cfg = model.cfg
    h, w, _ = rgb.shape
    n_pix = h * w
    x = pad_image(rgb, cfg.align)
    header = {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": 1, "arch": 2,
              "model_id": model.model_id, "height": h, "width": w, "channels": channels, "patch": cfg.align}
    n_steps = EFFORT[effort] if steps is None else steps
    target_bytes = int(math.floor(bpp * n_pix / 8)) if bpp is not None else None

    if target_bytes is not None:  # refuse a size no stream can have before any work
        floor, dense = container_bytes(model, header), bitstream.min_image_bytes(h, w)
        if target_bytes < max(floor, dense):
            raise below_minimum(bpp, target_bytes, w, h, max(floor, dense),
                                "for the container alone" if floor >= dense else bitstream.DENSITY_NOTE)

    # 1. start: amortised latents at the lambda that fits the target, or zeros (generic start)
    if target_bytes is not None:
        overhead = bitstream.HEADER_SIZE + 5 * 8 + 64
        lam_idx = _lambda_for(model, x, 8 * max(target_bytes - overhead, 1)) if model.analysis else SCRATCH_LAMBDA
        if os.environ.get("MSCN_DEBUG"):
            print(f"[grid] amortised lambda index {lam_idx}", file=sys.stderr)
    else:
        q = 50 if quality is None else quality
        lam_idx = lt.lambda_index(2.0 ** (-6.0 - 7.0 * q / 100))
    lam = lt.lambda_value(lam_idx)
    if model.analysis:
        with torch.no_grad():
            start = grid.analysis(cfg, model.analysis, x, torch.tensor([lam]))
    else:
        start = [torch.zeros(1, 1, a, b) for a, b in grid_shapes(cfg, h, w)]
    latents = [z.detach().clamp(-grid.SYMBOL_RANGE, grid.SYMBOL_RANGE).requires_grad_(True) for z in start]

    # 2. refinement (the update starts with the model's meta-learned inner step)
    l0_scale = 1.0
    lam_t = torch.tensor([lam])
    gated = model.gated
    if gated and model.inner_steps:
        hard, _ = quantised_latents([z.detach() for z in latents], noisy=False, step=lt.step_for(lam_t))
        delta, la = inner_loop(model, x, hard, hard, lam_t, l0_scale, model.inner_steps, False, stochastic=False)
    else:
        delta = {k: torch.zeros(1, *s, requires_grad=True) for k, s in cfg.update_shapes().items()}
        la = {k: model.log_alpha[k].detach()[None].clone().requires_grad_(gated) for k in delta}
    if gated and OPEN_FRACTION > 0:
        # The prior was meta-learned on 128x128 crops and a single inner step, where an update rarely
        # pays; a whole image and hundreds of steps can afford far more. Lift the prior so that a share
        # of the entries starts open and let the L0 term close what does not pay (as for SIREN).
        n_all = sum(v.numel() for v in la.values())
        shift = gate_shift_for(model, OPEN_FRACTION * n_all)
        la = {k: (v.detach() + shift).requires_grad_(True) for k, v in la.items()}
    groups = [{"params": latents, "lr": LATENT_LR[model.sparsity] * tied_step(lam_idx)},
              {"params": list(delta.values()), "lr": DELTA_LR}]
    if gated:
        groups.append({"params": list(la.values()), "lr": GATE_LR})
    opt = Adam(groups)
    base_lr = [g["lr"] for g in opt.groups]
    log2_lam = math.log2(lam)
    bar = progress_bar(range(n_steps), progress=progress, desc="refine", leave=False, unit="step")
    for i in bar:
        frac = i / max(n_steps, 1)
        for g, b in zip(opt.groups, base_lr):
            g["lr"] = b * (0.5 * (1 + math.cos(math.pi * frac)) * 0.9 + 0.1)
        li = lt.lambda_index(2.0**log2_lam)
        lam_t = torch.tensor([lt.lambda_value(li)])
        step_t = torch.tensor([tied_step(li)])
        rate_lat, syn_lat = quantised_latents(latents, noisy=frac < 1 - HARD_FRACTION, step=step_t)
        params = _params(model, delta, la, stochastic=True)
        opened = _open_count(model, la)
        opt.zero_grad()
        loss, est_bpp, mse = rd_loss(cfg, params, x, rate_lat, syn_lat, lam_t, BITS_PER_ENTRY * opened, step_t, n_pix)
        loss.sum().backward()
        opt.step()
        if target_bytes is not None and (i + 1) % CONTROL_EVERY == 0 and i < n_steps - 1:
            with torch.no_grad():
                hard, _ = quantised_latents(latents, noisy=False, step=step_t)
                est = float(grid.rate_bits(cfg, params, hard, lam_t, step_t)) + BITS_PER_ENTRY * float(opened)
            ratio = est / (8 * max(target_bytes, 1) * 0.98)
            if os.environ.get("MSCN_DEBUG"):
                print(f"[grid] step {i + 1} log2lam={log2_lam:.2f} est={est / 8:.0f}B target={target_bytes} "
                      f"train_bpp={est_bpp.item():.3f} psnr={10 * math.log10(1 / max(mse.item(), 1e-12)):.2f}",
                      file=sys.stderr)
            log2_lam = float(np.clip(log2_lam + np.clip(0.7 * math.log2(max(ratio, 1e-3)), -0.3, 0.3),
                                     lt.LOG2_LAMBDA_MIN, lt.LOG2_LAMBDA_MIN + 255 / lt.LOG2_LAMBDA_STEPS))
        bar.set_postfix(bpp=f"{est_bpp.item():.3f}", psnr=f"{10 * math.log10(1 / max(mse.item(), 1e-12)):.2f}")
    lam_idx = lt.lambda_index(2.0**log2_lam)

    # 3. quantise the update, then fit the real size with the global latent step
    with torch.no_grad():
        if gated:
            gate = {k: deterministic_gate(v) for k, v in la.items()}
            values = {k: (gate[k] * delta[k]).detach()[0] for k in delta}
            sent = {k: (gate[k][0] > 0) for k in delta}
        else:
            values = {k: v.detach()[0] for k, v in delta.items()}
            sent = {k: torch.ones_like(v, dtype=torch.bool) for k, v in values.items()}
        # the update's quantisation step: the best rate + distortion / lambda over a few candidates
        lam_t = torch.tensor([lt.lambda_value(lam_idx)])
        step_t = torch.tensor([tied_step(lam_idx)])
        hard, _ = quantised_latents(latents, noisy=False, step=step_t)
        best_j = math.inf
        candidates = {}
        for rel in (*UPDATE_REL_STEPS, None):
            secs, deq = _update_sections(model, {k: v[None] for k, v in values.items()},
                                         {k: v[None] for k, v in sent.items()}, rel)
            p = grid.effective(model.theta, {k: v[0] for k, v in deq.items()})
            candidates[rel] = (secs, p)
            bits = float(grid.rate_bits(cfg, p, hard, lam_t, step_t)) + 8 * sum(len(b) for _, b in secs)
            mse = float((grid.synthesis(cfg, p, hard) - x).pow(2).mean())
            j = bits / n_pix + mse / float(lam_t)
            if j < best_j:
                best_j, chosen = j, rel
        y = [z.detach()[0, 0].numpy() for z in latents]

    def pack(step_idx: int, deadzone: float = 0.5) -> bytes:
        """The stream at this latent step; latents under `deadzone` steps in magnitude are sent as zero."""
        step = latent_step(step_idx)
        sym = []
        for v in y:
            r = v / step
            q = np.clip(np.round(r), -grid.SYMBOL_RANGE, grid.SYMBOL_RANGE)
            sym.append(np.where(np.abs(r) < deadzone, 0, q).astype(np.int32))
        usecs, params = candidates[chosen]
        lats = encode_latents(cfg, params, sym, lam_idx, step_idx)
        return bitstream.pack(header, [("GRID", struct.pack("<BB", lam_idx, step_idx)), *usecs, ("LATS", lats)])

    def magnitudes(step_idx: int) -> np.ndarray:
        """Sorted |latent| / step of the latents that round to +-1 (the dead zone's candidates)."""
        r = np.abs(np.concatenate([v.reshape(-1) for v in y])) / latent_step(step_idx)
        return np.sort(r[(r >= 0.5) & (r < MAX_DEADZONE)])

    base_idx = step_index_for(lt.lambda_value(lam_idx))
    note = ""
    if target_bytes is None:
        data = pack(base_idx)
    else:
        data, _ = _fit_size(pack, magnitudes, base_idx, target_bytes)
        if data is None and chosen is not None:  # a small image: the update itself does not fit
            chosen = None
            data, _ = _fit_size(pack, magnitudes, base_idx, target_bytes)
        if data is None:
            raise below_minimum(bpp, target_bytes, w, h, len(pack(255, MAX_DEADZONE)), "at its coarsest setting")
        if len(data) < 0.95 * target_bytes:
            note = (f"target {bpp} bpp not reached: {8 * len(data) / n_pix:.4f} bpp at the finest latent step "
                    f"this encode allows (effort '{effort}')")
    n_open = int(sum(int(v.sum()) for v in sent.values())) if gated else int(sum(v.numel() for v in values.values()))
    return data, {"note": note, "open": n_open, "lambda": lt.lambda_value(lam_idx), "steps": n_steps}


DEADZONE_ITERS = 12


def _fit_at(pack, magnitudes, idx: int, target: int) -> bytes | None:
    """Largest stream <= target at this latent step, zeroing the latents nearest zero; None if none fits.

    The dead-zone threshold is bisected over the sorted magnitudes of the latents
    that would round to +-1, so each try zeroes a given *number* of them: sizes move
    smoothly even when many latents sit near the same rounding boundary.
    """
    d = pack(idx)
    if len(d) <= target:
        return d
    mags = magnitudes(idx)
    if not mags.size or len(pack(idx, MAX_DEADZONE)) > target:
        return None
    lo, hi, best = 0, mags.size, None  # zero the lo..hi smallest
    for _ in range(DEADZONE_ITERS):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        d = pack(idx, float(np.nextafter(mags[mid - 1], np.inf)))
        if len(d) <= target:
            hi, best = mid, d
        else:
            lo = mid
    return best or pack(idx, MAX_DEADZONE)


def _fit_size(pack, magnitudes, base_idx: int, target: int) -> tuple[bytes | None, int]:
    """Hit the real size: the step tied to the final lambda first; coarser steps while nothing fits,
    finer ones (at most FINER_STEPS) while the file is clearly short. Sizes jump with the step
    (rounding decisions flip together), the dead zone fills in between."""
    idx, data = base_idx, _fit_at(pack, magnitudes, base_idx, target)
    while data is None and idx < 255:
        idx = min(idx + 4, 255)
        data = _fit_at(pack, magnitudes, idx, target)
    if data is None:
        return None, idx
    while len(data) < 0.97 * target and idx > base_idx - FINER_STEPS and idx > 0:
        d = _fit_at(pack, magnitudes, idx - 1, target)
        if d is None or len(d) <= len(data):
            break
        idx, data = idx - 1, d
    if os.environ.get("MSCN_DEBUG"):
        print(f"[grid] fitted: step index {idx} (tied {base_idx}), {len(data)} B of {target}", file=sys.stderr)
    return data, idx


def _params(model: GridModel, delta, la, stochastic: bool = False) -> dict[str, torch.Tensor]:
    """theta0 + gated update. Refinement samples the hard-concrete gates (as in meta-training): with the
    deterministic gate a closed entry has no gradient at all and could never open."""
    if model.gated:
        gate = sample_gate if stochastic else deterministic_gate
        return {k: model.theta[k] + (gate(la[k]) * delta[k])[0] for k in delta}
    return {k: model.theta[k] + delta[k][0] for k in delta}


def _open_count(model: GridModel, la) -> torch.Tensor:
    if model.gated:
        return sum(prob_open(v).sum() for v in la.values())
    return torch.tensor(float(sum(v.numel() for v in la.values())))


# ---------------------------------------------------------------- decode



def decode(model: GridModel, header: dict, sections: dict[str, bytes]) -> np.ndarray:
    """-> H x W x 3 uint8."""
    from mscncodec.coding.update import unpack_update

    cfg = model.cfg
    lam_idx, step_idx = grid_header(model, header, sections, "GRID")
    symbols, steps = unpack_update(model, sections, 1)
    params = grid.effective(model.theta, {k: dequantise(s, steps[k])[0] for k, s in symbols.items()})
    h, w = header["height"], header["width"]
    lat = decode_latents(cfg, params, sections["LATS"], grid_shapes(cfg, h, w), lam_idx, step_idx)
    with torch.no_grad():
        out = grid.synthesis(cfg, params, lat)[0, :, :h, :w]
    return (out.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
