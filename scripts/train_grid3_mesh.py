"""Train grid3's shared decoder for meshes (truncated SDFs on 3-D latent grids).

    python scripts/train_grid3_mesh.py --data ../shared/data/meshes-collection --out mscncodec/weights/grid3-sdf \
        --steps 2500

The data are the mesh trainer's training split (never its held-out meshes, never meshes-test):
``mesh_grid.training_volumes``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mscncodec.families.grid2.volume.train import Vol3TrainConfig, train
from mscncodec.modalities.mesh_grid import training_volumes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/meshes-collection"))
    ap.add_argument("--out", type=Path, default=Path("mscncodec/weights/grid3-sdf"))
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--meshes", type=int, default=30)
    ap.add_argument("--samples", type=int, default=65536)
    ap.add_argument("--log2-lam", type=float, nargs=2, default=(-13.0, -6.0))
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    data = training_volumes(a.data, max_meshes=a.meshes, n_samples=a.samples)
    cfg = Vol3TrainConfig(levels=5, periodic=(False, False, False), steps=a.steps, log2_lam=tuple(a.log2_lam))
    out = train(data, a.out, cfg, modality="mesh", resume=a.resume,
                command=" ".join(shlex.quote(x) for x in ["python", *sys.argv]))
    print(out)


if __name__ == "__main__":
    main()
