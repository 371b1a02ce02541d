"""families/grid2/upsampling.py and synthesis.py: the learned 2x steps (any number of axes, clamped or periodic)
equal to the 2-D code they replaced, bit for bit; the synthesis' hand-written layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from grid2_testing import CFG, random_arm

from mscncodec.families.grid2.config import Grid2Config, init_params
from mscncodec.families.grid2.context import CLAMP, PERIODIC
from mscncodec.families.grid2.synthesis import conv3x3_replicate, linear_cf, synthesis
from mscncodec.families.grid2.upsampling import up2, upsample_all


def _old_up2_along(x: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    """The 2-D code before the axes became a parameter (network._up2_along), verbatim."""
    n = x.shape[dim]
    xp = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)], dim)
    mid = xp.narrow(dim, 1, n)
    even = k[1] * mid + k[3] * xp.narrow(dim, 0, n)
    odd = k[2] * mid + k[0] * xp.narrow(dim, 2, n)
    return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)


def _old_up2(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return _old_up2_along(_old_up2_along(x, k, 3), k, 2)


def test_learned_upsampling_starts_bilinear():
    p = init_params(CFG, 0, analysis=False)
    x = torch.randn(2, 3, 5, 7)
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(up2(x, p["up.k"][0]), ref, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (16, 24)])
def test_the_parameterised_2d_path_is_the_old_one_bit_for_bit(size):
    torch.manual_seed(0)
    x = torch.randn(2, 4, *size)
    k = torch.randn(4)
    assert torch.equal(up2(x, k), _old_up2(x, k)) and torch.equal(up2(x, k, (CLAMP, CLAMP)), _old_up2(x, k))
    p = random_arm(CFG, 3)
    lat = [torch.randn(1, 1, 32 >> l, 48 >> l) for l in range(CFG.levels)]
    u = lat[-1]
    for l in range(CFG.levels - 2, -1, -1):
        u = torch.cat([lat[l], _old_up2(u, p["up.k"][l])], 1)
    assert torch.equal(upsample_all(CFG, p, lat), u)


def test_a_periodic_axis_wraps_and_a_third_axis_is_separable():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 4, 6, dtype=torch.float64)
    k = torch.tensor([0.25, 0.75, 0.75, 0.25], dtype=torch.float64)
    got = up2(x, k, (CLAMP, PERIODIC))
    # wrapped by hand: pad the periodic axis with its far ends, upsample clamped, cut the padding's output
    xp = torch.cat([x[..., -1:], x, x[..., :1]], -1)
    assert torch.allclose(got, _old_up2(xp, k)[..., 2:-2], atol=1e-12)
    assert not torch.allclose(got, up2(x, k), atol=1e-3)
    v = torch.randn(1, 1, 3, 4, 5, dtype=torch.float64)
    three = up2(v, k, (CLAMP, CLAMP, CLAMP))
    assert three.shape == (1, 1, 6, 8, 10)
    per_slice = torch.stack([_old_up2(v[:, :, i], k) for i in range(3)], 2)  # the last two axes first, then the first
    assert torch.equal(three, _old_up2_along(per_slice, k, 2))
    ones = up2(torch.ones(1, 1, 3, 4, 5), torch.tensor([0.25, 0.75, 0.75, 0.25]), (CLAMP, PERIODIC, CLAMP))
    assert torch.allclose(ones, torch.ones_like(ones))  # a bilinear filter keeps a constant, on every axis


@pytest.mark.parametrize("bsz", [1, 3])
def test_conv3x3_replicate_equals_padded_conv2d(bsz):
    torch.manual_seed(1)
    x = torch.randn(bsz, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    wgt = torch.randn(3, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    got = conv3x3_replicate(x, wgt, b)
    ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), wgt, b)
    assert torch.allclose(got, ref, atol=1e-12)
    assert torch.autograd.gradcheck(conv3x3_replicate, (x, wgt, b))


def test_channels_first_layer_is_a_1x1_convolution():
    """linear_cf with shared weights, a shared or a per-sample bias, batch 1 or 3."""
    torch.manual_seed(2)
    wgt = torch.randn(4, 6, 1, 1)
    for bsz in (1, 3):
        x = torch.randn(bsz, 6, 5, 7)
        for b in (torch.randn(4), torch.randn(bsz, 4)):
            ref = F.conv2d(x, wgt) + b.reshape(-1, 4, 1, 1)
            assert torch.allclose(linear_cf(wgt, x.flatten(2), b), ref.flatten(2), atol=1e-5)


def test_decoder_budget():
    cfg = Grid2Config()
    assert cfg.macs_per_pixel() <= 2500
    assert cfg.align == 64 and len(cfg.grid_shapes(512, 768)) == 7
    assert cfg.grid_shapes(512, 768)[0] == (512, 768)  # a full-resolution grid
    out = synthesis(CFG, init_params(CFG, 0, analysis=False), [torch.zeros(1, 1, 8 >> l, 12 >> l) for l in range(3)])
    assert out.shape == (1, 3, 8, 12)
