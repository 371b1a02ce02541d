"""Bounded decoder work: the pixels-per-byte rule for image streams (bitstream.MIN_BPP), the caller's
--max-pixels / max_pixels and --max-voxels / max_voxels, all checked before anything is allocated for
the claimed signal; and the SIREN decoder's memory no longer growing with its chunk of 2048 patches."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner
from PIL import Image

import mscncodec
from mscncodec.families.siren import image as siren_image, patches
from mscncodec.cli import main
from mscncodec.coding.update import pack_update
from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError, LimitError, MscnError, RateError
from mscncodec.models import load_model
from mscncodec.modalities import image as imod
from mscncodec.modalities import image_codec, mesh_codec
from mscncodec.modalities import mesh as mmod

from conftest import PROVISIONAL, synthetic_image

pytestmark = pytest.mark.usefixtures("isolated_models")

SDF = "random-sdf-w32d5+dense"


def empty_image_stream(h: int, w: int, pad_to: int = 0, model: str = PROVISIONAL) -> bytes:
    """The SIREN stream that sends no update for an h x w image (the encoder's smallest), its VALS section
    padded with zero words until the stream has at least `pad_to` bytes (the decoder never reads them)."""
    m = load_model(model)
    gh, gw = patches.patch_grid(h, w, m.patch)
    header = {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": 1, "arch": 1,
              "model_id": m.model_id, "height": h, "width": w, "channels": 3, "patch": m.patch}
    zeros = {k: np.zeros((gh * gw, int(np.prod(s))), np.int32) for k, s in m.cfg.update_shapes().items()}
    sections = pack_update(m, zeros, {k: 0 for k in zeros})
    short = pad_to - len(bitstream.pack(header, sections))
    if short > 0:
        sections = [(t, d + bytes(short + -short % 4) if t == "VALS" else d) for t, d in sections]
    return bitstream.pack(header, sections)


def with_size(data: bytes, h: int, w: int) -> bytes:
    """The same image stream claiming h x w, its CRC rewritten (a crafted file the container accepts)."""
    off = {f.name: struct.calcsize("<" + "".join(g.fmt for g in bitstream.HEADER[:i]))
           for i, f in enumerate(bitstream.HEADER)}
    b = bytearray(data)
    struct.pack_into("<I", b, off["height"], h)
    struct.pack_into("<I", b, off["width"], w)
    struct.pack_into("<I", b, off["payload_crc32"], 0)
    hs = bitstream.HEADER_SIZE
    struct.pack_into("<I", b, off["payload_crc32"], bitstream.stream_crc(bytes(b[:hs]), bytes(b[hs:])))
    return bytes(b)


def _cheap(fn, *a, **kw):
    """Run fn; -> (exception, seconds, tracemalloc peak bytes)."""
    tracemalloc.start()
    t = time.perf_counter()
    try:
        fn(*a, **kw)
        err = None
    except MscnError as e:
        err = e
    finally:
        dt = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return err, dt, peak


# ---------------------------------------------------------------- the pixels-per-byte rule

def test_min_image_bytes_is_the_rule_exactly():
    assert bitstream.MIN_BPP == 0.005
    for h, w in [(1, 1), (40, 48), (512, 768), (1024, 1024), (16384, 2048)]:
        need = bitstream.min_image_bytes(h, w)
        assert 8 * need >= bitstream.MIN_BPP * h * w > 8 * (need - 1)
        header = {"height": h, "width": w}
        bitstream.check_image_density(header, need)
        with pytest.raises(BitstreamError, match="cannot code"):
            bitstream.check_image_density(header, need - 1)


def test_the_streams_of_the_report_are_refused_before_any_work(monkeypatch):
    """A 267-byte stream claiming 1024x1024 (1.6 GB, 10 s to decode before) and a 5.5 KB one claiming
    16384x2048 (3.4 GB, 23 s): both valid containers, both refused without a byte sized by the claim."""
    small = empty_image_stream(1024, 1024)
    assert len(small) == 267  # the encoder's own smallest stream for that size: it codes nothing
    big = with_size(empty_image_stream(1024, 1024, pad_to=5499), 16384, 2048)
    assert len(big) in range(5499, 5503)
    for data in (small, big):
        bitstream.unpack(data)  # the container accepts it: the rule is the decoder's

    def no_work(*a, **k):
        raise AssertionError("the decoder started decoding")

    monkeypatch.setattr(siren_image, "unpack_update", no_work)
    for data in (small, big):
        err, dt, peak = _cheap(mscncodec.decode, data)
        assert isinstance(err, BitstreamError) and "cannot code" in str(err) and "0.005 bpp" in str(err)
        assert dt < 1.0 and peak < 2 * 1024 * 1024


def test_a_stream_at_the_minimum_decodes_and_a_larger_claim_is_refused():
    h, w = 512, 512
    need = bitstream.min_image_bytes(h, w)
    data = empty_image_stream(h, w, pad_to=need)
    assert need <= len(data) < need + 4
    out = mscncodec.decode(data)
    assert out.shape == (h, w, 3)
    np.testing.assert_array_equal(out, mscncodec.decode(empty_image_stream(h, w, pad_to=need + 100)))
    # the same bytes claiming more rows than they can pay for
    rows = 8 * len(data) // (w * bitstream.MIN_BPP) + 32
    with pytest.raises(BitstreamError, match="cannot code"):
        mscncodec.decode(with_size(data, int(rows), w))


def test_every_image_stream_the_test_suite_encodes_is_far_above_the_rule(small_stream):
    _, data = small_stream
    h, w = 40, 48
    assert len(data) > 20 * bitstream.min_image_bytes(h, w)


def test_siren_target_under_the_rule_is_a_rate_error_naming_it(monkeypatch):
    """For a 768x512 image the rule (246 bytes) is above the empty update (159 bytes): a 200-byte target is
    refused before fitting, naming the rule, instead of writing a stream no decoder accepts."""
    def no_fitting(*a, **k):
        raise AssertionError("fitted before refusing")

    monkeypatch.setattr(siren_image, "fit_and_pack", no_fitting)
    img = np.full((512, 768, 3), 120, np.uint8)
    with pytest.raises(RateError) as ei:
        image_codec.encode_image(img, target_bytes=200, model=PROVISIONAL, effort="fast")
    msg = str(ei.value)
    assert "(246 bytes)" in msg and "0.005 bpp" in msg and "768x512" in msg


@pytest.fixture()
def tiny_grid_models(env) -> Path:
    from mscncodec.families.grid2 import config as grid2
    from mscncodec.families.grid2.model import fresh_grid2_model

    d = Path(env["MSCN_MODELS"])
    d.mkdir()
    fresh_grid2_model(grid2.Grid2Config(levels=3, hidden=(8,), arm_hidden=6, analysis=4), name="tiny-grid2").save(
        d / "tiny-grid2.pt")
    return d


@pytest.mark.parametrize("arch", ["grid2"])
def test_grid_targets_under_the_rule_are_rate_errors_naming_it(tiny_grid_models, monkeypatch, arch):
    from mscncodec.families.grid2 import refine as g2refine

    def no_fitting(*a, **k):
        raise AssertionError("fitted before refusing")

    for mod, name in ((g2refine, "refine"), (g2refine, "Adam")):
        monkeypatch.setattr(mod, name, no_fitting)
    img = np.full((512, 768, 3), 120, np.uint8)
    with pytest.raises(RateError) as ei:
        image_codec.encode_image(img, target_bytes=200, arch=arch, effort="fast")
    assert "(246 bytes)" in str(ei.value) and "0.005 bpp" in str(ei.value)


def test_the_encoder_checks_its_own_output_against_the_rule(monkeypatch):
    """Whatever a family returns, a stream under the rule is never handed out (RateError)."""
    from mscncodec.container import bitstream as bs

    img = synthetic_image(32, 32, seed=4)
    monkeypatch.setattr(bs, "MIN_BPP", 1000.0)  # a rule no stream of this image can meet
    with pytest.raises(RateError, match="under the format's minimum"):
        image_codec.encode_image(img, model=PROVISIONAL, effort="fast", steps=1, quality=10)


# ---------------------------------------------------------------- max_pixels

def test_decode_max_pixels_refuses_before_decoding(small_stream, monkeypatch):
    img, data = small_stream
    n = img.shape[0] * img.shape[1]
    assert mscncodec.decode(data, max_pixels=n).shape[:2] == img.shape[:2]

    def no_work(*a, **k):
        raise AssertionError("the decoder started decoding")

    monkeypatch.setattr(siren_image, "unpack_update", no_work)
    with pytest.raises(LimitError, match=f"{n} pixels.*limit of {n - 1}"):
        mscncodec.decode(data, max_pixels=n - 1)
    for bad in (0, -5, 2.5, "10", True):
        with pytest.raises(MscnError, match="max_pixels must be a positive integer"):
            mscncodec.decode(data, max_pixels=bad)


def test_encode_max_pixels_refuses_from_the_file_header(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    Image.fromarray(synthetic_image(30, 40, seed=1)).save(p)

    def no_pixels(*a, **k):
        raise AssertionError("the image's pixels were decoded")

    with monkeypatch.context() as mp:
        mp.setattr(imod, "_from_pil", no_pixels)
        with pytest.raises(LimitError, match="40x30 has 1200 pixels, more than the limit of 1199"):
            mscncodec.encode(p, max_pixels=1199, model=PROVISIONAL, effort="fast", steps=1)
        with pytest.raises(LimitError):  # the byte-target path loads the image first
            mscncodec.encode(p, max_pixels=1199, target_bytes=500, model=PROVISIONAL, effort="fast", steps=1)
    with pytest.raises(LimitError):  # an array too
        mscncodec.encode(synthetic_image(30, 40, seed=1), max_pixels=1199, model=PROVISIONAL)
    assert mscncodec.decode(mscncodec.encode(p, max_pixels=1200, model=PROVISIONAL, effort="fast", steps=1,
                                             quality=10)).shape == (30, 40, 3)


def _one_line(r, code: int, words: str) -> None:
    assert r.exit_code == code, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mscn: error:") and words in lines[0], r.stderr
    assert r.stdout == "" and "Traceback" not in r.output


def test_cli_max_pixels(tmp_path):
    runner = CliRunner()
    Image.fromarray(synthetic_image(30, 40, seed=1)).save(tmp_path / "a.png")
    fast = ["--model", PROVISIONAL, "--effort", "fast", "--steps", "1", "-q"]
    r = runner.invoke(main, ["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.mscn"), "--max-pixels", "1000",
                             *fast])
    _one_line(r, LimitError.exit_code, "more than the limit of 1000")
    assert not (tmp_path / "a.mscn").exists()
    assert runner.invoke(main, ["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.mscn"), *fast]).exit_code == 0
    r = runner.invoke(main, ["decode", str(tmp_path / "a.mscn"), "-o", str(tmp_path / "a2.png"), "--max-pixels", "1199"])
    _one_line(r, 5, "(1200 pixels), more than the limit of 1199")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mscn", "a.png"]
    r = runner.invoke(main, ["decode", str(tmp_path / "a.mscn"), "-o", str(tmp_path / "a2.png"), "--max-pixels", "1200"])
    assert r.exit_code == 0, r.output


def test_cli_refuses_a_crafted_claim_in_one_line(tmp_path):
    (tmp_path / "x.mscn").write_bytes(empty_image_stream(1024, 1024))
    r = CliRunner().invoke(main, ["decode", str(tmp_path / "x.mscn"), "-o", str(tmp_path / "x.png")])
    _one_line(r, BitstreamError.exit_code, "cannot code a 1024x1024 image")
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------- max_voxels (meshes: checked in api, not the codec)

def _sphere() -> mmod.Mesh:
    tm = trimesh.creation.icosphere(subdivisions=2, radius=2.0)
    return mmod.Mesh(np.asarray(tm.vertices), np.asarray(tm.faces, np.int64))


def mesh_stream(resolution: int) -> bytes:
    """A valid mesh stream (zero update of the plain SDF init) whose default decoding grid is `resolution`."""
    m = load_model(SDF)
    header = {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": 2, "arch": 1,
              "model_id": m.model_id, "resolution": resolution, "center_x": 0.0, "center_y": 0.0,
              "center_z": 0.0, "scale": 1.0}
    zeros = {k: np.zeros((1, int(np.prod(s))), np.int32) for k, s in m.cfg.update_shapes().items()}
    return bitstream.pack(header, pack_update(m, zeros, {k: 0 for k in zeros}))


@pytest.fixture()
def fake_mesh_codec(monkeypatch) -> list:
    """Record what reaches the mesh codec instead of running it."""
    calls = []
    monkeypatch.setattr(mesh_codec, "decode_mesh", lambda data, **kw: calls.append(("decode", kw)) or _sphere())
    monkeypatch.setattr(mesh_codec, "encode_mesh", lambda src, **kw: calls.append(("encode", kw)) or b"MSCN")
    return calls


def test_decode_at_1024_cubed_is_refused_unless_allowed(fake_mesh_codec):
    data = mesh_stream(1024)
    with pytest.raises(LimitError, match=r"1024\^3 = 1073741824 samples exceeds the limit of 134217728"):
        mscncodec.decode(data)
    with pytest.raises(LimitError):
        mscncodec.decode(mesh_stream(600))
    assert fake_mesh_codec == []  # refused before the codec was called
    mscncodec.decode(data, resolution=512)  # 512^3 is the default bound, allowed
    mscncodec.decode(data, max_voxels=1024**3)  # allowed by the API's bound (the real codec then bounds a stored
    # grid by the stream's length too: tests/test_decode_bounds.py)
    with pytest.raises(LimitError, match=r"64\^3"):
        mscncodec.decode(data, resolution=64, max_voxels=64**3 - 1)
    mscncodec.decode(data, resolution=32, max_pixels=1)  # the image limit does not concern a mesh
    assert fake_mesh_codec == [("decode", {"resolution": 512}), ("decode", {}), ("decode", {"resolution": 32})]
    with pytest.raises(MscnError, match=r"resolution must be in \[8, 1024\]"):
        mscncodec.decode(data, resolution=2000)


def test_encode_resolution_is_bounded_too(fake_mesh_codec):
    with pytest.raises(LimitError, match=r"1024\^3"):
        mscncodec.encode(_sphere(), resolution=1024)
    assert fake_mesh_codec == []
    mscncodec.encode(_sphere(), resolution=1024, max_voxels=1024**3)
    mscncodec.encode(_sphere(), max_voxels=128**3)  # the default grid, 128
    with pytest.raises(LimitError, match=r"128\^3"):
        mscncodec.encode(_sphere(), max_voxels=128**3 - 1)
    assert [c[0] for c in fake_mesh_codec] == ["encode", "encode"]


def test_image_limit_ignores_max_voxels(small_stream):
    img, data = small_stream
    assert mscncodec.decode(data, max_voxels=1).shape[:2] == img.shape[:2]


def test_cli_max_voxels(tmp_path, fake_mesh_codec):
    runner = CliRunner()
    (tmp_path / "m.mscn").write_bytes(mesh_stream(1024))
    r = runner.invoke(main, ["decode", str(tmp_path / "m.mscn"), "-o", str(tmp_path / "m.ply")])
    _one_line(r, LimitError.exit_code, "exceeds the limit of 134217728")
    assert not (tmp_path / "m.ply").exists()
    r = runner.invoke(main, ["decode", str(tmp_path / "m.mscn"), "-o", str(tmp_path / "m.ply"),
                             "--max-voxels", str(1024**3)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["decode", str(tmp_path / "m.mscn"), "-o", str(tmp_path / "m2.ply"), "--resolution", "256"])
    assert r.exit_code == 0, r.output
    trimesh.creation.icosphere(subdivisions=1).export(tmp_path / "s.obj")
    r = runner.invoke(main, ["encode", str(tmp_path / "s.obj"), "-o", str(tmp_path / "s.mscn"), "--resolution", "1024"])
    _one_line(r, LimitError.exit_code, "1024^3")
    assert not (tmp_path / "s.mscn").exists()


# ---------------------------------------------------------------- memory of a large legitimate decode

def test_siren_decode_memory_no_longer_scales_with_a_2048_patch_chunk(tmp_path):
    """A 1024x1024 SIREN stream at the density minimum, decoded in a fresh process: the peak RSS grows by
    less than 500 MB (it grew by 1.3 GB when 2048 patches were rendered at once; now ~0.15 GB)."""
    data = empty_image_stream(1024, 1024, pad_to=bitstream.min_image_bytes(1024, 1024))
    (tmp_path / "x.mscn").write_bytes(data)
    code = f"""
import json, sys, resource
import torch
torch.set_num_threads(1)
from mscncodec.modalities.image_codec import decode
from mscncodec.models import load_model
load_model({PROVISIONAL!r})
data = open({str(tmp_path / 'x.mscn')!r}, 'rb').read()
def kb(key):
    return int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1])
before = kb('VmRSS')
out = decode(data)
print(json.dumps({{"shape": list(out.shape), "growth_mb": (kb('VmHWM') - before) / 1024}}))
"""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc/self/status (Linux)")
    env = dict(os.environ, MSCN_THREADS="1")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["shape"] == [1024, 1024, 3]
    assert r["growth_mb"] < 500, r
