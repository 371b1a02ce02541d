"""The mesh route on grid3: a mesh as a truncated signed distance field on 3-D latent grids.

The stream is the mesh stream's header (the decoding grid, the unit cube's centre and scale: exactly as
``mesh_codec`` builds it, ``arch`` the grid3 family's code) and grid3's sections (GRD3 + LATS): only latents,
the decoder theta0 is the shared model's. The fit's target is ``sdf_samples`` of the unit mesh (mostly near the
surface), the distance divided by ``TRUNCATION_G3`` and clipped to [-1, 1]: the band the latents spend their
bits on is a few latent cells wide. Decoding evaluates the synthesis on the marching-cubes grid; above
``EVAL_MAX`` it evaluates at ``EVAL_MAX``^3 and upsamples the SDF trilinearly (the field is itself trilinear
in the latents at that scale, so little is lost and the decode stays within a few seconds).

``mesh_codec`` routes here when its model has ``volume`` (the model says, not the family's name).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from mscncodec import families
from mscncodec.container import bitstream
from mscncodec.errors import RateError
from mscncodec.modalities import mesh as mmod

if TYPE_CHECKING:  # torch is imported where the route runs, not at import
    import torch

MODALITY_CODE = bitstream.modality_code("mesh")
TRUNCATION_G3 = 0.08  # unit-cube units: +-1 of the synthesis (~1.3 cells of a 32^3 grid, 2.6 of 64^3)
RATE_NORM = float(64**3)  # the notional points bits are counted per: lambda means the same for every mesh
POINTS_PER_STEP = 16384
SAMPLES = {"fast": 32768, "default": 65536, "max": 131072}
EVAL_MAX = 128  # synthesis evaluated at most on EVAL_MAX^3 points, then upsampled
NEAR_WEIGHT = 4.0  # extra weight of the samples within one truncation of the surface


def finest_for(model) -> tuple[int, int, int]:
    """The finest latent grid: the one the start was trained at (its card's ``finest_side``; 32^3 if unsaid)."""
    n = int(model.meta.get("finest_side", 32))
    return (n, n, n)


def volume_target(unit: mmod.Mesh, n_samples: int, finest: tuple[int, int, int], seed: int = 0):
    """The family's target: SDF samples of a unit-cube mesh, sdf / TRUNCATION_G3 clipped to [-1, 1]."""
    import torch

    from mscncodec.families.grid2.volume.fit import VolumeTarget

    q, sdf = mmod.sdf_samples(unit, n_samples, seed=seed)
    v = np.clip(sdf / TRUNCATION_G3, -1.0, 1.0).astype(np.float32)
    w = np.where(np.abs(v) < 1.0, NEAR_WEIGHT, 1.0).astype(np.float32)
    w = w / w.mean()
    return VolumeTarget(torch.from_numpy(np.ascontiguousarray(q)), torch.from_numpy(v), torch.from_numpy(w),
                        tuple(finest), rate_norm=RATE_NORM, batch=POINTS_PER_STEP)


def header_for(m, frame: mmod.Frame, resolution: int) -> dict:
    return {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": MODALITY_CODE,
            "arch": families.of(m).code, "model_id": m.model_id, "resolution": resolution,
            "center_x": frame.center[0], "center_y": frame.center[1], "center_z": frame.center[2],
            "scale": frame.scale}


def encode_mesh_grid(mesh: mmod.Mesh, m, target_bytes: int, effort: str = "default", steps: int | None = None,
                     resolution: int = mmod.DEFAULT_RESOLUTION, progress: bool = False) -> tuple[bytes, dict]:
    """(stream at or under target_bytes, the family's info) of a validated mesh with a grid3 model."""
    import torch

    from mscncodec.families.grid2.volume import codec as vcodec

    frame = mmod.frame_for(mesh)
    unit = mmod.Mesh(frame.to_unit(mesh.vertices), mesh.faces)
    header = header_for(m, frame, resolution)
    fixed = bitstream.header_size(MODALITY_CODE)
    budget = int(target_bytes) - fixed
    if budget <= vcodec.SECTION_OVERHEAD + 16:
        raise RateError(f"target {target_bytes} bytes is below this codec's minimum for a mesh "
                        f"({fixed + vcodec.SECTION_OVERHEAD + 17} bytes: header and the latents)")
    target = volume_target(unit, SAMPLES.get(effort, SAMPLES["default"]), finest_for(m))
    say = (lambda msg: print(msg, flush=True)) if progress else None
    with torch.random.fork_rng():
        torch.manual_seed(0)
        secs, info = vcodec.encode(m, target, budget, effort=effort if effort in vcodec.vfit.SCHEDULES else "default",
                                   steps=steps, progress=say)
    from mscncodec.modalities.mesh_codec import pack_justified

    data = pack_justified(header, secs)  # the stored grid within what the stream's length justifies
    info["finest"] = target.finest
    return data, info


def sdf_function(header: dict, sections: dict[str, bytes], m, stream_bytes: int
                 ) -> Callable[[np.ndarray], np.ndarray]:
    """Points of the unit cube (n, 3) -> signed distances (n,) (truncated at +-TRUNCATION_G3)."""
    import torch

    from mscncodec.families.grid2.volume import codec as vcodec
    from mscncodec.families.grid2.volume.synthesis import synthesis

    latents = vcodec.decode_latents(m, sections, stream_bytes)

    def sdf(points: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for a in range(0, len(points), 1 << 18):
                p = torch.from_numpy(np.ascontiguousarray(points[a:a + (1 << 18)], np.float32))
                out.append(synthesis(m.cfg, m.theta, latents, p))
        return (torch.cat(out) * TRUNCATION_G3).numpy() if out else np.zeros(0, np.float32)

    sdf.latents = latents  # type: ignore[attr-defined]
    return sdf


def _axis_matrix(x: "torch.Tensor", n: int) -> "torch.Tensor":
    """(len(x), n): linear interpolation of a cell-centred axis of n cells at x in [-1, 1], the edge repeated
    (grid_sample's align_corners=False, padding "border", on one axis)."""
    import torch

    idx = (((x.double() + 1) * n - 1) / 2).clamp(0, n - 1)
    i0 = idx.floor().long().clamp(max=n - 1)
    w = (idx - i0).float()
    i1 = (i0 + 1).clamp(max=n - 1)
    a = torch.zeros(len(x), n)
    rows = torch.arange(len(x))
    a[rows, i0] += 1 - w
    a[rows, i1] += w
    return a


def grid_features(cfg, latents, ax: "torch.Tensor") -> "torch.Tensor":
    """The synthesis' input (1, levels, R^3) on the regular grid ax^3 (slowest axis first): trilinear
    interpolation of each level done separably, three matrix products per level instead of R^3 gathers."""
    import torch

    r = len(ax)
    out = []
    for z in latents:
        d, h, w = z.shape[2:]
        v = z[0, 0]
        v = torch.einsum("dhw,xw->dhx", v, _axis_matrix(ax, w))
        v = torch.einsum("dhx,yh->dyx", v, _axis_matrix(ax, h))
        v = torch.einsum("dyx,zd->zyx", v, _axis_matrix(ax, d))
        out.append(v.reshape(-1))
    return torch.stack(out, 0)[None].reshape(1, len(latents), r**3)


def sdf_volume(m, latents, resolution: int) -> np.ndarray:
    """The SDF on mesh.grid_points(resolution)^3 (the marching-cubes grid: linspace(-1, 1, R) per axis):
    evaluated there up to EVAL_MAX, else at EVAL_MAX and upsampled trilinearly (same end points)."""
    import torch
    import torch.nn.functional as F

    from mscncodec.families.grid2.synthesis import linear_cf
    from mscncodec.families.grid2.volume.synthesis import synthesis

    r = min(resolution, EVAL_MAX)
    ax = torch.from_numpy(mmod.grid_points(r))
    with torch.no_grad():
        if any(m.cfg.periodic):  # (mesh models are not periodic) the general path: points through grid_sample
            plane = r * r
            yx = torch.stack(torch.meshgrid(ax, ax, indexing="ij"), -1).reshape(-1, 2)
            vol = torch.empty(r, r, r)
            step = max(1, (1 << 18) // plane)
            for a in range(0, r, step):
                zs = ax[a:a + step]
                pts = torch.cat([zs.repeat_interleave(plane)[:, None], yx.repeat(len(zs), 1)], 1)
                vol[a:a + len(zs)] = synthesis(m.cfg, m.theta, latents, pts).reshape(len(zs), r, r)
        else:
            feats = grid_features(m.cfg, latents, ax)
            p, n = m.theta, len(m.cfg.hidden) + 1
            vol = torch.empty(r**3)
            chunk = 1 << 18
            for a in range(0, r**3, chunk):
                h = feats[:, :, a:a + chunk]
                for i in range(n):
                    h = linear_cf(p[f"syn.w{i}"], h, p[f"syn.b{i}"])
                    if i < n - 1:
                        h = F.relu(h)
                vol[a:a + chunk] = h.reshape(-1)
            vol = vol.reshape(r, r, r)
        if r != resolution:  # align_corners: linspace end points map onto end points
            vol = F.interpolate(vol[None, None], size=(resolution,) * 3, mode="trilinear", align_corners=True)[0, 0]
    return (vol * TRUNCATION_G3).numpy()


def surface(vol: np.ndarray) -> mmod.Mesh:
    """The zero level set of an SDF volume on grid_points(R)^3, in unit-cube coordinates."""
    from skimage.measure import marching_cubes

    res = vol.shape[0]
    if not (vol.min() < 0 < vol.max()):
        return mmod.Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64))
    verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(2.0 / (res - 1),) * 3)
    return mmod.Mesh(verts.astype(np.float64) - 1.0, faces.astype(np.int64))


def decode_mesh_grid(header: dict, sections: dict[str, bytes], m, stream_bytes: int, resolution: int) -> mmod.Mesh:
    """A grid3 mesh stream -> Mesh in the input's coordinates at `resolution`^3."""
    from mscncodec.families.grid2.volume import codec as vcodec

    latents = vcodec.decode_latents(m, sections, stream_bytes)
    unit = surface(sdf_volume(m, latents, resolution))
    frame = mmod.Frame((header["center_x"], header["center_y"], header["center_z"]), header["scale"])
    return mmod.Mesh(frame.from_unit(unit.vertices), unit.faces)


def describe_sections(sections: dict[str, bytes]) -> dict[str, str]:
    from mscncodec.families.grid2.volume.codec import describe

    return describe(sections)


# ---------------------------------------------------------------- training data (scripts/train_grid3.py mesh)

def training_volumes(root: Path, max_meshes: int = 30, n_samples: int = 65536, min_faces: int = 500,
                     finest_sides: tuple[int, ...] = (32, 64), log: Callable[[str], None] = print):
    """grid3's training set for meshes: the mesh trainer's TRAINING split of `root` (never its held-out meshes,
    never meshes-test), meshes with >= min_faces faces, at most max_meshes (spread over the split), each as
    its VolumeTarget; the finest grids take turns over `finest_sides` (the grids the encoder uses)."""
    from mscncodec.families.grid2.volume.train import VolumeSet
    from mscncodec.modalities.mesh_train import MeshTrainConfig, list_meshes
    from mscncodec.training import split

    root = Path(root)
    cfg = MeshTrainConfig()
    tr, _val = split(list_meshes(root, cfg.min_faces), root, cfg.val_fraction)
    big = set(list_meshes(root, min_faces))  # MESHES.tsv's face counts: no need to load every mesh
    picked = sorted(f for f in tr if f in big)
    if len(picked) > max_meshes:  # evenly over the (sorted) split, so every source collection is represented
        idx = np.linspace(0, len(picked) - 1, max_meshes).round().astype(int)
        picked = [picked[i] for i in idx]
    meshes = [mmod.load(f) for f in picked]
    targets = []
    t0 = time.perf_counter()
    for i, (f, mesh) in enumerate(zip(picked, meshes)):
        frame = mmod.frame_for(mesh)
        unit = mmod.Mesh(frame.to_unit(mesh.vertices), mesh.faces)
        finest = (finest_sides[i % len(finest_sides)],) * 3
        targets.append(volume_target(unit, n_samples, finest, seed=i))
    log(f"{len(targets)} training meshes ({n_samples} SDF samples each) in {time.perf_counter() - t0:.1f} s")
    return VolumeSet(targets, [], picked, root,
                     f"{len(targets)} watertight meshes (>= {min_faces} faces) of the training split of {root.name}, "
                     f"{n_samples} SDF samples each (truncation {TRUNCATION_G3}), finest grids "
                     + " / ".join(f"{n}^3" for n in finest_sides),
                     meta={"finest_side": finest_sides[0]} if len(finest_sides) == 1 else {})


def min_bytes() -> int:
    from mscncodec.families.grid2.volume import codec as vcodec

    return bitstream.header_size(MODALITY_CODE) + vcodec.SECTION_OVERHEAD + 17


__all__ = ["TRUNCATION_G3", "volume_target", "encode_mesh_grid", "sdf_function", "decode_mesh_grid",
           "training_volumes", "finest_for"]
