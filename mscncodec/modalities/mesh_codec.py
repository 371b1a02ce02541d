"""The mesh codec: mesh -> signed distance samples -> SIREN fit -> sparse update -> .mscn, and back.

The SIREN family's encoder (codec.fit_and_pack: Meta-SGD inner loop from the shipped
theta0 with hard-concrete gates, Adam, choice of entries, quantisation, refinement,
packing) runs unchanged on one group: the whole shape. Only the samples differ from
an image's: points of the unit cube and their truncated signed distances
(modalities/mesh.py). The rate is the real stream length; `target_bytes` lands at or
just under it.

Decoding evaluates theta0 + delta on a grid of any resolution and runs marching cubes,
so one file gives a 128^3 or a 512^3 surface.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from mscncodec import families
from mscncodec.container import bitstream
from mscncodec.families.siren import network as siren
from mscncodec.families.siren.encoder import BITS_PER_ENTRY, OPEN_HEADROOM, fit_and_pack
from mscncodec.coding.update import dequantise_all, unpack_update
from mscncodec.errors import LimitError, MscnError, RateError
from mscncodec.families.siren.model import Model
from mscncodec.models import find_by_id, modality_model, stream_model
from mscncodec.modalities import check_byte_target, unpack_stream
from mscncodec.modalities import mesh as mmod

MODALITY_CODE = bitstream.modality_code("mesh")
# fitting steps, relative quantisation steps tried, refinement steps on the sent entries
EFFORT = {"fast": (300, (0.5,), 50), "default": (1000, (0.35, 0.7), 100), "max": (3000, (0.25, 0.5, 1.0), 300)}
SAMPLES = {"fast": 16384, "default": 32768, "max": 65536}  # signed-distance samples the fit sees
# L0 weight per open entry relative to the mean squared (truncated) SDF error; tuned on held-out
# meshes of the training collection (docs/decisions/meshes.md), never on the test meshes
LAMBDA_AT_4K = 1e-8  # = the trainer's default lam 2e-5 over its 2048 samples per mesh
QUALITY_BYTES = 4000  # nominal size of quality 50
DECODE_CHUNK = 1 << 16
QAT_LR = 3e-4  # a tenth of the image codec's: a SIREN of signed distances is more sensitive to its weights


def quality_bytes(quality: int) -> float:
    """The size a quality setting aims at (0 -> 1 KB, 50 -> 4 KB, 100 -> 16 KB), through the same rate
    control as --bytes (a model that tops out earlier writes less)."""
    return QUALITY_BYTES * 2.0 ** ((quality - 50) / 25)


def pick_model(model: str | Model | None, target_bytes: float | None = None) -> Model:
    """--model, else the shipped mesh model routed for this size (weights/routing.json)."""
    return modality_model(model, "mesh", target_bytes)


def encode_mesh(
    src: str | Path | mmod.Mesh,
    *,
    target_bytes: int | None = None,
    quality: int | None = None,
    model: str | Model | None = None,
    effort: str = "default",
    steps: int | None = None,
    resolution: int = mmod.DEFAULT_RESOLUTION,
    progress: bool = False,
    return_report: bool = False,
):
    """Encode a mesh file (or Mesh) to .mscn bytes: at or just under `target_bytes`, else at `quality`
    (0-100, default 50). `resolution` is the decoding grid stored as the default in the header."""
    check_byte_target(target_bytes, quality, effort, EFFORT)
    if not bitstream.MIN_RESOLUTION <= resolution <= bitstream.MAX_RESOLUTION:
        raise MscnError(f"resolution must be in [{bitstream.MIN_RESOLUTION}, {bitstream.MAX_RESOLUTION}], got {resolution}")
    t0 = time.perf_counter()
    # consistent winding per patch, or a refusal of a surface with no clear inside (an open sheet): the
    # sign of the signed distance comes from the winding number, and without an inside the stream is noise
    mesh, shape_note = mmod.solid(mmod.load(src), "mesh" if isinstance(src, mmod.Mesh) else str(src))
    if target_bytes is None:
        # the quality knob names a size: a step-size mapping (as for images) gave files of very uneven
        # quality across the two routed models (quality 20: IoU 0.24; 50: Chamfer 3.9e-3 at 1.4 KB)
        target_bytes, quality = int(round(quality_bytes(50 if quality is None else quality))), None
    aim = float(target_bytes)
    m = pick_model(model, aim)
    if getattr(m, "volume", False):  # a 3-D latent grid model (grid3): the truncated SDF on latent grids
        return _encode_grid(mesh, m, target_bytes, effort, steps, resolution, progress, return_report, t0, shape_note)
    frame = mmod.frame_for(mesh)
    unit = mmod.Mesh(frame.to_unit(mesh.vertices), mesh.faces)
    q, sdf = mmod.sdf_samples(unit, SAMPLES[effort], seed=0)
    coords = torch.from_numpy(q)
    target = torch.from_numpy(np.clip(sdf, -mmod.TRUNCATION, mmod.TRUNCATION)).reshape(1, -1, 1)
    header = {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": MODALITY_CODE, "arch": families.of(m).code,
              "model_id": m.model_id, "resolution": resolution, "center_x": frame.center[0],
              "center_y": frame.center[1], "center_z": frame.center[2], "scale": frame.scale}
    lam = LAMBDA_AT_4K * (4000.0 / aim) * len(q)  # group_loss divides by the samples per group
    with torch.random.fork_rng():  # deterministic: the same input and options give the same bytes
        torch.manual_seed(0)
        final, floor = fit_and_pack(m, coords, target, header, lam=lam, open_per_group=aim * 8 / BITS_PER_ENTRY * OPEN_HEADROOM,
                                    target_bytes=target_bytes, quality=quality, effort=effort, steps=steps,
                                    from_scratch=False, progress=progress, effort_table=EFFORT, qat_lr=QAT_LR)
    if final is None:
        raise RateError(f"target {target_bytes} bytes is below this codec's minimum for this mesh "
                        f"({floor} bytes at its coarsest setting)")
    data = pack_justified(header, final.sections)
    if not return_report:
        return data
    note = "" if target_bytes is None or final.size >= 0.95 * target_bytes else \
        f"target {target_bytes} bytes not reached: this model tops out at {final.size} bytes for this mesh"
    return data, _report(mesh, data, m, t0, resolution, int(sum((s != 0).sum() for s in final.symbols.values())),
                         _notes(shape_note, note))


def _notes(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _encode_grid(mesh, m, target_bytes, effort, steps, resolution, progress, return_report, t0, shape_note=""):
    """encode_mesh's route for a volume (grid3) model: modalities/mesh_grid.py."""
    from mscncodec.modalities import mesh_grid

    data, info = mesh_grid.encode_mesh_grid(mesh, m, int(target_bytes), effort=effort, steps=steps,
                                            resolution=resolution, progress=progress)
    if not return_report:
        return data
    note = "" if len(data) >= 0.95 * target_bytes else f"target {target_bytes} bytes not reached: {len(data)} bytes for this mesh"
    return data, _report(mesh, data, m, t0, resolution, int(info["latents"]), _notes(shape_note, note))


def _report(mesh, data: bytes, m, t0: float, resolution: int, opened: int, note: str) -> dict:
    """What `return_report` gives of either route: sizes, times (the decode measured here) and the metrics."""
    t_enc = time.perf_counter() - t0
    t1 = time.perf_counter()
    rec = decode_mesh(data)
    t_dec = time.perf_counter() - t1
    from mscncodec.modalities.mesh_metrics import compare

    stored = unpack_stream(data, "mesh")[0]["resolution"]
    if stored != resolution:  # pack_justified lowered it
        note = _notes(note, f"stored decoding grid {stored} instead of {resolution} (what a {len(data)}-byte stream "
                            f"justifies): decode with --resolution {resolution}")
    report = {"bytes": len(data), "faces_in": int(len(mesh.faces)), "faces_out": int(len(rec.faces)), "model": m.name,
              "arch": m.arch, "encode_s": t_enc, "decode_s": t_dec, "resolution": stored, "open": opened,
              "note": note}
    report.update({k: v for k, v in compare(mesh, rec, n_samples=30_000).items()})
    return report


def _stream(data: bytes):
    header, sections = unpack_stream(data, "mesh")
    return header, sections, stream_model(header, "mesh")


def sdf_function(data: bytes):
    """(header, points in the unit cube (n, 3) -> signed distances (n,)) of a mesh stream."""
    header, sections, m = _stream(data)
    if getattr(m, "volume", False):
        from mscncodec.modalities import mesh_grid

        return header, mesh_grid.sdf_function(header, sections, m, len(data))
    symbols, steps = unpack_update(m, sections, 1)
    delta = dequantise_all(symbols, steps)

    def sdf(points: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = [siren.forward(m.cfg, m.theta, delta, torch.from_numpy(np.ascontiguousarray(points[a : a + DECODE_CHUNK])), 1)
                   for a in range(0, len(points), DECODE_CHUNK)]
        return torch.cat(out, 1).reshape(-1).numpy()

    return header, sdf


# The stored decoding grid a stream is decoded at by default (issue 30): a decode costs resolution**3 samples
# whatever the stream holds, so a stream's header is honoured up to the grid its length justifies, the
# format's density rule (bitstream.MIN_BPP: SAMPLES_PER_BYTE samples per byte, as for an image's pixels), and
# always up to GRID_FLOOR, the encoder's default grid (every stream stores it unless --resolution says otherwise).
# An explicit `resolution` is the caller's choice, bounded by max_voxels only.
SAMPLES_PER_BYTE = round(8 / bitstream.MIN_BPP)  # 1600
GRID_FLOOR = mmod.DEFAULT_RESOLUTION  # 128


def justified_resolution(n_bytes: int) -> int:
    """The largest stored grid a stream of n_bytes decodes at by default: GRID_FLOOR (128), or the largest R with
    R**3 <= SAMPLES_PER_BYTE * n_bytes (4 KB: 185, 10.5 KB: 256, 84 KB: 512)."""
    samples = SAMPLES_PER_BYTE * max(int(n_bytes), 0)
    r = int(round(samples ** (1 / 3)))
    while r**3 > samples:
        r -= 1
    while (r + 1) ** 3 <= samples:
        r += 1
    return min(bitstream.MAX_RESOLUTION, max(GRID_FLOOR, r))


def check_stored_resolution(resolution: int, n_bytes: int) -> None:
    """A LimitError (one line, before any work) if a stream of n_bytes stores a grid its length does not justify."""
    top = justified_resolution(n_bytes)
    if resolution > top:
        raise LimitError(f"this {n_bytes}-byte mesh stream asks for a {resolution}^3 decoding grid, more than its length "
                         f"justifies (at most {top}^3 by default): give --resolution N to choose the grid (bounded by "
                         "--max-voxels)")


def pack_justified(header: dict, sections: list[tuple[str, bytes]]) -> bytes:
    """bitstream.pack, the stored grid lowered where needed to the largest the stream's length justifies (the
    length does not depend on it), so that every stream the encoder writes decodes with the default bounds."""
    data = bitstream.pack(header, sections)
    top = justified_resolution(len(data))
    return data if header["resolution"] <= top else bitstream.pack(dict(header, resolution=top), sections)


def decode_mesh(data: bytes, resolution: int | None = None) -> mmod.Mesh:
    """.mscn bytes -> Mesh in the input's coordinates; `resolution` overrides the header's grid. Without it the
    header's grid is decoded if the stream's length justifies it (justified_resolution), else refused (LimitError)
    before the model is loaded."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MscnError("decode expects bytes")
    header, sections = unpack_stream(data, "mesh")
    if resolution is None:
        res = checked_resolution(header["resolution"])
        check_stored_resolution(res, len(data))
    else:
        res = checked_resolution(resolution)
    m = stream_model(header, "mesh")
    if getattr(m, "volume", False):
        from mscncodec.modalities import mesh_grid

        return mesh_grid.decode_mesh_grid(header, sections, m, len(data), res)
    _, sdf = sdf_function(data)
    unit = mmod.extract_surface(sdf, res)
    frame = mmod.Frame((header["center_x"], header["center_y"], header["center_z"]), header["scale"])
    return mmod.Mesh(frame.from_unit(unit.vertices), unit.faces)


def describe(data: bytes) -> dict:
    """Header fields (the mesh body: decoding grid, centre, scale), section sizes and the total (`mscn info`)."""
    header, sections = unpack_stream(data, "mesh")
    d = bitstream.describe_header(header)
    m = find_by_id(header["model_id"])
    d["model"] = m.name if m else "(unknown to this decoder)"
    if m is not None and getattr(m, "volume", False):
        from mscncodec.modalities import mesh_grid

        d["network"] = f"{m.summary()} -> truncated signed distance (+-{mesh_grid.TRUNCATION_G3} of the unit cube)"
        d.update(mesh_grid.describe_sections(sections))
    elif m is not None:
        d["network"] = f"{m.summary()} -> signed distance, {siren.macs_per_sample(m.cfg)} MAC per grid point"
    return {"header": d, "sections": bitstream.section_sizes(header, sections), "bytes": len(data)}


# ---------------------------------------------------------------- hooks (modalities.Modality): limits, summaries

def checked_resolution(res) -> int:
    """A mesh decoding grid, range-checked as the codec does (before the voxel limit sees it)."""
    lo, hi = bitstream.MIN_RESOLUTION, bitstream.MAX_RESOLUTION
    if isinstance(res, bool) or not isinstance(res, (int, np.integer)) or not lo <= res <= hi:
        raise MscnError(f"resolution must be in [{lo}, {hi}], got {res}")
    return int(res)


def check_voxels(resolution: int, max_voxels: int,
                 advice: str = "give a smaller --resolution or raise --max-voxels") -> None:
    """A LimitError if a mesh decode at this grid (resolution**3 samples) exceeds max_voxels.

    The decoder evaluates the SDF on the whole grid and runs marching cubes on it: time and memory grow
    with resolution**3 whatever the stream's size, so the bound is the caller's."""
    if resolution**3 > max_voxels:
        raise LimitError(f"decoding grid {resolution}^3 = {resolution**3} samples exceeds the limit of {max_voxels} "
                         f"(about {round(max_voxels ** (1 / 3))}^3): {advice}")


def encode_limits(kw: dict, max_pixels: int, max_voxels: int) -> dict:
    """A mesh encode is refused when the decoding grid its stream will default to exceeds max_voxels."""
    res = kw.get("resolution")
    check_voxels(mmod.DEFAULT_RESOLUTION if res is None else checked_resolution(res), max_voxels)
    return kw


def decode_limits(header: dict, kw: dict, max_pixels: int, max_voxels: int) -> dict:
    """The grid (--resolution, else the stream's stored one) bounded by max_voxels before any work; the stored
    grid is also bounded by the stream's length, in decode_mesh (justified_resolution)."""
    if kw.get("resolution") is not None:
        check_voxels(checked_resolution(kw["resolution"]), max_voxels)
    else:
        check_voxels(checked_resolution(header["resolution"]), max_voxels,
                     "it is the stream's stored grid; give --resolution N to choose another")
    return kw


def encode_summary(report: dict) -> str:
    return (f"{report['bytes']} bytes, Chamfer-L1 {report['chamfer_l1']:.5f} of the diagonal, "
            f"IoU {report['iou']:.3f} at {report['resolution']}^3 (model {report['model']}")


def signal_info(signal) -> dict:
    return {"vertices": len(signal.vertices), "faces": len(signal.faces)}


def decode_summary(info: dict) -> str:
    return f"{info['vertices']} vertices, {info['faces']} faces, decoded {info['bytes']} bytes"
