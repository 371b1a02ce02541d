"""The image codec: picks the model (and so the family) for a target, builds the container header,
hands the pixels to that family's image encoder (``families.REGISTRY``), and decodes any image stream
back to pixels.

Image-specific here: the rate target in bits per pixel, the quality knob, the header's image fields,
channel restoration, the density rule, and the encode report (PSNR of the decoded file).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from mscncodec import families
from mscncodec._lazy import torch  # imported on first use: `mscn decode -v` reads only the summary hooks here
from mscncodec._runtime import resolve_device, show_progress
from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError, LimitError, ModelFloorError, MscnError, RateError
from mscncodec.modalities import by_name, image as imod
from mscncodec.models import base_name, default_model, find_by_id, load_model, require_modality, stream_model

log = logging.getLogger(__name__)

EFFORTS = ("fast", "default", "max", "placebo")  # placebo: grid2 only, for a GPU (10k refinement steps)
MODALITY = "image"


def _pick_model(model, bpp: float | None, from_scratch: bool, arch: str | None = None, effort: str | None = None,
                shape: tuple[int, int] | None = None):
    if model is not None and not isinstance(model, str):
        return model  # a model object
    if from_scratch:
        return load_model(by_name(MODALITY).provisional_model)
    m = load_model(model) if model else default_model(bpp, arch, effort)
    if not model and shape and not m.routable(*shape, effort):  # e.g. a decoder update too small to pay, or a
        m = load_model(base_name(m.name))                          # frame so big it must go tile by tile
    require_modality(m, MODALITY)
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
    model=None,
    steps: int | None = None,
    effort: str = "default",
    from_scratch: bool = False,
    lam: float | None = None,
    progress: bool = False,
    return_report: bool = False,
    arch: str | None = None,
    target_bytes: int | None = None,
    max_pixels: int | None = None,
    device=None,
):
    """Encode an image to .mscn bytes.

    bpp: target rate (real file size, at or just under); quality: 0-100 instead of a
    rate target (default 50 when neither is given). from_scratch: COIN-style
    baseline, a provisional SIREN init fitted with the same step budget. arch: a family name
    (``families.names(encodes="image")``) picks that family's routed model (default: weights/routing.json's).
    max_pixels: refuse a larger image (LimitError) from its file header, before its pixels are decoded or
    any work is done. device: where the family's fit runs, "cpu" (default: None), "cuda" or "auto"
    (``_runtime.resolve_device``; an MscnError before any work where CUDA is asked for and absent); the exact
    coding runs on the CPU, so the stream decodes bit-exactly on any CPU. The SIREN family fits on the CPU.
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
    if effort not in EFFORTS:
        raise MscnError(f"unknown effort {effort!r} ({', '.join(EFFORTS)})")
    device = resolve_device(device)
    with torch.random.fork_rng():  # deterministic: the same input and options give the same bytes
        torch.manual_seed(0)
        return _encode(image, bpp, quality, model, steps, effort, from_scratch, lam, progress, return_report, arch,
                       max_pixels, device)


def nominal_bpp(quality: int) -> float:
    """The rate a quality setting aims at when routing a model (0 -> 0.05, 50 -> 0.28, 100 -> 1.6 bpp)."""
    return 0.05 * 2.0 ** (quality / 20)


def image_header(m, h: int, w: int, channels: int) -> dict:
    """The container header of an image stream coded with model m."""
    return {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": bitstream.modality_code(MODALITY),
            "arch": families.of(m).code, "model_id": m.model_id, "height": h, "width": w, "channels": channels,
            "patch": m.patch}


def _encode(image, bpp, quality, model, steps, effort, from_scratch, lam, progress, return_report, arch=None,
            max_pixels=None, device=None):
    t0 = time.perf_counter()
    progress = show_progress(progress)
    rgb, channels = imod.load(image, max_pixels)
    rate = bpp if bpp is not None else nominal_bpp(50 if quality is None else quality)  # what routing aims at
    m = _pick_model(model, rate, from_scratch, arch, effort, rgb.shape[:2])
    h, w, _ = rgb.shape

    def encode_with(m):
        return families.of(m).encoder(MODALITY)(m, rgb, image_header(m, h, w, channels), bpp=bpp, quality=quality,
                                                rate=rate, steps=steps, effort=effort, progress=progress, lam=lam,
                                                from_scratch=from_scratch, device=device)

    if model is None and not from_scratch and bpp is not None:  # routed: a model that cannot reach the rate
        m, data, info = _encode_routed(m, encode_with, rgb, channels, bpp, effort)  # falls back to one that can
    else:
        data, info = encode_with(m)
    _check_density(data, h, w)
    return _finish(data, rgb, channels, m, t0, info["open"], info["note"]) if return_report else data


def fallback_models(m, effort: str, shape: tuple[int, int]) -> list:
    """The models a routed encode falls back to, in order, where the routed model `m` cannot reach the target
    or reaches it only strained (``info["strained"]``): the model its family routes at the lowest
    rates for this effort, then the one routed there for the efforts that name no route of their own (each with
    its plain base after it), where routable for this image size. Not `m`'s own base: a family's encoder drops a
    decoder update that does not fit itself (grid2's size fit), so the base would meet the same floor."""
    out, seen = [], {m.name, base_name(m.name)}
    for e in (effort, None):
        low = default_model(0.0, m.arch, e)
        for name in (low.name, base_name(low.name)):
            if name not in seen:
                seen.add(name)
                c = load_model(name)
                if c.modality == MODALITY and c.routable(*shape, effort):
                    out.append(c)
    return out


def _encode_routed(m, encode_with, rgb: np.ndarray, channels: int, bpp: float, effort: str) -> tuple:
    """(model, stream, info) of a routed encode: the routed model's, or, where its fixed costs keep it from the
    target (a ModelFloorError: the smallest stream it writes for this image is bigger) or it reaches the target
    only strained (``info["strained"]``: by cutting what its lambda cannot reach, e.g. a dead zone on every
    grid), the first of `fallback_models` that reaches it unstrained if it decodes better (else the
    best decoded). The switch is logged (MSCN_LOG=info) and said in the info's note, which the CLI prints."""
    h, w = rgb.shape[:2]
    try:
        data, info = encode_with(m)
    except ModelFloorError as e:
        data, info, err = None, None, e
        why = f"cannot reach {bpp:g} bpp on this {w}x{h} image (its smallest stream is {e.floor_bytes} bytes)"
    else:
        if not info.get("strained"):
            return m, data, info
        err = None
    psnr = None if data is None else _psnr(data, rgb, channels)
    if data is not None:
        why = f"reaches {bpp:g} bpp on this {w}x{h} image only strained ({info['strained']}: {psnr:.2f} dB)"
    for fb in fallback_models(m, effort, (h, w)):
        try:
            d2, i2 = encode_with(fb)
        except ModelFloorError:
            continue
        p2 = _psnr(d2, rgb, channels)
        if psnr is not None and p2 <= psnr:
            log.info("fallback %s decodes worse (%.2f dB) than routed %s (%.2f dB): kept", fb.name, p2, m.name, psnr)
            continue
        say = f"routed model {m.name} {why}: coded with {fb.name} ({p2:.2f} dB)"
        log.info("%s", say)
        data, info, m, psnr = d2, dict(i2, note="; ".join(n for n in (say, i2.get("note", "")) if n)), fb, p2
        if not i2.get("strained"):
            break
    if data is None:
        raise err
    return m, data, info


def _psnr(data: bytes, rgb: np.ndarray, channels: int) -> float:
    return imod.psnr(imod.restore_channels(rgb, channels), decode(data))


def _check_density(data: bytes, h: int, w: int) -> None:
    """Never write a stream the decoder refuses (bitstream.MIN_BPP): a RateError instead."""
    need = bitstream.min_image_bytes(h, w)
    if len(data) < need:
        raise RateError(f"this {w}x{h} image codes to {len(data)} bytes ({8 * len(data) / (h * w):.4f} bpp), under the "
                        f"format's minimum of {bitstream.MIN_BPP} bpp ({need} bytes): ask for a higher rate or quality")


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

def _model_for(header: dict):
    m = stream_model(header, MODALITY)
    if m.patch != header["patch"]:
        what = m.patch_field  # what the header's patch field means to this family
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
    if header["modality"] != bitstream.modality_code(MODALITY):
        raise BitstreamError(f"not an image stream (modality {bitstream.MODALITIES[header['modality']]}): "
                             "use mscncodec.decode")
    bitstream.check_image_density(header, len(data))
    limit_pixels(header, max_pixels)
    m = _model_for(header)
    return imod.restore_channels(families.of(m).decoder(MODALITY)(m, header, sections), header["channels"])


def limit_pixels(header: dict, max_pixels: int | None) -> None:
    """A LimitError if an image stream's header claims more than max_pixels pixels."""
    h, w = header["height"], header["width"]
    if max_pixels is not None and h * w > max_pixels:
        raise LimitError(f"the stream holds a {w}x{h} image ({h * w} pixels), more than the limit of {max_pixels} "
                         "(raise --max-pixels / max_pixels to decode it)")


def describe(data: bytes) -> dict:
    """Header fields, per-section sizes and bpp (for `mscn info`); the family adds what its sections hold."""
    header, sections = bitstream.unpack(data)
    if header["modality"] != bitstream.modality_code(MODALITY):
        raise BitstreamError(f"not an image stream (modality {bitstream.MODALITIES[header['modality']]})")
    d = bitstream.describe_header(header)
    m = find_by_id(header["model_id"])
    d["model"] = m.name if m else "(unknown to this decoder)"
    if m is not None and (extra := families.of(m).describer(MODALITY)) is not None:
        d.update(extra(m, sections))
    return {"header": d, "sections": bitstream.section_sizes(header, sections), "bytes": len(data),
            "bpp": 8 * len(data) / (header["height"] * header["width"])}


# ---------------------------------------------------------------- hooks (modalities.Modality): limits, summaries

def encode_limits(kw: dict, max_pixels: int, max_voxels: int) -> dict:
    """The options an image encode gets from the limits: the pixel bound, checked on the file's header."""
    return dict(kw, max_pixels=max_pixels)


def decode_limits(header: dict, kw: dict, max_pixels: int, max_voxels: int) -> dict:
    return dict(kw, max_pixels=max_pixels)


def encode_summary(report: dict) -> str:
    return (f"{report['bytes']} bytes, {report['bpp']:.4f} bpp, PSNR {report['psnr']:.2f} dB "
            f"(model {report['model']}, arch {report['arch']}")


def signal_info(signal) -> dict:
    return {"height": signal.shape[0], "width": signal.shape[1]}


def decode_summary(info: dict) -> str:
    h, w, n = info["height"], info["width"], info["bytes"]
    return f"{w}x{h}, decoded {n} bytes ({8 * n / (h * w):.4f} bpp)"
