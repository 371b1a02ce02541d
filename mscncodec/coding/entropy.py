"""Entropy models (objects) and range coding with constriction.

Two models, both fully determined by data the decoder has or reads first, so
encoder and decoder build bit-identical probability tables:

* ``MaskModel`` - one Bernoulli probability per update entry: the meta-learned
  gate open-probability (a prior the decoder ships with), shifted by one per-layer
  logit offset the encoder picks and sends. Probabilities are snapped to a 1/4096
  grid in float64 so both ends agree to the bit.
* ``ValueModel`` - a model over the non-zero quantised symbols of one layer,
  whichever codes that layer in fewer bits, table included: a categorical model
  described by 4-bit log-frequency codes (half-bit resolution; 4 bits per alphabet
  symbol once, best on very peaked tensors, where a Laplace cost up to 2x the
  entropy), or a two-sided Laplace over the same alphabet with one tabled scale
  (3 bytes; best on wide alphabets, e.g. the dense updates of small mesh files,
  where the table was a quarter of the file). The first two bytes hold R, the
  high bit says which model follows; streams written before the Laplace option
  never set it.

The rate is always the length of what these coders write, never an estimate.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import constriction
import numpy as np

from mscncodec.errors import BitstreamError

_P_RES = 4096
OFFSET_UNIT = 0.25  # mask logit offsets are sent as int8 multiples of this
MAX_ALPHABET_R = 4096
PARAMETRIC_FLAG = 0x8000  # in the alphabet-size field: a Laplace model with a scale index follows
N_LAPLACE_SCALES = 128


def laplace_scale(k: int) -> float:
    """The tabled Laplace scales, in symbol units: 2**(k/8 - 3), 0.125 ... ~7000."""
    return float(2.0 ** (k / 8 - 3))


def laplace_probs(r: int, k: int) -> np.ndarray:
    """P(symbol) over -R..-1, 1..R (to_index order) for a Laplace of scale laplace_scale(k) around +-1."""
    mag = np.concatenate([np.arange(r, 0, -1), np.arange(1, r + 1)]).astype(np.float64)
    w = np.exp(-(mag - 1.0) / laplace_scale(k))
    w = np.maximum(w / w.sum(), 1e-9)  # every symbol in the alphabet stays codable
    return w / w.sum()


def snap_prob(p: np.ndarray) -> np.ndarray:
    """Deterministic probability grid, never exactly 0 or 1."""
    return np.clip(np.round(np.asarray(p, np.float64) * _P_RES), 1, _P_RES - 1) / _P_RES


def sigmoid64(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


@dataclass
class MaskModel:
    """P(entry is sent) = sigmoid(prior_logit + offset), broadcast over groups."""

    prior_logit: np.ndarray  # shape of one group's entries (flattened)
    offset_q: int = 0  # int8, in OFFSET_UNIT

    def probs(self) -> np.ndarray:
        return snap_prob(sigmoid64(self.prior_logit.reshape(-1) + self.offset_q * OFFSET_UNIT))

    @staticmethod
    def best_offset(prior_logit: np.ndarray, bits: np.ndarray) -> int:
        """The int8 offset minimising the ideal code length of these mask bits (G, n).

        The cost is convex in the offset (a sum of logistic losses), so an integer
        ternary search finds the minimum in ~15 evaluations.
        """
        ones = bits.reshape(bits.shape[0], -1).sum(0).astype(np.float64)
        total = bits.shape[0]
        prior = prior_logit.reshape(-1)

        def cost(q: int) -> float:
            p = snap_prob(sigmoid64(prior + q * OFFSET_UNIT))
            return float(-(ones * np.log2(p) + (total - ones) * np.log2(1 - p)).sum())

        lo, hi = -127, 127
        while hi - lo > 2:
            m1, m2 = lo + (hi - lo) // 3, hi - (hi - lo) // 3
            if cost(m1) <= cost(m2):
                hi = m2
            else:
                lo = m1
        return min(range(lo, hi + 1), key=cost)


@dataclass
class ValueModel:
    """Model over symbols -R..-1, 1..R (zero is never sent: a zero closes the mask): categorical
    (``codes``) or, when ``scale_idx`` >= 0, a Laplace of scale laplace_scale(scale_idx)."""

    r: int
    codes: np.ndarray  # uint8 in 0..15, length 2R; 0 = symbol absent (categorical only)
    scale_idx: int = -1

    @classmethod
    def fit(cls, symbols: np.ndarray) -> "ValueModel":
        """The cheaper of the two models for these symbols, counting the bytes that describe it."""
        if symbols.size == 0:
            return cls(0, np.zeros(0, np.uint8))
        if (symbols == 0).any():
            raise ValueError("zero symbols must be removed (they close the mask)")
        r = int(np.abs(symbols).max())
        if r > MAX_ALPHABET_R:
            raise ValueError(f"alphabet too large ({r})")
        counts = np.bincount(to_index(symbols, r), minlength=2 * r).astype(np.float64)
        cmax = counts.max()
        with np.errstate(divide="ignore"):
            q = 15 + np.round(2 * np.log2(counts / cmax))
        cat = cls(r, np.where(counts > 0, np.clip(q, 1, 15), 0).astype(np.uint8))
        best, best_bits = cat, cat.cost_bits(counts)
        for k in range(N_LAPLACE_SCALES):
            lap = cls(r, np.zeros(0, np.uint8), k)
            bits = lap.cost_bits(counts)
            if bits < best_bits:
                best, best_bits = lap, bits
        return best

    def cost_bits(self, counts: np.ndarray) -> float:
        """Description + ideal code length of symbols with these counts (to_index order)."""
        p = self.probs()
        used = counts > 0
        return 8.0 * len(self.to_bytes()) - float((counts[used] * np.log2(p[used])).sum())

    def probs(self) -> np.ndarray:
        if self.scale_idx >= 0:
            return laplace_probs(self.r, self.scale_idx)
        p = np.where(self.codes > 0, np.exp2((self.codes.astype(np.float64) - 15) / 2), 0.0)
        return p / p.sum()

    def to_bytes(self) -> bytes:
        if self.scale_idx >= 0:
            return struct.pack("<HB", self.r | PARAMETRIC_FLAG, self.scale_idx)
        nib = np.concatenate([self.codes, np.zeros(len(self.codes) % 2, np.uint8)])
        packed = (nib[0::2] << 4 | nib[1::2]).astype(np.uint8) if len(nib) else np.zeros(0, np.uint8)
        return struct.pack("<H", self.r) + packed.tobytes()

    @classmethod
    def from_bytes(cls, buf: memoryview, pos: int) -> tuple["ValueModel", int]:
        if pos + 2 > len(buf):
            raise BitstreamError("truncated value model")
        (r,) = struct.unpack_from("<H", buf, pos)
        pos += 2
        if r & PARAMETRIC_FLAG:
            r &= ~PARAMETRIC_FLAG
            if not 1 <= r <= MAX_ALPHABET_R or pos + 1 > len(buf):
                raise BitstreamError("corrupted value model (Laplace alphabet or scale)")
            k = buf[pos]
            if k >= N_LAPLACE_SCALES:
                raise BitstreamError(f"corrupted value model (Laplace scale index {k})")
            return cls(r, np.zeros(0, np.uint8), int(k)), pos + 1
        if r > MAX_ALPHABET_R:
            raise BitstreamError(f"value alphabet {r} out of range")
        nbytes = r  # 2R nibbles
        if pos + nbytes > len(buf):
            raise BitstreamError("truncated value model")
        packed = np.frombuffer(bytes(buf[pos : pos + nbytes]), np.uint8)
        codes = np.stack([packed >> 4, packed & 15], 1).reshape(-1)[: 2 * r].astype(np.uint8)
        if r and not codes.any():
            raise BitstreamError("empty value model")
        return cls(r, codes), pos + nbytes


def to_index(symbols: np.ndarray, r: int) -> np.ndarray:
    s = symbols.astype(np.int64)
    return np.where(s < 0, s + r, s + r - 1).astype(np.int32)


def from_index(idx: np.ndarray, r: int) -> np.ndarray:
    i = idx.astype(np.int64)
    return np.where(i < r, i - r, i - r + 1).astype(np.int32)


class Encoder:
    """A FIFO range coder stream (decode order = encode order)."""

    def __init__(self) -> None:
        self._c = constriction.stream.queue.RangeEncoder()

    def bits(self, bits: np.ndarray, probs: np.ndarray) -> None:
        """Bits (any shape, last axis matching probs after flattening per group)."""
        b = bits.reshape(-1).astype(np.int32)
        if b.size:
            p = np.broadcast_to(probs.reshape(1, -1), (bits.shape[0], probs.size)).reshape(-1)
            self._c.encode(b, constriction.stream.model.Bernoulli(perfect=False), np.ascontiguousarray(p, np.float64))

    def values(self, symbols: np.ndarray, model: ValueModel) -> None:
        if symbols.size:
            cat = constriction.stream.model.Categorical(model.probs(), perfect=False)
            self._c.encode(to_index(symbols, model.r), cat)

    def finish(self) -> bytes:
        return self._c.get_compressed().tobytes()


class Decoder:
    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise BitstreamError("entropy-coded section length is not a multiple of 4")
        self._c = constriction.stream.queue.RangeDecoder(np.frombuffer(data, np.uint32).copy())

    def bits(self, n_groups: int, probs: np.ndarray) -> np.ndarray:
        p = np.broadcast_to(probs.reshape(1, -1), (n_groups, probs.size)).reshape(-1)
        if not p.size:
            return np.zeros((n_groups, probs.size), np.int32)
        try:
            out = self._c.decode(constriction.stream.model.Bernoulli(perfect=False), np.ascontiguousarray(p, np.float64))
        except AssertionError:  # constriction's report of invalid compressed data
            raise BitstreamError("corrupted .mscn file (invalid mask data)") from None
        return np.asarray(out, np.int32).reshape(n_groups, probs.size)

    def values(self, n: int, model: ValueModel) -> np.ndarray:
        if n == 0:
            return np.zeros(0, np.int32)
        if model.r == 0:
            raise BitstreamError("values present but the value model is empty")
        cat = constriction.stream.model.Categorical(model.probs(), perfect=False)
        try:
            idx = np.asarray(self._c.decode(cat, n), np.int32)
        except AssertionError:
            raise BitstreamError("corrupted .mscn file (invalid value data)") from None
        return from_index(idx, model.r)
