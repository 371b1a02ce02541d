"""The grid family is decode-only: the shipped grid-l6 streams decode pixel for pixel (test_old_streams),
bad grid streams are one-line errors, `mscn info` describes them, and nothing encodes or trains with it."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO, synthetic_image

from mscncodec import families, models
from mscncodec.cli import main
from mscncodec.coding import latents as lt
from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError, MscnError
from mscncodec.families.grid.model import GridModel
from mscncodec.modalities.image_codec import decode, describe, encode_image
from mscncodec.models import find_by_id, load_model

FIX = REPO / "tests" / "fixtures"


@pytest.fixture()
def shipped(monkeypatch):
    monkeypatch.setenv("MSCN_MODELS", str(REPO / "mscncodec" / "weights"))
    monkeypatch.setattr(models, "_cache", {})


@pytest.fixture()
def data(shipped) -> bytes:
    return (FIX / "grid-l6.mscn").read_bytes()


def _repack(data: bytes, edit=None, **header_changes) -> bytes:
    header, sections = bitstream.unpack(data)
    header = {k: v for k, v in header.items() if k not in ("n_sections", "payload_crc32")}
    header.update(header_changes)
    secs = list(sections.items())
    return bitstream.pack(header, edit(secs) if edit else secs)


def _edit_section(tag: str, fn):
    return lambda secs: [(k, fn(v) if k == tag else v) for k, v in secs]


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, msg
    return msg


def test_the_registry_says_grid_decodes_images_only():
    f = families.by_name("grid")
    assert f.code == 2 and "image" in f.decoders and not f.encoders and not f.trainers
    assert "grid" not in families.names(encodes="image") and "grid" not in families.names(trains="image")
    with pytest.raises(MscnError, match="decodes old streams only"):
        f.encoder("image")


def test_describe_shows_the_grid_stream(data):
    d = describe(data)
    h = d["header"]
    assert h["arch"] == "grid" and h["model"] == "grid-l6"
    _, sections = bitstream.unpack(data)
    lam_idx, step_idx = struct.unpack("<BB", sections["GRID"])
    assert h["lambda"] == f"{lt.lambda_value(lam_idx):.3g} (index {lam_idx})"
    assert h["latent_step"] == f"{lt.latent_step(step_idx):.4g} (index {step_idx})"
    assert list(sections) == ["GRID", "QPRM", "MASK", "VALS", "LATS"]
    assert sum(d["sections"].values()) == len(data) == d["bytes"]


def test_the_variants_are_still_found_by_id(shipped):
    """Old streams of the ablation variants name them by id: the zoo still finds them (decode-only)."""
    for kind in ("dense", "scratch"):
        m = load_model(f"grid-l6+{kind}")
        assert isinstance(m, GridModel) and find_by_id(m.model_id).name == f"grid-l6+{kind}"


def test_encoding_with_a_grid_model_is_a_one_line_error(shipped):
    with pytest.raises(MscnError) as ei:
        encode_image(synthetic_image(16, 16), bpp=1.0, model="grid-l6", effort="fast")
    assert "decodes old streams only" in _one_line(ei.value)


def test_cli_has_no_grid_encoder_or_trainer(tmp_path, shipped):
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(FIX / "source-64x96.png"), "-o", str(tmp_path / "a.mscn"), "--arch", "grid"])
    assert r.exit_code == 2 and "'grid' is not one of" in r.output
    r = runner.invoke(main, ["train", "image", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--arch", "grid"])
    assert r.exit_code == 2 and "'grid' is not one of" in r.output
    r = runner.invoke(main, ["info", str(FIX / "grid-l6.mscn")])
    assert r.exit_code == 0 and "lambda:" in r.stdout and "arch: grid" in r.stdout, r.output


def test_truncation_at_every_cut_point(data):
    for n in range(0, len(data), 3):
        with pytest.raises(BitstreamError) as ei:
            decode(data[:n])
        _one_line(ei.value)


def test_every_byte_flip_is_refused(data):
    for pos in range(0, len(data), 7):
        b = bytearray(data)
        b[pos] ^= 0x5A
        with pytest.raises(BitstreamError):
            decode(bytes(b))


@pytest.mark.parametrize("name,edit,header,words", [
    ("grid-3-bytes", _edit_section("GRID", lambda v: v + b"\0"), {}, "GRID section must be 2 bytes"),
    ("grid-empty", _edit_section("GRID", lambda v: b""), {}, "GRID section must be 2 bytes"),
    ("no-grid", lambda s: [(k, v) for k, v in s if k != "GRID"], {}, "missing section GRID"),
    ("no-lats", lambda s: [(k, v) for k, v in s if k != "LATS"], {}, "missing section LATS"),
    ("no-vals", lambda s: [(k, v) for k, v in s if k != "VALS"], {}, "missing section VALS"),
    ("lats-odd", _edit_section("LATS", lambda v: v[:-1]), {}, "multiple of 4"),
    ("unknown-model", None, {"model_id": b"\x01" * 8}, "which this decoder does not have"),
    ("siren-arch", None, {"arch": 1}, "architecture siren does not match"),
    ("wrong-alignment", None, {"patch": 128}, "alignment"),
])
def test_malformed_grid_streams_are_one_line_bitstream_errors(data, name, edit, header, words):
    with pytest.raises(BitstreamError) as ei:
        decode(_repack(data, edit, **header))
    assert words.lower() in _one_line(ei.value).lower()


def test_decoding_is_unchanged_by_a_repack(data):
    assert np.array_equal(decode(_repack(data)), decode(data))
