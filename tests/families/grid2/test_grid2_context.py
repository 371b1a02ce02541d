"""families/grid2/context.py: the wavefront order and the context model's gathers, in 2-D (what grid2 codes)
and with the number of axes and the per-axis boundary rule as parameters (what the next families need)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mscncodec.families.grid2 import context
from mscncodec.families.grid2.context import CLAMP, PERIODIC, PLANE, Geometry
from mscncodec.families.grid2.context_columns import context_columns

# a 3-D geometry for the parameterised paths: 6 causal neighbours under slopes (4, 2, 1), the 2x2x2 coarse block
CUBE = Geometry(boundary=(CLAMP, CLAMP, CLAMP),
                neighbours=((0, 0, -1), (0, -1, 0), (0, -1, 1), (-1, 0, 0), (-1, 1, 1), (0, -1, -1)),
                coarse=tuple((a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)), slopes=(4, 2, 1))


def _check_order(shape, geo):
    waves = context.wave_order(shape, geo)
    when = np.full(int(np.prod(shape)), -1)
    for t, idx in enumerate(waves):
        when[idx] = t
    assert sorted(np.concatenate(waves).tolist()) == list(range(int(np.prod(shape)))) and (when >= 0).all()
    for c in np.ndindex(*shape):
        for o in geo.neighbours:
            n = tuple(a + d for a, d in zip(c, o))
            if all(0 <= a < m for a, m in zip(n, shape)):
                assert when[np.ravel_multi_index(n, shape)] < when[np.ravel_multi_index(c, shape)]


@pytest.mark.parametrize("h,w", [(1, 1), (1, 9), (9, 1), (5, 7), (12, 4), (31, 17)])
def test_wave_order_covers_each_latent_once_after_its_neighbours(h, w):
    _check_order((h, w), PLANE)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 4, 5), (2, 7, 3)])
def test_wave_order_in_three_dimensions(shape):
    _check_order(shape, CUBE)


def test_the_plane_is_todays_2d_layout():
    """x + 3 y waves, 16 raster-causal neighbours, the padding rows (3, 0) and columns (3, 2)."""
    assert len(context.NEIGHBOURS) == 16 == len(set(context.NEIGHBOURS))
    assert all((dy, dx) < (0, 0) for dy, dx in context.NEIGHBOURS)  # raster-causal
    assert PLANE.pad == ((3, 0), (3, 2)) and PLANE.ndim == 2
    t = context.wave_index((4, 6))
    assert np.array_equal(t, (np.arange(6)[None, :] + context.WAVE_K * np.arange(4)[:, None]).reshape(-1))


def test_a_geometry_the_wavefront_cannot_decode_is_refused():
    with pytest.raises(ValueError, match="earlier wave"):
        Geometry(neighbours=((0, -1), (-1, 3)))  # (y-1, x+3) is in the same wave as (y, x)
    with pytest.raises(ValueError, match="boundary"):
        Geometry(boundary=(CLAMP, "mirror"))


def test_flat_wave_order_is_the_concatenated_waves():
    for shape, geo in (((1, 1), PLANE), ((7, 5), PLANE), ((12, 31), PLANE), ((3, 4, 5), CUBE)):
        waves = context.wave_order(shape, geo)
        order, bounds = context.flat_wave_order(shape, geo)
        assert np.array_equal(order, np.concatenate(waves))
        assert np.array_equal(bounds, np.cumsum([0] + [len(v) for v in waves]))


@pytest.mark.parametrize("shape,geo", [((5, 7), PLANE), ((1, 1), PLANE), ((3, 4, 5), CUBE)])
def test_padded_gathers_read_the_neighbours_or_zero(shape, geo):
    rng = np.random.default_rng(0)
    sym = rng.integers(-9, 10, shape)
    got = context.all_neighbours(sym, geo)
    for i, c in enumerate(np.ndindex(*shape)):
        for k, o in enumerate(geo.neighbours):
            n = tuple(a + d for a, d in zip(c, o))
            want = sym[n] if all(0 <= a < m for a, m in zip(n, shape)) else 0
            assert got[i, k] == want


def _masked_conv_reference(wn: torch.Tensor, wc: torch.Tensor, z: torch.Tensor, coarse: torch.Tensor | None
                           ) -> torch.Tensor:
    """The ARM's first layer written as convolutions (a masked kernel over the padded grid, a 3x3 one over the
    coarser grid repeated 2x2): what the context columns must reproduce, forward and backward."""
    (pt, _), (pl, pr) = PLANE.pad
    k = wn.new_zeros(wn.shape[0], 1, pt + 1, pl + pr + 1)
    for i, (dy, dx) in enumerate(context.NEIGHBOURS):
        k[:, 0, pt + dy, pl + dx] = wn[:, i]
    h = F.conv2d(F.pad(z, (pl, pr, pt, 0)), k)
    if coarse is not None:
        c = F.conv2d(coarse, wc.reshape(-1, 1, 3, 3), padding=1).repeat_interleave(2, 2).repeat_interleave(2, 3)
        h = h + c[..., : z.shape[2], : z.shape[3]]
    return h.flatten(2)


@pytest.mark.parametrize("size", [(6, 10), (7, 5), (1, 1), (2, 9)])
@pytest.mark.parametrize("with_coarse", [True, False])
def test_context_columns_equal_the_masked_convolution_forward_and_backward(size, with_coarse):
    """The gathered columns times the first-layer weights are the masked convolution, and their hand-written
    backward gives the same gradients (float64 gradcheck as well), on odd sizes and batches of two."""
    torch.manual_seed(0)
    h, w = size
    z = torch.randn(2, 1, h, w, dtype=torch.float64, requires_grad=True)
    coarse = (torch.randn(2, 1, (h + 1) // 2, (w + 1) // 2, dtype=torch.float64, requires_grad=True)
              if with_coarse else None)
    wn = torch.randn(5, 16, dtype=torch.float64, requires_grad=True)
    wc = torch.randn(5, 9, dtype=torch.float64, requires_grad=True)
    w0 = torch.cat([wn, wc], 1) if with_coarse else wn
    got = torch.matmul(w0, context_columns(z, coarse))
    ref = _masked_conv_reference(wn, wc, z, coarse)
    assert torch.allclose(got, ref, atol=1e-12)
    inputs = [z, wn] + ([coarse, wc] if with_coarse else [])
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(got, inputs, g), torch.autograd.grad(ref, inputs, g)):
        assert torch.allclose(a, b, atol=1e-10)
    assert torch.autograd.gradcheck(lambda *t: context_columns(*t), (z, coarse))


def test_a_periodic_axis_wraps_the_coarser_grid_only():
    """Longitude: the coarser grid's neighbourhood wraps around (it is decoded before the whole grid), the
    grid's own neighbours read zero across the seam (they come later in the wave order); gradcheck."""
    geo = Geometry(boundary=(CLAMP, PERIODIC))
    torch.manual_seed(1)
    z = torch.randn(2, 1, 4, 6, dtype=torch.float64, requires_grad=True)
    coarse = torch.randn(2, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    cols = context_columns(z, coarse, geo).view(2, 25, 4, 6)
    plain = context_columns(z, coarse).view(2, 25, 4, 6)
    assert torch.equal(cols[:, :16], plain[:, :16])  # own neighbours: zeros outside, as clamped
    j = 16 + context.COARSE.index((0, -1))  # the coarse latent to the left of column 0's: the last column
    assert torch.equal(cols[:, j, :, 0], coarse[:, 0].repeat_interleave(2, 1)[:, :4, -1])
    assert not torch.equal(cols[:, 16:], plain[:, 16:])
    assert torch.autograd.gradcheck(lambda *t: context_columns(*t, geo), (z, coarse))
    sym = np.arange(6).reshape(2, 3)
    assert np.array_equal(context.coarse_bordered(sym, geo), np.pad(np.pad(sym, ((0, 0), (1, 1)), mode="wrap"),
                                                                    ((1, 1), (0, 0))))


def test_context_columns_in_three_dimensions_have_a_hand_written_backward():
    torch.manual_seed(2)
    z = torch.randn(1, 1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    coarse = torch.randn(1, 1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    cols = context_columns(z, coarse, CUBE)
    assert cols.shape == (1, 6 + 8, 60)
    assert torch.autograd.gradcheck(lambda *t: context_columns(*t, CUBE), (z, coarse))
