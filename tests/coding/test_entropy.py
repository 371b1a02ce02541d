"""Entropy models and range coding: round trips, serialisation, efficiency."""

from __future__ import annotations

import numpy as np
import pytest

from mscncodec.coding.entropy import MAX_ALPHABET_R, Decoder, Encoder, MaskModel, ValueModel, from_index, snap_prob, to_index
from mscncodec.errors import BitstreamError


def _mask_round_trip(bits: np.ndarray, prior: np.ndarray, offset: int) -> tuple[np.ndarray, int]:
    mm = MaskModel(prior, offset)
    enc = Encoder()
    enc.bits(bits, mm.probs())
    data = enc.finish()
    out = Decoder(data).bits(bits.shape[0], MaskModel(prior.copy(), offset).probs())
    return out, len(data)


@pytest.mark.parametrize("density", [0.0, 0.01, 0.2, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("groups, n", [(1, 1), (7, 13), (60, 50)])
def test_mask_round_trip(density, groups, n):
    rng = np.random.default_rng(int(density * 100) + groups)
    prior = rng.normal(0, 3, n)
    bits = (rng.random((groups, n)) < density).astype(np.int32)
    off = MaskModel.best_offset(prior, bits)
    assert -127 <= off <= 127
    out, _ = _mask_round_trip(bits, prior, off)
    assert out.shape == bits.shape
    np.testing.assert_array_equal(out, bits)


def test_mask_with_no_entries_per_group():
    out, size = _mask_round_trip(np.zeros((3, 0), np.int32), np.zeros(0), 0)
    assert out.shape == (3, 0) and size == 0


def test_mask_with_zero_groups():
    # Encoder.bits on zero groups writes nothing; Decoder.bits(0, probs) returns an empty (0, n) array
    out, size = _mask_round_trip(np.zeros((0, 5), np.int32), np.zeros(5), 0)
    assert out.shape == (0, 5) and size == 0
    # and an empty call does not disturb what is coded around it
    sym = np.array([3, -1, 2, 2], np.int32)
    vm = ValueModel.fit(sym)
    enc = Encoder()
    enc.values(sym, vm)
    enc.bits(np.zeros((0, 5), np.int32), MaskModel(np.zeros(5), 0).probs())
    enc.values(sym[::-1], vm)
    dec = Decoder(enc.finish())
    np.testing.assert_array_equal(dec.values(4, vm), sym)
    assert dec.bits(0, MaskModel(np.zeros(5), 0).probs()).shape == (0, 5)
    np.testing.assert_array_equal(dec.values(4, vm), sym[::-1])


def test_best_offset_minimises_code_length():
    rng = np.random.default_rng(3)
    prior = rng.normal(0, 1, 40)
    bits = (rng.random((200, 40)) < 0.05).astype(np.int32)  # much sparser than the prior says

    def cost(q):
        p = MaskModel(prior, q).probs()
        return -(bits * np.log2(p) + (1 - bits) * np.log2(1 - p)).sum()

    best = MaskModel.best_offset(prior, bits)
    assert best < 0  # the offset moves probabilities towards "closed"
    assert cost(best) <= min(cost(q) for q in range(-127, 128)) + 1e-9


def test_snap_prob_never_degenerate():
    p = snap_prob(np.array([0.0, 1e-9, 0.5, 1 - 1e-9, 1.0]))
    assert (p > 0).all() and (p < 1).all()
    assert p[2] == 0.5
    np.testing.assert_array_equal(np.round(p * 4096), p * 4096)


@pytest.mark.parametrize(
    "symbols",
    [
        np.array([], np.int32),
        np.array([1], np.int32),
        np.array([-1] * 17, np.int32),
        np.array([5] * 9, np.int32),  # single-symbol alphabet, r = 5
        np.array([-3, 3, -3, 3, 2], np.int32),
        np.array([MAX_ALPHABET_R, -MAX_ALPHABET_R, 1], np.int32),
    ],
    ids=["empty", "one", "all-minus-one", "single-symbol", "mixed", "max-alphabet"],
)
def test_value_round_trip_edge_cases(symbols):
    vm = ValueModel.fit(symbols)
    raw = vm.to_bytes()
    vm2, end = ValueModel.from_bytes(memoryview(raw), 0)
    assert end == len(raw)
    assert vm2.r == vm.r and vm2.scale_idx == vm.scale_idx
    np.testing.assert_array_equal(vm2.codes, vm.codes)
    enc = Encoder()
    enc.values(symbols, vm)
    data = enc.finish()
    out = Decoder(data).values(symbols.size, vm2)
    np.testing.assert_array_equal(out, symbols)
    assert out.dtype == np.int32


@pytest.mark.parametrize("scale", [0.3, 2.0, 40.0])
def test_value_round_trip_random(scale):
    rng = np.random.default_rng(int(scale * 10))
    sym = np.round(rng.laplace(0, scale, 3000)).astype(np.int32)
    sym = sym[sym != 0]
    vm = ValueModel.fit(sym)
    assert vm.r == np.abs(sym).max()
    if vm.scale_idx < 0:
        assert len(vm.codes) == 2 * vm.r and vm.codes.max() == 15 and vm.codes.dtype == np.uint8
    enc = Encoder()
    enc.values(sym, vm)
    data = enc.finish()
    vm2, _ = ValueModel.from_bytes(memoryview(vm.to_bytes()), 0)
    out = Decoder(data).values(sym.size, vm2)
    np.testing.assert_array_equal(out, sym)
    # the chosen model is never dearer than the categorical one, table included, and the real
    # coded length follows the estimate
    counts = np.bincount(to_index(sym, vm.r), minlength=2 * vm.r).astype(np.float64)
    codes_only = ValueModel(vm.r, vm.codes) if vm.scale_idx < 0 else None
    if codes_only is None:
        q = 15 + np.round(2 * np.log2(np.where(counts > 0, counts, 1) / counts.max()))
        codes_only = ValueModel(vm.r, np.where(counts > 0, np.clip(q, 1, 15), 0).astype(np.uint8))
    assert vm.cost_bits(counts) <= codes_only.cost_bits(counts) + 1e-6
    assert abs(8 * (len(data) + len(vm.to_bytes())) - vm.cost_bits(counts)) < 0.02 * vm.cost_bits(counts) + 64


def test_wide_alphabets_take_the_laplace_model_and_it_is_much_smaller():
    """A wide alphabet (a dense update at a fine step): the categorical table alone would be R bytes."""
    rng = np.random.default_rng(7)
    sym = np.round(rng.laplace(0, 60, 2000)).astype(np.int32)
    sym = sym[sym != 0]
    vm = ValueModel.fit(sym)
    assert vm.scale_idx >= 0 and len(vm.to_bytes()) == 3
    raw = b"xy" + vm.to_bytes()
    vm2, end = ValueModel.from_bytes(memoryview(raw), 2)
    assert end == len(raw) and vm2.r == vm.r and vm2.scale_idx == vm.scale_idx
    enc = Encoder()
    enc.values(sym, vm)
    np.testing.assert_array_equal(Decoder(enc.finish()).values(sym.size, vm2), sym)


@pytest.mark.parametrize("raw", [b"\x05\x80", b"\x05\x80\xff", b"\x00\x80\x03", b"\xff\xff\x01"])
def test_bad_laplace_value_models_are_bitstream_errors(raw):
    with pytest.raises(BitstreamError):
        ValueModel.from_bytes(memoryview(raw), 0)


def test_value_model_rejects_zero_and_huge_symbols():
    with pytest.raises(ValueError):
        ValueModel.fit(np.array([1, 0, 2]))
    with pytest.raises(ValueError):
        ValueModel.fit(np.array([MAX_ALPHABET_R + 1]))


def test_value_model_serialisation_at_an_offset():
    vm = ValueModel.fit(np.array([-2, 1, 1, 3, 7], np.int32))
    buf = b"\xaa\xbb\xcc" + vm.to_bytes() + b"tail"
    vm2, end = ValueModel.from_bytes(memoryview(buf), 3)
    assert buf[end:] == b"tail"
    assert vm2.r == 7
    np.testing.assert_array_equal(vm2.codes, vm.codes)
    np.testing.assert_allclose(vm2.probs(), vm.probs())
    assert vm.probs().sum() == pytest.approx(1.0)


def test_truncated_value_model_bytes():
    raw = ValueModel.fit(np.array([-9, 4, 4, 1], np.int32)).to_bytes()
    for n in range(len(raw)):
        with pytest.raises(BitstreamError):
            ValueModel.from_bytes(memoryview(raw[:n]), 0)


def test_value_model_bytes_out_of_range_or_empty():
    with pytest.raises(BitstreamError, match="range"):
        ValueModel.from_bytes(memoryview((MAX_ALPHABET_R + 1).to_bytes(2, "little") + bytes(5000)), 0)
    with pytest.raises(BitstreamError, match="empty"):
        ValueModel.from_bytes(memoryview((3).to_bytes(2, "little") + bytes(3)), 0)


def test_decoder_refuses_values_without_model_and_misaligned_data():
    with pytest.raises(BitstreamError):
        Decoder(b"").values(3, ValueModel(0, np.zeros(0, np.uint8)))
    with pytest.raises(BitstreamError, match="multiple of 4"):
        Decoder(b"\x00\x01\x02")


def test_index_mapping_is_a_bijection():
    r = 6
    sym = np.array([s for s in range(-r, r + 1) if s != 0])
    idx = to_index(sym, r)
    np.testing.assert_array_equal(idx, np.arange(2 * r))
    np.testing.assert_array_equal(from_index(idx, r), sym)


def test_one_stream_interleaves_masks_and_values():
    rng = np.random.default_rng(11)
    prior = rng.normal(0, 1, 20)
    bits = (rng.random((9, 20)) < 0.3).astype(np.int32)
    sym = np.round(rng.normal(0, 4, 50)).astype(np.int32)
    sym = sym[sym != 0]
    vm = ValueModel.fit(sym)
    enc = Encoder()
    enc.bits(bits, MaskModel(prior, 2).probs())
    enc.values(sym, vm)
    enc.bits(bits[::-1], MaskModel(prior, -3).probs())
    dec = Decoder(enc.finish())
    np.testing.assert_array_equal(dec.bits(9, MaskModel(prior, 2).probs()), bits)
    np.testing.assert_array_equal(dec.values(sym.size, vm), sym)
    np.testing.assert_array_equal(dec.bits(9, MaskModel(prior, -3).probs()), bits[::-1])


def test_value_coding_close_to_empirical_entropy():
    rng = np.random.default_rng(5)
    sym = np.round(rng.laplace(0, 4, 100_000)).astype(np.int32)
    sym = sym[sym != 0]
    _, counts = np.unique(sym, return_counts=True)
    ideal_bits = float(-(counts * np.log2(counts / counts.sum())).sum())
    vm = ValueModel.fit(sym)
    enc = Encoder()
    enc.values(sym, vm)
    coded_bits = 8 * (len(enc.finish()) + len(vm.to_bytes()))
    assert coded_bits >= ideal_bits * 0.999
    assert coded_bits <= ideal_bits * 1.03 + 512  # half-bit log-frequency model + table + coder flush


def test_mask_coding_close_to_model_information():
    rng = np.random.default_rng(6)
    p = rng.uniform(0.02, 0.98, 500)
    prior = np.log(p / (1 - p))
    bits = (rng.random((300, 500)) < p).astype(np.int32)
    q = MaskModel(prior, 0).probs()
    info = float(-(bits * np.log2(q) + (1 - bits) * np.log2(1 - q)).sum())
    enc = Encoder()
    enc.bits(bits, q)
    coded_bits = 8 * len(enc.finish())
    assert info * 0.999 <= coded_bits <= info * 1.01 + 64
