"""Time series of global fields: values (time, lat, lon) on one lat-lon grid, with the file's time coordinate.

Builds on :mod:`.sphere` (one field): the same grid rules, metadata, missing values (NaN) and validation,
per step. A series keeps its time coordinate exactly (float64 values and attributes such as units and
calendar), so that a decoded file can stand in for the original one.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as _dfield
from pathlib import Path

import numpy as np

from mscncodec.errors import BitstreamError, InputError, MscnError
from mscncodec.modalities import sphere as smod
from mscncodec.modalities.sphere_grid import area_weights, check_global

MAX_SERIES_POINTS = 1 << 28
EXTENSIONS = (".nc", ".nc4", ".npy")


@dataclass
class SeriesField:
    """A series of global fields: values (T, nlat, nlon) float64 with NaN where missing, on latitudes `lat`
    and longitudes `lon` (float32, file order), at times `time` (T,) float64 (the file's values; None:
    0..T-1)."""

    values: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    time: np.ndarray | None = None
    name: str = "field"
    units: str = ""
    attrs: dict = _dfield(default_factory=dict)
    lat_name: str = "lat"
    lon_name: str = "lon"
    lat_attrs: dict = _dfield(default_factory=lambda: {"units": "degrees_north"})
    lon_attrs: dict = _dfield(default_factory=lambda: {"units": "degrees_east"})
    time_name: str = "time"
    time_attrs: dict = _dfield(default_factory=dict)
    # the variable's other dimensions (a level) at the selected index, as length-1 coordinates (sphere.SphereField
    # .coords), in the file's order; time_axis: where the time dimension stands among them (0: first)
    coords: list = _dfield(default_factory=list)
    time_axis: int = 0

    def __post_init__(self) -> None:
        if self.time is None:
            self.time = np.arange(np.shape(self.values)[0], dtype=np.float64)
        self.time = np.asarray(self.time, np.float64).reshape(-1)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.values.shape

    @property
    def mask(self) -> np.ndarray:
        """True where a value is missing."""
        return ~np.isfinite(self.values)

    def field(self, k: int) -> smod.SphereField:
        """Step k as a SphereField (same grid and metadata)."""
        return smod.SphereField(np.array(self.values[k], np.float64), self.lat, self.lon, name=self.name,
                                units=self.units, attrs=dict(self.attrs), lat_name=self.lat_name,
                                lon_name=self.lon_name, lat_attrs=dict(self.lat_attrs), lon_attrs=dict(self.lon_attrs))

    def meta(self) -> dict:
        """Everything but the values, the grid and the time values (those travel in pack_series_meta)."""
        return {"name": self.name, "units": self.units, "attrs": self.attrs, "lat_name": self.lat_name,
                "lon_name": self.lon_name, "lat_attrs": self.lat_attrs, "lon_attrs": self.lon_attrs,
                "time_name": self.time_name, "time_attrs": self.time_attrs, "coords": self.coords,
                "time_axis": self.time_axis}


def series_from_fields(fields: Sequence[smod.SphereField], time: Sequence[float] | np.ndarray | None = None,
                       time_name: str = "time", time_attrs: dict | None = None) -> SeriesField:
    """Stack fields on one grid into a series (metadata from the first)."""
    if not fields:
        raise MscnError("a series needs at least one field")
    f0 = fields[0]
    for k, f in enumerate(fields[1:], 1):
        if f.shape != f0.shape or not (np.array_equal(f.lat, f0.lat) and np.array_equal(f.lon, f0.lon)):
            raise MscnError(f"field {k} is not on the grid of field 0")
    if time is not None and len(time) != len(fields):
        raise MscnError(f"{len(fields)} fields but {len(time)} time values")
    s = SeriesField(np.stack([np.asarray(f.values, np.float64) for f in fields]), f0.lat, f0.lon, time=time,
                    name=f0.name, units=f0.units, attrs=dict(f0.attrs), lat_name=f0.lat_name, lon_name=f0.lon_name,
                    lat_attrs=dict(f0.lat_attrs), lon_attrs=dict(f0.lon_attrs), time_name=time_name,
                    time_attrs=dict(time_attrs or {}))
    return validate_series(s)


# ---------------------------------------------------------------- input

def parse_time(spec: str | int | slice | None, n: int) -> slice | int:
    """--time: "a:b" (steps a..b-1; "a:" / ":b" open ends), "k" (one step), "all" or None (every step)."""
    if n < 1:
        raise InputError("the time dimension is empty")
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("all", ":", "")):
        return slice(0, n)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        k = int(spec)
        if not 0 <= k < n:
            raise InputError(f"time step {k} is out of range: the series has {n} steps (0..{n - 1})")
        return k
    if isinstance(spec, slice):
        if spec.step not in (None, 1):
            raise MscnError(f"bad time selection {spec}: steps other than 1 are not supported")
        a, b = spec.start, spec.stop
    elif isinstance(spec, str):
        s = spec.strip()
        try:
            if ":" not in s:
                return parse_time(int(s), n)
            a_s, b_s = s.split(":")
            a = int(a_s) if a_s.strip() else None
            b = int(b_s) if b_s.strip() else None
        except ValueError:
            raise MscnError(f"bad --time {spec!r}: give a:b (steps a to b-1), k (one step) or all") from None
    else:
        raise MscnError(f"bad --time {spec!r}: give a:b (steps a to b-1), k (one step) or all")
    a = 0 if a is None else int(a)
    b = n if b is None else int(b)
    if a < 0 or b < 0:
        raise MscnError(f"bad --time {spec!r}: negative steps are not supported (give a:b with 0 <= a < b <= {n})")
    if a >= b:
        raise MscnError(f"bad --time {spec!r}: the selection is empty (give a:b with a < b)")
    if b > n:
        raise InputError(f"--time {spec!r} is out of range: the series has {n} steps (0..{n - 1})")
    return slice(a, b)


def _lat_lon_vars(ds) -> list[str]:
    out = []
    for n, v in ds.variables.items():
        if v.ndim < 2 or n in ds.dimensions:
            continue
        try:
            smod._coord_dims(ds, v)
            out.append(n)
        except InputError:
            pass
    return out


def time_length(path: str | Path, var: str | None = None) -> int:
    """Steps along the time dimension of netCDF variable `var` (else the only lat-lon one); 1 without one."""
    with smod._open_nc(Path(path)) as ds:
        names = [var] if var is not None else _lat_lon_vars(ds)
        if len(names) != 1 or names[0] not in ds.variables:
            raise InputError(f"{path}: no single lat-lon variable")
        dims = [d for d in ds.variables[names[0]].dimensions[:-2] if smod._is_time(d)]
        return len(ds.dimensions[dims[0]]) if dims else 1


def load_series(path: str | Path, *, var: str | None = None, time: str | int | slice | None = None,
                level: int | None = None, grid: str | None = None) -> SeriesField:
    """A series from netCDF (variable `var`, else the only lat-lon variable with a time dimension; `time`
    selects steps, see parse_time; `level` the index along any other dimension, default 0), or from a 3-D
    .npy (time x lat x lon; grid per `grid` as in sphere.load). Reads only the selected steps."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot read {path}: it is a directory, not a field file")
    if not path.is_file():
        raise InputError(f"cannot read {path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"cannot read {path}: the file is empty")
    if path.stat().st_size > smod.MAX_FILE_BYTES:
        raise InputError(f"cannot read {path}: larger than {smod.MAX_FILE_BYTES >> 30} GB")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path, var, time, level, grid)
    if suffix not in (".nc", ".nc4"):
        raise InputError(f"cannot read {path}: unknown series extension {path.suffix!r} ({', '.join(EXTENSIONS)})")
    if grid is not None:
        raise MscnError("--grid names the layout of a .npy input; a netCDF file carries its own grid")
    with smod._open_nc(path) as ds:
        ds.set_auto_maskandscale(True)
        fields = _lat_lon_vars(ds)
        if var is None:
            timed = [n for n in fields if any(smod._is_time(d) for d in ds.variables[n].dimensions[:-2])]
            pick = timed if timed else fields
            if len(pick) != 1:
                raise InputError(f"{path} holds {len(pick) or 'no'} lat-lon variables"
                                 + (f" ({', '.join(pick)}): choose one with --var" if pick else ""))
            var = pick[0]
        if var not in ds.variables:
            raise InputError(f"{path} has no variable {var!r} (variables: {', '.join(fields) or 'none'})")
        v = ds.variables[var]
        lat_dim, lon_dim = smod._coord_dims(ds, v)
        others = list(v.dimensions[:-2])
        tdims = [d for d in others if smod._is_time(d)]
        if not tdims:
            raise InputError(f"variable {var!r} has no time dimension (dimensions {v.dimensions}): not a series; "
                             "read one field with sphere.load")
        if len(tdims) > 1:
            raise InputError(f"variable {var!r} has several time-like dimensions {tuple(tdims)}")
        tdim = tdims[0]
        nt = len(ds.dimensions[tdim])
        sel = parse_time(time, nt)
        steps = slice(sel, sel + 1) if isinstance(sel, int) else sel
        if level is not None and len(others) == 1:
            raise MscnError(f"--level: variable {var!r} has no level dimension (dimensions {v.dimensions})")
        index: list[int | slice] = []
        for d in others:
            if d == tdim:
                index.append(steps)
                continue
            size, i = len(ds.dimensions[d]), 0 if level is None else level
            if not 0 <= i < size:
                raise InputError(f"level index {i} is out of range for dimension {d!r} of size {size}")
            index.append(i)
        nlat, nlon = len(ds.dimensions[lat_dim]), len(ds.dimensions[lon_dim])
        T = steps.stop - steps.start
        if T * nlat * nlon > MAX_SERIES_POINTS:
            raise InputError(f"series {T} x {nlat} x {nlon} is too large (at most {MAX_SERIES_POINTS} points); "
                             "select fewer steps with --time a:b")
        if lat_dim not in ds.variables or lon_dim not in ds.variables:
            raise InputError(f"variable {var!r} has no latitude/longitude coordinate values")
        lat = np.asarray(ds.variables[lat_dim][:], np.float32)
        lon = np.asarray(ds.variables[lon_dim][:], np.float32)
        check_global(lat, lon)  # before reading the values: a regional file fails fast
        with warnings.catch_warnings():  # netCDF4 warns of fill values it cannot cast; it masks them all the same
            warnings.simplefilter("ignore")
            data = v[tuple(index) + (slice(None), slice(None))]
            values = np.ma.filled(np.ma.asarray(data).astype(np.float64), np.nan).reshape(T, nlat, nlon)
        if tdim in ds.variables and ds.variables[tdim].dimensions == (tdim,):
            tv = ds.variables[tdim]
            tv.set_auto_maskandscale(False)  # the stored values exactly (a coordinate is never packed)
            times = np.asarray(tv[steps], np.float64).reshape(-1)
            time_attrs = smod._attrs(tv)
        else:  # no coordinate variable: the step indices in the file
            times, time_attrs = np.arange(steps.start, steps.stop, dtype=np.float64), {}
        f = SeriesField(values, lat, lon, time=times, name=var, units=str(getattr(v, "units", "")),
                        attrs=smod._attrs(v), lat_name=lat_dim, lon_name=lon_dim,
                        lat_attrs=smod._attrs(ds.variables[lat_dim]), lon_attrs=smod._attrs(ds.variables[lon_dim]),
                        time_name=tdim, time_attrs=time_attrs, time_axis=others.index(tdim),
                        coords=[smod._coord(ds, d, i) for d, i in zip(others, index) if d != tdim])
        f.attrs.pop("units", None)
    return validate_series(f, first=steps.start)


def _load_npy(path: Path, var, time, level, grid) -> SeriesField:
    if var is not None or level is not None:
        raise MscnError("--var and --level select inside a netCDF file; a .npy holds one series")
    try:
        a = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"cannot read {path}: not a .npy array ({e})") from None
    if a.ndim != 3 or a.dtype.kind not in "fiu":
        raise InputError(f"cannot read {path}: a series is a 3-D numeric array (time x lat x lon), got "
                         f"{a.ndim}-D {a.dtype}")
    sel = parse_time(time, a.shape[0])
    steps = slice(sel, sel + 1) if isinstance(sel, int) else sel
    if (steps.stop - steps.start) * a.shape[1] * a.shape[2] > MAX_SERIES_POINTS:
        raise InputError(f"series {steps.stop - steps.start} x {a.shape[1]} x {a.shape[2]} is too large (at most "
                         f"{MAX_SERIES_POINTS} points); select fewer steps with --time a:b")
    lat, lon = smod.parse_grid(grid, for_npy_shape=a.shape[1:])
    if (len(lat), len(lon)) != a.shape[1:]:
        raise InputError(f"{path} is {a.shape[1]} x {a.shape[2]} per step but the grid {grid} is {len(lat)} x {len(lon)}")
    f = SeriesField(np.array(a[steps], np.float64), lat, lon, time=np.arange(steps.start, steps.stop, dtype=np.float64),
                    name=path.stem)
    return validate_series(f, first=steps.start)


def validate_series(f: SeriesField, first: int = 0) -> SeriesField:
    """sphere.validate for every step (global grid; values finite or NaN, none beyond 1e30; no step wholly
    missing); `first` numbers the steps in messages (their index in the file)."""
    v = np.asarray(f.values, np.float64)
    if v.ndim != 3:
        raise InputError(f"a series is 3-D (time x lat x lon), got shape {v.shape}")
    lat, lon = np.asarray(f.lat, np.float32).reshape(-1), np.asarray(f.lon, np.float32).reshape(-1)
    if v.shape[1:] != (len(lat), len(lon)):
        raise InputError(f"values are {v.shape[1]} x {v.shape[2]} per step but the grid is {len(lat)} x {len(lon)}")
    if v.shape[0] < 1:
        raise InputError("the series has no time steps")
    if v.size > MAX_SERIES_POINTS:
        raise InputError(f"series {' x '.join(map(str, v.shape))} is too large (at most {MAX_SERIES_POINTS} points)")
    t = np.asarray(f.time, np.float64).reshape(-1)
    if len(t) != v.shape[0]:
        raise InputError(f"{v.shape[0]} steps but {len(t)} time values")
    check_global(lat, lon)
    v = np.where(np.isinf(v), np.nan, v)
    ok = np.isfinite(v)
    empty = np.flatnonzero(~ok.any(axis=(1, 2)))
    if empty.size:
        raise InputError(f"every value of time step {first + int(empty[0])} is missing")
    big = (np.abs(np.where(ok, v, 0.0)) > 1e30).any(axis=(1, 2))
    if big.any():
        k = int(np.flatnonzero(big)[0])
        raise InputError(f"values beyond 1e30 at time step {first + k}: a fill value that the file does not declare "
                         "as missing?")
    f.values, f.lat, f.lon, f.time = v, lat, lon, t
    return f


# ---------------------------------------------------------------- output

def write_series(f: SeriesField, suffix: str) -> bytes:
    """The bytes of an output file: netCDF-4 (time (unlimited), lat, lon; values float32 with NaN as the fill
    value; the time coordinate float64 with its attributes; a selected level as a length-1 coordinate where the
    file had it) or .npy (the (T, nlat, nlon) float32 array)."""
    suffix = suffix.lower()
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, np.asarray(f.values, np.float32))
        return buf.getvalue()
    if suffix not in (".nc", ".nc4"):
        raise MscnError(f"cannot write a series as {suffix!r}: use .nc, .nc4 or .npy")
    import netCDF4

    _, nlat, nlon = f.values.shape
    ds = netCDF4.Dataset("mscn-out.nc", "w", format="NETCDF4", memory=(1 << 16) + 4 * f.values.size)
    try:
        ds.createDimension(f.time_name, None)
        smod.write_coords(ds, f.coords)
        ds.createDimension(f.lat_name, nlat)
        ds.createDimension(f.lon_name, nlon)
        tc = ds.createVariable(f.time_name, "f8", (f.time_name,))
        tc.setncatts({k: smod._nc_attr(a) for k, a in f.time_attrs.items()})
        tc[:] = np.asarray(f.time, np.float64)
        for name, vals, attrs in ((f.lat_name, f.lat, f.lat_attrs), (f.lon_name, f.lon, f.lon_attrs)):
            c = ds.createVariable(name, "f4", (name,))
            c[:] = vals
            c.setncatts({k: smod._nc_attr(a) for k, a in attrs.items()})
        lead = [c["name"] for c in f.coords]
        lead.insert(min(f.time_axis, len(lead)), f.time_name)
        var = ds.createVariable(f.name, "f4", (*lead, f.lat_name, f.lon_name), fill_value=np.float32(np.nan),
                                zlib=True, complevel=4, chunksizes=(1,) * len(lead) + (nlat, nlon))  # a step per chunk
        atts = {k: smod._nc_attr(a) for k, a in f.attrs.items()}
        if f.units:
            atts["units"] = f.units
        var.setncatts(atts)
        shape = [1] * len(lead) + [nlat, nlon]
        shape[lead.index(f.time_name)] = len(f.time)
        var[:] = np.ma.masked_invalid(np.asarray(f.values, np.float32)).reshape(shape)
        ds.history = "decoded by mscn"
    except (RuntimeError, TypeError, ValueError) as e:  # names or attributes netCDF refuses: not from a netCDF file
        ds.close()
        raise BitstreamError(f"cannot write the decoded series as netCDF ({smod._first_line(e)}): its metadata "
                             "section is corrupted or crafted") from None
    except BaseException:
        ds.close()
        raise
    return bytes(ds.close())


# ---------------------------------------------------------------- metadata section

# The field's words (sphere's preset dictionary) and the time coordinate's. Changing it changes streams.
_SERIES_DICT = (smod._META_DICT + b'"hours since "calendar":"noleap"365_day"360_day"gregorian"standard"simulation time'
                b'"proleptic_gregorian"},"time":{"t0":"n":"d":"c":[[{"b64":"v":"time_name":'
                b'"lat_attrs":{"long_name":"latitude","units":"degrees_north"},"lon_attrs":{"long_name":"longitude",'
                b'"units":"degrees_east"},"time_attrs":{"long_name":"time","units":"days since ')
_SERIES_DEFAULTS = {**smod._META_DEFAULTS, "time_name": "time", "time_attrs": {}, "time_axis": 0}
# a series with a level (coords) writes its metadata with sphere's coordinate words after these, behind sphere's mark
# byte (see sphere._COORD_WORDS): one without is written byte for byte as before
_SERIES_DICT_COORDS = _SERIES_DICT + smod._COORD_WORDS
_MAX_META = 1 << 26
_MAX_ULPS = 1 << 20  # corrections beyond this: the values are no progression; sent raw
_MAX_STEPS = MAX_SERIES_POINTS // 8  # a grid has at least 2 x 4 points


def _time_code(t: np.ndarray) -> dict:
    """The time values, exactly and compactly: the first value, the steps rounded to 6 decimals (one number
    when all equal), and the few ulp corrections that make each t[k] = t[k-1] + step exact; raw float64
    bytes (base64) when that does not hold."""
    t = np.asarray(t, np.float64).reshape(-1)
    raw = {"b64": base64.b64encode(t.astype("<f8").tobytes()).decode("ascii")}
    if len(t) == 0 or not np.all(np.isfinite(t)):
        return raw
    d = np.round(np.diff(t), 6)
    pred = t[:-1] + d
    if np.any(np.signbit(pred) != np.signbit(t[1:])):
        return raw  # bit patterns of opposite signs: their difference means nothing
    c = t[1:].view(np.int64) - pred.view(np.int64)
    if np.any(np.abs(c) > _MAX_ULPS):
        return raw
    code: dict = {"t0": float(t[0]), "n": len(t)}
    steps = [int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x) for x in d]
    if steps:
        code["d"] = steps[0] if all(s == steps[0] for s in steps) else steps
    if c.any():
        code["c"] = [[int(k) + 1, int(c[k])] for k in np.flatnonzero(c)]
    return code


def _time_decode(code: dict) -> np.ndarray:
    if "b64" in code:
        b = base64.b64decode(code["b64"], validate=True)
        if len(b) % 8 or len(b) > 8 * _MAX_STEPS:
            raise ValueError("time bytes")
        return np.frombuffer(b, "<f8").astype(np.float64)
    n, t0 = int(code["n"]), float(code["t0"])
    if not 1 <= n <= _MAX_STEPS:
        raise ValueError("time count")
    d = code.get("d", 0)
    steps = np.full(n - 1, float(d)) if not isinstance(d, list) else np.array([float(x) for x in d], np.float64)
    if len(steps) != n - 1:
        raise ValueError("time steps")
    corr = sorted((int(k), int(c)) for k, c in code.get("c", []))
    if any(not (1 <= k < n and 0 < abs(c) <= _MAX_ULPS) for k, c in corr):
        raise ValueError("time correction")
    out = np.empty(n, np.float64)
    out[0], start = t0, 0
    for k, c in corr + [(n, 0)]:
        # add.accumulate adds in order, as the encoder did: out[i] = out[i-1] + step
        out[start:k] = np.add.accumulate(np.concatenate([[out[start]], steps[start:k - 1]]))
        if k < n:
            pred = np.float64(out[k - 1] + steps[k - 1])
            out[k] = np.int64(int(pred.view(np.int64)) + c).view(np.float64)
            start = k
    return out


def pack_series_meta(f: SeriesField) -> bytes:
    """The series' metadata (defaults left out) and its time values (bit-exact), as raw deflate JSON with a
    preset dictionary."""
    meta = {k: v for k, v in f.meta().items() if _SERIES_DEFAULTS.get(k, object()) != v}
    meta["time"] = _time_code(f.time)
    return smod.deflate_meta(meta, _SERIES_DICT, _SERIES_DICT_COORDS, allow_nan=False)


def unpack_series_meta(data: bytes) -> dict:
    """The metadata of pack_series_meta: SeriesField's keyword arguments but the values and the grid, with
    "time" a float64 array."""
    try:
        meta = smod.inflate_meta(data, _SERIES_DICT, _SERIES_DICT_COORDS, _MAX_META, whole=True)
        if not isinstance(meta, dict) or not isinstance(meta.get("time"), dict):
            raise TypeError("not a series header")
        meta = {**_SERIES_DEFAULTS, **meta}
        meta["time"] = _time_decode(meta["time"])
        meta["coords"] = list(smod._check_coords(meta["coords"], {str(meta.get(k)) for k in (
            "name", "lat_name", "lon_name", "time_name")}))
        if isinstance(meta["time_axis"], bool) or not isinstance(meta["time_axis"], int) or not (
                0 <= meta["time_axis"] <= len(meta["coords"])):
            raise ValueError("time axis")
    except (zlib.error, ValueError, TypeError, KeyError, OverflowError, UnicodeDecodeError) as e:
        raise BitstreamError(f"corrupt series metadata section ({type(e).__name__})") from None
    if not all(isinstance(meta.get(k), dict) for k in ("attrs", "lat_attrs", "lon_attrs", "time_attrs")) or not all(
            isinstance(meta.get(k), str) for k in ("name", "units", "lat_name", "lon_name", "time_name")):
        raise BitstreamError("corrupt series metadata section")
    return meta


# ---------------------------------------------------------------- metrics

def compare_series(ref: SeriesField, rec: SeriesField | np.ndarray) -> dict:
    """Area-weighted (cos lat) RMSE and mean absolute error over every step and point with a value, max
    absolute error, PSNR over the reference's value range, and the RMSE of each step."""
    r = rec.values if isinstance(rec, SeriesField) else np.asarray(rec, np.float64)
    if ref.values.shape != r.shape:
        raise MscnError(f"cannot compare a {ref.values.shape} series with a {r.shape} one")
    ok = np.isfinite(ref.values)
    if not np.array_equal(ok, np.isfinite(r)):
        raise MscnError("the missing-value masks differ")
    w = np.broadcast_to(area_weights(ref.lat, len(ref.lon)), ref.values.shape) * ok
    err = np.where(ok, r - ref.values, 0.0)
    sw = w.sum(axis=(1, 2))
    per_step = np.sqrt((w * err**2).sum(axis=(1, 2)) / np.maximum(sw, 1e-300))
    rmse = float(np.sqrt(np.sum(w * err**2) / np.sum(w)))
    vals = ref.values[ok]
    rng = float(vals.max() - vals.min())
    return {"rmse": rmse, "mae": float(np.sum(w * np.abs(err)) / np.sum(w)), "max_abs": float(np.abs(err).max()),
            "psnr": float(20 * np.log10(rng / max(rmse, 1e-30))) if rng > 0 else math.inf,
            "rmse_per_step": [float(x) for x in per_step]}
