"""The paper's outer loop, shared by every modality the SIREN family meta-trains on R^3 inputs (meshes'
signed distances, fields on the sphere): Meta-SGD through the inner loop (fit.inner_loop, the loop the
encoder runs) learns theta0, the gate logits and the per-entry learning rates.

A modality's trainer supplies the tasks (`sample() -> (coords, target)`, points drawn so that the plain
squared error is the one it means) and its
validation; the loop, the optimiser, the clamps, checkpoints and logging are the same for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from mscncodec._runtime import progress_bar
from mscncodec.errors import MscnError
from mscncodec.families.siren.fit import group_loss, inner_loop
from mscncodec.families.siren.network import SirenConfig
from mscncodec.families.siren.train import meta_parameters
from mscncodec.families.siren.model import Model, fresh_model
from mscncodec.training import Run


@dataclass
class MetaConfig:
    """The outer loop's settings every R^3 trainer shares (a trainer's config adds its data's own)."""

    width: int = 32
    depth: int = 5
    w0: float = 30.0
    inner_steps: int = 3
    lam: float = 2e-5  # L0 weight: loss = MSE + lam * E[open] / samples
    batch: int = 8  # tasks per outer step
    points: int = 2048  # samples per task and step
    steps: int = 5000
    lr: float = 1e-4
    lr_meta: float = 1e-3
    lr_gate: float = 1e-2
    clip: float = 1.0
    first_order: bool = False
    lr_init: float = 1e-2
    log_alpha_init: float = 2.0
    val_every: int = 250
    ckpt_every_s: float = 120.0
    seed: int = 0


def meta_optimizer(model: Model, lr: float, lr_gate: float, lr_meta: float) -> tuple[torch.optim.Adam, list]:
    """Adam over theta0 (lr), the gate logits (lr_gate) and the learning rates (lr_meta)."""
    theta_p, gate_p, lr_p = meta_parameters(model)
    for t in theta_p + gate_p + lr_p:
        t.requires_grad_(True)
    opt = torch.optim.Adam([{"params": theta_p, "lr": lr}, {"params": gate_p, "lr": lr_gate},
                            {"params": lr_p, "lr": lr_meta}])
    return opt, theta_p + gate_p + lr_p


def start_model(cfg: MetaConfig, run: Run, name: str, modality: str, *, resume: bool, export_only: bool,
                sampler) -> tuple[Model, torch.optim.Adam, list]:
    """A fresh SIREN R^3 -> R model of `cfg` and its optimiser, or the run's checkpoint when resuming or
    exporting (a resume reseeds `sampler.rng` and torch from the step, so it does not replay old batches)."""
    scfg = SirenConfig(in_dim=3, out_dim=1, width=cfg.width, depth=cfg.depth, w0=cfg.w0, mode="full")
    model = fresh_model(scfg, name=name, patch=0, seed=cfg.seed, inner_steps=cfg.inner_steps, lam=cfg.lam,
                        lr_init=cfg.lr_init, log_alpha_init=cfg.log_alpha_init, modality=modality)
    opt, params = meta_optimizer(model, cfg.lr, cfg.lr_gate, cfg.lr_meta)
    if (resume or export_only) and run.resume(model, opt, Model.from_state,
                                              lambda m: None if m.cfg == scfg else f"{m.cfg.to_dict()}"):
        sampler.rng = np.random.default_rng(cfg.seed + run.step)
        torch.manual_seed(cfg.seed + run.step)
    elif export_only:
        raise MscnError(f"--export-only needs a checkpoint at {run.ckpt}")
    return model, opt, params


def outer_loop(model: Model, opt: torch.optim.Adam, params: list, run: Run, *, sample: Callable[[], tuple],
               steps: int, lam: float, clip: float, first_order: bool, val_every: int, ckpt_every_s: float,
               evaluate: Callable[[], dict], checkpoint: Callable[[int], None], desc: str, progress: bool) -> None:
    """Outer steps from run.step to `steps`; evaluate() is logged every val_every steps, checkpoint(step)
    runs every ckpt_every_s seconds and at the end. `sample()` gives (coords, target) for one batch of tasks."""
    step = run.step
    bar = progress_bar(total=steps, initial=step, progress=progress, unit="step", desc=desc)
    while step < steps:
        coords, target = sample()
        state = inner_loop(model, coords, target, create_graph=not first_order)
        loss, d = group_loss(model, state, coords, target, lam)
        opt.zero_grad(set_to_none=True)
        loss.mean().backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        with torch.no_grad():
            for v in list(model.lr_delta.values()) + list(model.lr_alpha.values()):
                v.clamp_(min=0.0)
            for v in model.log_alpha.values():
                v.clamp_(-10.0, 10.0)
        step += 1
        bar.update(1)
        bar.set_postfix(mse_e6=f"{d.mean().item() * 1e6:.1f}", open=f"{state.expected_open(model).mean().item():.0f}")
        train_mse = d.mean().item()
        run.tick(step, steps, val_every, ckpt_every_s,
                 lambda: {**evaluate(), "step": step, "wall_s": round(run.wall(), 1),
                          "train_mse_e6": round(train_mse * 1e6, 3)}, lambda: checkpoint(step))
    bar.close()
    checkpoint(step)
