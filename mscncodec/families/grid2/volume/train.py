"""Training grid3's shared decoder theta0 (synthesis + ARM) for one modality: ``mscn train grid3``.

C3 fits a decoder per file; here the decoder is shared, so a stream carries only latents. Every training
volume gets its own latents (from zero) and its own trade-off lambda (log-uniform over the range, two per
volume), and the decoder is learned jointly with all of them: the first-order view of the meta-learning
problem (the encoder's fit is the inner loop, run at encode time). The rate is the float ARM's estimate,
the quantisation simulated by soft rounding with noise (annealed), as the encoder does.

After training, the calibration the encoder aims lambda with is measured with the *exact* coder: the real
bits of every training volume's latents against its lambda (log2 lambda affine in log2 bits per point).

A step takes `batch` (volume, lambda) pairs, the next ones of the fixed shuffled order. Under ``torchrun``
(gloo; `training.World`) each rank takes its consecutive share of the global batch (batch x ranks); the
gradients of the decoder and of the batch's latents are summed across ranks, so every rank steps the whole
state (decoder, every volume's latents, Adam's moments) as one process at the global batch would. The noise
and the point subsets of a pair are drawn from a generator seeded by the pair's index in the run's sequence
of samples, not by which process draws them (a resumed run draws the noise an unbroken one would).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mscncodec import training
from mscncodec.coding.latents import lambda_index, lambda_value
from mscncodec.families.grid2.latent_codec import LatentCodec
from mscncodec.families.grid2.quantizer import soft_round
from mscncodec.families.grid2.volume import fit as vfit
from mscncodec.families.grid2.volume.config import Vol3Config
from mscncodec.families.grid2.volume.model import Vol3Model, fresh_vol3_model
from mscncodec.families.grid2.volume.synthesis import synthesis
from mscncodec.training import Run


@dataclass
class Vol3TrainConfig:
    levels: int = 5
    hidden: tuple[int, ...] = (16, 16)
    arm_hidden: int = 16
    periodic: tuple[bool, bool, bool] = (False, False, False)
    steps: int = 4000
    lr: float = 2e-3  # the decoder's
    latent_lr: float = 1e-1  # each volume's latents are stepped once per len(pairs) steps: they need long strides
    log2_lam: tuple[float, float] = (-13.0, -7.0)
    lams_per_volume: int = 2
    batch: int = 1  # (volume, lambda) pairs per step and rank
    val_every: int = 250
    ckpt_every_s: float = 120.0
    seed: int = 0


@dataclass
class VolumeSet:
    """What a modality's training-data hook gives the trainer."""

    train: list[vfit.VolumeTarget]
    val: list[vfit.VolumeTarget]
    files: list[Path]  # the training files (hashed into the card)
    root: Path
    description: str  # one line: what the volumes are
    meta: dict = field(default_factory=dict)  # what the modality's encoder must know of these volumes (model.meta)


def _lams(cfg: Vol3TrainConfig, n: int) -> list[float]:
    lo, hi = cfg.log2_lam
    k = n * cfg.lams_per_volume
    return [lambda_value(lambda_index(2.0 ** (lo + (hi - lo) * (i + 0.5) / k))) for i in range(k)]


def train(data: VolumeSet, out: Path, cfg: Vol3TrainConfig, *, modality: str, resume: bool, command: str,
          progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Train (or resume) the shared decoder on `data`; writes OUT.pt and its card OUT.md (rank 0 only under
    torchrun) and returns OUT.pt's path."""
    out = Path(out)
    if cfg.batch < 1:
        raise training.MscnError(f"the batch must be at least one (volume, lambda) pair, got {cfg.batch}")
    world = training.join("cpu")
    mcfg = Vol3Config(levels=cfg.levels, hidden=tuple(cfg.hidden), arm_hidden=cfg.arm_hidden,
                      periodic=tuple(cfg.periodic))
    model = fresh_vol3_model(mcfg, name=out.name, modality=modality, seed=cfg.seed)
    theta = model.theta
    for v in theta.values():
        v.requires_grad_(True)
    lams = _lams(cfg, len(data.train))
    pairs = [(data.train[i // cfg.lams_per_volume], lams[i]) for i in range(len(lams))]
    rng = np.random.default_rng(cfg.seed)
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]
    latents = [[torch.zeros(1, 1, *s, requires_grad=True) for s in mcfg.grid_shapes(t.finest)] for t, _ in pairs]
    opt = torch.optim.Adam([{"params": list(theta.values()), "lr": cfg.lr},
                            {"params": [v for y in latents for v in y], "lr": cfg.latent_lr}])
    run = Run(out, active=world.lead)

    class _Both:  # what Run checkpoints: the decoder and every training volume's latents
        def state(self):
            st = model.state()
            st["latents"] = [[v.detach().clone() for v in y] for y in latents]
            return st

        def tensors(self):
            return {**model.tensors(), **{f"lat.{i}.{l}": v for i, y in enumerate(latents) for l, v in enumerate(y)}}

    both = _Both()
    if resume and run.ckpt.is_file():
        ck = torch.load(run.ckpt, map_location="cpu", weights_only=False)
        st = ck["model"]
        if Vol3Config.from_dict(st["cfg"]) != mcfg:
            raise training.MscnError(f"{run.ckpt} was trained with another architecture: resume with the same options")
        for k, v in Vol3Model.from_state(st).theta.items():
            theta[k].data.copy_(v)
        for y, saved in zip(latents, st["latents"]):
            for v, s in zip(y, saved):
                v.data.copy_(s)
        opt.load_state_dict(ck["opt"])
        run.step, run.elapsed, run.history = ck["step"], ck["elapsed"], ck["history"]
    run.start(asdict(cfg), extra=f" volumes={len(data.train)} world={world.size}")
    per_step = cfg.batch * world.size  # the global batch
    mine = world.share(cfg.batch)
    t_last = time.time()
    acc = torch.zeros(4, dtype=torch.float64)  # since the last record: sums of distortion, bits/point, loss; pairs
    while run.step < cfg.steps:
        a = run.step / cfg.steps
        t = 0.3 * (0.1 / 0.3) ** a
        lr_scale = 0.5 * (1 + math.cos(math.pi * a))  # cosine decay of both rates
        opt.param_groups[0]["lr"] = cfg.lr * lr_scale
        opt.param_groups[1]["lr"] = cfg.latent_lr * max(lr_scale, 0.1)
        opt.zero_grad(set_to_none=True)
        sample0 = run.step * per_step  # the global index of the step's first sample
        batch = [(sample0 + k) % len(pairs) for k in range(per_step)]
        for k in mine:
            d, r, loss = pair_loss(mcfg, theta, pairs[batch[k]], latents[batch[k]], t,
                                   torch.Generator().manual_seed(cfg.seed * 2**40 + sample0 + k))
            (loss / per_step).backward()  # the global batch's mean, once the ranks' sums are added
            acc += torch.tensor([float(d.detach()), float(r.detach()), float(loss.detach()), 1.0], dtype=torch.float64)
        stepped = [v for i in dict.fromkeys(batch) for v in latents[i]]  # each pair once, in batch order
        world.reduce_gradients(list(theta.values()) + stepped, mean=False)
        torch.nn.utils.clip_grad_norm_(list(theta.values()), 1.0)
        opt.step()
        with torch.no_grad():
            for v in stepped:
                v.clamp_(-255, 255)
        run.step += 1
        record = None
        if run.due(run.step, cfg.steps, cfg.val_every):  # every rank adds its sums, rank 0 records
            tot = world.sum(acc)
            dd, rr, ll = (tot[:3] / max(float(tot[3]), 1.0)).tolist()
            acc.zero_()
            record = {"step": run.step, "distortion": dd, "bits_per_point": rr, "loss": ll}
        if progress and world.lead and time.time() - t_last > 30:
            t_last = time.time()
            log(f"step {run.step}/{cfg.steps} D {float(d):.3g} bpp {float(r):.3g}")
        run.tick(run.step, cfg.steps, cfg.val_every, cfg.ckpt_every_s,
                 (lambda: {**record, "wall_s": round(run.wall(), 1)}) if world.lead else None,
                 lambda: run.save(both, opt, asdict(cfg)))
    run.save(both, opt, asdict(cfg))
    path = out.with_suffix(".pt")
    if world.lead:
        for v in theta.values():
            v.requires_grad_(False)
        calib, points = calibrate(mcfg, theta, pairs, latents)
        model.meta = {**data.meta, "calibration": calib, "calibration_points": points, "world_size": world.size,
                      **run.provenance(data.root, data.files, [], command, asdict(cfg))}
        model.description = f"grid3 shared decoder for {modality}: {data.description}"
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        write_card(model, out.with_suffix(".md"), run.history, run.log_path, data.description)
    world.leave()
    return path


def pair_loss(cfg: Vol3Config, theta: dict, pair: tuple, y: list[torch.Tensor], t: float, gen: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(distortion, bits per point, rate + distortion / lambda) of one training volume at its lambda, its
    latents `y` soft-rounded at temperature `t` with noise (and its points subsampled) drawn from `gen`."""
    tgt, lam = pair
    noisy = [soft_round(soft_round(v, t) + torch.rand(v.shape, generator=gen) - 0.5, t) for v in y]
    ctx = [torch.round(v).detach() for v in y]
    n = len(tgt.values)
    if tgt.batch and tgt.batch < n:
        idx = torch.randint(0, n, (tgt.batch,), generator=gen)
        pts, val, w = tgt.points[idx], tgt.values[idx], tgt.weights[idx]
    else:
        pts, val, w = tgt.points, tgt.values, tgt.weights
    d = vfit.distortion(synthesis(cfg, theta, noisy, pts), val, w, tgt.loss)
    r = vfit.rate_bits(cfg, theta, noisy, ctx, lam) / tgt.rate_norm
    return d, r, (d + lam * r) / lam  # rate + distortion / lambda: every lambda's pair counts alike


def calibrate(cfg: Vol3Config, theta: dict, pairs, latents) -> tuple[dict, list]:
    """log2 lambda = a + b log2(real bits per point), fitted over the training volumes' coded latents."""
    xs, ys, pts = [], [], []
    for (tgt, lam), y in zip(pairs, latents):
        sym = [s[0, 0].numpy() for s in vfit.quantise([v.detach() for v in y], 1.0)]
        bits = 8 * len(LatentCodec(cfg, theta, lam).compress(sym))
        bpp = bits / tgt.rate_norm
        xs.append(math.log2(max(bpp, 1e-6)))
        ys.append(math.log2(lam))
        pts.append({"lambda": lam, "bits_per_point": bpp})
    b, a = np.polyfit(xs, ys, 1) if len(set(xs)) > 1 else (-1.5, ys[0] + 1.5 * xs[0])
    return {"log2_lambda": (float(a), float(b))}, pts


def write_card(model: Vol3Model, path: Path, history: list[dict], log_path: Path, data: str) -> None:
    training.write_card(
        model, path, history, log_path, data=f"({data})",
        architecture=f"{model.summary()}; world size {model.meta.get('world_size', 1)} (data-parallel processes, "
                     f"{model.meta['train_config'].get('batch', 1)} (volume, lambda) pairs each per step)",
        validation="mean training distortion and estimated bits per point over the last interval",
        history_title="training loss", columns=("step", "distortion", "bits/point", "wall s"),
        row=lambda h: (h["step"], f"{h['distortion']:.4g}", f"{h['bits_per_point']:.4g}", h["wall_s"]))
    with open(path, "a") as f:
        f.write("\n## Rate calibration (exact coder, training volumes)\n")
        f.write(f"log2 lambda = {model.meta['calibration']['log2_lambda'][0]:.3f} + "
                f"{model.meta['calibration']['log2_lambda'][1]:.3f} log2(bits per point)\n\n")
        f.write("| lambda | bits/point |\n|---|---|\n")
        for p in model.meta["calibration_points"]:
            f.write(f"| {p['lambda']:.3g} | {p['bits_per_point']:.4g} |\n")
