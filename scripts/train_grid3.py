"""Train grid3's shared decoder for one modality (resumable; one thread leaves the other core free).

    python scripts/train_grid3.py series --data ../shared/data/spherical --out mscncodec/weights/grid3-series --steps 3000
    python scripts/train_grid3.py mesh --data ../shared/data/meshes-collection --out mscncodec/weights/grid3-sdf \
        --steps 5000 --set max_meshes=10 --set finest_sides=32
    python scripts/train_grid3.py voxels --data ../shared/data/meshes-collection --out mscncodec/weights/grid3-occ

The training volumes come from the modality's hook (never a bench set); ``--set NAME=VALUE`` passes its options,
``--hook MODULE:FUNCTION`` names another hook (a VolumeSet from `FUNCTION(data, **options)`; the modality still
gives the axes and the lambda range).

Data-parallel on N processes (gloo; each rank takes --batch pairs of the global batch --batch x N, and the torch
threads are shared out between the ranks unless --threads is given):

    torchrun --standalone --nproc_per_node=2 scripts/train_grid3.py series --data ../shared/data/spherical \
        --out mscncodec/weights/grid3-series --steps 3000 --batch 1
"""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import sys
from pathlib import Path

import torch

from mscncodec.families.grid2.volume.train import Vol3TrainConfig, train
from mscncodec.training import rank_threads

RECIPES = {  # per modality: the volumes' hook, the axes and the default lambda range of the training volumes
    "series": ("mscncodec.modalities.series_codec:training_volumes", (False, False, True), (-10.0, -4.0)),
    "mesh": ("mscncodec.modalities.mesh_grid:training_volumes", (False, False, False), (-10.0, -4.0)),
    "voxels": ("mscncodec.modalities.voxels_codec:training_volumes", (False, False, False), (-7.0, -2.0)),
}


def _value(text: str):
    try:
        v = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("modality", choices=sorted(RECIPES))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads [1 on one process; under torchrun the cores shared between the ranks]")
    ap.add_argument("--batch", type=int, default=1, help="(volume, lambda) pairs per step and process [1]")
    ap.add_argument("--val-every", type=int, default=250, help="steps between the logged loss records [250]")
    ap.add_argument("--hook", default=None, metavar="MODULE:FUNCTION", help="the training volumes' hook [the modality's]")
    ap.add_argument("--log2-lam", default=None, help="lo,hi: the training volumes' lambda range [the recipe's]")
    ap.add_argument("--latent-lr", type=float, default=None, help="Adam's rate of the training volumes' latents")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="an option of the volumes' hook")
    a = ap.parse_args()
    if "meshes-test" in str(a.data) or "kodak" in str(a.data):
        sys.exit("refusing to train on a bench set")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    torch.set_num_threads(rank_threads(a.threads) if distributed else a.threads or 1)
    hook, periodic, lam = RECIPES[a.modality]
    hook = a.hook or hook
    module, fn = hook.split(":")
    options = {}
    for item in a.set:
        k, _, v = item.partition("=")
        v = _value(v)
        options[k] = tuple(v) if isinstance(v, list) else ((v,) if k == "finest_sides" and isinstance(v, int) else v)
    volumes = getattr(__import__(module, fromlist=[fn]), fn)(a.data, **options)
    if a.log2_lam:
        lam = tuple(float(x) for x in a.log2_lam.split(","))
    extra = {} if a.latent_lr is None else {"latent_lr": a.latent_lr}
    cfg = Vol3TrainConfig(levels=a.levels, periodic=periodic, steps=a.steps, log2_lam=lam, batch=a.batch,
                          val_every=a.val_every, **extra)
    command = "python scripts/train_grid3.py " + " ".join(shlex.quote(x) for x in sys.argv[1:] if x != "--resume")
    path = train(volumes, a.out, cfg, modality=a.modality, resume=a.resume, command=command)
    if int(os.environ.get("RANK", "0")) == 0:  # one report for the run, as `mscn train` gives
        print(path)


if __name__ == "__main__":
    main()
