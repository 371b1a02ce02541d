"""Meta-training a SIREN initialisation for global fields on the sphere (`mscn train sphere`).

One task = one global field (one time step of one variable), normalised by its own range as the
encoder does it. Its points are drawn with probability proportional to the area they stand for
(cos latitude), so the plain squared error of a batch is an unbiased estimate of the area-weighted
error the encoder minimises and the bench reports. The inner and outer loops are the paper's
(families/siren/meta.py, shared with meshes).

No augmentation: a field's position on the globe is information (land, sea, orography sit where they
sit), and a meta-learned theta0 that knows the climatology is the point of a shipped start.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mscncodec import training
from mscncodec._runtime import progress_bar
from mscncodec.errors import MscnError
from mscncodec.families.siren import network as siren
from mscncodec.families.siren.fit import inner_loop, weighted_mse
from mscncodec.families.siren.meta import MetaConfig, outer_loop, start_model
from mscncodec.families.siren.model import Model
from mscncodec.modalities import sphere as smod
from mscncodec.training import Run

BENCH_FOLDERS = ("single-fields",)  # measured by the bench, never trained on


@dataclass
class SphereTrainConfig(MetaConfig):
    val_fields: int = 8
    train: str = "ccsm-trefht-annual/*B06.57*,ccsm-ts-monthly/*.nc"
    val: str = "ccsm-trefht-annual/*B06.59*"


def select(root: Path, patterns: str) -> list[Path]:
    """Files under root matching any of the comma-separated globs; the bench's folders are refused."""
    files = sorted({p for g in patterns.split(",") if g for p in root.glob(g) if p.is_file()})
    bad = [f for f in files if any(part in BENCH_FOLDERS for part in f.relative_to(root).parts)]
    if bad:
        raise MscnError(f"refusing to train on {bad[0].relative_to(root)}: {'/'.join(BENCH_FOLDERS)} is a benchmark set")
    if not files:
        raise MscnError(f"no files under {root} match {patterns!r}")
    return files


def load_fields(files: list[Path], every: int = 1) -> list[smod.SphereField]:
    """Every `every`-th time step of each file's one lat-lon variable."""
    out = []
    for f in files:
        n = smod.time_steps(f)
        out += [smod.load(f, time=t if n > 1 else None) for t in range(0, max(n, 1), every)]
    return out


class FieldTask:
    """One field, ready to sample: unit vectors, normalised values, area probabilities, full-grid weights."""

    def __init__(self, f: smod.SphereField):
        self.xyz, self.y, self.weight, self.half = smod.fit_arrays(f)  # every point: training grids are small
        self.p = self.weight / self.weight.sum()


class FieldSampler:
    def __init__(self, tasks: list[FieldTask], points: int, seed: int):
        self.tasks, self.k = tasks, points
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for j in self.rng.integers(0, len(self.tasks), n):
            t = self.tasks[j]
            idx = self.rng.choice(len(t.y), self.k, p=t.p)
            xs.append(t.xyz[idx])
            ys.append(t.y[idx])
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)).unsqueeze(-1)


def evaluate(model: Model, tasks: list[FieldTask]) -> dict[str, float]:
    """After the inner loop on each whole held-out field (area-weighted, deterministic gates, unquantised):
    the area-weighted RMSE in the fields' units and the open entries per field."""
    coords = torch.from_numpy(np.stack([t.xyz for t in tasks]))
    target = torch.from_numpy(np.stack([t.y for t in tasks])).unsqueeze(-1)
    weight = torch.from_numpy(np.stack([t.weight for t in tasks])).unsqueeze(-1)
    with torch.enable_grad():
        state = inner_loop(model, coords, target, loss_fn=weighted_mse(weight))
    with torch.no_grad():
        eff = state.effective(model, stochastic=False)
        pred = siren.forward(model.cfg, model.theta, eff, coords, len(tasks)).clamp(-1, 1)
        mse = weighted_mse(weight)(pred, target).numpy()
        opened = sum((v != 0).float().reshape(len(tasks), -1).sum(1) for v in eff.values()).mean().item()
    rmse = np.sqrt(mse) * np.array([t.half for t in tasks])
    return {"val_rmse": round(float(rmse.mean()), 4), "val_nmse_e6": round(float(mse.mean()) * 1e6, 2),
            "open_per_field": round(opened, 1)}


def train(data: Path, out: Path, cfg: SphereTrainConfig, *, resume: bool, command: str, progress: bool = True,
          export_only: bool = False) -> Path:
    """Run (or resume) meta-training and write OUT.pt + card; export_only: freeze the checkpoint as it is."""
    train_files, val_files = select(data, cfg.train), select(data, cfg.val)
    if set(train_files) & set(val_files):
        raise MscnError("the training and validation files overlap")
    tasks = [FieldTask(f) for f in progress_bar(load_fields(train_files), desc="fields", progress=progress)]
    val_all = load_fields(val_files)
    val_tasks = [FieldTask(f) for f in val_all[:: max(1, len(val_all) // cfg.val_fields)][: cfg.val_fields]]
    sampler = FieldSampler(tasks, cfg.points, cfg.seed)
    torch.manual_seed(cfg.seed)
    run = Run(out)
    model, opt, params = start_model(cfg, run, out.name, "sphere", resume=resume, export_only=export_only,
                                     sampler=sampler)
    n_fields = (len(tasks), len(val_tasks))
    if not export_only:
        run.start(asdict(cfg), f" fields={n_fields[0]} val={n_fields[1]}")

        def checkpoint(step: int) -> None:
            run.step = step
            run.save(model, opt, asdict(cfg))

        outer_loop(model, opt, params, run, sample=lambda: sampler.sample(cfg.batch), steps=cfg.steps, lam=cfg.lam,
                   clip=cfg.clip, first_order=cfg.first_order, val_every=cfg.val_every,
                   ckpt_every_s=cfg.ckpt_every_s, evaluate=lambda: evaluate(model, val_tasks), checkpoint=checkpoint,
                   desc="meta-train sphere", progress=progress)
    model.meta = {**run.provenance(data, train_files, val_files, command, asdict(cfg)), "world_size": 1,
                  "fields": n_fields[0]}
    model.description = (f"meta-learned SIREN for global fields on the sphere, w{cfg.width} d{cfg.depth}, gated "
                         f"full update, lam={cfg.lam}")
    frozen = Model.from_state(model.state())
    frozen.save(out.with_suffix(".pt"))
    m = frozen.meta
    training.write_card(
        frozen, out.with_suffix(".md"), run.history, run.log_path,
        architecture=f"SIREN on unit vectors of the sphere -> value {json.dumps(frozen.cfg.to_dict())}, gated={frozen.gated}, "
                     f"inner steps {frozen.inner_steps}, L0 weight {frozen.lam}; values normalised by each field's "
                     "range; area-weighted loss; codes global fields (`mscn encode t2m.nc --var T`)",
        data=f"(training: {', '.join(str(f.relative_to(data)) for f in train_files)}, {m['fields']} fields; held out "
             f"for validation: {', '.join(str(f.relative_to(data)) for f in val_files)}, {len(val_tasks)} of its "
             "fields). `single-fields/` (the bench's single fields) was never used",
        validation="held-out run, after the inner loop on the whole field, area-weighted, deterministic gates, "
                   "unquantised; RMSE in the fields' units (K)",
        history_title="held-out fields",
        columns=("step", "wall s", "val RMSE (K)", "val normalised MSE x1e6", "open entries / field", "train MSE x1e6"),
        row=lambda h: (h["step"], h["wall_s"], h["val_rmse"], h["val_nmse_e6"], h["open_per_field"], h["train_mse_e6"]))
    run.log(f"# wrote {out.with_suffix('.pt')} id={frozen.model_id.hex()}")
    return out.with_suffix(".pt")
