"""The voxels codec: an occupancy grid (binvox / 3-D .npy) as ONE stream on grid3's 3-D latent grids.

The target is the occupancy (0/1) at every voxel centre (points cell-centred in [-1, 1]^3, axes x, y, z of
``occ[x, y, z]``), scored by binary cross-entropy on the synthesis' logits, the voxels on the surface (an
occupied voxel with an empty 6-neighbour, or an empty one with an occupied 6-neighbour) weighing
``SURFACE_WEIGHT`` times the others: the IoU is decided there. The decoded occupancy is logit > 0. The finest
latent grid is half the resolution per axis (rounded up). The representation is continuous, so a stream
decodes onto any resolution (``decode_voxels(data, resolution=R)``: the grid's longest side becomes R voxels,
the synthesis evaluated at the new grid's cell centres).

The header carries the grid's dims and its binvox placement (translate, scale); the family's sections (GRD3,
LATS) carry the latents. A stream shorter than ``bitstream.MIN_BPP`` bits per voxel of the grid its header
claims is refused before any work (the images' rule).
"""

from __future__ import annotations

import lzma
import math
import time as _time
from pathlib import Path

import numpy as np

from mscncodec import families
from mscncodec.container import bitstream
from mscncodec.errors import LimitError, MscnError, RateError
from mscncodec.models import modality_model, stream_model
from mscncodec.modalities import check_byte_target, check_density, grid3_description, unpack_stream
from mscncodec.modalities import voxels as vox

MODALITY_CODE = bitstream.modality_code("voxels")
EFFORTS = ("fast", "default", "max")
SURFACE_WEIGHT = 4.0  # weight of a surface voxel (either side of the boundary) against 1 for the others
POINTS_PER_STEP = 1 << 15  # voxels of the fit's random batch per step
FINEST_DIVISOR = 2  # the finest latent grid: the resolution / this, per axis (rounded up)
QUALITY_FRACTION = 0.25  # quality 50 aims at this fraction of the grid's packbits+xz bytes


# ---------------------------------------------------------------- target

def packbits_xz_bytes(occ: np.ndarray) -> int:
    """The size of the grid as packbits + xz (the default quality's reference; the bench's baseline)."""
    return 6 + len(lzma.compress(np.packbits(np.asarray(occ, bool).ravel()).tobytes(), format=lzma.FORMAT_XZ,
                                 check=lzma.CHECK_NONE, preset=9 | lzma.PRESET_EXTREME))


def quality_bytes(quality: int, occ: np.ndarray) -> float:
    """The size a quality setting aims at: 1/4 of packbits+xz at 50, x2 per 25 more."""
    return QUALITY_FRACTION * packbits_xz_bytes(occ) * 2.0 ** ((quality - 50) / 25)


def finest_grid(shape: tuple[int, int, int], divisor: int | None = None) -> tuple[int, int, int]:
    d = FINEST_DIVISOR if divisor is None else divisor
    return tuple(max(1, -(-n // d)) for n in shape)  # type: ignore[return-value]


def surface_band(occ: np.ndarray) -> np.ndarray:
    """Voxels on the boundary: occupied with an empty 6-neighbour, or empty with an occupied one (outside empty)."""
    o = np.asarray(occ, bool)
    p = np.pad(o, 1)
    any_empty = np.zeros_like(o)
    any_full = np.zeros_like(o)
    for ax in range(3):
        for s in (0, 2):
            nb = p[tuple(slice(s, s + n) if i == ax else slice(1, 1 + n) for i, n in enumerate(o.shape))]
            any_empty |= ~nb
            any_full |= nb
    return (o & any_empty) | (~o & any_full)


# bits are counted per 64 voxels: per voxel, the lambda table's largest trade-off still left the fit's rate flat
# (bunny 64^3: ~3.2 KB at every lambda), with this scale it spans 216-876 B (experiments/2026-12-grid3/README.md)
RATE_NORM_DIVISOR = 64


def volume_target(occ: np.ndarray, *, batch: int = POINTS_PER_STEP, finest_divisor: int | None = None):
    """The family's target: the occupancy at every voxel centre, surface voxels up-weighted (mean weight 1)."""
    import torch

    from mscncodec.families.grid2.volume.fit import VolumeTarget
    from mscncodec.families.grid2.volume.synthesis import cell_centres

    occ = np.asarray(occ, bool)
    w = np.where(surface_band(occ), SURFACE_WEIGHT, 1.0)
    w = w / w.mean()
    cx, cy, cz = cell_centres(occ.shape)
    pts = torch.stack(torch.meshgrid(cx, cy, cz, indexing="ij"), -1).reshape(-1, 3)
    return VolumeTarget(pts, torch.from_numpy(occ.reshape(-1).astype(np.float32)),
                        torch.from_numpy(w.reshape(-1).astype(np.float32)), finest_grid(occ.shape, finest_divisor),
                        loss="bce", rate_norm=occ.size / RATE_NORM_DIVISOR, batch=batch)


# ---------------------------------------------------------------- encode

def pick_model(model=None, target_bytes: float | None = None):
    return modality_model(model, "voxels", target_bytes)


def header_for(m, g: vox.VoxelGrid) -> dict:
    nx, ny, nz = g.shape
    tx, ty, tz = g.translate
    return {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": MODALITY_CODE,
            "arch": families.of(m).code, "model_id": m.model_id, "dim_x": nx, "dim_y": ny, "dim_z": nz,
            "translate_x": tx, "translate_y": ty, "translate_z": tz, "scale": g.scale}


def min_voxel_bytes(shape: tuple[int, int, int]) -> int:
    """The smallest stream a decoder accepts for a grid: bitstream.MIN_BPP bits per voxel (the images' rule)."""
    return math.ceil(math.prod(shape) * bitstream.MIN_BPP / 8)


def encode_voxels(src, *, target_bytes: int | None = None, quality: int | None = None, model=None,
                  effort: str = "default", steps: int | None = None, progress: bool = False,
                  return_report: bool = False, **ignored_none_options):
    """Encode an occupancy grid (a .binvox / 3-D .npy path or a VoxelGrid) as one stream at or just under
    `target_bytes`, else at `quality` (0-100, default 50: a quarter of the grid's packbits+xz bytes)."""
    check_byte_target(target_bytes, quality, effort, EFFORTS)
    for k, v in ignored_none_options.items():
        if v is not None:
            what = "--resolution is a decode option for voxels" if k == "resolution" else f"unknown option {k!r}"
            raise MscnError(f"{what} (encoding voxels takes none)")
    t0 = _time.perf_counter()
    g = vox.load(src)
    if target_bytes is None:
        target_bytes = int(round(quality_bytes(50 if quality is None else quality, g.occ)))
    m = pick_model(model, float(target_bytes))
    header = header_for(m, g)
    fixed = bitstream.header_size(MODALITY_CODE)
    floor = max(fixed + 64, min_voxel_bytes(g.shape))
    if target_bytes < floor:
        raise RateError(f"target {target_bytes} bytes is below this codec's minimum for this grid ({floor} bytes: "
                        "header and latents)")
    import torch

    from mscncodec.families.grid2.volume import codec as vcodec

    say = (lambda msg: print(msg, flush=True)) if progress else None
    with torch.random.fork_rng():
        torch.manual_seed(0)
        secs, info = vcodec.encode(m, volume_target(g.occ), target_bytes - fixed, effort=effort, steps=steps,
                                   progress=say)
    data = bitstream.pack(header, secs)
    if not return_report:
        return data
    t_enc = _time.perf_counter() - t0
    t1 = _time.perf_counter()
    rec = decode_voxels(data)
    report = {"bytes": len(data), "voxels": int(g.occ.size), "shape": g.shape, "occupied": int(g.occ.sum()),
              "model": m.name, "arch": m.arch, "encode_s": t_enc, "decode_s": _time.perf_counter() - t1,
              "bits_per_voxel": 8.0 * len(data) / g.occ.size, "lambda": info["lambda"], "note": ""}
    report.update(vox.compare(g, rec))
    return data, report


# ---------------------------------------------------------------- decode

def _unpack(data: bytes) -> tuple[dict, dict[str, bytes]]:
    header, sections = unpack_stream(data, "voxels")
    shape = (header["dim_x"], header["dim_y"], header["dim_z"])
    check_density(len(data), math.prod(shape), f"{shape[0]} x {shape[1]} x {shape[2]} voxels", "voxel")
    return header, sections


def _checked_resolution(resolution) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or not 1 <= resolution <= vox.MAX_SIDE:
        raise MscnError(f"--resolution must be an integer in [1, {vox.MAX_SIDE}], got {resolution!r}")
    return int(resolution)


def decoded_shape(shape: tuple[int, int, int], resolution: int | None) -> tuple[int, int, int]:
    """The grid a decode writes: the stream's own, or with `resolution` its longest side scaled to R voxels."""
    if resolution is None:
        return tuple(shape)  # type: ignore[return-value]
    r = _checked_resolution(resolution)
    big = max(shape)
    return tuple(max(1, round(n * r / big)) for n in shape)  # type: ignore[return-value]


def _check_limit(shape: tuple[int, int, int], max_voxels: int) -> None:
    n = math.prod(shape)
    if n > max_voxels:
        raise LimitError(f"decoding a {'x'.join(map(str, shape))} grid ({n} voxels) exceeds the limit of {max_voxels}: "
                         "give a smaller --resolution or raise --max-voxels")


def decode_voxels(data: bytes, resolution: int | None = None, max_voxels: int = bitstream.MAX_VOXELS) -> vox.VoxelGrid:
    """.mscn bytes -> VoxelGrid, on the stream's own grid or (`resolution` R) on one whose longest side is R,
    the same placement (translate, scale): the synthesis is evaluated at that grid's cell centres."""
    import torch

    from mscncodec.families.grid2.volume import codec as vcodec
    from mscncodec.families.grid2.volume.synthesis import synthesis

    header, sections = _unpack(data)
    shape = (header["dim_x"], header["dim_y"], header["dim_z"])
    out_shape = decoded_shape(shape, resolution)
    _check_limit(out_shape, max_voxels)
    m = stream_model(header, "voxels")
    latents = vcodec.decode_latents(m, sections, len(data))
    big_in, big_out = max(shape), max(out_shape)
    # a new voxel's centre in the source's voxel units is (i + 0.5) * big_in / big_out; [-1, 1] spans n_a of them
    axes = [torch.from_numpy((2 * (np.arange(no) + 0.5) * big_in / big_out / ni - 1).astype(np.float32))
            for ni, no in zip(shape, out_shape)]
    occ = np.empty(out_shape, bool)
    plane = out_shape[1] * out_shape[2]
    yz = torch.stack(torch.meshgrid(axes[1], axes[2], indexing="ij"), -1).reshape(-1, 2)
    step = max(1, (1 << 18) // plane)
    with torch.no_grad():
        for a in range(0, out_shape[0], step):
            xs = axes[0][a:a + step]
            pts = torch.cat([xs.repeat_interleave(plane)[:, None], yz.repeat(len(xs), 1)], 1)
            logit = synthesis(m.cfg, m.theta, latents, pts)
            occ[a:a + len(xs)] = (logit > 0).numpy().reshape(len(xs), out_shape[1], out_shape[2])
    t = (header["translate_x"], header["translate_y"], header["translate_z"])
    return vox.VoxelGrid(occ, tuple(float(v) for v in t), float(header["scale"]))  # type: ignore[arg-type]


def describe(data: bytes) -> dict:
    header, sections = _unpack(data)
    return {"header": grid3_description(header, sections), "sections": bitstream.section_sizes(header, sections),
            "bytes": len(data)}


def write(g: vox.VoxelGrid, suffix: str) -> bytes:
    return vox.write(g, suffix)


# ---------------------------------------------------------------- hooks (modalities.Modality)

def encode_limits(kw: dict, max_pixels: int, max_voxels: int) -> dict:
    return kw


def decode_limits(header: dict, kw: dict, max_pixels: int, max_voxels: int) -> dict:
    """The decoded grid (the stream's, or --resolution's) bounded by max_voxels before any work."""
    shape = (header["dim_x"], header["dim_y"], header["dim_z"])
    _check_limit(decoded_shape(shape, kw.get("resolution")), max_voxels)
    return dict(kw, max_voxels=max_voxels)


def encode_summary(report: dict) -> str:
    return (f"{report['bytes']} bytes for {'x'.join(map(str, report['shape']))} voxels "
            f"({report['bits_per_voxel']:.4f} bits/voxel), IoU {report['iou']:.4f}, Chamfer {report['chamfer']:.5f} "
            f"of the side (model {report['model']}")


def signal_info(signal) -> dict:
    return {"shape": "x".join(map(str, signal.shape)), "occupied": int(np.count_nonzero(signal.occ))}


def decode_summary(info: dict) -> str:
    return f"{info['shape']} voxels, {info['occupied']} occupied, decoded {info['bytes']} bytes"


# ---------------------------------------------------------------- training data (mscn train grid3, voxels)

MIN_TRAIN_FACES = 1000
MAX_TRAIN_VOLUMES = 24
MAX_VAL_VOLUMES = 2


def _faces_listed(root: Path) -> dict[str, int]:
    import csv

    tsv = root / "MESHES.tsv"
    if not tsv.is_file():
        return {}
    with tsv.open() as fh:
        return {r["file"]: int(r.get("faces") or 0) for r in csv.DictReader(fh, delimiter="\t")}


def _pick(files: list[Path], root: Path, n: int, faces: dict[str, int]) -> list[Path]:
    """Up to n of the files with at least MIN_TRAIN_FACES faces (per MESHES.tsv where it lists them), evenly
    spread over the sorted list (every source folder gets its share)."""
    ok = [f for f in files if faces.get(str(f.relative_to(root)), MIN_TRAIN_FACES) >= MIN_TRAIN_FACES]
    if len(ok) <= n:
        return ok
    return [ok[int(i * len(ok) / n)] for i in range(n)]


def training_volumes(data_dir, resolution: int = 64, cache: Path | None = None):
    """The voxels trainer's data: the mesh trainer's TRAINING meshes (its own split) with >= 1000 faces, at most
    24, voxelised at resolution^3 (and 2 of its validation meshes), as grid3 VolumeTargets."""
    from mscncodec.families.grid2.volume.train import VolumeSet
    from mscncodec.modalities import mesh as mmod
    from mscncodec.modalities.mesh_train import MeshTrainConfig, list_meshes
    from mscncodec.training import split

    root = Path(data_dir)
    cfg = MeshTrainConfig()
    train, val = split(list_meshes(root, cfg.min_faces), root, cfg.val_fraction)
    faces = _faces_listed(root)
    train = _pick(train, root, MAX_TRAIN_VOLUMES, faces)
    val = _pick(val, root, MAX_VAL_VOLUMES, faces)

    def grid(p: Path) -> np.ndarray:
        if cache is not None:
            c = Path(cache) / f"{str(p.relative_to(root)).replace('/', '__')}_{resolution}.npy"
            if c.is_file():
                return np.load(c)
        m = mmod.load(p)
        occ = vox.voxelise(m.vertices, m.faces, resolution).occ
        if cache is not None:
            c.parent.mkdir(parents=True, exist_ok=True)
            np.save(c, occ)
        return occ

    return VolumeSet([volume_target(grid(p)) for p in train], [volume_target(grid(p)) for p in val], train, root,
                     f"{len(train)} meshes of {root.name} (the mesh trainer's training split, >= {MIN_TRAIN_FACES} "
                     f"faces) voxelised at {resolution}^3, surface voxels weighted {SURFACE_WEIGHT:g}x")
