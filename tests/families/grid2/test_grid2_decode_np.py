"""The torch-free grid2 decode (decode_np.py, synthesis_np.py; issue 28): the same models, ids and pixels as
the torch decoder, and `mscn decode` of a grid2 image never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mscncodec
from mscncodec import families, models
from mscncodec.container import bitstream
from mscncodec.families.grid2 import decode_np, decoder, synthesis, synthesis_np, tiles, upsampling
from mscncodec.families.grid2.arm import lambda_fixed
from mscncodec.modalities import image_codec

from tests.conftest import synthetic_image

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
FAMILY = families.by_name("grid2")


def _grid2_streams() -> list[Path]:
    out = []
    for p in sorted(GOLDEN.glob("*.mscn")):
        header, _ = bitstream.unpack(p.read_bytes())
        if header["modality"] == bitstream.modality_code("image") and header["arch"] == FAMILY.code:
            out.append(p)
    return out


def _both(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(the torch decoder's pixels, the numpy decoder's) of a grid2 image stream."""
    header, sections = bitstream.unpack(data)
    arrays = models.find_arrays_by_id(header["model_id"], FAMILY)
    assert arrays is not None
    return image_codec.decode(data), decode_np.decode(arrays, header, sections)


@pytest.fixture()
def shipped(monkeypatch):
    monkeypatch.delenv("MSCN_MODELS", raising=False)
    monkeypatch.delenv("MSCN_DEFAULT_MODEL", raising=False)
    monkeypatch.setattr(models, "_cache", {})


def test_there_are_grid2_golden_streams():
    assert len(_grid2_streams()) >= 3  # plain, quality mode, +dense update, routed


@pytest.mark.parametrize("path", _grid2_streams(), ids=lambda p: p.stem)
def test_numpy_decode_equals_the_torch_decode_on_golden_streams(shipped, path):
    t, n = _both(path.read_bytes())
    assert n.dtype == np.uint8 and n.shape == t.shape and np.array_equal(n, t)


def test_numpy_decode_equals_the_torch_decode_on_a_fresh_encode(shipped):
    img = synthetic_image(80, 112, seed=3)  # not a multiple of the alignment: the crop too
    data = mscncodec.encode(img, bpp=1.0, effort="fast")
    t, n = _both(data)
    assert np.array_equal(n, t)
    assert np.array_equal(mscncodec.decode(data), t)  # the API takes the numpy path


def test_every_shipped_grid2_model_and_variant_has_the_torch_models_id(shipped):
    twins = {m.name: m for m in models.array_models(FAMILY)}
    shipped_grid2 = [m for m in models.list_models() if m.arch == "grid2"]
    assert sorted(twins) == sorted(m.name for m in shipped_grid2)
    for m in shipped_grid2:
        for kind in FAMILY.variants + FAMILY.decode_variants:
            assert twins[m.name].variant(kind).model_id == m.variant(kind).model_id, (m.name, kind)
        assert all(np.array_equal(twins[m.name].theta[k], v.numpy()) for k, v in m.theta.items())


def test_synthesis_twin_is_bit_exact_on_random_latents_and_an_update(shipped):
    """float32 bits, before the uint8 rounding: each layer rounds as torch's does (synthesis_np's docstring)."""
    m = models.load_model("grid2-l7")
    rng = np.random.default_rng(0)
    p = {k: v + torch.from_numpy(rng.normal(0, 0.01, v.shape).astype(np.float32)) for k, v in m.theta.items()}
    lat = [(rng.integers(-4, 5, (128 >> l, 192 >> l)) * np.float32(0.7)).astype(np.float32) for l in range(7)]
    with torch.no_grad():
        want = synthesis.synthesis(m.cfg, p, [torch.from_numpy(v)[None, None] for v in lat])[0].numpy()
        up = upsampling.upsample_all(m.cfg, p, [torch.from_numpy(v)[None, None] for v in lat])[0].numpy()
    pn = {k: v.numpy() for k, v in p.items()}
    assert np.array_equal(synthesis_np.upsample_all(m.cfg, pn, lat), up)
    assert np.array_equal(synthesis_np.synthesis(m.cfg, pn, lat), want)


def test_the_exact_arm_reads_lambda_without_torch_as_with_it():
    from mscncodec.coding.latents import lambda_feature, lambda_value

    for i in range(256):
        lam = lambda_value(i)
        with_torch = float(np.round(float(lambda_feature(torch.tensor(lam, dtype=torch.float64))) * 2.0**8))
        assert lambda_fixed(lam) == with_torch


def test_whole_frame_bound_is_the_tiling_bound():
    assert decode_np.WHOLE_FRAME_PIXELS == tiles.TILED_PIXELS


def test_the_torch_decoder_is_unchanged_for_other_families_and_big_frames(shipped):
    siren = next(p for p in sorted(GOLDEN.glob("image-siren-*.mscn")))
    data = siren.read_bytes()
    header, _ = bitstream.unpack(data)
    assert mscncodec.api.decode_without_torch(data) is None
    big = dict(header, height=1024, width=1088)  # over the tiling bound: left to torch
    arrays = models.find_arrays_by_id(bitstream.unpack(_grid2_streams()[0].read_bytes())[0]["model_id"], FAMILY)
    assert decode_np.decode(arrays, big, {}) is None
    assert decoder.decode  # the torch decoder stays the registry's


_NO_TORCH = """
import sys
from mscncodec.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    assert not e.code, e.code
assert "torch" not in sys.modules, "torch was imported"
"""


@pytest.mark.parametrize("path", _grid2_streams()[:2], ids=lambda p: p.stem)
def test_mscn_decode_of_a_grid2_image_imports_no_torch(tmp_path, path):
    out = tmp_path / "out.png"
    r = subprocess.run([sys.executable, "-c", _NO_TORCH, "decode", str(path), "-o", str(out)],
                       capture_output=True, text=True, timeout=120, env={"MSCN_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    from PIL import Image

    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im), image_codec.decode(path.read_bytes()))


def test_mscn_decode_verbose_imports_no_torch(tmp_path):
    """The summary line (the image modality's hooks in image_codec.py) needs no torch either."""
    path = _grid2_streams()[0]
    r = subprocess.run([sys.executable, "-c", _NO_TORCH, "decode", str(path), "-o", str(tmp_path / "o.png"), "-v"],
                       capture_output=True, text=True, timeout=120, env={"MSCN_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "decoded" in r.stdout


def test_mscn_decode_of_a_siren_image_still_uses_torch(tmp_path):
    path = next(p for p in sorted(GOLDEN.glob("image-siren-*.mscn")))
    code = _NO_TORCH.replace('assert "torch" not in', 'assert "torch" in')
    r = subprocess.run([sys.executable, "-c", code, "decode", str(path), "-o", str(tmp_path / "o.png")],
                       capture_output=True, text=True, timeout=120, env={"MSCN_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
