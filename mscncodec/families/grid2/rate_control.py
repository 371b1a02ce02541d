"""Rate control: lambda aimed at a size target before the refinement (and again on the real size after
it), then the size fit that puts the real file at or just under the target.

lambda stays fixed during a refinement: nothing is steered on a proxy that rounding does not follow. The
first aim bisects the lambda table on the amortised latents' estimated rate, corrected by the model's
measured rate growth; a refined stream that misses the target gets lambda aimed again on its real size.
The size fit then moves the latent step and a dead zone on the real bytes. Why each rule and its numbers:
docs/decisions/grid2-encoder.md.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from mscncodec.coding.latents import LOG2_LAMBDA_STEPS, lambda_index, lambda_value, tied_step
from mscncodec.container import bitstream
from mscncodec.families.grid2 import frame
from mscncodec.families.grid2 import refine as refinement
from mscncodec.families.grid2.config import GRD2, SYMBOL_RANGE
from mscncodec.families.grid2.latent_codec import LatentCodec
from mscncodec.families.grid2.model import Grid2Model
from mscncodec.families.grid2.quantizer import symbols_of
from mscncodec.families.grid2.update import effective
from mscncodec.modelfile import base_name, models_dir

log = logging.getLogger(__name__)

LAMBDA_SEARCH = (lambda_index(2.0**-14), lambda_index(2.0**-2))
LAMBDA_REACH = 1.0  # octaves above the largest lambda a model was meta-trained at that its aims may use
LAMBDA_TRIES = 4  # secant steps of the lambda search (after two first tries)
AIM = 0.98  # lambda aims a little under the target: a finer step fills a gap at less cost than any cut
AIMS = 3  # refinements at most (first aim + re-aims): a second aim can miss as well
REAIM_OVER, REAIM_UNDER = 0.0, 0.15  # tied-step misses beyond which lambda is aimed again: any overshoot, and
# undershoots the finer step cannot fill well
SEARCH_FRACTION = 0.15  # the generic start's lambda search: this share of the steps at a first guess


# ---------------------------------------------------------------- the first aim

def lambda_top(model: Grid2Model) -> int:
    """The largest lambda index a re-aim may use for this model where the stream at the first aim overshoots:
    LAMBDA_SEARCH's top, or LAMBDA_REACH above the largest lambda it was meta-trained at where that is higher
    (grid2-l7-c256, trained to 2^-1: 2^0). The first aim keeps LAMBDA_SEARCH. Why: the low-rate start's sizes
    keep falling gracefully past 2^-2, but where 2^-2 fits, a finer step there beats a larger lambda (measured:
    docs/decisions/grid2-encoder.md, "Low rates"). The others, trained to 2^-3, keep 2^-2."""
    trained = _trained_log2_lam(model)
    return LAMBDA_SEARCH[1] if trained is None else max(LAMBDA_SEARCH[1], lambda_index(2.0 ** (trained + LAMBDA_REACH)))


TOP_RANGE = 8  # lambda indices (half an octave) under trained_top where an encode counts as strained (encoder)


def trained_top(model: Grid2Model) -> int:
    """The index of the largest lambda the model was meta-trained at (LAMBDA_SEARCH's top where unknown): past
    it, a size that lambda cannot reach is cut by the size fit, at a high cost in distortion."""
    trained = _trained_log2_lam(model)
    return LAMBDA_SEARCH[1] if trained is None else lambda_index(2.0**trained)


def _trained_log2_lam(model: Grid2Model) -> float | None:
    rng = (model.meta or {}).get("train_config", {}).get("log2_lam")
    return float(rng[1]) if rng else None


def lambda_for(model: Grid2Model, x: torch.Tensor, target_bits: float, guess: int, top: int = LAMBDA_SEARCH[1]
               ) -> tuple[int, list[torch.Tensor], float]:
    """(lambda index, its amortised latents in symbol units, their estimated bits) for the index whose
    estimated rate is nearest the target: secant steps on log(rate) against the index (close to linear),
    from `guess`; each try is one analysis + ARM pass, and the chosen try's latents are returned so the
    encoder need not run the analysis again (only the two current candidates are kept: bounded memory)."""
    lo, hi = LAMBDA_SEARCH[0], top  # index up = larger lambda = lower rate
    tries: dict[int, tuple[list[torch.Tensor], float]] = {}

    def log_bits(i: int) -> float:
        lam = torch.tensor([lambda_value(i)])
        with torch.no_grad():
            y = symbols_of(frame.analysis(model, x, lam), torch.tensor([tied_step(i)]))
            tries[i] = (y, frame.est_bits(model, model.theta, y, lam))
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
    """NAME.growth.json beside the model: its rate-growth calibration (scripts/grid2_calibrate.py); a variant
    that sends a decoder update has its own where one was measured (the update both lowers the latents' rate
    and costs bytes), else it shares its base model's."""
    own = models_dir() / f"{model.name}.growth.json"
    return own if own.exists() else models_dir() / f"{base_name(model.name)}.growth.json"


@functools.cache
def growth_table(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
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
    xs, ys = growth_table(growth_file(model))
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


def first_aim(model: Grid2Model, x: torch.Tensor, latent_bits: float, n_steps: int, bpp: float
              ) -> tuple[int, list[torch.Tensor] | None, float | None]:
    """(lambda index, its amortised latents or None, their estimated bits or None) for a size target: aimed
    a little under it, through the rate growth of an n-step refinement; the generic start's fixed guess."""
    if not model.analysis:
        return scratch_lambda(bpp), None, None
    return lambda_for(model, x, AIM * latent_bits / rate_growth(model, n_steps), scratch_lambda(bpp))


def scratch_search(model: Grid2Model, x: torch.Tensor, y0: list[torch.Tensor], lam_idx: int, n_steps: int,
                   n_pix: int, latent_bits: float, preset) -> tuple[list[torch.Tensor], dict, int, int]:
    """The generic start has no amortised rate to aim lambda with: a few steps at the rough guess, then one
    correction from the rounded rate (bpp ~ lambda**-0.5); -> (latents rescaled to the corrected lambda's
    step, the decoder update so far, the corrected lambda index, the steps left)."""
    lam, step = lambda_value(lam_idx), tied_step(lam_idx)
    n_w = max(int(SEARCH_FRACTION * n_steps), 5)
    y0, delta0, _ = refinement.refine(model, x, y0, lam, step, n_w, n_pix, update=True, preset=preset)
    p = effective(model, delta0)
    bits = frame.est_bits(model, p, y0, torch.tensor([lam])) + 6.0 * sum(v.numel() for v in delta0.values())
    shift = int(round(2 * LOG2_LAMBDA_STEPS * math.log2(max(bits, 1.0) / latent_bits)))
    new_idx = int(np.clip(lam_idx + shift, *LAMBDA_SEARCH))
    y0 = [v * (step / tied_step(new_idx)) for v in y0]
    log.debug("scratch search: corrected lambda index %d", new_idx)
    return y0, delta0, new_idx, n_steps - n_w


# ---------------------------------------------------------------- aims on the real size

def secant_index(tried: dict, goal: float, top: int = LAMBDA_SEARCH[1]) -> int:
    """The lambda index whose real size should be `goal` bytes: interpolated in log size between the two
    tried indices (index -> (size, ...)) nearest the goal (log size is close to linear in the index); at
    most `top` (``lambda_top``)."""
    (i0, s0), (i1, s1) = sorted(((i, t[0]) for i, t in tried.items()), key=lambda p: abs(math.log(p[1] / goal)))[:2]
    if s0 == s1 or i0 == i1:
        return i0
    if (s1 - s0) * (i1 - i0) > 0:  # the size does not fall as lambda rises (the model's rate floor): nothing
        return i0 if s0 < s1 else i1  # to interpolate, the size fit does the rest
    i = i0 + (i1 - i0) * math.log(s0 / goal) / math.log(s0 / s1)
    span = 2 * abs(i1 - i0)  # an extrapolation stays near what was measured
    return int(np.clip(round(np.clip(i, min(i0, i1) - span, max(i0, i1) + span)), LAMBDA_SEARCH[0], top))


def tied_size(model: Grid2Model, header: dict, y: list[torch.Tensor], lam: float,
              usecs: list[tuple[str, bytes]] | None = None, params: dict | None = None) -> tuple[int, int]:
    """(stream bytes, latent bytes) of latents y (symbol units) sent at lambda's own step, no dead zone,
    with the decoder update's sections `usecs` and the decoder `params` they make (default: none)."""
    sym = [np.clip(np.round(v[0, 0].numpy()), -SYMBOL_RANGE, SYMBOL_RANGE).astype(np.int32) for v in y]
    lats = LatentCodec(model.cfg, model.theta if params is None else params, lam).compress(sym)
    grd2 = GRD2.pack(**{"lambda": 0, "latent_step": 0})  # (the same size whatever the indices)
    return len(bitstream.pack(header, [grd2, *(usecs or []), ("LATS", lats)])), len(lats)


def aim_again(model: Grid2Model, x: torch.Tensor, header: dict, target_bytes: int, est0: float, state: tuple,
              refine_at) -> tuple:
    """Where the refined stream's real size at the tied step misses the target by more than the size fit
    mends well (a step off lambda's, or a dead zone, costs far more distortion per byte than lambda does),
    lambda is aimed again with this image's own rate growth and refined once more from the new amortised
    start; a third aim is a secant on the two real sizes. `state` and the result: (lambda index, latents,
    update candidates, chosen update); `refine_at(y0, lam, step)` refines a new aim's start."""
    lam_idx, y, candidates, chosen = state
    lam = lambda_value(lam_idx)
    tried: dict[int, tuple[int, list[torch.Tensor], dict, float | None]] = {}
    for attempt in range(AIMS):
        size, lat_bytes = tied_size(model, header, y, lam, *candidates[chosen])
        tried[lam_idx] = (size, y, candidates, chosen)
        if (1 - REAIM_UNDER) * target_bytes <= size <= (1 + REAIM_OVER) * target_bytes or attempt == AIMS - 1:
            break
        if len(tried) == 1:
            growth = 8 * lat_bytes / max(est0, 1.0)
            goal = AIM * 8 * max(target_bytes - (size - lat_bytes), 1) / max(growth, 1e-3)
            new_idx, y_new, _ = lambda_for(model, x, goal, lam_idx + (1 if size > target_bytes else -1),
                                           top=lambda_top(model) if size > target_bytes else LAMBDA_SEARCH[1])
        else:
            new_idx, y_new = secant_index(tried, AIM * target_bytes, lambda_top(model)), None
        log.debug("tied-step size %d B of %d: lambda index %d -> %d", size, target_bytes, lam_idx, new_idx)
        if new_idx in tried:
            break
        lam_idx, lam, step = new_idx, lambda_value(new_idx), tied_step(new_idx)
        if y_new is None:
            with torch.no_grad():
                y_new = symbols_of(frame.analysis(model, x, torch.tensor([lam])), torch.tensor([step]))
        y, candidates, chosen = refine_at(y_new, lam, step)
    fits = {i: t for i, t in tried.items() if (1 - REAIM_UNDER) * target_bytes <= t[0] <= target_bytes}
    if tried[lam_idx][0] > target_bytes and fits:  # the last aim overshoots where an earlier one fitted: take that one
        lam_idx = max(fits, key=lambda i: fits[i][0])
        _, y, candidates, chosen = fits[lam_idx]
    return lam_idx, y, candidates, chosen


# ---------------------------------------------------------------- the context model's lambda

CODING_STRIDE, CODING_REACH = 8, 32  # the coding lambda's search: index steps, and how far from the aimed one


def coding_lambda(size_at, lam_idx: int) -> int:
    """The lambda index the stream's context model is conditioned on: the one of `size_at(index)` (the stream's
    bytes with that index) smallest, searched in CODING_STRIDE steps from the aimed `lam_idx` (upward first,
    downward only where the first step up does not pay), at most CODING_REACH away. Why: lambda enters the
    decoder only through the context model (the synthesis ignores it), so any index decodes the same pixels,
    and the refined latents code smaller under a slightly larger lambda than the one they were refined at
    (docs/decisions/grid2-encoder.md, "Low rates"), which the size fit spends on a finer step."""
    best, best_size = lam_idx, size_at(lam_idx)
    for direction in (1, -1):
        c = lam_idx
        while abs(c - lam_idx) < CODING_REACH and 0 <= c + direction * CODING_STRIDE <= 255:
            c += direction * CODING_STRIDE
            size = size_at(c)
            if size >= best_size:
                break
            best, best_size = c, size
        if best != lam_idx:
            break
    return best


# ---------------------------------------------------------------- the size fit on real bytes

FIT_ITERS = 5  # dead-zone search iterations (regula falsi on the number of zeroed latents)
FINER = 32  # the size fit may make the latent step at most an octave finer than the tied one


def fit_size(pack, magnitudes, base_idx: int, target: int, mse=None) -> tuple[bytes | None, int, int]:
    """The stream at or under `target` bytes, in few packs (each runs the exact ARM over every latent).
    `pack(step index, dead zone=0.5)` makes a stream, `magnitudes(step index)` lists the dead zones that
    zero one more latent (``quantizer.deadzone_magnitudes``).

    Under the target at the tied step: the finest index (at most FINER finer) whose stream fits, by
    galloping then bisection, so the next finer index overshoots; the gap between the two is filled at the
    finer step with a dead zone. Over the target at the tied step: the dead zone at the tied step first,
    a coarser step only where zeroing every small latent is not enough. Why: the ARM is conditioned on
    lambda, so a step coarser than lambda's saves little rate and can even cost rate, while the dead zone's
    rate falls with every zeroed latent. None if even the coarsest setting is too big.

    `mse(index, dead zone)`, where given, picks among the streams that fit (the tied step's, the finest
    plain one, the dead-zone fill) the one of least distortion; without it the biggest. Why: more bytes is
    not always more quality (latents refined at the tied step have their rounding fitted to it). Returns
    (stream, its step index, the biggest size that fit)."""
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
        log.debug("%d B over the target at the tied step: dead zone", len(at(base_idx)))
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
    if good is not None:  # inserted first: without `mse` a tie in size keeps it
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
        log.debug("size fit candidates: %s", ", ".join(
            f"step {i} dead zone {dz:.3g}: {len(fits[(i, dz)])} B, MSE {e:.4g}" for (i, dz), e in errs.items()))
    log.debug("fitted: step index %d (tied %d), %d B", key[0], base_idx, len(fits[key]))
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
