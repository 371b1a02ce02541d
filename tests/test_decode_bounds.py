"""Issue 30: a decode's cost is bounded by what the stream can justify, with the default options.

* Gaussian latitudes come from an O(n^2) Newton iteration, not numpy's O(n^3) leggauss (a 2,989-byte field
  stream whose header said 8,192 Gaussian latitudes cost 52 s and 1.3 GB), with the same float32 latitudes;
* a mesh stream's stored decoding grid is honoured up to what its length justifies (mesh_codec.
  justified_resolution: 128^3, or 1600 samples per byte), else refused in one line before any work; an
  explicit resolution stays the caller's choice (bounded by max_voxels); the encoder never writes a stream
  that this refuses;
* field, series and voxel streams are refused below bitstream.MIN_BPP bits per point their header claims.

Timings are asserted only as generous robustness bounds (CPU seconds), as in tests/test_fuzz.py.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner

import mscncodec
from mscncodec.cli import main
from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError, LimitError, MscnError
from mscncodec.modalities import mesh as mmod
from mscncodec.modalities import mesh_codec
from mscncodec.modalities import sphere_grid as sgrid

SDF = "random-sdf-w32d5+dense"
SPHERE = "random-sphere-w32d5+dense"


def edited(data: bytes, **fields) -> bytes:
    """`data` with header fields changed and the CRC recomputed (a crafted stream that passes the container)."""
    header, sections = bitstream.unpack(data)
    return bitstream.pack(dict(header, **fields), list(sections.items()))


def cpu(fn, *a, **kw):
    """(result or the MscnError raised, CPU seconds)."""
    t = time.process_time()
    try:
        out = fn(*a, **kw)
    except MscnError as e:
        out = e
    return out, time.process_time() - t


# ---------------------------------------------------------------- Gaussian latitudes

@pytest.mark.parametrize("n", [*range(1, 130), 160, 192, 256, 320, 400, 512])
def test_gaussian_latitudes_are_bit_identical_to_leggauss(n):
    """Streams written with leggauss's latitudes decode to the same coordinates (bit patterns, +0.0 included:
    the LATC corrections are differences of bit patterns). Checked offline for every n up to 700 and for
    768..2048 too."""
    x, _ = np.polynomial.legendre.leggauss(n)
    want = np.degrees(np.arcsin(x)).astype(np.float32)
    got = sgrid.gaussian_latitudes(n)
    assert got.dtype == np.float32 and np.array_equal(got.view(np.int32), want.view(np.int32))
    assert np.array_equal(sgrid.gaussian_latitudes(n, north_first=True), want[::-1])
    assert np.abs(sgrid.gaussian_nodes(n) - x).max() <= 4e-16


def test_the_format_s_largest_gaussian_grid_is_cheap():
    nodes, seconds = cpu(sgrid.gaussian_nodes, bitstream.MAX_LAT)
    assert seconds < 10  # leggauss(8192): 52 s and 1.3 GB; this: ~0.4 s, O(n) memory
    n = bitstream.MAX_LAT
    assert len(nodes) == n and np.all(np.diff(nodes) > 0) and np.array_equal(nodes, -nodes[::-1])
    p, dp = sgrid._legendre(nodes[n // 2:][::97], n)  # roots of P_n: Newton's next step is below 1e-14
    assert np.abs(p / dp).max() < 1e-14
    # the asymptotic spacing near the equator: pi / (n + 1/2) in angle
    assert np.arcsin(nodes[n // 2]) - np.arcsin(nodes[n // 2 - 1]) == pytest.approx(np.pi / (n + 0.5), rel=1e-6)


# ---------------------------------------------------------------- fields and series: crafted grids

@pytest.fixture(scope="module")
def field_stream() -> bytes:
    from mscncodec.modalities import sphere as smod
    from mscncodec.modalities.sphere_codec import encode_field

    lat, lon = sgrid.gaussian_latitudes(12), sgrid.regular_longitudes(24, 0.0)
    v = 250 + 30 * np.cos(np.radians(lat))[:, None] + np.sin(np.radians(lon))[None, :]
    return encode_field(smod.SphereField(v, lat, lon, name="T", units="K"), target_bytes=900, model=SPHERE,
                        effort="fast", steps=3)


def test_a_crafted_8192_latitude_gaussian_field_decodes_quickly(field_stream):
    """The issue's stream: a real field stream's header edited to 8192 Gaussian latitudes, CRC recomputed."""
    assert bitstream.unpack(field_stream)[0]["lat_kind"] == 1
    data = edited(field_stream, nlat=bitstream.MAX_LAT)
    f, seconds = cpu(mscncodec.decode, data)
    assert not isinstance(f, MscnError), f
    assert f.values.shape == (bitstream.MAX_LAT, 24) and np.all(np.diff(f.lat) > 0) and f.lat[-1] < 90
    assert seconds < 15  # was 52 s in leggauss alone


def test_a_field_claiming_more_points_than_its_bytes_justify_is_refused_before_any_work(field_stream):
    nlon = round(8 / bitstream.MIN_BPP) * len(field_stream) // bitstream.MAX_LAT + 1  # just over 1600 per byte
    data = edited(field_stream, nlat=bitstream.MAX_LAT, nlon=nlon)
    err, seconds = cpu(mscncodec.decode, data)
    assert isinstance(err, BitstreamError) and "cannot code" in str(err) and "\n" not in str(err)
    assert seconds < 1


@pytest.fixture(scope="module")
def series_stream() -> bytes:
    from mscncodec.modalities import series as ser
    from mscncodec.modalities.series_codec import encode_series

    lat, lon = sgrid.gaussian_latitudes(8), sgrid.regular_longitudes(16, 0.0)
    v = 250 + 30 * np.cos(np.radians(lat))[None, :, None] + np.arange(4.0)[:, None, None] + 0 * lon
    f = ser.SeriesField(v, lat, lon, time=np.arange(4) * 6.0, name="T", units="K")
    return encode_series(f, target_bytes=500, model="grid3-series", effort="fast", steps=5)


def test_a_crafted_series_grid_is_bounded_by_the_stream_length(series_stream):
    n = len(series_stream)
    # 8192 Gaussian latitudes x 4 steps x 16 longitudes: within 1600 points per byte only for a long stream
    big = edited(series_stream, nlat=bitstream.MAX_LAT)
    out, seconds = cpu(mscncodec.decode, big)
    if 4 * bitstream.MAX_LAT * 16 * bitstream.MIN_BPP / 8 > n:
        assert isinstance(out, BitstreamError) and "cannot code" in str(out)
    else:
        assert not isinstance(out, MscnError) and out.values.shape == (4, bitstream.MAX_LAT, 16)
    assert seconds < 15
    # a million steps: refused from the header
    err, seconds = cpu(mscncodec.decode, edited(series_stream, steps=bitstream.MAX_STEPS))
    assert isinstance(err, BitstreamError) and seconds < 1
    # the Gaussian grid at the density limit decodes (the latitudes no longer dominate)
    nlat = min(bitstream.MAX_LAT, int(n * 8 / bitstream.MIN_BPP) // (4 * 16))
    out, seconds = cpu(mscncodec.decode, edited(series_stream, nlat=nlat))
    assert not isinstance(out, MscnError), out
    assert out.values.shape == (4, nlat, 16) and seconds < 15


def test_a_crafted_voxel_grid_is_refused_by_its_length():
    from mscncodec.modalities import voxels as vox
    from mscncodec.modalities.voxels_codec import encode_voxels

    x, y, z = np.ogrid[:16, :16, :16]
    occ = (x - 7.5) ** 2 + (y - 7.5) ** 2 + (z - 7.5) ** 2 <= 25
    data = encode_voxels(vox.VoxelGrid(occ), target_bytes=300, model="grid3-occ", effort="fast", steps=5)
    side = bitstream.MAX_VOXEL_SIDE
    err, seconds = cpu(mscncodec.decode, edited(data, dim_x=side, dim_y=side, dim_z=side))
    assert isinstance(err, LimitError) and seconds < 1  # over max_voxels (512^3) first
    err, seconds = cpu(mscncodec.decode, edited(data, dim_x=256, dim_y=256, dim_z=256))
    assert isinstance(err, BitstreamError) and "cannot code" in str(err) and seconds < 1
    # within the density rule, decoded: 1600 voxels per byte
    n = int(len(data) * 8 / bitstream.MIN_BPP)
    out, seconds = cpu(mscncodec.decode, edited(data, dim_x=n // 256, dim_y=16, dim_z=16))
    assert not isinstance(out, MscnError), out
    assert out.shape == (n // 256, 16, 16) and seconds < 15


# ---------------------------------------------------------------- meshes: the stored decoding grid

def test_justified_resolution():
    j = mesh_codec.justified_resolution
    assert j(0) == j(100) == j(1310) == 128  # the encoder's default grid, whatever the length
    assert j(4000) == 185 and j(10485) == 255 and j(10486) == 256
    assert j(83886) == 511 and j(83887) == 512 and j(10**9) == bitstream.MAX_RESOLUTION
    for n in (1311, 4000, 50_000):
        assert j(n) ** 3 <= 1600 * n < (j(n) + 1) ** 3


@pytest.fixture(scope="module")
def mesh_stream() -> bytes:
    tm = trimesh.creation.icosphere(subdivisions=2, radius=1.5)
    mesh = mmod.Mesh(np.asarray(tm.vertices), np.asarray(tm.faces, np.int64))
    return mesh_codec.encode_mesh(mesh, target_bytes=1500, model=SDF, effort="fast", steps=3, resolution=32)


@pytest.mark.parametrize("arch", ["siren", "grid3"])
def test_a_mesh_stream_asking_512_cubed_is_refused_by_default_in_one_line(mesh_stream, arch, tmp_path):
    """The issue's 4 KB stream asking 512^3 (56 s, 931 MB): refused before the model is even loaded, on both
    routes (a grid3 header with junk sections: the refusal comes first)."""
    if arch == "siren":
        data = edited(mesh_stream, resolution=512)
    else:
        from mscncodec.models import load_model

        grid3 = next(code for code, name in bitstream.ARCHS.items() if name == "grid3")
        header = dict(bitstream.unpack(mesh_stream)[0], arch=grid3, model_id=load_model("grid3-sdf").model_id,
                      resolution=512)
        data = bitstream.pack(header, [("GRD3", bytes(8)), ("LATS", bytes(3900))])
    assert len(data) < mesh_codec.justified_resolution(len(data)) ** 3  # a small stream
    err, seconds = cpu(mscncodec.decode, data)
    assert isinstance(err, LimitError) and seconds < 1, err
    msg = str(err)
    assert "512^3" in msg and "--resolution" in msg and "\n" not in msg
    (tmp_path / "x.mscn").write_bytes(data)
    r = CliRunner().invoke(main, ["decode", str(tmp_path / "x.mscn"), "-o", str(tmp_path / "x.ply")])
    assert r.exit_code == LimitError.exit_code and len(r.stderr.strip().splitlines()) == 1
    assert "--resolution" in r.stderr and not (tmp_path / "x.ply").exists()


def test_an_explicit_resolution_overrides_the_stored_grid(mesh_stream):
    data = edited(mesh_stream, resolution=512)
    m = mscncodec.decode(data, resolution=24)  # the caller's choice: bounded by max_voxels only
    assert len(m.faces) > 0
    with pytest.raises(LimitError, match="max-voxels"):
        mscncodec.decode(data, resolution=512, max_voxels=256**3)
    # the direct codec call is bounded the same way
    with pytest.raises(LimitError, match="512"):
        mesh_codec.decode_mesh(data)
    assert len(mesh_codec.decode_mesh(data, resolution=16).faces) > 0


def test_a_stored_grid_within_the_floor_decodes_by_default(mesh_stream):
    assert bitstream.unpack(mesh_stream)[0]["resolution"] == 32
    mesh_codec.check_stored_resolution(128, len(mesh_stream))  # every stream: the encoder's default
    with pytest.raises(LimitError):
        mesh_codec.check_stored_resolution(mesh_codec.justified_resolution(len(mesh_stream)) + 1, len(mesh_stream))


def test_the_encoder_never_stores_a_grid_its_stream_cannot_justify(mesh_stream):
    header, sections = bitstream.unpack(mesh_stream)
    small = mesh_codec.pack_justified(dict(header, resolution=512), list(sections.items()))
    assert len(small) == len(mesh_stream)
    assert bitstream.unpack(small)[0]["resolution"] == mesh_codec.justified_resolution(len(mesh_stream))
    assert bitstream.unpack(small)[1] == sections
    kept = mesh_codec.pack_justified(dict(header, resolution=64), list(sections.items()))
    assert bitstream.unpack(kept)[0]["resolution"] == 64
    big = [*sections.items(), ("PAD_", bytes(11_000))]
    assert bitstream.unpack(mesh_codec.pack_justified(dict(header, resolution=256), big))[0]["resolution"] == 256


def test_encode_with_a_large_resolution_stores_what_decodes():
    tm = trimesh.creation.icosphere(subdivisions=1, radius=1.0)
    mesh = mmod.Mesh(np.asarray(tm.vertices), np.asarray(tm.faces, np.int64))
    data = mesh_codec.encode_mesh(mesh, target_bytes=1500, model=SDF, effort="fast", steps=2, resolution=512)
    stored = bitstream.unpack(data)[0]["resolution"]
    assert stored == mesh_codec.justified_resolution(len(data)) < 512
    mesh_codec.check_stored_resolution(stored, len(data))  # decodes with the default bounds
