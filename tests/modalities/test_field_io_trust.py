"""Issue 30, fields: a truncated or damaged netCDF input is refused in one line (netCDF-3 would read the
missing part as zeros), and a field decodes with the time / level it was taken at, as length-1 coordinates
(T(time, lat, lon) comes back as T(time, lat, lon)); streams without them decode 2-D as before."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from click.testing import CliRunner

from mscncodec.cli import main
from mscncodec.errors import BitstreamError, InputError, MscnError
from mscncodec.modalities import series as ser
from mscncodec.modalities import sphere as smod
from mscncodec.modalities import sphere_grid as sgrid
from mscncodec.modalities.sphere_codec import decode_field, encode_field

PROVISIONAL = "random-sphere-w32d5+dense"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "spherical"
T2M = SHARED / "single-fields" / "T2m.nc"
GOLDEN_FIELD = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "field-1500B.mscn"
NLAT, NLON = 9, 16
TIMES = np.array([7223.916666666667, 7254.5, 7285.0])


def _values(t: int = 0, k: int = 0) -> np.ndarray:
    lat, lon = np.radians(sgrid.regular_latitudes(NLAT, -90, 90)), np.radians(sgrid.regular_longitudes(NLON, 0))
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    return 250.0 + 40.0 * np.cos(la) + 5.0 * np.sin(2 * lo + t) * np.cos(la) ** 2 - 10.0 * k


def write_nc(path: Path, *, fmt: str = "NETCDF4", levels: int = 0, time_coord: bool = True, lev_first: bool = False,
             fletcher32: bool = False) -> Path:
    """T(time[, lev], lat, lon) on a 20-degree grid; time float64 (unlimited) with units and calendar, lev
    float32 in hPa."""
    with netCDF4.Dataset(str(path), "w", format=fmt) as ds:
        ds.createDimension("time", None)
        if levels:
            ds.createDimension("lev", levels)
        ds.createDimension("lat", NLAT)
        ds.createDimension("lon", NLON)
        if time_coord:
            t = ds.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.long_name, t.axis = "days since 1850-01-01 00:00:00", "noleap", "time", "T"
        if levels:
            lv = ds.createVariable("lev", "f4", ("lev",))
            lv[:] = [1000.0, 850.0, 500.0][:levels]
            lv.units, lv.positive = "hPa", "down"
        la = ds.createVariable("lat", "f4", ("lat",))
        la[:], la.units = sgrid.regular_latitudes(NLAT, -90, 90), "degrees_north"
        lo = ds.createVariable("lon", "f4", ("lon",))
        lo[:], lo.units = sgrid.regular_longitudes(NLON, 0), "degrees_east"
        lead = (("lev", "time") if lev_first else ("time", "lev")) if levels else ("time",)
        kw = {"fletcher32": True, "chunksizes": (1,) * len(lead) + (NLAT, NLON)} if fletcher32 else {}
        v = ds.createVariable("T", "f4", lead + ("lat", "lon"), **kw)
        v.units, v.long_name = "K", "air temperature"
        data = np.stack([_values(t) for t in range(len(TIMES))]).astype(np.float32)
        if levels:
            data = np.stack([data - 10 * k for k in range(levels)], 0 if lev_first else 1)
        v[:] = data
        if time_coord:
            ds["time"][:] = TIMES
    return path


def _cut(src: Path, dst: Path, n: int) -> Path:
    dst.write_bytes(src.read_bytes()[:n])
    return dst


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_line_error(r, *words: str) -> None:
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mscn: error:"), r.output
    assert "Traceback" not in r.output and all(w in lines[0] for w in words), r.output


# ---------------------------------------------------------------- item 3: truncated and damaged inputs

def test_truncated_t2m_is_refused_not_read_as_zeros(tmp_path):
    if not T2M.is_file():
        pytest.skip(f"{T2M} not present")
    whole = smod.load(T2M)
    assert np.nanmin(whole.values) > 150  # the complete file: kelvin everywhere
    cut = _cut(T2M, tmp_path / "T2m.nc", T2M.stat().st_size // 3)
    with pytest.raises(InputError, match=r"T2m.nc is truncated: 24,849 bytes, its header needs 74,548"):
        smod.load(cut)
    out = tmp_path / "x.mscn"
    r = _cli("encode", str(cut), "--var", "T", "--time", "0", "-o", str(out), "--bytes", "2000")
    _one_line_error(r, "truncated", "24,849 bytes", "74,548")
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA", "NETCDF4",
                                 "NETCDF4_CLASSIC"])
def test_every_format_cut_anywhere_is_refused_and_whole_files_load(tmp_path, fmt):
    src = write_nc(tmp_path / "w.nc", fmt=fmt, levels=2)
    size = src.stat().st_size
    f = smod.load(src, time=2, level=1)
    assert np.allclose(f.values, _values(2, 1), atol=1e-4)
    assert ser.load_series(src, level=1).shape == (3, NLAT, NLON) and smod.time_steps(src) == 3
    for n in sorted({size - 1, size - 4, size - 9, size // 2, size // 5, 40, 9, 5}):
        cut = _cut(src, tmp_path / "c.nc", n)
        for read in (lambda: smod.load(cut, time=0, level=0), lambda: ser.load_series(cut, level=0),
                     lambda: ser.load_series(cut, time="0:1", level=0), lambda: smod.time_steps(cut),
                     lambda: ser.time_length(cut)):
            with pytest.raises(InputError, match="truncated") as e:
                read()
            assert "\n" not in str(e.value) and f"{n:,} bytes" in str(e.value)


def test_a_header_cut_short_says_so(tmp_path):
    src = write_nc(tmp_path / "w.nc", fmt="NETCDF3_CLASSIC")
    cut = _cut(src, tmp_path / "h.nc", 60)
    with pytest.raises(InputError, match="60 bytes, the file ends inside its netCDF header"):
        smod.load(cut)
    with pytest.raises(InputError, match="cannot read"):  # no file at all: as before, the library's one line
        smod.time_steps(tmp_path / "none.nc")


def test_a_truncated_series_is_refused_through_the_cli(tmp_path):
    src = write_nc(tmp_path / "s.nc", fmt="NETCDF3_64BIT_OFFSET")
    cut = _cut(src, tmp_path / "s_cut.nc", src.stat().st_size - 100)
    for extra in ([], ["--time", "0:2"], ["--time", "1"]):
        r = _cli("encode", str(cut), "-o", str(tmp_path / "s.mscn"), "--bytes", "900", *extra)
        _one_line_error(r, "s_cut.nc is truncated")


def test_a_truncated_grid_file_for_decode_is_refused(tmp_path):
    src = write_nc(tmp_path / "g.nc", fmt="NETCDF3_CLASSIC")
    with pytest.raises(InputError, match="truncated"):
        smod.parse_grid(str(_cut(src, tmp_path / "g_cut.nc", src.stat().st_size - 8)))


def test_damaged_netcdf4_data_is_one_line_not_a_library_traceback(tmp_path):
    """A netCDF-4 file whose size is right but whose data is damaged: the open works, the read fails inside
    HDF5 (a checksum here); that is an InputError, and through the CLI one line and exit 2."""
    src = write_nc(tmp_path / "d.nc", fletcher32=True)
    raw = bytearray(src.read_bytes())
    row = _values(1)[NLAT // 2].astype(np.float32).tobytes()  # the equator of step 1 (the poles match step 0's)
    at = raw.find(row)
    assert at > 0 and raw.find(row, at + 1) < 0
    raw[at + 10] ^= 0xFF
    bad = tmp_path / "bad.nc"
    bad.write_bytes(bytes(raw))
    assert np.allclose(smod.load(bad, time=0).values, _values(0), atol=1e-4)  # the other step is intact
    for read in (lambda: smod.load(bad, time=1), lambda: ser.load_series(bad)):
        with pytest.raises(InputError, match="cannot read .*bad.nc: a damaged netCDF file") as e:
            read()
        assert "\n" not in str(e.value)
    _one_line_error(_cli("encode", str(bad), "--time", "1", "-o", str(tmp_path / "b.mscn"), "--bytes", "900"),
                    "damaged netCDF file")


def test_netcdf3_needs_the_values_not_the_last_padding(tmp_path):
    """A netCDF-3 file needs its values, not the padding after the last one (a writer may leave it out); here
    a file of scipy's writer."""
    from scipy.io import netcdf_file

    p = tmp_path / "scipy.nc"
    with netcdf_file(str(p), "w", version=1) as f:
        f.createDimension("time", None)
        f.createDimension("x", 3)
        f.createVariable("time", "d", ("time",))[:] = [0.0, 1.0, 2.0]
        f.createVariable("b", "b", ("time", "x"))[:] = np.ones((3, 3))
        f.createVariable("c", "b", ("x",))[:] = [1, 2, 3]
    smod.check_complete(p)
    # the last record ends with b's 3 bytes and 1 byte of padding
    smod.check_complete(_cut(p, tmp_path / "scipy_cut.nc", p.stat().st_size - 1))
    with pytest.raises(InputError, match="truncated"):
        smod.check_complete(_cut(p, tmp_path / "scipy_cut.nc", p.stat().st_size - 2))


@pytest.mark.parametrize("version", [0, 1])
def test_hdf5_superblocks_v0_and_v1(tmp_path, version):
    """HDF5's version-0 and -1 superblocks (older netCDF-4 files; netCDF-C writes version 2 today) have the
    end-of-file address at other places than version 2's."""
    # signature, versions, 8-byte offsets and lengths, leaf K 4, internal K 16, flags, [v1: indexed K, reserved];
    # base 0, no free-space info, end of file 5000, no driver block
    sb = (smod._HDF5_SIGNATURE + bytes([version, 0, 0, 0, 0, 8, 8, 0]) + (4).to_bytes(2, "little")
          + (16).to_bytes(2, "little") + bytes(4) + (bytes([32, 0, 0, 0]) if version else b"")
          + (0).to_bytes(8, "little") + b"\xff" * 8 + (5000).to_bytes(8, "little") + b"\xff" * 8)
    p = tmp_path / "old.nc"
    p.write_bytes(sb + bytes(200))
    with pytest.raises(InputError, match="its header needs 5,000"):
        smod.check_complete(p)
    p.write_bytes(sb + bytes(5000 - len(sb)))
    smod.check_complete(p)


def test_the_shared_netcdf_files_are_complete():
    files = sorted(SHARED.rglob("*.nc")) if SHARED.is_dir() else []
    if not files:
        pytest.skip(f"{SHARED} not present")
    for p in files:
        smod.check_complete(p)


# ---------------------------------------------------------------- item 7: the time / level coordinates

@pytest.fixture(scope="module")
def level_stream(tmp_path_factory) -> tuple[Path, bytes]:
    src = write_nc(tmp_path_factory.mktemp("lv") / "lv.nc", levels=3)
    return src, encode_field(src, target_bytes=1200, model=PROVISIONAL, effort="fast", steps=20, time=1, level=2)


def test_the_selected_time_and_level_travel_exactly(level_stream):
    src, data = level_stream
    f = smod.load(src, time=1, level=2)
    assert f.coords == [{"name": "time", "unlimited": True, "value": TIMES[1], "dtype": "f8",
                         "attrs": {"units": "days since 1850-01-01 00:00:00", "calendar": "noleap",
                                   "long_name": "time", "axis": "T"}},
                        {"name": "lev", "value": 500.0, "dtype": "f4", "attrs": {"units": "hPa", "positive": "down"}}]
    assert decode_field(data).coords == f.coords


def test_cli_decode_writes_t_time_lev_lat_lon(tmp_path, level_stream):
    src, data = level_stream
    stream = tmp_path / "x.mscn"
    stream.write_bytes(data)
    for extra in ([], ["--grid", "10"]):  # on its own grid and regridded
        out = tmp_path / f"y{len(extra)}.nc"
        r = _cli("decode", str(stream), "-o", str(out), *extra)
        assert r.exit_code == 0, r.output
        with netCDF4.Dataset(str(out)) as ds:
            v = ds["T"]
            assert v.dimensions == ("time", "lev", "lat", "lon") and v.shape[:2] == (1, 1) and v.units == "K"
            t, lv = ds["time"], ds["lev"]
            assert t.dtype == np.float64 and t[:].tolist() == [TIMES[1]] and ds.dimensions["time"].isunlimited()
            assert (t.units, t.calendar, t.axis) == ("days since 1850-01-01 00:00:00", "noleap", "T")
            assert lv.dtype == np.float32 and lv[:].tolist() == [500.0] and (lv.units, lv.positive) == ("hPa", "down")
            assert not ds.dimensions["lev"].isunlimited()
        back = smod.load(out)  # and it reads back as the field it is
        assert back.coords == smod.load(src, time=1, level=2).coords
        if not extra:
            assert np.allclose(back.values, decode_field(data).values, atol=1e-3)


def test_t2m_keeps_its_int32_time(tmp_path):
    if not T2M.is_file():
        pytest.skip(f"{T2M} not present")
    f = smod.load(T2M, var="T", time=0)
    assert f.coords == [{"name": "time", "value": 197901, "dtype": "i4",
                         "attrs": {"time": 197901, "long_name": "time", "short_name": "YRMO", "units": "yyyymm"}}]
    meta = smod.pack_meta(f)
    assert smod.unpack_meta(meta)["coords"] == f.coords
    f.coords = []
    assert len(meta) - len(smod.pack_meta(f)) < 40  # the coordinate's own dictionary keeps it small
    out = tmp_path / "t.nc"
    f.coords = smod.load(T2M, var="T", time=0).coords
    out.write_bytes(smod.write(f, ".nc"))
    with netCDF4.Dataset(str(out)) as ds:
        assert ds["T"].dimensions == ("time", "lat", "lon") and ds["time"].dtype == np.int32
        assert ds["time"][:].tolist() == [197901] and ds["time"].units == "yyyymm"


def test_a_dimension_without_coordinate_variable_and_level_first(tmp_path):
    src = write_nc(tmp_path / "n.nc", levels=2, time_coord=False, lev_first=True)
    f = smod.load(src, time=2, level=1)
    assert f.coords == [{"name": "lev", "value": 850.0, "dtype": "f4", "attrs": {"units": "hPa", "positive": "down"}},
                        {"name": "time", "unlimited": True}]
    f2 = smod.SphereField(f.values, f.lat, f.lon, **smod.unpack_meta(smod.pack_meta(f)))
    out = tmp_path / "o.nc"
    out.write_bytes(smod.write(f2, ".nc"))
    with netCDF4.Dataset(str(out)) as ds:
        assert ds["T"].dimensions == ("lev", "time", "lat", "lon") and "time" not in ds.variables
        assert ds["lev"][:].tolist() == [850.0]


def test_fields_without_coordinates_write_the_old_metadata_and_decode_2d(tmp_path):
    """A .npy field, a 2-D netCDF variable, and the streams written before coordinates travelled (the golden
    field stream): the metadata is the old form byte for byte, and the output is T(lat, lon) as before."""
    lat, lon = sgrid.regular_latitudes(NLAT, -90, 90), sgrid.regular_longitudes(NLON, 0)
    npy = tmp_path / "f.npy"
    np.save(npy, _values())
    f = smod.load(npy)
    assert f.coords == []
    old = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=smod._META_DICT)
    meta = {k: v for k, v in f.meta().items() if k != "coords" and smod._META_DEFAULTS.get(k, object()) != v}
    assert smod.pack_meta(f) == old.compress(json.dumps(meta, separators=(",", ":")).encode()) + old.flush()
    if GOLDEN_FIELD.is_file():
        g = decode_field(GOLDEN_FIELD.read_bytes())
        assert g.coords == []
        out = tmp_path / "g.nc"
        out.write_bytes(smod.write(g, ".nc"))
        with netCDF4.Dataset(str(out)) as ds:
            assert ds[g.name].dimensions == ("lat", "lon")
    assert smod.write(smod.SphereField(_values(), lat, lon), ".npy")[:6] == b"\x93NUMPY"


@pytest.mark.parametrize("coords", [
    "x", [1], [{"name": ""}], [{"name": "a/b"}], [{"name": "lat"}], [{"name": "t"}, {"name": "t"}],
    [{"name": "t", "value": 1.5, "dtype": "object"}], [{"name": "t", "value": 300, "dtype": "i1"}],
    [{"name": "t", "value": True, "dtype": "i4"}], [{"name": "t", "value": 1.5, "dtype": "i4"}],
    [{"name": "t", "unlimited": 1}], [{"name": "t", "attrs": {}}], [{"name": "t", "other": 1}],
])
def test_crafted_coordinates_are_a_one_line_error(coords):
    f = smod.SphereField(_values(), sgrid.regular_latitudes(NLAT, -90, 90), sgrid.regular_longitudes(NLON, 0),
                         name="T", coords=coords)
    with pytest.raises(MscnError, match="corrupt metadata section"):
        smod.unpack_meta(smod.pack_meta(f))
    s = ser.SeriesField(f.values[None], f.lat, f.lon, name="T", coords=coords)
    with pytest.raises(BitstreamError, match="corrupt series metadata"):
        ser.unpack_series_meta(ser.pack_series_meta(s))


# ---------------------------------------------------------------- series: one step keeps its time (and level)

def test_series_one_step_decode_keeps_its_time_and_level(tmp_path, monkeypatch):
    from mscncodec.families.grid2.volume.config import Vol3Config
    from mscncodec.families.grid2.volume.model import fresh_vol3_model
    from mscncodec import models
    from mscncodec.modalities import series_codec as sc

    model = fresh_vol3_model(Vol3Config(levels=3, periodic=(False, False, True)), name="t-series", modality="series")
    real_find, real_list = models.find_by_id, models.list_models
    monkeypatch.setattr(models, "find_by_id", lambda i: model if i == model.model_id else real_find(i))
    monkeypatch.setattr(models, "list_models", lambda: [model, *real_list()])
    monkeypatch.setattr(sc, "pick_model", lambda model_=None, target_bytes=None, points=None: model)
    src = write_nc(tmp_path / "s.nc", levels=3, lev_first=True)
    stream = tmp_path / "s.mscn"
    r = _cli("encode", str(src), "-o", str(stream), "--bytes", "900", "--level", "1", "--effort", "fast", "--steps",
             "10", "-q")
    assert r.exit_code == 0, r.output
    for k in (None, 2):
        out = tmp_path / f"o{k}.nc"
        r = _cli("decode", str(stream), "-o", str(out), *(["--time", str(k)] if k is not None else []))
        assert r.exit_code == 0, r.output
        with netCDF4.Dataset(str(out)) as ds:
            assert ds["T"].dimensions == ("lev", "time", "lat", "lon")
            assert ds["time"][:].tolist() == (TIMES.tolist() if k is None else [TIMES[k]])
            assert ds["time"].calendar == "noleap" and ds["time"].units == "days since 1850-01-01 00:00:00"
            assert ds["lev"][:].tolist() == [850.0] and ds["lev"].units == "hPa"
        back = ser.load_series(out)
        assert back.time_axis == 1 and back.coords[0]["value"] == 850.0


def test_series_without_a_level_writes_the_old_metadata(tmp_path):
    f = ser.load_series(write_nc(tmp_path / "s.nc"))
    assert f.coords == [] and f.time_axis == 0
    assert ser.pack_series_meta(f)[:1] != bytes([smod._COORDS_MARK])
    m = ser.unpack_series_meta(ser.pack_series_meta(f))
    assert m["coords"] == [] and np.array_equal(m["time"], TIMES)


@pytest.mark.parametrize("meta", [{"coords": [{"name": " x"}]}, {"lat_name": " y"},
                                  {"coords": [{"name": "t", "value": 1, "dtype": "i4", "attrs": {"a": {"b": 1}}}]}])
def test_metadata_netcdf_refuses_is_a_one_line_error_on_write(meta):
    """Names or attributes that no netCDF file has (a crafted stream's metadata) fail the write in one line."""
    lat, lon = sgrid.regular_latitudes(NLAT, -90, 90), sgrid.regular_longitudes(NLON, 0)
    with pytest.raises(BitstreamError, match="cannot write the decoded field as netCDF"):
        smod.write(smod.SphereField(_values(), lat, lon, **meta), ".nc")
    with pytest.raises(BitstreamError, match="cannot write the decoded series as netCDF"):
        ser.write_series(ser.SeriesField(_values()[None], lat, lon, **meta), ".nc")
