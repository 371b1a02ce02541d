"""The decode of image streams without torch, where the stream's family has one (grid2: issue 28).

Why: importing torch cost more than a whole Kodak decode, which needs none of it. This is the image
codec's ``decode`` (``image_codec.py``) for the streams a family can decode with numpy alone: the same
checks, then the family's array decoder (``Family.array_decoders``) on its torch-free model
(``models.find_arrays_by_id``). Where anything is off (an unknown model, a check that would fail, a
family without one, a frame its decoder leaves to torch) it returns None and the caller takes the torch
path, which then decodes or gives its usual one-line error: an error reads the same on both paths.
"""

from __future__ import annotations

import numpy as np

from mscncodec import families, models
from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError
from mscncodec.modalities.image import restore_channels


def decode(data: bytes, header: dict, max_pixels: int, max_voxels: int, **options) -> np.ndarray | None:
    """.mscn bytes (and their parsed header) -> H x W (x C) uint8, or None: decode with ``image_codec``."""
    if options or header["arch"] not in bitstream.ARCHS:
        return None
    family = families.by_code(header["arch"])
    decoder = family.array_decoder("image")
    if decoder is None or header["height"] * header["width"] > max_pixels:
        return None
    try:
        bitstream.check_image_density(header, len(data))
    except BitstreamError:
        return None
    model = models.find_arrays_by_id(header["model_id"], family)
    if model is None or model.modality != "image" or model.patch != header["patch"]:
        return None
    _, sections = bitstream.unpack(data)
    rgb = decoder(model, header, sections)
    return None if rgb is None else restore_channels(rgb, header["channels"])
