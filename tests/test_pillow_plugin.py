"""The Pillow plugin (issue 31): `import mscncodec.pillow`, then Image.open / Image.save of .mscn image streams."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import mscncodec.pillow  # noqa: F401 - registers the format
from mscncodec import api
from mscncodec.errors import BitstreamError, InputError, MscnError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOLDEN = FIXTURES / "golden"
FAST = {"effort": "fast", "steps": 10}


@pytest.fixture(scope="module")
def small() -> Image.Image:
    """A 48x48 RGB crop of the test source: photo-like content, small enough to encode in about a second."""
    with Image.open(FIXTURES / "source-64x96.png") as im:
        return im.convert("RGB").crop((0, 0, 48, 48))


def test_registered_with_pillow():
    assert Image.registered_extensions()[".mscn"] == "MSCN"
    assert Image.MIME["MSCN"] == "image/x-mscn"
    assert "MSCN" in Image.SAVE and "MSCN" in Image.OPEN


@pytest.mark.parametrize("name", ["image-grid2-l7-0.5bpp", "image-siren-l05-0.5bpp"])
def test_open_gives_the_pixels_of_api_decode(name):
    path = GOLDEN / f"{name}.mscn"
    with Image.open(path) as im:
        assert (im.format, im.mode, im.size) == ("MSCN", "RGB", (96, 64))
        assert im.get_format_mimetype() == "image/x-mscn"
        pixels = np.asarray(im)
    np.testing.assert_array_equal(pixels, api.decode(path.read_bytes()))


def test_open_reads_the_header_only_and_decodes_at_load():
    data = bytearray((GOLDEN / "image-grid2-l7-0.5bpp.mscn").read_bytes())
    data[-1] ^= 0xFF  # a payload byte: the header is intact, the CRC is not
    im = Image.open(io.BytesIO(bytes(data)))
    assert (im.mode, im.size) == ("RGB", (96, 64))  # known without decoding
    with pytest.raises(BitstreamError, match="CRC"):
        im.load()


def test_save_meets_the_bpp_target_and_decodes(small, tmp_path):
    out = tmp_path / "x.mscn"
    small.save(out, bpp=1.0, **FAST)
    data = out.read_bytes()
    assert 8 * len(data) / (48 * 48) <= 1.0
    assert data == api.encode(np.asarray(small), bpp=1.0, **FAST)  # the API's encode, options passed through
    with Image.open(out) as im:
        assert (im.mode, im.size) == ("RGB", (48, 48))
        np.testing.assert_array_equal(np.asarray(im), api.decode(data))


def test_save_with_a_byte_target_to_a_file_object(small):
    buf = io.BytesIO()
    small.save(buf, format="MSCN", bytes=300, **FAST)
    assert 0 < len(buf.getvalue()) <= 300
    buf.seek(0)
    with Image.open(buf) as im:
        im.load()
        assert im.size == (48, 48)


@pytest.mark.parametrize("mode, decoded", [("L", "L"), ("P", "RGB"), ("RGBA", "RGBA"), ("CMYK", "RGB")])
def test_mode_conversions(small, mode, decoded):
    src = small.convert(mode)
    buf = io.BytesIO()
    src.save(buf, format="MSCN", bytes=300, **FAST)
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.mode == decoded
        out = np.asarray(im)
    if mode == "L":  # grey stays grey, close to the original
        assert out.shape == (48, 48)
        assert np.abs(out.astype(int) - np.asarray(src, dtype=int)).mean() < 40
    if mode == "RGBA":  # an opaque alpha channel is restored
        assert (out[:, :, 3] == 255).all()


def test_translucent_alpha_is_refused_and_nothing_written(small, tmp_path):
    rgba = np.asarray(small.convert("RGBA")).copy()
    rgba[0, 0, 3] = 10
    out = tmp_path / "t.mscn"
    with pytest.raises(InputError, match="translucent alpha"):
        Image.fromarray(rgba).save(out, bpp=1.0, **FAST)
    assert not out.exists()


def test_unknown_save_option_is_refused(small, tmp_path):
    out = tmp_path / "t.mscn"
    with pytest.raises(MscnError, match="unknown .mscn save option bbp"):
        small.save(out, bbp=1.0)
    assert not out.exists()


@pytest.mark.parametrize("name, modality", [("mesh-shape-3000B", "mesh"), ("field-1500B", "sphere")])
def test_a_stream_of_another_modality_is_not_an_image(name, modality):
    with pytest.warns(UserWarning, match=f"is a {modality} stream, not an image"), \
            pytest.raises(UnidentifiedImageError):
        Image.open(GOLDEN / f"{name}.mscn")


def test_truncated_streams_give_one_line_errors():
    data = (GOLDEN / "image-grid2-l7-0.5bpp.mscn").read_bytes()
    with pytest.raises(BitstreamError, match="truncated .mscn file .* header needs"):
        Image.open(io.BytesIO(data[:20]))
    im = Image.open(io.BytesIO(data[:200]))  # the header is whole: the payload is found short at load
    with pytest.raises(BitstreamError, match="truncated .mscn file"):
        im.load()


def test_other_formats_are_unaffected(small):
    buf = io.BytesIO()
    small.save(buf, format="PNG")
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.format == "PNG"
