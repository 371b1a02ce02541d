"""Meta-training a SIREN signed-distance initialisation on a collection of meshes (`mscn train mesh`).

The paper's recipe on shapes: one task = one mesh; the inner loop is Meta-SGD with
per-entry learning rates and hard-concrete gates (fit.inner_loop, the same loop the
encoder runs), the outer loop learns theta0, the gate logits and the learning rates
through it. Each mesh is normalised into the unit cube as the encoder does it, and
its signed-distance samples are computed once (cached in OUT.run/). Augmentation
rotates and scales the sample points: a rigid motion moves the points and keeps the
distances, a scaling multiplies both, so no distance is recomputed.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mscncodec._runtime import progress_bar
from mscncodec import training
from mscncodec.errors import MscnError
from mscncodec.families.siren.fit import inner_loop
from mscncodec.families.siren.meta import MetaConfig, outer_loop, start_model
from mscncodec.training import Run, split
from mscncodec.families.siren.model import Model
from mscncodec.modalities import mesh as mmod


@dataclass
class MeshTrainConfig(MetaConfig):
    width: int = 64
    points: int = 4096
    steps: int = 10000
    pool: int = 65536  # samples computed once per mesh
    val_fraction: float = 0.1
    max_meshes: int = 0  # 0: all
    min_faces: int = 12


def list_meshes(root: Path, min_faces: int = 12) -> list[Path]:
    """Meshes under root; where a MESHES.tsv lists them, keep the watertight ones with at least min_faces
    (the collection's broken test cases — holes, fragments, self-intersections — teach no shape prior)."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in mmod.EXTENSIONS and p.is_file())
    tsv = root / "MESHES.tsv"
    if tsv.is_file():
        with tsv.open() as fh:
            rows = {r["file"]: r for r in csv.DictReader(fh, delimiter="\t")}
        keep = {f for f, r in rows.items() if r.get("watertight") == "True" and int(r.get("faces", 0)) >= min_faces}
        files = [p for p in files if str(p.relative_to(root)) in keep]
    if not files:
        raise MscnError(f"no training meshes found under {root}")
    return files


def _pool(path: Path, n: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    key = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    f = cache / f"{key}-{n}.npz"
    if f.is_file():
        z = np.load(f)
        return z["q"], z["s"]
    mesh = mmod.load(path)
    fr = mmod.frame_for(mesh)
    q, s = mmod.sdf_samples(mmod.Mesh(fr.to_unit(mesh.vertices), mesh.faces), n, seed=int(key[:8], 16))
    np.savez(f, q=q, s=s)
    return q, s


class SdfSampler:
    """Random meshes, random subsets of their samples, random rotation and scale."""

    def __init__(self, pools: list[tuple[np.ndarray, np.ndarray]], points: int, seed: int):
        self.pools, self.k = pools, points
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int, augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        qs, ss = [], []
        for j in self.rng.integers(0, len(self.pools), n):
            q, s = self.pools[j]
            idx = self.rng.integers(0, len(q), self.k)
            q, s = q[idx].astype(np.float64), s[idx].astype(np.float64)
            if augment:
                rot, _ = np.linalg.qr(self.rng.normal(size=(3, 3)))
                scale = self.rng.uniform(0.7, 1.0)
                q, s = scale * q @ rot.T, scale * s
            qs.append(q)
            ss.append(np.clip(s, -mmod.TRUNCATION, mmod.TRUNCATION))
        return (torch.from_numpy(np.stack(qs)).float(), torch.from_numpy(np.stack(ss)).float().unsqueeze(-1))


def evaluate(model: Model, coords: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """After the inner loop (deterministic gates, unquantised): MSE of the truncated SDF (x1e6), the share
    of near-surface points (|d| < 0.01) on the right side, and the open entries per mesh."""
    with torch.enable_grad():
        state = inner_loop(model, coords, target)
    with torch.no_grad():
        from mscncodec.families.siren import network as siren

        eff = state.effective(model, stochastic=False)
        pred = siren.forward(model.cfg, model.theta, eff, coords, target.shape[0])
        mse = (pred - target).pow(2).mean().item()
        near = target.abs() < 0.01
        sign_ok = ((pred > 0) == (target > 0))[near].float().mean().item()
        opened = sum((v != 0).float().reshape(target.shape[0], -1).sum(1) for v in eff.values()).mean().item()
    return {"val_mse_e6": round(mse * 1e6, 3), "val_sign_near": round(sign_ok, 4), "open_per_mesh": round(opened, 1)}


def train(data: Path, out: Path, cfg: MeshTrainConfig, *, resume: bool, command: str, progress: bool = True,
          export_only: bool = False) -> Path:
    """Run (or resume) meta-training and write OUT.pt + card; export_only: freeze the checkpoint as it is."""
    files = list_meshes(data, cfg.min_faces)
    train_files, val_files = split(files, data, cfg.val_fraction)
    if cfg.max_meshes:
        train_files = train_files[: cfg.max_meshes]
    val_files = val_files or train_files[-1:]
    run = Run(out)
    cache = run.ckpt.parent / "sdf-cache"
    cache.mkdir(exist_ok=True)
    pools = [_pool(f, cfg.pool, cache) for f in progress_bar(train_files, desc="signed distances", progress=progress)]
    val_pools = [_pool(f, cfg.pool, cache) for f in val_files]
    sampler = SdfSampler(pools, cfg.points, cfg.seed)
    val = SdfSampler(val_pools, 8192, 12345)
    val_q, val_s = zip(*(val.sample(1, augment=False) for _ in range(len(val_pools))))
    val_q, val_s = torch.cat(val_q), torch.cat(val_s)
    torch.manual_seed(cfg.seed)

    model, opt, params = start_model(cfg, run, out.name, "mesh", resume=resume, export_only=export_only,
                                     sampler=sampler)
    if export_only:
        return export(model, run, data, out, train_files, val_files, command, cfg)
    run.start(asdict(cfg), f" meshes={len(train_files)} val={len(val_files)}")

    def checkpoint(step: int) -> None:
        run.step = step
        run.save(model, opt, asdict(cfg))

    outer_loop(model, opt, params, run, sample=lambda: sampler.sample(cfg.batch), steps=cfg.steps, lam=cfg.lam,
               clip=cfg.clip, first_order=cfg.first_order, val_every=cfg.val_every, ckpt_every_s=cfg.ckpt_every_s,
               evaluate=lambda: evaluate(model, val_q, val_s), checkpoint=checkpoint, desc="meta-train mesh",
               progress=progress)
    return export(model, run, data, out, train_files, val_files, command, cfg)


def export(model: Model, run: Run, data: Path, out: Path, train_files, val_files, command: str,
           cfg: MeshTrainConfig) -> Path:
    model.meta = {**run.provenance(data, train_files, val_files, command, asdict(cfg)), "world_size": 1}
    model.description = (f"meta-learned SIREN signed distance w{cfg.width} d{cfg.depth}, gated full update, "
                         f"lam={cfg.lam}")
    frozen = Model.from_state(model.state())
    frozen.save(out.with_suffix(".pt"))
    write_card(frozen, out.with_suffix(".md"), run.history, run.log_path, train_files, data)
    run.log(f"# wrote {out.with_suffix('.pt')} id={frozen.model_id.hex()}")
    return out.with_suffix(".pt")


def write_card(model: Model, path: Path, history: list[dict], log_path: Path, train_files, data: Path) -> None:
    m = model.meta
    training.write_card(
        model, path, history, log_path,
        architecture=f"SIREN R^3 -> signed distance {json.dumps(model.cfg.to_dict())}, gated={model.gated}, inner steps "
                     f"{model.inner_steps}, L0 weight {model.lam}; signed distances truncated at +-{mmod.TRUNCATION} of "
                     f"the unit cube; codes meshes (`mscn encode shape.obj`)",
        data=f"({m['data_files']} training meshes, the watertight ones of MESHES.tsv with >= "
             f"{m['train_config']['min_faces']} faces, {m['val_files']} held out for validation: "
             f"{', '.join(str(f.relative_to(data)) for f in train_files)}). The test meshes (`meshes-test`: bunny, "
             "spot) were never used",
        validation="held-out meshes, after the inner loop, deterministic gates, unquantised",
        history_title="held-out meshes, 8192 samples each",
        columns=("step", "wall s", "val MSE x1e6", "near-surface sign ok", "open entries / mesh", "train MSE x1e6"),
        row=lambda h: (h["step"], h["wall_s"], h["val_mse_e6"], h["val_sign_near"], h["open_per_mesh"], h["train_mse_e6"]))
