"""Make examples/shape.obj: a procedural test shape (a torus with two spheres and a bar through it),
so the demo has a mesh that no dataset and no model here was made from.

    .venv/bin/python examples/make_shape.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from skimage.measure import marching_cubes


def sdf(p: np.ndarray) -> np.ndarray:
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    torus = np.sqrt((np.sqrt(x**2 + z**2) - 0.55) ** 2 + y**2) - 0.18
    s1 = np.linalg.norm(p - np.array([0.55, 0.25, 0.0]), axis=-1) - 0.28
    s2 = np.linalg.norm(p - np.array([-0.45, -0.2, 0.3]), axis=-1) - 0.22
    q = np.abs(p - np.array([0.0, 0.0, 0.0])) - np.array([0.08, 0.7, 0.08])
    bar = np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)
    return np.minimum.reduce([torus, s1, s2, bar])


def main() -> None:
    n = 64
    ax = np.linspace(-1, 1, n)
    grid = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1)
    v, f, _, _ = marching_cubes(sdf(grid), 0.0, spacing=(2 / (n - 1),) * 3)
    mesh = trimesh.Trimesh(v - 1.0, f)
    mesh.apply_scale(40.0)  # millimetres, say: the codec restores size and position
    out = Path(__file__).with_name("shape.obj")
    mesh.export(out)
    print(f"{out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, watertight={mesh.is_watertight}")


if __name__ == "__main__":
    main()
