"""Step table and uniform quantisation of sparse updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mscncodec.coding.quantize import STEP_PER_OCTAVE, dequantise, quantise, ste_round, step_index, step_size


def test_step_index_inverts_step_size():
    for i in range(256):
        assert step_index(step_size(i)) == i


def test_step_table_is_log_spaced_and_clipped():
    ratios = [step_size(i + 1) / step_size(i) for i in range(255)]
    np.testing.assert_allclose(ratios, 2 ** (1 / STEP_PER_OCTAVE))
    assert step_index(0.0) == 0 and step_index(-1.0) == 0 and step_index(1e-40) == 0
    assert step_index(1e40) == 255


@pytest.mark.parametrize("s", [1e-4, 3.3e-3, 0.05, 0.7, 1.0, 12.5])
def test_nearest_step_within_half_a_table_step(s):
    got = step_size(step_index(s))
    assert abs(np.log2(got / s)) <= 0.5 / STEP_PER_OCTAVE + 1e-12


@pytest.mark.parametrize("idx", [100, 140, 160, 175])
def test_quantise_error_and_mask(idx):
    g = torch.Generator().manual_seed(idx)
    values = torch.randn(6, 9, 5, generator=g) * 0.3
    keep = (torch.rand(6, 9, 5, generator=g) < 0.4).float()
    sym = quantise(values, keep, idx)
    assert sym.dtype == np.int32 and sym.shape == (6, 9, 5)
    rec = dequantise(sym, idx)
    assert rec.dtype == torch.float32
    step = step_size(idx)
    kept = keep.bool()
    err = (rec - values).abs()[kept]
    assert float(err.max()) <= step / 2 * (1 + 1e-5) + 1e-7
    assert (sym[~kept.numpy()] == 0).all()
    assert (rec[~kept] == 0).all()
    np.testing.assert_array_equal(rec.numpy(), sym.astype(np.float32) * np.float32(step))


def test_quantise_does_not_track_gradients():
    v = torch.randn(4, requires_grad=True)
    sym = quantise(v, torch.ones(4), 160)
    np.testing.assert_array_equal(sym, np.round(v.detach().numpy()).astype(np.int32))


def test_ste_round_forward_rounds_backward_identity():
    v = torch.tensor([0.26, -0.74, 1.49], requires_grad=True)
    out = ste_round(v, 0.5)
    torch.testing.assert_close(out.detach(), torch.tensor([0.5, -0.5, 1.5]))
    out.sum().backward()
    torch.testing.assert_close(v.grad, torch.ones(3))


def test_symbols_are_clipped_to_the_alphabet_bound():
    import numpy as np
    import torch

    from mscncodec.coding.quantize import MAX_SYMBOL, quantise, step_index, step_size

    idx = step_index(1e-3)
    v = torch.tensor([1e3, -1e3, 0.5 * step_size(idx), 3 * step_size(idx)])
    sym = quantise(v, torch.ones(4), idx)
    assert sym.tolist()[:2] == [MAX_SYMBOL, -MAX_SYMBOL]
    assert np.abs(sym).max() <= MAX_SYMBOL
    assert sym[3] == 3
