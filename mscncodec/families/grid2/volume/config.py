"""grid3's architecture and the 3-D context geometry both ends of a stream agree on.

``Vol3Config.to_dict()`` is hashed into every model id; what it derives (geometry, shapes) is a property.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from mscncodec.families.grid2.context import CLAMP, PERIODIC, Geometry

# causal neighbours (dz, dy, dx) in a latent's own grid: 6 in its plane, the 3x3 above it in the plane before
NEIGHBOURS3: tuple[tuple[int, int, int], ...] = (
    (0, 0, -2), (0, 0, -1), (0, -2, 0), (0, -1, -1), (0, -1, 0), (0, -1, 1),
    *((-1, dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)),
)
COARSE3: tuple[tuple[int, int, int], ...] = tuple((a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1))
SLOPES3 = (4, 2, 1)  # waves 4 z + 2 y + x = t: every neighbour above lies in an earlier wave


@dataclass(frozen=True)
class Vol3Config:
    levels: int = 6  # latent grids at 1/1 ... 1/2**(levels-1) of the finest
    hidden: tuple[int, ...] = (16, 16)  # synthesis widths (per point)
    arm_hidden: int = 16
    periodic: tuple[bool, bool, bool] = (False, False, False)  # per axis (slowest first): wraps (longitude)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"], d["periodic"] = list(self.hidden), list(self.periodic)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Vol3Config":
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", (16, 16)))
        d["periodic"] = tuple(bool(p) for p in d.get("periodic", (False, False, False)))
        return cls(**d)

    @property
    def geometry(self) -> Geometry:
        return Geometry(tuple(PERIODIC if p else CLAMP for p in self.periodic), NEIGHBOURS3, COARSE3, SLOPES3)

    @property
    def n_inputs(self) -> int:
        return len(NEIGHBOURS3) + len(COARSE3) + 1

    def grid_shapes(self, finest: tuple[int, int, int]) -> list[tuple[int, int, int]]:
        """The latent grids (finest first): each level halves every axis, rounding up."""
        return [tuple(max(1, -(-n // 2**l)) for n in finest) for l in range(self.levels)]

    def decoder_shapes(self) -> dict[str, tuple[int, ...]]:
        """Everything the decoder needs (the shared decoder theta0): synthesis and ARM."""
        s: dict[str, tuple[int, ...]] = {}
        dims = [self.levels, *self.hidden, 1]
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            s[f"syn.w{i}"], s[f"syn.b{i}"] = (b, a), (b,)
        h = self.arm_hidden
        s.update({"arm.wn": (h, len(NEIGHBOURS3)), "arm.wc": (h, len(COARSE3)), "arm.wl": (h,),
                  "arm.b0": (self.levels, h), "arm.w1": (h, h), "arm.b1": (h,), "arm.w2": (2, h), "arm.b2": (2,)})
        return s

    def macs_per_point(self) -> int:
        dims = [self.levels, *self.hidden, 1]
        return sum(a * b for a, b in zip(dims[:-1], dims[1:])) + 8 * self.levels  # MLP + trilinear taps

    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.decoder_shapes().values())


def init_arrays(cfg: Vol3Config, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded init: +-1/sqrt(fan_in) weights, zero biases but the synthesis' first (keeps ReLUs alive on zero
    latents); the ARM starts at mean 0, scale ~0.5."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for k, s in cfg.decoder_shapes().items():
        last = k.split(".")[-1]
        if last.startswith("b"):
            v = np.zeros(s, np.float32)
            if k == "syn.b0":
                v = rng.uniform(-0.5, 0.5, size=s).astype(np.float32)
            if k == "arm.b2":
                v = np.array([0.0, math.log(0.5)], np.float32)
        elif k == "arm.wl":
            v = np.zeros(s, np.float32)
        else:
            fan_in = cfg.n_inputs if k in ("arm.wn", "arm.wc") else s[1]
            v = rng.uniform(-1, 1, size=s).astype(np.float32) / math.sqrt(fan_in)
            if k == "arm.w2":
                v = v * 0.1
        out[k] = np.ascontiguousarray(v)
    return out
