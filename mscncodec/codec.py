"""The image codec: modality -> fit -> quantise -> entropy code -> container, and back.

Rate control aims at the real file size. After fitting, every update entry has a
value and a *score* (its gate logit for gated models, its magnitude relative to
the layer's spread for provisional ones). For a relative quantisation step s the
encoder bisects a score threshold tau so the packed file is as large as possible
without exceeding the target, tries a few s and keeps the lowest distortion, then
runs quantisation-aware steps on the chosen entries and re-packs (raising tau
again if those steps made the file grow).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import bitstream, siren
from .entropy import Decoder, Encoder, MaskModel, ValueModel
from .errors import BitstreamError, MscnError, RateError
from .fit import fit, gate_shift_for, mse_per_group
from .modalities import image as imod
from .optim import Adam
from .models import Model, default_model, find_by_id, load_model, model_modality
from .quantize import MAX_SYMBOL, dequantise, quantise, step_index, step_size, ste_round
from .sparsity import BETA, GAMMA, ZETA

EFFORT = {  # fitting steps before the rate cut, relative quantisation steps tried, masked QAT steps after it
    "fast": (40, (0.5,), 40),
    "default": (100, (0.35, 0.7), 60),
    "max": (400, (0.25, 0.5, 1.0), 200),
}
DECODE_CHUNK = 2048  # groups evaluated at once when rendering
_NEVER = -1e8  # score of an entry that must never be sent (closed gate)
_DENSE_LOG2_STEP = 8.0  # dense updates search relative steps in 2**[-8, 8]; the coarsest one is the floor


def mask_prior(model: Model, key: str) -> np.ndarray:
    """Logit of the meta-learned P(gate open) per entry (0 for ungated models)."""
    if not model.gated:
        return np.zeros(int(np.prod(model.cfg.update_shapes()[key])), np.float64)
    la = model.log_alpha[key].detach().numpy().astype(np.float64).reshape(-1)
    return la - BETA * np.log(-GAMMA / ZETA)


# ---------------------------------------------------------------- update <-> sections

def pack_update(model: Model, symbols: dict[str, np.ndarray], steps: dict[str, int]) -> list[tuple[str, bytes]]:
    qprm, enc_mask, enc_vals = bytearray(), Encoder(), Encoder()
    for k in model.cfg.update_shapes():
        sym = symbols[k].reshape(symbols[k].shape[0], -1)
        bits = (sym != 0).astype(np.int32)
        prior = mask_prior(model, k)
        mm = MaskModel(prior, MaskModel.best_offset(prior, bits))
        nz = sym[sym != 0]
        vm = ValueModel.fit(nz)
        qprm += struct.pack("<Bb", steps[k], mm.offset_q) + vm.to_bytes()
        enc_mask.bits(bits, mm.probs())
        enc_vals.values(nz, vm)
    return [("QPRM", bytes(qprm)), ("MASK", enc_mask.finish()), ("VALS", enc_vals.finish())]


def unpack_update(model: Model, sections: dict[str, bytes], n_groups: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    for tag in ("QPRM", "MASK", "VALS"):
        if tag not in sections:
            raise BitstreamError(f"corrupted .mscn file (missing section {tag})")
    buf, pos = memoryview(sections["QPRM"]), 0
    dm, dv = Decoder(sections["MASK"]), Decoder(sections["VALS"])
    symbols, steps = {}, {}
    for k, shape in model.cfg.update_shapes().items():
        if pos + 2 > len(buf):
            raise BitstreamError("corrupted .mscn file (quantisation parameters truncated)")
        idx, off = struct.unpack_from("<Bb", buf, pos)
        vm, pos = ValueModel.from_bytes(buf, pos + 2)
        bits = dm.bits(n_groups, MaskModel(mask_prior(model, k), off).probs())
        n_open = int(bits.sum())
        vals = dv.values(n_open, vm)
        sym = np.zeros(bits.shape, np.int32)
        sym[bits.astype(bool)] = vals
        symbols[k], steps[k] = sym.reshape(n_groups, *shape), idx
    if pos != len(buf):
        raise BitstreamError("corrupted .mscn file (trailing quantisation parameters)")
    return symbols, steps


def dequantise_all(symbols: dict[str, np.ndarray], steps: dict[str, int]) -> dict[str, torch.Tensor]:
    return {k: dequantise(s, steps[k]) for k, s in symbols.items()}


def render(model: Model, delta: dict[str, torch.Tensor], n_groups: int) -> torch.Tensor:
    """Evaluate all patches in chunks (bounded memory), -> (G, P*P, 3) clamped to [-1, 1]."""
    coords = imod.grid_coords(model.patch)
    outs = []
    with torch.no_grad():
        for a in range(0, n_groups, DECODE_CHUNK):
            d = {k: v[a : a + DECODE_CHUNK] for k, v in delta.items()}
            n = min(DECODE_CHUNK, n_groups - a)
            outs.append(siren.forward(model.cfg, model.theta, d, coords, n).clamp_(-1, 1))
    return torch.cat(outs)


# ---------------------------------------------------------------- encode

@dataclass
class _Trial:
    size: int
    symbols: dict[str, np.ndarray]
    steps: dict[str, int]
    sections: list[tuple[str, bytes]]


class _Packer:
    """Quantise + pack for a given (tau, s); the rate of a trial is the real stream length."""

    def __init__(self, model: Model, header: dict, values: dict[str, torch.Tensor], scores: dict[str, torch.Tensor],
                 base: dict[str, float]):
        self.model, self.header, self.values, self.scores, self.base = model, header, values, scores, base

    def steps_for(self, s: float) -> dict[str, int]:
        return {k: step_index(s * b) for k, b in self.base.items()}

    def trial(self, tau: float, s: float, values: dict[str, torch.Tensor] | None = None,
              steps: dict[str, int] | None = None) -> _Trial:
        """Before refinement (values=None) every selected entry is sent (at least +-1 step);
        after it, entries the refinement drove to zero are dropped."""
        min_one = values is None and self.model.sparsity != "dense"  # dense: the step size decides
        values = values or self.values
        steps = steps or self.steps_for(s)
        sym = {k: quantise(v, (self.scores[k] > tau).float(), steps[k], min_one=min_one)
               for k, v in values.items()}
        secs = pack_update(self.model, sym, steps)
        size = len(bitstream.pack(self.header, secs))
        return _Trial(size, sym, steps, secs)

    def fit_rate(self, target_bytes: int, s: float, values=None, steps=None, iters: int = 13) -> _Trial | None:
        """Largest trial with size <= target (bisection on tau); None if even 'nothing sent' is too big."""
        live = torch.cat([v[v > _NEVER].reshape(-1) for v in self.scores.values()])
        if live.numel() == 0:
            live = torch.zeros(1)
        lo, hi = float(live.min()) - 1.0, float(live.max()) + 1.0
        best = self.trial(hi, s, values, steps)
        if best.size > target_bytes:
            return None
        t = self.trial(lo, s, values, steps)
        if t.size <= target_bytes:
            return t
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            t = self.trial(mid, s, values, steps)
            if t.size <= target_bytes:
                hi, best = mid, t
            else:
                lo = mid
        return best


    def fit_rate_dense(self, target_bytes: int, iters: int = 14) -> _Trial | None:
        """Dense update (every entry sent unless it rounds to zero): bisect the step size instead."""
        lo, hi = -_DENSE_LOG2_STEP, _DENSE_LOG2_STEP  # log2 of the relative step
        # no finer than the step at which the largest value still fits the alphabet (with room for
        # refinement to grow it): a clipped symbol is a wrong value, not a coarse one
        need = max(float(v.abs().max()) / (self.base[k] * MAX_SYMBOL) for k, v in self.values.items())
        lo = min(max(lo, np.log2(max(need, 1e-30)) + 0.5), hi)
        best = self.trial(_NEVER, 2.0**hi)
        if best.size > target_bytes:
            return None
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            t = self.trial(_NEVER, 2.0**mid)
            if t.size <= target_bytes:
                hi, best = mid, t
            else:
                lo = mid
        return best


def _distortion(model: Model, coords, target, trial: _Trial) -> float:
    delta = dequantise_all(trial.symbols, trial.steps)
    with torch.no_grad():
        pred = siren.forward(model.cfg, model.theta, delta, coords, target.shape[0]).clamp(-1, 1)
    return float(mse_per_group(pred, target).mean())


QAT_LR = 3e-3


def _qat(model: Model, coords, target, trial: _Trial, steps: int, lr: float | None = None,
         progress: bool = False) -> dict[str, torch.Tensor]:
    """Quantisation-aware steps on the sent entries only (mask fixed, rounding with a straight-through gradient)."""
    masks = {k: torch.from_numpy(s != 0).float() for k, s in trial.symbols.items()}
    vals = {k: v.clone().requires_grad_(True) for k, v in dequantise_all(trial.symbols, trial.steps).items()}
    if steps <= 0:
        return {k: v.detach() for k, v in vals.items()}
    opt = Adam([{"params": list(vals.values()), "lr": lr or QAT_LR}])
    for _ in tqdm(range(steps), desc="refine sent entries", disable=not progress, leave=False, unit="step"):
        opt.zero_grad()
        eff = {k: masks[k] * ste_round(v, step_size(trial.steps[k])) for k, v in vals.items()}
        pred = siren.forward(model.cfg, model.theta, eff, coords, target.shape[0])
        mse_per_group(pred, target).sum().backward()
        opt.step()
    return {k: (v * masks[k]).detach() for k, v in vals.items()}


def fit_and_pack(m: Model, coords: torch.Tensor, target: torch.Tensor, header: dict, *, lam: float,
                 open_per_group: float, target_bytes: int | None, quality: int | None, effort: str,
                 steps: int | None, from_scratch: bool, progress: bool,
                 effort_table: dict[str, tuple[int, tuple[float, ...], int]] | None = None,
                 qat_lr: float | None = None) -> tuple[_Trial | None, int]:
    """The SIREN family's encoder for any modality: fit (inner loop + Adam), choose what to send, quantise,
    refine the sent entries, pack. `target_bytes`: the largest stream at or under it (the rate is the real
    stream length, header included); else `quality` sets the quantisation step. Returns (final trial,
    0), or (None, smallest possible size) when the target cannot be reached. `effort_table`: the
    modality's (fitting steps, relative quantisation steps, refinement steps) per effort, default EFFORT;
    `qat_lr` the refinement's learning rate (default QAT_LR)."""
    n_steps, rel_steps, qat_steps = (effort_table or EFFORT)[effort]
    if steps is not None:
        n_steps = steps
    shift = gate_shift_for(m, open_per_group)
    state = fit(m, coords, target, steps=n_steps, lam=lam, from_scratch=from_scratch, gate_shift=shift,
                progress=progress)
    with torch.no_grad():
        values = {k: v.detach() for k, v in state.effective(m, stochastic=False).items()}
        if m.gated:
            open_ = {k: v != 0 for k, v in values.items()}
        else:
            open_ = {k: torch.ones_like(v, dtype=torch.bool) for k, v in values.items()}
        base = {}
        for k, v in values.items():
            sel = v[open_[k]]
            base[k] = float(sel.pow(2).mean().sqrt()) if sel.numel() else 1e-3
            base[k] = max(base[k], 1e-4)  # a tiny step would let refinement run values off the alphabet
        if m.gated:  # gate logit; never send a closed gate
            scores = {k: torch.where(open_[k], state.log_alpha[k].detach(), torch.full_like(v, 2 * _NEVER))
                      for k, v in values.items()}
        else:
            scores = {k: v.abs() / base[k] for k, v in values.items()}
    packer = _Packer(m, header, values, scores, base)
    if target_bytes is not None:
        best, best_d = None, np.inf
        candidates = list(rel_steps if m.sparsity != "dense" else rel_steps[:1])
        while candidates:
            s = candidates.pop(0)
            t = packer.fit_rate_dense(target_bytes) if m.sparsity == "dense" else packer.fit_rate(target_bytes, s)
            if t is None:
                continue
            d = _distortion(m, coords, target, t)
            if d < best_d:
                best, best_d = t, d
            # every candidate entry is sent and the file is still short of the target:
            # spend the remaining bits on finer quantisation instead
            if not candidates and m.sparsity != "dense" and t.size < 0.95 * target_bytes and s > min(rel_steps) / 8:
                candidates.append(s / 2)
        if best is None:
            floor = packer.trial(_NEVER, 2.0**_DENSE_LOG2_STEP).size if m.sparsity == "dense" else packer.trial(np.inf, rel_steps[0]).size
            return None, floor
        refined = _qat(m, coords, target, best, qat_steps, lr=qat_lr, progress=progress)
        if m.sparsity == "dense":
            final = packer.trial(_NEVER, 1.0, values=refined, steps=best.steps)
            final = final if final.size <= target_bytes else best
        else:
            final = packer.fit_rate(target_bytes, 1.0, values=refined, steps=best.steps) or best
    else:
        q = 50 if quality is None else quality
        s = 0.5 * 2.0 ** ((50 - q) / 20)
        tau = _NEVER if m.sparsity != "magnitude" else 0.0
        first = packer.trial(tau, s)
        refined = _qat(m, coords, target, first, qat_steps, lr=qat_lr, progress=progress)
        final = packer.trial(tau, s, values=refined, steps=first.steps)
    return final, 0


def nominal_bpp(quality: int) -> float:
    """The nominal rate of a quality setting (0 -> 0.05, 50 -> 0.28, 100 -> 1.6 bpp).

    It picks the model and the encode-time L0 weight; the file size then follows from
    the quantisation step (no rate search), so real sizes differ: quality 50 gave
    0.9 bpp on examples/example.png. Use --bpp when the size matters.
    """
    return 0.05 * 2.0 ** (quality / 20)


def encode_lambda(bpp: float) -> float:
    """L0 weight for encode-time fitting at a target rate (tuned on held-out training photos).

    The loss is MSE (signal in [-1, 1]) + lam * E[open entries] / pixels-per-group;
    lower rates need proportionally sparser updates, hence lam ~ 1 / bpp.
    """
    return LAMBDA_RATE / bpp


LAMBDA_RATE = 0.2
BITS_PER_ENTRY = 8.0  # typical cost of one sent entry (mask + value), to size the gate prior
OPEN_HEADROOM = 4.0  # start with more open gates than the target needs; fitting closes the useless ones


def _pick_model(model, bpp: float | None, from_scratch: bool, arch: str | None = None):
    if model is not None and not isinstance(model, str):
        return model  # a Model or GridModel object
    if from_scratch:
        return load_model("random-w32d5")
    m = load_model(model) if model else default_model(bpp, arch)
    if model_modality(m) != "image":
        raise MscnError(f"model {m.name} codes {model_modality(m)}es, not images (see `mscn models`)")
    if arch is not None and m.arch != arch:
        raise MscnError(f"model {m.name} is a {m.arch} model, not {arch}")
    return m


def encode_image(
    image: str | Path | np.ndarray,
    *,
    bpp: float | None = None,
    quality: int | None = None,
    model: str | Model | None = None,
    steps: int | None = None,
    effort: str = "default",
    from_scratch: bool = False,
    lam: float | None = None,
    progress: bool = False,
    return_report: bool = False,
    arch: str | None = None,
    target_bytes: int | None = None,
):
    """Encode an image to .mscn bytes.

    bpp: target rate (real file size, at or just under); quality: 0-100 instead of a
    rate target (default 50 when neither is given). from_scratch: COIN-style
    baseline, a provisional SIREN init fitted with the same step budget. arch: "siren"
    or "grid" picks that family's default model (default: models/routing.json's).
    """
    if target_bytes is not None:
        if bpp is not None:
            raise MscnError("give either a byte target or bpp, not both")
        if not (isinstance(target_bytes, (int, np.integer)) and target_bytes > 0):
            raise MscnError(f"the byte target must be a positive integer, got {target_bytes}")
        image = imod.load(image)[0] if not isinstance(image, np.ndarray) else image
        h, w = image.shape[:2]
        bpp = (target_bytes + 0.5) * 8 / (h * w)  # floor(bpp * h * w / 8) == target_bytes
    if bpp is not None and quality is not None:
        raise MscnError("give either bpp or quality, not both")
    if bpp is not None and not (np.isfinite(bpp) and bpp > 0):
        raise MscnError(f"bpp must be a positive number, got {bpp}")
    if effort not in EFFORT:
        raise MscnError(f"unknown effort {effort!r} (fast, default, max)")
    with torch.random.fork_rng():  # deterministic: the same input and options give the same bytes
        torch.manual_seed(0)
        return _encode(image, bpp, quality, model, steps, effort, from_scratch, lam, progress, return_report, arch)


def _encode(image, bpp, quality, model, steps, effort, from_scratch, lam, progress, return_report, arch=None):
    t0 = time.perf_counter()
    rgb, channels = imod.load(image)
    rate = bpp if bpp is not None else nominal_bpp(50 if quality is None else quality)  # what we aim at
    m = _pick_model(model, rate, from_scratch, arch)
    if m.arch in ("grid", "grid2"):
        from . import grid2codec, gridcodec

        fam = gridcodec if m.arch == "grid" else grid2codec
        data, info = fam.encode(m, rgb, channels, bpp=bpp, quality=quality, steps=steps, effort=effort,
                                      progress=progress)
        return _finish(data, rgb, channels, m, t0, info["open"], info["note"]) if return_report else data
    h, w, _ = rgb.shape
    p = m.patch
    target = imod.to_patches(rgb, p)
    coords = imod.grid_coords(p)
    header = {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": 1, "arch": 1,
              "model_id": m.model_id, "height": h, "width": w, "channels": channels, "patch": p}

    lam = encode_lambda(rate) if lam is None else lam
    target_bytes = int(np.floor(bpp * h * w / 8)) if bpp is not None else None
    final, floor = fit_and_pack(m, coords, target, header, lam=lam, open_per_group=rate * p * p / BITS_PER_ENTRY * OPEN_HEADROOM,
                                target_bytes=target_bytes, quality=quality, effort=effort, steps=steps,
                                from_scratch=from_scratch, progress=progress)
    n_pix = h * w
    if final is None:
        raise RateError(f"target {bpp} bpp is below this codec's minimum for a {w}x{h} image "
                        f"({8 * floor / n_pix:.4f} bpp at its coarsest setting)")
    note = ""
    if target_bytes is not None and final.size < 0.95 * target_bytes:
        note = (f"target {bpp} bpp not reached: this model tops out at {8 * final.size / n_pix:.4f} bpp "
                f"for this image at effort '{effort}'")
    data = bitstream.pack(header, final.sections)
    if not return_report:
        return data
    return _finish(data, rgb, channels, m, t0, int(sum((s != 0).sum() for s in final.symbols.values())), note)


def _finish(data: bytes, rgb: np.ndarray, channels: int, m, t0: float, n_open: int, note: str) -> tuple[bytes, dict]:
    """The encode report: real size, PSNR of the decoded file, times."""
    t_enc = time.perf_counter() - t0
    t1 = time.perf_counter()
    out = decode(data)
    t_dec = time.perf_counter() - t1
    ref = imod.restore_channels(rgb, channels)
    n_pix = rgb.shape[0] * rgb.shape[1]
    report = {"bytes": len(data), "bpp": 8 * len(data) / n_pix, "psnr": imod.psnr(ref, out), "model": m.name,
              "arch": m.arch, "encode_s": t_enc, "decode_s": t_dec, "open": n_open, "note": note}
    return data, report


# ---------------------------------------------------------------- decode

def _model_for(header: dict) -> Model:
    m = find_by_id(header["model_id"])
    if m is None:
        raise BitstreamError(f"stream was made with model {header['model_id'].hex()}, which this decoder does not have "
                             "(see `mscn models`)")
    if m.patch != header["patch"]:
        what = "alignment" if m.arch in ("grid", "grid2") else "patch"
        raise BitstreamError(f"corrupted .mscn file ({what} {header['patch']} does not match model {m.name})")
    return m


def decode(data: bytes) -> np.ndarray:
    """.mscn bytes -> H x W (x C) uint8 array (the original's channel count)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MscnError("decode expects bytes")
    header, sections = bitstream.unpack(bytes(data))
    if header["modality"] != 1:
        raise BitstreamError(f"not an image stream (modality {bitstream.MODALITIES[header['modality']]}): "
                             "use mscncodec.decode")
    m = _model_for(header)
    if model_modality(m) != "image":
        raise BitstreamError(f"corrupted .mscn file (model {m.name} does not code images)")
    if m.arch != bitstream.ARCHS[header["arch"]]:
        raise BitstreamError(f"corrupted .mscn file (architecture {bitstream.ARCHS[header['arch']]} does not match "
                             f"model {m.name})")
    if m.arch in ("grid", "grid2"):
        from . import grid2codec, gridcodec

        fam = gridcodec if m.arch == "grid" else grid2codec
        return imod.restore_channels(fam.decode(m, header, sections), header["channels"])
    h, w, p = header["height"], header["width"], header["patch"]
    gh, gw = imod.patch_grid(h, w, p)
    symbols, steps = unpack_update(m, sections, gh * gw)
    pred = render(m, dequantise_all(symbols, steps), gh * gw)
    return imod.restore_channels(imod.from_patches(pred, h, w, p), header["channels"])


def describe(data: bytes) -> dict:
    """Header fields, per-section sizes and bpp (for `mscn info`)."""
    header, sections = bitstream.unpack(data)
    if header["modality"] != 1:
        raise BitstreamError(f"not an image stream (modality {bitstream.MODALITIES[header['modality']]})")
    d = bitstream.describe_header(header)
    m = find_by_id(header["model_id"])
    d["model"] = m.name if m else "(unknown to this decoder)"
    if m is not None and m.arch == "grid" and len(sections.get("GRID", b"")) == 2:
        from .grid import lambda_value
        from .gridcodec import latent_step

        li, si = struct.unpack("<BB", sections["GRID"])
        d["lambda"] = f"{lambda_value(li):.3g} (index {li})"
        d["latent_step"] = f"{latent_step(si):.4g} (index {si})"
    if m is not None and m.arch == "grid2" and len(sections.get("GRD2", b"")) == 2:
        from .grid import lambda_value
        from .gridcodec import latent_step

        li, si = struct.unpack("<BB", sections["GRD2"])
        d["lambda"] = f"{lambda_value(li):.3g} (index {li})"
        d["latent_step"] = f"{latent_step(si):.4g} (index {si})"
        d["update"] = "dense update of the decoder" if "QPRM" in sections else "none (shared decoder)"
    secs = {"header": bitstream.HEADER_SIZE, "table": 8 * header["n_sections"]}
    secs.update({k: len(v) for k, v in sections.items()})
    return {"header": d, "sections": secs, "bytes": len(data), "bpp": 8 * len(data) / (header["height"] * header["width"])}
