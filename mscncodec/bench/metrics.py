"""Distortion and rate measures, computed identically for every codec.

All metrics are on 8-bit RGB (not luma-only, not YCbCr) because that is what
the INR codecs optimise and what CompressAI's published "psnr-rgb" anchors use.
"""

from __future__ import annotations

import math

import numpy as np

#: pytorch_msssim downsamples 4 times with an 11-px window: each side must exceed (11-1)*2**4.
MS_SSIM_MIN_SIDE = 160


def mse(ref: np.ndarray, rec: np.ndarray) -> float:
    """Mean squared error over all pixels and channels, in 8-bit units."""
    if ref.shape != rec.shape:
        raise ValueError(f"shape mismatch: original {ref.shape} vs decoded {rec.shape}")
    diff = ref.astype(np.float64) - rec.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr_from_mse(m: float, peak: float = 255.0) -> float:
    """PSNR in dB; ``inf`` for a lossless reconstruction."""
    return math.inf if m <= 0 else 10.0 * math.log10(peak * peak / m)


def psnr(ref: np.ndarray, rec: np.ndarray) -> float:
    """RGB PSNR with peak 255."""
    return psnr_from_mse(mse(ref, rec))


def ms_ssim(ref: np.ndarray, rec: np.ndarray) -> float:
    """RGB MS-SSIM (pytorch_msssim, data_range=255); NaN when the image is too small.

    Returning NaN instead of raising keeps small test crops and thumbnails in
    the benchmark; the aggregation uses nan-aware means.
    """
    if ref.shape != rec.shape:
        raise ValueError(f"shape mismatch: original {ref.shape} vs decoded {rec.shape}")
    if min(ref.shape[:2]) <= MS_SSIM_MIN_SIDE:
        return math.nan
    import torch

    from mscncodec.bench.base import extra

    _ms_ssim = extra("pytorch_msssim").ms_ssim

    def to_tensor(a: np.ndarray) -> "torch.Tensor":
        return torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]  # copy: input may be read-only

    # One thread: these small convolutions gain nothing from OpenMP, and on a busy
    # machine the thread hand-off made each call ~15x slower (1.8 s vs 0.1 s on Kodak).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return float(_ms_ssim(to_tensor(ref), to_tensor(rec), data_range=255, size_average=True))
    finally:
        torch.set_num_threads(threads)


def bpp(data: bytes | int, shape: tuple[int, ...]) -> float:
    """Bits per pixel of a complete file: 8 * bytes / (H * W), headers included."""
    n = data if isinstance(data, int) else len(data)
    return 8.0 * n / (shape[0] * shape[1])
