"""Images as patch groups: padding, round trips, channel handling, PSNR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mscncodec.modalities import image as imod


@pytest.mark.parametrize("h, w, p", [(32, 32, 32), (40, 70, 32), (1, 1, 8), (17, 9, 8)])
def test_patches_round_trip_exactly(h, w, p):
    img = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    x = imod.to_patches(img, p)
    gh, gw = imod.patch_grid(h, w, p)
    assert x.shape == (gh * gw, p * p, 3)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    np.testing.assert_array_equal(imod.from_patches(x, h, w, p), img)


def test_patch_order_is_row_major_and_padding_replicates_edges():
    img = np.zeros((3, 5, 3), np.uint8)
    img[:, :, 0] = np.arange(5)[None, :] * 50
    x = imod.to_patches(img, 2)  # 2 x 3 patches
    assert x.shape == (6, 4, 3)
    red = (x[..., 0] + 1) * 127.5
    torch.testing.assert_close(red[1], torch.tensor([100.0, 150.0, 100.0, 150.0]))
    torch.testing.assert_close(red[2], torch.tensor([200.0, 200.0, 200.0, 200.0]))  # edge-padded column


def test_grid_coords():
    c = imod.grid_coords(4)
    assert c.shape == (16, 2)
    assert float(c.min()) == -1.0 and float(c.max()) == 1.0
    torch.testing.assert_close(c[1], torch.tensor([-1.0, -1.0 / 3]))  # row-major (y, x)


def test_restore_channels():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    assert imod.restore_channels(rgb, 3) is rgb
    rgba = imod.restore_channels(rgb, 4)
    assert rgba.shape == (4, 6, 4) and (rgba[..., 3] == 255).all()
    gray = np.random.default_rng(1).integers(0, 256, (4, 6), dtype=np.uint8)
    rgb_g, c = imod.to_rgb(gray)
    assert c == 1
    np.testing.assert_array_equal(imod.restore_channels(rgb_g, 1), gray)


def test_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    assert imod.psnr(a, a) == float("inf")
    b = a.copy()
    b[...] = 1
    assert imod.psnr(a, b) == pytest.approx(20 * np.log10(255.0))
