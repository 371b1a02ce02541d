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

MAX_AXIS = 1024  # latents per axis of the finest grid
LATENTS_PER_BYTE = 4096  # a stream may claim at most this many latents per byte of its own (~0.002 bit each)
STEP_MIN, STEP_MAX = -32, 96  # latent step 2**(k / 16): 1/4 ... 64


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

    Two fits from zero latents: the first at the lambda the model's calibration expects for the budget, then a
    second (warm) at lambda corrected by the bytes the first really took; last, the latent step is searched
    so that the coded latents fill the budget without passing it."""
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

    first = vfit.Schedule(max(2, sched.steps // 2), sched.phases[:1])
    y = vfit.fit_latents(cfg, theta, target, lambda_value(lambda_index(lam)), first)
    secs = _pack(cfg, theta, lambda_index(lam), 0, y, target.finest)
    tries.append((lambda_index(lam), _size(secs)))
    report(f"fit 1: lambda {lambda_value(lambda_index(lam)):.3g} -> {_size(secs)} bytes (budget {budget})")
    # assumed bytes ~ lambda**-0.6 (not measured: docs/decisions/grid3.md); move lambda in log space
    ratio = _size(secs) / max(budget - SECTION_OVERHEAD, 1)
    lam_i = int(np.clip(round(lambda_index(lam) + LOG2_LAMBDA_STEPS * math.log2(max(ratio, 1e-3)) / 0.6), 0, 255))
    y = vfit.fit_latents(cfg, theta, target, lambda_value(lam_i), sched, init=y)
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
