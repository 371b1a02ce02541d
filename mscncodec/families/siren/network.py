"""SIREN with weights batched over a *group* axis.

One group is one patch (image), one shape (mesh) or one field (sphere). All groups
share the initialisation theta0 and each carries its own update delta, so a whole
image is evaluated in one batched pass (``torch.baddbmm`` over the group axis)
instead of a Python loop over patches. The INR knows nothing about modalities.

Parameters are a flat ``dict[str, Tensor]``: ``w{l}`` of shape (in, out) and
``b{l}`` of shape (out,). An update dict holds a subset of those names with a
leading group axis; which subset is the *update mode*:

* ``full``  - every weight and bias (MSCN's unstructured sparsity),
* ``shift`` - only the biases, i.e. one shift per neuron per group (MSCN's
  structured sparsity / COIN++-style shift modulations of a shared network).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

UPDATE_MODES = ("full", "shift")


@dataclass(frozen=True)
class SirenConfig:
    in_dim: int = 2
    out_dim: int = 3
    width: int = 32
    depth: int = 5  # number of linear layers (depth-1 sine layers, then a linear head)
    w0: float = 30.0
    mode: str = "full"

    def __post_init__(self) -> None:
        if self.mode not in UPDATE_MODES:
            raise ValueError(f"unknown update mode {self.mode!r}")
        if self.depth < 2 or self.width < 1:
            raise ValueError("SIREN needs depth >= 2 and width >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    def layer_dims(self) -> list[tuple[int, int]]:
        dims = [self.in_dim] + [self.width] * (self.depth - 1) + [self.out_dim]
        return list(zip(dims[:-1], dims[1:]))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for l, (i, o) in enumerate(self.layer_dims()):
            shapes[f"w{l}"] = (i, o)
            shapes[f"b{l}"] = (o,)
        return shapes

    def update_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes (without the group axis) of the per-group update tensors."""
        shapes = self.param_shapes()
        if self.mode == "shift":
            return {k: s for k, s in shapes.items() if k.startswith("b")}
        return shapes


def init_params(cfg: SirenConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """SIREN initialisation (Sitzmann et al. 2020) from a version-stable numpy RNG.

    numpy's PCG64 stream is stable across releases, so the same seed gives the
    same bytes everywhere: the provisional model's id (a hash of its weights) is
    then identical on every machine.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    params: dict[str, torch.Tensor] = {}
    for l, (i, o) in enumerate(cfg.layer_dims()):
        bound = 1.0 / i if l == 0 else math.sqrt(6.0 / i) / cfg.w0
        params[f"w{l}"] = torch.from_numpy(rng.uniform(-bound, bound, (i, o)).astype(np.float32))
        bb = 1.0 / math.sqrt(i)
        params[f"b{l}"] = torch.from_numpy(rng.uniform(-bb, bb, (o,)).astype(np.float32) / (cfg.w0 if l > 0 else 1.0))
    return params


def forward(
    cfg: SirenConfig,
    theta: dict[str, torch.Tensor],
    delta: dict[str, torch.Tensor],
    coords: torch.Tensor,
    n_groups: int,
) -> torch.Tensor:
    """Evaluate theta+delta for every group at shared coordinates.

    coords: (P, in_dim), the same sample positions for all groups (patches share a
    grid), or (G, P, in_dim). Layers with no weight update run once for all groups
    (for ``shift`` the first layer's product is computed once, not G times).
    Returns (G, P, out_dim).
    """
    n_layers = cfg.depth
    h = coords
    for l in range(n_layers):
        w = theta[f"w{l}"]
        dw = delta.get(f"w{l}")
        if dw is not None:
            if h.dim() == 2:
                h = h.unsqueeze(0).expand(n_groups, *h.shape)
            h = torch.bmm(h, w + dw)
        else:
            h = h @ w
        b = theta[f"b{l}"]
        db = delta.get(f"b{l}")
        if db is not None:
            b = (b + db).unsqueeze(1)  # (G, 1, out)
            if h.dim() == 2:
                h = h.unsqueeze(0)
        h = h + b
        if l < n_layers - 1:
            h = torch.sin(cfg.w0 * h)
    if h.dim() == 2:
        h = h.unsqueeze(0).expand(n_groups, *h.shape)
    return h


def macs_per_sample(cfg: SirenConfig) -> int:
    """Multiply-adds per evaluated coordinate (decode cost)."""
    return sum(i * o for i, o in cfg.layer_dims())
