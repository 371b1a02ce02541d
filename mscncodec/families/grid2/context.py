"""Where the context model looks, and in which order the coder visits the latents: the grids' geometry.

A latent's context is its causal neighbours in its own grid (``NEIGHBOURS``) and the neighbourhood of its
co-located latent in the coarser grid (``COARSE``, decoded before the whole grid). The coder decodes a grid
in *wavefronts*: the wave of a latent at coordinates c is ``t = sum(slopes * c)``; every neighbour lies in
an earlier wave (``sum(slopes * offset) < 0``), so a wave's latents are independent given the earlier ones
and are decoded by one batched evaluation. In 2-D the slopes are (``WAVE_K``, 1): waves ``x + 3 y = t``.

The number of spatial axes and each axis' boundary rule are parameters (``Geometry``); grid2's grids are
``PLANE``: two axes (rows, then columns), both clamped. On a ``PERIODIC`` axis (longitude) the coarser grid's
neighbourhood wraps; a grid's *own* neighbours never wrap, on any axis: across the seam they lie in later
waves (the neighbour at x - 1 of x = 0 is the last latent of its row), so they read zero outside the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CLAMP, PERIODIC = "clamp", "periodic"  # an axis' boundary rule: edges replicated / zeros outside; wrapped

WAVE_K = 3  # 2-D wavefront slope: a wave is x + WAVE_K * y = t

# causal neighbours (dy, dx) of a latent in its own grid: 16 of them
NEIGHBOURS: tuple[tuple[int, ...], ...] = (
    (0, -3), (0, -2), (0, -1),
    *((-1, dx) for dx in range(-2, 3)),
    *((-2, dx) for dx in range(-2, 3)),
    *((-3, dx) for dx in range(-1, 2)),
)
COARSE: tuple[tuple[int, ...], ...] = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


@dataclass(frozen=True)
class Geometry:
    """The spatial layout of a family's latent grids: per axis (slowest first) its boundary rule, the
    context's offsets and the wavefront's slopes."""

    boundary: tuple[str, ...] = (CLAMP, CLAMP)
    neighbours: tuple[tuple[int, ...], ...] = NEIGHBOURS
    coarse: tuple[tuple[int, ...], ...] = COARSE
    slopes: tuple[int, ...] = (WAVE_K, 1)

    def __post_init__(self) -> None:
        n = self.ndim
        if any(b not in (CLAMP, PERIODIC) for b in self.boundary):
            raise ValueError(f"boundary rules are {CLAMP!r} or {PERIODIC!r}, not {self.boundary}")
        if any(len(o) != n for o in self.neighbours + self.coarse) or len(self.slopes) != n:
            raise ValueError(f"every offset and the slopes need {n} axes")
        if any(sum(s * d for s, d in zip(self.slopes, o)) >= 0 for o in self.neighbours):
            raise ValueError("a neighbour is not in an earlier wave: the wavefront decoder could not read it")

    @property
    def ndim(self) -> int:
        return len(self.boundary)

    @property
    def pad(self) -> tuple[tuple[int, int], ...]:
        """(before, after) zero padding per axis that holds every neighbour offset (2-D: rows (3, 0),
        columns (3, 2))."""
        return tuple((max(0, -min(o[i] for o in self.neighbours)), max(0, max(o[i] for o in self.neighbours)))
                     for i in range(self.ndim))

    def padded_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(n + a + b for n, (a, b) in zip(shape, self.pad))


PLANE = Geometry()  # grid2's grids: rows and columns, both clamped


# ---------------------------------------------------------------- wave order

def wave_index(shape: tuple[int, ...], geo: Geometry = PLANE, dtype=np.int64) -> np.ndarray:
    """The wave of every latent of a grid, flattened in C order (2-D: x + WAVE_K * y)."""
    t = np.zeros(shape, dtype)
    for i, (n, s) in enumerate(zip(shape, geo.slopes)):
        t += s * np.arange(n, dtype=dtype).reshape((-1,) + (1,) * (len(shape) - 1 - i))
    return t.reshape(-1)


def wave_order(shape: tuple[int, ...], geo: Geometry = PLANE) -> list[np.ndarray]:
    """Flat indices of each wave t = 0, 1, ...; within a wave in C order (2-D: by y)."""
    order, bounds = flat_wave_order(shape, geo)
    return [order[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]


def flat_wave_order(shape: tuple[int, ...], geo: Geometry = PLANE, bounds: bool = True
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """(the concatenated waves, their bounds in it, or None if not asked for) without the list of waves: a
    stable argsort of the wave indices (int32: half the memory of int64, the same order)."""
    t = wave_index(shape, geo, np.int32)
    order = np.argsort(t, kind="stable")
    return order, (np.searchsorted(t[order], np.arange(t.max() + 2)) if bounds else None)


# ---------------------------------------------------------------- the exact coder's gathers (numpy)

def neighbour_offsets(shape: tuple[int, ...], geo: Geometry = PLANE) -> np.ndarray:
    """Offsets of the neighbours in the flattened zero-padded grid (``padded_shape``)."""
    dims = geo.padded_shape(shape)
    strides = [math.prod(dims[i + 1 :]) for i in range(len(dims))]
    return np.array([sum(d * s for d, s in zip(o, strides)) for o in geo.neighbours], np.int64)


def padded_index(idx: np.ndarray, shape: tuple[int, ...], geo: Geometry = PLANE) -> np.ndarray:
    """Flat grid index -> index in the flattened zero-padded grid."""
    dims, pad = geo.padded_shape(shape), geo.pad
    out, rest, mult = 0, idx, 1
    for i in range(len(shape) - 1, 0, -1):
        out = out + (rest % shape[i] + pad[i][0]) * mult
        rest, mult = rest // shape[i], mult * dims[i]
    return (rest + pad[0][0]) * mult + out


def zero_padded(sym: np.ndarray, geo: Geometry = PLANE) -> np.ndarray:
    """A grid in its zero padding (what the neighbour offsets index)."""
    return np.pad(sym, geo.pad)


def all_neighbours(sym: np.ndarray, geo: Geometry = PLANE) -> np.ndarray:
    """(N, 16) neighbour symbols of every latent of a decoded grid (zeros outside): the encoder's one-pass
    view of what the decoder gathers wave by wave."""
    zp = zero_padded(sym.astype(np.float64), geo)
    pidx = padded_index(np.arange(sym.size), sym.shape, geo)
    return zp.reshape(-1)[pidx[:, None] + neighbour_offsets(sym.shape, geo)[None, :]]


def coarse_bordered(coarse: np.ndarray, geo: Geometry = PLANE) -> np.ndarray:
    """The coarser grid with a border of one latent: wrapped on periodic axes, zeros elsewhere."""
    wrap = [(1, 1) if b == PERIODIC else (0, 0) for b in geo.boundary]
    if any(w != (0, 0) for w in wrap):
        coarse = np.pad(coarse, wrap, mode="wrap")
    return np.pad(coarse, [(0, 0) if w != (0, 0) else (1, 1) for w in wrap])


def coarse_index(idx: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Coordinates in the coarser grid of the latents idx (flat, in a grid of `shape`): each halved."""
    coords = []
    rest = idx
    for n in reversed(shape[1:]):
        coords.append(rest % n // 2)
        rest = rest // n
    coords.append(rest // 2)
    return tuple(reversed(coords))


# ---------------------------------------------------------------- the float context model's gather (torch)

def box(offset, sizes, start) -> tuple[slice, ...]:
    """(all batch entries, then per axis start + offset ... + size)."""
    return (slice(None), *(slice(a + d, a + d + n) for a, d, n in zip(start, offset, sizes)))


def _wrap_pad1(t: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """(B, *n) -> (B, *(n + 2)): a border of one, wrapped on periodic axes, zeros elsewhere."""
    for i, b in enumerate(geo.boundary):
        if b == PERIODIC:
            d, n = i + 1, t.shape[i + 1]
            t = torch.cat([t.narrow(d, n - 1, 1), t, t.narrow(d, 0, 1)], d)
    zero = [p for b in reversed(geo.boundary) for p in ((0, 0) if b == PERIODIC else (1, 1))]
    return F.pad(t, zero)


class _ContextColumns(torch.autograd.Function):
    """The ARM's inputs of every latent of one grid as columns (B, K, N): its causal neighbours, then, given
    the coarser grid, the neighbourhood of its co-located coarser latent; zeros outside (the coarser grid
    wraps on periodic axes). Why a Function: written as a masked convolution with one input channel, the
    backward pass (mkldnn) cost ~3x the forward on a Kodak frame; here it is K in-place slice additions."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, coarse: torch.Tensor | None, geo: Geometry) -> torch.Tensor:
        bsz, n = z.shape[0], tuple(z.shape[2:])
        nn = len(geo.neighbours)
        k = nn + (len(geo.coarse) if coarse is not None else 0)
        out = z.new_empty(bsz, k, *n)
        zp = F.pad(z[:, 0], [p for a, b in reversed(geo.pad) for p in (a, b)])
        before = [a for a, _ in geo.pad]
        for i, o in enumerate(geo.neighbours):
            out[:, i] = zp[box(o, n, before)]
        if coarse is not None:
            # the bordered coarser grid repeated 2x per axis: fine latent c sees coarse c//2 + d at c + 2 + 2d
            cu = _wrap_pad1(coarse[:, 0], geo)
            for d in range(1, cu.dim()):
                cu = cu.repeat_interleave(2, d)
            for j, o in enumerate(geo.coarse):
                out[:, nn + j] = cu[box([2 * d for d in o], n, [2] * len(n))]
        ctx.dims = (bsz, n, None if coarse is None else tuple(coarse.shape[2:]))
        ctx.geo = geo
        return out.view(bsz, k, math.prod(n))

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        bsz, n, cshape = ctx.dims
        geo: Geometry = ctx.geo
        g = g.view(bsz, -1, *n)
        gz = gc = None
        if ctx.needs_input_grad[0]:
            before = [a for a, _ in geo.pad]
            gp = g.new_zeros(bsz, *geo.padded_shape(n))
            for i, o in enumerate(geo.neighbours):
                gp[box(o, n, before)] += g[:, i]
            gz = gp[box([0] * len(n), n, before)][:, None]
        if cshape is not None and ctx.needs_input_grad[1]:
            nn = len(geo.neighbours)
            gu = g.new_zeros(bsz, *(2 * c + 4 for c in cshape))
            for j, o in enumerate(geo.coarse):
                gu[box([2 * d for d in o], n, [2] * len(n))] += g[:, nn + j]
            for i, (b, c) in enumerate(zip(geo.boundary, cshape)):
                if b == PERIODIC:  # the wrapped border's gradient goes to the latents it copies
                    d = i + 1
                    gu.narrow(d, 2 * c, 2).add_(gu.narrow(d, 0, 2))
                    gu.narrow(d, 2, 2).add_(gu.narrow(d, 2 * c + 2, 2))
            inner = gu[box([0] * len(cshape), [2 * c for c in cshape], [2] * len(cshape))]
            blocks = inner.reshape(bsz, *(v for c in cshape for v in (c, 2)))
            gc = blocks.sum(tuple(2 + 2 * i for i in range(len(cshape))))[:, None]
        return gz, gc, None


def context_columns(z: torch.Tensor, coarse: torch.Tensor | None, geo: Geometry = PLANE) -> torch.Tensor:
    """(B, 1, *n) grid and its coarser grid (B, 1, *ceil(n/2)) or None -> (B, 16 [+ 9], prod(n))."""
    return _ContextColumns.apply(z, coarse, geo)
