"""Classical baselines for occupancy grids, with real bytes and decodable round trips.

Lossless: binvox+xz, packbits+xz, packbits+bz2 and ``context-ac``, an adaptive binary arithmetic
coder whose probability of each voxel is learnt (counts) per context of its 14 already-coded
neighbours: 9 in the previous x-plane, one two planes back, and 4 in the current plane (the row
before, and the voxel before in the row). The voxels are coded in wavefronts t = 4x + 2y + z: every
neighbour of the context has a smaller t, so a whole wavefront is coded in one vectorised call and
the counts are updated between wavefronts (the decoder does the same).

Lossy: ``downsample-K`` (K = 2, 4): majority vote over KxKxK blocks, the coarse grid coded with
the best lossless codec, decoded by trilinear interpolation of the coarse occupancy at the fine voxel
centres, thresholded at 0.5.

Every stream here starts with the grid's shape (3 uint16; binvox carries its own), so its bytes alone
decode.
"""

from __future__ import annotations

import bz2
import csv
import json
import lzma
import math
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mscncodec.modalities.voxels import VoxelGrid, check_shape, compare, read_binvox, write_binvox

XZ = {"format": lzma.FORMAT_XZ, "check": lzma.CHECK_NONE, "preset": 9 | lzma.PRESET_EXTREME}
DOWNSAMPLE = (2, 4)
# the context: offsets (dx, dy, dz) of already-coded neighbours (each has a smaller 4x + 2y + z)
NEIGHBOURS = tuple((-1, dy, dz) for dy in (-1, 0, 1) for dz in (-1, 0, 1)) + (
    (-2, 0, 0), (0, -1, -1), (0, -1, 0), (0, -1, 1), (0, 0, -1))
_PRIOR = 0.2  # initial count per outcome (0.2 measured a little better than KT 0.5 or 0.4 on bunny 32-128)
_SHAPE = struct.Struct("<3H")


def _shape_header(shape: tuple[int, ...]) -> bytes:
    return _SHAPE.pack(*shape)


def _read_shape(data: bytes) -> tuple[tuple[int, int, int], bytes]:
    if len(data) < _SHAPE.size:
        raise ValueError("stream shorter than its shape header")
    shape = _SHAPE.unpack_from(data)
    check_shape(shape)
    return shape, data[_SHAPE.size:]


# ---------------------------------------------------------------- context-model arithmetic coder

def _wavefronts(shape: tuple[int, int, int]) -> tuple[list[np.ndarray], np.ndarray, tuple[int, ...]]:
    """Flat indices into the padded grid, split by wavefront t = 4x + 2y + z; the neighbours' flat offsets;
    the padded shape (2 leading empty layers on every axis, one trailing on y and z)."""
    nx, ny, nz = shape
    padded = (nx + 2, ny + 3, nz + 3)
    sy, sx = padded[2], padded[1] * padded[2]
    t = (4 * np.arange(nx, dtype=np.int32)[:, None, None] + 2 * np.arange(ny, dtype=np.int32)[None, :, None]
         + np.arange(nz, dtype=np.int32)[None, None, :]).ravel()
    order = np.argsort(t, kind="stable").astype(np.int32)
    x, rest = np.divmod(order, ny * nz)
    y, z = np.divmod(rest, nz)
    flat = (x + 2) * sx + (y + 2) * sy + (z + 2)
    counts = np.bincount(t)
    fronts = np.split(flat, np.cumsum(counts)[:-1])
    offsets = np.array([dx * sx + dy * sy + dz for dx, dy, dz in NEIGHBOURS], np.int64)
    return fronts, offsets, padded


def _context_code(shape: tuple[int, int, int], occ: np.ndarray | None = None, words: np.ndarray | None = None):
    """Encode ``occ`` (-> uint32 words) or decode ``words`` (-> occ): one loop, so both sides see the same model."""
    import constriction

    fronts, offsets, padded = _wavefronts(shape)
    grid = np.zeros(padded, np.uint8)
    if occ is not None:
        grid[2:, 2:-1, 2:-1] = occ
        coder = constriction.stream.queue.RangeEncoder()
    else:
        coder = constriction.stream.queue.RangeDecoder(words)
    flat = grid.reshape(-1)
    nctx = 1 << len(NEIGHBOURS)
    n1 = np.full(nctx, _PRIOR)
    n = np.full(nctx, 2 * _PRIOR)
    model = constriction.stream.model.Bernoulli(perfect=False)
    weights = (1 << np.arange(len(NEIGHBOURS), dtype=np.int64))[:, None]
    for idx in fronts:
        if idx.size == 0:  # on thin grids (e.g. one voxel in z) t = 4x + 2y + z skips values
            continue
        ctx = (flat[idx[None, :] + offsets[:, None]] * weights).sum(0)
        p = n1[ctx] / n[ctx]
        if occ is not None:
            bits = flat[idx].astype(np.int32)
            coder.encode(bits, model, p)
        else:
            bits = np.asarray(coder.decode(model, p), np.int32)
            flat[idx] = bits
        n1 += np.bincount(ctx, weights=bits, minlength=nctx)
        n += np.bincount(ctx, minlength=nctx)
    if occ is not None:
        return coder.get_compressed()
    return grid[2:, 2:-1, 2:-1].astype(bool)


def context_encode(occ: np.ndarray) -> bytes:
    occ = np.asarray(occ, bool)
    check_shape(occ.shape)
    return _shape_header(occ.shape) + _context_code(occ.shape, occ=occ).tobytes()


def context_decode(data: bytes) -> np.ndarray:
    shape, body = _read_shape(data)
    if len(body) % 4:
        raise ValueError("context-ac payload is not a whole number of 32-bit words")
    return _context_code(shape, words=np.frombuffer(body, np.uint32).copy())


# ---------------------------------------------------------------- general-purpose compressors

def _packbits_encode(occ: np.ndarray, compress: Callable[[bytes], bytes]) -> bytes:
    occ = np.asarray(occ, bool)
    return _shape_header(occ.shape) + compress(np.packbits(occ.ravel()).tobytes())


def _packbits_decode(data: bytes, decompress: Callable[[bytes], bytes]) -> np.ndarray:
    shape, body = _read_shape(data)
    n = math.prod(shape)
    bits = np.unpackbits(np.frombuffer(decompress(body), np.uint8), count=n)
    if bits.size != n:
        raise ValueError("packed bits shorter than the grid")
    return bits.astype(bool).reshape(shape)


LOSSLESS: dict[str, tuple[Callable[[np.ndarray], bytes], Callable[[bytes], np.ndarray]]] = {
    "binvox+xz": (lambda o: lzma.compress(write_binvox(VoxelGrid(np.asarray(o, bool))), **XZ),
                  lambda d: read_binvox(lzma.decompress(d)).occ),
    "packbits+xz": (lambda o: _packbits_encode(o, lambda b: lzma.compress(b, **XZ)),
                    lambda d: _packbits_decode(d, lzma.decompress)),
    "packbits+bz2": (lambda o: _packbits_encode(o, lambda b: bz2.compress(b, 9)),
                     lambda d: _packbits_decode(d, bz2.decompress)),
    "context-ac": (context_encode, context_decode),
}
_IDS = {name: i for i, name in enumerate(LOSSLESS)}  # a downsample stream names its inner codec by this byte


def encode_lossless(name: str, occ: np.ndarray) -> bytes:
    return LOSSLESS[name][0](occ)


def decode_lossless(name: str, data: bytes) -> np.ndarray:
    return LOSSLESS[name][1](data)


def lossless_streams(occ: np.ndarray) -> dict[str, bytes]:
    return {name: enc(occ) for name, (enc, _) in LOSSLESS.items()}


def lossless_sizes(occ: np.ndarray) -> dict[str, int]:
    return {name: len(b) for name, b in lossless_streams(occ).items()}


def best_lossless(occ: np.ndarray) -> tuple[str, bytes]:
    """The codec with the smallest stream, and that stream."""
    streams = lossless_streams(occ)
    name = min(streams, key=lambda k: len(streams[k]))
    return name, streams[name]


# ---------------------------------------------------------------- lossy: downsampling

def downsample(occ: np.ndarray, k: int) -> np.ndarray:
    """A coarse voxel is occupied when more than half of its KxKxK block is (the grid padded empty to multiples of K)."""
    occ = np.asarray(occ, bool)
    pad = [(0, -s % k) for s in occ.shape]
    o = np.pad(occ, pad)
    c = tuple(s // k for s in o.shape)
    votes = o.reshape(c[0], k, c[1], k, c[2], k).sum((1, 3, 5), dtype=np.int32)
    return votes * 2 > k**3


def upsample(coarse: np.ndarray, k: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Trilinear interpolation of the coarse 0/1 occupancy at the fine voxel centres, > 0.5, cropped to ``shape``."""
    a = np.asarray(coarse, np.float32)
    for ax, n in enumerate(shape):
        pos = (np.arange(n) + 0.5) / k - 0.5  # fine centre in coarse-voxel coordinates (centres at integers)
        pos = np.clip(pos, 0, a.shape[ax] - 1)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, a.shape[ax] - 1)
        w = (pos - i0).astype(np.float32).reshape([-1 if i == ax else 1 for i in range(3)])
        a = np.take(a, i0, axis=ax) * (1 - w) + np.take(a, i1, axis=ax) * w
    return a > 0.5


def downsample_encode(occ: np.ndarray, k: int) -> tuple[str, bytes]:
    """(inner codec, stream): K, the inner codec's id and the fine shape, then the coarse grid's lossless stream."""
    occ = np.asarray(occ, bool)
    inner, body = best_lossless(downsample(occ, k))
    return inner, struct.pack("<BB", k, _IDS[inner]) + _shape_header(occ.shape) + body


def downsample_decode(data: bytes) -> np.ndarray:
    if len(data) < 2:
        raise ValueError("downsample stream shorter than its header")
    k, i = struct.unpack_from("<BB", data)
    shape, body = _read_shape(data[2:])
    if k < 1 or i >= len(LOSSLESS):
        raise ValueError("bad downsample header")
    coarse = decode_lossless(list(LOSSLESS)[i], body)
    if coarse.shape != tuple(-(-s // k) for s in shape):
        raise ValueError("coarse grid does not match the fine shape")
    return upsample(coarse, k, shape)


# ---------------------------------------------------------------- bench

def baseline_points(occ: np.ndarray, factors: Sequence[int] = DOWNSAMPLE) -> list[dict]:
    """One point per codec: bytes, IoU and Chamfer of its decoded grid (the lossless ones are decoded and checked)."""
    occ = np.asarray(occ, bool)
    points = []
    for name, (enc, dec) in LOSSLESS.items():
        t0 = time.perf_counter()
        data = enc(occ)
        t1 = time.perf_counter()
        back = dec(data)
        t2 = time.perf_counter()
        if back.shape != occ.shape or not np.array_equal(back, occ):
            raise AssertionError(f"{name} did not round-trip")
        points.append({"codec": name, "lossless": True, "bytes": len(data), "iou": 1.0, "chamfer": 0.0,
                       "encode_s": t1 - t0, "decode_s": t2 - t1})
    for k in factors:
        t0 = time.perf_counter()
        inner, data = downsample_encode(occ, k)
        t1 = time.perf_counter()
        rec = downsample_decode(data)
        t2 = time.perf_counter()
        m = compare(occ, rec)
        points.append({"codec": f"downsample-{k}", "lossless": False, "inner": inner, "bytes": len(data),
                       "iou": m["iou"], "chamfer": m["chamfer"], "encode_s": t1 - t0, "decode_s": t2 - t1})
    return points


def run_voxel_bench(refs: list[tuple[str, VoxelGrid]], mscn_encode: Callable[[VoxelGrid, int], bytes] | None = None,
                    mscn_decode: Callable[[bytes], VoxelGrid] | None = None,
                    sizes: Sequence[float] = (1 / 16, 1 / 8, 1 / 4, 1 / 2), out: Path = Path("voxel-bench")) -> list[dict]:
    """Baselines (and MSCN where both callables are given) on every shape; writes results.json, results.csv,
    summary.md, rd.png and report.html under ``out``. ``sizes``: MSCN targets, as fractions of the shape's best
    lossless bytes when < 1, else in bytes. A target MSCN refuses (an MscnError) is recorded with its message."""
    from mscncodec.errors import MscnError

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for name, grid in refs:
        occ = np.asarray(grid.occ, bool)
        pts = baseline_points(occ)
        best = min((p for p in pts if p["lossless"]), key=lambda p: p["bytes"])
        for p in pts:
            rows.append({"shape": name, "resolution": "x".join(map(str, occ.shape)),
                         "occupied": int(occ.sum()), **p})
        if mscn_encode is None or mscn_decode is None:
            continue
        for s in sizes:
            target = round(s * best["bytes"]) if s < 1 else int(s)
            row = {"shape": name, "resolution": "x".join(map(str, occ.shape)), "occupied": int(occ.sum()),
                   "codec": "mscn", "lossless": False, "target_bytes": target}
            try:
                t0 = time.perf_counter()
                data = mscn_encode(grid, target)
                t1 = time.perf_counter()
                rec = mscn_decode(data)
                t2 = time.perf_counter()
            except MscnError as e:
                rows.append({**row, "bytes": None, "iou": None, "chamfer": None, "error": str(e)})
                continue
            m = compare(occ, rec.occ)
            rows.append({**row, "bytes": len(data), "iou": m["iou"], "chamfer": m["chamfer"],
                         "encode_s": t1 - t0, "decode_s": t2 - t1})
    _write_results(rows, out)
    return rows


def _write_results(rows: list[dict], out: Path) -> None:
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    lines = ["# Occupancy-grid bench", ""]
    for shape in dict.fromkeys(r["shape"] for r in rows):
        rs = [r for r in rows if r["shape"] == shape]
        best = min((r for r in rs if r["lossless"]), key=lambda r: r["bytes"])
        lines += [f"## {shape} ({rs[0]['resolution']}, {rs[0]['occupied']} occupied)", "",
                  f"best lossless: {best['codec']}, {best['bytes']} bytes", "",
                  "| codec | bytes | IoU | Chamfer |", "|---|---:|---:|---:|"]
        for r in rs:
            if r["bytes"] is None:
                lines.append(f"| {r['codec']} (target {r['target_bytes']}) | - | - | - |")
                continue
            c = "nan" if r["chamfer"] is None or math.isnan(r["chamfer"]) else f"{r['chamfer']:.5f}"
            lines.append(f"| {r['codec']} | {r['bytes']} | {r['iou']:.4f} | {c} |")
        lines.append("")
    (out / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    _plot(rows, out / "rd.png")
    from mscncodec.bench.pages import write_voxel_html

    write_voxel_html(rows, out)


def _plot(rows: list[dict], path: Path) -> None:
    """IoU vs bytes, one panel per shape (matplotlib's object API: headless, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    cols = min(3, len(shapes))
    nrows = -(-len(shapes) // cols)
    fig = Figure(figsize=(4.5 * cols, 3.6 * nrows))
    FigureCanvasAgg(fig)
    for i, shape in enumerate(shapes):
        ax = fig.add_subplot(nrows, cols, i + 1)
        rs = [r for r in rows if r["shape"] == shape and r["bytes"] is not None]
        series = lambda r: "downsample-K" if r["codec"].startswith("downsample-") else r["codec"]
        for codec in dict.fromkeys(series(r) for r in rs):
            pts = sorted((r["bytes"], r["iou"]) for r in rs if series(r) == codec)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if len(pts) > 1 else "o", label=codec)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # the minor labels of a short log axis overlap
        ax.set_xlabel("bytes")
        ax.set_ylabel("IoU")
        ax.set_title(f"{shape} ({rs[0]['resolution'] if rs else ''})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
