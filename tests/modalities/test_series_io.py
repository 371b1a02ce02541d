"""Field series (time x lat x lon): loading netCDF (all steps, a slice, one step), the time coordinate kept
exactly, writing netCDF / .npy back, the metadata section, bad input, the metrics. Fixtures are small files
made here."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest

from mscncodec.errors import BitstreamError, InputError, MscnError
from mscncodec.modalities import sphere as smod
from mscncodec.modalities import sphere_grid as sgrid
from mscncodec.modalities.series import (
    MAX_SERIES_POINTS,
    SeriesField,
    compare_series,
    load_series,
    pack_series_meta,
    parse_time,
    series_from_fields,
    unpack_series_meta,
    write_series,
)

T, NLAT, NLON = 6, 16, 32
# monthly noleap days with an ulp off here and there, as files computed in float have them
TIMES = np.cumsum([15.5, 31, 28, 31, 30, 31]) + 1000.0 / 3
TIMES[2] = np.nextafter(TIMES[2], np.inf)


def _data() -> np.ndarray:
    lat, lon = sgrid.gaussian_latitudes(NLAT), sgrid.regular_longitudes(NLON, 0.0)
    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    return np.stack([250 + 40 * np.cos(la) + 5 * np.sin(2 * lo + t) for t in range(T)]).astype(np.float32)


def write_series_nc(path: Path, *, time_coord: bool = True, missing: bool = True, levels: int = 0) -> Path:
    with netCDF4.Dataset(str(path), "w") as ds:
        ds.createDimension("time", None)
        if levels:
            ds.createDimension("lev", levels)
        ds.createDimension("lat", NLAT)
        ds.createDimension("lon", NLON)
        if time_coord:
            t = ds.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.long_name = "days since 1850-01-01", "noleap", "time"
        la = ds.createVariable("lat", "f4", ("lat",))
        la[:], la.units, la.long_name = sgrid.gaussian_latitudes(NLAT), "degrees_north", "latitude"
        lo = ds.createVariable("lon", "f4", ("lon",))
        lo[:], lo.units = sgrid.regular_longitudes(NLON, 0.0), "degrees_east"
        dims = ("time",) + (("lev",) if levels else ()) + ("lat", "lon")
        v = ds.createVariable("TS", "f4", dims, fill_value=np.float32(1e36))
        v.units, v.long_name, v.cell_methods = "K", "surface temperature", "time: mean"
        data = np.ma.masked_array(_data(), np.zeros((T, NLAT, NLON), bool))
        if missing:
            data[1, 3, 4] = np.ma.masked
            data[4, 10, 20:22] = np.ma.masked
        if levels:
            data = np.ma.stack([data - 10 * k for k in range(levels)], 1)
        v[:] = data
        if time_coord:
            ds["time"][:] = TIMES
        c = ds.createVariable("CONST", "f4", ("lat", "lon"))  # a lat-lon variable without time
        c[:] = 1.0
    return path


@pytest.fixture(scope="module")
def nc(tmp_path_factory) -> Path:
    return write_series_nc(tmp_path_factory.mktemp("s") / "ts.nc")


def test_parse_time():
    assert parse_time("0:4", 6) == slice(0, 4) and parse_time("2:", 6) == slice(2, 6)
    assert parse_time(":3", 6) == slice(0, 3) and parse_time("5", 6) == 5 and parse_time(5, 6) == 5
    assert parse_time("all", 6) == slice(0, 6) and parse_time(None, 6) == slice(0, 6)
    for bad in ("0:7", "6", "3:3", "4:2", "a:b", "1:2:3", "-1:2", "x"):
        with pytest.raises(MscnError) as e:
            parse_time(bad, 6)
        assert "\n" not in str(e.value) and "time" in str(e.value)


def test_load_all_steps_keeps_time_values_attrs_and_missing(nc):
    f = load_series(nc, var="TS")
    assert f.shape == (T, NLAT, NLON) and f.name == "TS" and f.units == "K"
    assert f.attrs == {"long_name": "surface temperature", "cell_methods": "time: mean"}
    assert np.array_equal(f.time.view(np.int64), TIMES.view(np.int64))  # bit-exact
    assert f.time_name == "time" and f.time_attrs == {"units": "days since 1850-01-01", "calendar": "noleap",
                                                      "long_name": "time"}
    assert f.mask.sum() == 3 and f.mask[1, 3, 4] and f.mask[4, 10, 21]
    assert np.array_equal(f.lat, sgrid.gaussian_latitudes(NLAT)) and f.lat.dtype == np.float32
    assert load_series(nc).name == "TS"  # the only lat-lon variable with a time axis


def test_load_a_slice_and_one_step(nc):
    f = load_series(nc, var="TS", time="2:5")
    assert f.shape == (3, NLAT, NLON) and np.array_equal(f.time, TIMES[2:5])
    assert np.array_equal(f.values, load_series(nc, var="TS").values[2:5], equal_nan=True)
    one = load_series(nc, var="TS", time=4)
    assert one.shape == (1, NLAT, NLON) and one.time[0] == TIMES[4]
    g = one.field(0)
    assert isinstance(g, smod.SphereField) and g.name == "TS"
    assert np.array_equal(g.values, smod.load(nc, var="TS", time=4).values, equal_nan=True)


def test_no_time_coordinate_gives_step_indices(tmp_path):
    f = load_series(write_series_nc(tmp_path / "n.nc", time_coord=False), var="TS", time="1:4")
    assert np.array_equal(f.time, [1.0, 2.0, 3.0]) and f.time_attrs == {}


def test_level_picks_the_other_dimension(tmp_path):
    p = write_series_nc(tmp_path / "l.nc", levels=2, missing=False)
    a, b = load_series(p, var="TS"), load_series(p, var="TS", level=1)
    assert np.allclose(a.values - b.values, 10.0)
    with pytest.raises(InputError, match="level index 2"):
        load_series(p, var="TS", level=2)


def test_bad_input_gives_one_line_errors(nc, tmp_path):
    cases = [({"var": "CONST"}, InputError, "no time dimension"), ({"var": "TS", "time": "0:9"}, InputError, "range"),
             ({"var": "TS", "time": "3:1"}, MscnError, "empty"), ({"var": "TS", "time": "zz"}, MscnError, "--time"),
             ({"var": "nope"}, InputError, "no variable"), ({"var": "TS", "level": 0}, MscnError, "level")]
    for kw, err, words in cases:
        with pytest.raises(err) as e:
            load_series(nc, **kw)
        assert words in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="no such file"):
        load_series(tmp_path / "missing.nc")


def test_too_many_points_is_refused(monkeypatch, nc):
    import mscncodec.modalities.series as ser

    monkeypatch.setattr(ser, "MAX_SERIES_POINTS", 3 * NLAT * NLON)
    with pytest.raises(InputError, match="too large"):
        load_series(nc, var="TS")
    assert load_series(nc, var="TS", time="0:3").shape[0] == 3
    assert MAX_SERIES_POINTS == 1 << 28


def test_undeclared_fill_value_is_refused():
    v = _data().astype(np.float64)
    v[3, 0, 0] = 1e36
    with pytest.raises(InputError, match="time step 3"):
        series_from_fields([smod.SphereField(x, sgrid.gaussian_latitudes(NLAT), sgrid.regular_longitudes(NLON, 0.0))
                            for x in v])


def test_write_netcdf_round_trip_and_sphere_reads_a_step(nc, tmp_path):
    f = load_series(nc, var="TS")
    out = tmp_path / "o.nc"
    out.write_bytes(write_series(f, ".nc"))
    g = load_series(out)
    assert np.array_equal(g.values, f.values, equal_nan=True) and g.mask.sum() == 3
    assert np.array_equal(g.time.view(np.int64), f.time.view(np.int64))
    assert (g.time_attrs, g.attrs, g.units, g.lat_attrs, g.lon_attrs) == (f.time_attrs, f.attrs, f.units, f.lat_attrs,
                                                                         f.lon_attrs)
    with netCDF4.Dataset(str(out)) as ds:
        assert ds["time"].calendar == "noleap" and ds.dimensions["time"].isunlimited()
        assert "_FillValue" in ds["TS"].ncattrs()
    s = smod.load(out, var="TS", time=4)
    assert np.array_equal(s.values, f.values[4], equal_nan=True) and s.units == "K"


def test_write_npy_is_the_float32_array(nc, tmp_path):
    f = load_series(nc, var="TS")
    out = tmp_path / "o.npy"
    out.write_bytes(write_series(f, ".npy"))
    a = np.load(out)
    assert a.dtype == np.float32 and a.shape == f.shape and np.isnan(a).sum() == 3
    g = load_series(out, grid=None, time="1:3")  # a .npy series: regular grid, the steps as times
    assert g.shape == (2, NLAT, NLON) and np.array_equal(g.time, [1.0, 2.0])
    with pytest.raises(MscnError, match="cannot write"):
        write_series(f, ".grib")


@pytest.mark.parametrize("times", [TIMES, np.arange(5) * 365.0 + 7223.916666666667, np.array([3.5]),
                                   np.random.default_rng(0).normal(0, 1e6, 9), np.array([1.0, np.nan, -0.0])])
def test_meta_round_trip_is_bit_exact(nc, times):
    f = load_series(nc, var="TS")
    f.time = np.asarray(times, np.float64)
    m = unpack_series_meta(pack_series_meta(f))
    assert np.array_equal(m.pop("time").view(np.int64), f.time.view(np.int64))
    assert m == f.meta()
    g = SeriesField(np.resize(f.values, (len(times), NLAT, NLON)), f.lat, f.lon, time=times, **m)
    assert g.time_attrs["calendar"] == "noleap"  # the metadata rebuilds the series


def test_meta_is_small_and_corruption_is_a_bitstream_error(nc):
    blob = pack_series_meta(load_series(nc, var="TS"))
    assert len(blob) < 150
    for bad in (b"", blob[:-5], b"\x00" * 20, bytes(reversed(blob))):
        with pytest.raises(BitstreamError) as e:
            unpack_series_meta(bad)
        assert "\n" not in str(e.value)


def test_compare_series(nc):
    f = load_series(nc, var="TS")
    m = compare_series(f, f)
    assert m["rmse"] == 0 and m["max_abs"] == 0 and m["rmse_per_step"] == [0.0] * T and m["psnr"] > 200
    rec = f.values + 0.5
    m = compare_series(f, rec)
    assert np.isclose(m["rmse"], 0.5) and np.isclose(m["max_abs"], 0.5) and np.allclose(m["rmse_per_step"], 0.5)
    with pytest.raises(MscnError, match="masks differ"):
        compare_series(f, np.nan_to_num(f.values))


def test_series_from_fields_stacks_steps(nc):
    fs = [smod.load(nc, var="TS", time=k) for k in range(T)]
    s = series_from_fields(fs, time=TIMES, time_attrs={"units": "days since 1850-01-01"})
    assert np.array_equal(s.values, load_series(nc, var="TS").values, equal_nan=True)
    assert s.name == "TS" and s.time_attrs["units"].startswith("days")
