"""Meta-training of the grid2 start: ``mscn train image --arch grid2``.

What is learned is everything a file does *not* send: the decoder theta0
(upsampling, synthesis, ARM) that every file starts from, and the analysis network
that predicts a file's latents in one pass, conditioned on the rate-distortion
trade-off lambda (log-uniform per crop, so one model serves every rate). The
encoder then refines those latents per file (``refine.py``) — the inner loop of
this meta-learning problem, run at encode time. Training takes the first-order
view of it: theta0 and the analysis net are trained on the amortised latents
(the zero-step point of the inner loop), which is what makes the `fast` effort
good; a second-order inner loop through hundreds of refinement steps is not
affordable on this CPU.

Quantisation is simulated the usual way: uniform noise for the rate term,
straight-through rounding for the ARM's context and for what the synthesis sees.
The loss is bpp + MSE / lambda, weighted by sqrt(lambda) so low and high rates count
alike (as for ``grid``).

Runs on one process or data-parallel under ``torchrun`` (gloo on CPUs, NCCL on GPUs; `training.World`):
``--batch`` is each rank's, and N ranks at batch B/N take the consecutive slices of the global batch one
process draws at batch B — the same crops, lambdas and quantisation noise (drawn per step for the whole
global batch from generators every rank seeds alike) — so they follow the same loss curve up to the order
of float sums.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mscncodec import training
from mscncodec._runtime import progress_bar
from mscncodec.coding.latents import step_for
from mscncodec.errors import MscnError
from mscncodec.families.grid2.arm import rate_bits
from mscncodec.families.grid2.config import Grid2Config
from mscncodec.families.grid2.context import NEIGHBOURS
from mscncodec.families.grid2.model import Grid2Model, fresh_grid2_model
from mscncodec.families.grid2.network import analysis
from mscncodec.families.grid2.quantizer import ste, symbols_of
from mscncodec.families.grid2.synthesis import synthesis
from mscncodec.training import Run


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
    val_fraction: float = 0.05  # recorded on the card: the held-out split is the image modality's (the same 5 %)
    seed: int = 0
    max_images: int = 0
    init: str = ""  # start from this model (.pt) or run checkpoint instead of the seeded init (a fine-tune)
    minutes: float = 0.0  # a wall-clock budget for this invocation (0: none): the run stops at whichever of
    # `steps` and the budget comes first, and the learning rate's cosine follows that one (a lent GPU's minutes)

    def grid_config(self) -> Grid2Config:
        return Grid2Config(levels=self.levels, hidden=tuple(self.hidden), arm_hidden=self.arm_hidden,
                           analysis=self.analysis)


# Keys of old runs' train configs (checkpoints and cards in weights/*.run/) whose experiments were removed (both
# were off in every shipped run): dropped on reading, so those runs still resume and export.
DROPPED_KEYS = ("grad_through_clamp", "rate_warmup")


def u8_crops_to_images(batch: torch.Tensor) -> torch.Tensor:
    """PatchSampler.sample_u8's (B, P, P, 3) uint8 (on any device) -> (B, 3, P, P) float in [0, 1]."""
    return batch.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def crops_to_images(batch: torch.Tensor, p: int) -> torch.Tensor:
    """PatchSampler.sample's (B, P*P, 3) in [-1, 1] -> (B, 3, P, P) in [0, 1]."""
    return batch.reshape(-1, p, p, 3).permute(0, 3, 1, 2).add(1).mul(0.5).contiguous()


def amortised_loss(cfg: Grid2Config, theta: dict, ana: dict, x: torch.Tensor, lam: torch.Tensor,
                   noise: Callable[[torch.Tensor], torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (bpp + MSE / lambda, bpp, mse) of the analysis net's latents (no refinement). `noise(v)`:
    the uniform [-0.5, 0.5) noise standing in for the rounding of latents v in training (step_noise); None:
    the rounded latents themselves (evaluation)."""
    step = step_for(lam)
    y = symbols_of(analysis(cfg, ana, x, lam), step)
    hard = [ste(v) for v in y]
    vals = [v + noise(v) for v in y] if noise is not None else hard
    bits = rate_bits(cfg, theta, vals, hard, lam)
    s = step.reshape(-1, 1, 1, 1)
    pred = synthesis(cfg, theta, [h * s for h in hard])
    mse = (pred - x).pow(2).mean(dim=(1, 2, 3))
    bpp = bits / (x.shape[2] * x.shape[3])
    return bpp + mse / lam, bpp, mse


def evaluate(model: Grid2Model, x: torch.Tensor) -> dict[str, float]:
    """Held-out crops at three rates: estimated bpp and PSNR of the rounded amortised latents."""
    out = {}
    for tag, l2 in (("lo", -5.0), ("mid", -8.0), ("hi", -11.0)):
        lam = torch.full((x.shape[0],), 2.0**l2, device=x.device)
        with torch.no_grad():
            _, bpp, mse = amortised_loss(model.cfg, model.theta, model.analysis, x, lam)
        out[f"bpp_{tag}"] = round(float(bpp.mean()), 4)
        out[f"psnr_{tag}"] = round(10 * math.log10(1.0 / max(float(mse.mean()), 1e-12)), 3)
    return out


def train_images(data, out: Path, options: dict, *, resume: bool, command: str, progress: bool = True) -> Path:
    """`mscn train image --arch grid2`: the CLI's options -> Grid2TrainConfig -> train (or, with
    --export-only, the run's checkpoint frozen into OUT.pt + card). `data` is the image modality's training
    data (modalities.image.ImageTrainingData: the split files and crop samplers); the family opens no file."""
    o = options
    if o.get("export_only"):
        if int(os.environ.get("RANK", "0")) != 0:  # under torchrun one process freezes the checkpoint
            return out.with_suffix(".pt")
        return export_checkpoint(data, out, command.replace(" --export-only", ""), o.get("max_images", 0))
    hidden, log2_lam = o.get("hidden"), o.get("log2_lam")
    try:
        widths = tuple(int(v) for v in (hidden or "20,20").split(","))
        lam_lo, lam_hi = (float(v) for v in (log2_lam or "-13,-3").split(","))
    except ValueError:
        raise MscnError("--hidden must be comma-separated integers and --log2-lam two numbers MIN,MAX") from None
    if not -20 <= lam_lo < lam_hi <= 0:
        raise MscnError(f"--log2-lam needs -20 <= MIN < MAX <= 0, got {log2_lam!r}")
    lv = o.get("levels") or 7
    if not 2 <= lv <= 9:
        raise MscnError(f"--levels must be in [2, 9] for grid2, got {lv}")
    analysis_ch = o.get("analysis")
    if analysis_ch is not None and not 4 <= analysis_ch <= 256:
        raise MscnError(f"--analysis must be in [4, 256] channels, got {analysis_ch}")
    cfg = Grid2TrainConfig(levels=lv, hidden=widths, analysis=analysis_ch or 32, crop=o.get("patch") or 192,
                           batch=o.get("batch") or 6, steps=o.get("steps", 20000), lr=o.get("lr") or 2e-3,
                           log2_lam=(lam_lo, lam_hi), val_every=o.get("val_every", 250),
                           max_images=o.get("max_images", 0), seed=o.get("seed", 0), init=str(o.get("init") or ""),
                           minutes=max(o.get("minutes") or 0.0, 0.0))
    return train(data, out, cfg, resume=resume, command=command, progress=progress, device=o.get("device") or "cpu")


def step_noise(seed: int, step: int, world: training.World, per_rank: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The quantisation noise of one step, a function of (seed, step, sample index in the global batch) only:
    each latent level's noise is drawn for the whole global batch from a generator seeded by the step, and
    this rank keeps its slice (so N ranks add the noise one process would)."""
    gen = torch.Generator(device=world.device).manual_seed(seed * 2**32 + step)
    mine = world.share(per_rank)

    def noise(v: torch.Tensor) -> torch.Tensor:
        u = torch.rand((per_rank * world.size, *v.shape[1:]), generator=gen, device=v.device, dtype=v.dtype)
        return u[mine.start : mine.stop] - 0.5

    return noise


def train(data, out: Path, cfg: Grid2TrainConfig, *, resume: bool, command: str, progress: bool = True,
          device: str = "cpu") -> Path:
    """Train (or resume) a grid2 start on `data` (ImageTrainingData); `device` "cuda" runs the same steps on a
    GPU where one is lent (checkpoints and the model are always written as CPU tensors). Under torchrun every
    rank trains on its share of the global batch (cfg.batch each) and rank 0 alone writes."""
    gcfg = cfg.grid_config()
    if cfg.crop % gcfg.align:
        raise MscnError(f"--patch {cfg.crop} must be a multiple of {gcfg.align} (2**(levels-1))")
    world = training.join(device)
    device = world.device
    train_files, val_files = list(data.train_files), list(data.val_files)
    torch.manual_seed(cfg.seed)
    sampler = data.sampler(cfg.crop, cfg.seed)  # the same generator on every rank: each keeps its share
    val = None
    if world.lead:  # validation runs on rank 0 only
        val = crops_to_images(data.val_sampler(cfg.crop, 12345).sample(cfg.val_crops), cfg.crop).to(device)
    run = Run(out, active=world.lead)

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

    where = training.run_origin(command, device, world.size)

    def checkpoint() -> None:
        run.step = step
        run.save(model, opt, asdict(cfg), where)

    run.start(asdict(cfg), f" world={world.size}")
    progress = progress and world.lead
    bar = progress_bar(total=cfg.steps, initial=step, progress=progress, unit="step", desc="meta-train grid2")
    lo, hi = cfg.log2_lam
    mine, per_rank = world.share(cfg.batch), cfg.batch
    loss_sum, n_sum = torch.zeros((), dtype=torch.float64, device=device), 0  # training loss since the last record
    frac = min(step / cfg.steps, 1.0)  # a budget run takes at least one step
    while frac < 1.0:
        for g in opt.param_groups:
            g["lr"] = cfg.lr * sched(frac)
        x = u8_crops_to_images(torch.from_numpy(sampler.sample_u8(per_rank * world.size, mine)).to(device))
        lams = np.random.default_rng(cfg.seed * 7919 + step).uniform(lo, hi, per_rank * world.size)[mine.start:mine.stop]
        lam = torch.from_numpy(2.0**lams).float().to(device)
        loss, bpp, mse = amortised_loss(gcfg, model.theta, model.analysis, x, lam,
                                        noise=step_noise(cfg.seed, step, world, per_rank))
        weighted = loss * lam.sqrt() / 2**-4.0  # equalise the weight of low- and high-rate samples
        opt.zero_grad(set_to_none=True)
        weighted.mean().backward()
        world.reduce_gradients(params)  # the mean over ranks of equal shares: the global batch's mean
        torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        loss_sum += weighted.detach().sum()  # no .item(): a GPU would wait for it every step
        n_sum += per_rank
        step += 1
        bar.update(1)
        if progress:  # .item() waits for a GPU: only for a bar someone watches
            bar.set_postfix(bpp=f"{bpp.mean().item():.3f}",
                            psnr=f"{10 * math.log10(1 / max(mse.mean().item(), 1e-12)):.2f}")
        frac = progress_of(step) if cfg.minutes <= 0 else world.agree(progress_of(step))
        total = cfg.steps if frac < 1.0 else step
        record = None
        if run.due(step, total, cfg.val_every):  # every rank takes part in the sum, rank 0 records it
            s, n = world.sum(torch.stack([loss_sum, loss_sum.new_tensor(float(n_sum))])).tolist()
            loss_sum.zero_()
            n_sum = 0
            record = {"train_loss": float(f"{s / max(n, 1.0):.7g}")}
        run.tick(step, total, cfg.val_every, cfg.ckpt_every_s,
                 (lambda: {**evaluate(model, val), "step": step, "wall_s": round(run.wall(), 1), "device": device,
                           **record}) if world.lead else None, checkpoint)
    bar.close()
    checkpoint()
    path = out.with_suffix(".pt")
    if world.lead:
        path = export(model, out, cfg, run, data.root, train_files, val_files, command, where)
    world.leave()
    return path


def init_model(path: Path, gcfg: Grid2Config) -> Grid2Model:
    """The weights a fine-tune starts from: a model file (.pt) or a run's checkpoint.pt, same architecture."""
    try:
        st = torch.load(path, map_location="cpu", weights_only=False)
        m = Grid2Model.from_state(st.get("model", st))
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise MscnError(f"--init {path}: not a grid2 model or checkpoint ({type(e).__name__})") from None
    if m.cfg != gcfg:
        raise MscnError(f"--init {path}: architecture {m.cfg.to_dict()}, not {gcfg.to_dict()}")
    return m


def config_of(saved: dict) -> Grid2TrainConfig:
    """A checkpoint's train config (its dropped experiments' keys ignored, see DROPPED_KEYS)."""
    d = {k: v for k, v in saved.items() if k not in DROPPED_KEYS}
    return Grid2TrainConfig(**{**d, "hidden": tuple(d["hidden"]), "log2_lam": tuple(d["log2_lam"])})


def export_checkpoint(data, out: Path, command: str, data_max_images: int = 0) -> Path:
    """Freeze the run's latest checkpoint into OUT.pt + card without training further (a snapshot of a
    run still in progress, or of one stopped early). The card lists the files the run trained on: `data`
    (split with `data_max_images`) cut to the checkpoint's own --max-images where that was given and this
    call's was not."""
    run = Run(out)
    if not run.ckpt.is_file():
        raise MscnError(f"no checkpoint at {run.ckpt}")
    ck = torch.load(run.ckpt, map_location="cpu", weights_only=False)
    cfg = config_of(ck["cfg"])
    model = Grid2Model.from_state(ck["model"])
    model.name = out.name
    run.step, run.elapsed, run.history = ck["step"], ck["elapsed"], ck["history"]
    run.t0 = time.time() - run.elapsed
    train_files, val_files = list(data.train_files), list(data.val_files)
    if cfg.max_images and not data_max_images:
        fallback = len(val_files) == 1 and val_files[0] in train_files  # no held-out file: the last training one
        train_files = train_files[: cfg.max_images]
        val_files = train_files[-1:] if fallback else val_files
    return export(model, out, cfg, run, data.root, train_files, val_files, command, ck.get("origin"))


def export(model: Grid2Model, out: Path, cfg: Grid2TrainConfig, run: Run, data: Path, train_files, val_files,
           command: str, origin: dict | None = None) -> Path:
    """Freeze the model into OUT.pt with its card OUT.md (`origin`: where the run trained, if not here)."""
    gcfg = model.cfg
    model.meta = run.provenance(data, train_files, val_files, command, asdict(cfg), origin)
    model.description = (f"meta-learned grid2 start: {gcfg.levels} latent grids 1/1..1/{gcfg.align}, learned "
                         f"upsampling, synthesis {'-'.join(map(str, gcfg.hidden))} + 2 residual 3x3, "
                         f"{len(NEIGHBOURS)}-neighbour ARM, amortised analysis, {gcfg.macs_per_pixel():.0f} MAC/px")
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
                     f"parameters (encoder only); {model.cfg.macs_per_pixel():.0f} decoder multiply-adds per pixel; "
                     f"world size {m.get('world_size', 1)} (data-parallel processes, batch {m['train_config']['batch']} "
                     "each)",
        data=f"({m['data_files']} training images, {m['val_files']} held out for validation). "
             "No Kodak or other benchmark image was used",
        validation="held-out crops, amortised latents rounded, estimated rate",
        history_title=f"held-out {m['train_config']['crop']}px crops; estimated rates, rounded latents",
        columns=("step", "wall s", "bpp / PSNR at lambda 2^-5", "at 2^-8", "at 2^-11"),
        row=lambda h: (h["step"], h["wall_s"], f"{h['bpp_lo']:.3f} / {h['psnr_lo']:.2f}",
                       f"{h['bpp_mid']:.3f} / {h['psnr_mid']:.2f}", f"{h['bpp_hi']:.3f} / {h['psnr_hi']:.2f}"))
