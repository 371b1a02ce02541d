"""Decoding onto another grid: encode the 94 x 192 Gaussian-grid January 2 m temperature (single-fields/T2m.nc),
decode it onto the 1-degree grid of single-fields/T2m_1x1.nc (the same field, regridded by its publisher), and
compare with that file and with bilinear interpolation of the original 94 x 192 values (what a user would do
without a continuous representation). Writes results/fields/regrid.json and regrid.png.

    .venv/bin/python scripts/sphere_regrid.py [--bytes 3000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from mscncodec.modalities import sphere as smod
from mscncodec.modalities.sphere_codec import decode_field, encode_field

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "spherical" / "single-fields"
OUT = Path(__file__).resolve().parents[1] / "results" / "fields"


def bilinear(f: smod.SphereField, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Bilinear in (lat, lon) with the longitude wrapped and the poles held at the nearest row."""
    order = np.argsort(f.lat)
    la = f.lat[order].astype(np.float64)
    lo = np.concatenate([f.lon, [f.lon[0] + 360.0]]).astype(np.float64)
    v = f.values[order]
    v = np.concatenate([v, v[:, :1]], 1)
    interp = RegularGridInterpolator((la, lo), v, bounds_error=False, fill_value=None)
    g_la, g_lo = np.meshgrid(np.clip(lat, la[0], la[-1]), (lon - lo[0]) % 360.0 + lo[0], indexing="ij")
    return interp(np.stack([g_la, g_lo], -1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bytes", type=int, default=3000)
    args = ap.parse_args()
    src, ref = smod.load(DATA / "T2m.nc"), smod.load(DATA / "T2m_1x1.nc")
    t0 = time.perf_counter()
    data = encode_field(src, target_bytes=args.bytes)
    t1 = time.perf_counter()
    dec = decode_field(data, grid=str(DATA / "T2m_1x1.nc"))
    t2 = time.perf_counter()
    native = decode_field(data)
    lin = smod.SphereField(bilinear(src, ref.lat, ref.lon), ref.lat, ref.lon)
    res = {"source": "single-fields/T2m.nc (94 x 192 Gaussian)", "target_grid": "single-fields/T2m_1x1.nc (181 x 360)",
           "bytes": len(data), "encode_s": round(t1 - t0, 2), "decode_1deg_s": round(t2 - t1, 3),
           "mscn_on_its_grid_vs_source": smod.compare(src, native),
           "mscn_on_1deg_vs_T2m_1x1": smod.compare(ref, dec),
           "bilinear_of_source_on_1deg_vs_T2m_1x1": smod.compare(ref, lin)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "regrid.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.2))
    ext = [0, 360, -90, 90]
    o = np.argsort(src.lat)
    ax[0].imshow(src.values[o][::-1], extent=ext, aspect="auto", cmap="viridis")
    ax[0].set_title("T2m.nc, 94 x 192 (input)", fontsize=9)
    ax[1].imshow(dec.values[::-1], extent=ext, aspect="auto", cmap="viridis")
    ax[1].set_title(f"mscn {len(data)} B decoded on 181 x 360", fontsize=9)
    e = dec.values - ref.values
    lim = float(np.percentile(np.abs(e), 99))
    im = ax[2].imshow(e[::-1], extent=ext, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax[2].set_title(f"minus T2m_1x1.nc: RMSE {res['mscn_on_1deg_vs_T2m_1x1']['rmse']:.2f} K "
                    f"(bilinear of the input: {res['bilinear_of_source_on_1deg_vs_T2m_1x1']['rmse']:.2f} K)", fontsize=8)
    fig.colorbar(im, ax=ax[2], fraction=0.046)
    fig.tight_layout()
    fig.savefig(OUT / "regrid.png", dpi=100)


if __name__ == "__main__":
    main()
