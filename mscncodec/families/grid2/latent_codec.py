"""The latents' entropy model and coder in one object (CompressAI's ``latent_codecs`` shape).

``LatentCodec(cfg, params, lam)`` is the probability model of a file's latents: the ARM with the decoder
parameters `params`, conditioned on lambda. Its float twin gives the estimated bits training and
refinement minimise (``forward``, ``bits``); its exact twin drives the range coder (``compress``,
``decompress``). Grids are coded coarsest first; within a grid, in the decoder's wave order
(``context.py``): the encoder computes every latent's probabilities in one pass (in chunks on big
grids), the decoder wave by wave, and the exact arithmetic makes them equal.
"""

from __future__ import annotations

import functools
import math
import numbers

import constriction
import numpy as np

from mscncodec._lazy import torch  # the exact coder runs without torch (decode_np.py)

from mscncodec.errors import BitstreamError
from mscncodec.families.grid2 import context
from mscncodec.families.grid2.arm import (FixedArm, WaveHead, arm_float, arm_head, coarse_fixed, coarse_padded,
                                          coarse_table, coder_params, lambda_fixed, rate_bits)
from mscncodec.families.grid2.config import SYMBOL_RANGE, Grid2Config
from mscncodec.families.grid2.context import PLANE, Geometry

_FAMILY = constriction.stream.model.QuantizedLaplace(-SYMBOL_RANGE, SYMBOL_RANGE + 1)
ARM_CHUNK = 1 << 18  # latents per exact-ARM evaluation on big grids: bounds the float64 work arrays
WAVE_BLOCK = 1 << 16  # latents whose context indices and first-layer terms the decoder prepares at once
COARSE_TABLE_BYTES = 64 << 20  # the coarser grid's first-layer terms are computed once per grid up to this size


class LatentCodec:
    """The ARM of decoder parameters `params` at lambda `lam` (a float, or a (B,) tensor for the float twin)."""

    def __init__(self, cfg: Grid2Config, params: dict[str, torch.Tensor], lam: float | torch.Tensor) -> None:
        self.cfg, self.params, self.lam = cfg, params, lam

    def _lam_t(self) -> torch.Tensor:
        return self.lam if isinstance(self.lam, torch.Tensor) else torch.tensor([self.lam])

    # -- float twin: training and refinement

    def forward(self, ctx: list[torch.Tensor], level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-scale) in symbol units of grid `level`'s latents given the context symbols `ctx`."""
        return arm_float(self.cfg, self.params, ctx, level, self._lam_t())

    def bits(self, values: list[torch.Tensor], ctx: list[torch.Tensor]) -> torch.Tensor:
        """Estimated bits (B,) of the latents `values` (symbol units, possibly noisy) given `ctx`."""
        return rate_bits(self.cfg, self.params, values, ctx, self._lam_t())

    # -- exact twin: the range coder

    @functools.cached_property
    def fixed(self) -> FixedArm:
        return FixedArm.from_params(self.params)

    def _lam_q(self) -> float:
        if not isinstance(self.lam, numbers.Real):  # not a tensor (and no torch import to ask)
            raise TypeError("the coder needs lambda as a float (the table's value, not a float32 copy)")
        return lambda_fixed(self.lam)

    def compress(self, symbols: list[np.ndarray]) -> bytes:
        """Integer symbols of every grid (finest first) -> the LATS section."""
        return encode_latents(self.fixed, symbols, self._lam_q(), self.cfg.geometry)

    def decompress(self, data: bytes, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
        """The LATS section and the grids' shapes (finest first) -> int32 symbols; BitstreamError if corrupt."""
        return decode_latents(self.fixed, data, shapes, self._lam_q(), self.cfg.geometry)


# ---------------------------------------------------------------- the wavefront coder

def _level_plan(arm: FixedArm, coarse: np.ndarray | None, shape: tuple[int, ...], level: int, lam_q: float,
                geo: Geometry = PLANE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latents in wave order, wave bounds, constant first-layer part in wave order) of one grid."""
    order, bounds = context.flat_wave_order(shape, geo)
    pre = coarse_fixed(arm, coarse, shape, geo)[order]
    pre += arm.bias(level, lam_q)
    return order, bounds, pre


def coarse_term(arm: FixedArm, coarse: np.ndarray | None, geo: Geometry = PLANE) -> np.ndarray | None:
    """`coarse_table` where it fits COARSE_TABLE_BYTES (a Kodak image's full-resolution grid: 16 MB), else
    None: coarse_rows then computes each chunk's rows from the symbols."""
    if coarse is None or coarse.size * arm.wc.shape[1] * 8 > COARSE_TABLE_BYTES:
        return None
    return coarse_table(arm, coarse, geo)


def coarse_rows(arm: FixedArm, coarse: np.ndarray | None, idx: np.ndarray, shape: tuple[int, ...],
                table: np.ndarray | None = None, geo: Geometry = PLANE, padded: np.ndarray | None = None
                ) -> np.ndarray:
    """`coarse_fixed(...)[idx]` computed for the latents idx (flat, in a grid of `shape`) only: the same integer
    products, so the same values, without the (N, H) array of the whole grid. `table`: the coarser grid's
    `coarse_term`, gathered instead of recomputed per latent (4x fewer products). `padded`: the coarser grid's
    `coarse_padded`, made once per grid by a caller that asks for many chunks (made per call, it cost a whole
    coarse grid per chunk: quadratic time on big frames, issue 30)."""
    if coarse is None:
        return np.zeros((len(idx), arm.wc.shape[1]))
    cc = context.coarse_index(idx, shape)
    if table is not None:
        return table[np.ravel_multi_index(cc, coarse.shape)]
    cp = coarse_padded(coarse, geo) if padded is None else padded
    cols = np.stack([cp[tuple(1 + d + c for d, c in zip(o, cc))] for o in geo.coarse], 1)
    return cols @ arm.wc


def _level_params_chunked(arm: FixedArm, sym: np.ndarray, coarse: np.ndarray | None, level: int, lam_q: float,
                          geo: Geometry = PLANE):
    """(symbols, means, scales) of one grid in wave order, ARM_CHUNK latents at a time. Why: the one-pass
    arrays cost ~0.5 KB per latent (12 GB at 24 MP). The ARM is exact integer arithmetic, so every chunking
    gives the same indices as the one pass (and as the decoder's waves)."""
    order, _ = context.flat_wave_order(sym.shape, geo, bounds=False)
    # int16 holds every symbol (|s| <= 255) exactly; arm_head converts the gathered neighbours to float64
    zp = context.zero_padded(sym.astype(np.int16), geo).reshape(-1)
    offs = context.neighbour_offsets(sym.shape, geo)[None, :]
    bias = arm.bias(level, lam_q)
    flat = sym.reshape(-1)
    table = coarse_term(arm, coarse, geo)
    padded = coarse_padded(coarse, geo) if table is None and coarse is not None else None
    for a in range(0, len(order), ARM_CHUNK):
        idx = order[a:a + ARM_CHUNK]
        pre = coarse_rows(arm, coarse, idx, sym.shape, table, geo, padded)
        pre += bias
        mu, sc = coder_params(*arm_head(arm, zp[context.padded_index(idx, sym.shape, geo)[:, None] + offs], pre))
        yield flat[idx].astype(np.int32), mu, sc


def encode_latents(arm: FixedArm, symbols: list[np.ndarray], lam_q: float, geo: Geometry = PLANE) -> bytes:
    """Coarsest grid first; within a grid the decoder's wave order."""
    enc = constriction.stream.queue.RangeEncoder()
    levels = len(symbols)
    for l in range(levels - 1, -1, -1):
        sym = np.clip(symbols[l], -SYMBOL_RANGE, SYMBOL_RANGE)
        coarse = symbols[l + 1] if l + 1 < levels else None
        if sym.size > ARM_CHUNK:
            for s_, mu, sc in _level_params_chunked(arm, sym, coarse, l, lam_q, geo):
                enc.encode(s_, _FAMILY, mu, sc)
            continue
        order, _, pre = _level_plan(arm, coarse, sym.shape, l, lam_q, geo)
        mi, si = arm_head(arm, context.all_neighbours(sym, geo)[order], pre)
        mu, sc = coder_params(mi, si)
        enc.encode(sym.reshape(-1)[order].astype(np.int32), _FAMILY, mu, sc)
    return enc.get_compressed().tobytes()


def decode_latents(arm: FixedArm, data: bytes, shapes: list[tuple[int, ...]], lam_q: float,
                   geo: Geometry = PLANE) -> list[np.ndarray]:
    """Wave by wave: all latents of one wave of a grid in one ARM evaluation (``WaveHead``: ``arm_head``'s
    integers in fewer numpy calls) and one decode call, the context gathered by indices prepared per block."""
    if len(data) % 4:
        raise BitstreamError("corrupted .mscn file (latent section length is not a multiple of 4)")
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, np.uint32).copy())
    head = WaveHead.of(arm)
    levels = len(shapes)
    out: list[np.ndarray] = [None] * levels  # type: ignore[list-item]
    for l in range(levels - 1, -1, -1):
        shape = tuple(shapes[l])
        coarse = out[l + 1] if l + 1 < levels else None
        order, bounds = context.flat_wave_order(shape, geo)
        blocks = _WaveBlocks(arm, head, coarse, order, shape, arm.bias(l, lam_q), geo)
        zp = np.zeros(math.prod(geo.padded_shape(shape)))
        take, decode = zp.take, dec.decode
        bounds = bounds.tolist()
        start = stop = 0
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > stop:  # the waves run in order: the next block starts at this one
                start, stop, gather, pre, pos, clamps = blocks.at(a, b)
            i, j = a - start, b - start
            mu, sc = head(take(gather[i:j]), pre[i:j], clamps)
            try:
                zp[pos[i:j]] = decode(_FAMILY, mu, sc)
            except (AssertionError, ValueError):
                raise BitstreamError("corrupted .mscn file (invalid latent data)") from None
        inner = context.box([0] * len(shape), shape, [p for p, _ in geo.pad])[1:]
        out[l] = zp.reshape(geo.padded_shape(shape))[inner].astype(np.int32)
    return out


class _WaveBlocks:
    """The blocks of WAVE_BLOCK latents in wave order (whole waves) the decoder prepares as the waves reach
    them: their context's flat indices in the zero-padded grid (n, 16), their first-layer constant part
    (coarse term + bias, ``WaveHead.pre``), their own padded positions and the clamps they need. Blocks bound
    the memory on big grids; the values are the same integers as ``_level_plan``'s whole-grid arrays."""

    def __init__(self, arm: FixedArm, head: WaveHead, coarse: np.ndarray | None, order: np.ndarray,
                 shape: tuple[int, ...], bias: np.ndarray, geo: Geometry = PLANE) -> None:
        self.arm, self.head, self.coarse, self.order, self.shape, self.bias, self.geo = (arm, head, coarse, order,
                                                                                         shape, bias, geo)
        table = coarse_term(arm, coarse, geo)
        if table is not None:  # the coarser grid's terms + bias at the head's scale: one take per block
            table += bias
            table = WaveHead.pre(table)
        self.table = table
        self.padded = coarse_padded(coarse, geo) if table is None and coarse is not None else None
        self.offs = context.neighbour_offsets(shape, geo)[None, :]

    def at(self, a: int, b: int) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray, tuple[bool, bool, bool]]:
        """(start, stop, gather, pre, positions, clamps) of the block from latent a (wave order) that holds
        at least the latents a:b."""
        idx = self.order[a:max(b, a + WAVE_BLOCK)].astype(np.intp)
        if self.table is not None:
            pre = self.table.take(np.ravel_multi_index(context.coarse_index(idx, self.shape), self.coarse.shape), 0)
        else:
            rows = coarse_rows(self.arm, self.coarse, idx, self.shape, None, self.geo, self.padded)
            rows += self.bias
            pre = WaveHead.pre(rows)
        pos = context.padded_index(idx, self.shape, self.geo)
        return a, a + len(idx), pos[:, None] + self.offs, pre, pos, self.head.clamps(pre)
