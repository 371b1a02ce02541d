"""Global fields on the sphere: loading netCDF / .npy, the grid kept exactly, the missing-value bitmap,
the codec round trip (values, units, attributes, coordinates, mask), decoding onto another grid, bad
input, the header, `mscn info`, the trainer and the fields bench. Fixtures are small fields made here."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mscncodec.api import decode, encode, stream_modality
from mscncodec.cli import main
from mscncodec.coding.bitmap import decode_bitmap, encode_bitmap
from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError, InputError, LimitError, MscnError, RateError
from mscncodec.modalities import for_input
from mscncodec.modalities import sphere as smod
from mscncodec.modalities import sphere_grid as sgrid
from mscncodec.modalities.sphere_codec import decode_field, encode_field

PROVISIONAL = "random-sphere-w32d5+dense"  # a plain SIREN init: the tests do not depend on a trained model


def _values(lat: np.ndarray, lon: np.ndarray, t: int = 0) -> np.ndarray:
    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    return 250.0 + 40.0 * np.cos(la) + 5.0 * np.sin(2 * lo + t) * np.cos(la) ** 2


def write_nc(path: Path, *, nlat: int = 16, nlon: int = 32, gaussian: bool = True, times: int = 2, levels: int = 0,
             missing: bool = False, lat_range: tuple[float, float] | None = None, north_first: bool = False) -> Path:
    """A small global netCDF field: T(time[, lev], lat, lon) in K, Gaussian or regular latitudes."""
    if lat_range is not None:
        lat = sgrid.regular_latitudes(nlat, *lat_range)
    else:
        lat = sgrid.gaussian_latitudes(nlat, north_first) if gaussian else sgrid.regular_latitudes(nlat, -90, 90)
    lon = sgrid.regular_longitudes(nlon, 0.0)
    with netCDF4.Dataset(str(path), "w") as ds:
        ds.createDimension("time", times)
        if levels:
            ds.createDimension("lev", levels)
        ds.createDimension("lat", nlat)
        ds.createDimension("lon", nlon)
        la = ds.createVariable("lat", "f4", ("lat",))
        la[:] = lat
        la.units, la.long_name = "degrees_north", "latitude"
        lo = ds.createVariable("lon", "f4", ("lon",))
        lo[:] = lon
        lo.units = "degrees_east"
        dims = ("time",) + (("lev",) if levels else ()) + ("lat", "lon")
        v = ds.createVariable("T", "f4", dims, fill_value=np.float32(1e36))
        v.units, v.long_name, v.cell_methods = "K", "air temperature", "time: mean"
        data = np.stack([_values(lat, lon, t) for t in range(times)])
        if levels:
            data = np.stack([data - 5 * k for k in range(levels)], 1)
        if missing:
            m = np.zeros((nlat, nlon), bool)
            m[nlat // 3: nlat // 2, nlon // 4: nlon // 2] = True  # a "continent"
            data = np.ma.masked_array(data, np.broadcast_to(m, data.shape))
        v[:] = data
        other = ds.createVariable("gw", "f4", ("lat",))
        other[:] = np.cos(np.radians(lat))
    return path


@pytest.fixture(scope="module")
def nc_file(tmp_path_factory) -> Path:
    return write_nc(tmp_path_factory.mktemp("f") / "t.nc", missing=True)


@pytest.fixture(scope="module")
def stream(nc_file) -> bytes:
    torch.set_num_threads(1)
    return encode_field(nc_file, target_bytes=1500, model=PROVISIONAL, effort="fast", steps=300, time=1)


# ---------------------------------------------------------------- grids, bitmap, modality

def test_gaussian_latitudes_match_a_climate_model_file():
    lat = sgrid.gaussian_latitudes(64)
    assert np.isclose(lat[0], -87.8638, atol=1e-4) and np.allclose(lat, -lat[::-1])
    assert sgrid.lat_kind(lat) == 1 and sgrid.lat_kind(sgrid.regular_latitudes(181, -90, 90)) == 0


def test_coordinate_corrections_restore_any_float32_latitudes_exactly():
    exact = sgrid.gaussian_latitudes(40)
    exact[[3, 17]] = np.nextafter(exact[[3, 17]], np.float32(100))  # a file rounded differently
    formula = sgrid.latitudes(1, 40, float(exact[0]), float(exact[-1]))
    c = sgrid.corrections(exact, formula)
    assert c and np.array_equal(sgrid.apply_corrections(formula, c), exact)
    assert sgrid.corrections(formula, formula) == b""


@pytest.mark.parametrize("shape", [(1, 5), (7, 13), (64, 128)])
def test_bitmap_round_trip(shape):
    rng = np.random.default_rng(0)
    for b in (rng.random(shape) < 0.3, np.zeros(shape, bool), np.ones(shape, bool),
              np.add.outer(np.arange(shape[0]), np.arange(shape[1])) % 5 == 0):
        assert np.array_equal(decode_bitmap(encode_bitmap(b), shape), b)


def test_bitmap_of_a_coherent_region_is_small():
    m = np.zeros((181, 360), bool)
    m[40:90, 100:200] = True
    assert len(encode_bitmap(m)) < 200  # 65160 bits


def test_load_keeps_grid_units_attributes_and_missing_values(nc_file):
    f = smod.load(nc_file, time=1)
    assert f.shape == (16, 32) and f.name == "T" and f.units == "K"
    assert f.attrs["long_name"] == "air temperature" and "_FillValue" not in f.attrs
    assert np.array_equal(f.lat, sgrid.gaussian_latitudes(16))
    assert f.mask.sum() == (16 // 2 - 16 // 3) * (32 // 2 - 32 // 4)
    assert for_input(nc_file).name == "sphere"


def test_area_weights_follow_cos_latitude():
    lat = sgrid.regular_latitudes(181, -90, 90)
    w = sgrid.area_weights(lat, 4)
    assert np.isclose(w.mean(), 1.0) and w[0, 0] < 1e-12 and np.isclose(w[90, 0] / w[150, 0], 1 / np.cos(np.radians(60)))


# ---------------------------------------------------------------- codec round trip

def test_round_trip_values_units_coordinates_and_mask(nc_file, stream):
    assert len(stream) <= 1500 and stream_modality(stream).name == "sphere"
    ref = smod.load(nc_file, time=1)
    rec = decode(stream)
    assert rec.name == "T" and rec.units == "K" and rec.attrs["long_name"] == "air temperature"
    assert np.array_equal(rec.lat, ref.lat) and np.array_equal(rec.lon, ref.lon)
    assert np.array_equal(rec.mask, ref.mask)
    m = smod.compare(ref, rec)
    assert m["rmse"] < 0.2 * np.nanstd(ref.values)  # a real fit (a plain init is noise), coarse at 1.5 KB


def test_netcdf_output_carries_everything(tmp_path, nc_file, stream):
    out = tmp_path / "o.nc"
    r = CliRunner().invoke(main, ["decode", _write(tmp_path, stream), "-o",
                                  str(out), "-v"])
    assert r.exit_code == 0, r.output
    with netCDF4.Dataset(str(out)) as ds:
        v = ds.variables["T"]
        assert v.units == "K" and v.long_name == "air temperature" and v.dimensions == ("time", "lat", "lon")
        assert ds.variables["lat"].units == "degrees_north"
        assert np.array_equal(ds.variables["lat"][:], sgrid.gaussian_latitudes(16))
        assert np.ma.count_masked(v[:]) == smod.load(nc_file).mask.sum()
    assert "T [K] on 16x32 points" in r.output


def _write(tmp_path: Path, data: bytes) -> str:
    p = tmp_path / "s.mscn"
    p.write_bytes(data)
    return str(p)


def test_decode_onto_another_grid_agrees_where_the_grids_meet(tmp_path):
    src = write_nc(tmp_path / "r.nc", nlat=19, nlon=36, gaussian=False, times=1)  # 10 degrees, poles included
    data = encode_field(src, target_bytes=1200, model=PROVISIONAL, effort="fast", steps=30)
    native = decode_field(data)
    fine = decode_field(data, grid="5")  # 37 x 72: every second point is a native one
    assert fine.shape == (37, 72)
    assert np.allclose(fine.values[::2, ::2], native.values, atol=1e-4)
    g = decode_field(data, grid="gaussian:8")
    assert g.shape == (8, 16) and np.all(np.isfinite(g.values))


def test_decode_grid_from_a_netcdf_file_and_mask_follows(tmp_path, stream):
    target = write_nc(tmp_path / "g.nc", nlat=32, nlon=64, gaussian=True, times=1)
    f = decode_field(stream, grid=str(target))
    assert f.shape == (32, 64) and 0 < f.mask.sum() < f.mask.size


def test_decode_limit_is_checked_before_work(stream):
    with pytest.raises(LimitError):
        decode(stream, grid="0.1", max_pixels=1000)


def test_npy_input_with_its_grid(tmp_path):
    lat, lon = sgrid.regular_latitudes(13, -90, 90), sgrid.regular_longitudes(24, 0)
    p = tmp_path / "f.npy"
    np.save(p, _values(lat, lon))
    data = encode(p, target_bytes=1000, model=PROVISIONAL, effort="fast", steps=20)
    rec = decode(data)
    assert rec.shape == (13, 24) and np.array_equal(rec.lat, lat)
    gp = tmp_path / "fg.npy"
    np.save(gp, _values(sgrid.gaussian_latitudes(12), sgrid.regular_longitudes(24, 0)))
    g = decode(encode(gp, target_bytes=1000, model=PROVISIONAL, effort="fast", steps=5, grid="gaussian"))
    assert np.array_equal(g.lat, sgrid.gaussian_latitudes(12))


def test_levels_and_time_select_the_field(tmp_path):
    p = write_nc(tmp_path / "lv.nc", levels=3, times=2)
    a = smod.load(p, time=1, level=2)
    assert np.allclose(a.values, _values(a.lat, a.lon, 1) - 10, atol=1e-3)


def test_north_first_latitudes_are_kept(tmp_path):
    p = write_nc(tmp_path / "n.nc", north_first=True, times=1)
    f = decode(encode(p, target_bytes=1000, model=PROVISIONAL, effort="fast", steps=5))
    assert f.lat[0] > 0 and np.array_equal(f.lat, sgrid.gaussian_latitudes(16, north_first=True))


def test_same_input_gives_the_same_bytes(nc_file, stream):
    assert encode_field(nc_file, target_bytes=1500, model=PROVISIONAL, effort="fast", steps=300, time=1) == stream


def test_target_below_the_metadata_is_a_rate_error(nc_file):
    with pytest.raises(RateError, match="below this codec's minimum"):
        encode_field(nc_file, target_bytes=150, model=PROVISIONAL, effort="fast", steps=1, time=0)  # one field (issue 29: a file's every step is a series)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs,match", [
    ({"var": "Q"}, "no variable 'Q'"),
    ({"time": 5}, "time index 5 is out of range"),
    ({"level": 1}, "no level dimension"),
])
def test_bad_selection(nc_file, kwargs, match):
    with pytest.raises(MscnError, match=match):
        smod.load(nc_file, **kwargs)


def test_non_global_and_non_latlon_inputs_are_refused(tmp_path):
    with pytest.raises(InputError, match="not a global field"):
        smod.load(write_nc(tmp_path / "reg.nc", lat_range=(30, 60), gaussian=False))
    p = tmp_path / "xy.nc"
    with netCDF4.Dataset(str(p), "w") as ds:
        ds.createDimension("x", 4)
        ds.createDimension("y", 5)
        ds.createVariable("a", "f4", ("y", "x"))[:] = np.ones((5, 4))
    with pytest.raises(InputError, match="lat-lon"):
        smod.load(p)
    lat = sgrid.regular_latitudes(10, -90, 90)
    with pytest.raises(InputError, match="around the whole circle"):
        smod.validate(smod.SphereField(np.ones((10, 20)), lat, np.linspace(0, 180, 20, dtype=np.float32)))


def test_absurd_sizes_and_broken_files_are_refused(tmp_path):
    big = tmp_path / "big.npy"
    np.save(big, np.zeros((2, 20000), np.float32))
    with pytest.raises(InputError, match="too large"):
        smod.load(big)
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not netcdf at all")
    with pytest.raises(InputError, match="not a netCDF file"):
        smod.load(bad)
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((5, 8), np.nan))
    with pytest.raises(InputError, match="every value"):
        smod.load(nan)
    three = tmp_path / "3d.npy"
    np.save(three, np.zeros((2, 5, 8)))
    with pytest.raises(InputError, match="2-D"):
        smod.load(three)


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, nc_file):
    out = tmp_path / "x.mscn"
    r = CliRunner().invoke(main, ["encode", str(nc_file), "-o", str(out), "--var", "nope", "--bytes", "2000"])
    assert r.exit_code != 0 and not out.exists()
    assert r.output.strip().count("\n") == 0 and "no variable 'nope'" in r.output
    r = CliRunner().invoke(main, ["encode", str(nc_file), "-o", str(out), "--bpp", "0.3"])
    assert r.exit_code != 0 and "does not apply to a sphere" in r.output


def test_header_checks(stream):
    header, sections = bitstream.unpack(stream)
    assert header["nlat"] == 16 and header["lat_kind"] == 1 and header["vmin"] <= header["vmax"]
    for field, value, match in (("vmax", header["vmin"] - 1.0, "empty"), ("lat_first", 91.0, "angle"),
                                ("nlon", 2, "out of range")):
        with pytest.raises(BitstreamError, match=match):
            bitstream.pack(dict(header, **{field: value}), list(sections.items()))


def test_cli_round_trip_and_info(tmp_path, nc_file):
    s = tmp_path / "a.mscn"
    r = CliRunner().invoke(main, ["encode", str(nc_file), "-o", str(s), "--bytes", "1200", "--time", "0",
                                  "--effort", "fast", "--steps", "10", "--model", PROVISIONAL])
    assert r.exit_code == 0, r.output
    assert "area-weighted RMSE" in r.output and "K" in r.output
    r = CliRunner().invoke(main, ["info", str(s)])
    assert r.exit_code == 0 and "lat_kind" in r.output and "gaussian" in r.output and "T [K]" in r.output
    r = CliRunner().invoke(main, ["decode", str(s), "-o", str(tmp_path / "a.npy"), "--grid", "10"])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "a.npy").shape == (19, 36)


# ---------------------------------------------------------------- trainer and bench

def test_train_sphere_writes_a_model_and_card(tmp_path):
    root = tmp_path / "data"
    (root / "runs").mkdir(parents=True)
    write_nc(root / "runs" / "a.nc", times=3)
    write_nc(root / "runs" / "b.nc", times=2)
    out = tmp_path / "models" / "sph"
    r = CliRunner().invoke(main, ["train", "sphere", "--data", str(root), "--out", str(out), "--train", "runs/a.nc",
                                  "--val", "runs/b.nc", "--steps", "2", "--batch", "2", "--points", "64",
                                  "--val-every", "1", "--threads", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    card = out.with_suffix(".md").read_text()
    assert "runs/b.nc" in card and "val RMSE" in card
    from mscncodec.families.siren.model import Model

    m = Model.from_state(torch.load(out.with_suffix(".pt"), weights_only=False))
    assert m.modality == "sphere" and m.meta["fields"] == 3
    (root / "single-fields").mkdir()
    write_nc(root / "single-fields" / "t.nc", times=1)
    r = CliRunner().invoke(main, ["train", "sphere", "--data", str(root), "--out", str(out), "--train", "*/*.nc",
                                  "--val", "runs/b.nc", "--steps", "1", "--no-progress"])
    assert r.exit_code != 0 and "benchmark set" in r.output


def test_fields_bench_writes_reports(tmp_path):
    from mscncodec.bench import fields as fb

    d = tmp_path / "fields"
    d.mkdir()
    write_nc(d / "a.nc", nlat=16, nlon=32, times=3)
    refs = fb.find_fields(d, per_file=2)
    assert [r.time for r in refs] == [0, 2]
    codecs = fb.resolve(f"sz3,jpeg2000-16,mscn:{PROVISIONAL}@fast")
    recs = fb.run_fields_bench(refs[:1], codecs, [600, 1500], tmp_path / "out", progress=False, plot=True)
    assert len(recs) == 6 and all(r["bytes"] <= r["target"] or not r["fits"] for r in recs)
    for name in ("results.json", "points.csv", "summary.md", "rd.png", "map.png"):
        assert (tmp_path / "out" / name).is_file(), name
    again = fb.run_fields_bench(refs[:1], codecs, [600, 1500], tmp_path / "out", progress=False, plot=False)
    assert again == recs  # served from the cache


def test_mscn_bench_on_a_folder_of_netcdf_runs_the_fields_bench(tmp_path):
    d = tmp_path / "fields"
    d.mkdir()
    write_nc(d / "a.nc", times=1)
    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["bench", str(d), "--out", str(out), "--codecs", "sz3,jpeg2000-16", "--sizes",
                                  "700,1500", "--no-plot"])
    assert r.exit_code == 0, r.output
    assert "area-weighted RMSE" in r.output and (out / "points.csv").is_file()
    r = CliRunner().invoke(main, ["bench", str(d), "--out", str(out), "--codecs", "gzip"])
    assert r.exit_code != 0 and "unknown field codec" in r.output
