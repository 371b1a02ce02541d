"""One Python API over every modality: ``encode(src, **target) -> bytes`` and ``decode(bytes) -> signal``.

An image stream whose family decodes without torch (grid2) is decoded so (``Modality.array_decode``):
``mscn decode`` of such a stream never imports torch.

The modality of an input comes from its type or extension, that of a stream from its header's
``modality`` field (modalities.REGISTRY); the CLI and the bench call only these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mscncodec._runtime import show_progress
from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError, MscnError
from mscncodec.modalities import Modality, by_code, by_name, for_input

MAX_PIXELS = bitstream.MAX_PIXELS  # default max_pixels: the format's own bound (2**25)
MAX_VOXELS = bitstream.MAX_VOXELS  # default max_voxels (512**3): a mesh decode samples resolution**3 points


def input_modality(src) -> Modality:
    """The modality of something to encode: an array is an image, a Mesh a mesh, a path by its extension."""
    if isinstance(src, np.ndarray):
        return by_name("image")
    if isinstance(src, (str, Path)):
        return for_input(src)
    from mscncodec.modalities.mesh import Mesh

    if isinstance(src, Mesh):
        return by_name("mesh")
    raise MscnError(f"cannot encode a {type(src).__name__}: give a file path, an image array or a Mesh")


def stream_modality(data: bytes) -> Modality:
    return by_code(_header(data)["modality"])


def _header(data: bytes) -> dict:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MscnError("decode expects bytes")
    header, _ = bitstream.unpack(bytes(data))
    return header


def _limit(value, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise MscnError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def encode(src, *, modality: str | None = None, max_pixels: int | None = None, max_voxels: int | None = None,
           rmse: float | None = None, max_error: float | None = None, psnr: float | None = None,
           chamfer: float | None = None, **kw):
    """Encode a file, an image array or a Mesh. Targets: ``target_bytes`` (any modality; the real file
    lands at or just under it), ``bpp`` (images), or ``quality`` 0-100. See codec.encode_image and
    meshcodec.encode_mesh for the options of each modality; ``device`` (images: "cpu", the default, "cuda" or
    "auto") is where grid2's fit runs, the exact coding staying on the CPU.

    Error targets, met on the decoded result (mscncodec.targets: the smallest stream a search over byte
    targets finds, each probe a real encode, decode and measure; a TargetError naming the best value
    reached where none meets it): ``rmse`` (fields and series: area-weighted, in the variable's units),
    ``max_error`` (fields and series: max absolute error), ``psnr`` (images, dB), ``chamfer`` (meshes:
    Chamfer-L1 in units of the bounding-box diagonal). One of them, instead of a size or quality target.

    Limits, checked before any work (a LimitError): ``max_pixels`` (images; default the format's 2**25,
    read from the file's header before its pixels are decoded) and ``max_voxels`` (meshes: the decoding
    grid ``resolution**3`` the stream will default to; default 512**3). A limit of the other modality
    is ignored."""
    from mscncodec import targets

    target = targets.requested(rmse=rmse, max_error=max_error, psnr=psnr, chamfer=chamfer)
    mod = by_name(modality) if modality else input_modality(src)
    pixels, voxels = _limit(max_pixels, "max_pixels", MAX_PIXELS), _limit(max_voxels, "max_voxels", MAX_VOXELS)
    kw = mod.hook("encode_limits")(kw, pixels, voxels)
    other = {o for m in _all() if m is not mod for o in m.options} - set(mod.options)
    given = sorted(k for k, v in kw.items() if k in other and v is not None)
    if given:
        raise MscnError(f"option {', '.join(given)} does not apply to a {mod.name}")
    say = _say if kw.get("progress") else None  # a search's probe lines are lines, not bars: shown in logs too
    if kw.get("progress"):  # no bars when stderr is a log, whichever family draws them
        kw["progress"] = show_progress(True)
    # options of another modality are dropped (they are None here); this modality's unset ones take its defaults
    kw = {k: v for k, v in kw.items() if k not in other and not (k in mod.options and v is None)}
    if target is not None:
        return targets.encode_to(mod, src, target, kw, say)
    return mod.encode(src, **kw)


def plugin_options(given: dict, allowed: tuple[str, ...], what: str) -> dict:
    """`encode`'s options from a format plugin's keyword arguments (Pillow's save, trimesh's export): those in
    `allowed`, and ``bytes`` for ``target_bytes``; None values dropped. Any other key is refused by name
    (`what`: "save", "export"), so a mistyped rate is never coded at the default quality instead."""
    unknown = sorted(k for k in given if k not in allowed + ("bytes", "target_bytes"))
    if unknown:
        raise MscnError(f"unknown .mscn {what} option {', '.join(unknown)} (options: bytes, {', '.join(allowed)})")
    if given.get("bytes") is not None and given.get("target_bytes") is not None:
        raise MscnError("give either bytes or target_bytes, not both")
    options = {k: given[k] for k in allowed if given.get(k) is not None}
    target = given.get("bytes", given.get("target_bytes"))
    if target is not None:
        options["target_bytes"] = target
    return options


def _say(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


def decode(data: bytes, *, max_pixels: int | None = None, max_voxels: int | None = None, **kw):
    """Decode .mscn bytes into the modality's signal (an H x W x C uint8 array, or a Mesh).

    The work is bounded before anything is allocated for it: an image stream is refused when it is too
    short for the pixels it claims (bitstream.MIN_BPP) or holds more than ``max_pixels`` pixels (default
    the format's 2**25; for a field, its decoding grid's points); a mesh decode when its grid (``resolution``, else the header's) has more than
    ``max_voxels`` samples (default 512**3). A limit of the other modality is ignored."""
    header = _header(data)
    mod = by_code(header["modality"])
    given = sorted(k for k, v in kw.items() if v is not None and k not in mod.options)
    if given:
        raise MscnError(f"option {', '.join(given)} does not apply to a {mod.name} stream")
    kw = {k: v for k, v in kw.items() if v is not None}
    pixels, voxels = _limit(max_pixels, "max_pixels", MAX_PIXELS), _limit(max_voxels, "max_voxels", MAX_VOXELS)
    signal = mod.array_decode(bytes(data), header, pixels, voxels, **kw)
    if signal is not None:
        return signal
    kw = mod.hook("decode_limits")(header, kw, pixels, voxels)
    return mod.decode(bytes(data), **kw)


def decode_without_torch(data: bytes, *, max_pixels: int | None = None, max_voxels: int | None = None, **kw):
    """`decode`'s result where the stream decodes without torch (a grid2 image: issue 28), else None, with
    torch not imported (the CLI then sets torch's threads and calls `decode`)."""
    header = _header(data)
    mod = by_code(header["modality"])
    kw = {k: v for k, v in kw.items() if v is not None}
    if any(k not in mod.options for k in kw):
        return None  # decode's one-line error
    pixels, voxels = _limit(max_pixels, "max_pixels", MAX_PIXELS), _limit(max_voxels, "max_voxels", MAX_VOXELS)
    return mod.array_decode(bytes(data), header, pixels, voxels, **kw)


def describe(data: bytes) -> dict:
    return stream_modality(data).describe(bytes(data))


def _all() -> list[Modality]:
    from mscncodec.modalities import REGISTRY

    return list(REGISTRY.values())


__all__ = ["encode", "decode", "decode_without_torch", "describe", "input_modality", "stream_modality", "BitstreamError"]
