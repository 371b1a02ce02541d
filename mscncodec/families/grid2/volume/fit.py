"""The encoder's fit: latents from zero against the shared decoder theta0 (C3's refinement, in 3-D).

The schedule is data (``SCHEDULES``): a soft-rounding phase with noise, its temperature annealed, then a
straight-through phase at a decaying rate. Distortion is the modality's (weighted squared error, or binary
cross-entropy on occupancy logits) on a random batch of the target's points per step; the rate is the float
ARM's estimate of every latent's bits, per point of the signal (``VolumeTarget.rate_norm``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from mscncodec.coding.latents import laplace_bits
from mscncodec.families.grid2.arm import arm_float
from mscncodec.families.grid2.config import SYMBOL_RANGE
from mscncodec.families.grid2.quantizer import soft_round, ste
from mscncodec.families.grid2.volume.config import Vol3Config
from mscncodec.families.grid2.volume.synthesis import synthesis


@dataclass
class VolumeTarget:
    """What a modality hands the family: samples of the signal in [-1, 1]^3 and how to score a fit."""

    points: torch.Tensor  # (N, 3) float32, axes slowest first
    values: torch.Tensor  # (N,) the signal (normalised value, truncated SDF, or occupancy 0/1)
    weights: torch.Tensor  # (N,) >= 0, mean ~1 (area weights, missing values 0, near-surface emphasis)
    finest: tuple[int, int, int]  # the finest latent grid
    loss: str = "mse"  # "mse" or "bce" (values are 0/1 and the network gives logits)
    rate_norm: float = 0.0  # the signal's size in points (bits are divided by it); 0: N
    batch: int = 0  # points per step (0: all)
    lr_scale: float = 1.0  # the modality's factor on the schedule's rates (the fits are far from converged in
    # the steps a CPU affords, so the rate decides where they stop: docs/decisions/grid3.md)

    def __post_init__(self) -> None:
        if self.loss not in ("mse", "bce"):
            raise ValueError(f"unknown loss {self.loss!r}")
        if not self.rate_norm:
            self.rate_norm = float(len(self.values))


@dataclass(frozen=True)
class Phase:
    frac: float  # share of the steps
    lr: float  # Adam's rate at the phase's start
    lr_end: float  # ... and at its end (geometric in between)
    mode: str  # "soft": soft rounding + uniform noise; "ste": rounding, straight-through gradient
    t0: float = 0.3  # soft-rounding temperature at the start ...
    t1: float = 0.1  # ... and at the end (geometric)


@dataclass(frozen=True)
class Schedule:
    steps: int
    phases: tuple[Phase, ...]

    def __str__(self) -> str:
        return f"{self.steps} steps: " + "; ".join(
            f"{p.frac:.0%} {p.mode} lr {p.lr:g}->{p.lr_end:g}" + (f" T {p.t0:g}->{p.t1:g}" if p.mode == "soft" else "")
            for p in self.phases)


def _schedule(steps: int) -> Schedule:
    return Schedule(steps, (Phase(0.75, 2e-2, 5e-3, "soft"), Phase(0.25, 2e-3, 1e-4, "ste")))


SCHEDULES = {"fast": _schedule(300), "default": _schedule(800), "max": _schedule(2500)}


def distortion(pred: torch.Tensor, values: torch.Tensor, weights: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "bce":
        return (weights * F.binary_cross_entropy_with_logits(pred, values, reduction="none")).mean()
    return (weights * (pred - values) ** 2).mean()


def rate_bits(cfg: Vol3Config, p: dict[str, torch.Tensor], values: list[torch.Tensor], ctx: list[torch.Tensor],
              lam: float) -> torch.Tensor:
    """Estimated bits of the latents `values` (symbol units, possibly noisy) given the context `ctx`."""
    lam_t = torch.tensor([lam])
    total = values[0].new_zeros(())
    for l in range(cfg.levels):
        mu, ls = arm_float(cfg, p, ctx, l, lam_t)
        total = total + laplace_bits(values[l], mu, ls).sum()
    return total


def zero_latents(cfg: Vol3Config, finest: tuple[int, int, int]) -> list[torch.Tensor]:
    return [torch.zeros(1, 1, *s) for s in cfg.grid_shapes(finest)]


def fit_latents(cfg: Vol3Config, theta: dict[str, torch.Tensor], target: VolumeTarget, lam: float,
                schedule: Schedule, init: list[torch.Tensor] | None = None, seed: int = 0,
                progress: Callable[[int, int, float], None] | None = None, phases: slice = slice(None)
                ) -> list[torch.Tensor]:
    """Latents (symbol units, float) that minimise distortion + lam * bits / rate_norm from `init` (zeros)."""
    p = {k: v.detach() for k, v in theta.items()}
    y = [t.detach().clone().requires_grad_(True) for t in (init or zero_latents(cfg, target.finest))]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(y, lr=1e-2)
    n = len(target.values)
    done, total = 0, schedule.steps
    for ph in schedule.phases[phases]:
        steps = max(1, round(ph.frac * schedule.steps))
        for i in range(steps):
            a = i / max(steps - 1, 1)
            for g in opt.param_groups:
                g["lr"] = target.lr_scale * ph.lr * (ph.lr_end / ph.lr) ** a
            if ph.mode == "soft":
                t = ph.t0 * (ph.t1 / ph.t0) ** a
                noisy = [soft_round(soft_round(v, t) + torch.rand(v.shape, generator=gen) - 0.5, t) for v in y]
            else:
                noisy = [ste(v) for v in y]
            ctx = [torch.round(v).detach() for v in y]  # the decoder sees integers; no gradient: 1.7x faster
            if target.batch and target.batch < n:
                idx = torch.randint(0, n, (target.batch,), generator=gen)
                pts, val, w = target.points[idx], target.values[idx], target.weights[idx]
            else:
                pts, val, w = target.points, target.values, target.weights
            d = distortion(synthesis(cfg, p, noisy, pts), val, w, target.loss)
            r = rate_bits(cfg, p, noisy, ctx, lam) / target.rate_norm
            loss = d + lam * r
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for v in y:
                    v.clamp_(-SYMBOL_RANGE, SYMBOL_RANGE)
            done += 1
            if progress is not None:
                progress(done, total, float(d))
    return [v.detach() for v in y]


def quantise(y: list[torch.Tensor], step: float) -> list[torch.Tensor]:
    """Latent values -> integer symbols at `step` (int32 tensors)."""
    return [torch.round(v / step).clamp(-SYMBOL_RANGE, SYMBOL_RANGE).to(torch.int32) for v in y]


def weighted_error(cfg: Vol3Config, theta: dict[str, torch.Tensor], latents: list[torch.Tensor],
                   target: VolumeTarget, chunk: int = 1 << 18) -> float:
    """The distortion of dequantised latents on every point of the target (no gradient)."""
    total = 0.0
    with torch.no_grad():
        for a in range(0, len(target.values), chunk):
            s = slice(a, a + chunk)
            pred = synthesis(cfg, theta, latents, target.points[s])
            total += float(distortion(pred, target.values[s], target.weights[s], target.loss)) * len(pred)
    return total / max(len(target.values), 1)


DEFAULT_CALIBRATION = (-14.0, -1.5)  # log2 lambda = a + b log2(bits per point): the first fit's aim only


def calibration_line(calibration: dict | None) -> tuple[float, float]:
    """(a, b) of log2 lambda = a + b log2(bits per point): the model's, unless its training's rates did not
    follow lambda (a slope outside [-5, -0.5] is no usable line), else DEFAULT_CALIBRATION."""
    a, b = (calibration or {}).get("log2_lambda", DEFAULT_CALIBRATION)
    return (a, b) if -5.0 <= b <= -0.5 else DEFAULT_CALIBRATION


def lambda_guess(bits_per_point: float, calibration: dict | None) -> float:
    """The trade-off expected to spend `bits_per_point` (the model's calibration, log2 lambda affine in log2
    rate), clamped to the lambda table."""
    a, b = calibration_line(calibration)
    return 2.0 ** min(max(a + b * math.log2(max(bits_per_point, 1e-6)), -15.0), 0.9)
