"""The .mscn container: a header declared as data, a section table, a CRC32.

Layout (little-endian)::

    header   HEAD, then the modality's BODY, then TAIL (fixed size per modality)
    table    n_sections x (tag: 4 ASCII bytes, length: uint32)
    payload  the sections' bytes, in table order

One declaration (``HEAD`` + ``BODIES[modality]`` + ``TAIL``) drives writing, reading, validating and printing
(``mscn info``), as Cool-chic does for its header. Every field is validated
before it is used to size anything: a header that claims a 100000 x 100000
image is refused before a byte is allocated for it.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

from mscncodec.errors import BitstreamError

MAGIC = b"MSCN"
VERSION = 1
# The one table of codes: the modality and family registries look their codes up here (a code, once
# written into streams, never changes meaning).
MODALITIES = {1: "image", 2: "mesh", 3: "sphere", 4: "voxels", 5: "series"}
ARCHS = {1: "siren", 2: "grid", 3: "grid2", 4: "grid3"}


def _code(table: dict[int, str], name: str, table_name: str) -> int:
    for code, n in table.items():
        if n == name:
            return code
    raise ValueError(f"the container has no code for {name!r}: add one to bitstream.{table_name}")


def arch_code(name: str) -> int:
    return _code(ARCHS, name, "ARCHS")


def modality_code(name: str) -> int:
    return _code(MODALITIES, name, "MODALITIES")
MAX_SIDE = 16384
MAX_PIXELS = 1 << 25
MAX_SECTIONS = 16
MAX_SECTION_BYTES = 1 << 30
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024  # mesh decoding grid
MAX_VOXELS = 512**3  # default bound on a mesh decode's grid (resolution**3 samples), raised by --max-voxels

# The least coded bits per decoded pixel an image stream may have: a decoder refuses to render more than
# len(stream) * 8 / MIN_BPP pixels (check_image_density), before it allocates anything sized by the header.
# Decoding costs time and memory in proportion to the pixels (the SIREN family evaluates every pixel and
# decodes a mask entry per update entry and patch; the latent-grid families decode ~1.3 latents and run
# the synthesis per pixel), so without this rule the 267-byte stream that claims 1024x1024 pixels cost
# 1.6 GB to decode, and a 5.5 KB one claiming 16384x2048 23 s and 3.4 GB. Both are SIREN streams that send
# no update at all: the smallest stream the SIREN encoder could write for that size.
#
# Chosen from real streams of the shipped models on 768x512 images (kodim01, kodim23, a flat grey and a
# gradient image; effort fast, one thread):
#   lowest quality (--quality 0):       siren 0.048-0.062 bpp, grid 0.23-0.33 bpp, grid2 0.053-0.131 bpp
#   coarsest stream a byte target gets: grid 0.033-0.045 bpp, grid2 0.059-0.066 bpp (0.0585 on a flat
#   (the RateError minimum)             2048x2048); siren: the stream with no update, 0.0032 bpp (159 bytes)
#                                       here, tending to 0.0013 bpp for large images (0.00012 bpp with
#                                       siren-shift-w64-l2). Such streams code (almost) nothing but the
#                                       size: kodim01 at 0.0032 / 0.0039 / 0.0049 bpp decodes to 15.96 /
#                                       15.99 / 16.07 dB, at 0.02 bpp 17.4 dB.
# 0.005 bpp is 6.6x below the coarsest grid stream, 11.7x below the coarsest grid2 one and ~10x below the
# lowest SIREN quality setting: it refuses only streams that are (nearly) empty updates. The encoders never
# write such a stream: a target under the rule is a RateError naming this minimum (min_image_bytes), and
# an encode that lands under it is refused rather than written (image_codec._check_density).
MIN_BPP = 0.005
DENSITY_NOTE = f"(the format's minimum, {MIN_BPP} bpp: a shorter stream cannot justify decoding that many pixels)"


@dataclass(frozen=True)
class Field:
    name: str
    fmt: str  # struct code
    doc: str
    check: Callable[[object], str | None] | None = None  # returns a problem or None
    show: Callable[[object], str] = str


def _in(choices: dict | set, what: str) -> Callable[[object], str | None]:
    return lambda v: None if v in choices else f"unsupported {what} {v!r}"


def _range(lo: int, hi: int, what: str) -> Callable[[object], str | None]:
    return lambda v: None if lo <= v <= hi else f"{what} {v} out of range [{lo}, {hi}]"


def _finite(what: str, positive: bool = False) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        ok = isinstance(v, float) and math.isfinite(v) and abs(v) < 1e30 and (v > 0 or not positive)
        return None if ok else f"{what} {v!r} is not a {'positive ' if positive else ''}finite number"
    return check


def _degrees(what: str, bound: float) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        ok = isinstance(v, float) and math.isfinite(v) and abs(v) <= bound
        return None if ok else f"{what} {v!r} is not an angle in [-{bound:g}, {bound:g}] degrees"
    return check


MAX_LAT, MAX_LON = 8192, 16384  # a sphere grid (0.022 degrees); its points are bounded by MAX_PIXELS too
LAT_KINDS = {0: "regular", 1: "gaussian"}


# The header is declared as data in three parts: a common head (which says the modality), the
# modality's own body, and a common tail. Image streams keep the layout they always had.
HEAD: tuple[Field, ...] = (
    Field("magic", "4s", "file signature b'MSCN'", lambda v: None if v == MAGIC else "not a .mscn file (bad magic)",
          lambda v: v.decode("latin-1")),
    Field("version", "B", "format version", lambda v: None if v == VERSION else f"unsupported format version {v} (this decoder reads {VERSION})"),
    Field("modality", "B", "signal kind", _in(MODALITIES, "modality"), lambda v: MODALITIES.get(v, str(v))),
    Field("arch", "B", "INR family", _in(ARCHS, "architecture"), lambda v: ARCHS.get(v, str(v))),
    Field("model_id", "8s", "hash of the initialisation (theta0, gates, learning rates)", None, lambda v: v.hex()),
)
_SPHERE_GRID: tuple[Field, ...] = (  # a global lat-lon grid and its value range (sphere and series bodies)
    Field("nlat", "H", "latitudes of the grid", _range(2, MAX_LAT, "latitude count")),
    Field("nlon", "H", "longitudes of the grid (equally spaced around the circle)", _range(4, MAX_LON, "longitude count")),
    Field("lat_kind", "B", "latitude formula: 0 regular (first..last), 1 Gaussian", _in(LAT_KINDS, "latitude kind"),
          lambda v: LAT_KINDS.get(v, str(v))),
    Field("lat_first", "f", "first latitude (degrees)", _degrees("first latitude", 90.0), lambda v: f"{v:.6g}"),
    Field("lat_last", "f", "last latitude (degrees)", _degrees("last latitude", 90.0), lambda v: f"{v:.6g}"),
    Field("lon_first", "f", "first longitude (degrees)", _degrees("first longitude", 360.0), lambda v: f"{v:.6g}"),
    Field("vmin", "f", "smallest value of the field (its units)", _finite("minimum value"), lambda v: f"{v:.7g}"),
    Field("vmax", "f", "largest value of the field (its units)", _finite("maximum value"), lambda v: f"{v:.7g}"),
)
MAX_VOXEL_SIDE = 1024  # voxels per axis of an occupancy grid
MAX_STEPS = 1 << 20  # time steps of a series (its points are bounded by the series limit too)
BODIES: dict[int, tuple[Field, ...]] = {
    1: (  # image
        Field("height", "I", "signal height", _range(1, MAX_SIDE, "height")),
        Field("width", "I", "signal width", _range(1, MAX_SIDE, "width")),
        Field("channels", "B", "channels of the original (1, 3, 4)", _in({1, 3, 4}, "channel count")),
        Field("patch", "H", "siren: patch side P; grid: alignment 2**(levels-1) (pixels)", _range(4, 256, "patch size")),
    ),
    2: (  # mesh: a signed distance function in the unit cube [-1, 1]^3, and the way back to the input's frame
        Field("resolution", "H", "default decoding grid (samples per side)", _range(MIN_RESOLUTION, MAX_RESOLUTION, "resolution")),
        Field("center_x", "f", "x of the input's bounding-box centre", _finite("centre x"), lambda v: f"{v:.6g}"),
        Field("center_y", "f", "y of the input's bounding-box centre", _finite("centre y"), lambda v: f"{v:.6g}"),
        Field("center_z", "f", "z of the input's bounding-box centre", _finite("centre z"), lambda v: f"{v:.6g}"),
        Field("scale", "f", "input units per unit-cube unit (half the longest side, with margin)", _finite("scale", True),
              lambda v: f"{v:.6g}"),
    ),
    3: _SPHERE_GRID,  # sphere: a global latitude-longitude field; the INR sees unit vectors, values mapped by [vmin, vmax]
    4: (  # voxels: an occupancy grid (binvox's dims, translate and scale: voxel centre = translate + scale * (i + 0.5) / dim)
        Field("dim_x", "H", "voxels along the first axis", _range(1, MAX_VOXEL_SIDE, "voxel grid side")),
        Field("dim_y", "H", "voxels along the second axis", _range(1, MAX_VOXEL_SIDE, "voxel grid side")),
        Field("dim_z", "H", "voxels along the third axis", _range(1, MAX_VOXEL_SIDE, "voxel grid side")),
        Field("translate_x", "f", "binvox translate x", _finite("translate x"), lambda v: f"{v:.6g}"),
        Field("translate_y", "f", "binvox translate y", _finite("translate y"), lambda v: f"{v:.6g}"),
        Field("translate_z", "f", "binvox translate z", _finite("translate z"), lambda v: f"{v:.6g}"),
        Field("scale", "f", "binvox scale", _finite("scale", True), lambda v: f"{v:.6g}"),
    ),
    5: (  # series: global lat-lon fields at several times, one 3-D volume (time x lat x lon)
        Field("steps", "I", "time steps", _range(1, MAX_STEPS, "time step count")),
        *_SPHERE_GRID,
    ),
}
TAIL: tuple[Field, ...] = (
    Field("n_sections", "B", "entries in the section table", _range(1, MAX_SECTIONS, "section count")),
    Field("payload_crc32", "I", "CRC32 of header (this field zeroed), table and payload", None, lambda v: f"{v:08x}"),
)


def header_fields(modality: int) -> tuple[Field, ...]:
    return HEAD + BODIES[modality] + TAIL


def _fmt(modality: int) -> str:
    return "<" + "".join(f.fmt for f in header_fields(modality))


def header_size(modality: int) -> int:
    return struct.calcsize(_fmt(modality))


HEADER = header_fields(1)  # the image header (the layout every stream had before meshes)
_HFMT = _fmt(1)
HEADER_SIZE = header_size(1)
_HEAD_FMT = "<" + "".join(f.fmt for f in HEAD)
_SFMT = "<4sI"
_SSIZE = struct.calcsize(_SFMT)


def pack(header: dict, sections: list[tuple[str, bytes]]) -> bytes:
    """Serialise; n_sections and the CRC are computed here, everything else is validated."""
    header = dict(header, n_sections=len(sections), payload_crc32=0)
    validate(header)
    fields, fmt = header_fields(header["modality"]), _fmt(header["modality"])
    table = b"".join(struct.pack(_SFMT, tag.encode("ascii"), len(data)) for tag, data in sections)
    body = table + b"".join(data for _, data in sections)
    header["payload_crc32"] = stream_crc(struct.pack(fmt, *(header[f.name] for f in fields)), body)
    return struct.pack(fmt, *(header[f.name] for f in fields)) + body


def stream_crc(header_bytes: bytes, body: bytes) -> int:
    """CRC32 of the header (its CRC field zeroed), the table and the payload."""
    return zlib.crc32(body, zlib.crc32(header_bytes[:-4] + b"\0\0\0\0"))


def _check(fields: tuple[Field, ...], header: dict) -> None:
    for f in fields:
        if f.check is not None and (problem := f.check(header[f.name])):
            raise BitstreamError(problem)


def validate(header: dict) -> None:
    _check(HEAD, header)  # the head first: it says which body to check
    _check(header_fields(header["modality"])[len(HEAD):], header)
    if header["modality"] == 1 and header["height"] * header["width"] > MAX_PIXELS:
        raise BitstreamError(f"image {header['width']}x{header['height']} exceeds {MAX_PIXELS} pixels")
    if header["modality"] in (3, 5):
        if header["nlat"] * header["nlon"] > MAX_PIXELS:
            raise BitstreamError(f"grid {header['nlat']}x{header['nlon']} exceeds {MAX_PIXELS} points")
        if header["vmax"] < header["vmin"]:
            raise BitstreamError(f"value range [{header['vmin']}, {header['vmax']}] is empty")


def min_image_bytes(height: int, width: int) -> int:
    """The smallest stream (bytes) the decoder accepts for a height x width image (MIN_BPP)."""
    return math.ceil(height * width * MIN_BPP / 8)


def check_image_density(header: dict, n_bytes: int) -> None:
    """Refuse an image stream too short for the pixels its header claims (MIN_BPP), before any decoding."""
    h, w = header["height"], header["width"]
    if n_bytes < min_image_bytes(h, w):
        raise BitstreamError(f"a {n_bytes}-byte stream cannot code a {w}x{h} image ({8 * n_bytes / (h * w):.4g} bpp, "
                             f"the format's minimum is {MIN_BPP} bpp: {min_image_bytes(h, w)} bytes): corrupted or crafted")


def unpack(data: bytes) -> tuple[dict, dict[str, bytes]]:
    """Parse and check everything (magic, version, sizes, lengths, CRC) before returning."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not a .mscn file (bad magic)")
    head_size = struct.calcsize(_HEAD_FMT)
    if len(data) < head_size:
        raise BitstreamError(f"truncated .mscn file ({len(data)} bytes, header needs {HEADER_SIZE})")
    head = dict(zip((f.name for f in HEAD), struct.unpack_from(_HEAD_FMT, data, 0)))
    _check(HEAD, head)
    size = header_size(head["modality"])
    if len(data) < size:
        raise BitstreamError(f"truncated .mscn file ({len(data)} bytes, header needs {size})")
    header = dict(zip((f.name for f in header_fields(head["modality"])), struct.unpack_from(_fmt(head["modality"]), data, 0)))
    validate(header)
    pos = size
    n = header["n_sections"]
    if len(data) < pos + n * _SSIZE:
        raise BitstreamError("truncated .mscn file (section table)")
    table = [struct.unpack_from(_SFMT, data, pos + i * _SSIZE) for i in range(n)]
    pos += n * _SSIZE
    total = sum(length for _, length in table)
    if any(length > MAX_SECTION_BYTES for _, length in table) or len(data) < pos + total:
        raise BitstreamError("truncated .mscn file (payload shorter than its section table says)")
    if len(data) > pos + total:
        raise BitstreamError(f"corrupted .mscn file ({len(data) - pos - total} trailing bytes)")
    if stream_crc(data[:size], data[size:]) != header["payload_crc32"]:
        raise BitstreamError("corrupted .mscn file (CRC mismatch)")
    sections: dict[str, bytes] = {}
    for tag, length in table:
        try:
            name = tag.decode("ascii")
        except UnicodeDecodeError:
            raise BitstreamError("corrupted .mscn file (bad section tag)") from None
        if name in sections:
            raise BitstreamError(f"corrupted .mscn file (duplicate section {name})")
        sections[name] = data[pos : pos + length]
        pos += length
    return header, sections


def section_sizes(header: dict, sections: dict[str, bytes]) -> dict[str, int]:
    """Bytes of the header, the section table and each section: what `mscn info` lists."""
    return {"header": header_size(header["modality"]), "table": _SSIZE * header["n_sections"],
            **{k: len(v) for k, v in sections.items()}}


def describe_header(header: dict) -> dict[str, str]:
    return {f.name: f.show(header[f.name]) for f in header_fields(header["modality"])}
