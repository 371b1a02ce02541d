"""Bjontegaard delta metrics (G. Bjontegaard, VCEG-M33, 2001), the classic variant.

Two rate-distortion curves are compared by their *average* gap over the
quality (or rate) interval where both were measured:

* **BD-rate**: fit ``log(rate)`` as a polynomial in PSNR for each curve,
  integrate both over the overlapping PSNR interval, and turn the mean gap
  back into a ratio: ``(exp(mean gap) - 1) * 100``.  It is the average percent
  bitrate change of the *test* codec relative to the *reference* at equal
  quality; negative means the test codec needs fewer bits (better).
* **BD-PSNR**: fit PSNR as a polynomial in ``log(rate)``, integrate over the
  overlapping log-rate interval; the mean gap is the average PSNR change in
  dB at equal rate; positive means better.

The polynomial is cubic as in VCEG-M33; curves with fewer than 4 distinct
points use the highest degree they support (quadratic for 3, linear for 2),
so short sweeps still give a number.  The result is NaN when a curve has
fewer than 2 points or the curves do not overlap; BD numbers are only
meaningful inside the measured interval, never extrapolated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _clean(rate: Sequence[float], dist: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Drop non-finite or non-positive-rate points and exact duplicates."""
    pts = {
        (float(r), float(d))
        for r, d in zip(rate, dist)
        if r is not None and d is not None and math.isfinite(r) and math.isfinite(d) and r > 0
    }
    arr = np.array(sorted(pts), dtype=np.float64).reshape(-1, 2)
    return np.log(arr[:, 0]), arr[:, 1]


def _mean_gap(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray) -> float:
    """Mean of (fit2 - fit1) over the overlap of the x ranges, each fit y = poly(x)."""
    deg = min(3, len(np.unique(x1)) - 1, len(np.unique(x2)) - 1)
    if deg < 1:
        return math.nan
    lo, hi = max(x1.min(), x2.min()), min(x1.max(), x2.max())
    if not hi > lo:
        return math.nan
    p1 = np.polyint(np.polyfit(x1, y1, deg))
    p2 = np.polyint(np.polyfit(x2, y2, deg))
    area1 = np.polyval(p1, hi) - np.polyval(p1, lo)
    area2 = np.polyval(p2, hi) - np.polyval(p2, lo)
    return float((area2 - area1) / (hi - lo))


def _bd_gap(rate_ref, psnr_ref, rate_test, psnr_test, at_equal_psnr: bool) -> float:
    """The mean gap between the two cleaned curves: in log-rate at equal PSNR, or in PSNR at equal rate;
    nan when either curve has fewer than two points."""
    lr1, d1 = _clean(rate_ref, psnr_ref)
    lr2, d2 = _clean(rate_test, psnr_test)
    if len(d1) < 2 or len(d2) < 2:
        return math.nan
    return _mean_gap(d1, lr1, d2, lr2) if at_equal_psnr else _mean_gap(lr1, d1, lr2, d2)


def bd_rate(
    rate_ref: Sequence[float], psnr_ref: Sequence[float],
    rate_test: Sequence[float], psnr_test: Sequence[float],
) -> float:
    """Average bitrate change of *test* vs *reference* at equal PSNR, in percent."""
    gap = _bd_gap(rate_ref, psnr_ref, rate_test, psnr_test, at_equal_psnr=True)
    return (math.exp(gap) - 1.0) * 100.0 if math.isfinite(gap) else math.nan


def bd_psnr(
    rate_ref: Sequence[float], psnr_ref: Sequence[float],
    rate_test: Sequence[float], psnr_test: Sequence[float],
) -> float:
    """Average PSNR change (dB) of *test* vs *reference* at equal rate."""
    return _bd_gap(rate_ref, psnr_ref, rate_test, psnr_test, at_equal_psnr=False)
