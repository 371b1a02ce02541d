"""Geometry metrics for comparing a reconstructed triangle mesh with its reference.

Pure functions on plain arrays: a mesh is ``(V, F)`` with ``V`` float64 ``(n, 3)``
and ``F`` int64 ``(m, 3)``; any object with ``.vertices`` and ``.faces`` is
accepted wherever a mesh is.  Nothing here knows about codecs or files, so
the same numbers can be computed for every codec and modality that ends in a
mesh.

Conventions (chosen so the numbers of different meshes and codecs can be put
side by side):

* **Scale.**  Every distance is divided by the diagonal of the *reference*
  mesh's axis-aligned bounding box (``diag``), squared distances by
  ``diag**2``.  Normalising by the reference only means a reconstruction
  cannot improve its score by changing its own size.
* **Samples.**  Both surfaces are sampled uniformly by area
  (:func:`sample_surface`, 100k points each by default, fixed seed), so a
  metric is an estimate of a surface integral, independent of how the mesh
  happens to be tessellated.
* **Nearest distance.**  The distance of a sample of one mesh to the *other
  mesh* is the exact Euclidean distance to its closest point on that mesh's
  triangles (libigl AABB tree), not to the closest of its samples.  Sample-to-
  sample distances (a scipy ``cKDTree``; the convention of e.g. Occupancy
  Networks) carry a floor of about half the sample spacing even between
  identical surfaces -- at 100k samples that is ~1e-3 of the diagonal, the
  same order as the errors of a good codec at a few kilobytes, which would
  squeeze all ratios between codecs toward 1.  The sample-to-sample numbers
  are still reported (``chamfer_l1_pts`` / ``chamfer_l2_pts``) for
  comparison with published tables.
* **Symmetry.**  Chamfer = (mean over reference samples + mean over
  reconstruction samples) / 2, i.e. the average of the two directions, not
  their sum.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from mscncodec.modalities.mesh import surface_distance, winding_numbers

#: Bumped whenever a definition below changes, so cached benchmark points are recomputed.
METRICS_VERSION = "1"

#: Default F-score threshold as a fraction of the reference bounding-box diagonal.
DEFAULT_TAU = 0.01


class MeshLike(Protocol):
    """Anything with ``vertices`` (n, 3) and ``faces`` (m, 3) arrays (trimesh, mscn's Mesh)."""

    vertices: Any
    faces: Any


MeshArg = MeshLike | tuple[np.ndarray, np.ndarray]


def as_arrays(mesh: MeshArg) -> tuple[np.ndarray, np.ndarray]:
    """(V float64 C-contiguous (n, 3), F int64 C-contiguous (m, 3)): what libigl's bindings demand.

    Faces that point at non-existent vertices are rejected here, because libigl
    would read out of bounds instead of raising.
    """
    if isinstance(mesh, tuple):
        v, f = mesh
    else:
        v, f = mesh.vertices, mesh.faces
    V = np.ascontiguousarray(np.asarray(v, dtype=np.float64).reshape(-1, 3))
    F = np.ascontiguousarray(np.asarray(f, dtype=np.int64).reshape(-1, 3))
    if F.size and (F.min() < 0 or F.max() >= len(V)):
        raise ValueError(f"face indices out of range for {len(V)} vertices")
    return V, F


def bbox_diagonal(V: np.ndarray, F: np.ndarray) -> float:
    """Length of the bounding-box diagonal of the vertices the faces use (0.0 for no faces).

    Unreferenced vertices (left behind by some decoders and loaders) are
    ignored: they are not part of the surface and must not change the scale.
    """
    if len(F) == 0:
        return 0.0
    P = V[np.unique(F)]
    return float(np.linalg.norm(P.max(axis=0) - P.min(axis=0)))


def _face_normals_areas(V: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit face normals (zero for degenerate faces) and face areas."""
    if len(F) == 0:
        return np.zeros((0, 3)), np.zeros(0)
    cross = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    norm = np.linalg.norm(cross, axis=1)
    normals = np.divide(cross, norm[:, None], out=np.zeros_like(cross), where=norm[:, None] > 0)
    return normals, 0.5 * norm


def surface_area(V: np.ndarray, F: np.ndarray) -> float:
    """Total area of the triangles."""
    return float(_face_normals_areas(V, F)[1].sum())


def sample_surface(V: np.ndarray, F: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniformly distributed over the surface by area, with their face normals.

    Faces are drawn with probability proportional to area (degenerate faces
    never), then a point uniformly inside the triangle via the square-root
    barycentric trick.  Uniform-by-area sampling makes every metric built on
    it an estimate of a surface integral, so a finely tessellated flat region
    does not count more than a coarse one.  The same ``seed`` gives the same
    points, which keeps benchmark numbers reproducible.

    Returns ``(points (n, 3), normals (n, 3))``; both are empty (shape
    ``(0, 3)``) when the mesh has no area.
    """
    V, F = as_arrays((V, F))
    normals, areas = _face_normals_areas(V, F)
    total = areas.sum()
    if n <= 0 or not total > 0 or not math.isfinite(total):
        return np.zeros((0, 3)), np.zeros((0, 3))
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(areas)
    face = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    face = np.minimum(face, len(F) - 1)  # guard the u == 1.0 rounding edge
    r1 = np.sqrt(rng.random(n))
    r2 = rng.random(n)
    a, b, c = V[F[face, 0]], V[F[face, 1]], V[F[face, 2]]
    pts = (1.0 - r1)[:, None] * a + (r1 * (1.0 - r2))[:, None] * b + (r1 * r2)[:, None] * c
    return pts, normals[face]


def _igl() -> Any:
    try:
        import igl
    except ImportError as exc:  # libigl is an optional (mesh bench) dependency
        raise ImportError("mesh metrics need libigl (pip install libigl)") from exc
    return igl


def distance_to_mesh(points: np.ndarray, V: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact distance from each point to the closest point on the triangles, and that triangle's index.

    An AABB tree (libigl) makes this O(log m) per point.  Returns
    ``(distances (k,), face indices (k,))``.
    """
    if len(points) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    _igl()
    return surface_distance(points, V, F)


def winding_inside(V: np.ndarray, F: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Boolean inside/outside of ``points`` by the generalised winding number (|w| > 0.5).

    The generalised winding number (Jacobson et al. 2013) is ~1 inside a
    closed surface, ~0 outside, and degrades gracefully on holes, cracks and
    self-intersections, which decoded meshes often have; a ray-parity test
    would flip whole regions for one missing triangle.  The absolute value
    makes the test independent of the global orientation (an inside-out
    reconstruction has the same volume), consistent with the orientation-free
    normal consistency below.
    """
    if len(F) == 0 or len(points) == 0:
        return np.zeros(len(points), dtype=bool)
    _igl()
    return np.abs(winding_numbers(V, F, points)) > 0.5


def volume_iou(ref: MeshArg, rec: MeshArg, n: int = 100_000, seed: int = 0) -> float:
    """Volumetric IoU estimated from ``n`` points uniform in the union of the two bounding boxes.

    Inside/outside by :func:`winding_inside`, so open meshes still have a
    volume.  The union box guarantees both solids are fully covered, so the
    estimate is unbiased.  Returns 0.0 for an empty reconstruction and NaN when
    neither mesh encloses any sample (IoU undefined, e.g. a flat sheet).
    """
    Vr, Fr = as_arrays(ref)
    Vc, Fc = as_arrays(rec)
    used = [V[np.unique(F)] for V, F in ((Vr, Fr), (Vc, Fc)) if len(F)]
    if not used:
        return math.nan
    P = np.concatenate(used)
    lo, hi = P.min(axis=0), P.max(axis=0)
    rng = np.random.default_rng(seed)
    q = lo + rng.random((n, 3)) * (hi - lo)
    a = winding_inside(Vr, Fr, q)
    b = winding_inside(Vc, Fc, q)
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else math.nan


def _worst(diag: float, tau: float, n: int) -> dict[str, float]:
    """The result for a reconstruction with no surface: well defined, and worse than anything real."""
    return {
        "diag": diag, "chamfer_l1": math.inf, "chamfer_l2": math.inf,
        "chamfer_l1_pts": math.inf, "chamfer_l2_pts": math.inf,
        "normal_consistency": 0.0, "precision": 0.0, "recall": 0.0, "fscore": 0.0,
        "iou": 0.0, "tau": tau, "n_samples": n,
    }


def compare(ref: MeshArg, rec: MeshArg, n_samples: int = 100_000, seed: int = 0,
            tau: float = DEFAULT_TAU, n_iou: int | None = None, points: bool = True) -> dict[str, float]:
    """All metrics of a reconstruction ``rec`` against the reference ``ref``, as one flat dict.

    Keys (distances in units of ``diag``, the reference's bounding-box diagonal):

    * ``chamfer_l1``: (mean_{p in ref} d(p, rec) + mean_{q in rec} d(q, ref)) / 2, where ``d`` is
      the exact distance to the other *surface* and p, q are ``n_samples`` area-uniform samples of
      each surface;
    * ``chamfer_l2``: the same with squared distances (units of ``diag**2``);
    * ``chamfer_l1_pts`` / ``chamfer_l2_pts``: the same with ``d`` = distance to the nearest *sample*
      of the other surface (scipy cKDTree; includes a sampling floor, see the module docstring);
      skipped (NaN) with ``points=False``;
    * ``normal_consistency``: mean over both sample sets of |n_sample . n_closest face| (1 = every
      sample's normal agrees with the other surface's normal where it is nearest; orientation-free);
    * ``precision`` (share of rec samples within ``tau`` of ref), ``recall`` (share of ref samples
      within ``tau`` of rec) and their harmonic mean ``fscore``; ``tau`` is relative to ``diag``;
    * ``iou``: :func:`volume_iou` with ``n_iou`` points (default ``n_samples``);
    * ``diag``: the normaliser itself, in the reference's units; ``tau``; ``n_samples``.

    A reconstruction without surface (no faces, or zero area) yields inf Chamfer and 0 for
    normal consistency, precision, recall, F-score and IoU rather than an exception, so one failed
    decode does not sink a benchmark.  The reference must have a surface (ValueError otherwise).
    """
    Vr, Fr = as_arrays(ref)
    Vc, Fc = as_arrays(rec)
    diag = bbox_diagonal(Vr, Fr)
    if not diag > 0 or surface_area(Vr, Fr) <= 0:
        raise ValueError("the reference mesh has no surface (no faces or zero area)")
    P, Np = sample_surface(Vr, Fr, n_samples, seed)
    Q, Nq = sample_surface(Vc, Fc, n_samples, seed + 1)  # other seed: no accidental sample alignment
    if len(Q) == 0:
        return _worst(diag, tau, n_samples)

    d_pq, f_pq = distance_to_mesh(P, Vc, Fc)  # ref samples -> rec surface (recall side)
    d_qp, f_qp = distance_to_mesh(Q, Vr, Fr)  # rec samples -> ref surface (precision side)
    nrm_c, _ = _face_normals_areas(Vc, Fc)
    nrm_r, _ = _face_normals_areas(Vr, Fr)
    nc = 0.5 * (np.abs(np.einsum("ij,ij->i", Np, nrm_c[f_pq])).mean()
                + np.abs(np.einsum("ij,ij->i", Nq, nrm_r[f_qp])).mean())
    thr = tau * diag
    precision = float(np.mean(d_qp < thr))
    recall = float(np.mean(d_pq < thr))
    fscore = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0

    l1_pts = l2_pts = math.nan
    if points:
        from scipy.spatial import cKDTree

        e_pq, _ = cKDTree(Q).query(P, k=1)
        e_qp, _ = cKDTree(P).query(Q, k=1)
        l1_pts = 0.5 * (e_pq.mean() + e_qp.mean()) / diag
        l2_pts = 0.5 * ((e_pq**2).mean() + (e_qp**2).mean()) / diag**2

    return {
        "diag": diag,
        "chamfer_l1": float(0.5 * (d_pq.mean() + d_qp.mean()) / diag),
        "chamfer_l2": float(0.5 * ((d_pq**2).mean() + (d_qp**2).mean()) / diag**2),
        "chamfer_l1_pts": float(l1_pts),
        "chamfer_l2_pts": float(l2_pts),
        "normal_consistency": float(nc),
        "precision": precision,
        "recall": recall,
        "fscore": float(fscore),
        "iou": volume_iou((Vr, Fr), (Vc, Fc), n_iou or n_samples, seed + 2),
        "tau": tau,
        "n_samples": n_samples,
    }


def chamfer_l1(ref: MeshArg, rec: MeshArg, n_samples: int = 100_000, seed: int = 0) -> float:
    """Symmetric Chamfer-L1 to the surfaces, /2 convention, in units of the reference diagonal.

    The cheap subset of :func:`compare` (no IoU, no sample-to-sample KD-trees):
    what an encoder-side search evaluates many times.
    """
    Vr, Fr = as_arrays(ref)
    Vc, Fc = as_arrays(rec)
    diag = bbox_diagonal(Vr, Fr)
    if not diag > 0:
        raise ValueError("the reference mesh has no surface")
    P, _ = sample_surface(Vr, Fr, n_samples, seed)
    Q, _ = sample_surface(Vc, Fc, n_samples, seed + 1)
    if len(Q) == 0:
        return math.inf
    return float(0.5 * (distance_to_mesh(P, Vc, Fc)[0].mean() + distance_to_mesh(Q, Vr, Fr)[0].mean()) / diag)
