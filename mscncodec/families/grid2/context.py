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

No torch here: the exact coder (and so the torch-free decoder, ``decode_np.py``) uses these gathers; the float
ARM's gather of the same context, for training and refinement, is ``context_columns.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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


def box(offset, sizes, start) -> tuple[slice, ...]:
    """(all batch entries, then per axis start + offset ... + size)."""
    return (slice(None), *(slice(a + d, a + d + n) for a, d, n in zip(start, offset, sizes)))
