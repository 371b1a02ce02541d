"""Meta-training of the latent-grid family: ``mscn train image --arch grid``.

One outer step, on a batch of random crops with one rate-distortion trade-off
lambda each (log-uniform, so one model serves every rate):

1. the analysis network predicts each crop's latents (amortised inference);
2. the inner loop takes ``inner_steps`` Meta-SGD steps on a per-crop gated update
   delta of the synthesis + context networks (hard-concrete L0 gates inside the
   loop, as MSCN does for SIREN), latents held fixed;
3. the outer loss is the post-adaptation rate + distortion / lambda, in bits per
   pixel; it trains theta0, the analysis network, the gate priors and the
   per-entry learning rates, second-order through the inner steps.

Quantisation is simulated the usual way: uniform noise for the rate term,
straight-through rounding for what the synthesis sees. A sent update entry is
charged ``BITS_PER_ENTRY`` bits spread over a Kodak-sized image (``l0_pixels``),
the economics it meets at encode time, not those of a 128x128 crop.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mscncodec._runtime import progress_bar
from mscncodec import training
from mscncodec.coding import latents as lt
from mscncodec.families.grid import network as grid
from mscncodec.modalities.image import PatchSampler, load_rgb, training_files
from mscncodec.training import Run
from mscncodec.models import GridModel, fresh_grid_model
from mscncodec.coding.quantize import ste_round
from mscncodec.coding.sparsity import deterministic_gate, prob_open, sample_gate
from mscncodec.modalities.image import crops_to_images

BITS_PER_ENTRY = 10.0  # typical cost of one sent update entry (mask + value)


@dataclass
class GridTrainConfig:
    levels: int = 6
    first: int = 1
    hidden: tuple[int, ...] = (24, 24)
    ctx_hidden: int = 16
    analysis: int = 16
    crop: int = 128
    batch: int = 8
    steps: int = 20000
    inner_steps: int = 1
    inner_every: int = 4  # run the (second-order) inner loop on every k-th step only: 3x cheaper on average
    lr: float = 2e-3
    lr_meta: float = 1e-4
    lr_gate: float = 1e-2
    log2_lam: tuple[float, float] = (-12.0, -2.0)
    l0_pixels: int = 393216
    clip: float = 1.0
    val_every: int = 250
    val_crops: int = 16
    ckpt_every_s: float = 120.0
    val_fraction: float = 0.05
    seed: int = 0
    max_images: int = 0
    first_order: bool = False

    def grid_config(self) -> grid.GridConfig:
        return grid.GridConfig(levels=self.levels, first=self.first, hidden=tuple(self.hidden), ctx_hidden=self.ctx_hidden,
                               analysis=self.analysis)




def quantised_latents(latents: list[torch.Tensor], noisy: bool, step: torch.Tensor
                      ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(for the rate, for the synthesis) with quantisation step `step` (B,): noise / straight-through
    rounding while training, exact rounding for both when not noisy."""
    s = step.reshape(-1, 1, 1, 1)
    lat = [torch.maximum(torch.minimum(z, grid.SYMBOL_RANGE * s), -grid.SYMBOL_RANGE * s) for z in latents]
    hard = [ste_round(z / s, 1.0) * s for z in lat]
    if not noisy:
        return hard, hard
    return [z + torch.empty_like(z).uniform_(-0.5, 0.5) * s for z in lat], hard


def rd_loss(cfg: grid.GridConfig, params: dict[str, torch.Tensor], x: torch.Tensor, rate_lat: list[torch.Tensor],
            syn_lat: list[torch.Tensor], lam: torch.Tensor, extra_bits: torch.Tensor | float = 0.0,
            step: torch.Tensor | None = None, n_pix: int | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (rate + D / lambda, bpp, mse), rate in bits per pixel, D = MSE on [0, 1].

    step: the latent step (default: the one tied to lambda, lt.step_for); n_pix: the pixels the
    rate is counted over (default: x's; the encoder counts the original, unpadded image).
    """
    n_pix = n_pix or x.shape[2] * x.shape[3]
    bits = grid.rate_bits(cfg, params, rate_lat, lam, lt.step_for(lam) if step is None else step) + extra_bits
    pred = grid.synthesis(cfg, params, syn_lat)
    mse = (pred - x).pow(2).mean(dim=(1, 2, 3))
    bpp = bits / n_pix
    return bpp + mse / lam, bpp, mse


def inner_loop(model: GridModel, x: torch.Tensor, rate_lat, syn_lat, lam: torch.Tensor, l0_scale: float,
               steps: int, create_graph: bool, stochastic: bool = True
               ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Meta-SGD on a per-sample gated update of theta; returns (delta, gate logits)."""
    b = x.shape[0]
    shapes = model.cfg.update_shapes()
    delta = {k: torch.zeros(b, *s, requires_grad=True) for k, s in shapes.items()}
    la = {k: model.log_alpha[k].expand(b, *s) for k, s in shapes.items()}
    if not create_graph:
        la = {k: v.detach().clone().requires_grad_(True) for k, v in la.items()}
    keys = list(shapes)
    for _ in range(steps):
        loss, _, _ = post_loss(model, x, rate_lat, syn_lat, lam, delta, la, l0_scale, stochastic)
        grads = torch.autograd.grad(loss.sum(), [delta[k] for k in keys] + [la[k] for k in keys],
                                    create_graph=create_graph)
        delta = {k: delta[k] - model.lr_delta[k] * g for k, g in zip(keys, grads[: len(keys)])}
        la = {k: la[k] - model.lr_alpha[k] * g for k, g in zip(keys, grads[len(keys):])}
        if not create_graph:
            delta = {k: v.detach().requires_grad_(True) for k, v in delta.items()}
            la = {k: v.detach().requires_grad_(True) for k, v in la.items()}
    return delta, la


def post_loss(model: GridModel, x, rate_lat, syn_lat, lam, delta, la, l0_scale: float, stochastic: bool):
    gate = sample_gate if stochastic else deterministic_gate
    eff = {k: model.theta[k] + gate(la[k]) * delta[k] for k in delta}
    b = x.shape[0]
    opened = sum(prob_open(v).reshape(b, -1).sum(1) for v in la.values())
    return rd_loss(model.cfg, eff, x, rate_lat, syn_lat, lam, BITS_PER_ENTRY * opened * l0_scale)


def evaluate(model: GridModel, x: torch.Tensor, l0_scale: float) -> dict[str, float]:
    """Held-out crops at three rates: estimated bpp and PSNR after the inner loop, rounded latents."""
    out = {}
    for tag, l2 in (("lo", -7.0), ("mid", -9.5), ("hi", -12.0)):
        lam = torch.full((x.shape[0],), 2.0**l2)
        with torch.no_grad():
            lat = grid.analysis(model.cfg, model.analysis, x, lam)
        hard, _ = quantised_latents(lat, noisy=False, step=lt.step_for(lam))
        hard = [h.detach() for h in hard]
        with torch.enable_grad():
            delta, la = inner_loop(model, x, hard, hard, lam, l0_scale, model.inner_steps, False, stochastic=False)
        with torch.no_grad():
            _, bpp, mse = post_loss(model, x, hard, hard, lam, delta, la, l0_scale, stochastic=False)
        out[f"bpp_{tag}"] = round(float(bpp.mean()), 4)
        out[f"psnr_{tag}"] = round(10 * math.log10(1.0 / max(float(mse.mean()), 1e-12)), 3)
    return out


def train(data: Path, out: Path, cfg: GridTrainConfig, *, resume: bool, command: str, progress: bool = True) -> Path:
    train_files, val_files = training_files(data, cfg.val_fraction, cfg.max_images)
    torch.manual_seed(cfg.seed)
    sampler = PatchSampler([load_rgb(f) for f in train_files], cfg.crop, cfg.seed)
    val = crops_to_images(PatchSampler([load_rgb(f) for f in val_files], cfg.crop, 12345).sample(cfg.val_crops), cfg.crop)
    run = Run(out)

    gcfg = cfg.grid_config()
    model = fresh_grid_model(gcfg, name=out.name, seed=cfg.seed, inner_steps=cfg.inner_steps)
    nets = list(model.theta.values()) + list(model.analysis.values())
    gates = list(model.log_alpha.values())
    lrs = list(model.lr_delta.values()) + list(model.lr_alpha.values())
    for t in nets + gates + lrs:
        t.requires_grad_(True)
    opt = torch.optim.Adam([{"params": nets, "lr": cfg.lr}, {"params": gates, "lr": cfg.lr_gate},
                            {"params": lrs, "lr": cfg.lr_meta}])
    sched = lambda s: 0.5 * (1 + math.cos(math.pi * min(s / cfg.steps, 1.0))) * 0.95 + 0.05  # noqa: E731
    if resume and run.resume(model, opt, GridModel.from_state,
                             lambda m: None if m.cfg == gcfg else f"{m.cfg.to_dict()}, not {gcfg.to_dict()}"):
        sampler.rng = np.random.default_rng(cfg.seed + run.step)
        torch.manual_seed(cfg.seed + run.step)
    step, history = run.step, run.history

    def checkpoint() -> None:
        run.step = step
        run.save(model, opt, asdict(cfg))

    run.start(asdict(cfg))
    l0_scale = cfg.crop * cfg.crop / cfg.l0_pixels
    bar = progress_bar(total=cfg.steps, initial=step, progress=progress, unit="step", desc="meta-train grid")
    lo, hi = cfg.log2_lam
    while step < cfg.steps:
        for g, base in zip(opt.param_groups, (cfg.lr, cfg.lr_gate, cfg.lr_meta)):
            g["lr"] = base * sched(step)
        x = crops_to_images(sampler.sample(cfg.batch), cfg.crop)
        lam = torch.from_numpy(2.0 ** np.random.default_rng(cfg.seed * 7919 + step).uniform(lo, hi, cfg.batch)).float()
        lat = grid.analysis(gcfg, model.analysis, x, lam)
        rate_lat, syn_lat = quantised_latents(lat, noisy=True, step=lt.step_for(lam))
        k = cfg.inner_steps if step % max(cfg.inner_every, 1) == 0 else 0
        delta, la = inner_loop(model, x, rate_lat, syn_lat, lam, l0_scale, k, create_graph=not cfg.first_order)
        loss, bpp, mse = post_loss(model, x, rate_lat, syn_lat, lam, delta, la, l0_scale, stochastic=True)
        opt.zero_grad(set_to_none=True)
        (loss * lam.sqrt() / 2**-4.75).mean().backward()  # equalise the weight of low- and high-rate samples
        torch.nn.utils.clip_grad_norm_(nets + gates + lrs, cfg.clip)
        opt.step()
        with torch.no_grad():
            for v in lrs:
                v.clamp_(min=0.0)
            for v in gates:
                v.clamp_(-10.0, 10.0)
        step += 1
        bar.update(1)
        bar.set_postfix(bpp=f"{bpp.mean().item():.3f}", psnr=f"{10 * math.log10(1 / max(mse.mean().item(), 1e-12)):.2f}")
        run.tick(step, cfg.steps, cfg.val_every, cfg.ckpt_every_s,
                 lambda: {**evaluate(model, val, l0_scale), "step": step, "wall_s": round(run.wall(), 1)}, checkpoint)
    bar.close()
    checkpoint()
    model.meta = run.provenance(data, train_files, val_files, command, asdict(cfg))
    model.description = (f"meta-learned latent grids L{gcfg.levels}, synthesis {'-'.join(map(str, gcfg.hidden))}, "
                         f"amortised analysis, gated update, {gcfg.macs_per_pixel():.0f} MAC/px")
    frozen = GridModel.from_state(model.state())
    frozen.save(out.with_suffix(".pt"))
    write_card(frozen, out.with_suffix(".md"), history, run.log_path)
    run.log(f"# wrote {out.with_suffix('.pt')} id={frozen.model_id.hex()}")
    return out.with_suffix(".pt")


def write_card(model: GridModel, path: Path, history: list[dict], log_path: Path) -> None:
    m = model.meta
    n_dec = sum(v.numel() for v in model.theta.values())
    n_ana = sum(v.numel() for v in model.analysis.values())
    training.write_card(
        model, path, history, log_path,
        architecture=f"latent grids {json.dumps(model.cfg.to_dict())}; decoder-side parameters {n_dec} (each file may "
                     f"update them: gated, Meta-SGD, {model.inner_steps} inner step(s)); analysis network {n_ana} "
                     f"parameters (encoder only); {model.cfg.macs_per_pixel():.0f} decoder multiply-adds per pixel",
        data=f"({m['data_files']} training images, {m['val_files']} held out for validation). "
             "No Kodak or other benchmark image was used",
        validation="held-out crops; after the inner loop, rounded latents, estimated rate",
        history_title=f"held-out {m['train_config']['crop']}x{m['train_config']['crop']} crops; rates are entropy-model "
                      "estimates, not file sizes",
        columns=("step", "wall s", "bpp / PSNR at lambda 2^-7", "at 2^-9.5", "at 2^-12"),
        row=lambda h: (h["step"], h["wall_s"], f"{h['bpp_lo']:.3f} / {h['psnr_lo']:.2f}",
                       f"{h['bpp_mid']:.3f} / {h['psnr_mid']:.2f}", f"{h['bpp_hi']:.3f} / {h['psnr_hi']:.2f}"))
