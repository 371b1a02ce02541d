"""Lossless coding of a 2-D bitmap (a field's missing-value mask) with a context from the row above.

Missing values come in regions (land under a sea-surface field, a radar's blind cone), so a bit is
predicted well by its three neighbours in the previous row: up-left, up, up-right (the row wraps
around, as longitudes do). The eight context probabilities are measured on the bitmap itself and
sent first (2 bytes each, snapped to the coder's grid), then the bits go row by row through the range
coder. Because the context only looks at the previous row, the decoder decodes a whole row per call
(no per-bit Python loop): a 1801 x 3600 mask decodes in about as many calls as it has rows.

The first row of a region is all surprise to that context (a 100-point edge of a rectangle costs 12 bits a
point), so the coder also tries zlib on the packed bits (long runs) and keeps the shorter; the first
byte says which.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from mscncodec.coding.entropy import Decoder, Encoder, snap_prob
from mscncodec.errors import BitstreamError

_N_CTX = 8


def _contexts(prev: np.ndarray) -> np.ndarray:
    """Context index 0..7 of each bit of a row from the row above (wrapping around)."""
    p = prev.astype(np.int64)
    return (np.roll(p, 1) << 2) | (p << 1) | np.roll(p, -1)


_CONTEXT, _ZLIB = 0, 1


def encode_bitmap(bitmap: np.ndarray) -> bytes:
    """A 2-D bool array -> bytes (its shape is not stored: the caller knows it)."""
    b = np.asarray(bitmap, bool)
    ctx = bytes([_CONTEXT]) + _encode_context(b)
    flat = bytes([_ZLIB]) + zlib.compress(np.packbits(b.reshape(-1)).tobytes(), 9)
    return ctx if len(ctx) <= len(flat) else flat


def _encode_context(b: np.ndarray) -> bytes:
    prev = np.vstack([np.zeros((1, b.shape[1]), bool), b[:-1]])
    ctx = np.stack([_contexts(r) for r in prev])
    ones = np.bincount(ctx[b], minlength=_N_CTX).astype(np.float64)
    total = np.bincount(ctx.reshape(-1), minlength=_N_CTX).astype(np.float64)
    p = snap_prob((ones + 0.5) / (total + 1.0))
    table = struct.pack(f"<{_N_CTX}H", *np.round(p * 4096).astype(int))
    enc = Encoder()
    enc.bits(b.reshape(1, -1).astype(np.int32), p[ctx.reshape(-1)])
    return table + enc.finish()


def decode_bitmap(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    if not data or data[0] not in (_CONTEXT, _ZLIB):
        raise BitstreamError("corrupted .mscn file (unknown mask coding)")
    if data[0] == _ZLIB:
        n = shape[0] * shape[1]
        try:
            bits = np.unpackbits(np.frombuffer(zlib.decompress(data[1:], bufsize=(n + 7) // 8), np.uint8))
        except zlib.error:
            raise BitstreamError("corrupted .mscn file (mask section)") from None
        if len(bits) != (n + 7) // 8 * 8:
            raise BitstreamError("corrupted .mscn file (mask section has the wrong length)")
        return bits[:n].reshape(shape).astype(bool)
    return _decode_context(data[1:], shape)


def _decode_context(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    if len(data) < 2 * _N_CTX:
        raise BitstreamError("corrupted .mscn file (mask section too short)")
    q = np.array(struct.unpack(f"<{_N_CTX}H", data[: 2 * _N_CTX]), np.float64)
    if np.any(q < 1) or np.any(q > 4095):
        raise BitstreamError("corrupted .mscn file (bad mask probabilities)")
    p = q / 4096
    dec = Decoder(data[2 * _N_CTX:])
    out = np.zeros(shape, bool)
    prev = np.zeros(shape[1], bool)
    for r in range(shape[0]):
        row = dec.bits(1, p[_contexts(prev)])[0].astype(bool)
        out[r] = row
        prev = row
    return out
