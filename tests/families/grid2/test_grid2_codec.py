"""families/grid2/encoder.py and decoder.py through the image codec: round trips, variants, old streams of the
retired +gated variant, `mscn info`, and one-line errors for malformed streams.

Tiny models (3 grids, narrow networks) and images of a few thousand pixels keep every test around a second.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_image
from grid2_testing import CFG, FAST, H, W

from mscncodec import models
from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError, MscnError, RateError
from mscncodec.families import by_name
from mscncodec.families.grid2 import encoder as grid2codec
from mscncodec.families.grid2.model import fresh_grid2_model
from mscncodec.modalities.image_codec import decode, describe, encode_image


@pytest.fixture(scope="module")
def g2(isolated_models) -> str:
    fresh_grid2_model(CFG, name="g2t", seed=0).save(isolated_models / "g2t.pt")
    return "g2t"


@pytest.fixture(scope="module")
def stream(g2) -> tuple[np.ndarray, bytes, dict]:
    img = synthetic_image(H, W, seed=1)
    data, rep = encode_image(img, bpp=4.0, model=g2, return_report=True, **FAST)
    return img, data, rep


def test_round_trip_at_a_target_rate(stream):
    img, data, rep = stream
    out = decode(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert len(data) <= int(4.0 * H * W / 8) and rep["arch"] == "grid2"
    assert rep["psnr"] == pytest.approx(10 * np.log10(255.0**2 / np.mean((img.astype(float) - out) ** 2)))
    header, sections = bitstream.unpack(data)
    assert bitstream.ARCHS[header["arch"]] == "grid2" and "GRD2" in sections and "QPRM" not in sections


def test_encoding_is_deterministic(stream, g2):
    img, data, _ = stream
    assert encode_image(img, bpp=4.0, model=g2, **FAST) == data


@pytest.mark.parametrize("variant", ["g2t+dense", "g2t+scratch"])
def test_variants_send_a_decoder_update_and_round_trip(g2, variant):
    img = synthetic_image(24, 40, seed=3)
    data, rep = encode_image(img, bpp=6.0, model=variant, return_report=True, **FAST)
    _, sections = bitstream.unpack(data)
    assert rep["model"] == variant and decode(data).shape == img.shape
    if variant.endswith("scratch"):
        assert "QPRM" in sections  # a generic start must send its decoder
    assert describe(data)["header"]["model"] == variant


def test_the_gated_variant_encodes_nothing_but_its_old_streams_decode_as_dense(g2):
    """The L0-gated update was a failed experiment: `+gated` is refused for encoding, by the registry and by
    the encoder; a stream made with it (same sections as +dense) is still found by its model id and decodes."""
    with pytest.raises(MscnError, match="gated"):
        encode_image(synthetic_image(24, 40, seed=3), bpp=6.0, model="g2t+gated", **FAST)
    gated = models.load_model(g2).variant("gated")
    with pytest.raises(MscnError, match="only decodes old streams"):
        grid2codec.encode(gated, synthetic_image(24, 40, seed=3), {}, bpp=6.0, quality=None, steps=2, effort="fast",
                          progress=False)
    assert "gated" in by_name("grid2").decode_variants and "gated" not in by_name("grid2").variants
    img = synthetic_image(24, 40, seed=3)
    dense = encode_image(img, bpp=6.0, model="g2t+dense", effort="fast", steps=6)
    header, sections = bitstream.unpack(dense)
    assert "QPRM" in sections  # the update is sent: the old gated streams carried one too
    header = {k: v for k, v in header.items() if k not in ("n_sections", "payload_crc32")}
    old = bitstream.pack({**header, "model_id": gated.model_id}, list(sections.items()))
    assert np.array_equal(decode(old), decode(dense))
    d = describe(old)
    assert d["header"]["model"] == "g2t+gated" and d["header"]["update"].startswith("gated update of the decoder")


def test_every_encoded_variant_has_an_encoder_revision():
    """The bench keys its cache by the encoder's revision per variant (bench/inr.py reads the two names)."""
    assert set(grid2codec.VERSION) == set(by_name("grid2").variants)
    assert grid2codec.VERSION["none"] == grid2codec.ENCODER_REVISION
    assert grid2codec.VERSION["dense"] == grid2codec.VERSION["scratch"] == grid2codec.UPDATE_REVISION


def test_size_fit_without_a_sparse_grid_has_nothing_to_zero(g2):
    """An encode whose grids are all dense still fits its size: the dead-zone fill finds no candidates
    instead of failing."""
    img = synthetic_image(24, 40, seed=3)
    data = encode_image(img, bpp=6.0, model=g2, effort="default")
    assert len(data) <= 6.0 * 24 * 40 / 8 and decode(data).shape == img.shape


def test_describe_shows_lambda_and_step(stream):
    _, data, _ = stream
    d = describe(data)
    assert d["header"]["arch"] == "grid2" and "index" in d["header"]["lambda"]
    assert d["sections"]["GRD2"] == 2 and d["header"]["update"].startswith("none")


@pytest.mark.parametrize("name,edit,words", [
    ("grd2-3-bytes", lambda s: [(k, v + b"\0" if k == "GRD2" else v) for k, v in s], "GRD2 section must be 2 bytes"),
    ("no-grd2", lambda s: [(k, v) for k, v in s if k != "GRD2"], "missing section GRD2"),
    ("no-lats", lambda s: [(k, v) for k, v in s if k != "LATS"], "missing section LATS"),
    ("lats-odd", lambda s: [(k, v[:-1] if k == "LATS" else v) for k, v in s], "multiple of 4"),
])
def test_malformed_streams_are_one_line_bitstream_errors(stream, name, edit, words):
    _, data, _ = stream
    header, sections = bitstream.unpack(data)
    header = {k: v for k, v in header.items() if k not in ("n_sections", "payload_crc32")}
    bad = bitstream.pack(header, edit(list(sections.items())))
    with pytest.raises(BitstreamError) as ei:
        decode(bad)
    assert words.lower() in str(ei.value).lower() and "\n" not in str(ei.value)


def test_truncation_and_flips_are_refused(stream):
    _, data, _ = stream
    for n in range(0, len(data), 5):
        with pytest.raises(BitstreamError):
            decode(data[:n])
    for pos in range(0, len(data), 11):
        b = bytearray(data)
        b[pos] ^= 0x5A
        with pytest.raises(BitstreamError):
            decode(bytes(b))


def test_target_below_the_container_is_a_rate_error(g2):
    with pytest.raises(RateError) as ei:
        encode_image(synthetic_image(16, 16), bpp=0.001, model=g2, **FAST)
    assert "bpp" in str(ei.value) and isinstance(ei.value, MscnError)
