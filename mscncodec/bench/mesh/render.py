"""Meshes drawn side by side from one camera (matplotlib, flat Lambert shading)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mscncodec.bench.mesh.data import MeshData

PANEL_TOP = 0.86  # the panels fill the figure below this height; the titles sit above (report.html cuts them off)


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
    from mscncodec.bench.base import extra

    Figure = extra("matplotlib.figure").Figure
    Poly3DCollection = extra("mpl_toolkits.mplot3d.art3d").Poly3DCollection
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
    fig.subplots_adjust(left=0, right=1, bottom=0, top=PANEL_TOP, wspace=0)
    fig.savefig(path)
