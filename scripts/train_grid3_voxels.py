"""Train grid3's shared decoder for occupancy grids (modality "voxels") on voxelised training meshes.

    python scripts/train_grid3_voxels.py --data ../shared/data/meshes-collection --out mscncodec/weights/grid3-occ

The volumes are ``voxels_codec.training_volumes``: the mesh trainer's training split (>= 1000 faces, at most 24)
voxelised at --resolution^3 (cached under --cache). Writes OUT.pt, OUT.md (card, with the rate calibration)
and OUT.run/ (log, checkpoint); --resume continues OUT.run's checkpoint.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from mscncodec.families.grid2.volume.train import Vol3TrainConfig, train
from mscncodec.modalities.voxels_codec import training_volumes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/meshes-collection"))
    ap.add_argument("--out", type=Path, default=Path("mscncodec/weights/grid3-occ"))
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--log2-lam", type=float, nargs=2, default=(-7.0, -2.0), metavar=("LO", "HI"))
    ap.add_argument("--cache", type=Path, default=Path("build/voxel-train-cache"))
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    t0 = time.time()
    data = training_volumes(a.data, a.resolution, cache=a.cache)
    print(f"{len(data.train)} training volumes ({time.time() - t0:.0f} s): {data.description}", flush=True)
    cfg = Vol3TrainConfig(levels=5, periodic=(False, False, False), steps=a.steps, log2_lam=tuple(a.log2_lam))
    command = "python " + " ".join(shlex.quote(x) for x in sys.argv)
    path = train(data, a.out, cfg, modality="voxels", resume=a.resume, command=command)
    print(f"wrote {path} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
