"""Occupancy grids ("3D shapes"): binvox / .npy I/O, mesh voxelisation and occupancy metrics.

A grid is a 3-D boolean array ``occ[x, y, z]`` with a binvox placement: the grid spans the cube
``translate + [0, scale]^3`` along its longest side, so voxel (i, j, k) has its centre at
``translate + scale * ((i, j, k) + 0.5) / max(shape)`` in the source's frame.

binvox (https://www.patrickmin.com/binvox/binvox.html) stores the voxels run-length coded as
(value, count) byte pairs in the order ``index = x * (width * height) + z * width + y`` — y fastest,
then z, then x — after a header ``dim depth height width``; so the header's dims are
(nx, nz, ny) and the data is the array ``occ.transpose(0, 2, 1)`` in C order (as binvox's own
reader and binvox-rw-py read it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mscncodec.errors import InputError

EXTENSIONS = (".binvox", ".npy")
MAX_SIDE = 1024
MAX_VOXELS = 512**3
MAX_FILE_BYTES = 1 << 30
_MAX_HEADER_LINES = 16  # the four binvox header lines, with room for blank ones
_CHUNK = 1 << 18  # winding-number query points per call: 128^3 voxelises in bounded memory


@dataclass
class VoxelGrid:
    """A boolean occupancy grid occ[x, y, z] and where it sits (binvox's translate and scale)."""

    occ: np.ndarray
    translate: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    name: str = "voxels"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.occ.shape)  # type: ignore[return-value]

    def centres(self, index: np.ndarray) -> np.ndarray:
        """Voxel indices (n, 3) -> their centres in the source's frame."""
        return np.asarray(self.translate, np.float64) + self.scale * (np.asarray(index, np.float64) + 0.5) / max(self.shape)


def check_shape(shape: tuple[int, ...], what: str = "grid") -> None:
    if len(shape) != 3:
        raise InputError(f"an occupancy {what} is 3-D, got {len(shape)}-D")
    if min(shape) < 1:
        raise InputError(f"the occupancy {what} is empty ({'x'.join(map(str, shape))} voxels)")
    if max(shape) > MAX_SIDE:
        raise InputError(f"the occupancy {what} is {'x'.join(map(str, shape))}: at most {MAX_SIDE} voxels per side")
    if math.prod(shape) > MAX_VOXELS:
        raise InputError(f"the occupancy {what} is {'x'.join(map(str, shape))}: at most {MAX_VOXELS} voxels in all")


def validate(g: VoxelGrid) -> VoxelGrid:
    """Check the grid's shape and placement; the occupancy becomes a C-ordered bool array."""
    occ = np.asarray(g.occ)
    check_shape(occ.shape)
    if occ.dtype != np.bool_:
        occ = _as_bool(occ)
    t = tuple(float(v) for v in g.translate)
    if len(t) != 3 or not all(math.isfinite(v) for v in t):
        raise InputError(f"the grid's translate must be 3 finite numbers, got {g.translate}")
    if not (math.isfinite(g.scale) and g.scale > 0):
        raise InputError(f"the grid's scale must be a positive finite number, got {g.scale}")
    return VoxelGrid(np.ascontiguousarray(occ), t, float(g.scale), g.name)  # type: ignore[arg-type]


def _as_bool(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind not in "biuf":
        raise InputError(f"a 3-D .npy of occupancy must be boolean or 0/1, got dtype {a.dtype}")
    if a.dtype.kind != "b" and not np.isin(a, (0, 1)).all():
        bad = a[~np.isin(a, (0, 1))].flat[0]
        raise InputError(f"a 3-D .npy of occupancy must be boolean or 0/1, got the value {bad}")
    return a.astype(bool)


# ---------------------------------------------------------------- binvox

def read_binvox(data: bytes) -> VoxelGrid:
    """Parse a binvox file (strictly: any malformed header or run is an InputError)."""
    data = bytes(data)
    pos, dims, translate, scale = 0, None, (0.0, 0.0, 0.0), 1.0
    for n in range(_MAX_HEADER_LINES + 1):
        end = data.find(b"\n", pos)
        if end < 0 or n == _MAX_HEADER_LINES:
            raise InputError("not a binvox file: the header has no 'data' line")
        line = data[pos:end].strip()
        pos = end + 1
        try:
            words = line.decode("ascii").split()
        except UnicodeDecodeError:
            raise InputError("not a binvox file: the header is not text") from None
        if n == 0:
            if len(words) != 2 or words[0] != "#binvox":
                raise InputError("not a binvox file: it does not start with '#binvox'")
            if words[1] != "1":
                raise InputError(f"unsupported binvox version {words[1]!r} (only 1)")
            continue
        if not words:
            continue
        key, vals = words[0], words[1:]
        if key == "data" and not vals:
            break
        try:
            if key == "dim" and len(vals) == 3:
                dims = tuple(int(v) for v in vals)
            elif key == "translate" and len(vals) == 3:
                translate = tuple(float(v) for v in vals)
            elif key == "scale" and len(vals) == 1:
                scale = float(vals[0])
            else:
                raise ValueError
        except ValueError:
            raise InputError(f"bad binvox header line {line[:60].decode('ascii', 'replace')!r}") from None
    if dims is None:
        raise InputError("bad binvox header: no 'dim' line")
    if min(dims) < 1:
        raise InputError(f"bad binvox header: dimensions {' '.join(map(str, dims))} must be positive")
    nx, nz, ny = dims
    check_shape((nx, ny, nz))
    size = nx * ny * nz
    body = np.frombuffer(data, np.uint8, offset=pos)
    if body.size % 2:
        raise InputError("binvox data is truncated (an odd number of run bytes)")
    values, counts = body[0::2], body[1::2]
    if values.size and values.max() > 1:
        raise InputError(f"binvox data has a run value {int(values.max())} (must be 0 or 1)")
    if counts.size and counts.min() == 0:
        raise InputError("binvox data has a run of length 0")
    total = int(counts.sum(dtype=np.int64))
    if total > size:
        raise InputError(f"binvox runs cover {total} voxels, more than the {nx}x{nz}x{ny} grid's {size}")
    if total < size:
        raise InputError(f"binvox data is truncated: its runs cover {total} of the grid's {size} voxels")
    flat = np.repeat(values.astype(bool), counts)
    occ = np.ascontiguousarray(flat.reshape(nx, nz, ny).transpose(0, 2, 1))
    g = VoxelGrid(occ, translate, scale)  # type: ignore[arg-type]
    if not all(math.isfinite(v) for v in translate) or not (math.isfinite(scale) and scale > 0):
        raise InputError(f"bad binvox header: translate {translate} / scale {scale} must be finite, scale positive")
    return g


def write_binvox(g: VoxelGrid) -> bytes:
    """The grid as a binvox file (runs of at most 255)."""
    g = validate(g)
    nx, ny, nz = g.shape
    flat = g.occ.transpose(0, 2, 1).ravel()
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    lengths = np.diff(np.concatenate([starts, [flat.size]]))
    pairs = (lengths + 254) // 255  # a run longer than 255 is split into several pairs
    values = np.repeat(flat[starts].astype(np.uint8), pairs)
    counts = np.full(values.size, 255, np.int64)
    last = np.cumsum(pairs) - 1
    counts[last] = lengths - 255 * (pairs - 1)
    body = np.empty(2 * values.size, np.uint8)
    body[0::2], body[1::2] = values, counts.astype(np.uint8)
    tx, ty, tz = g.translate
    header = f"#binvox 1\ndim {nx} {nz} {ny}\ntranslate {tx!r} {ty!r} {tz!r}\nscale {g.scale!r}\ndata\n"
    return header.encode("ascii") + body.tobytes()


# ---------------------------------------------------------------- files

def _npy_shape(path: Path) -> tuple[int, ...] | None:
    """The shape in a .npy file's header (None if it is not a .npy); the data is not read."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0,
                    (3, 0): np.lib.format.read_array_header_2_0}.get(version)
            return None if read is None else tuple(read(f)[0])
    except (ValueError, OSError, EOFError, SyntaxError):
        return None


def is_voxel_npy(path: str | Path) -> bool:
    """True for a .npy whose header says it is 3-D (the data is not read)."""
    path = Path(path)
    if path.suffix.lower() != ".npy" or not path.is_file():
        return False
    shape = _npy_shape(path)
    return shape is not None and len(shape) == 3


def load(src: str | Path | VoxelGrid) -> VoxelGrid:
    """A grid from a .binvox file or a 3-D .npy (bool, or numbers all 0 or 1)."""
    if isinstance(src, VoxelGrid):
        return validate(src)
    path = Path(src)
    if path.is_dir():
        raise InputError(f"cannot read {path}: it is a directory, not a voxel file")
    if not path.is_file():
        raise InputError(f"cannot read {path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise InputError(f"cannot read {path}: unknown voxel extension {path.suffix!r} ({', '.join(EXTENSIONS)})")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"cannot read {path}: the file is empty")
    if size > MAX_FILE_BYTES:
        raise InputError(f"cannot read {path}: {size} bytes is beyond this codec's limit of {MAX_FILE_BYTES}")
    try:
        if suffix == ".binvox":
            g = read_binvox(path.read_bytes())
        else:
            g = VoxelGrid(_read_npy(path))
    except InputError as e:
        raise InputError(f"cannot read {path}: {e}") from None
    g.name = path.stem
    return validate(g)


def _read_npy(path: Path) -> np.ndarray:
    shape = _npy_shape(path)
    if shape is None:
        raise InputError("not a .npy array")
    check_shape(shape)
    try:
        a = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"not a .npy array ({e})") from None
    try:
        return _as_bool(np.asarray(a))
    except ValueError as e:  # a file shorter than its header says
        raise InputError(f"not a .npy array ({e})") from None


def write(g: VoxelGrid, suffix: str) -> bytes:
    """Grid -> file bytes for an extension (.binvox, or .npy of bool)."""
    suffix = suffix.lower()
    if suffix == ".binvox":
        return write_binvox(g)
    if suffix == ".npy":
        import io

        buf = io.BytesIO()
        np.save(buf, validate(g).occ, allow_pickle=False)
        return buf.getvalue()
    raise InputError(f"cannot write voxels as {suffix!r} (use {', '.join(EXTENSIONS)})")


# ---------------------------------------------------------------- voxelisation

def voxelise(vertices: np.ndarray, faces: np.ndarray, resolution: int, pad: int = 1) -> VoxelGrid:
    """Occupancy of a mesh on a resolution^3 grid: its bounding box centred in the cube, the longest side
    spanning resolution - 2 * pad voxels; inside = |generalised winding number| > 0.5 at voxel centres (the
    magnitude: a mesh facing inwards has w ~ -1 inside), each edge-connected patch wound consistently first."""
    from mscncodec.modalities.mesh import orient_consistently, winding_numbers

    if not 2 * pad < resolution <= MAX_SIDE or pad < 0:
        raise InputError(f"resolution {resolution} with {pad} voxels of padding: need 2 * pad < resolution <= {MAX_SIDE}")
    v, f = np.asarray(vertices, np.float64).reshape(-1, 3), np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f) == 0:
        raise InputError("the mesh has no faces")
    f = orient_consistently(f)
    used = v[np.unique(f)]
    lo, hi = used.min(0), used.max(0)
    h = (hi - lo).max() / (resolution - 2 * pad)
    if not h > 0:
        raise InputError("the mesh is degenerate (all vertices at one point)")
    translate = (lo + hi) / 2 - resolution * h / 2
    scale = resolution * h
    axis = translate[:, None] + h * (np.arange(resolution) + 0.5)[None, :]  # voxel centres per axis
    yz = np.stack(np.meshgrid(axis[1], axis[2], indexing="ij"), -1).reshape(-1, 2)
    occ = np.zeros((resolution,) * 3, bool)
    per = max(1, _CHUNK // len(yz))
    for x0 in range(0, resolution, per):
        xs = axis[0][x0:x0 + per]
        q = np.concatenate([np.repeat(xs, len(yz))[:, None], np.tile(yz, (len(xs), 1))], 1)
        occ[x0:x0 + len(xs)] = (np.abs(winding_numbers(v, f, q)) > 0.5).reshape(len(xs), resolution, resolution)
    return VoxelGrid(occ, tuple(float(t) for t in translate), float(scale))  # type: ignore[arg-type]


# ---------------------------------------------------------------- metrics

def _occ(a: VoxelGrid | np.ndarray) -> np.ndarray:
    return np.asarray(a.occ if isinstance(a, VoxelGrid) else a, bool)


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise InputError(f"cannot compare a {'x'.join(map(str, a.shape))} grid with a {'x'.join(map(str, b.shape))} one")


def iou(a: VoxelGrid | np.ndarray, b: VoxelGrid | np.ndarray) -> float:
    """Intersection over union of the occupied voxels (1.0 when both are empty)."""
    a, b = _occ(a), _occ(b)
    _same_shape(a, b)
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else float(np.count_nonzero(a & b) / union)


def surface_voxels(occ: VoxelGrid | np.ndarray) -> np.ndarray:
    """Centres (index + 0.5, float (n, 3)) of the occupied voxels with an empty 6-neighbour (outside is empty)."""
    o = _occ(occ)
    p = np.pad(o, 1)
    interior = o.copy()
    for ax in range(3):
        for s in (0, 2):
            interior &= p[tuple(slice(s, s + n) if i == ax else slice(1, 1 + n) for i, n in enumerate(o.shape))]
    return np.argwhere(o & ~interior).astype(np.float64) + 0.5


def chamfer(a: VoxelGrid | np.ndarray, b: VoxelGrid | np.ndarray) -> float:
    """Symmetric mean nearest-neighbour distance between the two grids' surface voxels, over the grid's longest
    side (resolution-free); 0.0 when both are empty, NaN when only one is."""
    from scipy.spatial import cKDTree

    a, b = _occ(a), _occ(b)
    _same_shape(a, b)
    pa, pb = surface_voxels(a), surface_voxels(b)
    if len(pa) == 0 or len(pb) == 0:
        return 0.0 if len(pa) == len(pb) else math.nan
    dab = cKDTree(pb).query(pa)[0]
    dba = cKDTree(pa).query(pb)[0]
    return float((dab.mean() + dba.mean()) / 2 / max(a.shape))


def compare(ref: VoxelGrid | np.ndarray, rec: VoxelGrid | np.ndarray) -> dict:
    """IoU, Chamfer (see :func:`chamfer`) and the occupied counts of a reconstruction against its reference."""
    a, b = _occ(ref), _occ(rec)
    return {"iou": iou(a, b), "chamfer": chamfer(a, b), "occupied_ref": int(np.count_nonzero(a)),
            "occupied_rec": int(np.count_nonzero(b))}
