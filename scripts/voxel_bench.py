"""Occupancy-grid bench: the bench meshes voxelised, MSCN (grid3, modality voxels) against the classical baselines.

    python scripts/voxel_bench.py --resolution 64 --out results/voxels

Voxelises ``meshes-test/*.obj`` (bunny, spot) at each --resolution, then ``bench.voxels.run_voxel_bench`` with
MSCN at 1/16, 1/8, 1/4 and 1/2 of each shape's best lossless bytes; writes results.json/csv, summary.md and
rd.png under OUT (OUT/rNN per resolution when several are given).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mscncodec.bench.voxels import run_voxel_bench
from mscncodec.modalities import mesh as mmod
from mscncodec.modalities import voxels as vmod
from mscncodec.modalities import voxels_codec as vc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meshes", type=Path, default=Path("/work/shared/data/meshes-test"))
    ap.add_argument("--resolution", type=int, nargs="+", default=[64])
    ap.add_argument("--out", type=Path, default=Path("results/voxels"))
    ap.add_argument("--model", default=None, help="a grid3 voxels model name or .pt (default: the shipped one)")
    ap.add_argument("--effort", default="default", choices=vc.EFFORTS)
    ap.add_argument("--steps", type=int, default=None, help="fit steps (overrides the effort's)")
    ap.add_argument("--sizes", type=float, nargs="+", default=[1 / 16, 1 / 8, 1 / 4, 1 / 2])
    a = ap.parse_args()
    model = vc.pick_model(a.model)
    print(f"model {model.name}: {model.summary()}", flush=True)
    for r in a.resolution:
        refs = []
        for p in sorted(a.meshes.glob("*.obj")):
            m = mmod.load(p)
            g = vmod.voxelise(m.vertices, m.faces, r)
            g.name = p.stem
            refs.append((p.stem, g))

        def enc(g, target):
            data, rep = vc.encode_voxels(g, target_bytes=target, model=model, effort=a.effort, steps=a.steps,
                                         return_report=True)
            print(f"  {g.name} {r}^3 target {target}: {rep['bytes']} bytes IoU {rep['iou']:.4f} "
                  f"Chamfer {rep['chamfer']:.5f} lambda {rep['lambda']:.3g} ({rep['encode_s']:.0f} s)", flush=True)
            return data

        out = a.out if len(a.resolution) == 1 else a.out / f"r{r}"
        run_voxel_bench(refs, enc, vc.decode_voxels, a.sizes, out)
        print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
