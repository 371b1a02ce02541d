"""Encode and decode with the grid2 family (``--arch grid2``).

Encoding, for a target rate:

1. *lambda first.* The analysis network predicts the latents; a bisection on the
   lambda table picks the lambda whose amortised latents' estimated rate fits the
   target. lambda then stays fixed for the whole refinement: nothing is steered on
   a proxy that rounding does not follow.
2. *Refinement* (C3's schedule, short): Adam on the latents (and, for the
   ``+dense`` / ``+scratch`` variants, on an update of the decoder), loss
   rate + MSE / lambda. Phase 1 (``SOFT_FRACTION`` of the steps): soft rounding
   around additive uniform noise, temperature annealed ``T0 -> T1``; phase 2: hard
   rounding with straight-through gradients at a tenth of the learning rate.
3. *Packing on the real size.* Latents are range-coded with the exact (integer)
   ARM, wave by wave in the decoder's order; the global latent step and then a
   dead zone put the real file at or just under the target (shared with ``grid``).

Streams carry ``GRD2`` (lambda index, latent step index), the decoder update
(``QPRM``/``MASK``/``VALS``, only for variants that send one) and ``LATS``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
import sys
from pathlib import Path

import constriction
import numpy as np
import torch

from mscncodec._runtime import progress_bar
from mscncodec.container import bitstream
from mscncodec.families.grid2 import network as grid2
from mscncodec.families.grid2 import tiles
from mscncodec.errors import BitstreamError, below_minimum
from mscncodec.coding.latents import LOG2_LAMBDA_STEPS as LAMBDA_STEPS_PER_OCTAVE, lambda_index, lambda_value
from mscncodec.families.grid2.train import ste, symbols_of
from mscncodec.coding.latents import MAX_DEADZONE, grid_header, latent_step, pad_image, step_index_for, tied_step
from mscncodec.models import Grid2Model, base_name, models_dir
from mscncodec.optim import Adam
from mscncodec.coding.quantize import dequantise, quantise, step_index
from mscncodec.coding.sparsity import deterministic_gate, prob_open, sample_gate

EFFORT = {"fast": 8, "default": 50, "max": 400}  # refinement steps over the whole image (Kodak, 2 threads: ~10 s, ~25 s, ~2 min)
# The variants that send a decoder update (default's route from 2^18 pixels and 0.125 bpp up, max) refine longer
# at `default`: the faster step (benchmarks/grid2-speed/stepcost-*.json, 0.58x on one thread) spent on steps. On
# the two held-out Kodak-size crops (beach_sun, ruin_sun, 512x768; 0.25 / 0.5 / 1.0 bpp) 80 steps gave +0.41 to
# +0.96 dB over 50 (mean +0.68) at equal size; 120 gave about +0.2 dB more at 1.5x the time. The plain model's
# routes keep EFFORT: at `fast` 14 steps were level with 8 there (mean +0.05 dB).
UPDATE_EFFORT = {**EFFORT, "default": 80}
LATENT_LR = 0.05  # Adam on latents, in symbol units
LONG_STEPS, LONG_LATENT_LR = 100, 0.02  # refinements longer than LONG_STEPS move the latents slower. Measured
# on a held-out photo at lambda 2^-8 (rate + D / lambda, the start 1.518): 50 steps are best at 0.05 (of 0.01,
# 0.02, 0.05); at 0.05, 200 steps give 1.380, 400 give 1.473, 1000 give 2.022 (the soft phase drifts where
# rounding costs); at 0.02, 400 steps give 1.375; 2000 steps at 0.01 give 1.558. So `max` stops at 400.
DELTA_LR = 3e-3  # a dense update of the meta-learned decoder. Measured on a held-out photo at lambda 2^-8, 400
# steps (rate + D / lambda of the rounded latents, update not counted; the start 1.518, latents only 1.369):
# 1e-3 1.148, 3e-3 1.114, 1e-2 1.104; at 50 steps 3e-3 1.338, 1e-2 1.352, 3e-2 diverges (2.16)
SCRATCH_DELTA_LR = 1e-2  # the generic start fits its whole decoder (C3's rate)
SEARCH_FRACTION = 0.15  # the generic start's lambda search: this share of the steps at a first guess
SOFT_FRACTION = 0.8  # phase 1 (soft rounding + noise) share of the steps; phase 2 hard rounding (at HARD_LR it is
# neutral: 400 steps on a held-out photo, 1.374 vs 1.368 without it, 1.115 vs 1.114 with a dense update; longer or
# faster straight-through phases raise the rounded cost: all 400 steps hard 1.518 -> 2.106)
T0, T1 = 0.3, 0.1  # soft-rounding temperature, annealed geometrically over phase 1
NOISE0, NOISE1 = 1.0, 1.0  # width of the additive uniform noise (in steps), annealed geometrically over phase 1
HARD_LR = 0.1  # phase 2 learning rate, relative
UPDATE_REL_STEPS = (0.0625, 0.125, 0.25, 0.5, 1.0)  # relative to the rms of the sent entries; a 50-step update
# (held-out 113016.jpg, lambda 2^-5 and 2^-8) rounds best at 1.0: 583 B where 0.5 takes 822 B for less J
LAMBDA_SEARCH = (lambda_index(2.0**-14), lambda_index(2.0**-2))
LAMBDA_TRIES = 4  # secant steps of the lambda search (after two first tries)
ARCH_CODE = 3  # bitstream.ARCHS
ENCODER_REVISION = 3  # bench cache keys (bench/inr.py); 2: lambda aimed again on overshoot, dead zone on sparse grids;
# 3: the plain models get the third aim too (AIMS), and every aim's real size is measured
UPDATE_REVISION = 8  # the same for the variants that send a decoder update; 3: lambda aimed again as for the
# others, the update learns at DELTA_LR 3e-3, the latents at LATENT_LR however long the refinement; 4: a third aim
# (AIMS), and the amortised start kept where the refined file is worse; 5: the coarser update step 1.0
# and the variant's own rate-growth calibration; 6: the third aim neither follows sizes that do not fall with
# lambda nor extrapolates far (_secant_index); 7: the size fit takes the stream that decodes best among those
# that fit, not the biggest (fit_size's `mse`; the plain model's streams are unchanged until it is measured there);
# 8: 80 refinement steps at `default` (UPDATE_EFFORT), and the faster step (values equal to float rounding)

_FAMILY = constriction.stream.model.QuantizedLaplace(-grid2.SYMBOL_RANGE, grid2.SYMBOL_RANGE + 1)


def grid_shapes(cfg: grid2.Grid2Config, h: int, w: int) -> list[tuple[int, int]]:
    hp, wp = h + (-h % cfg.align), w + (-w % cfg.align)
    return [(hp >> l, wp >> l) for l in range(cfg.levels)]


def soft_round(y: torch.Tensor, t: float) -> torch.Tensor:
    """C3's soft rounding: identity as t -> inf, rounding as t -> 0, differentiable in between."""
    m = torch.floor(y) + 0.5
    return m + 0.5 * torch.tanh((y - m) / t) / math.tanh(0.5 / t)


# ---------------------------------------------------------------- the latents' coder (exact ARM, wavefronts)

def _level_plan(arm: grid2.FixedArm, coarse: np.ndarray | None, shape: tuple[int, int], level: int, lam_q: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latents in wave order, wave bounds, constant first-layer part in wave order) of one grid."""
    h, w = shape
    waves = grid2.wave_order(h, w)
    order = np.concatenate(waves)
    bounds = np.cumsum([0] + [len(v) for v in waves])
    pre = grid2.coarse_fixed(arm, coarse, shape)[order]
    pre += arm.bias(level, lam_q)
    return order, bounds, pre


ARM_CHUNK = 1 << 18  # latents per exact-ARM evaluation on big grids: bounds the float64 work arrays


def _flat_wave_order(h: int, w: int, bounds: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(np.concatenate(grid2.wave_order(h, w)), the waves' bounds in it, or None if not asked for) without
    the list of waves: the stable argsort that wave_order slices (wave indices in int32: half the memory,
    the same order), and the same bounds."""
    t = (np.arange(w, dtype=np.int32)[None, :] + grid2.WAVE_K * np.arange(h, dtype=np.int32)[:, None]).reshape(-1)
    order = np.argsort(t, kind="stable")
    return order, (np.searchsorted(t[order], np.arange(t.max() + 2)) if bounds else None)


COARSE_TABLE_BYTES = 64 << 20  # the coarser grid's first-layer terms are computed once per grid up to this size


def coarse_term(arm: grid2.FixedArm, coarse: np.ndarray | None) -> np.ndarray | None:
    """`grid2.coarse_table` where it fits COARSE_TABLE_BYTES (a Kodak image's full-resolution grid: 16 MB),
    else None: coarse_rows then computes each chunk's rows from the symbols."""
    if coarse is None or coarse.size * arm.wc.shape[1] * 8 > COARSE_TABLE_BYTES:
        return None
    return grid2.coarse_table(arm, coarse)


def coarse_rows(arm: grid2.FixedArm, coarse: np.ndarray | None, idx: np.ndarray, w: int,
                table: np.ndarray | None = None) -> np.ndarray:
    """`grid2.coarse_fixed(...)[idx]` computed for the latents idx (flat, grid width w) only: the same integer
    products, so the same values, without the (h*w, H) array of the whole grid. `table`: the coarser grid's
    `coarse_term`, gathered instead of recomputed per latent (4x fewer products)."""
    if coarse is None:
        return np.zeros((len(idx), arm.wc.shape[1]))
    cy, cx = idx // w // 2, idx % w // 2
    if table is not None:
        return table[cy * coarse.shape[1] + cx]
    cp = grid2.coarse_padded(coarse)
    cols = np.stack([cp[1 + dy + cy, 1 + dx + cx] for dy, dx in grid2.COARSE], 1)
    return cols @ arm.wc


def _level_params_chunked(arm: grid2.FixedArm, sym: np.ndarray, coarse: np.ndarray | None, level: int,
                          lam_q: float):
    """(symbols, means, scales) of one grid in wave order, ARM_CHUNK latents at a time. Why: the one-pass
    arrays cost ~0.5 KB per latent (12 GB at 24 MP). The ARM is exact integer arithmetic, so every chunking
    gives the same indices as the one pass (and as the decoder's waves)."""
    h, w = sym.shape
    order, _ = _flat_wave_order(h, w, bounds=False)
    # int16 holds every symbol (|s| <= 255) exactly; arm_head converts the gathered neighbours to float64
    zp = np.pad(sym.astype(np.int16), ((grid2.PAD_T, 0), (grid2.PAD_L, grid2.PAD_R))).reshape(-1)
    offs = grid2.neighbour_offsets(w)[None, :]
    bias = arm.bias(level, lam_q)
    flat = sym.reshape(-1)
    table = coarse_term(arm, coarse)
    for a in range(0, len(order), ARM_CHUNK):
        idx = order[a:a + ARM_CHUNK]
        pre = coarse_rows(arm, coarse, idx, w, table)
        pre += bias
        mu, sc = grid2.coder_params(*grid2.arm_head(arm, zp[grid2.padded_index(idx, w)[:, None] + offs], pre))
        yield flat[idx].astype(np.int32), mu, sc


def encode_latents(arm: grid2.FixedArm, symbols: list[np.ndarray], lam_q: float) -> bytes:
    """Coarsest grid first; within a grid the decoder's wave order. The probabilities of every latent are
    computed in one pass (in chunks on big grids); the exact arithmetic makes them equal to the decoder's
    wave-by-wave ones."""
    enc = constriction.stream.queue.RangeEncoder()
    levels = len(symbols)
    for l in range(levels - 1, -1, -1):
        sym = np.clip(symbols[l], -grid2.SYMBOL_RANGE, grid2.SYMBOL_RANGE)
        coarse = symbols[l + 1] if l + 1 < levels else None
        if sym.size > ARM_CHUNK:
            for s_, mu, sc in _level_params_chunked(arm, sym, coarse, l, lam_q):
                enc.encode(s_, _FAMILY, mu, sc)
            continue
        order, _, pre = _level_plan(arm, coarse, sym.shape, l, lam_q)
        mi, si = grid2.arm_head(arm, grid2.all_neighbours(sym)[order], pre)
        mu, sc = grid2.coder_params(mi, si)
        enc.encode(sym.reshape(-1)[order].astype(np.int32), _FAMILY, mu, sc)
    return enc.get_compressed().tobytes()


def decode_latents(arm: grid2.FixedArm, data: bytes, shapes: list[tuple[int, int]], lam_q: float) -> list[np.ndarray]:
    """Wave by wave: all latents with equal x + 3y of one grid in one ARM evaluation and one decode call."""
    if len(data) % 4:
        raise BitstreamError("corrupted .mscn file (latent section length is not a multiple of 4)")
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, np.uint32).copy())
    levels = len(shapes)
    out: list[np.ndarray] = [None] * levels  # type: ignore[list-item]
    for l in range(levels - 1, -1, -1):
        h, w = shapes[l]
        coarse = out[l + 1] if l + 1 < levels else None
        if h * w > ARM_CHUNK:  # big grid: the first-layer term per block of waves, not (h*w, H) at once
            order, bounds = _flat_wave_order(h, w)
            pre = _BlockedPre(arm, coarse, order, w, arm.bias(l, lam_q))
        else:
            order, bounds, pre = _level_plan(arm, coarse, (h, w), l, lam_q)
        zp = np.zeros((h + grid2.PAD_T) * (w + grid2.PAD_L + grid2.PAD_R))
        pos = grid2.padded_index(order, w)
        offs = grid2.neighbour_offsets(w)[None, :]
        head, coder, decode = grid2.arm_head, grid2.coder_params, dec.decode
        for a, b in zip(bounds[:-1], bounds[1:]):
            pw = pos[a:b]
            mu, sc = coder(*head(arm, zp[pw[:, None] + offs], pre[a:b]))
            try:
                zp[pw] = decode(_FAMILY, mu, sc)
            except (AssertionError, ValueError):
                raise BitstreamError("corrupted .mscn file (invalid latent data)") from None
        out[l] = zp.reshape(h + grid2.PAD_T, -1)[grid2.PAD_T:, grid2.PAD_L : grid2.PAD_L + w].astype(np.int32)
    return out


class _BlockedPre:
    """`pre[a:b]` of a big grid's latents in wave order, computed ARM_CHUNK latents at a time as the waves
    reach them (the same integers as `_level_plan`'s whole-grid array, a block of it in memory)."""

    def __init__(self, arm: grid2.FixedArm, coarse: np.ndarray | None, order: np.ndarray, w: int,
                 bias: np.ndarray) -> None:
        self.arm, self.coarse, self.order, self.w, self.bias = arm, coarse, order, w, bias
        self.table = coarse_term(arm, coarse)
        self.start, self.block = 0, np.zeros((0, len(bias)))

    def __getitem__(self, sl: slice) -> np.ndarray:
        a, b = sl.start, sl.stop
        if not (self.start <= a and b <= self.start + len(self.block)):
            self.start = a
            idx = self.order[a:max(b, a + ARM_CHUNK)]
            self.block = coarse_rows(self.arm, self.coarse, idx, self.w, self.table)
            self.block += self.bias
        return self.block[a - self.start:b - self.start]


# ---------------------------------------------------------------- decoder update (variants +dense, +scratch)

def _update_sections(model: Grid2Model, values: dict[str, torch.Tensor], rel_step: float | None
                     ) -> tuple[list[tuple[str, bytes]], dict[str, torch.Tensor]]:
    """Quantise and code a dense update (rel_step None: all zero); -> sections, dequantised update."""
    from mscncodec.coding.update import pack_update  # the update coder shared by the families

    symbols, steps = {}, {}
    for k, v in values.items():
        nz = v[v != 0]  # a gated update: the step follows the entries it sends
        rms = float(nz.pow(2).mean().sqrt()) if nz.numel() else 1e-3
        steps[k] = step_index(max(rms, 1e-4) * (rel_step or 1.0))
        keep = torch.ones_like(v) * (rel_step is not None)
        symbols[k] = quantise(v[None], keep[None], steps[k])
    secs = pack_update(model, symbols, steps)
    return secs, {k: dequantise(s, steps[k])[0] for k, s in symbols.items()}


def _effective(model: Grid2Model, delta: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    if not delta:
        return model.theta
    return {k: model.theta[k] + delta[k] if k in delta else model.theta[k] for k in model.theta}


# ---------------------------------------------------------------- encode

def tiled_frame(cfg: grid2.Grid2Config, h: int, w: int) -> bool:
    """Whether an h x w image (padded to the grids' alignment) is worked on tile by tile."""
    return tiles.is_tiled(h + (-h % cfg.align), w + (-w % cfg.align))


# The smallest image a *routed* decoder update is used for, per effort: its 0.5-1.5 KB weigh more per pixel on a
# small image. At 50 steps (default) it was level with no update on 320x480 crops of held-out photos (-0.89 vs
# -0.87 dB against JPEG 2000), +0.22 dB on 512x768 ones, and 0.39 dB worse on the bundled 256x256 example; at
# 400 steps (max) it paid on the 320x480 crops (+0.87 dB over default).
UPDATE_MIN_PIXELS = {"default": 1 << 18}


def routed_update_fits(cfg: grid2.Grid2Config, h: int, w: int, effort: str | None) -> bool:
    """Whether a decoder-update variant that routing chose should encode an h x w image: not below the
    effort's UPDATE_MIN_PIXELS, and not a tiled one (those variants refine the whole frame at once, ~1.45 GB
    per MP). Where it should not, the router takes the base model (image_codec._pick_model)."""
    return h * w >= UPDATE_MIN_PIXELS.get(effort or "default", 0) and not tiled_frame(cfg, h, w)


def _big(x: torch.Tensor) -> bool:
    """Whether a (padded) frame or full-resolution grid is worked on tile by tile (families/grid2/tiles.py)."""
    return tiles.is_tiled(*x.shape[2:])


def _analysis(model: Grid2Model, x: torch.Tensor, lam: torch.Tensor) -> list[torch.Tensor]:
    return (tiles.analysis if _big(x) else grid2.analysis)(model.cfg, model.analysis, x, lam)


def _rate(model: Grid2Model, params, values: list[torch.Tensor], ctx: list[torch.Tensor], lam: torch.Tensor):
    return (tiles.rate_bits if _big(values[0]) else grid2.rate_bits)(model.cfg, params, values, ctx, lam)


def _synthesis(model: Grid2Model, params, latents: list[torch.Tensor]) -> torch.Tensor:
    return (tiles.synthesis if _big(latents[0]) else grid2.synthesis)(model.cfg, params, latents)


def _est_bits(model: Grid2Model, params, y: list[torch.Tensor], lam: torch.Tensor) -> float:
    hard = [torch.round(v) for v in y]
    return float(_rate(model, params, hard, hard, lam))


def _rd_cost(model: Grid2Model, params, x: torch.Tensor, y: list[torch.Tensor], lam: float, step: float,
             n_pix: int) -> float:
    """Estimated bpp + MSE / lambda of the rounded latents y (symbol units)."""
    hard = [torch.round(v) for v in y]
    with torch.no_grad():
        bits = float(_rate(model, params, hard, hard, torch.tensor([lam])))
    return bits / n_pix + _mse(model, params, x, [v * step for v in hard]) / lam


def _mse(model: Grid2Model, params, x: torch.Tensor, latents: list[torch.Tensor]) -> float:
    """Mean squared error (0..1 scale) of the synthesis from latent values against the (padded) frame x."""
    with torch.no_grad():
        if _big(x):
            return tiles.squared_error(model.cfg, params, latents, x) / x.numel()
        return float((grid2.synthesis(model.cfg, params, latents) - x).pow(2).mean())


def _lambda_for(model: Grid2Model, x: torch.Tensor, target_bits: float, guess: int
                ) -> tuple[int, list[torch.Tensor], float]:
    """(lambda index, its amortised latents in symbol units, their estimated bits) for the index whose
    estimated rate is nearest the target: secant steps on log(rate) against the index (close to linear),
    from `guess`; each try is one analysis + ARM pass, and the chosen try's latents are returned so the
    encoder need not run the analysis again (only the two current candidates are kept: bounded memory)."""
    lo, hi = LAMBDA_SEARCH  # index up = larger lambda = lower rate
    tries: dict[int, tuple[list[torch.Tensor], float]] = {}

    def log_bits(i: int) -> float:
        lam = torch.tensor([lambda_value(i)])
        with torch.no_grad():
            y = symbols_of(_analysis(model, x, lam), torch.tensor([tied_step(i)]))
            tries[i] = (y, _est_bits(model, model.theta, y, lam))
        return math.log(max(tries[i][1], 1.0))

    goal = math.log(max(target_bits, 1.0))
    i0 = int(np.clip(guess, lo, hi))
    f0 = log_bits(i0) - goal
    i1 = int(np.clip(i0 + (16 if f0 > 0 else -16), lo, hi))
    f1 = log_bits(i1) - goal
    for _ in range(LAMBDA_TRIES):
        if i1 == i0 or abs(f1) < 0.01:
            break
        slope = (f1 - f0) / (i1 - i0)
        nxt = int(np.clip(round(i1 - f1 / slope), lo, hi)) if slope < 0 else int(np.clip(i1 + (16 if f1 > 0 else -16), lo, hi))
        if nxt == i1:
            break
        tries.pop(i0, None)
        i0, f0, i1 = i1, f1, nxt
        f1 = log_bits(i1) - goal
    best = i1 if abs(f1) <= abs(f0) else i0
    return (best, *tries[best])


def growth_file(model: Grid2Model) -> Path:
    """models/NAME.growth.json: the model's rate-growth calibration (benchmarks/grid2_calibrate.py); a
    variant that sends a decoder update has its own where one was measured (the update both lowers the
    latents' rate and costs bytes), else it shares its base model's."""
    own = models_dir() / f"{model.name}.growth.json"
    return own if own.exists() else models_dir() / f"{base_name(model.name)}.growth.json"


@functools.cache
def _growth_table(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(log(1 + steps), log(ratio)) knots of the measured rate growth; none: no correction."""
    try:
        g = json.loads(path.read_text())["growth"]
    except (OSError, ValueError, KeyError):
        return (0.0,), (0.0,)
    pts = sorted((int(k), float(v)) for k, v in g.items())
    return (0.0, *(math.log1p(k) for k, _ in pts)), (0.0, *(math.log(max(v, 1e-3)) for _, v in pts))


def rate_growth(model: Grid2Model, n_steps: int) -> float:
    """How much an n-step refinement at fixed lambda raises the rate over the amortised start (measured on
    held-out natural-train photos; interpolated in log steps, extrapolated with the last slope, capped)."""
    xs, ys = _growth_table(growth_file(model))
    u = math.log1p(max(n_steps, 0))
    if len(xs) < 2 or u <= xs[-1]:
        return float(math.exp(np.interp(u, xs, ys)))
    slope = (ys[-1] - ys[-2]) / max(xs[-1] - xs[-2], 1e-9)
    return float(min(math.exp(ys[-1] + slope * (u - xs[-1])), 4.0))


def scratch_lambda(bpp: float) -> int:
    """A fixed bpp -> lambda map (rough, from the trained model's operating points): the generic start's
    lambda (it has no analysis net to measure a rate with; the size fit does the rest), and the first
    guess of the search for the others."""
    return lambda_index(2.0 ** float(np.clip(-8.0 - 3.2 * math.log2(max(bpp, 1e-3) / 0.4), -14, -2)))


def refine(model: Grid2Model, x: torch.Tensor, y0: list[torch.Tensor], lam: float, step: float, n_steps: int,
           n_pix: int, progress: bool = False, update: bool = False, delta0: dict[str, torch.Tensor] | None = None,
           tile: tiles.Tile | None = None) -> tuple[list[torch.Tensor], dict[str, torch.Tensor] | None, list[dict]]:
    """C3-style refinement at fixed lambda. y0: latents in symbol units. Returns the latents, the decoder
    update (if `update`; started at `delta0` if given) and a per-step log (phase, temperature, estimated
    bpp, PSNR). `tile`: x and y0 are that tile's outer box, and the loss counts its interior only (the
    margin is context; see refine_tiled)."""
    cfg = model.cfg
    lam_t = torch.tensor([lam])
    y = [v.detach().clone().requires_grad_(True) for v in y0]
    # a decoder that moves with the latents keeps the long refinement from drifting: the latents keep their
    # rate (at 400 steps with DELTA_LR: 1.088 at LATENT_LR, 1.114 at LONG_LATENT_LR)
    slow = n_steps > LONG_STEPS and not update
    groups = [{"params": y, "lr": LONG_LATENT_LR if slow else LATENT_LR}]
    delta = None
    if update:
        delta = {k: (delta0[k].detach().clone() if delta0 else torch.zeros_like(v)).requires_grad_(True)
                 for k, v in model.theta.items()}
        groups.append({"params": list(delta.values()), "lr": SCRATCH_DELTA_LR if model.sparsity == "scratch"
                       else DELTA_LR})
    gates = None
    if update and model.sparsity == "gated":  # MSCN's L0 gates on the update, inside the refinement
        gates = {k: torch.full_like(v, GATE_INIT, requires_grad=True) for k, v in model.theta.items()}
        groups.append({"params": list(gates.values()), "lr": GATE_LR})
    opt = Adam(groups)
    base = [g["lr"] for g in opt.groups]
    n_soft = int(round(SOFT_FRACTION * n_steps))
    log = []
    bar = progress_bar(range(n_steps), progress=progress, desc="refine", leave=False, unit="step")
    for i in bar:
        soft = i < n_soft
        frac = i / max(n_soft, 1) if soft else (i - n_soft) / max(n_steps - n_soft, 1)
        scale = (0.5 * (1 + math.cos(math.pi * frac)) * 0.9 + 0.1) * (1.0 if soft else HARD_LR)
        for g, b in zip(opt.groups, base):
            g["lr"] = b * scale
        params = _effective(model, _gated(delta, gates, sample=soft))
        if soft:
            t = T0 * (T1 / T0) ** frac
            a = NOISE0 * (NOISE1 / NOISE0) ** frac
            noisy = [soft_round(v, t) + torch.empty_like(v).uniform_(-0.5 * a, 0.5 * a) for v in y]
            ctx = [soft_round(v, t) for v in noisy]
            rate_vals, syn = noisy, ctx
        else:
            t = 0.0
            hard = [ste(v) for v in y]
            rate_vals, ctx, syn = hard, hard, hard
        if tile is None:
            bits = grid2.rate_bits(cfg, params, rate_vals, ctx, lam_t)
            pred = grid2.synthesis(cfg, params, [v * step for v in syn])
            mse = (pred - x).pow(2).mean()
        else:
            bits = tiles.inner_bits(cfg, params, rate_vals, ctx, lam_t, tile)
            pred = grid2.synthesis(cfg, params, [v * step for v in syn])
            mse = tile.local(pred - x).pow(2).mean()
        bpp = bits.sum() / n_pix
        loss = bpp + mse / lam
        if gates is not None:  # the expected bits of the open entries (mask and value)
            loss = loss + GATE_BITS * sum(prob_open(v).sum() for v in gates.values()) / n_pix
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for v in y:
                v.clamp_(-grid2.SYMBOL_RANGE, grid2.SYMBOL_RANGE)
        psnr = 10 * math.log10(1 / max(mse.item(), 1e-12))
        log.append({"step": i, "phase": "soft" if soft else "hard", "T": round(t, 4), "bpp": bpp.item(), "psnr": psnr})
        bar.set_postfix(bpp=f"{bpp.item():.3f}", psnr=f"{psnr:.2f}")
    if delta:
        with torch.no_grad():
            delta = {k: v.detach() for k, v in _gated(delta, gates, sample=False).items()}
    return [v.detach() for v in y], delta, log


GATE_INIT = 0.0  # gate logits at the start of a refinement: open (deterministic gate 0.5), L0 closes them
GATE_LR = 0.05
GATE_BITS = 8.0  # bits an open update entry costs (mask + value), what the L0 term charges


def _gated(delta: dict[str, torch.Tensor] | None, gates: dict[str, torch.Tensor] | None, sample: bool
           ) -> dict[str, torch.Tensor] | None:
    """delta with its hard-concrete gates applied (a sample while fitting, the deterministic gate at the
    end: exact zeros are not sent); delta itself without gates."""
    if delta is None or gates is None:
        return delta
    gate = sample_gate if sample else deterministic_gate
    return {k: v * gate(gates[k]) for k, v in delta.items()}


def refine_tiled(model: Grid2Model, x: torch.Tensor, y0: list[torch.Tensor], lam: float, step: float,
                 n_steps: int, progress: bool = False) -> list[torch.Tensor]:
    """`refine` of a big image in bounded memory: each tile in turn gets the whole schedule, its loss on its
    interior, the latents around it (already refined where earlier tiles were) as context; only its
    interior latents are kept. Memory is a tile's, time linear in pixels (a shared decoder update would
    need every tile at once: the variants that send one refine whole images)."""
    y = [v.detach().clone() for v in y0]
    hp, wp = x.shape[2:]
    for t in progress_bar(tiles.tiles(hp, wp), progress=progress, desc="refine tiles", leave=False, unit="tile"):
        part, _, _ = refine(model, tiles.pixels(t.crop(x)), [t.crop(v, l) for l, v in enumerate(y)], lam, step,
                            n_steps, t.pixels, tile=t)
        for l, v in enumerate(part):
            t.interior(y[l], l).copy_(t.local(v, l))
    return y


REAIM_OVER, REAIM_UNDER = 0.0, 0.15  # tied-step misses beyond which lambda is aimed again (2b in encode): any
# overshoot (cutting costs most), and undershoots the finer step cannot fill well (measured: re-aiming 8 % gaps
# gained 0.04-0.07 dB at twice the time)
AIMS = 3  # refinements at most (first aim + re-aims). The plain models had 2, the size fit taking the second
# unmeasured: kodim05 at 0.25 bpp, fast, grid2-l7-ft256c, landed 17 % and then 2.7 % over, and the dead zone that
# cut the rest gave 19.74 dB where grid2-l7's stream, aimed once, gave 22.08
AIM = 0.98  # lambda aims a little under the target: a finer step fills a gap at less cost than any cut


def _choose_update(model: Grid2Model, x: torch.Tensor, y: list[torch.Tensor], delta: dict[str, torch.Tensor] | None,
                   lam: float, step: float, n_pix: int) -> tuple[dict, float | None, float]:
    """The decoder update's quantisation: {relative step or None: (sections, effective parameters)}, the
    key with the least estimated rate + distortion / lambda (None: no update; the generic start must send
    its decoder), and that cost."""
    candidates: dict = {None: ([], model.theta)}
    if delta is None:
        return candidates, None, math.inf
    for rel in UPDATE_REL_STEPS if model.sparsity != "scratch" else UPDATE_REL_STEPS[:3]:
        secs, deq = _update_sections(model, delta, rel)
        candidates[rel] = (secs, _effective(model, deq))
    hard = [torch.round(v) for v in y]
    lam_t = torch.tensor([lam])
    best_j, chosen = math.inf, None
    for rel in [r for r in candidates if r is not None] + ([] if model.sparsity == "scratch" else [None]):
        secs, p = candidates[rel]
        n_bytes = sum(len(b) for _, b in secs)
        with torch.no_grad():
            bits = _est_bits(model, p, y, lam_t) + 8 * n_bytes
        j = bits / n_pix + _mse(model, p, x, [v * step for v in hard]) / lam
        if os.environ.get("MSCN_DEBUG"):
            print(f"[grid2] update at relative step {rel}: {n_bytes} B, estimated J {j:.4f}", file=sys.stderr)
        if j < best_j:
            best_j, chosen = j, rel
    return candidates, chosen, best_j


def _refine_chosen(model: Grid2Model, x: torch.Tensor, y0: list[torch.Tensor], lam: float, step: float,
                   n_steps: int, n_pix: int, tiled: bool, progress: bool, delta0: dict[str, torch.Tensor] | None
                   ) -> tuple[list[torch.Tensor], dict, float | None]:
    """The refinement (tile by tile on big images), the decoder update's quantisation (`_choose_update`),
    and the amortised start with the shared decoder where that rounds to a lower rate + distortion / lambda
    than the refined file: a short refinement of a good start can end worse than it began (soft rounding
    moves the latents off the integer grid the rounded file lives on), and latents and decoder moving
    together can too."""
    if tiled:
        y, delta = refine_tiled(model, x, y0, lam, step, n_steps, progress=progress), None
    else:
        y, delta, _ = refine(model, x, y0, lam, step, n_steps, n_pix, progress=progress,
                             update=model.sends_update, delta0=delta0)
    candidates, chosen, j = _choose_update(model, x, y, delta, lam, step, n_pix)
    if model.analysis and (delta is not None or n_steps):
        if delta is None:
            j = _rd_cost(model, model.theta, x, y, lam, step, n_pix)
        if _rd_cost(model, model.theta, x, y0, lam, step, n_pix) < j:
            if os.environ.get("MSCN_DEBUG"):
                print("[grid2] the amortised start is cheaper than the refined file: kept", file=sys.stderr)
            return [v.detach() for v in y0], {None: ([], model.theta)}, None
    return y, candidates, chosen


def _secant_index(tried: dict, goal: float) -> int:
    """The lambda index whose real size should be `goal` bytes: interpolated in log size between the two
    tried indices (index -> (size, ...)) nearest the goal (log size is close to linear in the index)."""
    (i0, s0), (i1, s1) = sorted(((i, t[0]) for i, t in tried.items()), key=lambda p: abs(math.log(p[1] / goal)))[:2]
    if s0 == s1 or i0 == i1:
        return i0
    if (s1 - s0) * (i1 - i0) > 0:  # the size does not fall as lambda rises: the model's rate floor (kodim15 at
        return i0 if s0 < s1 else i1  # 0.1 bpp: 5062 B at 163, 5098 B at 183), nothing to interpolate;
    # the line through such a pair pointed to index 23 (99.7 kB) and the encode failed. The size fit does the rest.
    i = i0 + (i1 - i0) * math.log(s0 / goal) / math.log(s0 / s1)
    span = 2 * abs(i1 - i0)  # an extrapolation stays near what was measured
    return int(np.clip(round(np.clip(i, min(i0, i1) - span, max(i0, i1) + span)), *LAMBDA_SEARCH))


def _tied_size(model: Grid2Model, header: dict, y: list[torch.Tensor], lam: float,
               usecs: list[tuple[str, bytes]] | None = None, params: dict | None = None) -> tuple[int, int]:
    """(stream bytes, latent bytes) of latents y (symbol units) sent at lambda's own step, no dead zone,
    with the decoder update's sections `usecs` and the decoder `params` they make (default: none)."""
    sym = [np.clip(np.round(v[0, 0].numpy()), -grid2.SYMBOL_RANGE, grid2.SYMBOL_RANGE).astype(np.int32) for v in y]
    arm = grid2.FixedArm.from_params(model.theta if params is None else params)
    lats = encode_latents(arm, sym, grid2.lambda_fixed(lam))
    return len(bitstream.pack(header, [("GRD2", b"\0\0"), *(usecs or []), ("LATS", lats)])), len(lats)


def container_bytes(model: Grid2Model, header: dict) -> int:
    """A lower bound on every grid2 stream of this header: the container, the GRD2 section, the decoder
    update only where it must be sent (+scratch, here all zero) and an empty latent section."""
    from mscncodec.coding.update import empty_update

    secs = empty_update(model) if model.sparsity == "scratch" else []
    return len(bitstream.pack(header, [("GRD2", b"\0\0"), *secs, ("LATS", b"")]))


def encode(model: Grid2Model, rgb: np.ndarray, channels: int, *, bpp: float | None, quality: int | None,
           steps: int | None, effort: str, progress: bool) -> tuple[bytes, dict]:
    cfg = model.cfg
    h, w, _ = rgb.shape
    n_pix = h * w
    tiled = tiled_frame(cfg, h, w) and not model.sends_update
    x = tiles.padded_frame(rgb, cfg.align) if tiled else pad_image(rgb, cfg.align)  # tiled: uint8, float per tile
    header = {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": 1, "arch": ARCH_CODE,
              "model_id": model.model_id, "height": h, "width": w, "channels": channels, "patch": cfg.align}
    n_steps = (UPDATE_EFFORT if model.sends_update else EFFORT)[effort] if steps is None else steps
    target_bytes = int(math.floor(bpp * n_pix / 8)) if bpp is not None else None
    overhead = bitstream.HEADER_SIZE + 8 * 5 + 8  # typical container bytes, for aiming lambda
    if target_bytes is not None:  # refuse a size no stream can have before any work
        floor, dense = container_bytes(model, header), bitstream.min_image_bytes(h, w)
        if target_bytes < max(floor, dense):
            raise below_minimum(bpp, target_bytes, w, h, max(floor, dense),
                                "for the container alone" if floor >= dense else bitstream.DENSITY_NOTE)
        latent_bits = 8 * max(target_bytes - overhead, 1)  # what the latents may spend (aim, not a bound)

    # 1. lambda, fixed from here on
    y0 = None
    if target_bytes is None:
        q = 50 if quality is None else quality
        lam_idx = lambda_index(2.0 ** (-3.0 - 10.0 * q / 100))
    elif model.analysis:
        lam_idx, y0, est0 = _lambda_for(model, x, AIM * latent_bits / rate_growth(model, n_steps),
                                        scratch_lambda(bpp))
    else:
        lam_idx = scratch_lambda(bpp)
    lam, step = lambda_value(lam_idx), tied_step(lam_idx)
    if os.environ.get("MSCN_DEBUG"):
        print(f"[grid2] lambda index {lam_idx} (2^{math.log2(lam):.2f}), step {step:.4g}", file=sys.stderr)
    if y0 is None:
        with torch.no_grad():
            if model.analysis:
                y0 = symbols_of(_analysis(model, x, torch.tensor([lam])), torch.tensor([step]))
            else:
                y0 = [torch.zeros(1, 1, a, b) for a, b in grid_shapes(cfg, h, w)]

    # 2. refinement at fixed lambda. The generic start has no amortised rate to aim lambda with: a short
    #    search first (a few steps at the rough guess, then one correction from the rounded rate, bpp ~
    #    lambda**-0.5), and the refinement continues from there at the corrected, fixed lambda.
    delta0 = None
    if model.sparsity == "scratch" and target_bytes is not None and n_steps >= 20:
        n_w = max(int(SEARCH_FRACTION * n_steps), 5)
        y0, delta0, _ = refine(model, x, y0, lam, step, n_w, n_pix, update=True)
        n_steps -= n_w
        p = _effective(model, delta0)
        bits = _est_bits(model, p, y0, torch.tensor([lam])) + 6.0 * sum(v.numel() for v in delta0.values())
        shift = int(round(2 * LAMBDA_STEPS_PER_OCTAVE * math.log2(max(bits, 1.0) / latent_bits)))
        new_idx = int(np.clip(lam_idx + shift, *LAMBDA_SEARCH))
        new_step = tied_step(new_idx)
        y0 = [v * (step / new_step) for v in y0]
        lam_idx, lam, step = new_idx, lambda_value(new_idx), new_step
        if os.environ.get("MSCN_DEBUG"):
            print(f"[grid2] scratch search: corrected lambda index {lam_idx}", file=sys.stderr)
    y, candidates, chosen = _refine_chosen(model, x, y0, lam, step, n_steps, n_pix, tiled, progress, delta0)
    if target_bytes is not None and model.analysis and not tiled:
        # 2b. The real size at the tied step (with the decoder update, if one is sent). Where it misses the
        #     target by more than the size fit mends well (a step off lambda's, or a dead zone, costs far
        #     more distortion per byte than lambda does: measured at 0.1 bpp, fitting an 8 % overshoot that
        #     way lost 6 dB), aim lambda again with this image's own rate growth and refine once more from
        #     the new amortised start. With a decoder update the growth itself moves with lambda (kodim01
        #     at 0.5 bpp, max: 0.60 at the first aim, the second aim 10 % over, and the dead zone that cut
        #     it lost 2 dB against the estimate), so there is a third aim, a secant on the two real sizes (for
        #     the plain models too since encoder revision 3: a second aim can miss as well).
        tried: dict[int, tuple[int, list[torch.Tensor], dict, float | None]] = {}
        for attempt in range(AIMS):
            size, lat_bytes = _tied_size(model, header, y, lam, *candidates[chosen])
            tried[lam_idx] = (size, y, candidates, chosen)
            if (1 - REAIM_UNDER) * target_bytes <= size <= (1 + REAIM_OVER) * target_bytes or attempt == AIMS - 1:
                break
            if len(tried) == 1:
                growth = 8 * lat_bytes / max(est0, 1.0)
                goal = AIM * 8 * max(target_bytes - (size - lat_bytes), 1) / max(growth, 1e-3)
                new_idx, y_new, _ = _lambda_for(model, x, goal, lam_idx + (1 if size > target_bytes else -1))
            else:
                new_idx, y_new = _secant_index(tried, AIM * target_bytes), None
            if os.environ.get("MSCN_DEBUG"):
                print(f"[grid2] tied-step size {size} B of {target_bytes}: lambda index {lam_idx} -> {new_idx}",
                      file=sys.stderr)
            if new_idx in tried:
                break
            lam_idx, lam, step = new_idx, lambda_value(new_idx), tied_step(new_idx)
            if y_new is None:
                with torch.no_grad():
                    y_new = symbols_of(_analysis(model, x, torch.tensor([lam])), torch.tensor([step]))
            y0 = y_new
            y, candidates, chosen = _refine_chosen(model, x, y0, lam, step, n_steps, n_pix, tiled, progress, None)
        fits = {i: t for i, t in tried.items() if (1 - REAIM_UNDER) * target_bytes <= t[0] <= target_bytes}
        if tried[lam_idx][0] > target_bytes and fits:  # the last aim (always measured since revision 3)
            lam_idx = max(fits, key=lambda i: fits[i][0])  # overshoots where an earlier one fitted: take that one
            _, y, candidates, chosen = fits[lam_idx]
            lam, step = lambda_value(lam_idx), tied_step(lam_idx)
        tried.clear()
    y0 = None
    if not model.sends_update:  # a big image's frame: only the update variants' size fit ranks by distortion
        x = None

    # 3. the real size (the decoder update, if any, quantised as chosen above)
    yv = [v[0, 0].numpy().astype(np.float64) * step for v in y]  # latent values
    y = None

    def symbols(step_idx: int, deadzone: float) -> list[np.ndarray]:
        s = latent_step(step_idx)
        return [_quantise(v, s, deadzone if l in sparse else 0.5, l) for l, v in enumerate(yv)]

    def pack(step_idx: int, deadzone: float = 0.5) -> bytes:
        usecs, params = candidates[chosen]
        lats = encode_latents(grid2.FixedArm.from_params(params), symbols(step_idx, deadzone), grid2.lambda_fixed(lam))
        return bitstream.pack(header, [("GRD2", struct.pack("<BB", lam_idx, step_idx)), *usecs, ("LATS", lats)])

    def mse(step_idx: int, deadzone: float) -> float:
        s = np.float32(latent_step(step_idx))  # the decoder's latent values
        lat = [torch.from_numpy(v.astype(np.float32) * s)[None, None] for v in symbols(step_idx, deadzone)]
        return _mse(model, candidates[chosen][1], x, lat)

    def magnitudes(step_idx: int) -> np.ndarray:
        s = latent_step(step_idx)
        parts = []
        for l, v in enumerate(yv):
            for rows in (_row_blocks(v) if l in sparse else ()):
                r = np.abs(v[rows].reshape(-1)) / s
                parts.append(r[(r >= 0.5) & (r < MAX_DEADZONE)] * DEADZONE_LEVEL_GAIN**l)
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0)  # no sparse grid: nothing to zero

    base_idx = step_index_for(lam)
    sparse = _sparse_levels(yv, latent_step(base_idx))
    best_of = mse if model.sends_update else None  # measured so far for the variants that refine with an update
    note = ""
    if target_bytes is None:
        data = pack(base_idx)
    else:
        data, _, biggest = fit_size(pack, magnitudes, base_idx, target_bytes, best_of)
        if data is None and chosen is not None and model.sparsity != "scratch":
            chosen = None
            data, _, biggest = fit_size(pack, magnitudes, base_idx, target_bytes, best_of)
        if data is None and len(sparse) < len(yv):  # last resort: the dead zone on every grid (it costs
            sparse = set(range(len(yv)))           # distortion, but the file exists)
            data, _, biggest = fit_size(pack, magnitudes, base_idx, target_bytes, best_of)
        if data is None:
            raise below_minimum(bpp, target_bytes, w, h, len(pack(255, math.inf)), "at its coarsest setting")
        if biggest < 0.95 * target_bytes:
            note = (f"target {bpp} bpp not reached: {8 * len(data) / n_pix:.4f} bpp at the finest latent step "
                    f"this encode allows (effort '{effort}')")
        elif len(data) < 0.95 * target_bytes:
            note = (f"target {bpp} bpp not reached: {8 * len(data) / n_pix:.4f} bpp decodes better than the bigger "
                    f"streams that fit (at finer latent steps)")
    n_sent = sum(v.numel() for v in model.theta.values()) if chosen is not None else 0
    return data, {"note": note, "open": n_sent, "lambda": lam, "steps": n_steps}


QUANT_BLOCK = 1 << 20  # latents per block of the elementwise quantisation (bounds its float64 temporaries)


def _row_blocks(v: np.ndarray) -> list[slice]:
    """Row slices of a grid holding about QUANT_BLOCK latents each: elementwise work done per block gives
    the same numbers as on the whole grid, with temporaries of one block."""
    rows = max(QUANT_BLOCK // max(v.shape[1], 1), 1)
    return [slice(a, a + rows) for a in range(0, v.shape[0], rows)]


DEADZONE_LEVEL_GAIN = 2.0


def _sparse_levels(yv: list[np.ndarray], s: float) -> set[int]:
    """The grids whose latents are mostly zero at step s: the only ones the size fit's dead zone touches.
    Why: where a grid is mostly +-1 (the shipped model at 0.1 bpp sends its half-resolution grid that way),
    the ARM expects +-1 and a zero costs *more* bits: zeroing there made the stream bigger and lost 4 dB
    (measured on a held-out photo)."""
    return {l for l, v in enumerate(yv)
            if sum(int(np.count_nonzero(np.abs(v[rows]) < 0.5 * s)) for rows in _row_blocks(v)) >= 0.5 * v.size}


def _quantise(v: np.ndarray, s: float, deadzone: float, level: int = 0) -> np.ndarray:
    """Latent values of grid `level` -> int32 symbols at step s (block by block). The dead zone zeroes
    |value / s| < 0.5 as rounding does, and where |value / s| < MAX_DEADZONE also |value / s| * g**level <
    deadzone (g: DEADZONE_LEVEL_GAIN). Why the level weight: a latent of a coarser grid reaches ~4x the
    pixels, so zeroing it costs more distortion for the same bits; a plain threshold on |value / s| zeroed
    the coarsest grids' latents first (measured: -6.6 dB for an 8 % cut at 0.1 bpp)."""
    out = np.empty(v.shape, np.int32)
    w = DEADZONE_LEVEL_GAIN**level
    for rows in _row_blocks(v):
        r = v[rows] / s
        q = np.clip(np.round(r), -grid2.SYMBOL_RANGE, grid2.SYMBOL_RANGE)
        a = np.abs(r)
        out[rows] = np.where((a < 0.5) | ((a < MAX_DEADZONE) & (a * w < deadzone)), 0, q)
    return out


# ---------------------------------------------------------------- the size fit

FIT_ITERS = 5  # dead-zone search iterations (regula falsi on the number of zeroed latents)
FINER = 32  # the size fit may make the latent step at most an octave finer than the tied one


def fit_size(pack, magnitudes, base_idx: int, target: int, mse=None) -> tuple[bytes | None, int, int]:
    """The stream at or under `target` bytes, in few packs (each runs the exact ARM over every latent).

    Under the target at the tied step: the finest index (at most FINER finer) whose stream fits, by
    galloping then bisection, so the next finer index overshoots; the gap between the two is filled at the
    finer step with a dead zone. Over the target at the tied step: the dead zone at the tied step first,
    a coarser step only where zeroing every small latent is not enough. Why: the ARM is conditioned on
    lambda, so a step coarser than lambda's saves little rate and can even cost rate (measured on a
    held-out photo at 0.1 bpp: +18 % bytes at a 1.8x coarser step, where a coarser-first search ended at
    the coarsest step and lost 5 dB), while the dead zone's rate falls with every zeroed latent (at 0.3
    bpp it cut 7 % for 0.5 dB where a coarser step cut 3.5 % for 1 dB). None if even the coarsest
    setting is too big.

    `mse(index, dead zone)`, where given, picks among the streams that fit (the tied step's, the finest
    plain one, the dead-zone fill) the one of least distortion; without it the biggest. Why: more bytes is
    not always more quality. Latents refined at the tied step have their rounding fitted to it: re-quantised
    at a finer step they lose a little, and a dead zone that fills a small gap zeroes thousands of their
    +-1 latents (kodim01 at 0.5 bpp, `max`: 27.16 dB at the tied step, 25.66 dB for the fill, 0.5 % more
    bytes). Returns (stream, its step index, the biggest size that fit)."""
    cache: dict[int, bytes] = {}

    def at(i: int) -> bytes:
        if i not in cache:
            cache[i] = pack(i)
        return cache[i]

    fits: dict[tuple[int, float], bytes] = {}  # (index, dead zone) -> every candidate stream that fits
    lo_limit = max(base_idx - FINER, 0)
    good = bad = None
    if len(at(base_idx)) <= target:  # finer while it fits: gallop down, then bisect
        good, gap = base_idx, 1
        while good > lo_limit:
            cand = max(good - gap, lo_limit)
            if len(at(cand)) > target:
                bad = cand
                break
            good, gap = cand, gap * 2
    else:
        filled = _deadzone_fill(pack, magnitudes, base_idx, len(at(base_idx)), target, patient=True)
        if os.environ.get("MSCN_DEBUG"):
            print(f"[grid2] {len(at(base_idx))} B over the target at the tied step: dead zone", file=sys.stderr)
        if filled is not None:
            fits[(base_idx, filled[1])] = filled[0]
        else:
            bad, gap = base_idx, 1  # coarser until it fits
            while good is None and bad < 255:
                cand = min(bad + gap, 255)
                if len(at(cand)) <= target:
                    good = cand
                else:
                    bad, gap = cand, gap * 2
    if good is not None and bad is not None:
        while good - bad > 1:  # invariant: `good` fits, `bad` (finer) overshoots
            mid = (good + bad) // 2
            if len(at(mid)) <= target:
                good = mid
            else:
                bad = mid
    if good is not None:  # inserted first: without `mse` a tie in size keeps it, as the biggest did before
        fits[(good, 0.5)] = cache[good]
    if len(at(base_idx)) <= target:
        fits.setdefault((base_idx, 0.5), cache[base_idx])
    if bad is not None and (good is None or len(cache[good]) < 0.995 * target):  # fill the gap at the finer
        filled = _deadzone_fill(pack, magnitudes, bad, len(at(bad)), target, patient=good is None)  # step
        if filled is not None:
            fits[(bad, filled[1])] = filled[0]
    if not fits:
        return None, 255, 0
    key: tuple[int, float]
    if mse is None or len(fits) == 1:
        key = max(fits, key=lambda k: len(fits[k]))
    else:
        errs = {k: mse(*k) for k in fits}
        key = min(errs, key=errs.get)
        if os.environ.get("MSCN_DEBUG"):
            print("[grid2] size fit candidates: " + ", ".join(
                f"step {i} dead zone {dz:.3g}: {len(fits[(i, dz)])} B, MSE {e:.4g}" for (i, dz), e in errs.items()),
                file=sys.stderr)
    if os.environ.get("MSCN_DEBUG"):
        print(f"[grid2] fitted: step index {key[0]} (tied {base_idx}), {len(fits[key])} B", file=sys.stderr)
    return fits[key], key[0], max(len(v) for v in fits.values())


def _deadzone_fill(pack, magnitudes, idx: int, size0: int, target: int, patient: bool
                   ) -> tuple[bytes, float] | None:
    """(the largest stream at step index idx at or under `target` that zeroes the smallest +-1 latents, its
    dead zone); size0: the stream's bytes with the plain dead zone. By regula falsi on how many latents are
    zeroed (size is close to linear in it; FIT_ITERS packs, a few more when `patient`: nothing else fits
    yet); None if zeroing all of them is still too big."""
    mags = magnitudes(idx)
    if not mags.size:
        return None
    dz = float(np.nextafter(mags[-1], np.inf))
    found = pack(idx, dz)
    if len(found) > target:
        return None
    lo_c, lo_s, hi_c, hi_s = 0, size0, mags.size, len(found)
    for _ in range(FIT_ITERS + 3 * patient):
        if hi_c - lo_c <= 1:
            break
        c = lo_c + (lo_s - target) * (hi_c - lo_c) / max(lo_s - hi_s, 1)
        c = int(np.clip(round(c * 1.02 + 1), lo_c + 1, hi_c - 1))  # lean towards fitting
        z = float(np.nextafter(mags[c - 1], np.inf))
        d = pack(idx, z)
        if len(d) <= target:
            hi_c, hi_s = c, len(d)
            if len(d) > len(found):
                found, dz = d, z
        else:
            lo_c, lo_s = c, len(d)
    return found, dz


# ---------------------------------------------------------------- decode

def decode(model: Grid2Model, header: dict, sections: dict[str, bytes]) -> np.ndarray:
    """-> H x W x 3 uint8."""
    from mscncodec.coding.update import unpack_update

    cfg = model.cfg
    lam_idx, step_idx = grid_header(model, header, sections, "GRD2")
    params = model.theta
    if "QPRM" in sections:
        symbols, steps = unpack_update(model, sections, 1)
        params = _effective(model, {k: dequantise(s, steps[k])[0] for k, s in symbols.items()})
    elif model.sparsity == "scratch":
        raise BitstreamError("corrupted .mscn file (missing section QPRM)")
    h, w = header["height"], header["width"]
    lam = lambda_value(lam_idx)
    sym = decode_latents(grid2.FixedArm.from_params(params), sections["LATS"], grid_shapes(cfg, h, w),
                         grid2.lambda_fixed(lam))
    s = np.float32(latent_step(step_idx))
    with torch.no_grad():
        lat = [torch.from_numpy(v.astype(np.float32) * s)[None, None] for v in sym]
        del sym
        out = _synthesis(model, params, lat)[0, :, :h, :w]
    return out.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()  # in place: no copies
