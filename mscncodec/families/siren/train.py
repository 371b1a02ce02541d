"""Meta-training (Meta-SGD with L0 gates in the inner loop): ``mscn train``.

Outer loop: Adam on theta0, the initial gate logits and the per-entry inner
learning rates, minimising the post-adaptation loss (distortion + lam * E[open])
over batches of random patch crops. Runs on one process or data-parallel under
``torchrun`` (gloo): each rank draws its own crops and gradients are averaged.
Checkpoints are written often and ``--resume`` continues exactly where a run stopped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from mscncodec._runtime import progress_bar
from mscncodec import training
from mscncodec.families.siren.fit import group_loss, inner_loop
from mscncodec.families.siren.patches import grid_coords
from mscncodec.families.siren.model import Model, fresh_model
from mscncodec.families.siren.network import SirenConfig
from mscncodec.errors import MscnError
from mscncodec.training import Run



@dataclass
class TrainConfig:
    width: int = 32
    depth: int = 5
    w0: float = 30.0
    mode: str = "full"
    patch: int = 32
    inner_steps: int = 3
    lam: float = 0.02
    batch: int = 32
    steps: int = 20000
    lr: float = 2e-4
    lr_meta: float = 1e-3  # for the inner learning rates
    lr_gate: float = 1e-2  # for the initial gate logits (they must travel several units)
    clip: float = 1.0
    first_order: bool = False
    lr_init: float = 1e-2
    lr_alpha_init: float = 1.0
    log_alpha_init: float = 2.0
    val_every: int = 250
    ckpt_every_s: float = 120.0
    val_fraction: float = 0.05
    val_patches: int = 256
    seed: int = 0
    max_images: int = 0  # 0: all


















def meta_parameters(model: Model) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    theta = list(model.theta.values())
    gates = list(model.log_alpha.values())
    lrs = list(model.lr_delta.values()) + list(model.lr_alpha.values())
    return theta, gates, lrs


def evaluate(model: Model, coords: torch.Tensor, val: torch.Tensor) -> dict[str, float]:
    """Post-adaptation PSNR (deterministic gates, no quantisation) and open entries per patch."""
    with torch.enable_grad():
        state = inner_loop(model, coords, val)
    with torch.no_grad():
        eff = state.effective(model, stochastic=False)
        from mscncodec.families.siren import network as siren

        pred = siren.forward(model.cfg, model.theta, eff, coords, val.shape[0]).clamp(-1, 1)
        mse = (pred - val).pow(2).mean().item() * (127.5**2)
        opened = sum((v != 0).float().reshape(val.shape[0], -1).sum(1) for v in eff.values()).mean().item()
    return {"val_psnr": 10 * math.log10(255.0**2 / max(mse, 1e-12)), "open_per_patch": opened}


def train_images(data, out: Path, options: dict, *, resume: bool, command: str, progress: bool = True) -> Path:
    """`mscn train image --arch siren`: the CLI's options -> TrainConfig -> train. `data` is the image
    modality's training data (modalities.image.ImageTrainingData: split files and crop samplers)."""
    o = options
    grid_only = [f"--{k.replace('_', '-')}" for k in ("export_only", "init", "analysis", "minutes", "levels", "hidden",
                                                       "log2_lam") if o.get(k)]
    if grid_only or o.get("device", "cpu") != "cpu":
        raise MscnError(f"{', '.join(grid_only or ['--device'])}: for --arch grid2, not siren")
    cfg = TrainConfig(width=o["width"], depth=o["depth"], mode=o["mode"], patch=o["patch"] or 32,
                      inner_steps=3 if o["inner_steps"] is None else o["inner_steps"], lam=o["lam"],
                      batch=o["batch"] or 32, steps=o["steps"], lr=o["lr"] or 2e-4, first_order=o["first_order"],
                      val_every=o["val_every"], max_images=o["max_images"], val_patches=o["val_patches"],
                      seed=o["seed"])
    return train(data, out, cfg, resume=resume, command=command, progress=progress)


def train(data, out: Path, cfg: TrainConfig, *, resume: bool, command: str, progress: bool = True) -> Path:
    """Run (or resume) meta-training on `data` (ImageTrainingData); returns the path of the written model."""
    place = training.join("cpu")  # gloo under torchrun, else a world of one
    rank, world, distributed = place.rank, place.size, place.distributed
    train_files, val_files = list(data.train_files), list(data.val_files)
    torch.manual_seed(cfg.seed + rank)
    sampler = data.sampler(cfg.patch, cfg.seed + 1000 * rank)
    val = data.val_sampler(cfg.patch, 12345).sample(cfg.val_patches)

    # only now that the data is known to be usable: no empty run folders from a failed start
    run = Run(out, active=rank == 0)
    coords = grid_coords(cfg.patch)

    scfg = SirenConfig(width=cfg.width, depth=cfg.depth, w0=cfg.w0, mode=cfg.mode)
    model = fresh_model(scfg, name=out.name, patch=cfg.patch, seed=cfg.seed, inner_steps=cfg.inner_steps,
                        lam=cfg.lam, lr_init=cfg.lr_init, log_alpha_init=cfg.log_alpha_init)
    with torch.no_grad():
        for v in model.lr_alpha.values():
            v.fill_(cfg.lr_alpha_init)
    theta_p, gate_p, lr_p = meta_parameters(model)
    meta_p = gate_p + lr_p
    for t in theta_p + meta_p:
        t.requires_grad_(True)
    opt = torch.optim.Adam([{"params": theta_p, "lr": cfg.lr}, {"params": gate_p, "lr": cfg.lr_gate},
                            {"params": lr_p, "lr": cfg.lr_meta}])
    if resume and run.resume(model, opt, Model.from_state, lambda m: None if m.cfg == scfg and m.patch == cfg.patch
                             else f"{m.cfg.to_dict()} (patch {m.patch})"):
        sampler.rng = np.random.default_rng(cfg.seed + 1000 * rank + run.step)
        torch.manual_seed(cfg.seed + rank + run.step)
    step, history = run.step, run.history
    run.start(asdict(cfg), f" world={world}")
    bar = progress_bar(total=cfg.steps, initial=step, progress=progress and rank == 0, unit="step", desc="meta-train")

    def checkpoint() -> None:
        run.step = step
        run.save(model, opt, asdict(cfg))

    while step < cfg.steps:
        batch = sampler.sample(cfg.batch)
        state = inner_loop(model, coords, batch, create_graph=not cfg.first_order)
        loss, d = group_loss(model, state, coords, batch, cfg.lam)
        opt.zero_grad(set_to_none=True)
        loss.mean().backward()
        if distributed:
            for t in theta_p + meta_p:
                if t.grad is not None:
                    dist.all_reduce(t.grad)
                    t.grad /= world
        torch.nn.utils.clip_grad_norm_(theta_p + meta_p, cfg.clip)
        opt.step()
        with torch.no_grad():  # learning rates stay positive, logits bounded
            for v in model.lr_delta.values():
                v.clamp_(min=0.0)
            for v in model.lr_alpha.values():
                v.clamp_(min=0.0)
            for v in model.log_alpha.values():
                v.clamp_(-10.0, 10.0)
        step += 1
        bar.update(1)
        train_psnr = 10 * math.log10(4.0 / max(d.mean().item(), 1e-12))
        bar.set_postfix(psnr=f"{train_psnr:.2f}", open=f"{state.expected_open(model).mean().item():.0f}")
        run.tick(step, cfg.steps, cfg.val_every, cfg.ckpt_every_s,
                 (lambda: {**evaluate(model, coords, val), "step": step, "wall_s": round(run.wall(), 1),
                           "train_psnr": round(train_psnr, 3)}) if rank == 0 else None, checkpoint)
    bar.close()
    checkpoint()
    if rank == 0:
        model.meta = {**run.provenance(data.root, train_files, val_files, command, asdict(cfg)), "world_size": world}
        model.description = f"meta-learned SIREN w{cfg.width} d{cfg.depth}, {cfg.mode} update, lam={cfg.lam}"
        frozen = Model.from_state(model.state())
        frozen.save(out.with_suffix(".pt"))
        write_card(frozen, out.with_suffix(".md"), history, run.log_path)
        run.log(f"# wrote {out.with_suffix('.pt')} id={frozen.model_id.hex()}")
    place.leave()
    return out.with_suffix(".pt")


def write_card(model: Model, path: Path, history: list[dict], log_path: Path | None = None) -> None:
    m = model.meta
    training.write_card(
        model, path, history, log_path or Path("/nonexistent"),
        architecture=f"SIREN {json.dumps(model.cfg.to_dict())}, patch {model.patch}x{model.patch}, gated={model.gated}, "
                     f"inner steps {model.inner_steps}, L0 weight {model.lam}; world size {m.get('world_size', 1)}",
        data=f"({m['data_files']} training images, {m['val_files']} held out for validation). "
             "No Kodak or other benchmark image was used",
        validation="held-out patches, after the inner loop, deterministic gates, unquantised",
        history_title="every few hundred steps",
        columns=("step", "wall s", "val PSNR dB", "open entries / patch", "train PSNR dB"),
        row=lambda h: (h["step"], h["wall_s"], f"{h['val_psnr']:.2f}", f"{h['open_per_patch']:.1f}", f"{h['train_psnr']:.2f}"))
