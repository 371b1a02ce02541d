"""The geometry of a global latitude-longitude grid: latitude formulas (regular, Gaussian) and the exact
corrections when a file's latitudes differ from the formula, the embedding of grid points as unit vectors
of R^3, area weights, the points a fit sees, and the value mapping to [-1, 1]. Knows no file format."""

from __future__ import annotations

import zlib

import numpy as np

from mscncodec.container.bitstream import MAX_LAT, MAX_LON, MAX_PIXELS
from mscncodec.errors import InputError, MscnError

MAX_POINTS = MAX_PIXELS  # the same bound as an image's pixels


def _legendre(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(P_n(x), P_n'(x)) by the three-term recurrence, vectorised over x (|x| < 1): O(n * len(x))."""
    p0, p1, t = np.ones_like(x), x.copy(), np.empty_like(x)
    for j in range(1, n):  # P_{j+1} = ((2j + 1) x P_j - j P_{j-1}) / (j + 1), in place
        np.multiply(x, p1, out=t)
        t *= (2 * j + 1) / (j + 1)
        p0 *= j / (j + 1)
        t -= p0
        p0, p1, t = p1, t, p0
    return p1, n * (x * p1 - p0) / (x * x - 1)


def gaussian_nodes(n: int) -> np.ndarray:
    """The n roots of the Legendre polynomial P_n, ascending (float64): numpy's leggauss nodes without its
    O(n^3) eigenvalue problem (the measurements: docs/decoder-cost.md).

    Newton's method on the recurrence from Tricomi's asymptotic guesses, on the roots >= 0 only (the others
    are their mirror images), each root iterated until its step is under 1e-14 (two or three steps: the
    guesses are within ~1e-10). The nodes agree with leggauss's to 1.1e-16, and their float32 latitudes are
    identical to leggauss's for every n in 1..700 and the usual larger grids up to 2048
    (tests/test_decode_bounds.py), so streams written with leggauss decode to the same coordinates."""
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    if n == 1:
        return np.zeros(1)
    m = (n + 1) // 2
    k = np.arange(1, m + 1)
    x = (1 - 1 / (8 * n**2) + 1 / (8 * n**3)) * np.cos(np.pi * (4 * k - 1) / (4 * n + 2))  # largest first
    todo = np.arange(m)
    for _ in range(20):
        if not len(todo):
            break
        p, dp = _legendre(x[todo], n)
        step = p / dp
        x[todo] -= step
        todo = todo[np.abs(step) > 1e-14]
    out = np.concatenate([-x, x[::-1][n % 2:]])
    if n % 2:
        out[m - 1] = 0.0  # +0.0 as leggauss has it: corrections() compares bit patterns
    return out


def gaussian_latitudes(n: int, north_first: bool = False) -> np.ndarray:
    """The n Gaussian latitudes (degrees, float32), south to north unless north_first."""
    lat = np.degrees(np.arcsin(gaussian_nodes(n))).astype(np.float32)
    return lat[::-1].copy() if north_first else lat


def regular_latitudes(n: int, first: float, last: float) -> np.ndarray:
    """n equally spaced latitudes from first to last inclusive (float32, computed in float64)."""
    if n == 1:
        return np.array([first], np.float32)
    return (np.float64(first) + np.arange(n) * ((np.float64(last) - np.float64(first)) / (n - 1))).astype(np.float32)


def regular_longitudes(n: int, first: float) -> np.ndarray:
    """n longitudes equally spaced over the full circle from first (float32, computed in float64)."""
    return (np.float64(first) + np.arange(n) * (360.0 / n)).astype(np.float32)


def lat_kind(lat: np.ndarray) -> int:
    """The formula that reproduces these latitudes best (corrections travel for the rest)."""
    lat = lat.astype(np.float32)
    g = gaussian_latitudes(len(lat), north_first=len(lat) > 1 and lat[0] > lat[-1])
    r = regular_latitudes(len(lat), float(lat[0]), float(lat[-1]))
    return 1 if np.count_nonzero(g != lat) < np.count_nonzero(r != lat) else 0


def latitudes(kind: int, n: int, first: float, last: float) -> np.ndarray:
    if kind == 1:
        return gaussian_latitudes(n, north_first=n > 1 and first > last)
    return regular_latitudes(n, first, last)


def corrections(exact: np.ndarray, formula: np.ndarray) -> bytes:
    """The bit-pattern differences that turn the formula's float32 coordinates into the file's exactly
    (zlib; empty when the formula is exact: the usual case)."""
    d = exact.astype(np.float32).view(np.int32).astype(np.int64) - formula.astype(np.float32).view(np.int32)
    return b"" if not d.any() else zlib.compress(d.astype(np.int32).tobytes(), 9)


def apply_corrections(formula: np.ndarray, data: bytes) -> np.ndarray:
    if not data:
        return formula
    try:
        d = np.frombuffer(zlib.decompress(data, bufsize=4 * len(formula) + 64), np.int32)
    except zlib.error as e:
        raise MscnError(f"corrupt coordinate section ({e})") from None
    if len(d) != len(formula):
        raise MscnError("corrupt coordinate section (wrong length)")
    return (formula.view(np.int32).astype(np.int64) + d).astype(np.int32).view(np.float32)


def check_global(lat: np.ndarray, lon: np.ndarray) -> None:
    """A one-line InputError unless (lat, lon) is a global latitude-longitude grid the codec can carry."""
    nlat, nlon = len(lat), len(lon)
    if nlat < 2 or nlon < 4:
        raise InputError(f"a global field needs at least 2 latitudes and 4 longitudes, got {nlat} x {nlon}")
    if nlat > MAX_LAT or nlon > MAX_LON or nlat * nlon > MAX_POINTS:
        raise InputError(f"grid {nlat} x {nlon} is too large (at most {MAX_LAT} x {MAX_LON} and {MAX_POINTS} points)")
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        raise InputError("latitudes or longitudes are not finite")
    if np.any(np.abs(lat) > 90.0):
        raise InputError(f"latitudes out of [-90, 90] (from {lat.min():g} to {lat.max():g}): not a lat-lon grid")
    d = np.diff(lat.astype(np.float64))
    if not (np.all(d > 0) or np.all(d < 0)):
        raise InputError("latitudes are not monotonic: not a lat-lon grid")
    if abs(lat[0] - lat[-1]) < 120.0:
        raise InputError(f"latitudes span {lat.min():g} to {lat.max():g} only: not a global field "
                         "(the sphere codec needs pole-to-pole coverage; use the image codec for regional data)")
    formula = regular_longitudes(nlon, float(lon[0]))
    if np.max(np.abs(formula.astype(np.float64) - lon)) > 1e-3 * 360.0 / nlon:
        raise InputError(f"longitudes are not {nlon} equal steps around the whole circle "
                         f"(from {lon[0]:g} by {lon[1] - lon[0]:g}): not a global field")


# ---------------------------------------------------------------- the sphere

def embed(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(nlat * nlon, 3) float32 unit vectors of the grid points, row-major (latitude first)."""
    la, lo = np.meshgrid(np.radians(lat.astype(np.float64)), np.radians(lon.astype(np.float64)), indexing="ij")
    xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], -1)
    return xyz.reshape(-1, 3).astype(np.float32)


def area_weights(lat: np.ndarray, nlon: int) -> np.ndarray:
    """(nlat, nlon) weights proportional to the area a point stands for (cos lat), mean 1."""
    w = np.cos(np.radians(lat.astype(np.float64)))
    w = np.clip(w, 0.0, None)
    w = np.repeat(w[:, None], nlon, 1)
    return w / w.mean()


def fit_points(lat: np.ndarray, nlon: int, mask: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat indices, weights with mean 1) of the grid points an encoder fits: all of them when the grid
    has at most `max_points`, else evenly spaced points along each row, as many as the row's share of
    the sphere's area (a 1-degree grid has as many points at 89N as at the equator: they cost fit time
    and carry 1/57 of the weight). A point's weight is the area it stands for; missing values weigh 0.
    Deterministic, so encodes repeat to the byte."""
    nlat = len(lat)
    area = np.clip(np.cos(np.radians(lat.astype(np.float64))), 0.0, None)
    if nlat * nlon <= max_points:
        keep = np.full(nlat, nlon)
    else:
        scale = max_points / max(area.sum() * nlon, 1e-12)
        keep = np.clip(np.round(area * nlon * scale), 1, nlon).astype(np.int64)
    idx, w = [], []
    for r in range(nlat):
        cols = np.unique(np.round(np.arange(keep[r]) * (nlon / keep[r])).astype(np.int64) % nlon)
        idx.append(r * nlon + cols)
        w.append(np.full(len(cols), area[r] * nlon / len(cols)))
    idx, w = np.concatenate(idx), np.concatenate(w)
    w = w * ~mask.reshape(-1)[idx]
    return idx, w / max(w.mean(), 1e-30)


def value_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values as float32 (what the header stores); (0, 0) when all are missing."""
    ok = values[np.isfinite(values)]
    if ok.size == 0:
        return 0.0, 0.0
    return float(np.float32(ok.min())), float(np.float32(ok.max()))


def normalise(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Values to [-1, 1] by the stored range (missing values to 0: they carry weight 0)."""
    mid, half = 0.5 * (vmin + vmax), max(0.5 * (vmax - vmin), 1e-30)
    out = (values - mid) / half
    return np.where(np.isfinite(out), out, 0.0)


def denormalise(y: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    mid, half = 0.5 * (vmin + vmax), 0.5 * (vmax - vmin)
    return np.clip(y, -1.0, 1.0) * half + mid
