"""The .mscn container: pack/unpack, header description, every validation, fuzzing."""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mscncodec
from mscncodec.container import bitstream
from mscncodec.container.bitstream import HEADER, HEADER_SIZE, MAX_PIXELS, MAX_SIDE, describe_header, pack, stream_crc, unpack
from mscncodec.errors import BitstreamError, MscnError

pytestmark = pytest.mark.usefixtures("isolated_models")

FUZZ = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

_HFMT = "<" + "".join(f.fmt for f in HEADER)
OFFSET = {}
_pos = 0
for _f in HEADER:
    OFFSET[_f.name] = _pos
    _pos += struct.calcsize("<" + _f.fmt)
del _pos, _f


def base_header(**kw) -> dict:
    h = {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": 1, "arch": 1,
         "model_id": bytes(range(8)), "height": 64, "width": 96, "channels": 3, "patch": 32}
    h.update(kw)
    return h


SECTIONS = [("QPRM", b"\x01\x02\x03"), ("MASK", b"abcdefgh"), ("VALS", b"")]


def raw_stream(sections=SECTIONS, *, crc: int | None = None, **fields) -> bytes:
    """Serialise WITHOUT validation (so invalid headers can be built), with a correct CRC unless given.

    Section tags may be str (ASCII) or raw 4-byte bytes. The CRC covers the header (its CRC field
    zeroed), the table and the payload: the header is packed with CRC 0 first, then the CRC is written in.
    """
    h = dict(base_header(**fields))
    tags = [t if isinstance(t, bytes) else t.encode() for t, _ in sections]
    body = b"".join(struct.pack("<4sI", t, len(d)) for t, (_, d) in zip(tags, sections))
    body += b"".join(d for _, d in sections)
    h.setdefault("n_sections", len(sections))
    h["payload_crc32"] = 0
    header_bytes = struct.pack(_HFMT, *(h[f.name] for f in HEADER))
    h["payload_crc32"] = stream_crc(header_bytes, body) if crc is None else crc
    return struct.pack(_HFMT, *(h[f.name] for f in HEADER)) + body


def with_crc(b: bytearray) -> bytes:
    """Rewrite the CRC field of a (tampered) stream so that it matches again: a crafted file."""
    struct.pack_into("<I", b, OFFSET["payload_crc32"], 0)
    struct.pack_into("<I", b, OFFSET["payload_crc32"], stream_crc(bytes(b[:HEADER_SIZE]), bytes(b[HEADER_SIZE:])))
    return bytes(b)


def test_header_size_matches_fields():
    assert HEADER_SIZE == struct.calcsize(_HFMT)
    assert [f.name for f in HEADER][0] == "magic" and [f.name for f in HEADER][-1] == "payload_crc32"


def test_pack_unpack_round_trip():
    data = pack(base_header(), SECTIONS)
    header, sections = unpack(data)
    for k, v in base_header().items():
        assert header[k] == v
    assert header["n_sections"] == 3
    # the CRC is CRC32 over header-with-CRC-field-zeroed + table + payload (spelled out independently here)
    assert header["payload_crc32"] == zlib.crc32(data[: HEADER_SIZE - 4] + bytes(4) + data[HEADER_SIZE:])
    assert header["payload_crc32"] == stream_crc(data[:HEADER_SIZE], data[HEADER_SIZE:])
    assert OFFSET["payload_crc32"] == HEADER_SIZE - 4
    assert list(sections) == [t for t, _ in SECTIONS]
    assert sections == dict(SECTIONS)
    assert len(data) == HEADER_SIZE + 8 * 3 + sum(len(d) for _, d in SECTIONS)
    assert raw_stream() == data  # the hand-built serialisation used below is the real one


def test_describe_header_covers_every_field():
    header, _ = unpack(pack(base_header(), SECTIONS))
    d = describe_header(header)
    assert list(d) == [f.name for f in HEADER]
    assert all(isinstance(v, str) and v for v in d.values())
    assert d["magic"] == "MSCN"
    assert d["modality"] == "image"
    assert d["arch"] == "siren"
    assert d["model_id"] == bytes(range(8)).hex()
    assert d["height"] == "64" and d["width"] == "96" and d["channels"] == "3" and d["patch"] == "32"
    assert d["n_sections"] == "3"
    assert d["payload_crc32"] == f"{header['payload_crc32']:08x}"


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"magic": b"MSCX"}, "magic"),
        ({"version": 2}, "version"),
        ({"version": 0}, "version"),
        ({"modality": 7}, "modality"),
        ({"arch": 9}, "architecture"),
        ({"height": 0}, "height"),
        ({"width": 0}, "width"),
        ({"height": MAX_SIDE + 1}, "height"),
        ({"width": MAX_SIDE + 1}, "width"),
        ({"channels": 2}, "channel"),
        ({"patch": 2}, "patch"),
        ({"height": MAX_SIDE, "width": MAX_SIDE}, "pixels"),
    ],
)
def test_unpack_rejects_invalid_header(fields, words):
    data = raw_stream(**fields)
    with pytest.raises(BitstreamError, match=words):
        unpack(data)
    if "magic" not in fields:  # pack validates the same declaration
        with pytest.raises(BitstreamError, match=words):
            pack(base_header(**fields), SECTIONS)


def test_max_pixels_boundary_accepted():
    # 16384 x 2048 is exactly MAX_PIXELS: valid header (payload is not decoded here)
    assert MAX_SIDE * (MAX_PIXELS // MAX_SIDE) == MAX_PIXELS
    header, _ = unpack(raw_stream(height=MAX_SIDE, width=MAX_PIXELS // MAX_SIDE))
    assert header["height"] * header["width"] == MAX_PIXELS


@pytest.mark.parametrize("n", [0, bitstream.MAX_SECTIONS + 1])
def test_section_count_out_of_range(n):
    with pytest.raises(BitstreamError, match="section count"):
        unpack(raw_stream(n_sections=n))


def test_huge_claim_refused_before_allocation():
    data = raw_stream(height=100_000, width=100_000)
    assert len(data) < 200
    for fn in (unpack, mscncodec.decode):
        tracemalloc.start()
        t = time.perf_counter()
        try:
            with pytest.raises(BitstreamError, match="height"):
                fn(data)
            elapsed = time.perf_counter() - t
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert elapsed < 1.0
        assert peak < 2 * 1024 * 1024  # nothing sized by the claimed 10^10 pixels


def test_crc_mismatch_detected():
    data = bytearray(pack(base_header(), SECTIONS))
    data[-1] ^= 0x40
    with pytest.raises(BitstreamError, match="CRC"):
        unpack(bytes(data))
    data = raw_stream(crc=12345)
    with pytest.raises(BitstreamError, match="CRC"):
        unpack(data)


def test_stream_crc_ignores_the_crc_field_itself():
    data = pack(base_header(), SECTIONS)
    header, body = data[:HEADER_SIZE], data[HEADER_SIZE:]
    for crc in (0, 1, 0xFFFFFFFF, 12345):
        other = header[: HEADER_SIZE - 4] + struct.pack("<I", crc)
        assert stream_crc(other, body) == stream_crc(header, body)


@pytest.mark.parametrize(
    "field, value",
    [("model_id", b"\x13\x37" * 4), ("height", 65), ("width", 95), ("channels", 1), ("channels", 4), ("patch", 16)],
)
def test_crc_covers_the_header(field, value):
    """A header field changed to another VALID value is caught by the CRC (and only by it)."""
    data = pack(base_header(), SECTIONS)
    b = bytearray(data)
    fmt = "<" + next(f.fmt for f in HEADER if f.name == field)
    struct.pack_into(fmt, b, OFFSET[field], value)
    with pytest.raises(BitstreamError, match="CRC mismatch"):
        unpack(bytes(b))
    header, sections = unpack(with_crc(b))  # the same change with a rewritten CRC is a valid stream
    assert header[field] == value and sections == dict(SECTIONS)


def test_every_header_byte_is_protected(small_stream):
    """Any change to any header byte of a real stream is refused with a BitstreamError."""
    _, data = small_stream
    for pos in range(HEADER_SIZE):
        for delta in (0x01, 0x80, 0xFF):
            b = bytearray(data)
            b[pos] ^= delta
            with pytest.raises(BitstreamError):
                mscncodec.decode(bytes(b))


def test_truncation_at_every_cut_point_of_packed_stream():
    data = pack(base_header(), SECTIONS)
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:n])


def test_truncation_at_every_cut_point_of_real_stream(small_stream):
    _, data = small_stream
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            mscncodec.decode(data[:n])


def test_trailing_bytes_refused(small_stream):
    _, data = small_stream
    for extra in (b"\x00", b"MSCN" * 3):
        with pytest.raises(BitstreamError, match="trailing"):
            unpack(data + extra)


def test_section_table_claims_more_than_present():
    good = raw_stream()
    body_start = HEADER_SIZE
    b = bytearray(good)
    struct.pack_into("<I", b, body_start + 4, 1000)  # QPRM claims 1000 bytes
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(with_crc(b))
    struct.pack_into("<I", b, body_start + 4, 0xFFFFFFFF)
    with pytest.raises(BitstreamError):
        unpack(with_crc(b))


def test_duplicate_and_non_ascii_section_tags():
    with pytest.raises(BitstreamError, match="duplicate"):
        unpack(raw_stream([("MASK", b"ab"), ("MASK", b"cd")]))
    data = raw_stream([(b"\xff\xfe\x00\x01", b"xy")])
    assert data[HEADER_SIZE:] == struct.pack("<4sI", b"\xff\xfe\x00\x01", 2) + b"xy"
    with pytest.raises(BitstreamError, match="tag"):
        unpack(data)


def test_bad_magic_and_short_inputs():
    for data in (b"", b"M", b"MSC", b"PNG\x00" + bytes(60), b"\x89PNG\r\n\x1a\n" + bytes(40)):
        with pytest.raises(BitstreamError, match="magic"):
            unpack(data)
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(b"MSCN\x01")


# ------------------------------------------------------------------ fuzzing through mscncodec.decode


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    with pytest.raises(MscnError):
        mscncodec.decode(data)


@FUZZ
@given(st.binary(min_size=0, max_size=200))
def test_fuzz_random_bytes_after_magic(tail):
    with pytest.raises(MscnError):
        mscncodec.decode(bitstream.MAGIC + tail)


# The CRC covers header, table and payload, so every single-byte change anywhere is refused.
# Crafted streams (tampered, CRC rewritten) are exercised in test_codec.py.


@FUZZ
@given(st.data())
def test_fuzz_single_byte_corruption(small_stream, data):
    _, stream = small_stream
    pos = data.draw(st.integers(0, len(stream) - 1), label="pos")
    delta = data.draw(st.integers(1, 255), label="xor")
    b = bytearray(stream)
    b[pos] ^= delta
    with pytest.raises(BitstreamError):
        mscncodec.decode(bytes(b))
