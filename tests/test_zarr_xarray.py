"""The mscn codec in zarr v3 through xarray: ``Dataset.to_zarr(..., encoding={"TS": {"compressors": [Mscn(...)]}})``
and ``xr.open_zarr`` on the first months of a real monthly surface temperature run, the chunk sizes and the
missing-value mask (edge chunks padded with NaN included), the configuration in the store's metadata
decoding in a fresh process, the serializer form, and a chunking the codec cannot code refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("zarr")

from mscncodec.errors import MscnError
from mscncodec.numcodecs import Mscn
from mscncodec.zarr_codec import MscnArray

# the first 5 steps of ../shared/data/spherical/ccsm-ts-monthly/b003_TS_200-299.nc, values unchanged: the tests run
# wherever the repository is cloned
TS = Path(__file__).resolve().parent / "fixtures/b003_TS_first5.nc"
FAST = {"effort": "fast", "steps": 10}
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # zarr: codecs outside the v3 specification


@pytest.fixture(scope="module")
def ds():
    with xr.open_dataset(TS, decode_times=False) as d:
        return d[["TS"]].isel(time=slice(0, 5)).load()


def chunk_files(store: Path, var: str) -> list[Path]:
    return sorted(p for p in (store / var / "c").rglob("*") if p.is_file())


def test_to_zarr_open_zarr_round_trip(ds, tmp_path):
    """4 months in chunks of 2: every chunk at or under its byte target, the values near the originals, the
    codec's configuration in zarr.json, and a fresh process decoding the store to the same values."""
    src = ds.isel(time=slice(0, 4))
    codec = Mscn.for_dataarray(src.TS, bytes=1500, **FAST)
    store = tmp_path / "ts.zarr"
    src.to_zarr(store, zarr_format=3, consolidated=False,
                encoding={"TS": {"compressors": [codec], "chunks": (2, 64, 128)}})
    meta = json.loads((store / "TS" / "zarr.json").read_text())
    stored = [c for c in meta["codecs"] if c["name"] == "mscn"]
    assert len(stored) == 1 and Mscn.from_config(stored[0]["configuration"]) == codec
    files = chunk_files(store, "TS")
    assert len(files) == 2 and all(f.stat().st_size <= 1500 for f in files)
    back = xr.open_zarr(store, decode_times=False, consolidated=False).load()
    assert back.TS.shape == src.TS.shape and back.TS.dtype == np.float32
    assert not np.isnan(back.TS.values).any()
    assert 0 < float(np.abs(back.TS - src.TS).mean()) < 15.0  # kelvin, 2 KB of a 64 KB chunk at the lowest effort
    assert np.array_equal(back.lat.values, src.lat.values) and np.array_equal(back.time.values, src.time.values)
    out = tmp_path / "fresh.npy"
    code = (f"import numpy as np, xarray as xr; d = xr.open_zarr({str(store)!r}, decode_times=False, "
            f"consolidated=False); np.save({str(out)!r}, d.TS.values)")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.array_equal(np.load(out), back.TS.values)


def test_missing_values_and_padded_edge_chunk(ds, tmp_path):
    """5 months with a polar mask, a scatter of missing points and one wholly missing month, in chunks of 2:
    the last chunk is padded with NaN by zarr. The mask comes back exactly."""
    src = ds.copy(deep=True)
    v = src.TS.values
    v[:, :6, :] = np.nan
    v[np.random.default_rng(1).random(v.shape) < 0.03] = np.nan
    v[1] = np.nan
    codec = Mscn.for_dataarray(src.TS, bytes=2000, **FAST)
    store = tmp_path / "masked.zarr"
    src.to_zarr(store, zarr_format=3, consolidated=False,
                encoding={"TS": {"compressors": [codec], "chunks": (2, 64, 128)}})
    assert len(chunk_files(store, "TS")) == 3 and all(f.stat().st_size <= 2000 for f in chunk_files(store, "TS"))
    back = xr.open_zarr(store, decode_times=False, consolidated=False).TS.values
    assert np.array_equal(np.isnan(back), np.isnan(v))
    ok = ~np.isnan(v)
    assert np.abs(back[ok] - v[ok]).mean() < 15.0


def test_serializer_form(ds, tmp_path):
    src = ds.isel(time=slice(0, 2))
    codec = MscnArray.of(Mscn.for_dataarray(src.TS, bytes=1200, **FAST))
    store = tmp_path / "ser.zarr"
    src.to_zarr(store, zarr_format=3, consolidated=False,
                encoding={"TS": {"serializer": codec, "compressors": None, "chunks": (2, 64, 128)}})
    meta = json.loads((store / "TS" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]] == ["mscn_array"]
    assert MscnArray.from_dict(meta["codecs"][0]) == codec
    back = xr.open_zarr(store, decode_times=False, consolidated=False).TS.values
    direct = codec.codec.decode(chunk_files(store, "TS")[0].read_bytes())
    assert np.array_equal(back, direct) and chunk_files(store, "TS")[0].stat().st_size <= 1200


def test_chunks_that_split_the_grid_are_refused(ds, tmp_path):
    codec = Mscn.for_dataarray(ds.TS, bytes=1500, **FAST)
    with pytest.raises(MscnError, match="chunks ending in the whole grid") as e:
        ds.to_zarr(tmp_path / "bad.zarr", zarr_format=3, consolidated=False,
                   encoding={"TS": {"compressors": [codec], "chunks": (2, 32, 128)}})
    assert "\n" not in str(e.value)


def test_a_zarr_v2_store_is_refused_before_any_chunk(ds, tmp_path):
    """zarr would write the codec's v3 form into a v2 array's .zarray, which nothing reads back: refused in one
    line before a chunk is encoded, not a store that fails only when it is read."""
    src = ds.isel(time=slice(0, 2))
    codec = Mscn.for_dataarray(src.TS, bytes=1500, **FAST)
    with pytest.raises(MscnError, match="zarr v3 array"):
        src.to_zarr(tmp_path / "v2.zarr", zarr_format=2, consolidated=False,
                    encoding={"TS": {"compressors": [codec], "chunks": (1, 64, 128)}})
    assert not list((tmp_path / "v2.zarr").rglob("TS/0*"))  # no chunk written
