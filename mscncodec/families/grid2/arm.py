"""The auto-regressive context model (ARM): per latent, a Laplace mean and scale from its context.

Its inputs are the latent's causal neighbours in its own grid, the neighbourhood of its co-located latent
in the already decoded coarser grid (``context.py``), and lambda; two hidden ReLU layers; outputs the mean
and the log-scale in symbol units.

Two twins of one network. The encoder evaluates every latent at once and the decoder wave by wave, so to
make both ends derive *identical* probabilities whatever the summation order, the coding-time ARM runs in
exact integer arithmetic (``FixedArm``, ``arm_head``): weights are rounded to ``2**-W_BITS``, activations
to ``2**-A_BITS``, every sum is an integer below 2**53 carried in float64 (so BLAS gives the exact result
in any order), ReLU and floor shifts are exact. Training and refinement use the float twin (``arm_float``),
which differs only by those roundings.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from mscncodec._lazy import F, torch  # the exact twin runs without torch (decode_np.py)

from mscncodec.coding.latents import lambda_feature, lambda_feature_value, laplace_bits
from mscncodec.families.grid2 import context
from mscncodec.families.grid2.config import (A_BITS, A_MAX, MEAN_BITS, N_SCALES, SCALE_MAX, SCALE_MIN, SYMBOL_RANGE,
                                             W_BITS, W_MAX, Grid2Config)
from mscncodec.families.grid2.context import PLANE, Geometry

# ---------------------------------------------------------------- float (training, refinement)


def arm_float(cfg: Grid2Config, p: dict[str, torch.Tensor], ctx: list[torch.Tensor], level: int,
              lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, log-scale) in symbol units of every latent of one grid, from the context symbols `ctx`
    (finest first, (B,1,h,w)); the float twin of ``arm_fixed``, channels first throughout."""
    from mscncodec.families.grid2.context_columns import context_columns  # torch: imported by the float twin only
    from mscncodec.families.grid2.synthesis import linear_cf

    z = ctx[level]
    coarse = ctx[level + 1] if level + 1 < cfg.levels else None
    cols = context_columns(z, coarse, cfg.geometry)
    w0 = p["arm.wn"] if coarse is None else torch.cat([p["arm.wn"], p["arm.wc"]], 1)
    bias = p["arm.wl"][None, :] * lambda_feature(lam)[:, None] + p["arm.b0"][level][None]  # (B, H)
    h = F.relu(linear_cf(w0, cols, bias))
    h = F.relu(linear_cf(p["arm.w1"], h, p["arm.b1"]))
    # split, not two slices: the slices' backward would zero-fill a frame-sized gradient each
    mu, ls = linear_cf(p["arm.w2"], h, p["arm.b2"]).view(z.shape[0], 2, *z.shape[2:]).split(1, 1)
    return mu, torch.clamp(ls, math.log(SCALE_MIN), math.log(SCALE_MAX))


def rate_bits(cfg: Grid2Config, p: dict[str, torch.Tensor], values: list[torch.Tensor], ctx: list[torch.Tensor],
              lam: torch.Tensor) -> torch.Tensor:
    """Estimated bits (B,) of the latents `values` (symbol units, possibly noisy) given context `ctx`."""
    total = 0
    for l in range(cfg.levels):
        mu, ls = arm_float(cfg, p, ctx, l, lam)
        total = total + laplace_bits(values[l], mu, ls).sum(dim=(1, 2, 3))
    return total


# ---------------------------------------------------------------- exact (coding)

@dataclass(frozen=True)
class FixedArm:
    """Integer weights of the coding-time ARM, held as float64 (exact: every value is an integer)."""

    wn: np.ndarray  # (16, H)   neighbour weights, scale 2**(W_BITS + A_BITS) (symbols enter as integers)
    wc: np.ndarray  # (9, H)    coarse weights, scale 2**W_BITS
    wl: np.ndarray  # (H,)
    b0: np.ndarray  # (levels, H) scale 2**(W_BITS + A_BITS)
    w1: np.ndarray  # (H, H)
    b1: np.ndarray
    w2: np.ndarray  # (H, 2)
    b2: np.ndarray

    @classmethod
    def from_params(cls, p: dict[str, torch.Tensor | np.ndarray]) -> "FixedArm":
        """From the float decoder parameters: tensors, or numpy arrays (the torch-free decoder's)."""
        def f64(t: torch.Tensor | np.ndarray) -> np.ndarray:
            return np.asarray(t, np.float64) if isinstance(t, np.ndarray) else t.detach().double().numpy()

        def w(t: torch.Tensor | np.ndarray) -> np.ndarray:
            return np.clip(np.round(f64(t) * 2.0**W_BITS), -W_MAX, W_MAX)

        def b(t: torch.Tensor | np.ndarray) -> np.ndarray:
            return np.clip(np.round(f64(t) * 2.0 ** (W_BITS + A_BITS)), -A_MAX * 2.0**W_BITS,
                           A_MAX * 2.0**W_BITS)

        return cls(w(p["arm.wn"]).T * 2.0**A_BITS, w(p["arm.wc"]).T.copy(), w(p["arm.wl"]), b(p["arm.b0"]),
                   w(p["arm.w1"]).T.copy(), b(p["arm.b1"]), w(p["arm.w2"]).T.copy(), b(p["arm.b2"]))

    def bias(self, level: int, lam_q: float) -> np.ndarray:
        """The first layer's constant part for one grid: level bias + lambda term (H,), integers."""
        return self.wl * lam_q + self.b0[level]


def lambda_fixed(lam: float) -> float:
    """The lambda feature as the fixed-point ARM sees it (a multiple of 2**-A_BITS)."""
    return float(np.round(lambda_feature_value(float(lam)) * 2.0**A_BITS))


BULK = 4096  # from this many latents on, the head runs in torch (in place); below, numpy has less overhead
_MEAN_MAX = SYMBOL_RANGE * 2**MEAN_BITS
_LS_LO = math.log(SCALE_MIN)
_LS_K = (N_SCALES - 1) / (math.log(SCALE_MAX) - math.log(SCALE_MIN))
_OUT_MUL = np.array([2.0 ** (MEAN_BITS - W_BITS - A_BITS), 2.0 ** -(W_BITS + A_BITS)])
_OUT_SUB, _OUT_K = np.array([0.0, _LS_LO]), np.array([1.0, _LS_K])
_OUT_LO, _OUT_HI = np.array([-_MEAN_MAX, 0.0]), np.array([_MEAN_MAX, N_SCALES - 1])


def arm_fixed(arm: FixedArm, level: int, neigh: np.ndarray, coarse_term: np.ndarray, lam_q: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """Exact ARM on N latents: neigh (N, 16) integer symbols in [-R, R], coarse_term (N, H) the integer
    first-layer term of the coarser grid (``coarse_fixed``), lam_q from ``lambda_fixed``
    -> (mean index on the 1/16 grid, scale index), both int64 (N,)."""
    m, s = arm_head(arm, neigh, coarse_term + arm.bias(level, lam_q))
    return m.astype(np.int64), s.astype(np.int64)


def arm_head(arm: FixedArm, neigh: np.ndarray, pre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ARM after its constant first-layer part `pre` (coarse term + bias): (mean index, scale index)
    as float64 integers.

    Every value is an integer below 2**53 held in float64, so the matrix products are exact whatever
    order BLAS sums in; ReLU, the power-of-two scalings, floor and the clamps are exact too, and both
    implementations (numpy for the decoder's small waves, torch in place for the encoder's one pass)
    apply the same IEEE operations in the same order: they give identical results."""
    if len(neigh) >= BULK:
        return _head_torch(arm, neigh, pre)
    z = np.asarray(neigh, np.float64) @ arm.wn
    z += pre
    h = _np_shift(z)
    z = h @ arm.w1
    z += arm.b1
    h = _np_shift(z)
    o = h @ arm.w2
    o += arm.b2
    # both outputs in one pass over (N, 2), column by column the same IEEE operations as _head_torch
    # (multiplying by 1 and subtracting 0 are exact), so that per-wave calls stay few
    o *= _OUT_MUL
    o -= _OUT_SUB
    o *= _OUT_K
    o += 0.5
    np.floor(o, out=o)
    np.minimum(np.maximum(o, _OUT_LO, out=o), _OUT_HI, out=o)
    return o[:, 0], o[:, 1]


def _np_shift(z: np.ndarray) -> np.ndarray:
    """ReLU, then back from scale 2**(W+A) to 2**A by an exact floor shift, clamped (in place). Scaling by a
    power of two and flooring commute exactly with the ReLU (floor(0) = 0), so the clamps come last."""
    z *= 2.0**-W_BITS
    np.floor(z, out=z)
    np.maximum(z, 0.0, out=z)
    return np.minimum(z, A_MAX, out=z)


def _t_shift(z: torch.Tensor) -> torch.Tensor:
    return z.clamp_(min=0.0).mul_(2.0**-W_BITS).floor_().clamp_(max=A_MAX)


def _head_torch(arm: FixedArm, neigh: np.ndarray, pre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.from_numpy
    z = (t(np.asarray(neigh, np.float64)) @ t(arm.wn)).add_(t(np.asarray(pre, np.float64)))
    h = _t_shift(z)
    h = _t_shift((h @ t(arm.w1)).add_(t(arm.b1)))
    o = (h @ t(arm.w2)).add_(t(arm.b2))
    mean_i = o[:, 0].mul_(2.0 ** (MEAN_BITS - W_BITS - A_BITS)).add_(0.5).floor_().clamp_(-_MEAN_MAX, _MEAN_MAX)
    scale_i = o[:, 1].mul_(2.0 ** -(W_BITS + A_BITS)).sub_(_LS_LO).mul_(_LS_K).add_(0.5).floor_().clamp_(0, N_SCALES - 1)
    return mean_i.numpy(), scale_i.numpy()


def coarse_padded(coarse: np.ndarray, geo: Geometry = PLANE) -> np.ndarray:
    """The coarser grid's symbols, clamped, at activation scale 2**A_BITS, with a border of one (zeros, or
    wrapped on a periodic axis)."""
    return context.coarse_bordered(np.clip(coarse, -SYMBOL_RANGE, SYMBOL_RANGE).astype(np.float64) * 2.0**A_BITS, geo)


def coarse_table(arm: FixedArm, coarse: np.ndarray, geo: Geometry = PLANE) -> np.ndarray:
    """Integer first-layer term (coarse.size, H) of each latent of the coarser grid: what the (up to 2**ndim)
    finer latents above it share."""
    cp = coarse_padded(coarse, geo)
    cols = np.stack([cp[context.box(o, coarse.shape, [1] * coarse.ndim)[1:]].reshape(-1) for o in geo.coarse], 1)
    return cols @ arm.wc


def coarse_fixed(arm: FixedArm, coarse: np.ndarray | None, shape: tuple[int, ...], geo: Geometry = PLANE
                 ) -> np.ndarray:
    """Integer first-layer term (N, H) from the coarser grid's symbols (None for the coarsest grid)."""
    n = math.prod(shape)
    if coarse is None:
        return np.zeros((n, arm.wc.shape[1]))
    per = coarse_table(arm, coarse, geo).reshape(*coarse.shape, -1)
    for i in range(len(shape)):
        per = per.repeat(2, i)
    return per[tuple(slice(0, m) for m in shape)].reshape(n, -1)


_SCALES = np.round(np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), N_SCALES)) * 2.0**24) / 2.0**24


# ---------------------------------------------------------------- the decoder's per-wave head

def scale_index(o1: np.ndarray) -> np.ndarray:
    """``arm_head``'s scale index of raw integer log-scale outputs `o1` (float64): its IEEE operations."""
    o = np.asarray(o1, np.float64) * 2.0 ** -(W_BITS + A_BITS)
    o -= _LS_LO
    o *= _LS_K
    o += 0.5
    np.floor(o, out=o)
    return np.minimum(np.maximum(o, 0.0), N_SCALES - 1)


@functools.cache
def scale_thresholds() -> np.ndarray:
    """T (N_SCALES - 1,) float64: T[j - 1] is the least integer o1 whose ``scale_index`` is >= j.

    ``scale_index`` is a chain of monotone operations (IEEE rounding, floor and the clamp are monotone), so
    on the integers ``scale_index(o1) == searchsorted(T, o1, side="right")`` exactly: one call per wave
    instead of six. Found by bisection over every float64 integer (|o1| <= 2**53) with the formula itself."""
    j = np.arange(1, N_SCALES, dtype=np.float64)
    lo = np.full(j.shape, -(2**53), np.int64)  # invariant: scale_index(lo) < j <= scale_index(hi)
    hi = np.full(j.shape, 2**53, np.int64)
    if not ((scale_index(lo.astype(np.float64)) < j).all() and (scale_index(hi.astype(np.float64)) >= j).all()):
        raise AssertionError("the scale index is not bracketed by +-2**53")
    while (hi - lo > 1).any():
        mid = lo + (hi - lo) // 2
        up = scale_index(mid.astype(np.float64)) >= j
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    return hi.astype(np.float64)


@dataclass(frozen=True)
class WaveHead:
    """``arm_head`` + ``coder_params`` rearranged for the decoder's small waves, where the count of numpy
    calls, not arithmetic, sets the time: the power-of-two shifts folded into the weights, the biases of
    the second and third layers carried by a constant hidden unit (always 1: zero weights, first-layer part
    1), the scale index by ``scale_thresholds``, and the upper clamps left out where bounds prove them
    no-ops. The same integers, so the same (mean, scale) floats.

    Exact: scaling every operand of a sum by a power of two scales each rounded result by it (no value here
    is near the float64 range's ends), and every sum here is exact anyway (dyadic values with fewer than 53
    significant bits, in any order), so the 2**-W_BITS shift can happen in the weights before the floor, the
    mean's 2**(MEAN_BITS - W_BITS - A_BITS) and + 0.5 in its weights and bias, and a bias can be one more
    product (1 x bias). A clamp is skipped only where the interval arithmetic of ``clamps`` shows that no
    input in range (|symbol| <= SYMBOL_RANGE) reaches it."""

    wn: np.ndarray  # (16, H + 1) arm.wn * 2**-W_BITS, then 0 for the constant unit
    w1: np.ndarray  # (H + 1, H + 1) arm.w1 * 2**-W_BITS over the bias row; the constant unit's column e_H
    w2: np.ndarray  # (2, H + 1): row 0 the mean on its 2**-MEAN_BITS grid before the floor (+ 0.5), row 1 the
    #                 raw log-scale; the last column the biases
    thresholds: np.ndarray

    @classmethod
    def of(cls, arm: FixedArm) -> "WaveHead":
        k, h = 2.0**-W_BITS, arm.w1.shape[0]
        one = np.zeros((h + 1, 1))
        one[h] = 1.0
        w1 = np.hstack([np.vstack([arm.w1 * k, arm.b1[None] * k]), one])
        m = np.array([[2.0 ** (MEAN_BITS - W_BITS - A_BITS)], [1.0]])
        w2 = np.hstack([arm.w2.T * m, arm.b2[:, None] * m + np.array([[0.5], [0.0]])])
        return cls(np.hstack([arm.wn * k, np.zeros((len(arm.wn), 1))]), w1, w2, scale_thresholds())

    @staticmethod
    def pre(pre: np.ndarray) -> np.ndarray:
        """``arm_head``'s constant first-layer part (N, H) -> (N, H + 1) at the folded scale, with the
        constant unit's 1."""
        out = np.empty((len(pre), pre.shape[1] + 1))
        np.multiply(pre, 2.0**-W_BITS, out=out[:, :-1])
        out[:, -1] = 1.0
        return out

    def clamps(self, pre: np.ndarray) -> tuple[bool, bool, bool]:
        """Which clamps (layer 1's and layer 2's A_MAX, the mean's range) some latent with first-layer part
        among `pre`'s rows ((N, H + 1), ``pre``) could reach; the others are no-ops for them."""
        # the upper bound of each hidden unit (floor and ReLU never raise a value); generous by 1 for safety
        u1 = np.abs(self.wn).sum(0) * SYMBOL_RANGE + (pre.max(0) if len(pre) else 1.0) + 1.0
        h1 = np.clip(u1, 0.0, A_MAX)
        u2 = h1 @ np.maximum(self.w1, 0.0) + 1.0
        h2 = np.clip(u2, 0.0, A_MAX)
        hi = np.maximum(self.w2[0], 0.0) @ h2 + 1.0
        lo = np.minimum(self.w2[0], 0.0) @ h2 - 1.0
        return bool(u1.max() >= A_MAX), bool(u2.max() >= A_MAX), bool(hi >= _MEAN_MAX or lo <= -_MEAN_MAX)

    def __call__(self, neigh: np.ndarray, pre: np.ndarray, clamps: tuple[bool, bool, bool] = (True, True, True)
                 ) -> tuple[np.ndarray, np.ndarray]:
        """neigh (N, 16) symbols as float64, pre (N, H + 1) from ``pre`` -> (mean, scale) float64 (N,), the
        coder's parameters: ``coder_params(*arm_head(arm, neigh, pre))`` of the unfolded pre. `clamps` from
        ``clamps``."""
        c1, c2, cm = clamps
        z = neigh @ self.wn
        z += pre
        np.floor(z, out=z)
        np.maximum(z, 0.0, out=z)
        if c1:
            np.minimum(z, A_MAX, out=z)
        z = z @ self.w1
        np.floor(z, out=z)
        np.maximum(z, 0.0, out=z)
        if c2:
            np.minimum(z, A_MAX, out=z)
        o = self.w2 @ z.T  # (2, N): each output a contiguous row
        mean = o[0]
        np.floor(mean, out=mean)
        if cm:
            np.minimum(np.maximum(mean, -_MEAN_MAX, out=mean), _MEAN_MAX, out=mean)
        mean *= 2.0**-MEAN_BITS
        return mean, _SCALES.take(self.thresholds.searchsorted(o[1], "right"))


def coder_params(mean_i: np.ndarray, scale_i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) float64 arrays for constriction from the exact indices (dyadic tables: the same
    floats on every machine)."""
    return mean_i * 2.0**-MEAN_BITS, _SCALES[scale_i.astype(np.intp)]
