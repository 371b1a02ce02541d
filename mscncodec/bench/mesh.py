"""Mesh benchmark: mscn against Draco and decimation + Draco at fixed byte targets.

The mesh counterpart of the image bench (:mod:`.runner`, :mod:`.report`,
:mod:`.plot`), in one module because meshes need their own codec interface,
metrics and pictures but the same discipline:

* every codec is asked for "the best file that fits in N bytes", so all curves
  are sampled at the same targets and can be averaged over meshes;
* the rate is the real size of the bytes the codec returns;
* every metric is computed by :func:`mscncodec.modalities.mesh_metrics.compare`
  on the decoded mesh against the same reference, for every codec alike;
* finished points go to ``OUT/cache.jsonl`` (keyed by the mesh's content hash,
  codec id + version, target and metric settings), so reruns only do what is
  missing; failed points are not cached and are retried.

Outputs in ``OUT``: ``results.json``, ``results.csv``, ``rd.png`` (Chamfer-L1
vs bytes, per mesh and averaged), ``summary.md`` (tables and the log-Chamfer
gap at equal bytes, see :func:`log_chamfer_gap`) and
``side_by_side_<mesh>.png`` (the original and every codec's reconstruction at
the target nearest 4 KB, rendered from one camera).  The decoded meshes at
that target are kept in ``OUT/meshes/`` so a cached rerun can still render.

Heavy libraries (trimesh, DracoPy, fast_simplification, libigl, matplotlib,
the mscn core) are imported inside functions: importing this module is cheap,
and a missing library makes one codec unavailable instead of breaking the
bench.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mscncodec._runtime import progress_bar
from mscncodec.bench.base import Availability, available_codecs, need_modules
from mscncodec.bench.runner import BenchError, append_cache, load_cache  # one cache format for both benches

MESH_EXTS = (".obj", ".ply", ".stl", ".off", ".glb")
DEFAULT_SIZES: tuple[int, ...] = (2000, 4000, 8000)
DEFAULT_RESOLUTION = 128
DEFAULT_SAMPLES = 100_000
RENDER_BYTES = 4000  # the side-by-side picture shows the target nearest to this
CACHE_NAME = "cache.jsonl"
MESH_CODEC_IDS: tuple[str, ...] = ("draco", "simplify-draco", "mscn")
DEFAULT_MESH_CODECS = ",".join(MESH_CODEC_IDS)

CSV_FIELDS = (
    "mesh", "codec", "codec_name", "target_bytes", "bytes", "over_target", "chamfer_l1", "chamfer_l2",
    "chamfer_l1_pts", "chamfer_l2_pts", "normal_consistency", "iou", "precision", "recall", "fscore",
    "faces_out", "vertices_out", "encode_time", "search_time", "decode_time", "config",
)


# --------------------------------------------------------------------------- meshes


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


# --------------------------------------------------------------------------- codecs


@dataclass
class Encoded:
    """One encode: the bytes, the chosen setting, and its timings.

    ``encode_time`` is one encode at the chosen setting (what a user who knew
    the setting would wait); ``search_time`` is the whole call including the
    search for the setting that fits the target.
    """

    data: bytes
    config: dict[str, Any]
    encode_time: float
    search_time: float


class MeshCodec:
    """Base class of a benchmarked mesh codec (the mesh twin of :class:`.base.Codec`).

    The image ``Codec`` is built around an HxWx3 array and a bits-per-pixel
    budget, so meshes get this parallel interface instead: encode to at most
    ``target_bytes`` real bytes, decode to a mesh in the input's coordinates.
    ``key`` must be file- and cache-safe; ``version()`` is part of the cache
    key, so a library upgrade or model change invalidates old points.
    """

    key: str = "mesh-codec"
    name: str = "mesh codec"
    description: str = ""
    slow: bool = False

    @classmethod
    def available(cls) -> Availability:
        """Whether the libraries this codec needs are importable."""
        return Availability(True)

    def version(self) -> str:
        return ""

    def encode(self, mesh: MeshData, target_bytes: int, path: Path | None = None) -> Encoded:
        """Best file of at most ``target_bytes`` (or the smallest possible one, reported as over target)."""
        raise NotImplementedError

    def decode(self, data: bytes) -> MeshData:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}>"


def _dist_version(name: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "?"


def draco_encode(V: np.ndarray, F: np.ndarray, qp: int, levels: Sequence[int] = (7, 10)) -> tuple[bytes, int]:
    """Smallest Draco stream of ``(V, F)`` at ``qp`` position bits over the compression ``levels``.

    The decoded geometry depends only on ``qp`` (the level changes the
    prediction and entropy coding, not the quantised values), but which level
    gives the fewest bytes does not follow a rule: at low ``qp`` level 7 often
    beats 10.  Returns ``(bytes, level)``.
    """
    import DracoPy

    best: tuple[bytes, int] | None = None
    for lvl in levels:
        data = bytes(DracoPy.encode(V, F.astype(np.uint32), quantization_bits=int(qp), compression_level=int(lvl)))
        if best is None or len(data) < len(best[0]):
            best = (data, int(lvl))
    assert best is not None
    return best


def draco_decode(data: bytes) -> MeshData:
    import DracoPy

    m = DracoPy.decode(data)
    faces = np.asarray(m.faces, dtype=np.int64).reshape(-1, 3)
    return MeshData(np.asarray(m.points, dtype=np.float64).reshape(-1, 3), faces)


class Draco(MeshCodec):
    """Google Draco (DracoPy) on the full mesh: only the position quantisation ``qp`` varies.

    ``Draco()`` searches ``qp`` in ``qmin..qmax`` for the largest that fits the
    byte target (Draco's size grows monotonically with ``qp``); ``Draco(qp)``
    always encodes at that ``qp`` and ignores the target (for a fixed-``qp``
    sweep).  No decimation: at a few kilobytes the connectivity alone may not
    fit, which is exactly what :class:`SimplifyDraco` addresses.
    """

    description = "Draco, full connectivity, position bits searched for the byte target"

    def __init__(self, qp: int | None = None, qmin: int = 3, qmax: int = 20, levels: Sequence[int] = (7, 10)) -> None:
        self.qp, self.qmin, self.qmax, self.levels = qp, qmin, qmax, tuple(levels)
        self.key = "draco" if qp is None else f"draco-q{qp}"
        self.name = "Draco" if qp is None else f"Draco (qp {qp})"

    @classmethod
    def available(cls) -> Availability:
        return need_modules("DracoPy")

    def version(self) -> str:
        return f"dracopy-{_dist_version('DracoPy')}|q{self.qmin}-{self.qmax}|l{','.join(map(str, self.levels))}"

    def encode(self, mesh: MeshData, target_bytes: int, path: Path | None = None) -> Encoded:
        t0 = time.perf_counter()
        V, F = mesh.vertices, mesh.faces
        tried: dict[int, tuple[bytes, int]] = {}

        def size(qp: int) -> int:
            if qp not in tried:
                tried[qp] = draco_encode(V, F, qp, self.levels)
            return len(tried[qp][0])

        if self.qp is not None:
            qp = self.qp
            size(qp)
        else:
            lo, hi = self.qmin, self.qmax
            if size(lo) <= target_bytes:
                while lo < hi:  # largest qp whose stream fits
                    mid = (lo + hi + 1) // 2
                    if size(mid) <= target_bytes:
                        lo = mid
                    else:
                        hi = mid - 1
            fitting = [q for q, (d, _) in tried.items() if len(d) <= target_bytes]
            qp = max(fitting) if fitting else self.qmin  # nothing fits: the smallest file, reported honestly
        data, level = tried[qp]
        search = time.perf_counter() - t0
        t1 = time.perf_counter()
        draco_encode(V, F, qp, (level,))
        return Encoded(data, {"qp": qp, "level": level, "faces": int(len(F))}, time.perf_counter() - t1, search)

    def decode(self, data: bytes) -> MeshData:
        return draco_decode(data)


class SimplifyDraco(MeshCodec):
    """Quadric decimation (fast_simplification) to a face budget, then Draco: the small-size baseline.

    For every position precision ``qp`` in ``qps`` the largest face budget
    whose Draco stream fits the target is found by bisection over a geometric
    grid of budgets (ratio ``grid_ratio``, decimations memoised across
    ``qp``), and the undecimated mesh is tried on its own (a regular input
    mesh can take *fewer* Draco bytes than a slightly decimated one, so size is
    not monotonic there); among those (qp, faces) candidates the one with the lowest
    Chamfer-L1 to the input (``select_samples`` surface samples, a seed the
    evaluation does not use) is kept.  That is a fair encoder: it only looks
    at its own input, as any rate-distortion optimising encoder does.
    """

    key = "simplify-draco"
    name = "Decimation + Draco"
    description = "quadric decimation (fast_simplification) + Draco; face budget and position bits searched jointly"

    def __init__(self, qps: Iterable[int] = range(4, 21), levels: Sequence[int] = (7, 10), min_faces: int = 16,
                 grid_ratio: float = 1.04, select_samples: int = 20_000, agg: float = 7.0) -> None:
        self.qps = tuple(qps)
        self.levels = tuple(levels)
        self.min_faces, self.grid_ratio, self.select_samples, self.agg = min_faces, grid_ratio, select_samples, agg

    @classmethod
    def available(cls) -> Availability:
        return need_modules("DracoPy", "fast_simplification", "igl")

    def version(self) -> str:
        return (f"dracopy-{_dist_version('DracoPy')}|fs-{_dist_version('fast_simplification')}|"
                f"q{','.join(map(str, self.qps))}|l{','.join(map(str, self.levels))}|r{self.grid_ratio:g}|"
                f"m{self.min_faces}|s{self.select_samples}|a{self.agg:g}")

    def budgets(self, n_faces: int) -> list[int]:
        """Face budgets from ``n_faces`` (no decimation) down to ``min_faces``, geometric, descending."""
        out, b = [n_faces], float(n_faces)
        while True:
            b /= self.grid_ratio
            nb = int(round(b))
            if nb < self.min_faces:
                break
            if nb < out[-1]:
                out.append(nb)
        return out

    def encode(self, mesh: MeshData, target_bytes: int, path: Path | None = None) -> Encoded:
        import fast_simplification

        from mscncodec.modalities.mesh_metrics import chamfer_l1

        t0 = time.perf_counter()
        V, F = np.array(mesh.vertices), np.array(mesh.faces)  # writable copies: the decimator's binding demands it
        grid = self.budgets(len(F))
        simplified: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        streams: dict[tuple[int, int], tuple[bytes, int]] = {}

        def decimated(i: int) -> tuple[np.ndarray, np.ndarray]:
            if i not in simplified:
                if i == 0:
                    simplified[i] = (V, F)
                else:
                    v, f = fast_simplification.simplify(V, F, target_count=grid[i], agg=self.agg)
                    simplified[i] = (np.asarray(v, np.float64), np.asarray(f, np.int64))
            return simplified[i]

        def size(qp: int, i: int) -> int:
            if (qp, i) not in streams:
                v, f = decimated(i)
                streams[(qp, i)] = draco_encode(v, f, qp, self.levels) if len(f) else (b"", 0)
            return len(streams[(qp, i)][0]) if len(decimated(i)[1]) else 1 << 62

        candidates: list[tuple[int, int]] = []
        start = min(1, len(grid) - 1)
        for qp in sorted(self.qps):  # more position bits -> fewer faces fit: each search starts where the last ended
            if size(qp, 0) <= target_bytes:  # the undecimated mesh: decimation can *add* bytes (irregular
                candidates.append((qp, 0))    # valences), so it is checked apart from the bisection below
            last = len(grid) - 1
            if last == 0 or size(qp, last) > target_bytes:
                if not any(c[0] == qp for c in candidates):
                    break  # not even the coarsest budget fits; higher qp will not either
                continue
            lo, hi = start, last  # smallest index (most faces) that fits; sizes ~decreasing in the index
            while lo < hi:
                mid = (lo + hi) // 2
                if size(qp, mid) <= target_bytes:
                    hi = mid
                else:
                    lo = mid + 1
            candidates.append((qp, lo))
            start = lo
        if not candidates:  # report the smallest stream honestly (over target)
            qp, i = min(self.qps), len(grid) - 1
            size(qp, i)
            chosen, score = (qp, i), math.inf
        else:
            scored = []
            for qp, i in candidates:
                dec = draco_decode(streams[(qp, i)][0])
                scored.append((chamfer_l1((V, F), (dec.vertices, dec.faces), self.select_samples, seed=7919), qp, i))
            score, qp, i = min(scored)
            chosen = (qp, i)
        data, level = streams[chosen]
        search = time.perf_counter() - t0
        v, f = decimated(chosen[1])
        t1 = time.perf_counter()  # one pass at the chosen setting: decimate + encode
        if chosen[1]:
            fast_simplification.simplify(V, F, target_count=grid[chosen[1]], agg=self.agg)
        draco_encode(v, f, chosen[0], (level,))
        enc = time.perf_counter() - t1
        config = {"qp": chosen[0], "level": level, "face_budget": grid[chosen[1]], "faces": int(len(f)),
                  "candidates": len(candidates), "select_chamfer_l1": score if math.isfinite(score) else None}
        return Encoded(data, config, enc, search)

    def decode(self, data: bytes) -> MeshData:
        return draco_decode(data)


def _core_mesh_api() -> Any:
    """mscn's mesh codec, imported late so the bench works (mscn unavailable) before/without it."""
    from mscncodec.modalities import mesh_codec as meshcodec

    for attr in ("encode_mesh", "decode_mesh"):
        if not callable(getattr(meshcodec, attr, None)):
            raise ImportError(f"mscncodec.modalities.mesh_codec.{attr} is missing")
    return meshcodec


class Mscn(MeshCodec):
    """mscn's mesh codec (``mscncodec.modalities.mesh_codec``): rate control is internal, so one call per target.

    The decoded surface depends on the marching-cubes ``resolution`` chosen at
    decode time, which is therefore part of the cache key and the legend.
    """

    slow = True
    description = "mscn: meta-learned SDF INR, sparse update, marching cubes at decode"

    def __init__(self, resolution: int = DEFAULT_RESOLUTION, effort: str = "default", model: str | None = None) -> None:
        self.resolution, self.effort, self.model = int(resolution), effort, model
        self.key = "mscn" + (f"-{_safe(model)}" if model else "") + ("" if effort == "default" else f"-{_safe(effort)}")
        self.name = (f"mscn{' ' + model if model else ''} "
                     f"({'' if effort == 'default' else effort + ', '}res {self.resolution})")

    @classmethod
    def available(cls) -> Availability:
        try:
            _core_mesh_api()
        except Exception as exc:  # a broken core disables mscn, not the bench
            return Availability(False, f"mscn mesh codec not importable ({type(exc).__name__}: {exc})")
        return Availability(True)

    def version(self) -> str:
        """Core version + default mesh model id + a hash of the mesh codec's sources + effort + resolution.

        Hashing the sources is deliberately conservative: while the codec is
        under development any edit must invalidate cached points.
        """
        import mscncodec

        mod = _core_mesh_api()
        h = hashlib.sha1()
        for name in ("modalities/mesh_codec.py", "modalities/mesh.py", "families/siren/encoder.py", "families/siren/fit.py",
                     "coding/entropy.py", "coding/quantize.py", "coding/update.py"):
            p = Path(mscncodec.__file__).parent / name
            if p.is_file():
                h.update(p.read_bytes())
        mid = ""
        try:
            # the default model is routed by size: key on every model a route can pick
            ids = sorted({mod.pick_model(self.model, t).model_id.hex()[:16] for t in (500, 1000, 2000, 3000, 4000,
                                                                                      6000, 8000, 16000, 64000)})
            mid = "+".join(ids)
        except Exception:  # no model yet: the encode will fail and say so
            mid = "none"
        return f"{getattr(mscncodec, '__version__', '?')}|model-{mid}|src-{h.hexdigest()[:12]}|{self.effort}|r{self.resolution}"

    def encode(self, mesh: MeshData, target_bytes: int, path: Path | None = None) -> Encoded:
        mod = _core_mesh_api()
        if path is not None:
            src: Any = path
        else:
            from mscncodec.modalities.mesh import Mesh

            src = Mesh(np.array(mesh.vertices), np.array(mesh.faces))
        t0 = time.perf_counter()
        data = mod.encode_mesh(src, target_bytes=int(target_bytes), effort=self.effort, model=self.model)
        t = time.perf_counter() - t0
        return Encoded(bytes(data), {"effort": self.effort, "resolution": self.resolution, "model": self.model}, t, t)

    def decode(self, data: bytes) -> MeshData:
        return as_mesh(_core_mesh_api().decode_mesh(data, resolution=self.resolution))


def resolve_mesh_codecs(spec: str, resolution: int = DEFAULT_RESOLUTION) -> tuple[list[MeshCodec], list[str]]:
    """Parse ``"draco,draco:10,simplify-draco,mscn,mscn@fast,mscn:MODEL@max"`` into codec instances plus skip notices.

    ``draco:QP`` fixes the position bits (ignores the targets); ``mscn@EFFORT``
    picks an effort level.  An unknown id raises
    :class:`~.codecs.UnknownCodecError` (a typo should stop the run); an id
    whose library is missing yields a notice.
    """
    from mscncodec.bench.codecs import UnknownCodecError

    ids = [s.strip() for s in spec.split(",") if s.strip()]
    if not ids:
        raise UnknownCodecError("no codecs given")
    out: list[MeshCodec] = []
    notices: list[str] = []
    for cid in ids:
        base, sep, arg = cid.partition(":")
        codec: MeshCodec
        if cid == "draco":
            codec = Draco()
        elif base == "draco" and sep and arg.isdigit() and 1 <= int(arg) <= 30:
            codec = Draco(int(arg))
        elif cid == "simplify-draco":
            codec = SimplifyDraco()
        elif base.split("@")[0] == "mscn":  # mscn, mscn@EFFORT, mscn:MODEL, mscn:MODEL@EFFORT
            head, _, effort = cid.partition("@")
            effort = effort or "default"
            model = head.partition(":")[2] or None
            if effort not in ("fast", "default", "max"):
                raise UnknownCodecError(f"unknown mscn effort {effort!r} (fast, default, max)")
            codec = Mscn(resolution, effort, model)
        else:
            raise UnknownCodecError(
                f"unknown mesh codec {cid!r}; choose from {', '.join(MESH_CODEC_IDS)} (draco:QP, mscn@EFFORT, mscn:MODEL@EFFORT)")
        avail = codec.available()
        if avail:
            if all(c.key != codec.key for c in out):
                out.append(codec)
        else:
            notices.append(f"skipping {codec.key}: {avail.reason}")
    return out, notices


# --------------------------------------------------------------------------- one point


def point_key(ref: MeshRef, codec: MeshCodec, target: int, n_samples: int, seed: int) -> str:
    """Cache key: content hash | codec id | codec version | target | metric definition and sampling."""
    from mscncodec.modalities.mesh_metrics import METRICS_VERSION

    return f"{ref.sha1}|{codec.key}|{codec.version()}|{int(target)}|m{METRICS_VERSION}|n{n_samples}|s{seed}"


def _finite(x: Any) -> Any:
    """JSON has no inf/NaN: store them as null (an inf Chamfer is also marked by ``faces_out == 0``)."""
    return x if not isinstance(x, float) or math.isfinite(x) else None


def decoded_path(out: Path, ref: MeshRef, codec: MeshCodec, target: int) -> Path:
    return Path(out) / "meshes" / f"{ref.stem}__{codec.key}__{int(target)}.ply"


def save_ply(mesh: MeshData, path: Path) -> None:
    """Write a binary PLY atomically (a killed run leaves no half file for the renderer)."""
    import trimesh

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(file_type="ply"))
    tmp.replace(path)


def run_mesh_point(codec: MeshCodec, ref: MeshRef, target: int, n_samples: int = DEFAULT_SAMPLES, seed: int = 0,
                   save_to: Path | None = None) -> dict[str, Any]:
    """Encode, decode and measure one (mesh, codec, target) point.  Errors become a record, not a crash."""
    from mscncodec.modalities.mesh_metrics import compare

    rec: dict[str, Any] = {
        "key": point_key(ref, codec, target, n_samples, seed),
        "mesh": ref.name, "codec": codec.key, "codec_name": codec.name, "target_bytes": int(target),
    }
    try:
        mesh = load_mesh(str(ref.path))
        enc = codec.encode(mesh, int(target), path=ref.path)
        t0 = time.perf_counter()
        dec = codec.decode(enc.data)
        dec_t = time.perf_counter() - t0
        t1 = time.perf_counter()
        m = compare(mesh, dec, n_samples=n_samples, seed=seed)
        rec.update({k: _finite(v) for k, v in m.items()})
        rec.update(
            bytes=len(enc.data), over_target=len(enc.data) > target, faces_out=int(len(dec.faces)),
            vertices_out=int(len(dec.vertices)), encode_time=enc.encode_time, search_time=enc.search_time,
            decode_time=dec_t, metric_time=time.perf_counter() - t1, config=enc.config,
        )
        if save_to is not None:
            save_ply(dec, save_to)
    except Exception as exc:  # one broken point must not sink a long run
        rec["error"] = f"{type(exc).__name__}: {exc}"
    return rec


# --------------------------------------------------------------------------- run


@dataclass
class MeshBenchResult:
    """What a run produced; the CLI prints from it and tests inspect it."""

    out: Path
    records: list[dict[str, Any]]
    codecs: list[MeshCodec]
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


def run_mesh_bench(
    paths: list[Path],
    codecs: list[MeshCodec],
    out: Path,
    sizes: Iterable[int] = DEFAULT_SIZES,
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    plot: bool = True,
    render: bool = True,
    echo: Callable[[str], None] = tqdm.write,
    progress: bool = True,
) -> MeshBenchResult:
    """Run every missing (mesh x codec x target) point, then write all reports into ``out``.

    Runs inline (one process): mesh points are few, and the metrics and
    decimation are native code.  Before starting it prints how many runs the
    grid has and how many are already cached.
    """
    t_start = time.perf_counter()
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] <= 0:
        raise BenchError("byte targets must be positive integers")
    try:
        import igl  # noqa: F401
    except ImportError as exc:
        raise BenchError(f"the mesh bench needs libigl for its metrics ({exc})") from exc
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    refs = prepare_meshes(paths)
    usable, notices = available_codecs(codecs)
    for n in notices:
        echo(n)

    cache_path = out / CACHE_NAME
    cache = load_cache(cache_path)
    shown = render_target(sizes)
    tasks = [(c, r, s) for r in refs for c in usable for s in sizes]
    keys = [point_key(r, c, s, n_samples, seed) for c, r, s in tasks]
    done = {k: cache.get(k) for k in keys}
    pending = [t for t, k in zip(tasks, keys) if done[k] is None]
    result = MeshBenchResult(out, [], usable, sizes, refs, cached=len(tasks) - len(pending), notices=notices)
    slow = sum(1 for c, _, _ in pending if c.slow)
    echo(f"mesh bench: {len(refs)} meshes x {len(usable)} codecs x {len(sizes)} sizes = {len(tasks)} runs "
         f"({result.cached} cached, {len(pending)} to run" + (f", {slow} of them fitted per mesh (slow)" if slow else "")
         + ")")

    bar = progress_bar(total=len(tasks), initial=result.cached, desc="mesh bench", unit="pt", progress=progress)
    try:
        for c, r, s in pending:
            bar.set_postfix_str(f"{c.key} {r.name} {s}B", refresh=False)
            rec = run_mesh_point(c, r, s, n_samples, seed, decoded_path(out, r, c, s) if s == shown else None)
            bar.update(1)
            if "error" in rec:
                result.failed += 1
                echo(f"failed {rec['codec']} {rec['mesh']} @ {s} bytes: {rec['error']}")
            else:
                result.encoded += 1
                append_cache(cache_path, rec)
            done[rec["key"]] = rec
    finally:
        bar.close()

    names = {k: r.name for (_, r, _), k in zip(tasks, keys)}  # cached rows may predate a rename
    result.records = [{**rec, "mesh": names[k]} for k, rec in done.items() if rec and "error" not in rec]
    write_reports(result, plot=plot, render=render, echo=echo)
    result.seconds = time.perf_counter() - t_start
    return result


# --------------------------------------------------------------------------- report

#: Per-point fields averaged over meshes in results.json.
AVG_FIELDS = ("bytes", "chamfer_l1", "chamfer_l2", "chamfer_l1_pts", "normal_consistency", "iou", "fscore",
              "encode_time", "decode_time")


def _num(x: Any) -> float:
    """A stored metric as float; null (an inf Chamfer of an empty decode, or NaN) becomes inf/NaN again."""
    return float(x) if isinstance(x, (int, float)) else math.nan


def _chamfer(rec: dict[str, Any], key: str = "chamfer_l1") -> float:
    """Chamfer of a record; null means inf when the decode was empty."""
    v = rec.get(key)
    if v is None:
        return math.inf if rec.get("faces_out", 1) == 0 else math.nan
    return float(v)


def averages(result: MeshBenchResult) -> dict[str, dict[str, dict[str, Any]]]:
    """codec -> target -> arithmetic mean over meshes of each :data:`AVG_FIELDS` entry, with ``n_meshes``.

    A Chamfer that is inf for any mesh makes the mean inf (null in JSON): an
    empty decode is not averaged away.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for c in result.codecs:
        per: dict[str, dict[str, Any]] = {}
        for s in result.sizes:
            rows = [r for r in result.records if r["codec"] == c.key and r["target_bytes"] == s]
            if not rows:
                continue
            agg: dict[str, Any] = {"n_meshes": len(rows)}
            for f in AVG_FIELDS:
                vals = [_chamfer(r, f) if f.startswith("chamfer") else _num(r.get(f)) for r in rows]
                agg[f] = _finite(float(np.mean(vals)))
            per[str(s)] = agg
        out[c.key] = per
    return out


def _curve(records: list[dict[str, Any]], codec: str, mesh: str) -> tuple[np.ndarray, np.ndarray]:
    """(ln bytes, ln Chamfer-L1) of one codec on one mesh, sorted by bytes; equal byte counts averaged."""
    pts: dict[int, list[float]] = {}
    for r in records:
        if r["codec"] == codec and r["mesh"] == mesh:
            c = _chamfer(r)
            if math.isfinite(c) and c > 0 and r.get("bytes"):
                pts.setdefault(int(r["bytes"]), []).append(math.log(c))
    b = sorted(pts)
    return np.log(np.array(b, dtype=np.float64)), np.array([np.mean(pts[x]) for x in b])


def log_chamfer_gap(test: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray],
                    grid: int = 256) -> tuple[float, float, float]:
    """Mean of ln CD_test(b) - ln CD_ref(b) over the overlapping range of ln bytes, and that range in bytes.

    Each curve is the piecewise-linear interpolant of its measured points in
    (ln bytes, ln Chamfer-L1) -- with 2-4 points per curve a polynomial fit
    (classic Bjontegaard) would invent wiggles -- and the gap is averaged
    uniformly in ln bytes (trapezoid rule on ``grid`` points).  ``exp(gap)`` is
    the geometric-mean ratio of the Chamfer distances at equal size; < 1 means
    the test codec is more accurate.  Returns ``(nan, nan, nan)`` when either
    curve has < 2 points or the ranges do not overlap (no extrapolation).
    """
    (xt, yt), (xr, yr) = test, ref
    if len(xt) < 2 or len(xr) < 2:
        return math.nan, math.nan, math.nan
    lo, hi = max(xt[0], xr[0]), min(xt[-1], xr[-1])
    if not hi > lo:
        return math.nan, math.nan, math.nan
    x = np.linspace(lo, hi, grid)
    gap = np.interp(x, xt, yt) - np.interp(x, xr, yr)
    mean = float(np.sum((gap[1:] + gap[:-1]) * 0.5 * np.diff(x)) / (hi - lo))
    return mean, float(math.exp(lo)), float(math.exp(hi))


def compare_codecs(result: MeshBenchResult) -> list[dict[str, Any]]:
    """The log-Chamfer gap at equal bytes of every mscn codec (else every later baseline) vs every baseline.

    Per mesh :func:`log_chamfer_gap`; the summary is the mean of the per-mesh
    gaps over the meshes where both curves overlap, reported as a ratio
    ``exp(mean gap)`` (geometric mean over meshes and over the byte range).
    """
    keys = [c.key for c in result.codecs]
    names = {c.key: c.name for c in result.codecs}
    base = [k for k in keys if not k.startswith("mscn")]
    tests = [k for k in keys if k.startswith("mscn")]
    pairs = [(t, b) for t in tests for b in base] + [(base[j], base[i]) for i in range(len(base))
                                                      for j in range(i + 1, len(base))]
    rows = []
    for t, b in pairs:
        per_mesh = {}
        for m in result.meshes:
            gap, lo, hi = log_chamfer_gap(_curve(result.records, t, m.name), _curve(result.records, b, m.name))
            if math.isfinite(gap):
                per_mesh[m.name] = {"log_gap": gap, "ratio": math.exp(gap), "bytes_lo": lo, "bytes_hi": hi}
        gaps = [v["log_gap"] for v in per_mesh.values()]
        mean = float(np.mean(gaps)) if gaps else math.nan
        rows.append({"test": t, "test_name": names[t], "ref": b, "ref_name": names[b], "meshes": per_mesh,
                     "mean_log_gap": _finite(mean), "ratio": _finite(math.exp(mean)) if gaps else None})
    return rows


COMPARE_METHOD = (
    "For each mesh, each codec's measured points are joined piecewise-linearly in (ln bytes, ln Chamfer-L1); "
    "the gap ln CD_test - ln CD_ref is averaged uniformly in ln bytes over the byte range both codecs cover "
    "(no extrapolation). The per-mesh gaps are averaged over meshes; ratio = exp(mean gap) is the "
    "geometric-mean Chamfer-L1 ratio at equal size (< 1: the test codec is more accurate; 0.8 = 20% lower "
    "Chamfer). Points over their target still count at their real size."
)


def summary_markdown(result: MeshBenchResult, avg: dict[str, Any], comp: list[dict[str, Any]]) -> str:
    """Tables per target (means over meshes) and the equal-size Chamfer comparison, as Markdown."""
    lines = [
        "# Mesh benchmark",
        "",
        f"{len(result.meshes)} meshes x {len(result.codecs)} codecs x targets {', '.join(map(str, result.sizes))} "
        "bytes. Chamfer (CD) is symmetric, mean of the two directions' mean distance from a surface sample to the "
        "other *surface*, in units of the reference's bounding-box diagonal (CD-L2: squared, units of diag^2); "
        "CD-L1pts uses sample-to-sample distances (includes a sampling floor, for comparison with the literature). "
        "NC: normal consistency; F: F-score at tau = 0.01 diag; IoU: volumetric, generalised winding number. "
        "Means over meshes.",
        "",
        "| codec | target | bytes | CD-L1 (1e-3) | CD-L2 (1e-6) | CD-L1pts (1e-3) | NC | F | IoU | enc s | dec s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(x: Any, scale: float = 1.0, spec: str = ".3f") -> str:
        return "inf/n.a." if x is None else format(x * scale, spec)

    for c in result.codecs:
        for s, a in avg.get(c.key, {}).items():
            lines.append(
                f"| {c.name} | {s} | {f(a['bytes'], spec='.0f')} | {f(a['chamfer_l1'], 1e3)} | "
                f"{f(a['chamfer_l2'], 1e6)} | {f(a['chamfer_l1_pts'], 1e3)} | {f(a['normal_consistency'])} | "
                f"{f(a['fscore'])} | {f(a['iou'])} | {f(a['encode_time'], spec='.2f')} | "
                f"{f(a['decode_time'], spec='.2f')} |")
    lines += ["", "## Chamfer-L1 at equal size", "", COMPARE_METHOD, ""]
    if not comp:
        lines.append("Fewer than two codecs: nothing to compare.")
    else:
        lines += ["| test | vs | CD-L1 ratio | change | meshes | per mesh (ratio over bytes range) |",
                  "|---|---|---:|---:|---:|---|"]
        for row in comp:
            per = "; ".join(f"{m}: {v['ratio']:.3f} over {v['bytes_lo']:.0f}-{v['bytes_hi']:.0f} B"
                            for m, v in row["meshes"].items()) or "no overlap"
            ratio = row["ratio"]
            lines.append(f"| {row['test_name']} | {row['ref_name']} | {f(ratio)} | "
                         f"{'n/a' if ratio is None else format((ratio - 1) * 100, '+.1f') + '%'} | "
                         f"{len(row['meshes'])} | {per} |")
    over = [r for r in result.records if r.get("over_target")]
    if over:
        lines += ["", "Over target (the codec's smallest file is larger than the target): " + ", ".join(
            f"{r['codec']} on {r['mesh']} @ {r['target_bytes']} B -> {r['bytes']} B" for r in over) + "."]
    return "\n".join(lines) + "\n"


def write_reports(result: MeshBenchResult, plot: bool = True, render: bool = True,
                  echo: Callable[[str], None] = tqdm.write) -> None:
    """results.json, results.csv, summary.md; rd.png and side_by_side_*.png unless switched off."""
    from mscncodec.modalities.mesh_metrics import DEFAULT_TAU, METRICS_VERSION

    out = result.out
    recs = sorted(result.records, key=lambda r: (r["mesh"], r["codec"], r["target_bytes"]))
    avg = averages(result)
    comp = compare_codecs(result)
    result.summary = {"averages": avg, "comparisons": comp}
    doc = {
        "settings": {"sizes": result.sizes, "metrics_version": METRICS_VERSION, "tau": DEFAULT_TAU,
                     "units": "distances / reference bbox diagonal; chamfer_l2 / diagonal^2",
                     "chamfer": "(mean_ref d(p, rec surface) + mean_rec d(q, ref surface)) / 2; "
                                "_pts: distances to the other mesh's samples",
                     "comparison_method": COMPARE_METHOD},
        "meshes": [{"name": m.name, "sha1": m.sha1, "vertices": m.vertices, "faces": m.faces, "diag": m.diag,
                    "file_bytes": m.file_bytes} for m in result.meshes],
        "codecs": [{"key": c.key, "name": c.name, "description": c.description, "version": c.version()}
                   for c in result.codecs],
        "records": recs,
        "averages": avg,
        "comparisons": comp,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in recs:
            w.writerow({**r, "config": json.dumps(r.get("config", {}), sort_keys=True)})
    (out / "summary.md").write_text(summary_markdown(result, avg, comp), encoding="utf-8")
    if plot and recs:
        plot_rd(result, out / "rd.png")
    if render and recs:
        shown = render_target(result.sizes)
        for m in result.meshes:
            panels: list[tuple[str, MeshData | None]] = [
                (f"original\n{m.faces} faces, {m.file_bytes / 1000:.0f} KB file", load_mesh(str(m.path)))]
            for c in result.codecs:
                rec = next((r for r in recs if r["mesh"] == m.name and r["codec"] == c.key
                            and r["target_bytes"] == shown), None)
                p = decoded_path(out, m, c, shown)
                if rec is None:
                    continue
                title = f"{c.name}\n{rec['bytes']} B, CD-L1 {_fmt_cd(_chamfer(rec))}"
                if p.is_file():
                    panels.append((title, as_mesh(_read_ply(p))))
                else:
                    echo(f"no decoded mesh kept for {c.key} on {m.name} @ {shown} B (cached before it was saved)")
                    panels.append((title + "\n(decoded mesh not kept)", None))
            try:
                render_side_by_side(panels, out / f"side_by_side_{m.stem}.png")
            except Exception as exc:  # a picture must never lose the numbers
                echo(f"could not render {m.name}: {type(exc).__name__}: {exc}")


def _fmt_cd(x: float) -> str:
    return "inf" if math.isinf(x) else ("n/a" if math.isnan(x) else f"{x * 1e3:.2f}e-3")


def _read_ply(path: Path) -> Any:
    import trimesh

    return trimesh.load(str(path), force="mesh", process=False)


def summary_line(result: MeshBenchResult) -> str:
    """One line for the end of a run: size of the sweep, cache use, failures, headline comparison."""
    line = (f"mesh bench: {len(result.meshes)} meshes x {len(result.codecs)} codecs x {len(result.sizes)} sizes: "
            f"{result.encoded} encoded, {result.cached} cached, {result.failed} failed in {result.seconds:.1f}s "
            f"-> {result.out}")
    heads = [r for r in result.summary.get("comparisons", []) if r["test"].startswith("mscn") and r["ratio"]]
    if heads:
        line += "; CD-L1 at equal size: " + ", ".join(
            f"{r['test']} vs {r['ref']} x{r['ratio']:.2f}" for r in heads)
    return line


# --------------------------------------------------------------------------- plot / render


def plot_rd(result: MeshBenchResult, path: Path) -> None:
    """Chamfer-L1 vs bytes (log-log), one panel per mesh plus the mean over meshes.

    The mean panel only shows targets every mesh has a finite point for, so
    the averaged curve never mixes different mesh subsets.
    """
    from matplotlib.figure import Figure

    from mscncodec.bench.plot import _color

    names = [m.name for m in result.meshes]
    n = len(names) + (1 if len(names) > 1 else 0)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(5.2 * cols, 4.2 * rows), dpi=110)
    avg = result.summary.get("averages") or averages(result)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        for j, c in enumerate(result.codecs):
            if i < len(names):
                pts = sorted((r["bytes"], _chamfer(r)) for r in result.records
                             if r["codec"] == c.key and r["mesh"] == names[i])
                title = names[i]
            else:
                pts = sorted((a["bytes"], a["chamfer_l1"]) for a in avg.get(c.key, {}).values()
                             if a["n_meshes"] == len(names) and a["chamfer_l1"] is not None and a["bytes"])
                title = f"mean over {len(names)} meshes"
            pts = [(b, y) for b, y in pts if math.isfinite(y) and y > 0]
            if not pts:
                continue
            ours = c.key.startswith("mscn")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color=_color(j), lw=2.4 if ours else 1.3,
                    ms=5 if ours else 4, label=c.name)
        for s in result.sizes:
            ax.axvline(s, color="0.8", lw=0.8, ls=":", zorder=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("bytes (real file size)")
        ax.set_ylabel("Chamfer-L1 / bbox diagonal")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def _display_mesh(mesh: MeshData, max_faces: int) -> MeshData:
    """Decimate for display only when above ``max_faces``: matplotlib draws every polygon in Python."""
    if len(mesh.faces) <= max_faces:
        return mesh
    try:
        import fast_simplification

        v, f = fast_simplification.simplify(np.array(mesh.vertices), np.array(mesh.faces), target_count=max_faces)
        return MeshData(np.asarray(v, np.float64), np.asarray(f, np.int64))
    except ImportError:  # no decimator: a random subset of faces still shows the shape
        idx = np.random.default_rng(0).choice(len(mesh.faces), max_faces, replace=False)
        return MeshData(mesh.vertices, mesh.faces[np.sort(idx)])


def render_side_by_side(panels: Sequence[tuple[str, MeshData | None]], path: Path, max_faces: int = 50_000,
                        up: str = "y", elev: float = 15.0, azim: float = -60.0) -> None:
    """Render meshes in a row from one camera with flat Lambert shading; the first panel sets the framing.

    ``up`` names the mesh axis that points up on screen (OBJ/PLY usually
    ``y``).  Shading uses |n . l| so inside-out reconstructions are not drawn
    black.  Meshes above ``max_faces`` are decimated for display only.
    """
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    perm = {"x": [1, 2, 0], "y": [0, 2, 1], "z": [0, 1, 2]}[up]
    ref = next((m for _, m in panels if m is not None and len(m.faces)), None)
    if ref is None:
        raise ValueError("nothing to render")
    used = ref.vertices[np.unique(ref.faces)][:, perm]
    if up == "y":
        used[:, 1] *= -1
    center = (used.max(0) + used.min(0)) / 2
    half = (used.max(0) - used.min(0)).max() / 2 * 1.02
    light = np.array([0.4, -0.6, 0.7])
    light /= np.linalg.norm(light)
    fig = Figure(figsize=(3.4 * len(panels), 3.8), dpi=110)
    for i, (title, mesh) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, projection="3d")
        ax.set_axis_off()
        ax.set_title(title, fontsize=8)
        ax.view_init(elev=elev, azim=azim)
        ax.set_box_aspect((1, 1, 1))
        for setter, k in ((ax.set_xlim, 0), (ax.set_ylim, 1), (ax.set_zlim, 2)):
            setter(center[k] - half, center[k] + half)
        if mesh is None or len(mesh.faces) == 0:
            ax.text2D(0.5, 0.5, "empty" if mesh is not None else "not kept", transform=ax.transAxes, ha="center")
            continue
        m = _display_mesh(mesh, max_faces)
        v = m.vertices[:, perm].copy()
        if up == "y":
            v[:, 1] *= -1  # keep a right-handed frame after swapping y and z
        tri = v[m.faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
        shade = 0.25 + 0.75 * np.abs(n @ light)
        colors = np.clip(shade[:, None] * np.array([0.72, 0.78, 0.88])[None, :], 0, 1)
        ax.add_collection3d(Poly3DCollection(tri, facecolors=colors, edgecolors="none", linewidths=0))
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.86, wspace=0)
    fig.savefig(path)
