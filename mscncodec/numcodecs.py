"""``Mscn``: the mscn field codec as a numcodecs codec (``id: "mscn"``) and a zarr v3 codec, for chunks that are
global latitude-longitude fields or stacks of them.

Where climate data lives (xarray, zarr, Dask), arrays are stored chunk by chunk and a compressor sees one chunk
at a time, often only as bytes. ``Mscn`` carries the grid in its configuration (``nlat``, ``nlon``, the latitude
formula and the first longitude), so a chunk of ``k * nlat * nlon`` values is ``k`` global fields; the codec
picks the route by the number of fields it has to code:

* one field (a 2-D chunk, or a leading extent of 1): the sphere codec (``sphere_codec.encode_field``, SIREN);
* several fields (time x lat x lon, k > 1): the series codec (``series_codec.encode_series``, grid3's 3-D
  latents), which codes the steps together.

How a netCDF variable maps to chunks: chunk it ``(k, nlat, nlon)`` along time (one level per chunk where it
has levels; leading axes of extent 1 are steps too), the whole grid in every chunk. The series route codes
the redundancy between the steps of one chunk only, so longer chunks (a year of months and more) pay off;
``k = 1`` is one field per chunk on the 2-D route.

A chunk's bytes are a small header, then the sphere or series stream:

* ``b"MZ"``, a version / flags byte (bit 0: the input chunk was 2-D), the step count (uint32);
* a bitmap of the *constant* steps (every value equal, or every value missing) and their value (float64 each):
  such a step is stored exactly and never reaches a neural codec. zarr pads a chunk at the array's edge with
  the fill value (NaN for xarray's floats), and the series codec refuses a wholly missing step; a padding step
  fitted with the data would also stretch the value range that the data's error is relative to;
* the stream of the other steps (none when every step is constant).

Error targets (``rmse``, ``max_abs``) are met by ``mscncodec.targets.search_bytes``: real encodes at byte
targets, each decoded and measured, the smallest stream that meets the target kept, a ``TargetError`` naming
the best value reached otherwise.
"""

from __future__ import annotations

import math
import struct
import threading
from typing import Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray, ndarray_copy

from mscncodec.errors import BitstreamError, InputError, MscnError, RateError
from mscncodec.modalities import sphere_grid as sgrid
from mscncodec.targets import RANGES, Target, search_bytes

try:
    from mscncodec.zarr_codec import ZarrBytesForm as _ZarrForm
except ImportError:  # zarr is not installed: Mscn is a numcodecs codec only
    class _ZarrForm:  # type: ignore[no-redef]
        """Stands in for the zarr v3 form where zarr is not installed."""

MAGIC = b"MZ"
VERSION = 1
_HEAD = struct.Struct("<2sBI")  # magic, version << 4 | flags, steps
_FLAG_2D = 1
TARGETS = ("bytes", "rmse", "max_abs")
EFFORTS = ("fast", "default", "max")
DTYPES = ("<f4", "<f8")
LAT_KINDS = ("regular", "gaussian")
# the neural encoders seed torch's global generator (forked, then restored): two encodes at once in one process
# (zarr's and Dask's threads) would interleave their draws and lose determinism
_ENCODE_LOCK = threading.Lock()


class Mscn(Codec, _ZarrForm):
    """Lossy codec for global lat-lon fields, with the missing-value mask kept exactly.

    Exactly one target per chunk: ``bytes`` (the stream lands at or under it), ``rmse`` (area-weighted RMSE,
    as ``sphere.compare`` / ``series.compare_series``) or ``max_abs`` (largest absolute error over the
    points with a value), both in the variable's units. The grid: ``nlat`` x ``nlon`` points, latitudes
    ``lat`` = "regular" (``lat_first`` to ``lat_last`` inclusive; default -90 to 90) or "gaussian" (south
    first unless ``lat_first`` > 0), longitudes from ``lon_first`` round the circle. ``dtype`` ("<f4" or
    "<f8") is the chunk's element type, ``effort`` / ``steps`` the encoder's (as ``mscn encode``),
    ``tries`` the most encodes an error target may cost per chunk. ``Mscn.for_dataarray(da, bytes=...)``
    reads the grid from an xarray DataArray.

    Example::

        import numcodecs, xarray as xr
        from mscncodec.numcodecs import Mscn
        da = xr.open_dataset("ts.nc", decode_times=False).TS           # time x lat x lon, float32
        codec = Mscn.for_dataarray(da, rmse=0.5, effort="fast")
        data = codec.encode(da.values[:12])                               # one chunk of 12 steps
        values = codec.decode(data)                                       # (12, nlat, nlon) float32, NaN kept
        assert numcodecs.get_codec(codec.get_config()) == codec

    With zarr v3 (xarray): ``ds.to_zarr(store, zarr_format=3, encoding={"TS": {"compressors": [codec],
    "chunks": (12, nlat, nlon)}})``, read back by ``xr.open_zarr(store)``; ``MscnArray`` is the same codec as
    a ``serializer``.

    Guarantees and requirements:

    * exact: the missing-value mask (NaN where the chunk had NaN or +-inf, nowhere else), steps whose values
      are all equal (zarr's padding with the fill value among them), and determinism (the same chunk and
      configuration give the same bytes on every run);
    * bounded: ``bytes`` bounds the chunk's size; ``rmse`` / ``max_abs`` bound the error *measured* on the
      decoded chunk (as this codec returns it, in ``dtype``) at the time of encoding, or the encode raises a
      ``TargetError`` naming the best value reached: never silently missed;
    * requires: chunks of whole global fields (``k * nlat * nlon`` values, the grid of the configuration),
      finite values up to 1e30 in magnitude; encodes in one process run one at a time (see _ENCODE_LOCK):
      parallelism comes from processes (Dask workers), not threads.
    """

    codec_id = "mscn"
    is_fixed_size = False  # zarr v3: the stream's size depends on the chunk

    def __init__(self, *, nlat: int, nlon: int, bytes: int | None = None, rmse: float | None = None,
                 max_abs: float | None = None, lat: str = "regular", lat_first: float | None = None,
                 lat_last: float | None = None, lon_first: float = 0.0, dtype: str = "<f4", effort: str = "default",
                 steps: int | None = None, tries: int = 8) -> None:
        given = {k: v for k, v in (("bytes", bytes), ("rmse", rmse), ("max_abs", max_abs)) if v is not None}
        if len(given) != 1:
            raise MscnError(f"give exactly one target per chunk: bytes, rmse or max_abs (got "
                            f"{', '.join(given) or 'none'})")
        if bytes is not None and (isinstance(bytes, bool) or not isinstance(bytes, (int, np.integer)) or bytes <= 0):
            raise MscnError(f"bytes must be a positive whole number of bytes per chunk, got {bytes!r}")
        for name in ("rmse", "max_abs"):
            v = given.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float, np.number))
                                  or not math.isfinite(v) or v <= 0):
                raise MscnError(f"{name} must be a positive number, got {v!r}")
        for name, v in (("nlat", nlat), ("nlon", nlon)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise MscnError(f"{name} must be a positive whole number, got {v!r}")
        if lat not in LAT_KINDS:
            raise MscnError(f"lat must be one of {', '.join(LAT_KINDS)}, got {lat!r}")
        for name, v in (("lat_first", lat_first), ("lat_last", lat_last), ("lon_first", lon_first)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float, np.number))
                                  or not math.isfinite(v)):
                raise MscnError(f"{name} must be a finite number, got {v!r}")
        dt = np.dtype(dtype).str if _is_dtype(dtype) else dtype
        if dt not in DTYPES:
            raise MscnError(f"dtype must be one of {', '.join(DTYPES)} (float32, float64), got {dtype!r}")
        if effort not in EFFORTS:
            raise MscnError(f"effort must be one of {', '.join(EFFORTS)}, got {effort!r}")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
            raise MscnError(f"steps must be a positive whole number, got {steps!r}")
        if isinstance(tries, bool) or not isinstance(tries, (int, np.integer)) or tries < 1:
            raise MscnError(f"tries must be a positive whole number, got {tries!r}")
        self.bytes = None if bytes is None else int(bytes)
        self.rmse = None if rmse is None else float(rmse)
        self.max_abs = None if max_abs is None else float(max_abs)
        self.nlat, self.nlon = int(nlat), int(nlon)
        self.lat = lat
        self.lat_first = None if lat_first is None else float(lat_first)
        self.lat_last = None if lat_last is None else float(lat_last)
        self.lon_first = float(lon_first)
        self.dtype = dt
        self.effort = effort
        self.steps = None if steps is None else int(steps)
        self.tries = int(tries)
        self._lats, self._lons = self._grid()

    # ------------------------------------------------------------ configuration

    def _grid(self) -> tuple[np.ndarray, np.ndarray]:
        """The configured latitudes and longitudes (float32, as the streams' header formulas give them)."""
        if self.lat == "gaussian":
            lats = sgrid.gaussian_latitudes(self.nlat, north_first=self.lat_first is not None and self.lat_first > 0)
        else:
            first = -90.0 if self.lat_first is None else self.lat_first
            last = -first if self.lat_last is None else self.lat_last
            lats = sgrid.regular_latitudes(self.nlat, first, last)
        lons = sgrid.regular_longitudes(self.nlon, self.lon_first)
        sgrid.check_global(lats, lons)
        return lats, lons

    def get_config(self) -> dict[str, Any]:
        """The configuration (JSON), without the options left at None."""
        keys = ("bytes", "rmse", "max_abs", "nlat", "nlon", "lat", "lat_first", "lat_last", "lon_first", "dtype",
                "effort", "steps", "tries")
        return {"id": self.codec_id} | {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Mscn:
        return cls(**{k: v for k, v in config.items() if k != "id"})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mscn) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.get_config().items())))

    def __repr__(self) -> str:
        return f"Mscn({', '.join(f'{k}={v!r}' for k, v in self.get_config().items() if k != 'id')})"

    @property
    def target(self) -> tuple[str, float]:
        """(name, value) of the target per chunk."""
        return next((k, getattr(self, k)) for k in TARGETS if getattr(self, k) is not None)

    @classmethod
    def for_dataarray(cls, da, **params) -> Mscn:
        """The codec for an xarray DataArray whose last two dimensions are a global (lat, lon) grid: nlat, nlon,
        the latitude formula (regular or Gaussian, either order), lon_first and dtype from its coordinates;
        the target and the encoder's options from `params`. A one-line MscnError unless the coordinates are
        such a grid."""
        if da.ndim < 2:
            raise InputError(f"variable {da.name!r} has {da.ndim} dimension(s): a field needs (..., lat, lon)")
        ydim, xdim = da.dims[-2:]
        if ydim not in da.coords or xdim not in da.coords:
            raise InputError(f"variable {da.name!r} has no coordinates for {ydim!r} and {xdim!r}: the grid is unknown")
        lat = np.asarray(da[ydim].values, np.float64).reshape(-1)
        lon = np.asarray(da[xdim].values, np.float64).reshape(-1)
        if not (_is_axis(da[ydim], "lat") and _is_axis(da[xdim], "lon")):
            raise InputError(f"variable {da.name!r} ends with dimensions ({ydim}, {xdim}), not (lat, lon): transpose "
                             "it so the last two are latitude and longitude")
        sgrid.check_global(lat.astype(np.float32), lon.astype(np.float32))
        kind = _lat_formula(lat)
        if kind is None:
            raise InputError(f"the {len(lat)} latitudes of {da.name!r} are neither regular nor Gaussian (from "
                             f"{lat[0]:g} to {lat[-1]:g}): mscn codes global regular or Gaussian grids")
        if not np.issubdtype(da.dtype, np.floating) or np.dtype(da.dtype).itemsize not in (4, 8):
            raise InputError(f"variable {da.name!r} is {da.dtype}: mscn codes float32 or float64 fields "
                             "(convert with .astype('float32'))")
        grid = {"nlat": len(lat), "nlon": len(lon), "lat": kind, "lon_first": float(lon[0]),
                "dtype": np.dtype(da.dtype).newbyteorder("<").str}
        grid |= {"lat_first": float(lat[0])} | ({"lat_last": float(lat[-1])} if kind == "regular" else {})
        return cls(**grid, **params)

    # ------------------------------------------------------------ numcodecs

    def encode(self, buf):
        """A chunk (an ndarray ending in (nlat, nlon), or the bytes of k whole fields in ``dtype``) -> bytes."""
        if isinstance(buf, zip):  # zarr v3's codec pipeline hands a bytes-to-bytes codec a batch of (chunk, spec)
            return self._zarr_encode_batch(buf)
        values, flat2d = self._as_chunk(buf)
        return self.encode_chunk(values, two_d=flat2d)

    def decode(self, buf, out=None):
        """Bytes -> the chunk's values in ``dtype`` ((nlat, nlon) for a 2-D chunk, else (k, nlat, nlon)), NaN at
        exactly the missing points; copied into `out` where given."""
        if isinstance(buf, zip):  # zarr v3's batch (see encode)
            return self._zarr_decode_batch(buf)
        values = self.decode_chunk(bytes(ensure_contiguous_ndarray(buf)))
        return ndarray_copy(values, out) if out is not None else values

    def _as_chunk(self, buf) -> tuple[np.ndarray, bool]:
        """(values (k, nlat, nlon) float64, whether the input was 2-D) of what encode received."""
        arr = np.asarray(buf) if isinstance(buf, np.ndarray) else None
        if arr is not None and arr.dtype.kind == "f":
            if arr.ndim >= 2 and arr.shape[-2:] == (self.nlat, self.nlon):
                return arr.reshape(-1, self.nlat, self.nlon).astype(np.float64), arr.ndim == 2
            flat = arr.reshape(-1)
        else:
            raw = ensure_contiguous_ndarray(buf).view(np.uint8).reshape(-1)
            item = np.dtype(self.dtype).itemsize
            if raw.size % item:
                raise InputError(f"a chunk of {raw.size} bytes is not whole {self.dtype} values")
            flat = raw.view(self.dtype)
        per = self.nlat * self.nlon
        if flat.size == 0 or flat.size % per:
            raise InputError(f"a chunk of {flat.size} values is not whole {self.nlat} x {self.nlon} fields: chunk the "
                             f"array as (k, {self.nlat}, {self.nlon})")
        return flat.reshape(-1, self.nlat, self.nlon).astype(np.float64), False

    # ------------------------------------------------------------ a chunk

    def encode_chunk(self, values: np.ndarray, two_d: bool = False) -> bytes:
        """The stream of a chunk `values` (k, nlat, nlon) (see the module docstring for its layout)."""
        values = np.asarray(values, np.float64)
        if values.ndim != 3 or values.shape[1:] != (self.nlat, self.nlon):
            raise InputError(f"a chunk is (k, {self.nlat}, {self.nlon}), got {values.shape}")
        values = np.where(np.isinf(values), np.nan, np.asarray(values, np.dtype(self.dtype)).astype(np.float64))
        k = values.shape[0]
        const = np.array([_constant(v) for v in values])
        consts = [float(values[i].flat[0]) for i in np.flatnonzero(const)]
        head = (_HEAD.pack(MAGIC, VERSION << 4 | (_FLAG_2D if two_d else 0), k) + np.packbits(const).tobytes()
                + np.asarray(consts, "<f8").tobytes())
        coded = values[~const]
        if len(coded) == 0:
            if self.bytes is not None and len(head) > self.bytes:
                raise RateError(f"bytes={self.bytes} per chunk is below the {len(head)} bytes of this chunk's header")
            return head
        with _ENCODE_LOCK:
            return self._encode_steps(coded, head)

    def _encode_steps(self, coded: np.ndarray, head: bytes) -> bytes:
        """`head` and the sphere (one step) or series (several) stream of the non-constant steps, at the target
        (the error targets search the size of the whole chunk)."""
        name, value = self.target
        if name == "bytes":
            try:
                return head + self._stream(coded, value - len(head))
            except RateError as e:
                raise RateError(f"bytes={value} per chunk is too small for a {len(coded)} x {self.nlat} x "
                                f"{self.nlon} chunk: {e}") from None
        # the byte range `mscn encode --rmse` searches for the route's modality, plus this chunk's header
        start, lo, hi = (n + len(head) for n in RANGES["sphere" if len(coded) == 1 else "series"].bytes(coded.size))

        def measure(data: bytes, _) -> float:
            return self._errors(coded, self._decode_steps(data[len(head):], len(coded)))[name]

        found = search_bytes(Target(name, value), lambda n: (head + self._stream(coded, n - len(head)), None),
                             measure, start=start, lo=lo, hi=hi, max_tries=self.tries)
        return found.data

    def _stream(self, coded: np.ndarray, target_bytes: int) -> bytes:
        if target_bytes < 1:
            raise RateError(f"no bytes left for the values after the chunk's header ({target_bytes})")
        opts = {"target_bytes": int(target_bytes), "effort": self.effort, "steps": self.steps}
        if len(coded) == 1:
            from mscncodec.modalities import sphere as smod
            from mscncodec.modalities.sphere_codec import encode_field

            return encode_field(smod.SphereField(coded[0].copy(), self._lats, self._lons), **opts)
        from mscncodec.modalities import series as ser
        from mscncodec.modalities.series_codec import encode_series

        return encode_series(ser.SeriesField(coded.copy(), self._lats, self._lons), **opts)

    def _errors(self, ref: np.ndarray, rec: np.ndarray) -> dict:
        """rmse / max_abs of the decoded steps `rec` against `ref` (series.compare_series's definitions)."""
        from mscncodec.modalities import series as ser

        return ser.compare_series(ser.SeriesField(ref, self._lats, self._lons), rec)

    def decode_chunk(self, data: bytes) -> np.ndarray:
        """A chunk's values in ``dtype``, (nlat, nlon) where the input was 2-D, else (k, nlat, nlon)."""
        if len(data) < _HEAD.size:
            raise BitstreamError(f"not an mscn chunk ({len(data)} bytes)")
        magic, vf, k = _HEAD.unpack_from(data)
        if magic != MAGIC or vf >> 4 != VERSION:
            raise BitstreamError("not an mscn chunk (wrong magic or version)")
        nb = (k + 7) // 8
        if k < 1 or len(data) < _HEAD.size + nb:
            raise BitstreamError("corrupted mscn chunk (header)")
        const = np.unpackbits(np.frombuffer(data, np.uint8, nb, _HEAD.size), count=k).astype(bool)
        at = _HEAD.size + nb
        nc = int(const.sum())
        if len(data) < at + 8 * nc:
            raise BitstreamError("corrupted mscn chunk (constant steps)")
        consts = np.frombuffer(data, "<f8", nc, at)
        at += 8 * nc
        if nc == k and len(data) != at:
            raise BitstreamError("corrupted mscn chunk (bytes after the constant steps)")
        # the coded steps first: their stream bounds what a header may claim before anything is allocated
        coded = self._decode_steps(data[at:], k - nc) if nc < k else None
        out = np.empty((k, self.nlat, self.nlon), np.dtype(self.dtype))
        out[const] = consts[:, None, None]
        if coded is not None:
            out[~const] = coded
        return out[0] if vf & _FLAG_2D and k == 1 else out

    def _decode_steps(self, data: bytes, k: int) -> np.ndarray:
        """The (k, nlat, nlon) values in ``dtype`` of the sphere (k = 1) or series stream `data`."""
        if k == 1:
            from mscncodec.modalities.sphere_codec import decode_field

            v = decode_field(data).values[None]
        else:
            from mscncodec.modalities.series_codec import decode_series

            v = decode_series(data).values
        if v.shape != (k, self.nlat, self.nlon):
            raise BitstreamError(f"the chunk's stream holds {' x '.join(map(str, v.shape))} values, the codec's "
                                 f"grid is {k} x {self.nlat} x {self.nlon}")
        return v.astype(np.dtype(self.dtype))


def _constant(step: np.ndarray) -> bool:
    """Whether every value of a step is the same (all missing counts): stored exactly, not coded."""
    first = step.flat[0]
    return bool(np.all(np.isnan(step))) if np.isnan(first) else bool(np.all(step == first))


def _is_dtype(d: object) -> bool:
    try:
        return np.dtype(d).kind == "f"
    except TypeError:
        return False


def _is_axis(coord, axis: str) -> bool:
    """Whether a coordinate is latitude (`axis` "lat") or longitude ("lon") by its name or its CF attributes."""
    from mscncodec.modalities.sphere import LAT_NAMES, LON_NAMES

    names = LAT_NAMES if axis == "lat" else LON_NAMES
    units = ("degrees_north", "degree_north", "degrees_N") if axis == "lat" else ("degrees_east", "degree_east",
                                                                                  "degrees_E")
    std = "latitude" if axis == "lat" else "longitude"
    a = coord.attrs
    return str(coord.name).lower() in names or a.get("units") in units or a.get("standard_name") == std


def _lat_formula(lat: np.ndarray) -> str | None:
    """"gaussian" or "regular" where that formula gives these latitudes to a thousandth of their spacing."""
    tol = 1e-3 * 180.0 / len(lat)
    g = sgrid.gaussian_latitudes(len(lat), north_first=lat[0] > lat[-1]).astype(np.float64)
    if np.max(np.abs(g - lat)) <= tol:
        return "gaussian"
    r = sgrid.regular_latitudes(len(lat), float(lat[0]), float(lat[-1])).astype(np.float64)
    return "regular" if np.max(np.abs(r - lat)) <= tol else None
