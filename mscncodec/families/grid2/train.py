"""Meta-training of the grid2 start: ``mscn train image --arch grid2``.

What is learned is everything a file does *not* send: the decoder theta0
(upsampling, synthesis, ARM) that every file starts from, and the analysis network
that predicts a file's latents in one pass, conditioned on the rate-distortion
trade-off lambda (log-uniform per crop, so one model serves every rate). The
encoder then refines those latents per file (``grid2codec``) — the inner loop of
this meta-learning problem, run at encode time. Training takes the first-order
view of it: theta0 and the analysis net are trained on the amortised latents
(the zero-step point of the inner loop), which is what makes the `fast` effort
good; a second-order inner loop through hundreds of refinement steps is not
affordable on this CPU.

Quantisation is simulated the usual way: uniform noise for the rate term,
straight-through rounding for the ARM's context and for what the synthesis sees.
The loss is bpp + MSE / lambda, weighted by sqrt(lambda) so low and high rates count
alike (as for ``grid``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mscncodec._runtime import progress_bar
from mscncodec import training
from mscncodec.families.grid2 import network as grid2
from mscncodec.errors import MscnError
from mscncodec.coding.latents import step_for
from mscncodec.modalities.image import crops_to_images
from mscncodec.modalities.image import PatchSampler, load_rgb, training_files, u8_crops_to_images
from mscncodec.training import Run
from mscncodec.models import Grid2Model, fresh_grid2_model


@dataclass
class Grid2TrainConfig:
    levels: int = 7
    hidden: tuple[int, ...] = (20, 20)
    arm_hidden: int = 20
    analysis: int = 32
    crop: int = 192
    batch: int = 6
    steps: int = 40000
    lr: float = 2e-3
    log2_lam: tuple[float, float] = (-13.0, -3.0)
    clip: float = 1.0
    val_every: int = 250
    val_crops: int = 8
    ckpt_every_s: float = 120.0
    val_fraction: float = 0.05
    seed: int = 0
    max_images: int = 0
    init: str = ""  # start from this model (.pt) or run checkpoint instead of the seeded init (a fine-tune)
    grad_through_clamp: bool = False  # the ARM's scale clamp passes its gradient (network.arm_float)
    rate_warmup: int = 0  # steps over which the rate's weight in the loss ramps from RATE_WARMUP_FROM to 1
    minutes: float = 0.0  # a wall-clock budget for this invocation (0: none): the run stops at whichever of
    # `steps` and the budget comes first, and the learning rate's cosine follows that one (a lent GPU's minutes)

    def grid_config(self) -> grid2.Grid2Config:
        return grid2.Grid2Config(levels=self.levels, hidden=tuple(self.hidden), arm_hidden=self.arm_hidden,
                                 analysis=self.analysis)


def symbols_of(values: list[torch.Tensor], step: torch.Tensor) -> list[torch.Tensor]:
    """Latent values -> symbol units (divided by the per-sample step), clamped to the coder's range."""
    s = step.reshape(-1, 1, 1, 1)
    return [(v / s).clamp(-grid2.SYMBOL_RANGE, grid2.SYMBOL_RANGE) for v in values]


def ste(y: torch.Tensor) -> torch.Tensor:
    return y + (torch.round(y) - y).detach()


RATE_WARMUP_FROM = 0.05  # the rate's weight at the first step of a warm-up: grids a collapsed start left
# empty get used for distortion first, and the rate then prices them back in


def amortised_loss(cfg: grid2.Grid2Config, theta: dict, ana: dict, x: torch.Tensor, lam: torch.Tensor,
                   noisy: bool = True, grad_through_clamp: bool = False, rate_weight: float = 1.0
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (rate_weight * bpp + MSE / lambda, bpp, mse) of the analysis net's latents (no refinement)."""
    step = step_for(lam)
    y = symbols_of(grid2.analysis(cfg, ana, x, lam), step)
    hard = [ste(v) for v in y]
    vals = [v + torch.empty_like(v).uniform_(-0.5, 0.5) for v in y] if noisy else hard
    bits = grid2.rate_bits(cfg, theta, vals, hard, lam, grad_through_clamp)
    s = step.reshape(-1, 1, 1, 1)
    pred = grid2.synthesis(cfg, theta, [h * s for h in hard])
    mse = (pred - x).pow(2).mean(dim=(1, 2, 3))
    bpp = bits / (x.shape[2] * x.shape[3])
    return rate_weight * bpp + mse / lam, bpp, mse


def evaluate(model: Grid2Model, x: torch.Tensor) -> dict[str, float]:
    """Held-out crops at three rates: estimated bpp and PSNR of the rounded amortised latents."""
    out = {}
    for tag, l2 in (("lo", -5.0), ("mid", -8.0), ("hi", -11.0)):
        lam = torch.full((x.shape[0],), 2.0**l2, device=x.device)
        with torch.no_grad():
            _, bpp, mse = amortised_loss(model.cfg, model.theta, model.analysis, x, lam, noisy=False)
        out[f"bpp_{tag}"] = round(float(bpp.mean()), 4)
        out[f"psnr_{tag}"] = round(10 * math.log10(1.0 / max(float(mse.mean()), 1e-12)), 3)
    return out


def train(data: Path, out: Path, cfg: Grid2TrainConfig, *, resume: bool, command: str, progress: bool = True,
          device: str = "cpu") -> Path:
    """Train (or resume) a grid2 start; `device` "cuda" runs the same steps on a GPU where one is lent
    (checkpoints and the model are always written as CPU tensors)."""
    gcfg = cfg.grid_config()
    if cfg.crop % gcfg.align:
        raise MscnError(f"--patch {cfg.crop} must be a multiple of {gcfg.align} (2**(levels-1))")
    train_files, val_files = training_files(data, cfg.val_fraction, cfg.max_images)
    torch.manual_seed(cfg.seed)
    sampler = PatchSampler([load_rgb(f) for f in train_files], cfg.crop, cfg.seed)
    val = crops_to_images(PatchSampler([load_rgb(f) for f in val_files], cfg.crop, 12345).sample(cfg.val_crops), cfg.crop)
    val = val.to(device)
    run = Run(out)

    model = fresh_grid2_model(gcfg, name=out.name, seed=cfg.seed)
    if cfg.init and not (resume and run.ckpt.is_file()):
        start = init_model(Path(cfg.init), gcfg)
        model.theta, model.analysis = start.theta, start.analysis
        run.log(f"# initialised from {cfg.init} (model id {start.model_id.hex()})")
    model.theta = {k: v.to(device) for k, v in model.theta.items()}
    model.analysis = {k: v.to(device) for k, v in model.analysis.items()}
    params = list(model.theta.values()) + list(model.analysis.values())
    for t in params:
        t.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    t_start = time.monotonic()

    def progress_of(s: int) -> float:
        """How far the run is, 0..1: by steps, or by the wall-clock budget where that ends first."""
        by_time = (time.monotonic() - t_start) / (60.0 * cfg.minutes) if cfg.minutes > 0 else 0.0
        return min(max(s / cfg.steps, by_time), 1.0)

    sched = lambda p: 0.5 * (1 + math.cos(math.pi * p)) * 0.95 + 0.05  # noqa: E731
    if resume and run.resume(model, opt, Grid2Model.from_state,
                             lambda m: None if m.cfg == gcfg else f"{m.cfg.to_dict()}, not {gcfg.to_dict()}"):
        sampler.rng = np.random.default_rng(cfg.seed + run.step)
        torch.manual_seed(cfg.seed + run.step)
    step = run.step

    where = training.run_origin(command, device)

    def checkpoint() -> None:
        run.step = step
        run.save(model, opt, asdict(cfg), where)

    run.start(asdict(cfg))
    bar = progress_bar(total=cfg.steps, initial=step, progress=progress, unit="step", desc="meta-train grid2")
    lo, hi = cfg.log2_lam
    frac = min(step / cfg.steps, 1.0)  # a budget run takes at least one step
    while frac < 1.0:
        for g in opt.param_groups:
            g["lr"] = cfg.lr * sched(frac)
        x = u8_crops_to_images(torch.from_numpy(sampler.sample_u8(cfg.batch)).to(device))
        lam = torch.from_numpy(2.0 ** np.random.default_rng(cfg.seed * 7919 + step).uniform(lo, hi, cfg.batch)).float()
        lam = lam.to(device)
        w = 1.0 if step >= cfg.rate_warmup else RATE_WARMUP_FROM + (1 - RATE_WARMUP_FROM) * step / cfg.rate_warmup
        loss, bpp, mse = amortised_loss(gcfg, model.theta, model.analysis, x, lam,
                                        grad_through_clamp=cfg.grad_through_clamp, rate_weight=w)
        opt.zero_grad(set_to_none=True)
        (loss * lam.sqrt() / 2**-4.0).mean().backward()  # equalise the weight of low- and high-rate samples
        torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        step += 1
        bar.update(1)
        if progress:  # .item() waits for a GPU: only for a bar someone watches
            bar.set_postfix(bpp=f"{bpp.mean().item():.3f}",
                            psnr=f"{10 * math.log10(1 / max(mse.mean().item(), 1e-12)):.2f}")
        frac = progress_of(step)
        run.tick(step, cfg.steps if frac < 1.0 else step, cfg.val_every, cfg.ckpt_every_s,
                 lambda: {**evaluate(model, val), "step": step, "wall_s": round(run.wall(), 1), "device": device},
                 checkpoint)
    bar.close()
    checkpoint()
    return export(model, out, cfg, run, data, train_files, val_files, command, where)


def init_model(path: Path, gcfg: grid2.Grid2Config) -> Grid2Model:
    """The weights a fine-tune starts from: a model file (.pt) or a run's checkpoint.pt, same architecture."""
    try:
        st = torch.load(path, map_location="cpu", weights_only=False)
        m = Grid2Model.from_state(st.get("model", st))
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise MscnError(f"--init {path}: not a grid2 model or checkpoint ({type(e).__name__})") from None
    if m.cfg != gcfg:
        raise MscnError(f"--init {path}: architecture {m.cfg.to_dict()}, not {gcfg.to_dict()}")
    return m


def export_checkpoint(data: Path, out: Path, command: str) -> Path:
    """Freeze the run's latest checkpoint into OUT.pt + card without training further (a snapshot of a
    run still in progress, or of one stopped early)."""
    run = Run(out)
    if not run.ckpt.is_file():
        raise MscnError(f"no checkpoint at {run.ckpt}")
    ck = torch.load(run.ckpt, map_location="cpu", weights_only=False)
    cfg = Grid2TrainConfig(**{**ck["cfg"], "hidden": tuple(ck["cfg"]["hidden"]), "log2_lam": tuple(ck["cfg"]["log2_lam"])})
    model = Grid2Model.from_state(ck["model"])
    model.name = out.name
    run.step, run.elapsed, run.history = ck["step"], ck["elapsed"], ck["history"]
    run.t0 = time.time() - run.elapsed
    train_files, val_files = training_files(data, cfg.val_fraction, cfg.max_images)
    return export(model, out, cfg, run, data, train_files, val_files, command, ck.get("origin"))


def export(model: Grid2Model, out: Path, cfg: Grid2TrainConfig, run: Run, data: Path, train_files, val_files,
           command: str, origin: dict | None = None) -> Path:
    """Freeze the model into OUT.pt with its card OUT.md (`origin`: where the run trained, if not here)."""
    gcfg = model.cfg
    model.meta = run.provenance(data, train_files, val_files, command, asdict(cfg), origin)
    model.description = (f"meta-learned grid2 start: {gcfg.levels} latent grids 1/1..1/{gcfg.align}, learned "
                         f"upsampling, synthesis {'-'.join(map(str, gcfg.hidden))} + 2 residual 3x3, "
                         f"{len(grid2.NEIGHBOURS)}-neighbour ARM, amortised analysis, {gcfg.macs_per_pixel():.0f} MAC/px")
    frozen = Grid2Model.from_state(model.state())  # CPU copies
    frozen.save(out.with_suffix(".pt"))
    write_card(frozen, out.with_suffix(".md"), run.history, run.log_path)
    run.log(f"# wrote {out.with_suffix('.pt')} id={frozen.model_id.hex()}")
    return out.with_suffix(".pt")


def write_card(model: Grid2Model, path: Path, history: list[dict], log_path: Path) -> None:
    m = model.meta
    n_dec = sum(v.numel() for v in model.theta.values())
    n_ana = sum(v.numel() for v in model.analysis.values())
    training.write_card(
        model, path, history, log_path,
        architecture=f"{json.dumps(model.cfg.to_dict())}; decoder parameters {n_dec}; analysis network {n_ana} "
                     f"parameters (encoder only); {model.cfg.macs_per_pixel():.0f} decoder multiply-adds per pixel",
        data=f"({m['data_files']} training images, {m['val_files']} held out for validation). "
             "No Kodak or other benchmark image was used",
        validation="held-out crops, amortised latents rounded, estimated rate",
        history_title=f"held-out {m['train_config']['crop']}px crops; estimated rates, rounded latents",
        columns=("step", "wall s", "bpp / PSNR at lambda 2^-5", "at 2^-8", "at 2^-11"),
        row=lambda h: (h["step"], h["wall_s"], f"{h['bpp_lo']:.3f} / {h['psnr_lo']:.2f}",
                       f"{h['bpp_mid']:.3f} / {h['psnr_mid']:.2f}", f"{h['bpp_hi']:.3f} / {h['psnr_hi']:.2f}"))
