"""Meshes as plain arrays, the bench's inputs (identified by content) and what a run produced."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mscncodec.bench.base import BenchError, Keyed  # a mesh codec is a Keyed (see .codecs.MeshCodec)


MESH_EXTS = (".obj", ".ply", ".stl", ".off", ".glb")


RENDER_BYTES = 4000  # the side-by-side picture shows the target nearest to this


@dataclass
class MeshData:
    """A triangle mesh as plain arrays: float64 (n, 3) vertices, int64 (m, 3) faces."""

    vertices: np.ndarray
    faces: np.ndarray


def as_mesh(obj: Any) -> MeshData:
    """Any object with ``vertices``/``faces`` (mscn's Mesh, trimesh, DracoMesh-like) as :class:`MeshData`."""
    v = np.asarray(obj.vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(obj.faces, dtype=np.int64).reshape(-1, 3)
    return MeshData(np.ascontiguousarray(v), np.ascontiguousarray(f))


def weld(mesh: MeshData) -> MeshData:
    """Merge vertices with bit-identical positions and drop faces that collapse to an edge or a point.

    OBJ files split a vertex wherever its UV or normal changes, so a loaded
    mesh has seams that are invisible in the geometry but cost a connectivity
    coder (Draco) bytes and crack decimation apart.  Only exactly equal
    positions are merged, so the surface is unchanged and every codec sees and
    is measured against the same geometry.
    """
    if len(mesh.faces) == 0:
        return mesh
    uniq, inv = np.unique(mesh.vertices, axis=0, return_inverse=True)
    f = inv.reshape(-1)[mesh.faces]
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    f = f[keep]
    used, f = np.unique(f, return_inverse=True)
    return MeshData(np.ascontiguousarray(uniq[used]), np.ascontiguousarray(f.reshape(-1, 3).astype(np.int64)))


def _load_trimesh(path: Path) -> MeshData:
    import warnings

    import trimesh

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = trimesh.load(str(path), force="mesh", process=False)
    return as_mesh(m)


@lru_cache(maxsize=8)
def load_mesh(path: str) -> MeshData:
    """Read a mesh file: mscn's own loader (validation included) when present, else trimesh; then :func:`weld`.

    Cached (meshes are read once per run, not once per point); the arrays are
    made read-only so no codec can edit the shared reference.
    """
    p = Path(path)
    try:
        from mscncodec.modalities.mesh import load as core_load
    except ImportError:
        mesh = _load_trimesh(p)
    else:
        mesh = as_mesh(core_load(p))
    mesh = weld(mesh)
    mesh.vertices.setflags(write=False)
    mesh.faces.setflags(write=False)
    return mesh


def find_meshes(directory: Path, limit: int | None = None) -> list[Path]:
    """Mesh files directly inside ``directory``, sorted by name (stable subsets with ``limit``)."""
    try:
        files = sorted(p for p in Path(directory).iterdir() if p.is_file() and p.suffix.lower() in MESH_EXTS)
    except OSError as exc:
        raise BenchError(f"cannot read dataset directory {directory}: {exc.strerror or exc}") from exc
    if not files:
        raise BenchError(f"no meshes ({', '.join(MESH_EXTS)}) found in {directory}")
    return files[:limit] if limit else files


def has_meshes(directory: Path) -> bool:
    """Whether ``directory`` directly holds at least one mesh file (the CLI's modality switch)."""
    try:
        return any(p.is_file() and p.suffix.lower() in MESH_EXTS for p in Path(directory).iterdir())
    except OSError:
        return False


@dataclass(frozen=True)
class MeshRef:
    """An input mesh identified by content, so the cache survives renames."""

    path: Path
    name: str
    sha1: str
    vertices: int
    faces: int
    diag: float
    file_bytes: int

    @property
    def stem(self) -> str:
        return _safe(Path(self.name).stem)


def prepare_meshes(paths: Iterable[Path]) -> list[MeshRef]:
    """Hash and load every mesh up front, so a bad file fails before hours of work."""
    from mscncodec.modalities.mesh_metrics import bbox_diagonal

    refs = []
    for p in paths:
        try:
            raw = Path(p).read_bytes()
            m = load_mesh(str(p))
        except Exception as exc:
            raise BenchError(f"cannot read mesh {p}: {exc}") from exc
        if len(m.faces) == 0:
            raise BenchError(f"cannot read mesh {p}: it has no faces")
        refs.append(MeshRef(Path(p), Path(p).name, hashlib.sha1(raw).hexdigest(), len(m.vertices), len(m.faces),
                            bbox_diagonal(m.vertices, m.faces), len(raw)))
    return refs


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _finite(x: Any) -> Any:
    """JSON has no inf/NaN: store them as null (an inf Chamfer is also marked by ``faces_out == 0``)."""
    return x if not isinstance(x, float) or math.isfinite(x) else None


def decoded_path(out: Path, ref: MeshRef, codec: Keyed, target: int) -> Path:
    return Path(out) / "meshes" / f"{ref.stem}__{codec.key}__{int(target)}.ply"


def save_ply(mesh: MeshData, path: Path) -> None:
    """Write a binary PLY atomically (a killed run leaves no half file for the renderer)."""
    import trimesh

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(file_type="ply"))
    tmp.replace(path)


@dataclass
class MeshBenchResult:
    """What a run produced; the CLI prints from it and tests inspect it."""

    out: Path
    records: list[dict[str, Any]]
    codecs: list[Keyed]
    sizes: list[int]
    meshes: list[MeshRef]
    encoded: int = 0
    cached: int = 0
    failed: int = 0
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def render_target(sizes: Sequence[int], near: int = RENDER_BYTES) -> int:
    """The target closest to ``near`` bytes in log scale (the side-by-side picture's point)."""
    return min(sizes, key=lambda s: (abs(math.log(s / near)), s))


def _read_ply(path: Path) -> Any:
    import trimesh

    return trimesh.load(str(path), force="mesh", process=False)
