"""Make examples/field.nc: a procedural global "2 m temperature" on a T42 Gaussian grid (64 x 128), so the
demo has a field that no dataset and no model here was made from: a zonal profile, two warm "continents"
and a cold plateau, in kelvin, with CF-style attributes.

    .venv/bin/python examples/make_field.py
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np

from mscncodec.modalities.sphere import gaussian_latitudes, regular_longitudes


def field(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    t = 245.0 + 55.0 * np.cos(la) ** 1.5 - 8.0 * np.sin(la)

    def blob(lat0: float, lon0: float, width: float, amp: float) -> np.ndarray:
        c = np.sin(la) * np.sin(np.radians(lat0)) + np.cos(la) * np.cos(np.radians(lat0)) * np.cos(lo - np.radians(lon0))
        return amp * np.exp((c - 1.0) / width**2)

    return t + blob(20, 20, 0.35, 6.0) + blob(40, 260, 0.3, 4.0) - blob(33, 88, 0.15, 14.0)


def main() -> None:
    lat, lon = gaussian_latitudes(64), regular_longitudes(128, 0.0)
    out = Path(__file__).resolve().parent / "field.nc"
    with netCDF4.Dataset(str(out), "w", format="NETCDF4") as ds:
        ds.title = "procedural test field for the mscn demo"
        ds.createDimension("lat", len(lat))
        ds.createDimension("lon", len(lon))
        v = ds.createVariable("lat", "f4", ("lat",))
        v[:], v.units, v.long_name = lat, "degrees_north", "latitude"
        v = ds.createVariable("lon", "f4", ("lon",))
        v[:], v.units, v.long_name = lon, "degrees_east", "longitude"
        v = ds.createVariable("T2m", "f4", ("lat", "lon"), zlib=True)
        v[:] = field(lat, lon).astype(np.float32)
        v.units, v.long_name = "K", "2 m air temperature (procedural)"
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
