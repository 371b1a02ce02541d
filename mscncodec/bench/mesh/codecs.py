"""The mesh codec interface (the mesh twin of :class:`mscncodec.bench.base.Codec`) and the codecs:
Draco, quadric decimation + Draco, and mscn's mesh codec."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mscncodec.bench.base import Availability, Keyed, dist_version, model_identity, need_modules
from mscncodec.bench.mesh.data import MeshData, _safe, as_mesh


DEFAULT_RESOLUTION = 128


MESH_CODEC_IDS: tuple[str, ...] = ("draco", "simplify-draco", "mscn")


DEFAULT_MESH_CODECS = ",".join(MESH_CODEC_IDS)


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


class MeshCodec(Keyed):
    """Base class of a benchmarked mesh codec (the mesh twin of :class:`.base.Codec`).

    The image ``Codec`` is built around an HxWx3 array and a bits-per-pixel
    budget, so meshes get this parallel interface instead: encode to at most
    ``target_bytes`` real bytes, decode to a mesh in the input's coordinates.
    ``key`` must be file- and cache-safe; ``version()`` and ``config()`` are
    part of the cache key (:class:`.base.Keyed`), so a library upgrade, a new
    setting or a model change invalidates old points.
    """

    key: str = "mesh-codec"
    name: str = "mesh codec"
    description: str = ""
    slow: bool = False

    @classmethod
    def available(cls) -> Availability:
        """Whether the libraries this codec needs are importable."""
        return Availability(True)

    def encode(self, mesh: MeshData, target_bytes: int, path: Path | None = None) -> Encoded:
        """Best file of at most ``target_bytes`` (or the smallest possible one, reported as over target)."""
        raise NotImplementedError

    def decode(self, data: bytes) -> MeshData:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}>"


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
        return f"dracopy-{dist_version('DracoPy')}"

    def config(self) -> dict[str, Any]:
        return {"qp": self.qp, "search": [self.qmin, self.qmax], "levels": list(self.levels)}

    def legacy_versions(self, target: int) -> tuple[str, ...]:
        """Before the identity scheme: the library version and the search settings (the fixed qp is in the key)."""
        return (f"{self.version()}|q{self.qmin}-{self.qmax}|l{','.join(map(str, self.levels))}",)

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
        return f"dracopy-{dist_version('DracoPy')} fast-simplification-{dist_version('fast_simplification')}"

    def config(self) -> dict[str, Any]:
        return {"qps": list(self.qps), "levels": list(self.levels), "grid_ratio": self.grid_ratio,
                "min_faces": self.min_faces, "select_samples": self.select_samples, "agg": self.agg}

    def legacy_versions(self, target: int) -> tuple[str, ...]:
        """Before the identity scheme: the library versions and every setting, in one string."""
        return (f"dracopy-{dist_version('DracoPy')}|fs-{dist_version('fast_simplification')}|"
                f"q{','.join(map(str, self.qps))}|l{','.join(map(str, self.levels))}|r{self.grid_ratio:g}|"
                f"m{self.min_faces}|s{self.select_samples}|a{self.agg:g}",)

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
        import mscncodec

        return f"mscncodec-{getattr(mscncodec, '__version__', '?')}"

    def config(self) -> dict[str, Any]:
        """The codec's settings (results.json); each point's cache key names the model routed for it."""
        return {"model": self.model, "effort": self.effort, "resolution": self.resolution}

    def identity(self, target: int) -> tuple[str, str, dict[str, Any]]:
        """What encodes the point: the model routed for this byte target, with its family's encoder revision
        and weights id (:func:`.base.model_identity`), the effort and the decoding resolution. (Before the
        identity scheme the key hashed a list of source files; those points are re-measured once.)"""
        version, config = model_identity(_core_mesh_api().pick_model(self.model, float(target)))
        return self.key, version, {**config, "effort": self.effort, "resolution": self.resolution}

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
