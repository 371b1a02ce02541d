"""The .mscn container: a header declared as data, a section table, a CRC32.

Layout (little-endian)::

    header   fields of HEADER, in order (fixed size)
    table    n_sections x (tag: 4 ASCII bytes, length: uint32)
    payload  the sections' bytes, in table order

One declaration (``HEADER``) drives writing, reading, validating and printing
(``mscn info``), as Cool-chic does for its header. Every field is validated
before it is used to size anything: a header that claims a 100000 x 100000
image is refused before a byte is allocated for it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Callable

from .errors import BitstreamError

MAGIC = b"MSCN"
VERSION = 1
MODALITIES = {1: "image"}
ARCHS = {1: "siren", 2: "grid", 3: "grid2"}
MAX_SIDE = 16384
MAX_PIXELS = 1 << 25
MAX_SECTIONS = 16
MAX_SECTION_BYTES = 1 << 30


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


HEADER: tuple[Field, ...] = (
    Field("magic", "4s", "file signature b'MSCN'", lambda v: None if v == MAGIC else "not a .mscn file (bad magic)",
          lambda v: v.decode("latin-1")),
    Field("version", "B", "format version", lambda v: None if v == VERSION else f"unsupported format version {v} (this decoder reads {VERSION})"),
    Field("modality", "B", "signal kind", _in(MODALITIES, "modality"), lambda v: MODALITIES.get(v, str(v))),
    Field("arch", "B", "INR family", _in(ARCHS, "architecture"), lambda v: ARCHS.get(v, str(v))),
    Field("model_id", "8s", "hash of the initialisation (theta0, gates, learning rates)", None, lambda v: v.hex()),
    Field("height", "I", "signal height", _range(1, MAX_SIDE, "height")),
    Field("width", "I", "signal width", _range(1, MAX_SIDE, "width")),
    Field("channels", "B", "channels of the original (1, 3, 4)", _in({1, 3, 4}, "channel count")),
    Field("patch", "H", "siren: patch side P; grid: alignment 2**(levels-1) (pixels)", _range(4, 256, "patch size")),
    Field("n_sections", "B", "entries in the section table", _range(1, MAX_SECTIONS, "section count")),
    Field("payload_crc32", "I", "CRC32 of header (this field zeroed), table and payload", None, lambda v: f"{v:08x}"),
)
_HFMT = "<" + "".join(f.fmt for f in HEADER)
HEADER_SIZE = struct.calcsize(_HFMT)
_SFMT = "<4sI"
_SSIZE = struct.calcsize(_SFMT)


def pack(header: dict, sections: list[tuple[str, bytes]]) -> bytes:
    """Serialise; n_sections and the CRC are computed here, everything else is validated."""
    header = dict(header, n_sections=len(sections), payload_crc32=0)
    validate(header)
    table = b"".join(struct.pack(_SFMT, tag.encode("ascii"), len(data)) for tag, data in sections)
    body = table + b"".join(data for _, data in sections)
    header["payload_crc32"] = stream_crc(struct.pack(_HFMT, *(header[f.name] for f in HEADER)), body)
    return struct.pack(_HFMT, *(header[f.name] for f in HEADER)) + body


def stream_crc(header_bytes: bytes, body: bytes) -> int:
    """CRC32 of the header (its CRC field zeroed), the table and the payload."""
    return zlib.crc32(body, zlib.crc32(header_bytes[: HEADER_SIZE - 4] + b"\0\0\0\0"))


def validate(header: dict) -> None:
    for f in HEADER:
        if f.check is not None:
            problem = f.check(header[f.name])
            if problem:
                raise BitstreamError(problem)
    if header["height"] * header["width"] > MAX_PIXELS:
        raise BitstreamError(f"image {header['width']}x{header['height']} exceeds {MAX_PIXELS} pixels")


def unpack(data: bytes) -> tuple[dict, dict[str, bytes]]:
    """Parse and check everything (magic, version, sizes, lengths, CRC) before returning."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not a .mscn file (bad magic)")
    if len(data) < HEADER_SIZE:
        raise BitstreamError(f"truncated .mscn file ({len(data)} bytes, header needs {HEADER_SIZE})")
    header = dict(zip((f.name for f in HEADER), struct.unpack_from(_HFMT, data, 0)))
    validate(header)
    pos = HEADER_SIZE
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
    if stream_crc(data[:HEADER_SIZE], data[HEADER_SIZE:]) != header["payload_crc32"]:
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


def describe_header(header: dict) -> dict[str, str]:
    return {f.name: f.show(header[f.name]) for f in HEADER}
