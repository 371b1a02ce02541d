"""Images as patch groups: padding, round trips, channel handling, PSNR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mscncodec.families.siren import patches
from mscncodec.modalities import image as imod


@pytest.mark.parametrize("h, w, p", [(32, 32, 32), (40, 70, 32), (1, 1, 8), (17, 9, 8)])
def test_patches_round_trip_exactly(h, w, p):
    img = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    x = patches.to_patches(img, p)
    gh, gw = patches.patch_grid(h, w, p)
    assert x.shape == (gh * gw, p * p, 3)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    np.testing.assert_array_equal(patches.from_patches(x, h, w, p), img)


def test_patch_order_is_row_major_and_padding_replicates_edges():
    img = np.zeros((3, 5, 3), np.uint8)
    img[:, :, 0] = np.arange(5)[None, :] * 50
    x = patches.to_patches(img, 2)  # 2 x 3 patches
    assert x.shape == (6, 4, 3)
    red = (x[..., 0] + 1) * 127.5
    torch.testing.assert_close(red[1], torch.tensor([100.0, 150.0, 100.0, 150.0]))
    torch.testing.assert_close(red[2], torch.tensor([200.0, 200.0, 200.0, 200.0]))  # edge-padded column


def test_grid_coords():
    c = patches.grid_coords(4)
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


# ------------------------------------------------------------------ loading files as a viewer shows them

import io  # noqa: E402
import struct  # noqa: E402
import warnings  # noqa: E402

from PIL import Image, ImageCms  # noqa: E402

from mscncodec.errors import InputError  # noqa: E402


def test_exif_orientation_is_applied_on_load(tmp_path):
    """Stored 96 wide x 64 high with orientation 6 (rotate 90 degrees clockwise): viewers show 64 x 96."""
    stored = np.zeros((64, 96, 3), np.uint8)
    stored[:32] = 255  # the stored top half is white: after the rotation it is the right half
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(p, exif=exif, quality=95)
    with Image.open(p) as im:
        assert im.size == (96, 64) and im.getexif()[0x0112] == 6  # the file really is stored landscape

    rgb, channels = imod.load(p)
    assert rgb.shape == (96, 64, 3) and channels == 3
    assert rgb[:, 40:].mean() > 240 and rgb[:, :24].mean() < 15


def test_exif_orientation_1_keeps_the_image(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 1
    Image.fromarray(img).save(tmp_path / "a.png", exif=exif)
    np.testing.assert_array_equal(imod.load(tmp_path / "a.png")[0], img)


def _ramp16(h: int = 8, w: int = 256) -> np.ndarray:
    return np.tile(np.round(np.linspace(0, 65535, w)).astype(np.uint16), (h, 1))


@pytest.mark.parametrize("mode, fmt", [("I;16", "PNG"), ("I;16B", "TIFF"), ("I", "TIFF")])
def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path, mode, fmt):
    ramp = _ramp16()
    data = ramp.astype(">u2") if mode == "I;16B" else ramp.astype(np.int32) if mode == "I" else ramp
    p = tmp_path / f"ramp.{fmt.lower()}"
    Image.fromarray(data).save(p, format=fmt)
    with Image.open(p) as im:
        assert im.mode == mode  # the file really is read in that 16/32-bit mode

    rgb, channels = imod.load(p)
    assert channels == 1 and rgb.shape == (8, 256, 3)
    expected = np.round(ramp / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(rgb[:, :, 0], expected)
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and abs(float(rgb.mean()) - 127.5) < 0.6


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _rgb_profile(name: str, r, g, b, gamma: float = 2.2) -> bytes:
    """A minimal ICC v2 RGB display profile (ImageCms.createProfile makes only sRGB, LAB and XYZ):
    D50-adapted primaries, one gamma curve for all channels, a description."""
    text = name.encode("ascii") + b"\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0" * 3 + b"\0" * 67
    curv = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", _xyz(*r)), (b"gXYZ", _xyz(*g)),
            (b"bXYZ", _xyz(*b)), (b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv)]
    pos, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", pos + len(data), len(body))
        data += body
    header = (struct.pack(">I", pos + len(data)) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 28 + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + data


ADOBE_LIKE = _rgb_profile("Adobe-like RGB (test)", (0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609),
                          (0.1492, 0.0632, 0.7446))
PATCHES = np.array([[[128, 128, 128], [100, 160, 100], [200, 100, 50], [30, 60, 220]]], np.uint8).repeat(4, 0)


def test_srgb_icc_profile_keeps_the_pixels(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(PATCHES).save(tmp_path / "srgb.png", icc_profile=srgb)
    with Image.open(tmp_path / "srgb.png") as im:
        assert im.info.get("icc_profile")
    np.testing.assert_array_equal(imod.load(tmp_path / "srgb.png")[0], PATCHES)


def test_non_srgb_icc_profile_is_converted_to_srgb(tmp_path):
    Image.fromarray(PATCHES).save(tmp_path / "wide.png", icc_profile=ADOBE_LIKE)
    rgb = imod.load(tmp_path / "wide.png")[0].astype(int)
    ref = ImageCms.profileToProfile(Image.fromarray(PATCHES), ImageCms.ImageCmsProfile(io.BytesIO(ADOBE_LIKE)),
                                    ImageCms.createProfile("sRGB"), outputMode="RGB")
    np.testing.assert_array_equal(rgb, np.asarray(ref))
    src = PATCHES.astype(int)
    assert np.abs(rgb[:, 0] - src[:, 0]).max() <= 2  # grey stays grey
    # wide-gamut values are more saturated once expressed in sRGB: the green patch's green-red gap grows
    assert (rgb[0, 1, 1] - rgb[0, 1, 0]) > (src[0, 1, 1] - src[0, 1, 0]) + 20


def test_unreadable_icc_profile_keeps_the_pixels(tmp_path):
    Image.fromarray(PATCHES).save(tmp_path / "bad.png", icc_profile=b"not a profile" * 10)
    np.testing.assert_array_equal(imod.load(tmp_path / "bad.png")[0], PATCHES)


def test_large_image_gives_no_pillow_warning(tmp_path, monkeypatch):
    """Above Pillow's bomb threshold (lowered here) but within MAX_PIXELS: loads, and warns nothing."""
    img = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: Pillow warns (errors over 2000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rgb, _ = imod.load(tmp_path / "big.png")
    np.testing.assert_array_equal(rgb, img)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)], caught


@pytest.mark.parametrize("pillow_limit, ours", [(1000, 1500), (700, 1 << 25)])
def test_too_large_image_is_our_one_line_error(tmp_path, monkeypatch, pillow_limit, ours):
    """Over MAX_PIXELS (checked on the header, before decoding), or over twice Pillow's limit (Pillow's
    DecompressionBombError): our InputError either way, and no Pillow warning."""
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    monkeypatch.setattr(imod, "MAX_PIXELS", ours)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match="too large") as ei:
            imod.load(tmp_path / "big.png")
    assert "\n" not in str(ei.value)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)], caught


def test_directory_input_says_so(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        imod.load(tmp_path)


def test_training_loader_reads_files_like_the_encoder(tmp_path):
    """load_rgb (every trainer's loader) applies EXIF orientation, 16-bit scaling and ICC to sRGB exactly as
    the encode path's load does: a model trains on the pixels it will later be asked to code."""
    stored = np.zeros((64, 96, 3), np.uint8)
    stored[:32] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    Image.fromarray(_ramp16()).save(tmp_path / "ramp16.png")
    Image.fromarray(PATCHES).save(tmp_path / "wide.png", icc_profile=ADOBE_LIKE)
    for name in ("rotated.jpg", "ramp16.png", "wide.png"):
        got = imod.load_rgb(tmp_path / name)
        assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3, name
        np.testing.assert_array_equal(got, imod.load(tmp_path / name)[0], err_msg=name)
    assert imod.load_rgb(tmp_path / "rotated.jpg").shape == (96, 64, 3)


def test_training_loader_drops_alpha_and_names_a_bad_file(tmp_path):
    rgba = np.concatenate([PATCHES, np.full(PATCHES.shape[:2] + (1,), 7, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "translucent.png")
    np.testing.assert_array_equal(imod.load_rgb(tmp_path / "translucent.png"), PATCHES)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(imod.MscnError, match="cannot read training image .*broken.png"):
        imod.load_rgb(tmp_path / "broken.png")
