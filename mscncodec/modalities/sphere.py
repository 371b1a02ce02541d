"""Global fields on the sphere: a value per (latitude, longitude) point of a global grid.

The INR sees each grid point as a unit vector of R^3 (x = cos(lat) cos(lon), y = cos(lat) sin(lon),
z = sin(lat)): continuous across the date line and at the poles, where latitude-longitude inputs are
not (every longitude of a pole is the same point). Values are mapped to [-1, 1] with the field's own
range (stored in the header), and the fit minimises the *area-weighted* squared error (weight
cos(lat)): a lat-lon grid has as many points in the polar row as at the equator, and the figure of
merit of the field is the area-weighted RMSE.

A field keeps what a user will ask for back: the grid exactly (regular or Gaussian latitudes, in the
file's order), the variable's name, units and attributes, the coordinates' names and attributes, and
the missing values (NaN, e.g. the land points of a sea-surface field), which are coded as a bitmap,
never filled in, and the position the field was taken at: the variable's other dimensions (time, level)
come back as length-1 coordinates with the selected value, its type and attributes (units, calendar), so
that T(time, lat, lon) decodes as T(time, lat, lon).

A netCDF input is read only whole: a file shorter than its header says (cut in a download or a copy) is
refused, where the library would read the missing part as zeros (netCDF-3) or fail with a library error.
"""

from __future__ import annotations

import io
import json
import math
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mscncodec.container.bitstream import MAX_LAT, MAX_LON
from mscncodec.errors import BitstreamError, InputError, MscnError
from mscncodec.modalities.sphere_grid import (MAX_POINTS, area_weights, check_global, embed, fit_points,
                                              gaussian_latitudes, normalise, regular_latitudes, regular_longitudes,
                                              value_range)

EXTENSIONS = (".nc", ".nc4", ".npy")
MAX_FILE_BYTES = 1 << 32
# packing / masking attributes that describe the file's storage, not the variable: never carried
_STORAGE_ATTRS = {"_FillValue", "missing_value", "scale_factor", "add_offset", "valid_min", "valid_max",
                  "valid_range", "_Unsigned", "_ChunkSizes", "_Storage", "_Endianness", "_DeflateLevel",
                  "_Shuffle", "_NoFill"}
LAT_NAMES = ("lat", "latitude", "nav_lat", "lats")
LON_NAMES = ("lon", "longitude", "nav_lon", "lons")


@dataclass
class SphereField:
    """A global field: values (nlat, nlon) float64 with NaN where missing, on latitudes `lat` and
    longitudes `lon` (degrees, float32 as most files store them, in the file's order)."""

    values: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    name: str = "field"
    units: str = ""
    attrs: dict = field(default_factory=dict)
    lat_name: str = "lat"
    lon_name: str = "lon"
    lat_attrs: dict = field(default_factory=lambda: {"units": "degrees_north"})
    lon_attrs: dict = field(default_factory=lambda: {"units": "degrees_east"})
    # the variable's dimensions before lat, lon, in order, each a length-1 coordinate at the selected index:
    # {"name", "value" (int or float; absent when the file has no coordinate variable), "dtype" ("i4", "f8",
    # ...), "attrs", "unlimited" (True for the record dimension)}
    coords: list = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    @property
    def mask(self) -> np.ndarray:
        """True where a value is missing."""
        return ~np.isfinite(self.values)

    def meta(self) -> dict:
        """What travels in the META section (everything but the values and the grid)."""
        return {"name": self.name, "units": self.units, "attrs": self.attrs, "lat_name": self.lat_name,
                "lon_name": self.lon_name, "lat_attrs": self.lat_attrs, "lon_attrs": self.lon_attrs,
                "coords": self.coords}


# ---------------------------------------------------------------- what a fit sees

def fit_arrays(f: SphereField, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """What a fit sees of a field: unit vectors (n, 3), values normalised by the field's float32 range (n,),
    area weights with mean 1 (n,), at the points of fit_points; and half the range (normalised units -> the
    field's). The encoder and the trainer both build their tasks here."""
    vmin, vmax = value_range(f.values)
    idx, w = fit_points(f.lat, len(f.lon), f.mask, max_points)
    y = normalise(f.values, vmin, vmax).reshape(-1)[idx]
    return embed(f.lat, f.lon)[idx], y.astype(np.float32), w.astype(np.float32), 0.5 * (vmax - vmin)


# ---------------------------------------------------------------- input

def parse_grid(spec: str | None, *, for_npy_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A target grid: "0.25" (regular, poles included, longitudes from 0), "gaussian:N" (N Gaussian
    latitudes, 2N longitudes), "regular" / "gaussian" (the .npy array's own shape), or a netCDF file
    whose lat/lon to use."""
    if spec is None or spec == "":
        spec = "regular"
    if spec in ("regular", "gaussian"):
        if for_npy_shape is None:
            raise MscnError(f"--grid {spec} names the layout of a .npy input; to decode onto another grid give "
                            "a spacing in degrees (e.g. 0.25), gaussian:N or a netCDF file")
        nlat, nlon = for_npy_shape
        lat = gaussian_latitudes(nlat) if spec == "gaussian" else regular_latitudes(nlat, -90.0, 90.0)
        return lat, regular_longitudes(nlon, 0.0)
    if spec.startswith("gaussian:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            raise MscnError(f"bad --grid {spec!r}: gaussian:N takes a whole number of latitudes") from None
        if not 2 <= n <= MAX_LAT or 2 * n > MAX_LON:
            raise MscnError(f"bad --grid {spec!r}: N must be in [2, {MAX_LON // 2}]")
        return gaussian_latitudes(n), regular_longitudes(2 * n, 0.0)
    path = Path(spec)
    if path.suffix.lower() in (".nc", ".nc4"):
        if not path.is_file():
            raise InputError(f"cannot read grid file {path}: no such file")
        return _nc_grid(path)
    try:
        step = float(spec)
    except ValueError:
        raise MscnError(f"bad --grid {spec!r}: give a spacing in degrees (e.g. 0.25), gaussian:N or a netCDF file") from None
    if not (math.isfinite(step) and 0.01 <= step <= 45 and abs(180 / step - round(180 / step)) < 1e-6):
        raise MscnError(f"bad --grid {spec!r}: the spacing must divide 180 degrees and lie in [0.01, 45]")
    nlat = int(round(180 / step)) + 1
    return regular_latitudes(nlat, -90.0, 90.0), regular_longitudes(2 * (nlat - 1), 0.0)


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CDF_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}  # nc_type -> bytes per value


class _Cut(Exception):
    """The file ends inside its own header."""


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e).strip() else type(e).__name__


def _cdf_needs(fh, version: int, size: int) -> int | None:
    """The bytes a netCDF-3 file (CDF-1 classic, CDF-2 64-bit offset, CDF-5 64-bit data) needs by its header:
    the end of its last value (each variable's begin + its size; a record variable's last record at begin +
    (numrecs - 1) x recsize). None where the header is not one this reader follows (the library judges) or the
    record count is "streaming" (not in the header). _Cut where the file ends inside the header."""
    w = 8 if version == 5 else 4  # counts and lengths
    ow = 4 if version == 1 else 8  # variable offsets

    def take(n: int) -> bytes:
        b = fh.read(n)
        if len(b) < n:
            raise _Cut
        return b

    def uint(n: int) -> int:
        return int.from_bytes(take(n), "big")

    def skip(n: int) -> None:
        if fh.tell() + n > size:
            raise _Cut
        fh.seek(n, 1)

    def name() -> None:
        n = uint(w)
        skip(n + (-n % 4))

    def count(tag: int) -> int | None:  # a list's length: 0 when ABSENT, None when the tag is wrong
        t, n = uint(4), uint(w)
        return 0 if t == 0 and n == 0 else n if t == tag else None

    def attributes() -> bool:
        n = count(0x0C)
        if n is None:
            return False
        for _ in range(n):
            name()
            t, k = uint(4), uint(w)
            if t not in _CDF_TYPE_BYTES:
                return False
            k *= _CDF_TYPE_BYTES[t]
            skip(k + (-k % 4))
        return True

    fh.seek(4)
    numrecs = uint(w)
    n = count(0x0A)
    if n is None:
        return None
    dims = []
    for _ in range(n):
        name()
        dims.append(uint(w))
    if not attributes():
        return None
    n = count(0x0B)
    if n is None:
        return None
    need, records = 0, []  # records: (begin, bytes of one record) of each record variable
    for _ in range(n):
        name()
        ids = [uint(w) for _ in range(uint(w))]
        if not attributes():
            return None
        t = uint(4)
        uint(w)  # vsize: redundant (and clipped for large variables); the size is computed from the shape
        begin = uint(ow)
        if t not in _CDF_TYPE_BYTES or any(i >= len(dims) for i in ids):
            return None
        shape = [dims[i] for i in ids]
        nbytes = math.prod(shape[1:] if shape and shape[0] == 0 else shape) * _CDF_TYPE_BYTES[t]
        if shape and shape[0] == 0:
            records.append((begin, nbytes))
        elif nbytes:
            need = max(need, begin + nbytes)
    need = max(need, fh.tell())  # the header itself
    if records and numrecs and numrecs != (1 << 8 * w) - 1:
        # one record holds every record variable, each padded to 4 bytes; a lone one is not padded
        recsize = records[0][1] if len(records) == 1 else sum(b + (-b % 4) for _, b in records)
        need = max([need] + [begin + (numrecs - 1) * recsize + b for begin, b in records if b])
    return need


def _hdf5_needs(fh) -> int | None:
    """The bytes a netCDF-4 (HDF5) file needs by its superblock (its base address + end-of-file address; the
    HDF5 library refuses a shorter file); None where the superblock is not one this reader follows."""
    fh.seek(8)
    head = fh.read(64)
    if len(head) < 4:
        raise _Cut
    version = head[0]
    if version in (0, 1):
        o, at = head[5], 16 if version == 0 else 20  # size of offsets; the base address (from byte 8)
    elif version in (2, 3):
        o, at = head[1], 4
    else:
        return None
    if o not in (2, 4, 8):
        return None
    if len(head) < at + 3 * o:
        raise _Cut
    base = int.from_bytes(head[at:at + o], "little")
    eof = int.from_bytes(head[at + 2 * o:at + 3 * o], "little")
    undefined = (1 << 8 * o) - 1
    return None if undefined in (base, eof) else base + eof


def check_complete(path: str | Path) -> None:
    """Refuse, in one line, a netCDF file shorter than its header says: a netCDF-3 file would read the missing
    values as zeros (a silently corrupted field), a netCDF-4 one fails inside the library."""
    path = Path(path)
    try:
        size, fh = path.stat().st_size, open(path, "rb")
    except OSError:
        return  # not a file this reads: the library says why
    with fh:
        magic = fh.read(8)
        try:
            if magic[:3] == b"CDF" and magic[3:4] in (b"\x01", b"\x02", b"\x05"):
                need = _cdf_needs(fh, magic[3], size)
            elif magic == _HDF5_SIGNATURE:
                need = _hdf5_needs(fh)
            elif len(magic) >= 4 and _HDF5_SIGNATURE.startswith(magic):
                raise _Cut  # cut inside the signature
            else:
                return
        except _Cut:
            raise InputError(f"{path} is truncated: {size:,} bytes, the file ends inside its netCDF header") from None
    if need is not None and size < need:
        raise InputError(f"{path} is truncated: {size:,} bytes, its header needs {need:,}")


@contextmanager
def _open_nc(path: Path):
    """The netCDF dataset, once check_complete passed; the library's errors while it is read (a damaged file)
    become one-line InputErrors."""
    import netCDF4

    check_complete(path)
    try:
        ds = netCDF4.Dataset(str(path), "r")
    except (OSError, RuntimeError, ValueError) as e:
        try:
            with open(path, "rb") as fh:
                magic = fh.read(8)
        except OSError:
            magic = b""
        what = ("a damaged netCDF file" if magic[:3] == b"CDF" or magic == _HDF5_SIGNATURE else
                "not a netCDF file")
        raise InputError(f"cannot read {path}: {what} ({_first_line(e)})") from None
    try:
        yield ds
    except (OSError, RuntimeError) as e:  # netCDF4's errors reading a damaged file (an HDF error, ...)
        raise InputError(f"cannot read {path}: a damaged netCDF file ({_first_line(e)})") from None
    finally:
        try:
            ds.close()
        except (OSError, RuntimeError):
            pass


def _is_time(dim: str) -> bool:
    """Whether a dimension is the time axis (--time indexes it; any other is a level, --level)."""
    return "time" in dim.lower() or dim.lower() in ("month", "date", "t")


def _coord_dims(ds, var) -> tuple[str, str]:
    """The latitude and longitude dimensions of a variable: by name, or by the coordinate's units."""
    dims = list(var.dimensions)

    def is_lat(d: str) -> bool:
        u = str(getattr(ds.variables[d], "units", "")) if d in ds.variables else ""
        return d.lower() in LAT_NAMES or u.lower().startswith("degrees_n") or u.lower() == "degrees north"

    def is_lon(d: str) -> bool:
        u = str(getattr(ds.variables[d], "units", "")) if d in ds.variables else ""
        return d.lower() in LON_NAMES or u.lower().startswith("degrees_e") or u.lower() == "degrees east"

    lat = [d for d in dims if is_lat(d)]
    lon = [d for d in dims if is_lon(d)]
    if len(lat) != 1 or len(lon) != 1:
        raise InputError(f"variable {var.name!r} has dimensions {tuple(dims)}: not a latitude-longitude field")
    if dims[-2:] != [lat[0], lon[0]]:
        raise InputError(f"variable {var.name!r} has dimensions {tuple(dims)}: latitude and longitude must be the "
                         "last two")
    return lat[0], lon[0]


def _nc_grid(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with _open_nc(path) as ds:
        lat = next((n for n in ds.variables if n.lower() in LAT_NAMES), None)
        lon = next((n for n in ds.variables if n.lower() in LON_NAMES), None)
        if lat is None or lon is None:
            raise InputError(f"{path} has no latitude/longitude coordinates")
        la = np.asarray(ds.variables[lat][:], np.float32)
        lo = np.asarray(ds.variables[lon][:], np.float32)
    check_global(la, lo)
    return la, lo


def _plain(v) -> object:
    """netCDF attribute values as JSON-able Python values."""
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode("latin-1")
    return v


def _attrs(var) -> dict:
    out = {}
    for a in var.ncattrs():
        if a in _STORAGE_ATTRS:
            continue
        v = _plain(var.getncattr(a))
        if isinstance(v, float) and not math.isfinite(v):
            continue
        out[a] = v
    return out


_COORD_DTYPES = ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8")


def _coord(ds, dim: str, i: int) -> dict:
    """Dimension `dim` of a field's variable at index i, as a length-1 coordinate: its name, whether it is the
    record dimension, and where the file has a numeric coordinate variable, the value at i exactly (the stored
    number; unpacked where the coordinate is packed), its type and attributes."""
    c: dict = {"name": dim}
    if ds.dimensions[dim].isunlimited():
        c["unlimited"] = True
    cv = ds.variables.get(dim)
    if cv is None or cv.dimensions != (dim,):
        return c
    cv.set_auto_mask(False)  # a coordinate's value is a value, even one equal to its _FillValue
    x = np.asarray(cv[i])
    dtype = f"{x.dtype.kind}{x.dtype.itemsize}"
    if x.size != 1 or dtype not in _COORD_DTYPES or (x.dtype.kind == "f" and not np.isfinite(x)):
        return c  # a string or non-finite coordinate: the dimension alone
    c["value"], c["dtype"] = x.item(), dtype
    attrs = _attrs(cv)
    if attrs:
        c["attrs"] = attrs
    return c


def _check_coords(coords, taken: set[str]) -> list:
    """The coords of a stream's metadata, checked (a crafted stream fails in one line, not in the netCDF
    writer): names unique, none of `taken`; values of their type."""
    if not isinstance(coords, list) or len(coords) > 64:
        raise ValueError("coords")
    seen = set(taken)
    for c in coords:
        if not isinstance(c, dict) or set(c) - {"name", "value", "dtype", "attrs", "unlimited"}:
            raise ValueError("coord")
        n = c.get("name")
        if not isinstance(n, str) or not 0 < len(n) <= 256 or "/" in n or "\x00" in n or n in seen:
            raise ValueError("coord name")
        seen.add(n)
        if not isinstance(c.get("unlimited", False), bool) or not isinstance(c.get("attrs", {}), dict):
            raise ValueError("coord")
        if "value" in c:
            x, dt = c["value"], c.get("dtype")
            if dt not in _COORD_DTYPES or isinstance(x, bool) or not isinstance(x, (int, float)):
                raise ValueError("coord value")
            if dt[0] in "iu" and not (isinstance(x, int) and np.iinfo(dt).min <= x <= np.iinfo(dt).max):
                raise ValueError("coord value")
            if dt[0] == "f" and not (math.isfinite(x) and abs(x) <= np.finfo(dt).max):
                raise ValueError("coord value")
        elif "dtype" in c or "attrs" in c:
            raise ValueError("coord")
    return coords


def load(src: str | Path | SphereField, *, var: str | None = None, time: int | None = None, level: int | None = None,
         grid: str | None = None) -> SphereField:
    """A global field from netCDF (variable `var`, else the only 2-D-or-more lat/lon variable; `time` and
    `level` pick the index along the other dimensions, default 0) or from a 2-D .npy (grid per `grid`:
    regular (default), gaussian, or a netCDF file's lat/lon)."""
    if isinstance(src, SphereField):
        return validate(src)
    path = Path(src)
    if path.is_dir():
        raise InputError(f"cannot read {path}: it is a directory, not a field file")
    if not path.is_file():
        raise InputError(f"cannot read {path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"cannot read {path}: the file is empty")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"cannot read {path}: larger than {MAX_FILE_BYTES >> 30} GB")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if var is not None or time is not None or level is not None:
            raise MscnError("--var, --time and --level select inside a netCDF file; a .npy holds one 2-D field")
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise InputError(f"cannot read {path}: not a .npy array ({e})") from None
        if a.ndim != 2 or a.dtype.kind not in "fiu":
            raise InputError(f"cannot read {path}: a field is a 2-D numeric array (lat x lon), got {a.ndim}-D {a.dtype}")
        lat, lon = parse_grid(grid, for_npy_shape=a.shape)
        if (len(lat), len(lon)) != a.shape:
            raise InputError(f"{path} is {a.shape[0]} x {a.shape[1]} but the grid {grid} is {len(lat)} x {len(lon)}")
        return validate(SphereField(a.astype(np.float64), lat, lon, name=path.stem))
    if suffix not in (".nc", ".nc4"):
        raise InputError(f"cannot read {path}: unknown field extension {path.suffix!r} ({', '.join(EXTENSIONS)})")
    if grid is not None:
        raise MscnError("--grid names the layout of a .npy input; a netCDF file carries its own grid")
    with _open_nc(path) as ds:
        ds.set_auto_maskandscale(True)
        candidates = [n for n, v in ds.variables.items() if v.ndim >= 2 and n not in ds.dimensions]
        if var is None:
            fields = []
            for n in candidates:
                try:
                    _coord_dims(ds, ds.variables[n])
                    fields.append(n)
                except InputError:
                    pass
            if len(fields) != 1:
                raise InputError(f"{path} holds {len(fields) or 'no'} lat-lon variables"
                                 + (f" ({', '.join(fields)}): choose one with --var" if fields else ""))
            var = fields[0]
        if var not in ds.variables:
            raise InputError(f"{path} has no variable {var!r} (variables: {', '.join(candidates) or 'none'})")
        v = ds.variables[var]
        lat_dim, lon_dim = _coord_dims(ds, v)
        index = []
        others = list(v.dimensions[:-2])
        for d in others:
            size = len(ds.dimensions[d])
            is_time = _is_time(d)
            i = time if is_time else level
            i = 0 if i is None else i
            if not 0 <= i < size:
                raise InputError(f"{'time' if is_time else 'level'} index {i} is out of range for dimension "
                                 f"{d!r} of size {size}")
            index.append(i)
        if time is not None and not any(_is_time(d) for d in others):
            raise MscnError(f"--time: variable {var!r} has no time dimension (dimensions {v.dimensions})")
        if level is not None and all(_is_time(d) for d in others):
            raise MscnError(f"--level: variable {var!r} has no level dimension (dimensions {v.dimensions})")
        nlat, nlon = len(ds.dimensions[lat_dim]), len(ds.dimensions[lon_dim])
        if nlat * nlon > MAX_POINTS:
            raise InputError(f"grid {nlat} x {nlon} is too large (at most {MAX_POINTS} points)")
        with warnings.catch_warnings():  # netCDF4 warns of fill values it cannot cast; it masks them all the same
            warnings.simplefilter("ignore")
            data = v[tuple(index) + (slice(None), slice(None))]
            values = np.ma.filled(np.ma.asarray(data).astype(np.float64), np.nan)
        if lat_dim not in ds.variables or lon_dim not in ds.variables:
            raise InputError(f"variable {var!r} has no latitude/longitude coordinate values")
        lat = np.asarray(ds.variables[lat_dim][:], np.float32)
        lon = np.asarray(ds.variables[lon_dim][:], np.float32)
        f = SphereField(values, lat, lon, name=var, units=str(getattr(v, "units", "")), attrs=_attrs(v),
                  lat_name=lat_dim, lon_name=lon_dim, lat_attrs=_attrs(ds.variables[lat_dim]),
                  lon_attrs=_attrs(ds.variables[lon_dim]),
                  coords=[_coord(ds, d, i) for d, i in zip(others, index)])
        f.attrs.pop("units", None)
    return validate(f)


def validate(f: SphereField) -> SphereField:
    v = np.asarray(f.values, np.float64)
    if v.ndim != 2:
        raise InputError(f"a field is 2-D (lat x lon), got shape {v.shape}")
    lat, lon = np.asarray(f.lat, np.float32).reshape(-1), np.asarray(f.lon, np.float32).reshape(-1)
    if v.shape != (len(lat), len(lon)):
        raise InputError(f"values are {v.shape[0]} x {v.shape[1]} but the grid is {len(lat)} x {len(lon)}")
    check_global(lat, lon)
    v = np.where(np.isinf(v), np.nan, v)
    ok = v[np.isfinite(v)]
    if ok.size == 0:
        raise InputError("every value of the field is missing")
    if np.max(np.abs(ok)) > 1e30:
        raise InputError("values beyond 1e30: a fill value that the file does not declare as missing?")
    f.values, f.lat, f.lon = v, lat, lon
    return f


# ---------------------------------------------------------------- output

def _nc_attr(v: object) -> object:
    return np.asarray(v) if isinstance(v, list) else v


def write_coords(ds, coords: list) -> None:
    """The length-1 dimensions of `coords` (SphereField.coords) in a netCDF dataset being written, each with its
    coordinate variable where it has a value (a field's and a series' writer)."""
    for c in coords:
        ds.createDimension(c["name"], None if c.get("unlimited") else 1)
        if "value" in c:
            cv = ds.createVariable(c["name"], c["dtype"], (c["name"],))
            cv.setncatts({k: _nc_attr(a) for k, a in c.get("attrs", {}).items()})
            cv[:] = np.array([c["value"]], c["dtype"])


def write(f: SphereField, suffix: str) -> bytes:
    """The bytes of an output file: netCDF-4 (values float32, NaN as the fill value, the grid and every
    attribute carried, the field's time / level as length-1 coordinates before lat, lon) or .npy (float64
    values, NaN where missing)."""
    suffix = suffix.lower()
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, f.values.astype(np.float64))
        return buf.getvalue()
    if suffix not in (".nc", ".nc4"):
        raise MscnError(f"cannot write a field as {suffix!r}: use .nc or .npy")
    import netCDF4

    ds = netCDF4.Dataset("mscn-out.nc", "w", format="NETCDF4", memory=1 << 16)
    try:
        write_coords(ds, f.coords)
        ds.createDimension(f.lat_name, len(f.lat))
        ds.createDimension(f.lon_name, len(f.lon))
        for name, vals, attrs in ((f.lat_name, f.lat, f.lat_attrs), (f.lon_name, f.lon, f.lon_attrs)):
            c = ds.createVariable(name, "f4", (name,))
            c[:] = vals
            c.setncatts({k: _nc_attr(a) for k, a in attrs.items()})
        dims = tuple(c["name"] for c in f.coords) + (f.lat_name, f.lon_name)
        var = ds.createVariable(f.name, "f4", dims, fill_value=np.float32(np.nan), zlib=True, complevel=4)
        atts = {k: _nc_attr(a) for k, a in f.attrs.items()}
        if f.units:
            atts["units"] = f.units
        var.setncatts(atts)
        var[:] = np.ma.masked_invalid(f.values.astype(np.float32)).reshape((1,) * len(f.coords) + f.values.shape)
        ds.history = "decoded by mscn"
    except (RuntimeError, TypeError, ValueError) as e:  # names or attributes netCDF refuses: not from a netCDF file
        ds.close()
        raise BitstreamError(f"cannot write the decoded field as netCDF ({_first_line(e)}): its metadata "
                             "section is corrupted or crafted") from None
    except BaseException:
        ds.close()
        raise
    return bytes(ds.close())


# ---------------------------------------------------------------- metadata section

# Words that recur in CF metadata: a preset dictionary for deflate, so that the metadata of a typical field
# costs tens of bytes, not a hundred (at 1 KB that is a tenth of the file). Changing it changes streams.
_META_DICT = (b'{"name":"units":"attrs":"lat_name":"lon_name":"lat_attrs":"lon_attrs":"long_name":"standard_name":'
              b'"short_name":"cell_methods":"time: mean"degrees_north"degrees_east"latitude"longitude"temperature'
              b'"air_temperature"Temperature (2m)"surface"pressure"geopotential"wind"eastward_wind"northward_wind'
              b'"Reference height temperature"K"m s**-1"Pa"time_op":"average"')
_META_DEFAULTS = {"lat_name": "lat", "lon_name": "lon", "lat_attrs": {"units": "degrees_north"},
                  "lon_attrs": {"units": "degrees_east"}, "attrs": {}, "units": "", "coords": []}


# A field with coordinates (time, level: SphereField.coords) writes its metadata with this dictionary, the words
# of CF time and vertical coordinates after the field's, behind the byte _COORDS_MARK: a deflate stream never
# starts with it (block type 3 is reserved), so a stream without the mark is one of the older form, which a
# field without coordinates still writes byte for byte. Changing either changes streams.
_COORD_WORDS = (b'"long_name":"pressure levels"pressure_level"air_pressure"atmosphere_hybrid_sigma_pressure_coordinate"'
                b'"formula_terms":"a: hyam b: hybm p0: P0 ps: PS"hybrid level at midpoints (1000*(A+B))"'
                b'"height"depth"m"mb"hPa"Pa"millibars"level"pressure"positive":"down"positive":"up"axis":"Z"'
                b'"bounds":"time_bnds"axis":"T"standard_name":"time"calendar":"noleap"365_day"360_day"gregorian"'
                b'standard"proleptic_gregorian"julian"months since "hours since 1900-01-01 00:00:00"days since '
                b'1850-01-01 00:00:00"date"month"yyyymm"YRMO"simulation time"'
                b',"coords":[{"name":"lev","value":"dtype":"f4","attrs":{"long_name":"level","units":"'
                b'},{"name":"level"plev"dtype":"i4"dtype":"f8","attrs":{"long_name":"time","units":"'
                b'"coords":[{"name":"time","unlimited":true,"value":')
_META_DICT_COORDS = _META_DICT + _COORD_WORDS
_COORDS_MARK = 0x06  # BFINAL 0, BTYPE 11


def pack_meta(f: SphereField) -> bytes:
    """The field's metadata, defaults left out, as raw deflate with a preset dictionary (with coordinates: the
    mark byte, then deflate with the coordinates' dictionary)."""
    meta = {k: v for k, v in f.meta().items() if _META_DEFAULTS.get(k, object()) != v}
    return deflate_meta(meta, _META_DICT, _META_DICT_COORDS)


def deflate_meta(meta: dict, zdict: bytes, zdict_coords: bytes, allow_nan: bool = True) -> bytes:
    """JSON metadata as raw deflate with the preset dictionary `zdict`; with coordinates ("coords" in meta), the
    mark byte, then deflate with `zdict_coords` (a field's and a series' metadata)."""
    coords = "coords" in meta
    c = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=zdict_coords if coords else zdict)
    body = c.compress(json.dumps(meta, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan)
                      .encode("utf-8")) + c.flush()
    return bytes([_COORDS_MARK]) + body if coords else body


def inflate_meta(data: bytes, zdict: bytes, zdict_coords: bytes, limit: int, whole: bool = False) -> object:
    """The JSON of deflate_meta's bytes (the mark byte says which dictionary), at most `limit` bytes of text;
    `whole`: the deflate stream must end within them. Raises zlib.error, ValueError or UnicodeDecodeError
    for the caller to name."""
    data = bytes(data)
    body, zd = (data[1:], zdict_coords) if data[:1] == bytes([_COORDS_MARK]) else (data, zdict)
    d = zlib.decompressobj(-15, zdict=zd)
    text = d.decompress(body, limit)
    if whole and (d.unconsumed_tail or not d.eof):
        raise ValueError("truncated")
    return json.loads(text.decode("utf-8"))


def unpack_meta(data: bytes) -> dict:
    try:
        meta = inflate_meta(data, _META_DICT, _META_DICT_COORDS, 1 << 16)
    except (zlib.error, ValueError, UnicodeDecodeError) as e:
        raise MscnError(f"corrupt metadata section ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise MscnError("corrupt metadata section")
    meta = {**_META_DEFAULTS, **meta}
    if not all(isinstance(meta.get(k), dict) for k in ("attrs", "lat_attrs", "lon_attrs")):
        raise MscnError("corrupt metadata section")
    try:  # streams written before the coordinates travelled have none: the field decodes 2-D, as it did
        taken = {str(meta.get(k)) for k in ("name", "lat_name", "lon_name")}
        meta["coords"] = list(_check_coords(meta["coords"], taken))
    except ValueError:
        raise MscnError("corrupt metadata section (coordinates)") from None
    return meta


# ---------------------------------------------------------------- metrics

def compare(ref: SphereField, rec: SphereField) -> dict:
    """Area-weighted RMSE and mean absolute error (field units), max absolute error, PSNR over the
    reference's value range, on the points where the reference has a value."""
    if ref.shape != rec.shape:
        raise MscnError(f"cannot compare a {ref.shape} field with a {rec.shape} one")
    ok = np.isfinite(ref.values)
    if not np.array_equal(ok, np.isfinite(rec.values)):
        raise MscnError("the missing-value masks differ")
    w = area_weights(ref.lat, len(ref.lon))[ok]
    err = (rec.values - ref.values)[ok]
    rmse = float(np.sqrt(np.sum(w * err**2) / np.sum(w)))
    rng = float(ref.values[ok].max() - ref.values[ok].min())
    return {"rmse": rmse, "mae": float(np.sum(w * np.abs(err)) / np.sum(w)), "max_abs": float(np.abs(err).max()),
            "psnr": float(20 * np.log10(rng / max(rmse, 1e-30))) if rng > 0 else float("inf")}


def time_steps(path: Path) -> int:
    """How many time steps the file's (one) lat-lon variable has (1 when it has no time dimension)."""
    with _open_nc(Path(path)) as ds:
        for v in ds.variables.values():
            try:
                _coord_dims(ds, v)
            except InputError:
                continue
            dims = [d for d in v.dimensions[:-2] if _is_time(d)]
            return len(ds.dimensions[dims[0]]) if dims else 1
    raise InputError(f"{path} holds no lat-lon variable")
