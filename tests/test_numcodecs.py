"""The numcodecs codec ``mscncodec.numcodecs.Mscn``: byte and error targets on real chunks of a monthly surface
temperature run (2-D and time x lat x lon), the missing-value mask kept exactly, all-missing steps, the
configuration round trip, the entry point in a fresh process and the one-line refusals of bad parameters."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

numcodecs = pytest.importorskip("numcodecs")
xr = pytest.importorskip("xarray")

from mscncodec.errors import MscnError
from mscncodec.modalities import series as ser
from mscncodec.numcodecs import Mscn
from mscncodec.targets import TargetError

# the first 5 steps of ../shared/data/spherical/ccsm-ts-monthly/b003_TS_200-299.nc, values unchanged: the tests run
# wherever the repository is cloned
TS = Path(__file__).resolve().parent / "fixtures/b003_TS_first5.nc"
FAST = {"effort": "fast", "steps": 10}


@pytest.fixture(scope="module")
def ts():
    """The first 4 months of TS (time x 64 Gaussian latitudes x 128 longitudes, float32)."""
    with xr.open_dataset(TS, decode_times=False) as ds:
        return ds.TS.isel(time=slice(0, 4)).load()


def masked(values: np.ndarray) -> np.ndarray:
    """A copy with missing values: the polar caps and a scatter of points (a sea-ice or land mask's kind)."""
    v = values.copy()
    v[..., :6, :] = np.nan
    rng = np.random.default_rng(0)
    v[rng.random(v.shape) < 0.05] = np.nan
    return v


def errors(codec: Mscn, ref: np.ndarray, rec: np.ndarray) -> dict:
    """series.compare_series on (k, nlat, nlon) arrays on the codec's grid."""
    ref3, rec3 = ref.reshape(-1, codec.nlat, codec.nlon), rec.reshape(-1, codec.nlat, codec.nlon)
    ref_series = ser.SeriesField(ref3.astype(np.float64), codec._lats, codec._lons)
    return ser.compare_series(ref_series, rec3.astype(np.float64))


def test_for_dataarray_reads_the_grid(ts):
    c = Mscn.for_dataarray(ts, bytes=1000, **FAST)
    assert (c.nlat, c.nlon, c.lat, c.dtype, c.lon_first) == (64, 128, "gaussian", "<f4", 0.0)
    assert np.allclose(c._lats, ts.lat.values, atol=1e-4) and np.allclose(c._lons, ts.lon.values)
    cfg = c.get_config()
    assert cfg["id"] == "mscn" and numcodecs.get_codec(dict(cfg)) == c
    assert Mscn.from_config({k: v for k, v in cfg.items() if k != "id"}) == c


def test_2d_chunk_bytes_target_keeps_the_mask(ts):
    c = Mscn.for_dataarray(ts, bytes=1200, **FAST)
    v = masked(ts.values[0])
    data = c.encode(v)
    assert len(data) <= 1200
    assert data == c.encode(v)  # deterministic
    rec = c.decode(data)
    assert rec.shape == (64, 128) and rec.dtype == np.float32
    assert np.array_equal(np.isnan(rec), np.isnan(v))
    e = errors(c, v, rec)
    assert 0 < e["rmse"] < 5.0  # kelvin: a field spanning ~100 K, coded in 1.2 KB of its 32 KB
    out = np.empty((1, 64, 128), np.float32)  # zarr's shape for the chunk: a leading length-1 axis
    c.decode(data, out=out)
    assert np.array_equal(out[0], rec, equal_nan=True)


def test_3d_chunk_from_bytes_with_an_all_missing_step(ts):
    """A time x lat x lon chunk given as raw bytes (a compressor's view), one step wholly missing (zarr's edge
    padding): the steps are found from the size, the missing step comes back missing, the others decoded."""
    c = Mscn.for_dataarray(ts, bytes=1500, **FAST)
    v = masked(ts.values[:3])
    v[1] = np.nan
    data = c.encode(v.tobytes())
    assert len(data) <= 1500
    rec = c.decode(data)
    assert rec.shape == (3, 64, 128)
    assert np.array_equal(np.isnan(rec), np.isnan(v)) and np.isnan(rec[1]).all()
    e = errors(c, v[[0, 2]], rec[[0, 2]])
    assert 0 < e["rmse"] < 30.0  # the 3-D route at its floor of effort: sane, not good
    flat = np.empty(v.size, np.float32)
    c.decode(data, out=flat)
    assert np.array_equal(flat.reshape(v.shape), rec, equal_nan=True)


def test_constant_and_all_missing_chunks_are_exact(ts):
    c = Mscn.for_dataarray(ts, bytes=1000, **FAST)
    nan = np.full((2, 64, 128), np.nan, np.float32)
    data = c.encode(nan)
    assert len(data) < 64 and np.isnan(c.decode(data)).all()
    const = np.full((2, 64, 128), 271.5, np.float32)
    assert np.array_equal(c.decode(c.encode(const)), const)


def test_rmse_target_met_on_the_decoded_chunk(ts):
    c = Mscn.for_dataarray(ts, rmse=12.0, tries=3, **FAST)
    v = masked(ts.values[:2])
    data = c.encode(v)
    rec = c.decode(data)
    assert np.array_equal(np.isnan(rec), np.isnan(v))
    assert errors(c, v, rec)["rmse"] <= 12.0
    assert len(data) < v.nbytes / 4  # the search stays under its ceiling (a quarter of the float32 size)


def test_max_abs_target_refused_names_the_best_value(ts):
    c = Mscn.for_dataarray(ts, max_abs=1e-4, tries=2, **FAST)
    with pytest.raises(TargetError) as e:
        c.encode(ts.values[:2])
    msg = str(e.value)
    assert "\n" not in msg
    m = re.search(r"0.0001 not reachable: the best reached is ([0-9.e+-]+) at ([0-9,]+) bytes", msg)
    assert m and float(m.group(1)) > 1e-4


def test_entry_point_in_a_fresh_process():
    code = ("import numcodecs; c = numcodecs.get_codec({'id': 'mscn', 'rmse': 0.5, 'nlat': 94, 'nlon': 192, "
            "'lat': 'gaussian'}); print(type(c).__module__, type(c).__name__, c.rmse, c.nlat)")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["mscncodec.numcodecs", "Mscn", "0.5", "94"]


@pytest.mark.parametrize("params, words", [
    ({}, "exactly one target"),
    ({"bytes": 1000, "rmse": 1.0}, "exactly one target"),
    ({"bytes": -5}, "bytes must be a positive"),
    ({"rmse": float("nan")}, "rmse must be a positive"),
    ({"max_abs": 0}, "max_abs must be a positive"),
    ({"bytes": 1000, "lat": "spectral"}, "lat must be one of"),
    ({"bytes": 1000, "dtype": "<i2"}, "dtype must be one of"),
    ({"bytes": 1000, "effort": "ludicrous"}, "effort must be one of"),
    ({"bytes": 1000, "lat_first": 30.0, "lat_last": 60.0}, "not a global field"),
])
def test_bad_parameters_are_one_line_errors(params, words):
    with pytest.raises(MscnError, match=words) as e:
        Mscn(nlat=64, nlon=128, **params)
    assert "\n" not in str(e.value)


def test_bad_chunks_and_streams_are_one_line_errors(ts):
    c = Mscn.for_dataarray(ts, bytes=1000, **FAST)
    with pytest.raises(MscnError, match="not whole 64 x 128 fields"):
        c.encode(np.zeros(64 * 100, np.float32))
    with pytest.raises(MscnError, match="not an mscn chunk"):
        c.decode(b"\x00" * 40)
    nan = c.encode(np.full((2, 64, 128), np.nan, np.float32))
    with pytest.raises(MscnError, match="corrupted mscn chunk"):  # claims 10^9 steps: refused before allocating
        c.decode(nan[:3] + struct.pack("<I", 10**9) + nan[7:])
    with pytest.raises(MscnError, match="corrupted mscn chunk"):
        c.decode(nan + b"\x00")
    with pytest.raises(MscnError, match="too small"):
        Mscn.for_dataarray(ts, bytes=30, **FAST).encode(ts.values[:2])
    regional = ts.isel(lat=slice(20, 40))
    with pytest.raises(MscnError, match="not a global field"):
        Mscn.for_dataarray(regional, bytes=1000)
    with pytest.raises(MscnError, match="not \\(lat, lon\\)"):
        Mscn.for_dataarray(ts.transpose("time", "lon", "lat"), bytes=1000)
