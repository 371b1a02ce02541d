"""grid3 streams: the GRD3 section (lambda, latent step, finest grid) and the latents (LATS), with rate control
on the real bytes.

The modality builds the target (``fit.VolumeTarget``) and the rest of its stream (header, metadata sections);
``encode`` returns the family's sections, at or under the bytes left for them; ``decode_latents`` reads them
back into dequantised latents, refusing before any allocation a grid its stream cannot justify.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch

from mscncodec.coding.latents import LOG2_LAMBDA_MIN, LOG2_LAMBDA_STEPS, lambda_index, lambda_value
from mscncodec.container.bitstream import Field
from mscncodec.container.sections import Section
from mscncodec.errors import BitstreamError, RateError
from mscncodec.families.grid2.latent_codec import LatentCodec
from mscncodec.families.grid2.volume import fit as vfit
from mscncodec.families.grid2.volume.config import Vol3Config
from mscncodec.families.grid2.volume.model import Vol3Model

ENCODER_REVISION = 2  # 2: lambda refits instead of a coarser latent step (the bench re-measures its points)
MAX_AXIS = 1024  # latents per axis of the finest grid
LATENTS_PER_BYTE = 4096  # a stream may claim at most this many latents per byte of its own (~0.002 bit each)
STEP_MIN, STEP_MAX = -32, 96  # latent step 2**(k / 16): 1/4 ... 64
FIT_TOLERANCE = (0.85, 1.0)  # a fit whose bytes land in this share of the room needs no further refit
OVERSHOOT = 1.15  # a full fit this far over the room is refitted, not squeezed by a coarser latent step
MAX_REFITS = 3  # lambda corrections of the search (short fits, a third of the steps each), at most


def _axis(v: object) -> str | None:
    return None if isinstance(v, int) and 1 <= v <= MAX_AXIS else f"grid axis {v} out of range [1, {MAX_AXIS}]"


GRD3 = Section("GRD3", (
    Field("lambda", "B", "index into the lambda table", None, lambda v: f"{lambda_value(v):.3g} (index {v})"),
    Field("step", "b", "latent step 2**(k/16)",
          lambda v: None if STEP_MIN <= v <= STEP_MAX else f"latent step index {v} out of range",
          lambda v: f"{2.0 ** (v / 16):.4g} (k={v})"),
    Field("depth", "H", "finest latent grid, first axis", _axis),
    Field("height", "H", "finest latent grid, second axis", _axis),
    Field("width", "H", "finest latent grid, third axis", _axis),
))
SECTION_OVERHEAD = GRD3.size + 8 + 8  # GRD3's payload and its table entry, LATS's table entry


def step_value(k: int) -> float:
    return float(2.0 ** (k / 16))


def _pack(cfg: Vol3Config, theta: dict, lam_i: int, k: int, y: list[torch.Tensor], finest) -> list[tuple[str, bytes]]:
    sym = [s[0, 0].numpy() for s in vfit.quantise(y, step_value(k))]
    lats = LatentCodec(cfg, theta, lambda_value(lam_i)).compress(sym)
    return [GRD3.pack(**{"lambda": lam_i, "step": k, "depth": finest[0], "height": finest[1], "width": finest[2]}),
            ("LATS", lats)]


def _size(secs: list[tuple[str, bytes]]) -> int:
    return sum(len(d) + 8 for _, d in secs)


def encode(model: Vol3Model, target: vfit.VolumeTarget, budget: int, *, effort: str = "default",
           steps: int | None = None, progress: Callable[[str], None] | None = None) -> tuple[list[tuple[str, bytes]], dict]:
    """The family's sections, at most `budget` bytes together (their table entries counted), and an info dict.

    Short fits from zero latents search lambda (the first at the lambda the model's calibration expects for the
    budget, each next one corrected by the bytes the last really took); the full fit runs at the lambda found,
    and last the latent step is searched so that the coded latents fill the budget without passing it."""
    sched = vfit.SCHEDULES[effort]
    if steps is not None:
        sched = vfit.Schedule(max(int(steps), 2), sched.phases)
    t0 = time.perf_counter()
    cfg, theta = model.cfg, model.theta
    if budget <= SECTION_OVERHEAD + 4:
        raise RateError(f"no room for the latents ({budget} bytes left for them)")
    bits_pp = 8.0 * (budget - SECTION_OVERHEAD) / target.rate_norm
    lam = vfit.lambda_guess(bits_pp, model.meta.get("calibration"))
    tries = []

    def report(msg: str) -> None:
        if progress is not None:
            progress(msg)

    room = max(budget - SECTION_OVERHEAD, 1)
    slope = -1.0 / vfit.calibration_line(model.meta.get("calibration"))[1]  # bytes ~ lambda**-slope
    # lambda searched with short fits from zero (warm refits drifted: each restart's first Adam steps move every
    # latent by the full rate, and the bytes grew at any lambda; experiments/2026-12-grid3/README.md), the slope
    # re-measured between the last two fits; then one full fit at the lambda found, and the latent step searched
    # last to fill what is left of the room (coarsening it is a poor way to cut bytes)
    search = vfit.Schedule(max(2, sched.steps // 3), sched.phases)
    lam_i = lambda_index(lam)
    for rnd in range(1 + MAX_REFITS):
        y = vfit.fit_latents(cfg, theta, target, lambda_value(lam_i), search)
        size = _size(_pack(cfg, theta, lam_i, 0, y, target.finest))
        tries.append((lam_i, size))
        report(f"search fit {rnd + 1}: lambda {lambda_value(lam_i):.3g} -> {size} bytes (budget {budget})")
        if FIT_TOLERANCE[0] <= size / room <= FIT_TOLERANCE[1] or rnd == MAX_REFITS:
            break
        if len(tries) >= 2 and tries[-1][0] != tries[-2][0] and tries[-1][1] != tries[-2][1]:
            (l0, s0), (l1, s1) = tries[-2], tries[-1]
            slope = float(np.clip(-math.log2(s1 / s0) / ((l1 - l0) / LOG2_LAMBDA_STEPS), 0.2, 2.0))
        lam_i = int(np.clip(round(lam_i + LOG2_LAMBDA_STEPS * math.log2(max(size / room, 1e-3)) / slope), 0, 255))
    # the fit that is sent: the full schedule at the lambda whose short fit came nearest the room from below
    under = [t for t in tries if t[1] <= room]
    lam_i = max(under, key=lambda t: t[1])[0] if under else min(tries, key=lambda t: t[1])[0]
    y = vfit.fit_latents(cfg, theta, target, lambda_value(lam_i), sched)
    size = _size(_pack(cfg, theta, lam_i, 0, y, target.finest))
    report(f"full fit: lambda {lambda_value(lam_i):.3g} -> {size} bytes (budget {budget})")
    if size > room * OVERSHOOT:  # a full fit spends more than its short one: once more at lambda corrected
        lam_i = int(np.clip(round(lam_i + LOG2_LAMBDA_STEPS * math.log2(size / room) / slope), 0, 255))
        y = vfit.fit_latents(cfg, theta, target, lambda_value(lam_i), sched)
    best = None
    # the step: the smallest k whose stream fits (bytes fall as k grows), searched from k = 0 both ways
    cache: dict[int, list[tuple[str, bytes]]] = {}

    def at(k: int) -> list[tuple[str, bytes]]:
        if k not in cache:
            cache[k] = _pack(cfg, theta, lam_i, k, y, target.finest)
        return cache[k]

    k = 0
    if _size(at(0)) <= budget:
        lo = 0
        while lo - 4 >= STEP_MIN and _size(at(lo - 4)) <= budget:
            lo -= 4
        # finer steps spend more of the budget: take the finest that fits between lo - 4 and lo
        k = lo
        for kk in range(lo - 1, max(lo - 4, STEP_MIN - 1), -1):
            if _size(at(kk)) <= budget:
                k = kk
            else:
                break
    else:
        hi = 0
        while _size(at(hi)) > budget:
            if hi >= STEP_MAX:
                raise RateError(f"the latents need more than {budget} bytes even at the coarsest step")
            hi = min(hi + 8, STEP_MAX)
        lo = hi - 8
        k = hi
        for kk in range(hi - 1, lo, -1):
            if _size(at(kk)) <= budget:
                k = kk
            else:
                break
    best = at(k)
    sym_step = step_value(k)
    deq = [s.float() * sym_step for s in vfit.quantise(y, sym_step)]
    info = {"lambda": lambda_value(lam_i), "step": sym_step, "latent_bytes": _size(best), "budget": budget,
            "fit_s": time.perf_counter() - t0, "first_fit_bytes": tries[0][1], "schedule": str(sched),
            "latents": sum(int(v.numel()) for v in y), "distortion": vfit.weighted_error(cfg, theta, deq, target)}
    report(f"fit 2: lambda {info['lambda']:.3g}, step {sym_step:.3g} -> {info['latent_bytes']} bytes")
    return best, info


def decode_latents(model: Vol3Model, sections: dict[str, bytes], stream_bytes: int) -> list[torch.Tensor]:
    """Dequantised latents (finest first, (1, 1, D, H, W)) of a stream's GRD3 and LATS sections."""
    v = GRD3.unpack(sections)
    if "LATS" not in sections:
        raise BitstreamError("corrupted .mscn file (missing section LATS)")
    finest = (v["depth"], v["height"], v["width"])
    shapes = model.cfg.grid_shapes(finest)
    n = sum(math.prod(s) for s in shapes)
    if n > LATENTS_PER_BYTE * stream_bytes:
        raise BitstreamError(f"a {stream_bytes}-byte stream cannot code {n} latents (grid {finest[0]}x{finest[1]}x"
                             f"{finest[2]}; at most {LATENTS_PER_BYTE} per byte): corrupted or crafted")
    sym = LatentCodec(model.cfg, model.theta, lambda_value(v["lambda"])).decompress(sections["LATS"], shapes)
    s = step_value(v["step"])
    return [torch.from_numpy(a.astype(np.float32) * s)[None, None] for a in sym]


def describe(sections: dict[str, bytes]) -> dict[str, str]:
    return GRD3.describe(sections)


# a lambda outside the table cannot be coded; the fit's guess is clamped to it
LAMBDA_RANGE = (2.0**LOG2_LAMBDA_MIN, 2.0 ** (LOG2_LAMBDA_MIN + 255 / LOG2_LAMBDA_STEPS))
