"""The encode-time refinement at fixed lambda (C3's schedule, short), its schedule as data: one ``Preset``
per effort, each a sequence of ``Phase``s (``print(PRESETS["default"])`` reads it out).

Adam on the latents (and, for the variants that send one, on an update of the decoder), loss
rate + MSE / lambda. Each phase's learning rate follows a cosine from ``lr`` to a tenth of it; in the soft
phase the rate sees the soft-rounded latents plus uniform noise and the context and synthesis see those
soft-rounded again, the temperature annealed geometrically ``t0 -> t1``; in the hard phase all three see
rounded latents with straight-through gradients. Why these numbers: docs/decisions/grid2-encoder.md.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from mscncodec._runtime import progress_bar
from mscncodec.coding.latents import lambda_index, lambda_value, tied_step
from mscncodec.families.grid2 import frame, tiles
from mscncodec.families.grid2.config import SYMBOL_RANGE
from mscncodec.families.grid2.latent_codec import LatentCodec
from mscncodec.families.grid2.model import Grid2Model
from mscncodec.families.grid2.quantizer import soft_round, ste, symbols_of
from mscncodec.families.grid2.synthesis import synthesis
from mscncodec.families.grid2.update import choose_update, effective
from mscncodec.optim import Adam

log = logging.getLogger(__name__)

SOFT, STE = "soft round + noise", "straight-through round"  # a phase's quantiser


@dataclass(frozen=True)
class Phase:
    name: str
    fraction: float  # share of the steps (the last phase takes what the others leave)
    lr: float  # relative to the preset's learning rates, at the phase's start
    quantiser: str = SOFT
    t0: float = 0.0  # soft rounding's temperature at the phase's start and end (annealed geometrically)
    t1: float = 0.0
    noise: float = 0.0  # width of the additive uniform noise, in latent steps

    def __str__(self) -> str:
        s = f"{self.name}: {self.fraction:.0%} of the steps, lr x{self.lr:g} (cosine to x{self.lr / 10:g}), {self.quantiser}"
        if self.quantiser == SOFT:
            s += f", T {self.t0:g} -> {self.t1:g}, noise {self.noise:g} step"
        return s


@dataclass(frozen=True)
class Preset:
    effort: str
    steps: int  # refinement steps, latents only
    update_steps: int  # with a decoder update
    latent_lr: float = 0.05  # Adam on latents, in symbol units
    long_steps: int = 100  # a latents-only refinement longer than this moves the latents at long_latent_lr
    long_latent_lr: float = 0.02
    delta_lr: float = 3e-3  # a dense update of the meta-learned decoder
    scratch_delta_lr: float = 1e-2  # the generic start fits its whole decoder (C3's rate)
    candidates: tuple[int, ...] = ()  # lambda-index offsets of the extra amortised starts tried (start_candidates;
    # models that send no decoder update)
    phases: tuple[Phase, ...] = field(default_factory=lambda: (
        Phase("soft", 0.8, 1.0, SOFT, t0=0.3, t1=0.1, noise=1.0),
        Phase("hard", 0.2, 0.1, STE)))

    def __str__(self) -> str:
        return "\n".join([
            f"Preset {self.effort!r}: {self.steps} steps, {self.update_steps} with a decoder update",
            f"  latents: Adam lr {self.latent_lr:g} ({self.long_latent_lr:g} beyond {self.long_steps} steps "
            f"without an update); decoder update lr {self.delta_lr:g} (generic start {self.scratch_delta_lr:g})",
            "  start: the amortised latents at lambda"
            + (f" or at lambda index {', '.join(f'{d:+d}' for d in self.candidates)}, the one of least rate + "
               f"distortion / lambda (no decoder update)" if self.candidates else ""),
            *(f"  phase {p}" for p in self.phases)])

    def bounds(self, n_steps: int) -> list[int]:
        """The first step of each phase, and n_steps."""
        cum, out = 0.0, [0]
        for p in self.phases[:-1]:
            cum += p.fraction
            out.append(int(round(cum * n_steps)))
        return out + [n_steps]


# `placebo`: C3 / Cool-chic's budget, 10k steps, for a GPU (``--device cuda``; hours per photo on a CPU). Longer
# runs move slower (latents 0.02, 0.005 without a decoder update to move with them, the update 1e-3), and the soft
# phase anneals further (T 0.3 -> 0.05) so that its latents end nearer the integers the file sends; the hard
# phase is a tenth of the steps at a tenth of the rate. Starting values, not yet measured (no GPU was lent):
# docs/decisions/grid2-encoder.md, "GPU encode path (issue 28)".
PLACEBO = Preset("placebo", 10_000, 10_000, latent_lr=0.02, long_latent_lr=0.005, delta_lr=1e-3,
                 phases=(Phase("soft", 0.9, 1.0, SOFT, t0=0.3, t1=0.05, noise=1.0), Phase("hard", 0.1, 0.1, STE)))
CANDIDATES = (-16, -8, 8, 16)  # start_candidates' lambda-index offsets (8 = a quarter octave of lambda)
PLACEBO = dataclasses.replace(PLACEBO, candidates=CANDIDATES)
PRESETS = {p.effort: p for p in (Preset("fast", 8, 8, candidates=(-8, 8)), Preset("default", 50, 80, candidates=CANDIDATES),
                                 Preset("max", 400, 400, candidates=CANDIDATES), PLACEBO)}


def refine(model: Grid2Model, x: torch.Tensor, y0: list[torch.Tensor], lam: float, step: float, n_steps: int,
           n_pix: int, progress: bool = False, update: bool = False, delta0: dict[str, torch.Tensor] | None = None,
           tile: tiles.Tile | None = None, preset: Preset = PRESETS["default"]
           ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor] | None, list[dict]]:
    """The refinement at fixed lambda. y0: latents in symbol units. Returns the latents, the decoder
    update (if `update`; started at `delta0` if given) and a per-step log (phase, temperature, estimated
    bpp, PSNR). `tile`: x and y0 are that tile's outer box, and the loss counts its interior only (the
    margin is context; see refine_tiled)."""
    cfg = model.cfg
    lam_t = torch.tensor([lam], device=x.device)  # the fit's device, as x, y0 and the model's tensors
    y = [v.detach().clone().requires_grad_(True) for v in y0]
    # a decoder that moves with the latents keeps the long refinement from drifting: the latents keep their rate
    slow = n_steps > preset.long_steps and not update
    groups = [{"params": y, "lr": preset.long_latent_lr if slow else preset.latent_lr}]
    delta = None
    if update:
        delta = {k: (delta0[k].detach().clone() if delta0 else torch.zeros_like(v)).requires_grad_(True)
                 for k, v in model.theta.items()}
        groups.append({"params": list(delta.values()), "lr": preset.scratch_delta_lr if model.sparsity == "scratch"
                       else preset.delta_lr})
    opt = Adam(groups)
    base = [g["lr"] for g in opt.groups]
    bounds = preset.bounds(n_steps)
    log_ = []
    bar = progress_bar(range(n_steps), progress=progress, desc="refine", leave=False, unit="step")
    for i in bar:
        k = max(j for j in range(len(preset.phases)) if bounds[j] <= i)
        phase, start = preset.phases[k], bounds[k]
        frac = (i - start) / max(bounds[k + 1] - start, 1)
        scale = (0.5 * (1 + math.cos(math.pi * frac)) * 0.9 + 0.1) * phase.lr
        for g, b in zip(opt.groups, base):
            g["lr"] = b * scale
        params = effective(model, delta)
        if phase.quantiser == SOFT:
            t = phase.t0 * (phase.t1 / phase.t0) ** frac
            a = phase.noise
            noisy = [soft_round(v, t) + torch.empty_like(v).uniform_(-0.5 * a, 0.5 * a) for v in y]
            ctx = [soft_round(v, t) for v in noisy]
            rate_vals, syn = noisy, ctx
        else:
            t = 0.0
            hard = [ste(v) for v in y]
            rate_vals, ctx, syn = hard, hard, hard
        if tile is None:
            bits = LatentCodec(cfg, params, lam_t).bits(rate_vals, ctx)
            pred = synthesis(cfg, params, [v * step for v in syn])
            mse = (pred - x).pow(2).mean()
        else:
            bits = tiles.inner_bits(cfg, params, rate_vals, ctx, lam_t, tile)
            pred = synthesis(cfg, params, [v * step for v in syn])
            mse = tile.local(pred - x).pow(2).mean()
        bpp = bits.sum() / n_pix
        loss = bpp + mse / lam
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for v in y:
                v.clamp_(-SYMBOL_RANGE, SYMBOL_RANGE)
        # the log keeps tensors: reading them every step would stall a GPU twice a step (read once, below)
        log_.append({"step": i, "phase": phase.name, "T": round(t, 4), "bpp": bpp.detach(), "mse": mse.detach()})
        if progress and (i % 10 == 0 or i == n_steps - 1):
            bar.set_postfix(bpp=f"{bpp.item():.3f}", psnr=f"{10 * math.log10(1 / max(mse.item(), 1e-12)):.2f}")
    for row in log_:
        row["bpp"] = float(row["bpp"])
        row["psnr"] = 10 * math.log10(1 / max(float(row.pop("mse")), 1e-12))
    if delta:
        delta = {k: v.detach() for k, v in delta.items()}
    return [v.detach() for v in y], delta, log_


def refine_tiled(model: Grid2Model, x: torch.Tensor, y0: list[torch.Tensor], lam: float, step: float,
                 n_steps: int, progress: bool = False, preset: Preset = PRESETS["default"]) -> list[torch.Tensor]:
    """`refine` of a big image in bounded memory: each tile in turn gets the whole schedule, its loss on its
    interior, the latents around it (already refined where earlier tiles were) as context; only its
    interior latents are kept. Memory is a tile's, time linear in pixels (a shared decoder update would
    need every tile at once: the variants that send one refine whole images)."""
    y = [v.detach().clone() for v in y0]
    hp, wp = x.shape[2:]
    for t in progress_bar(tiles.tiles(hp, wp), progress=progress, desc="refine tiles", leave=False, unit="tile"):
        part, _, _ = refine(model, tiles.pixels(t.crop(x)), [t.crop(v, l) for l, v in enumerate(y)], lam, step,
                            n_steps, t.pixels, tile=t, preset=preset)
        for l, v in enumerate(part):
            t.interior(y[l], l).copy_(t.local(v, l))
    return y


def start_candidates(model: Grid2Model, x: torch.Tensor, y0: list[torch.Tensor], lam: float, step: float,
                     n_pix: int, offsets: tuple[int, ...]) -> list[torch.Tensor]:
    """The start of least rounded rate + distortion / lambda among the amortised latents at lambda (`y0`) and
    those the analysis gives at the lambda indices `offsets` away, rescaled to lambda's step (Cool-chic 5's
    candidate warm-up, on amortised starts). Why: on smooth photos the latents of a neighbouring lambda can
    round to a cheaper file, at low rates where no refinement improves the start (docs/decisions/grid2-encoder.md,
    "Quality per CPU-second"). Each candidate costs one analysis and one rate + synthesis pass."""
    best, j_best = y0, frame.rd_cost(model, model.theta, x, y0, lam, step, n_pix)
    idx = lambda_index(lam)
    for d in offsets:
        i = int(np.clip(idx + d, *rate_control_limits()))
        if i == idx:
            continue
        with torch.no_grad():
            cand = symbols_of(frame.analysis(model, x, torch.tensor([lambda_value(i)], device=x.device)),
                              torch.tensor([tied_step(i)], device=x.device))
        cand = [v * (tied_step(i) / step) for v in cand]
        j = frame.rd_cost(model, model.theta, x, cand, lam, step, n_pix)
        if j < j_best:
            best, j_best = cand, j
            log.debug("start candidate at lambda index %+d: rate + D / lambda %.4f", d, j)
    return best


def rate_control_limits() -> tuple[int, int]:
    """The lambda indices the encoder searches (rate_control.LAMBDA_SEARCH; imported late: rate_control
    imports this module)."""
    from mscncodec.families.grid2.rate_control import LAMBDA_SEARCH

    return LAMBDA_SEARCH


def refine_chosen(model: Grid2Model, x: torch.Tensor, y0: list[torch.Tensor], lam: float, step: float,
                  n_steps: int, n_pix: int, tiled: bool, progress: bool, delta0: dict[str, torch.Tensor] | None,
                  preset: Preset = PRESETS["default"]) -> tuple[list[torch.Tensor], dict, float | None]:
    """The refinement (tile by tile on big images), the decoder update's quantisation (`choose_update`),
    and the amortised start with the shared decoder where that rounds to a lower rate + distortion / lambda
    than the refined file: a short refinement of a good start can end worse than it began (soft rounding
    moves the latents off the integer grid the rounded file lives on), and latents and decoder moving
    together can too."""
    # not with a decoder update: there it gained nothing and made the first aim miss (grid2-encoder.md)
    if preset.candidates and model.analysis and not tiled and delta0 is None and not model.sends_update:
        y0 = start_candidates(model, x, y0, lam, step, n_pix, preset.candidates)
    if tiled:
        y, delta = refine_tiled(model, x, y0, lam, step, n_steps, progress=progress, preset=preset), None
    else:
        y, delta, _ = refine(model, x, y0, lam, step, n_steps, n_pix, progress=progress,
                             update=model.sends_update, delta0=delta0, preset=preset)
    candidates, chosen, j = choose_update(model, x, y, delta, lam, step, n_pix)
    if model.analysis and (delta is not None or n_steps):
        if delta is None:
            j = frame.rd_cost(model, model.theta, x, y, lam, step, n_pix)
        if frame.rd_cost(model, model.theta, x, y0, lam, step, n_pix) < j:
            log.debug("the amortised start is cheaper than the refined file: kept")
            return [v.detach() for v in y0], {None: ([], model.theta)}, None
    return y, candidates, chosen
