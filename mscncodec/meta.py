"""Meta-training (Meta-SGD with L0 gates in the inner loop): ``mscn train``.

Outer loop: Adam on theta0, the initial gate logits and the per-entry inner
learning rates, minimising the post-adaptation loss (distortion + lam * E[open])
over batches of random patch crops. Runs on one process or data-parallel under
``torchrun`` (gloo): each rank draws its own crops and gradients are averaged.
Checkpoints are written often and ``--resume`` continues exactly where a run stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from tqdm.auto import tqdm

from .errors import MscnError
from .fit import group_loss, inner_loop
from .modalities.image import grid_coords
from .models import Model, fresh_model
from .siren import SirenConfig

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


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


def list_images(root: Path) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise MscnError(f"no training images found under {root}")
    return files


def split(files: list[Path], root: Path, val_fraction: float) -> tuple[list[Path], list[Path]]:
    """Deterministic split by a hash of the relative path (stable when files are added)."""
    train, val = [], []
    for f in files:
        h = int(hashlib.sha1(str(f.relative_to(root)).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (val if h < val_fraction else train).append(f)
    return train, val


def training_files(data: Path, val_fraction: float, max_images: int) -> tuple[list[Path], list[Path]]:
    """(train, held-out) image files; the held-out split falls back to the last training file."""
    train_files, val_files = split(list_images(data), data, val_fraction)
    if max_images:
        train_files = train_files[:max_images]
    return train_files, val_files or train_files[-1:]


def run_paths(out: Path) -> tuple[Path, Path]:
    """(checkpoint, log) of a training run in OUT.run/, created only once the data is known to be usable."""
    run_dir = out.parent / f"{out.name}.run"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir / "checkpoint.pt", run_dir / "train.log"


class Run:
    """One training run's folder OUT.run/ — checkpoint (written atomically), resume, log, provenance —
    shared by the trainers so that every family checkpoints, resumes and documents itself the same way.

    `active` False (a torchrun rank other than 0) reads the checkpoint but never writes."""

    def __init__(self, out: Path, active: bool = True) -> None:
        self.ckpt, self.log_path = run_paths(out)
        self.active = active
        self.step, self.elapsed, self.history = 0, 0.0, []
        self._log = open(self.log_path, "a") if active else None
        self.t0 = time.time()

    def resume(self, model, opt, load: Callable[[dict], object], mismatch: Callable[[object], str | None]) -> bool:
        """Load the checkpoint (if any) into `model` and `opt`; `mismatch(loaded)` names an architecture
        difference that makes resuming wrong (a one-line error), or None."""
        if not self.ckpt.is_file():
            return False
        ck = torch.load(self.ckpt, map_location="cpu", weights_only=False)
        loaded = load(ck["model"])
        problem = mismatch(loaded)
        if problem:
            raise MscnError(f"{self.ckpt} was trained with {problem}: resume with the same architecture options")
        mine = model.tensors()
        for k, v in loaded.tensors().items():
            mine[k].data.copy_(v)
        opt.load_state_dict(ck["opt"])
        self.step, self.elapsed, self.history = ck["step"], ck["elapsed"], ck["history"]
        return True

    def log(self, msg: str) -> None:
        if self._log:
            self._log.write(msg + "\n")
            self._log.flush()

    def start(self, cfg: dict, extra: str = "") -> None:
        """Log the start (or resume) with the full config; the card reads these lines back."""
        self.log(f"# start step={self.step}{extra} cfg={json.dumps(cfg)}")
        self.t0 = time.time() - self.elapsed

    def wall(self) -> float:
        return time.time() - self.t0

    def save(self, model, opt, cfg: dict) -> None:
        if not self.active:
            return
        tmp = self.ckpt.with_suffix(".tmp")
        torch.save({"model": model.state(), "opt": opt.state_dict(), "step": self.step, "elapsed": self.wall(),
                    "history": self.history, "cfg": cfg}, tmp)
        tmp.replace(self.ckpt)

    def provenance(self, data: Path, train_files: list[Path], val_files: list[Path], command: str, cfg: dict) -> dict:
        """What a model card records of the run."""
        return {"train_config": cfg, "data": str(data), "data_files": len(train_files), "val_files": len(val_files),
                "data_sha256": data_hash(train_files, data), "steps": self.step, "wall_s": round(self.wall(), 1),
                "command": command, "validation": self.history[-1] if self.history else {},
                "torch": str(torch.__version__), "machine": f"{platform.machine()} {os.cpu_count()} cores"}


def data_hash(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def load_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise MscnError(f"cannot read training image {path}: {type(e).__name__}") from None


class PatchSampler:
    """Random P x P crops with random flips, as (B, P*P, 3) in [-1, 1]."""

    def __init__(self, images: list[np.ndarray], patch: int, seed: int):
        self.images = [im for im in images if im.shape[0] >= patch and im.shape[1] >= patch]
        if not self.images:
            raise MscnError(f"no image is at least {patch}x{patch} pixels (the patch size)")
        self.p = patch
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int) -> torch.Tensor:
        p, out = self.p, np.empty((n, self.p, self.p, 3), np.uint8)
        idx = self.rng.integers(0, len(self.images), n)
        for i, j in enumerate(idx):
            im = self.images[j]
            y = self.rng.integers(0, im.shape[0] - p + 1)
            x = self.rng.integers(0, im.shape[1] - p + 1)
            crop = im[y : y + p, x : x + p]
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            if self.rng.random() < 0.5:
                crop = crop[::-1]
            out[i] = crop
        return torch.from_numpy(out).float().div_(127.5).sub_(1.0).reshape(n, p * p, 3)


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
        from . import siren

        pred = siren.forward(model.cfg, model.theta, eff, coords, val.shape[0]).clamp(-1, 1)
        mse = (pred - val).pow(2).mean().item() * (127.5**2)
        opened = sum((v != 0).float().reshape(val.shape[0], -1).sum(1) for v in eff.values()).mean().item()
    return {"val_psnr": 10 * math.log10(255.0**2 / max(mse, 1e-12)), "open_per_patch": opened}


def train(data: Path, out: Path, cfg: TrainConfig, *, resume: bool, command: str, progress: bool = True) -> Path:
    """Run (or resume) meta-training; returns the path of the written model."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    if distributed:
        dist.init_process_group("gloo")
        rank = dist.get_rank()
    world = dist.get_world_size() if distributed else 1
    train_files, val_files = training_files(data, cfg.val_fraction, cfg.max_images)
    torch.manual_seed(cfg.seed + rank)
    sampler = PatchSampler([load_rgb(f) for f in train_files], cfg.patch, cfg.seed + 1000 * rank)
    val = PatchSampler([load_rgb(f) for f in val_files], cfg.patch, 12345).sample(cfg.val_patches)

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
    last_ckpt = time.time()
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress or rank != 0, unit="step", desc="meta-train")

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
        if step % cfg.val_every == 0 or step == cfg.steps:
            if rank == 0:
                ev = evaluate(model, coords, val)
                ev.update(step=step, wall_s=round(run.wall(), 1), train_psnr=round(train_psnr, 3))
                history.append(ev)
                run.log(json.dumps(ev))
        if time.time() - last_ckpt > cfg.ckpt_every_s:
            checkpoint()
            last_ckpt = time.time()
    bar.close()
    checkpoint()
    if rank == 0:
        model.meta = {**run.provenance(data, train_files, val_files, command, asdict(cfg)), "world_size": world}
        model.description = f"meta-learned SIREN w{cfg.width} d{cfg.depth}, {cfg.mode} update, lam={cfg.lam}"
        frozen = Model.from_state(model.state())
        frozen.save(out.with_suffix(".pt"))
        write_card(frozen, out.with_suffix(".md"), history, run.log_path)
        run.log(f"# wrote {out.with_suffix('.pt')} id={frozen.model_id.hex()}")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return out.with_suffix(".pt")


def write_card(model: Model, path: Path, history: list[dict], log_path: Path | None = None) -> None:
    m = model.meta
    starts = []
    if log_path is not None and log_path.is_file():
        starts = [ln.split()[2].split("=")[1] for ln in log_path.read_text().splitlines() if ln.startswith("# start step=")]
        starts = [s for s in starts if int(s) < m["steps"]]  # a resume that only writes the model adds no step
    lines = [
        f"# Model card: {model.name}",
        "",
        f"- **id**: `{model.model_id.hex()}`",
        f"- **what**: {model.description}",
        f"- **architecture**: SIREN {json.dumps(model.cfg.to_dict())}, patch {model.patch}x{model.patch}, "
        f"gated={model.gated}, inner steps {model.inner_steps}, L0 weight {model.lam}",
        f"- **data**: `{m['data']}` ({m['data_files']} training images, {m['val_files']} held out for validation); "
        f"sha256 of the training files: `{m['data_sha256']}`. No Kodak or other benchmark image was used.",
        f"- **steps**: {m['steps']} outer steps, world size {m['world_size']}"
        + (f"; the run was started/resumed at steps {', '.join(starts)} (`--resume` reseeds the crop sampler)"
           if len(starts) > 1 else ""),
        f"- **wall time**: {m['wall_s']} s on {m['machine']} (torch {m['torch']})",
        f"- **command**: `{m['command']}`",
        f"- **validation** (held-out patches, after the inner loop, deterministic gates, unquantised): "
        f"{json.dumps(m['validation'])}",
        "",
        "## Training config",
        "```json",
        json.dumps(m["train_config"], indent=2),
        "```",
        "",
        "## Validation history (every few hundred steps)",
        "| step | wall s | val PSNR dB | open entries / patch | train PSNR dB |",
        "|---|---|---|---|---|",
    ]
    stride = max(1, len(history) // 20)
    for h in history[::stride] + ([history[-1]] if history and (len(history) - 1) % stride else []):
        lines.append(f"| {h['step']} | {h['wall_s']} | {h['val_psnr']:.2f} | {h['open_per_patch']:.1f} | {h['train_psnr']:.2f} |")
    path.write_text("\n".join(lines) + "\n")
