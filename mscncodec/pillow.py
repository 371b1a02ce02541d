"""A Pillow plugin for .mscn image streams: ``import mscncodec.pillow`` and Pillow opens and saves them.

Why: photo and vision code reads images with ``PIL.Image.open`` and writes them with ``Image.save``; with this
module imported, ``Image.open("x.mscn")`` is a decoded image and ``img.save("x.mscn", bpp=0.3)`` an encode, with
no mscn-specific call in between.

* Opening reads only the stream's header: size and mode (``L``, ``RGB``, ``RGBA`` by the original's channel
  count) are known at once; the pixels are decoded by ``mscncodec.api.decode`` when Pillow loads the image.
* A .mscn stream of another modality (a mesh, a field) is not an image: Pillow raises its
  ``UnidentifiedImageError`` and warns which modality the stream holds. A stream cut short, corrupted or
  from an unknown model raises the codec's own one-line ``BitstreamError`` (at open where the header is
  wrong, at load where the payload is).
* Saving takes ``bpp``, ``bytes`` (or ``target_bytes``), ``quality``, ``effort``, ``model``, ``steps``, ``arch``
  and ``device``: the options of ``mscncodec.api.encode``; any other option is refused rather than ignored
  (a mistyped rate would otherwise be coded at the default quality). The pixels are those a viewer shows
  (EXIF orientation applied, colours converted to sRGB), read as ``mscn encode`` reads an image file, so
  ``Image.open("photo.jpg").save("photo.mscn")`` writes the stream ``mscn encode photo.jpg`` writes.
  Modes: RGB and L are coded as they are (L decodes to L), P, CMYK and the like as RGB, 16-bit grey scaled to
  8 bits; an alpha channel is kept only where it is opaque everywhere, else refused (an ``InputError``).

Pillow (13) has no entry-point mechanism for third-party format plugins (its plugins are its own modules,
imported by name): a plugin registers itself when it is imported, so this module must be imported once.
"""

from __future__ import annotations

import struct
from typing import IO

import numpy as np
from PIL import Image, ImageFile

from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError

FORMAT = "MSCN"
EXTENSION = ".mscn"
MIME = "image/x-mscn"
IMAGE = bitstream.modality_code("image")
MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # the header's channel count -> the decoded image's mode
_MODALITY_OFFSET = 5  # magic (4 bytes), version (1): the modality byte follows (bitstream.HEAD)
SAVE_OPTIONS = ("bpp", "quality", "effort", "model", "steps", "arch", "device", "max_pixels")


def _accept(prefix: bytes) -> bool | str:
    """Whether Pillow should open this file as MSCN: an mscn stream holding an image. A stream of another
    modality is declined with a message (Pillow warns it beside its UnidentifiedImageError)."""
    if prefix[:4] != bitstream.MAGIC:
        return False
    if len(prefix) <= _MODALITY_OFFSET or prefix[_MODALITY_OFFSET] == IMAGE:
        return True  # an image stream, or one too short to say: the header check names the problem
    name = bitstream.MODALITIES.get(prefix[_MODALITY_OFFSET])
    if name is None:
        return True  # an unknown modality: the header check refuses it by name
    return f"the .mscn stream is a {name} stream, not an image: decode it with mscncodec.api.decode"


def read_header(fp: IO[bytes]) -> dict:
    """The checked header of an image stream from the start of `fp` (nothing past the header is read)."""
    size = bitstream.header_size(IMAGE)
    head = fp.read(size)
    if len(head) < size:
        raise BitstreamError(f"truncated .mscn file ({len(head)} bytes, header needs {size})")
    fields = bitstream.header_fields(IMAGE)
    header = dict(zip((f.name for f in fields), struct.unpack("<" + "".join(f.fmt for f in fields), head)))
    bitstream.validate(header)  # the head first (magic, version, modality), then the image fields
    if header["modality"] != IMAGE:  # a direct caller: Image.open's _accept has declined other modalities
        raise BitstreamError(f"not an image stream (modality {bitstream.MODALITIES[header['modality']]}): "
                             "decode it with mscncodec.api.decode")
    return header


class MscnImageFile(ImageFile.ImageFile):
    """An .mscn image stream as a Pillow image: the header read at open, the pixels decoded at load."""

    format = FORMAT
    format_description = "mscn neural image codec"

    def _open(self) -> None:
        assert self.fp is not None
        header = read_header(self.fp)
        self._size = (header["width"], header["height"])
        self._mode = MODES[header["channels"]]
        self.tile = [ImageFile._Tile(FORMAT, (0, 0) + self.size, 0, None)]


class MscnDecoder(ImageFile.PyDecoder):
    """Decodes the whole stream at once: the codec has no row-by-row decode to feed Pillow in blocks."""

    _pulls_fd = True

    def decode(self, buffer: Image.DecoderInput) -> tuple[int, int]:
        # the codec (and, for some families, torch) is imported on first decode, not with the plugin
        from mscncodec import api

        assert self.fd is not None
        pixels = np.ascontiguousarray(api.decode(self.fd.read()))
        want = (self.state.ysize, self.state.xsize) + ((len(self.mode),) if len(self.mode) > 1 else ())
        if pixels.shape != want:  # the header read at open and the stream decoded now disagree
            raise BitstreamError(f"corrupted .mscn file (decoded {pixels.shape}, its header says {want})")
        self.set_as_raw(pixels.tobytes())
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from mscncodec import api
    from mscncodec.modalities import image as imod

    options = api.plugin_options(im.encoderinfo, SAVE_OPTIONS, "save")
    fp.write(api.encode(imod.pixels(im), **options))  # encoded whole first: a failed encode writes nothing


def register() -> None:
    """Register the format with Pillow (done on import; calling it again changes nothing)."""
    Image.register_open(FORMAT, MscnImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
    Image.register_decoder(FORMAT, MscnDecoder)


register()
