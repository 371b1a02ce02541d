"""Train grid3's shared decoder for one modality (resumable; one thread leaves the other core free).

    python scripts/train_grid3.py series --data ../shared/data/spherical --out mscncodec/weights/grid3-series --steps 3000
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from mscncodec.families.grid2.volume.train import Vol3TrainConfig, train

RECIPES = {  # per modality: the volumes' hook, the axes and the lambda range of the training volumes
    "series": ("mscncodec.modalities.series_codec:training_volumes", (False, False, True), (-13.0, -7.0)),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("modality", choices=sorted(RECIPES))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    hook, periodic, lam = RECIPES[a.modality]
    module, fn = hook.split(":")
    volumes = getattr(__import__(module, fromlist=[fn]), fn)(a.data)
    cfg = Vol3TrainConfig(levels=a.levels, periodic=periodic, steps=a.steps, log2_lam=lam)
    command = "python scripts/train_grid3.py " + " ".join(shlex.quote(x) for x in sys.argv[1:] if x != "--resume")
    print(train(volumes, a.out, cfg, modality=a.modality, resume=a.resume, command=command))


if __name__ == "__main__":
    main()
