"""Meshes as signed distance functions in the unit cube.

A mesh is moved into [-1, 1]^3 (bounding-box centre to the origin, the longest side
scaled to 2 * FILL), and the INR learns its signed distance there: negative
inside, positive outside. The centre and scale travel in the stream's header, so
the decoder puts the surface back where and as large as it was.

Inside/outside uses the *generalised winding number* (Jacobson et al. 2013, libigl's
fast approximation): it is ~1 inside and ~0 outside a closed surface and degrades
gracefully on the holes, flipped patches and loose parts of real-world meshes,
where a ray-parity or normal-based sign flips whole regions. The distance is the
exact point-to-triangle distance (libigl). Together they take ~0.5 s for 100k
points on a 100k-face mesh on this machine (trimesh's proximity query: 16-37 s).

Decoding evaluates the SDF on a regular grid at any resolution (the same file gives
a 128^3 or a 512^3 surface) and extracts the zero level set by marching cubes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mscncodec.errors import InputError

EXTENSIONS = (".obj", ".ply", ".stl", ".off", ".glb")
FILL = 0.9  # the longest side spans [-FILL, FILL]: room for the surface's outside band
TRUNCATION = 0.1  # signed distances are learnt clamped to +-TRUNCATION (unit-cube units): only the band matters
MAX_FACES = 5_000_000
MAX_FILE_BYTES = 1 << 30
DEFAULT_RESOLUTION = 128


@dataclass
class Mesh:
    """A triangle mesh: float64 (n, 3) vertices and int64 (m, 3) faces."""

    vertices: np.ndarray
    faces: np.ndarray

    @property
    def is_empty(self) -> bool:
        return len(self.faces) == 0


@dataclass(frozen=True)
class Frame:
    """Where the unit cube sits in the input's coordinates: x_input = center + scale * x_unit.

    float32, as stored in the header, so that both ends use exactly the same numbers."""

    center: tuple[float, float, float]
    scale: float

    def to_unit(self, v: np.ndarray) -> np.ndarray:
        return (v - np.asarray(self.center, np.float64)) / self.scale

    def from_unit(self, v: np.ndarray) -> np.ndarray:
        return v * self.scale + np.asarray(self.center, np.float64)


# ---------------------------------------------------------------- input / output

def load(src: str | Path | Mesh) -> Mesh:
    """Read what trimesh reads (OBJ, PLY, STL, OFF, GLB), merged into one triangle mesh, and validate it."""
    if isinstance(src, Mesh):
        return validate(src)
    path = Path(src)
    if path.is_dir():
        raise InputError(f"cannot read {path}: it is a directory, not a mesh file")
    if not path.is_file():
        raise InputError(f"cannot read {path}: no such file")
    if path.suffix.lower() not in EXTENSIONS:
        raise InputError(f"cannot read {path}: unknown mesh extension {path.suffix!r} ({', '.join(EXTENSIONS)})")
    if path.stat().st_size == 0:
        raise InputError(f"cannot read {path}: the file is empty")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"cannot read {path}: {path.stat().st_size} bytes is beyond this codec's limit of {MAX_FILE_BYTES}")
    if path.suffix.lower() == ".stl":
        _check_stl(path)
    import trimesh

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                m = trimesh.load(path, force="mesh", process=False)
            except ModuleNotFoundError as e:
                if e.name != "charset_normalizer":
                    raise
                # trimesh guesses the encoding of a text file that is not UTF-8 (a Latin-1 comment or group name
                # in an OBJ) with charset_normalizer, which it does not install: the geometry is ASCII, so read
                # the text as Latin-1 (every byte is a character) and hand trimesh UTF-8
                text = path.read_bytes().decode("latin-1").encode("utf-8")
                m = trimesh.load(io.BytesIO(text), file_type=path.suffix.lower().lstrip("."), force="mesh",
                                 process=False, resolver=trimesh.resolvers.FilePathResolver(str(path)))
    except ModuleNotFoundError as e:
        raise InputError(f"cannot read {path}: reading it needs the Python module {e.name!r}, "
                         f"which is not installed") from None
    except Exception as e:  # trimesh raises anything from ValueError to IndexError on malformed files
        raise InputError(f"cannot read {path}: not a mesh trimesh can load ({type(e).__name__})") from None
    if not hasattr(m, "faces") or not hasattr(m, "vertices"):
        raise InputError(f"cannot read {path}: no triangle mesh in it")
    return validate(Mesh(np.asarray(m.vertices, np.float64).reshape(-1, 3), np.asarray(m.faces, np.int64).reshape(-1, 3)),
                    str(path))


def _check_stl(path: Path) -> None:
    """Refuse a binary STL whose triangle count disagrees with its length, naming both, before trimesh reads it.

    A binary STL is an 80-byte header, a uint32 count n and n records of 50 bytes. trimesh takes any length
    mismatch for ASCII STL and decodes the binary as text, which ended in "ModuleNotFoundError" (its encoding
    guess needs charset_normalizer) or a parse error: no word about the count. ASCII STL (no NUL byte in its
    first kilobyte, and it begins with "solid" or has a "facet" there) is left to trimesh."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1024)
    n = int.from_bytes(head[80:84], "little") if len(head) >= 84 else None
    if n is not None and size == 84 + 50 * n:
        return
    if b"\0" not in head and (head.lstrip()[:5].lower() == b"solid" or b"facet" in head.lower()):
        return
    if n is None:
        raise InputError(f"cannot read {path}: {size} bytes is neither ASCII STL nor a binary STL "
                         f"(shorter than its 84-byte header)")
    raise InputError(f"cannot read {path}: binary STL claims {n:,} triangles ({84 + 50 * n:,} bytes) "
                     f"but the file holds {size:,} bytes ({(size - 84) // 50:,} triangles)")


def validate(mesh: Mesh, name: str = "mesh") -> Mesh:
    """Refuse what has no volume to describe: no faces, bad indices, non-finite or flat geometry."""
    v, f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise InputError(f"{name}: vertices and faces must be (n, 3) arrays")
    if len(f) == 0:
        raise InputError(f"{name}: the mesh has no faces")
    if len(f) > MAX_FACES:
        raise InputError(f"{name}: {len(f)} faces is beyond this codec's limit of {MAX_FACES}")
    if f.min() < 0 or f.max() >= len(v):
        raise InputError(f"{name}: a face refers to a vertex that does not exist")
    used = v[np.unique(f)]
    if not np.isfinite(used).all():
        raise InputError(f"{name}: the mesh has non-finite vertex coordinates")
    ext = used.max(0) - used.min(0)
    if ext.max() <= 0 or ext.max() > 1e30:
        raise InputError(f"{name}: the mesh is degenerate (all vertices at one point)")
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
    if not area > 0:
        raise InputError(f"{name}: the mesh is degenerate (its faces have no area)")
    if ext.min() < 1e-6 * ext.max():
        raise InputError(f"{name}: the mesh is flat (no thickness): a signed distance function needs a volume")
    return Mesh(v, f)


def encode_file(mesh: Mesh, suffix: str) -> bytes:
    """Mesh -> file bytes for an extension (so the CLI can write atomically)."""
    suffix = suffix.lower()
    if suffix not in EXTENSIONS:
        raise InputError(f"cannot write a mesh as {suffix!r} (use {', '.join(EXTENSIONS)})")
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    data = tm.export(file_type=suffix[1:])
    return data.encode() if isinstance(data, str) else bytes(data)


# ---------------------------------------------------------------- geometry

def frame_for(mesh: Mesh) -> Frame:
    used = mesh.vertices[np.unique(mesh.faces)]
    lo, hi = used.min(0), used.max(0)
    center = tuple(float(np.float32(c)) for c in (lo + hi) / 2)
    scale = float(np.float32((hi - lo).max() / 2 / FILL))
    return Frame(center, scale)  # type: ignore[arg-type]


def winding_numbers(v: np.ndarray, f: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Generalised winding number of each point (libigl's fast approximation): ~1 inside, ~0 outside."""
    import igl

    return igl.fast_winding_number(np.ascontiguousarray(v, np.float64), np.ascontiguousarray(f, np.int64),
                                   np.ascontiguousarray(q, np.float64))


def surface_distance(q: np.ndarray, v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact distance from each point to the closest triangle (libigl's AABB tree), and that triangle."""
    import igl

    d2, face, _ = igl.point_mesh_squared_distance(np.ascontiguousarray(q, np.float64), np.ascontiguousarray(v, np.float64),
                                                  np.ascontiguousarray(f, np.int64))
    return np.sqrt(np.maximum(d2, 0.0)), np.asarray(face, np.int64)


def winding_inside(v: np.ndarray, f: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Points inside by the generalised winding number: |w| >= 0.5.

    The magnitude, not the sign: a closed surface whose triangles face inwards (clockwise seen from outside) has
    w ~ -1 inside, and `w >= 0.5` called all of it outside (the stream coded empty space). With |w| each closed
    part counts whichever way it faces; a part facing the other way *inside* another (a cavity) still cancels
    it (w ~ 0 there), as it should."""
    return np.abs(winding_numbers(v, f, q)) >= 0.5


def signed_distance(v: np.ndarray, f: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact unsigned distance, signed by the winding number (negative inside)."""
    d = surface_distance(q, v, f)[0]
    return np.where(winding_inside(v, f, q), -d, d)


def _edge_groups(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(half-edges (3m, 2): face = index // 3, their order sorted by undirected edge, where each undirected
    edge's run starts in that order, how many half-edges it has: 1 on a boundary, 2 manifold, > 2 not)."""
    e = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    key = e.min(1) * (int(f.max()) + 1) + e.max(1)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    return e, order, starts, np.diff(np.r_[starts, len(ks)])


def orient_consistently(f: np.ndarray, groups: tuple | None = None) -> np.ndarray:
    """The faces with the winding of each edge-connected patch made consistent, the minority flipped.

    A triangle wound against its neighbours adds -1 instead of +1 to the winding number on its side, so a
    flipped patch turns inside into outside next to it (a box with one face flipped has a slab of "inside"
    outside that face). Patches are faces joined across manifold edges (exactly two faces); two faces that
    traverse their shared edge in the same direction disagree. Each patch keeps the orientation most of its
    faces have (so a cavity's inward shell stays inward); a non-orientable patch (a Moebius strip) is left as
    it is. Vectorised (a double cover of the face graph, scipy's connected components: trimesh's fix_winding
    walks the faces in Python); returns `f` itself when nothing disagrees."""
    f = np.asarray(f, np.int64)
    m = len(f)
    if m < 2:
        return f
    e, order, starts, counts = _edge_groups(f) if groups is None else groups
    two = starts[counts == 2]
    a, b = order[two], order[two + 1]
    fa, fb = a // 3, b // 3
    keep = fa != fb
    a, b, fa, fb = a[keep], b[keep], fa[keep], fb[keep]
    same = e[a, 0] == e[b, 0]  # both run the edge the same way: wound against each other
    if not same.any():
        return f
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # node i: face i as it is, node m + i: face i flipped; agreeing neighbours join like to like
    rows = np.r_[fa, fa + m]
    cols = np.r_[np.where(same, fb + m, fb), np.where(same, fb, fb + m)]
    g = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(2 * m, 2 * m))
    _, lab = connected_components(g, directed=False)
    l0, l1 = lab[:m], lab[m:]
    orientable = l0 != l1
    flip = orientable & (l0 > l1)  # every face of a patch takes the side holding the smaller label ...
    patch = np.minimum(l0, l1)
    n_flip = np.bincount(patch, weights=flip, minlength=2 * m)
    n_all = np.bincount(patch, minlength=2 * m)
    flip ^= orientable & (2 * n_flip[patch] > n_all[patch])  # ... or the other side, if that flips fewer
    if not flip.any():
        return f
    out = f.copy()
    out[flip] = out[flip][:, ::-1]
    return out


AMBIGUOUS_MAX = 0.5  # share of near-surface points with |w| in (0.3, 0.7) beyond which there is no clear inside
CHECK_POINTS = 4096
CHECK_OFFSET = 0.01  # unit-cube units: how far off the surface the check looks


def ambiguous_share(v: np.ndarray, f: np.ndarray, n: int = CHECK_POINTS) -> float:
    """Share of points CHECK_OFFSET off the surface (either side, area-weighted) whose |w| is in (0.3, 0.7)."""
    rng = np.random.default_rng(0)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    tri = rng.choice(len(f), n, p=area / area.sum())
    r1, r2 = rng.random((n, 1)), rng.random((n, 1))
    s = np.sqrt(r1)
    p = (1 - s) * a[tri] + s * (1 - r2) * b[tri] + s * r2 * c[tri]
    nrm = cross[tri] / np.maximum(2 * area[tri], 1e-300)[:, None]
    side = np.where(rng.random((n, 1)) < 0.5, 1.0, -1.0)
    w = np.abs(winding_numbers(v, f, p + side * CHECK_OFFSET * nrm))
    return float(((w > 0.3) & (w < 0.7)).mean())


def solid(mesh: Mesh, name: str = "mesh") -> tuple[Mesh, str]:
    """(The mesh ready for signed distances: its patches wound consistently (orient_consistently), a one-line
    note of what was open, non-manifold or turned round, "" for a clean closed mesh), or an InputError when the
    generalised winding number gives it no clear inside.

    Holes are fine: the winding number closes them (a box without one face has w = 5/6 at its centre, w = 1/2
    across the missing face: the stream codes the closed box). What it cannot close is a surface that bounds
    nothing: an open sheet (a terrain, a face scan, a bowl-less patch) has |w| ~ 0.5 on both of its sides, so
    the sign of every signed distance near it is a coin toss and the decoded surface is noise. Above
    AMBIGUOUS_MAX of ambiguous points (ambiguous_share) it is refused, in one line; how the threshold was set:
    docs/decisions/meshes.md, "Open, inward and sheet-like input"."""
    groups = _edge_groups(np.asarray(mesh.faces, np.int64))
    f = orient_consistently(mesh.faces, groups)
    ambiguous = ambiguous_share(frame_for(mesh).to_unit(mesh.vertices), f)
    if ambiguous > AMBIGUOUS_MAX:
        raise InputError(f"{name}: the mesh encloses no clear volume (generalised winding number near 1/2 at "
                         f"{ambiguous:.0%} of the points beside its surface: an open sheet, or faces that do not "
                         f"bound a solid); a signed distance function needs a closed or nearly closed surface")
    counts = groups[3]
    said = []
    if (open_ := int((counts == 1).sum())):
        said.append(f"open ({open_} boundary edges)")
    if (many := int((counts > 2).sum())):
        said.append(f"non-manifold ({many} edges with more than two faces)")
    if (turned := int((f != mesh.faces).any(1).sum())):
        said.append(f"{turned} triangles wound against their neighbours were turned round")
    note = ""
    if said:
        note = ("the mesh is " if not said[0][0].isdigit() else "") + ", ".join(said) + \
            (f"; the winding number gave it an inside ({ambiguous:.0%} of the points beside its surface "
             f"ambiguous), and the decoded surface is closed" if open_ or many else "")
    return Mesh(mesh.vertices, f), note


def sample_surface(v: np.ndarray, f: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Area-weighted uniform points on the surface."""
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    tri = rng.choice(len(f), n, p=area / area.sum())
    r1, r2 = rng.random((n, 1)), rng.random((n, 1))
    s = np.sqrt(r1)
    return (1 - s) * a[tri] + s * (1 - r2) * b[tri] + s * r2 * c[tri]


NEAR_FRACTION = 0.85  # share of the samples near the surface
NEAR_SIGMAS = (0.002, 0.01, 0.03)  # their Gaussian offsets from it (unit-cube units), equal shares


def sdf_samples(unit: Mesh, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n training points in [-1, 1]^3 and their signed distances (float32).

    Most points lie near the surface, at three offset widths: the zero level set (what
    marching cubes extracts) is decided within a few thousandths of the cube, so that is
    where the fit's capacity should go. The rest are uniform in the cube so that the far
    field has no spurious surfaces. (Measured on held-out collection meshes at 4 KB:
    90 % near at these widths lowered Chamfer-L1 by 40-60 % against 80 % near at widths 0.005 / 0.03; 85 % keeps
    more of the far field for fits from a plain init, which otherwise leave floaters.)"""
    rng = np.random.default_rng(seed)
    v, f = unit.vertices, unit.faces
    n_near = int(round(n * NEAR_FRACTION))
    surf = sample_surface(v, f, n_near, rng)
    sigma = np.asarray(NEAR_SIGMAS)[np.arange(n_near) * len(NEAR_SIGMAS) // max(n_near, 1)][:, None]
    near = surf + rng.normal(0, 1, surf.shape) * sigma
    far = rng.uniform(-1, 1, (n - n_near, 3))
    q = np.clip(np.concatenate([near, far]), -1, 1)
    return q.astype(np.float32), signed_distance(v, f, q).astype(np.float32)


def grid_points(resolution: int) -> np.ndarray:
    """The decoding grid's coordinates along one axis, in [-1, 1]."""
    return np.linspace(-1.0, 1.0, resolution, dtype=np.float32)


def extract_surface(sdf: Callable[[np.ndarray], np.ndarray], resolution: int, chunk: int = 1 << 18) -> Mesh:
    """Evaluate an SDF (points (n, 3) in the unit cube -> (n,)) on a resolution^3 grid, in bounded chunks,
    and return its zero level set (unit-cube coordinates). An SDF without a sign change gives an empty mesh."""
    from skimage.measure import marching_cubes

    ax = grid_points(resolution)
    vol = np.empty(resolution**3, np.float32)
    # points are generated per chunk: a 512^3 grid would need 1.6 GB as one coordinate array
    for a in range(0, vol.size, chunk):
        idx = np.arange(a, min(a + chunk, vol.size))
        i, r = np.divmod(idx, resolution * resolution)
        j, k = np.divmod(r, resolution)
        vol[a : a + len(idx)] = sdf(np.stack([ax[i], ax[j], ax[k]], 1))
    vol = vol.reshape(resolution, resolution, resolution)
    if not (vol.min() < 0 < vol.max()):
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64))
    verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(2.0 / (resolution - 1),) * 3)
    # skimage's default winding makes the normals point towards increasing values: outward for an SDF
    return Mesh(verts.astype(np.float64) - 1.0, faces.astype(np.int64))


def mesh_from_trimesh(tm) -> Mesh:  # noqa: ANN001 - trimesh is imported lazily
    return Mesh(np.asarray(tm.vertices, np.float64), np.asarray(tm.faces, np.int64))


def read_bytes(data: bytes, suffix: str) -> Mesh:
    """File bytes -> Mesh (tests, bench)."""
    import trimesh

    return mesh_from_trimesh(trimesh.load(io.BytesIO(data), file_type=suffix.lstrip("."), force="mesh", process=False))
