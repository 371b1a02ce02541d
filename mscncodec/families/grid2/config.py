"""grid2's architecture (``Grid2Config``) and the numbers both ends of a stream must agree on.

``Grid2Config.to_dict()`` is hashed into every model id: a field added there changes the id of every
shipped model, so what the config only *derives* (the grids' geometry, the shapes) is a property.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from mscncodec._lazy import torch  # the numpy decoder (decode_np.py) reads the config without torch

from mscncodec.coding.latents import grid_section
from mscncodec.families.grid2.context import COARSE, NEIGHBOURS, PLANE, Geometry

GRD2 = grid_section("GRD2")  # the stream's grid2 section: lambda index, latent-step index

SYMBOL_RANGE = 255  # latent symbols are integers in [-SYMBOL_RANGE, SYMBOL_RANGE]
SCALE_MIN, SCALE_MAX, N_SCALES = 0.02, 64.0, 256  # Laplace scales in symbol units, log-spaced table
MEAN_BITS = 4  # means are coded on a 1/16 grid
W_BITS, A_BITS = 8, 8  # fixed point of the coding-time ARM: weights 2**-8, activations 2**-8
W_MAX, A_MAX = 2**15, 2**24  # clamps that keep every integer sum below 2**53 (exact in float64)


@dataclass(frozen=True)
class Grid2Config:
    levels: int = 7  # grids at 1/1 ... 1/2**(levels-1)
    hidden: tuple[int, ...] = (20, 20)  # synthesis 1x1 widths
    arm_hidden: int = 20  # ARM widths (two hidden layers)
    analysis: int = 32  # analysis channels (encoder only)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Grid2Config":
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", (20, 20)))
        return cls(**d)

    @property
    def geometry(self) -> Geometry:
        """The grids' axes and boundary rules (2-D, clamped: not a field, so no model id moves)."""
        return PLANE

    @property
    def align(self) -> int:
        return 2 ** (self.levels - 1)

    @property
    def n_inputs(self) -> int:
        return len(NEIGHBOURS) + len(COARSE) + 1

    def grid_shapes(self, h: int, w: int) -> list[tuple[int, int]]:
        """The latent grids of an h x w image (padded to the alignment), finest first."""
        hp, wp = h + (-h % self.align), w + (-w % self.align)
        return [(hp >> l, wp >> l) for l in range(self.levels)]

    def decoder_shapes(self) -> dict[str, tuple[int, ...]]:
        """Everything the decoder needs: upsampling, synthesis, ARM (what a file may update)."""
        s: dict[str, tuple[int, ...]] = {"up.k": (self.levels - 1, 4)}
        dims = [self.levels, *self.hidden, 3]
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            s[f"syn.w{i}"], s[f"syn.b{i}"] = (b, a, 1, 1), (b,)
        for j in (1, 2):
            s[f"syn.c{j}w"], s[f"syn.c{j}b"] = (3, 3, 3, 3), (3,)
        h = self.arm_hidden
        s.update({"arm.wn": (h, len(NEIGHBOURS)), "arm.wc": (h, len(COARSE)), "arm.wl": (h,),
                  "arm.b0": (self.levels, h), "arm.w1": (h, h), "arm.b1": (h,), "arm.w2": (2, h), "arm.b2": (2,)})
        return s

    # the name the shared update coder asks for (coding.update)
    update_shapes = decoder_shapes

    def analysis_shapes(self) -> dict[str, tuple[int, ...]]:
        """Encoder-only U-Net. It works from 1/2 resolution up (space-to-depth input, depth-to-space for the
        full-resolution grid): full-resolution convolutions cost most of a training step."""
        c, s = self.analysis, {}
        s["ana.in.w"], s["ana.in.b"] = (c, 13, 3, 3), (c,)
        for l in range(2, self.levels):
            s[f"ana.d{l}.w"], s[f"ana.d{l}.b"] = (c, c, 3, 3), (c,)
        for l in range(1, self.levels - 1):
            s[f"ana.u{l}.w"], s[f"ana.u{l}.b"] = (c, 2 * c, 3, 3), (c,)
        for l in range(1, self.levels):
            s[f"ana.o{l}.w"], s[f"ana.o{l}.b"] = (1, c, 1, 1), (1,)
        s["ana.o0.w"], s["ana.o0.b"] = (4, c, 3, 3), (4,)
        return s

    def macs_per_pixel(self) -> float:
        """Decoder multiply-adds per image pixel: ARM per latent, upsampling, synthesis."""
        dims = [self.levels, *self.hidden, 3]
        syn = sum(a * b for a, b in zip(dims[:-1], dims[1:])) + 2 * 81
        h = self.arm_hidden
        arm = (self.n_inputs * h + h * h + 2 * h) * sum(4.0**-l for l in range(self.levels))
        # a separable 2x step costs 2 + 2 taps per output value; grid l goes through l steps
        up = sum(4 * sum(4.0**-s for s in range(l)) for l in range(1, self.levels))
        return syn + arm + up


def init_params(cfg: Grid2Config, seed: int = 0, analysis: bool = True) -> dict[str, torch.Tensor]:
    """``init_arrays`` as tensors."""
    return {k: torch.from_numpy(v) for k, v in init_arrays(cfg, seed, analysis).items()}


def init_arrays(cfg: Grid2Config, seed: int = 0, analysis: bool = True) -> dict[str, np.ndarray]:
    """Seeded init (numpy generator, so both ends can rebuild it): +-1/sqrt(fan_in) weights, zero biases
    except the synthesis' first bias (keeps ReLU/GELU units alive on zero latents); bilinear upsampling;
    residual convolutions near zero; the ARM starts at mean 0, scale ~0.5."""
    rng = np.random.default_rng(seed)
    shapes = {**cfg.decoder_shapes(), **(cfg.analysis_shapes() if analysis else {})}
    out: dict[str, np.ndarray] = {}
    fan = {"arm.wn": cfg.n_inputs, "arm.wc": cfg.n_inputs, "arm.wl": cfg.n_inputs}
    for k, s in shapes.items():
        if k == "up.k":
            v = np.tile(np.array([0.25, 0.75, 0.75, 0.25], np.float32), (s[0], 1))
        elif (last := k.split(".")[-1]) == "b" or last.startswith("b") or last.endswith("b"):
            v = np.zeros(s, np.float32)
            if k == "syn.b0":
                v = rng.uniform(-1, 1, size=s).astype(np.float32)
            if k == "arm.b2":
                v = np.array([0.0, math.log(0.5)], np.float32)
        else:
            fan_in = fan.get(k, int(np.prod(s[1:])) if len(s) > 1 else 1)
            bound = 1.0 / math.sqrt(fan_in)
            v = rng.uniform(-bound, bound, size=s).astype(np.float32)
            if k.startswith("syn.c"):
                v = v * 0.1
            if k == "arm.w2":
                v = v * 0.1
        out[k] = np.ascontiguousarray(v)
    return out
