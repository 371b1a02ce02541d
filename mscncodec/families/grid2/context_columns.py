"""The float context model's gather (torch): the ARM's inputs of every latent of a grid as columns, for
training and refinement. The context's geometry and the exact coder's gathers are ``context.py`` (no torch,
so the image decode runs without it)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mscncodec.families.grid2.context import PERIODIC, PLANE, Geometry, box


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
