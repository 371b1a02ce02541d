"""Voxelise every mesh of a folder into OUT_DIR/NAME_R.binvox (occupancy by the generalised winding number).

    python scripts/voxelise_meshes.py ../shared/data/meshes-test build/voxels --resolution 64

--list FILE takes the meshes to use from FILE (one path relative to SRC_DIR per line, first tab-separated
field; a MESHES.tsv works, its header line and blank or # lines are skipped); otherwise every mesh file
under SRC_DIR. --min-faces skips meshes with fewer faces. One line per mesh; a mesh that fails to load
is skipped with the reason.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mscncodec.errors import InputError
from mscncodec.modalities import mesh as mmod
from mscncodec.modalities import voxels as vmod


def mesh_files(src: Path, listing: Path | None) -> list[Path]:
    if listing is None:
        return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in mmod.EXTENSIONS)
    files = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        name = line.split("\t")[0].strip()
        if not name or name.startswith("#") or (name == "file" and "\t" in line):
            continue
        files.append(src / name)
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--pad", type=int, default=1, help="empty voxels on each side (default 1)")
    ap.add_argument("--min-faces", type=int, default=0)
    ap.add_argument("--list", type=Path, default=None)
    a = ap.parse_args()
    if not a.src.is_dir():
        print(f"error: {a.src} is not a directory", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    done = 0
    seen: set[str] = set()
    for path in mesh_files(a.src, a.list):
        name = path.stem
        if name in seen:
            print(f"skip {path}: a mesh named {name!r} was already written")
            continue
        try:
            m = mmod.load(path)
        except InputError as e:
            print(f"skip {path}: {e}")
            continue
        if len(m.faces) < a.min_faces:
            print(f"skip {path}: {len(m.faces)} faces < --min-faces {a.min_faces}")
            continue
        t0 = time.perf_counter()
        try:
            g = vmod.voxelise(m.vertices, m.faces, a.resolution, a.pad)
        except InputError as e:
            print(f"skip {path}: {e}")
            continue
        dst = a.out / f"{name}_{a.resolution}.binvox"
        dst.write_bytes(vmod.write_binvox(g))
        seen.add(name)
        done += 1
        print(f"{dst}  {len(m.faces)} faces  {int(g.occ.sum())} occupied  {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"{done} meshes voxelised at {a.resolution}^3 into {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
