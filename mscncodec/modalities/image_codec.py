"""The image codec: picks the model and family for a target, hands the image to that family's
encoder (SIREN patches, or latent grids), and decodes any image stream back to pixels.

Image-specific here: the patch grid the SIREN family sees (one group per 32x32 patch), the rate
target in bits per pixel, the quality knob, channel restoration, and the encode report (PSNR of the
decoded file).
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import torch

from mscncodec._runtime import show_progress
from mscncodec.container import bitstream
from mscncodec.families.siren import network as siren
from mscncodec.errors import BitstreamError, LimitError, MscnError, RateError, below_minimum
from mscncodec.modalities import image as imod
from mscncodec.models import Model, base_name, default_model, find_by_id, load_model, require_modality, stream_model
from mscncodec.coding.update import dequantise_all, empty_update, unpack_update
from mscncodec.families.siren.encoder import BITS_PER_ENTRY, EFFORT, OPEN_HEADROOM, fit_and_pack

# Patches evaluated at once when rendering (32 patches of 32x32 = 32K pixels). With 2048, a 1024x1024
# image was one chunk: peak RSS 1.55 GB and 10.5 s for its decode; with 32, 0.39 GB and 1.1 s (whole
# process, one thread; the decoded pixels are identical).
DECODE_CHUNK = 32




# ---------------------------------------------------------------- update <-> sections







def render(model: Model, delta: dict[str, torch.Tensor], n_groups: int) -> torch.Tensor:
    """Evaluate all patches in chunks (bounded memory), -> (G, P*P, 3) clamped to [-1, 1]."""
    coords = imod.grid_coords(model.patch)
    outs = []
    with torch.no_grad():
        for a in range(0, n_groups, DECODE_CHUNK):
            d = {k: v[a : a + DECODE_CHUNK] for k, v in delta.items()}
            n = min(DECODE_CHUNK, n_groups - a)
            outs.append(siren.forward(model.cfg, model.theta, d, coords, n).clamp_(-1, 1))
    return torch.cat(outs)


# ---------------------------------------------------------------- encode













def nominal_bpp(quality: int) -> float:
    """The nominal rate of a quality setting (0 -> 0.05, 50 -> 0.28, 100 -> 1.6 bpp).

    It picks the model and the encode-time L0 weight; the file size then follows from
    the quantisation step (no rate search), so real sizes differ: quality 50 gave
    0.9 bpp on examples/example.png. Use --bpp when the size matters.
    """
    return 0.05 * 2.0 ** (quality / 20)


def encode_lambda(bpp: float) -> float:
    """L0 weight for encode-time fitting at a target rate (tuned on held-out training photos).

    The loss is MSE (signal in [-1, 1]) + lam * E[open entries] / pixels-per-group;
    lower rates need proportionally sparser updates, hence lam ~ 1 / bpp.
    """
    return LAMBDA_RATE / bpp


LAMBDA_RATE = 0.2


def _pick_model(model, bpp: float | None, from_scratch: bool, arch: str | None = None, effort: str | None = None,
                shape: tuple[int, int] | None = None):
    if model is not None and not isinstance(model, str):
        return model  # a Model or GridModel object
    if from_scratch:
        return load_model("random-w32d5")
    m = load_model(model) if model else default_model(bpp, arch, effort)
    if not model and shape and m.arch == "grid2" and m.sends_update:
        from mscncodec.families.grid2.encoder import routed_update_fits

        if not routed_update_fits(m.cfg, *shape, effort):  # too small for the update to pay, or so big it
            m = load_model(base_name(m.name))               # must go tile by tile: the base model
    require_modality(m, "image")
    if arch is not None and m.arch != arch:
        raise MscnError(f"model {m.name} is a {m.arch} model, not {arch}")
    return m


def routed_model(bpp: float, arch: str | None, effort: str, shape: tuple[int, int]):
    """The model `encode_image` uses without --model for this rate, effort and image size (H, W)."""
    return _pick_model(None, bpp, False, arch, effort, shape)


def encode_image(
    image: str | Path | np.ndarray,
    *,
    bpp: float | None = None,
    quality: int | None = None,
    model: str | Model | None = None,
    steps: int | None = None,
    effort: str = "default",
    from_scratch: bool = False,
    lam: float | None = None,
    progress: bool = False,
    return_report: bool = False,
    arch: str | None = None,
    target_bytes: int | None = None,
    max_pixels: int | None = None,
):
    """Encode an image to .mscn bytes.

    bpp: target rate (real file size, at or just under); quality: 0-100 instead of a
    rate target (default 50 when neither is given). from_scratch: COIN-style
    baseline, a provisional SIREN init fitted with the same step budget. arch: "siren"
    or "grid" picks that family's default model (default: models/routing.json's). max_pixels: refuse a
    larger image (LimitError) from its file header, before its pixels are decoded or any work is done.
    """
    if target_bytes is not None:
        if bpp is not None:
            raise MscnError("give either a byte target or bpp, not both")
        if not (isinstance(target_bytes, (int, np.integer)) and target_bytes > 0):
            raise MscnError(f"the byte target must be a positive integer, got {target_bytes}")
        image = imod.load(image, max_pixels)[0] if not isinstance(image, np.ndarray) else image
        h, w = image.shape[:2]
        bpp = (target_bytes + 0.5) * 8 / (h * w)  # floor(bpp * h * w / 8) == target_bytes
    if bpp is not None and quality is not None:
        raise MscnError("give either bpp or quality, not both")
    if bpp is not None and not (np.isfinite(bpp) and bpp > 0):
        raise MscnError(f"bpp must be a positive number, got {bpp}")
    if effort not in EFFORT:
        raise MscnError(f"unknown effort {effort!r} (fast, default, max)")
    with torch.random.fork_rng():  # deterministic: the same input and options give the same bytes
        torch.manual_seed(0)
        return _encode(image, bpp, quality, model, steps, effort, from_scratch, lam, progress, return_report, arch,
                       max_pixels)


def _encode(image, bpp, quality, model, steps, effort, from_scratch, lam, progress, return_report, arch=None,
            max_pixels=None):
    t0 = time.perf_counter()
    progress = show_progress(progress)  # the SIREN fit's bars (families/siren) take the flag as given
    rgb, channels = imod.load(image, max_pixels)
    rate = bpp if bpp is not None else nominal_bpp(50 if quality is None else quality)  # what we aim at
    m = _pick_model(model, rate, from_scratch, arch, effort, rgb.shape[:2])
    if m.arch in ("grid", "grid2"):
        from mscncodec.families.grid2 import encoder as grid2codec
        from mscncodec.families.grid import encoder as gridcodec

        fam = gridcodec if m.arch == "grid" else grid2codec
        data, info = fam.encode(m, rgb, channels, bpp=bpp, quality=quality, steps=steps, effort=effort,
                                      progress=progress)
        _check_density(data, rgb.shape[0], rgb.shape[1])
        return _finish(data, rgb, channels, m, t0, info["open"], info["note"]) if return_report else data
    h, w, _ = rgb.shape
    p = m.patch
    target = imod.to_patches(rgb, p)
    coords = imod.grid_coords(p)
    header = {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": 1, "arch": 1,
              "model_id": m.model_id, "height": h, "width": w, "channels": channels, "patch": p}

    lam = encode_lambda(rate) if lam is None else lam
    target_bytes = int(np.floor(bpp * h * w / 8)) if bpp is not None else None
    if target_bytes is not None:  # refuse an unreachable size before fitting, not after
        floor, dense = _empty_update_bytes(m, header, target.shape[0]), bitstream.min_image_bytes(h, w)
        if target_bytes < max(floor, dense):
            raise below_minimum(bpp, target_bytes, w, h, max(floor, dense),
                                "at its coarsest setting (no update sent)" if floor >= dense else bitstream.DENSITY_NOTE)
    final, floor = fit_and_pack(m, coords, target, header, lam=lam, open_per_group=rate * p * p / BITS_PER_ENTRY * OPEN_HEADROOM,
                                target_bytes=target_bytes, quality=quality, effort=effort, steps=steps,
                                from_scratch=from_scratch, progress=progress)
    n_pix = h * w
    if final is None:
        raise below_minimum(bpp, target_bytes, w, h, floor, "at its coarsest setting")
    note = ""
    if target_bytes is not None and final.size < 0.95 * target_bytes:
        note = (f"target {bpp} bpp not reached: this model tops out at {8 * final.size / n_pix:.4f} bpp "
                f"for this image at effort '{effort}'")
    data = bitstream.pack(header, final.sections)
    _check_density(data, h, w)
    if not return_report:
        return data
    return _finish(data, rgb, channels, m, t0, int(sum((s != 0).sum() for s in final.symbols.values())), note)


def _check_density(data: bytes, h: int, w: int) -> None:
    """Never write a stream the decoder refuses (bitstream.MIN_BPP): a RateError instead."""
    need = bitstream.min_image_bytes(h, w)
    if len(data) < need:
        raise RateError(f"this {w}x{h} image codes to {len(data)} bytes ({8 * len(data) / (h * w):.4f} bpp), under the "
                        f"format's minimum of {bitstream.MIN_BPP} bpp ({need} bytes): ask for a higher rate or quality")


def _empty_update_bytes(m: Model, header: dict, n_groups: int) -> int:
    """Size of the stream that sends no update entry at all: the smallest a SIREN image stream can be."""
    return len(bitstream.pack(header, empty_update(m, n_groups)))


def _finish(data: bytes, rgb: np.ndarray, channels: int, m, t0: float, n_open: int, note: str) -> tuple[bytes, dict]:
    """The encode report: real size, PSNR of the decoded file, times."""
    t_enc = time.perf_counter() - t0
    t1 = time.perf_counter()
    out = decode(data)
    t_dec = time.perf_counter() - t1
    ref = imod.restore_channels(rgb, channels)
    n_pix = rgb.shape[0] * rgb.shape[1]
    report = {"bytes": len(data), "bpp": 8 * len(data) / n_pix, "psnr": imod.psnr(ref, out), "model": m.name,
              "arch": m.arch, "encode_s": t_enc, "decode_s": t_dec, "open": n_open, "note": note}
    return data, report


# ---------------------------------------------------------------- decode

def _model_for(header: dict) -> Model:
    m = stream_model(header, "image")
    if m.patch != header["patch"]:
        what = "alignment" if m.arch in ("grid", "grid2") else "patch"
        raise BitstreamError(f"corrupted .mscn file ({what} {header['patch']} does not match model {m.name})")
    return m


def decode(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """.mscn bytes -> H x W (x C) uint8 array (the original's channel count).

    Before anything is sized by the header: a stream too short for the pixels it claims is refused
    (bitstream.MIN_BPP, a BitstreamError), and so is an image of more than `max_pixels` pixels (a
    LimitError; default: the format's MAX_PIXELS)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MscnError("decode expects bytes")
    header, sections = bitstream.unpack(bytes(data))
    if header["modality"] != 1:
        raise BitstreamError(f"not an image stream (modality {bitstream.MODALITIES[header['modality']]}): "
                             "use mscncodec.decode")
    bitstream.check_image_density(header, len(data))
    limit_pixels(header, max_pixels)
    m = _model_for(header)
    if m.arch in ("grid", "grid2"):
        from mscncodec.families.grid2 import encoder as grid2codec
        from mscncodec.families.grid import encoder as gridcodec

        fam = gridcodec if m.arch == "grid" else grid2codec
        return imod.restore_channels(fam.decode(m, header, sections), header["channels"])
    h, w, p = header["height"], header["width"], header["patch"]
    gh, gw = imod.patch_grid(h, w, p)
    symbols, steps = unpack_update(m, sections, gh * gw)
    pred = render(m, dequantise_all(symbols, steps), gh * gw)
    return imod.restore_channels(imod.from_patches(pred, h, w, p), header["channels"])


def limit_pixels(header: dict, max_pixels: int | None) -> None:
    """A LimitError if an image stream's header claims more than max_pixels pixels."""
    h, w = header["height"], header["width"]
    if max_pixels is not None and h * w > max_pixels:
        raise LimitError(f"the stream holds a {w}x{h} image ({h * w} pixels), more than the limit of {max_pixels} "
                         "(raise --max-pixels / max_pixels to decode it)")


def describe(data: bytes) -> dict:
    """Header fields, per-section sizes and bpp (for `mscn info`)."""
    header, sections = bitstream.unpack(data)
    if header["modality"] != 1:
        raise BitstreamError(f"not an image stream (modality {bitstream.MODALITIES[header['modality']]})")
    d = bitstream.describe_header(header)
    m = find_by_id(header["model_id"])
    d["model"] = m.name if m else "(unknown to this decoder)"
    if m is not None and m.arch == "grid" and len(sections.get("GRID", b"")) == 2:
        from mscncodec.coding.latents import lambda_value
        from mscncodec.coding.latents import latent_step

        li, si = struct.unpack("<BB", sections["GRID"])
        d["lambda"] = f"{lambda_value(li):.3g} (index {li})"
        d["latent_step"] = f"{latent_step(si):.4g} (index {si})"
    if m is not None and m.arch == "grid2" and len(sections.get("GRD2", b"")) == 2:
        from mscncodec.coding.latents import lambda_value
        from mscncodec.coding.latents import latent_step

        li, si = struct.unpack("<BB", sections["GRD2"])
        d["lambda"] = f"{lambda_value(li):.3g} (index {li})"
        d["latent_step"] = f"{latent_step(si):.4g} (index {si})"
        d["update"] = "none (shared decoder)"
        if "QPRM" in sections:
            from mscncodec.coding.update import unpack_update

            try:
                sent = sum(int(np.count_nonzero(v)) for v in unpack_update(m, sections, 1)[0].values())
                total = sum(v.numel() for v in m.theta.values())
                d["update"] = f"{m.sparsity} update of the decoder: {sent} of {total} entries sent"
            except MscnError:
                d["update"] = f"{m.sparsity} update of the decoder (unreadable)"
    return {"header": d, "sections": bitstream.section_sizes(header, sections), "bytes": len(data), "bpp": 8 * len(data) / (header["height"] * header["width"])}
