"""The GPU encode path (issue 28): grid2's fit runs on a device, the exact coding on the CPU, so a stream
decodes bit-exactly on any CPU. Here the device path runs forced onto the CPU (a device copy of the model,
as a GPU encode makes); the CUDA test runs only where torch sees a GPU (a lent machine)."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import synthetic_image
from grid2_testing import CFG, FAST, H, W

from mscncodec import families
from mscncodec._runtime import resolve_device
from mscncodec.errors import MscnError
from mscncodec.families.grid2 import encoder as grid2codec
from mscncodec.families.grid2 import frame
from mscncodec.families.grid2 import refine as refinement
from mscncodec.families.grid2.model import fresh_grid2_model
from mscncodec.families.grid2.refine import PRESETS, SOFT, STE
from mscncodec.models import load_model, routing
from mscncodec.modalities.image_codec import decode, encode_image, image_header


@pytest.fixture(scope="module")
def g2(isolated_models) -> str:
    fresh_grid2_model(CFG, name="g2d", seed=0).save(isolated_models / "g2d.pt")
    return "g2d"


def _encode(name: str, img: np.ndarray, device, **kw) -> tuple[bytes, dict]:
    """The family's encoder directly (as the image codec calls it), with the reconstruction asked for."""
    m = load_model(name)
    h, w, _ = img.shape
    torch.manual_seed(0)
    return grid2codec.encode(m, img, image_header(m, h, w, 3), bpp=kw.pop("bpp", None), quality=kw.pop("quality", None),
                             device=device, progress=False, reconstruct=True, **kw)


@pytest.fixture()
def forced_copy(monkeypatch):
    """The device path with a "device" that is the CPU: on_device always copies (as a GPU encode does), and
    every model the fit gets is recorded."""
    fits = []
    real = frame.on_device

    def copying(model, device):
        out = real(model, device)
        if out is model:
            out = replace(model, theta={k: v.clone() for k, v in model.theta.items()},
                          analysis={k: v.clone() for k, v in model.analysis.items()})
        fits.append(out)
        return out

    monkeypatch.setattr(frame, "on_device", copying)
    return fits


@pytest.mark.parametrize("variant", ["", "+dense"])
def test_the_device_path_forced_to_the_cpu_writes_the_plain_encodes_bytes(g2, variant, forced_copy):
    """Through the device plumbing (a torch.device passed explicitly, the fit on a copy of the model) the stream
    is the plain CPU encode's byte for byte, the cached model is untouched, and the stream decodes on the CPU to
    the encoder's own reconstruction (its symbols and decoder parameters, rendered on the CPU)."""
    name = g2 + variant
    img = synthetic_image(H, W, seed=4)
    plain = encode_image(img, bpp=3.0, model=name, **FAST)
    theta = {k: v.clone() for k, v in load_model(name).theta.items()}
    data, info = _encode(name, img, torch.device("cpu"), bpp=3.0, **FAST)
    assert data == plain
    assert forced_copy and all(f is not load_model(name) for f in forced_copy)
    assert all(torch.equal(theta[k], v) for k, v in load_model(name).theta.items())
    assert np.array_equal(decode(data), info["reconstruction"])
    assert encode_image(img, bpp=3.0, model=name, device="cpu", **FAST) == plain  # the API's keyword


def test_a_tiled_encode_through_the_device_path_writes_the_same_bytes(g2, forced_copy, monkeypatch):
    """A big image (TILED_PIXELS lowered) refined tile by tile: the tiles' passes follow the frame's device."""
    from mscncodec.families.grid2 import tiles

    for k, v in {"TILED_PIXELS": 4000, "TILE": 32, "HALO": 8, "SYNTH_HALO": 16}.items():
        monkeypatch.setattr(tiles, k, v)
    img = synthetic_image(72, 96, seed=3)
    plain = encode_image(img, bpp=3.0, model=g2, **FAST)
    data, info = _encode(g2, img, torch.device("cpu"), bpp=3.0, **FAST)
    assert data == plain and forced_copy
    assert np.array_equal(decode(data), info["reconstruction"])


def test_the_reconstruction_is_what_a_quality_encode_decodes_to(g2):
    img = synthetic_image(H, W, seed=6)
    data, info = _encode(g2 + "+dense", img, "cpu", quality=70, **FAST)
    assert np.array_equal(decode(data), info["reconstruction"])
    assert "reconstruction" not in grid2codec.encode(load_model(g2), img, image_header(load_model(g2), H, W, 3),
                                                     bpp=None, quality=70, progress=False, **FAST)[1]


def test_the_reconstruction_follows_a_dead_zone_the_size_fit_took(g2, monkeypatch):
    """The size fit returns one of many packs (steps, dead zones): the reconstruction is that one's."""
    from mscncodec.families.grid2 import rate_control

    taken = []

    def zeroing(pack, magnitudes, base_idx, target, mse=None):
        i = next(i for i in range(base_idx - 8, 256) if magnitudes(i).size)  # a finer step where one zeroes
        mags = magnitudes(i)
        dz = float(np.nextafter(mags[len(mags) // 2], np.inf))  # half the candidates zeroed
        taken.append(dz)
        return pack(i, dz), i, 0

    monkeypatch.setattr(rate_control, "fit_size", zeroing)
    img = synthetic_image(H, W, seed=4)
    plain, _ = _encode(g2, img, "cpu", quality=60, **FAST)
    data, info = _encode(g2, img, "cpu", bpp=1.5, **FAST)
    assert taken and taken[0] > 0.5 and data != plain
    assert np.array_equal(decode(data), info["reconstruction"])


def test_devices_resolve():
    assert resolve_device(None) == torch.device("cpu") == resolve_device("cpu") == resolve_device("CPU")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(MscnError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(MscnError, match="no CUDA GPU"):
            resolve_device("cuda")
        with pytest.raises(MscnError, match="no CUDA GPU"):  # before the image is read or a model loaded
            encode_image("does-not-exist.png", bpp=1.0, device="cuda")


def test_the_device_copy_leaves_a_cpu_model_alone():
    m = fresh_grid2_model(CFG, name="c", seed=0)
    assert frame.on_device(m, "cpu") is m
    assert frame.on_device(m, torch.device("cpu")) is m


# ---------------------------------------------------------------- placebo

def test_placebo_is_a_long_c3_style_preset():
    p = PRESETS["placebo"]
    assert (p.steps, p.update_steps) == (10_000, 10_000)
    soft, hard = p.phases
    assert (soft.quantiser, hard.quantiser) == (SOFT, STE) and soft.t1 < soft.t0 and hard.lr < soft.lr
    assert p.long_latent_lr < p.latent_lr <= PRESETS["max"].latent_lr and p.delta_lr < PRESETS["max"].delta_lr
    assert grid2codec.EFFORT["placebo"] == grid2codec.UPDATE_EFFORT["placebo"] == 10_000
    assert str(p).splitlines()[0] == "Preset 'placebo': 10000 steps, 10000 with a decoder update"


def test_placebo_routes_as_max_unless_routing_names_it():
    assert routing("grid2", "placebo") == routing("grid2", "max")


def test_placebo_encodes_with_its_steps_overridden(g2):
    img = synthetic_image(H, W, seed=7)
    data = encode_image(img, bpp=3.0, model=g2 + "+dense", effort="placebo", steps=4)
    assert len(data) <= 3.0 * H * W / 8 and decode(data).shape == img.shape


def test_placebo_on_the_cpu_warns_once_and_works(g2, monkeypatch, caplog):
    """The preset's 10k steps on the CPU: one warning line, then the encode (its refinements cut to 2 steps)."""
    asked, real = [], refinement.refine

    def short(model, x, y0, lam, step, n_steps, *a, **k):
        asked.append(n_steps)
        return real(model, x, y0, lam, step, min(n_steps, 2), *a, **k)

    monkeypatch.setattr(refinement, "refine", short)
    with caplog.at_level(logging.WARNING, logger="mscncodec"):
        data = encode_image(synthetic_image(H, W, seed=8), bpp=3.0, model=g2, effort="placebo", device="cpu")
    warnings = [r for r in caplog.records if "placebo" in r.getMessage()]
    assert len(warnings) == 1 and "hours" in warnings[0].getMessage() and "\n" not in warnings[0].getMessage()
    assert set(asked) == {10_000} and data


def test_the_siren_family_refuses_placebo_in_one_line():
    with pytest.raises(MscnError, match="grid2's"):
        encode_image(synthetic_image(32, 32), bpp=1.0, model="random-w32d5", effort="placebo")
    assert families.by_name("siren")  # (the family that fits on the CPU whatever --device says)


# ---------------------------------------------------------------- a lent GPU

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (a lent device machine)")
@pytest.mark.parametrize("variant", ["", "+dense", "tiled"])
def test_a_cuda_encode_decodes_on_the_cpu_to_its_exact_reconstruction(g2, variant, monkeypatch):
    img = synthetic_image(H, W, seed=4)
    if variant == "tiled":
        from mscncodec.families.grid2 import tiles

        for k, v in {"TILED_PIXELS": 4000, "TILE": 32, "HALO": 8, "SYNTH_HALO": 16}.items():
            monkeypatch.setattr(tiles, k, v)
        img, variant = synthetic_image(72, 96, seed=3), ""
    name = g2 + variant
    data, info = _encode(name, img, "cuda", bpp=3.0, **FAST)
    assert all(v.device.type == "cpu" for v in load_model(name).theta.values())
    assert np.array_equal(decode(data), info["reconstruction"])
    assert len(data) <= 3.0 * img.shape[0] * img.shape[1] / 8
