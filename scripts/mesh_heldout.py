"""Link the mesh trainer's held-out meshes into a folder for `mscn bench` (never trained on).

The held-out split is the trainer's own (training.split over the watertight meshes of MESHES.tsv,
10 %, by a hash of the path); --min-faces keeps the detailed ones (the others are low-poly
Thingi10K parts that Draco stores losslessly in a few hundred bytes).

    python scripts/mesh_heldout.py ../shared/data/meshes-collection build/meshes-heldout --min-faces 1000
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mscncodec.modalities.mesh_train import MeshTrainConfig, list_meshes
from mscncodec.modalities import mesh as mmod
from mscncodec.training import split


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--min-faces", type=int, default=0)
    a = ap.parse_args()
    cfg = MeshTrainConfig()
    _, val = split(list_meshes(a.data, cfg.min_faces), a.data, cfg.val_fraction)
    a.out.mkdir(parents=True, exist_ok=True)
    for f in val:
        if len(mmod.load(f).faces) < a.min_faces:
            continue
        link = a.out / f.name
        if not link.exists():
            os.symlink(f.resolve(), link)
        print(link)


if __name__ == "__main__":
    main()
