"""Convergence of grid2's encode-time refinement at a fixed lambda: rate + distortion / lambda of the
rounded result (the encoder's own criterion, `update.choose_update`, decoder update bytes included), PSNR and
estimated bpp after N steps, each run's schedule spanning exactly its N steps, with its wall seconds.

    python probe.py --photos 113016,14037 --model grid2-l7-ft256+dense --log2-lam -8 --steps 25,50,100,200 \
        --variant base --out runs.jsonl

Variants are Preset overrides (VARIANTS below) or optimiser/step changes the probe patches in. Held-out
natural-train photos only (the 16 the models' training split held out), never Kodak.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mscncodec import models
from mscncodec._runtime import tune_allocator
from mscncodec.coding.latents import lambda_index, lambda_value, pad_image, tied_step
from mscncodec.families.grid2 import frame
from mscncodec.families.grid2 import refine as R
from mscncodec.families.grid2.quantizer import symbols_of
from mscncodec.families.grid2.update import choose_update

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "natural-train"
HELD_OUT = {p.stem: p for p in [
    *(DATA / "bsds500/train" / f"{n}.jpg" for n in ("113016", "140075", "173036", "183087", "25098", "299091",
                                                    "55067", "76002", "95006")),
    *(DATA / "bsds500/val" / f"{n}.jpg" for n in ("106024", "119082", "14037", "76053")),
    DATA / "mcmaster/mcmaster_14.png"]}

P = R.PRESETS["default"]


@dataclasses.dataclass(frozen=True)
class Knobs:
    """What the probe's copy of the refinement loop varies beyond the Preset."""
    preset: R.Preset = P
    warmup: float = 0.0  # share of the steps over which the learning rates ramp up linearly
    floor: float = 0.1  # the cosine ends at this share of the phase's rate
    noise1: float | None = None  # the soft phase's noise width at its end (None: constant)
    bf16: bool = False  # the synthesis under bfloat16 autocast
    latent_betas: tuple[float, float] = (0.9, 0.999)
    latent_eps: float = 1e-8  # Adam's eps on the latents (per-pixel loss: their gradients are ~1e-6..1e-5)
    one_cosine: bool = False  # one cosine over all phases (the hard phase at its tail), not one per phase
    rel_delta: float | None = None  # the decoder update's lr per tensor: this times the tensor's rms in theta0
    candidates: tuple[int, ...] = ()
    mixed: bool = False  # the soft phase as training's proxy: rate on y + uniform noise, context and synthesis
    # on straight-through rounded y
    best_every: int = 0  # every this many steps (and at the end) the rounded cost is measured and the best kept
    ctx: str = "soft"  # the ARM's context in the soft phase: "soft" (soft-rounded noisy values), "ste" (rounded,
    # straight-through gradient), "hard" (rounded, no gradient through the context)  # lambda-index offsets of extra amortised starts, the best J refined


def ph(*phases):
    return dataclasses.replace(P, phases=tuple(phases))


SOFT, STE = R.SOFT, R.STE
VARIANTS: dict[str, Knobs] = {
    "base": Knobs(),
    "warm10": Knobs(warmup=0.1),
    "floor0": Knobs(floor=0.0),
    "lr2x": Knobs(dataclasses.replace(P, latent_lr=0.1, delta_lr=6e-3)),
    "lrhalf": Knobs(dataclasses.replace(P, latent_lr=0.025, delta_lr=1.5e-3)),
    "dlr1e-2": Knobs(dataclasses.replace(P, delta_lr=1e-2)),
    "t02": Knobs(ph(R.Phase("soft", 0.8, 1.0, SOFT, t0=0.2, t1=0.05, noise=1.0), R.Phase("hard", 0.2, 0.1, STE))),
    "noise05": Knobs(noise1=0.5),
    "beta95": Knobs(latent_betas=(0.9, 0.95)),
    "bf16": Knobs(bf16=True),
    "nonoise": Knobs(ph(R.Phase("soft", 0.8, 1.0, SOFT, t0=0.3, t1=0.1, noise=0.0), R.Phase("hard", 0.2, 0.1, STE))),
    "lowT": Knobs(ph(R.Phase("soft", 0.8, 1.0, SOFT, t0=0.1, t1=0.03, noise=1.0), R.Phase("hard", 0.2, 0.1, STE))),
    "ste03": Knobs(ph(R.Phase("hard", 1.0, 0.3, STE))),
    "ste01": Knobs(ph(R.Phase("hard", 1.0, 0.1, STE))),
    "lr02": Knobs(dataclasses.replace(P, latent_lr=0.02)),
    "cand4": Knobs(candidates=(-16, -8, 8, 16)),
    "cand2": Knobs(candidates=(-8, 8)),
    "rel01": Knobs(rel_delta=0.01),
    "eps3e-7": Knobs(latent_eps=3e-7),
    "ctxste": Knobs(ctx="ste"),
    "mixed": Knobs(mixed=True),
    "best5": Knobs(best_every=5),
    "best5lr02": Knobs(dataclasses.replace(P, latent_lr=0.02), best_every=5),
    "best5lr01": Knobs(dataclasses.replace(P, latent_lr=0.01), best_every=5),
    "mixed05": Knobs(dataclasses.replace(P, latent_lr=0.025), mixed=True),
    "mixed2x": Knobs(dataclasses.replace(P, latent_lr=0.1), mixed=True),
    "T05": Knobs(ph(R.Phase("soft", 0.8, 1.0, SOFT, t0=0.05, t1=0.02, noise=1.0), R.Phase("hard", 0.2, 0.1, STE))),
    "T15": Knobs(ph(R.Phase("soft", 0.8, 1.0, SOFT, t0=0.15, t1=0.05, noise=1.0), R.Phase("hard", 0.2, 0.1, STE))),
    "ctxhard": Knobs(ctx="hard"),
    "eps3e-6": Knobs(latent_eps=3e-6),
    "eps1e-5": Knobs(latent_eps=1e-5),
    "rel003": Knobs(rel_delta=0.003),
}


def refine_x(model, x, y0, lam: float, step: float, n_steps: int, n_pix: int, k: Knobs):
    """refine.refine (whole frame) with the probe's knobs."""
    from mscncodec.families.grid2.latent_codec import LatentCodec
    from mscncodec.families.grid2.quantizer import soft_round, ste
    from mscncodec.families.grid2.synthesis import synthesis
    from mscncodec.families.grid2.update import effective
    from mscncodec.families.grid2.config import SYMBOL_RANGE
    from mscncodec.optim import Adam

    preset, cfg = k.preset, model.cfg
    lam_t = torch.tensor([lam])
    y = [v.detach().clone().requires_grad_(True) for v in y0]
    update = model.sends_update
    slow = n_steps > preset.long_steps and not update
    opts = [Adam([{"params": y, "lr": preset.long_latent_lr if slow else preset.latent_lr}], betas=k.latent_betas, eps=k.latent_eps)]
    delta = None
    if update:
        delta = {n: torch.zeros_like(v).requires_grad_(True) for n, v in model.theta.items()}
        if k.rel_delta is None:
            opts.append(Adam([{"params": list(delta.values()), "lr": preset.delta_lr}]))
        else:
            for n, v in delta.items():
                rms = float(model.theta[n].pow(2).mean().sqrt())
                opts.append(Adam([{"params": [v], "lr": k.rel_delta * max(rms, 0.01)}]))
    base = [o.groups[0]["lr"] for o in opts]
    bounds = preset.bounds(n_steps)
    best = None

    def measure():
        p = effective(model, delta)
        hard_ = [torch.round(v.detach()) for v in y]
        with torch.no_grad():
            b = LatentCodec(cfg, p, lam_t).bits(hard_, hard_).sum() / n_pix
            d = (synthesis(cfg, p, [v * step for v in hard_]) - x).pow(2).mean() / lam
        return float(b + d)

    if k.best_every:
        best = (measure(), [v.detach().clone() for v in y], None)
    for i in range(n_steps):
        if k.best_every and i and i % k.best_every == 0:
            j = measure()
            if j < best[0]:
                best = (j, [v.detach().clone() for v in y], {n: v.detach().clone() for n, v in delta.items()} if delta else None)
        kk = max(j for j in range(len(preset.phases)) if bounds[j] <= i)
        phase, start = preset.phases[kk], bounds[kk]
        frac = (i - start) / max(bounds[kk + 1] - start, 1)
        if k.one_cosine:
            g = i / max(n_steps, 1)
            scale = 0.5 * (1 + math.cos(math.pi * g)) * (1 - k.floor) + k.floor
        else:
            scale = (0.5 * (1 + math.cos(math.pi * frac)) * (1 - k.floor) + k.floor) * phase.lr
        if k.warmup and i < k.warmup * n_steps:
            scale *= (i + 1) / (k.warmup * n_steps + 1)
        for o, b in zip(opts, base):
            o.groups[0]["lr"] = b * scale
        params = effective(model, delta)
        if phase.quantiser == SOFT and k.mixed:
            hard = [ste(v) for v in y]
            rate_vals = [v + torch.empty_like(v).uniform_(-0.5 * phase.noise, 0.5 * phase.noise) for v in y]
            ctx, syn = hard, hard
        elif phase.quantiser == SOFT:
            t = phase.t0 * (phase.t1 / phase.t0) ** frac
            a = phase.noise if k.noise1 is None else phase.noise * (k.noise1 / phase.noise) ** frac
            noisy = [soft_round(v, t) + torch.empty_like(v).uniform_(-0.5 * a, 0.5 * a) for v in y]
            syn = [soft_round(v, t) for v in noisy]
            rate_vals = noisy
            if k.ctx == "soft":
                ctx = syn
            elif k.ctx == "ste":
                ctx = [ste(v) for v in y]
            else:
                ctx = [torch.round(v).detach() for v in y]
        else:
            hard = [ste(v) for v in y]
            rate_vals, ctx, syn = hard, hard, hard
        bits = LatentCodec(cfg, params, lam_t).bits(rate_vals, ctx)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=k.bf16):
            pred = synthesis(cfg, params, [v * step for v in syn])
        mse = (pred.float() - x).pow(2).mean()
        loss = bits.sum() / n_pix + mse / lam
        for o in opts:
            o.zero_grad()
        loss.backward()
        for o in opts:
            o.step()
        with torch.no_grad():
            for v in y:
                v.clamp_(-SYMBOL_RANGE, SYMBOL_RANGE)
    if delta:
        delta = {n: v.detach() for n, v in delta.items()}
    if k.best_every:
        j = measure()
        if j >= best[0]:
            return best[1], best[2], []
    return [v.detach() for v in y], delta, []


def load(name: str, crop: str | None) -> np.ndarray:
    path = HELD_OUT.get(name) or Path(name)
    im = np.asarray(Image.open(path).convert("RGB"))
    if crop:
        h, w = map(int, crop.split("x"))
        im = im[:h, :w]
    return im


def run(model, rgb: np.ndarray, log2_lam: float, n_steps: int, knobs: Knobs) -> dict:
    h, w, _ = rgb.shape
    x = pad_image(rgb, model.cfg.align)
    lam_idx = lambda_index(2.0**log2_lam)
    lam, step = lambda_value(lam_idx), tied_step(lam_idx)
    t0 = time.perf_counter()
    with torch.no_grad():
        y0 = symbols_of(frame.analysis(model, x, torch.tensor([lam])), torch.tensor([step]))
        best = frame.rd_cost(model, model.theta, x, y0, lam, step, h * w) if knobs.candidates else 0.0
        for d in knobs.candidates:
            lj = lam_idx + d
            yc = [v * (tied_step(lj) / step) for v in symbols_of(frame.analysis(model, x, torch.tensor([lambda_value(lj)])),
                                                                   torch.tensor([tied_step(lj)]))]
            jc = frame.rd_cost(model, model.theta, x, yc, lam, step, h * w)
            if jc < best:
                best, y0 = jc, yc
    y, delta, _ = refine_x(model, x, y0, lam, step, n_steps, h * w, knobs)
    secs = time.perf_counter() - t0
    cands, chosen, j = choose_update(model, x, y, delta, lam, step, h * w)
    if delta is None:
        j = frame.rd_cost(model, model.theta, x, y, lam, step, h * w)
    secs_p, p = cands[chosen]
    hard = [torch.round(v) for v in y]
    mse = frame.mse(model, p, x[..., :, :], [v * step for v in hard])
    bits = frame.est_bits(model, p, y, torch.tensor([lam])) + 8 * sum(len(b) for _, b in secs_p)
    return {"J": j, "bpp": bits / (h * w), "psnr": 10 * math.log10(1 / mse), "seconds": secs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", required=True)
    ap.add_argument("--crop", default=None, help="HxW from the top left")
    ap.add_argument("--model", default="grid2-l7-ft256+dense")
    ap.add_argument("--log2-lam", default="-8")
    ap.add_argument("--steps", default="25,50,100,200")
    ap.add_argument("--variant", default="base")
    ap.add_argument("--out", default="runs.jsonl")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tune_allocator()
    model = models.load_model(a.model)
    for name in a.variant.split(","):
        preset = VARIANTS[name]
        for photo in a.photos.split(","):
            rgb = load(photo, a.crop)
            for ll in map(float, a.log2_lam.split(",")):
                for n in map(int, a.steps.split(",")):
                    torch.manual_seed(0)
                    r = {"photo": photo, "crop": a.crop, "model": a.model, "log2_lam": ll, "steps": n,
                         "variant": name, "threads": a.threads, **run(model, rgb, ll, n, preset)}
                    print(json.dumps(r), flush=True)
                    with open(a.out, "a") as f:
                        f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
