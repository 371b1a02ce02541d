"""Decoder cost per output sample (docs/decoder-cost.md), one torch thread: CPU seconds of a warm decode and the
peak RSS growth of the first decode in a fresh process (model load included).

    .venv/bin/python experiments/2026-12-07-decoder-cost/measure.py results/decoder-cost/measure.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
CASES = {}


def case(key):
    def reg(fn):
        CASES[key] = fn
        return fn
    return reg


@case("image-siren")
def _image_siren():
    import mscncodec
    from conftest import synthetic_image

    d = mscncodec.encode(synthetic_image(256, 256, seed=3), arch="siren", effort="fast", bpp=0.3)
    return "image siren 256x256", 256 * 256, len(d), lambda: mscncodec.decode(d)


@case("image-grid2")
def _image_grid2():
    import mscncodec
    from conftest import synthetic_image

    d = mscncodec.encode(synthetic_image(256, 256, seed=3), arch="grid2", effort="fast", bpp=0.3)
    return "image grid2 256x256", 256 * 256, len(d), lambda: mscncodec.decode(d)


@case("mesh-siren")
def _mesh_siren():
    import mscncodec

    d = (REPO / "tests/fixtures/golden/mesh-shape-3000B.mscn").read_bytes()
    return "mesh siren sdf-w32+dense 128^3 (default)", 128**3, len(d), lambda: mscncodec.decode(d)


def _grid3_mesh() -> bytes:
    import numpy as np
    import trimesh

    from mscncodec.modalities import mesh as mmod
    from mscncodec.modalities.mesh_codec import encode_mesh

    tm = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    m = mmod.Mesh(np.asarray(tm.vertices), np.asarray(tm.faces, np.int64))
    return encode_mesh(m, target_bytes=3000, model="grid3-sdf", effort="fast", steps=10)


@case("mesh-grid3")
def _mesh_grid3():
    import mscncodec

    d = _grid3_mesh()
    return "mesh grid3-sdf 128^3 (default)", 128**3, len(d), lambda: mscncodec.decode(d)


@case("mesh-grid3-256")
def _mesh_grid3_256():
    import mscncodec

    d = _grid3_mesh()
    return "mesh grid3-sdf 256^3 (explicit)", 256**3, len(d), lambda: mscncodec.decode(d, resolution=256)


@case("field-w32")
def _field_w32():
    import mscncodec

    d = (REPO / "tests/fixtures/golden/field-1500B.mscn").read_bytes()
    return "field sphere-w32+dense onto 0.5 deg", 361 * 720, len(d), lambda: mscncodec.decode(d, grid="0.5")


@case("field-w32-0.25")
def _field_w32_q():
    import mscncodec

    d = (REPO / "tests/fixtures/golden/field-1500B.mscn").read_bytes()
    return "field sphere-w32+dense onto 0.25 deg", 721 * 1440, len(d), lambda: mscncodec.decode(d, grid="0.25")


@case("field-w64")
def _field_w64():
    import mscncodec
    from mscncodec.modalities import sphere as smod
    from mscncodec.modalities.sphere_codec import encode_field

    d = encode_field(smod.load(str(REPO / "examples/field.nc")), target_bytes=7000, model="sphere-w64+dense",
                     effort="fast", steps=3)
    return "field sphere-w64+dense onto 0.5 deg", 361 * 720, len(d), lambda: mscncodec.decode(d, grid="0.5")


@case("series")
def _series():
    import numpy as np

    import mscncodec
    from mscncodec.modalities import series as ser
    from mscncodec.modalities import sphere_grid as sgrid
    from mscncodec.modalities.series_codec import encode_series

    lat, lon = sgrid.gaussian_latitudes(64), sgrid.regular_longitudes(128, 0.0)
    v = (250 + 30 * np.cos(np.radians(lat))[None, :, None] + np.sin(np.radians(lon))[None, None, :]
         + np.arange(64.0)[:, None, None])
    d = encode_series(ser.SeriesField(v, lat, lon, name="T", units="K"), target_bytes=3000, model="grid3-series",
                      effort="fast", steps=10)
    return "series grid3-series 64x64x128", 64 * 64 * 128, len(d), lambda: mscncodec.decode(d)


@case("voxels")
def _voxels():
    import numpy as np

    import mscncodec
    from mscncodec.modalities import voxels as vox
    from mscncodec.modalities.voxels_codec import encode_voxels

    x, y, z = np.ogrid[:32, :32, :32]
    occ = (x - 15.5) ** 2 + (y - 15.5) ** 2 + (z - 15.5) ** 2 <= 100
    d = encode_voxels(vox.VoxelGrid(occ), target_bytes=600, model="grid3-occ", effort="fast", steps=10)
    return "voxels grid3-occ 128^3 (explicit)", 128**3, len(d), lambda: mscncodec.decode(d, resolution=128)


@case("voxels-64")
def _voxels_64():
    import mscncodec

    import numpy as np

    from mscncodec.modalities import voxels as vox
    from mscncodec.modalities.voxels_codec import encode_voxels

    x, y, z = np.ogrid[:32, :32, :32]
    occ = (x - 15.5) ** 2 + (y - 15.5) ** 2 + (z - 15.5) ** 2 <= 100
    d = encode_voxels(vox.VoxelGrid(occ), target_bytes=600, model="grid3-occ", effort="fast", steps=10)
    return "voxels grid3-occ 64^3 (explicit)", 64**3, len(d), lambda: mscncodec.decode(d, resolution=64)


@case("gaussian")
def _gaussian():
    from mscncodec.modalities import sphere_grid as sgrid

    return "sphere_grid.gaussian_latitudes(8192)", 8192, 0, lambda: sgrid.gaussian_latitudes(8192)


@case("leggauss")
def _leggauss():
    import numpy as np

    return "numpy leggauss(1024), the old way (8192: 52 s)", 1024, 0, lambda: np.polynomial.legendre.leggauss(1024)


def one(key: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from fuzzing import _reset_peak_rss, _status_kb

    name, samples, nbytes, fn = CASES[key]()
    rss0 = _reset_peak_rss()
    c = time.process_time()
    fn()
    cold = time.process_time() - c
    growth = _status_kb("VmHWM") * 1024 - rss0
    c, w = time.process_time(), time.perf_counter()
    fn()
    cpu, wall = time.process_time() - c, time.perf_counter() - w
    return {"case": name, "samples": samples, "bytes": nbytes, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "cold_cpu_s": round(cold, 3), "us_per_sample_cpu": round(cpu / samples * 1e6, 3),
            "peak_rss_growth_mb": round(growth / 2**20, 1), "rss_bytes_per_sample": round(growth / samples, 1)}


def main() -> None:
    if len(sys.argv) > 2:
        print(json.dumps(one(sys.argv[2])))
        return
    rows = []
    env = dict(os.environ, MSCN_THREADS="1", OMP_NUM_THREADS="1")
    for key in CASES:
        p = subprocess.run([sys.executable, __file__, sys.argv[1], key], capture_output=True, text=True, env=env,
                           cwd=REPO)
        line = [s for s in p.stdout.splitlines() if s.startswith("{")]
        rows.append(json.loads(line[-1]) if line else {"case": key, "error": p.stderr[-800:]})
        print(json.dumps(rows[-1]), flush=True)
    Path(sys.argv[1]).write_text(json.dumps({
        "note": "one torch thread on the shared 2-core development CPU (other jobs running: times err slow); cpu_s: "
                "a second (warm) decode; peak_rss_growth_mb: the first decode in a fresh process, model load included",
        "load_avg_at_end": os.getloadavg(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
