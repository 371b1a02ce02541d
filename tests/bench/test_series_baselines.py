"""The series bench's baselines: SZ3 and zfp 3-D at or under a total byte target, decoding to the series'
shape with its missing values; JPEG 2000 per field (the size is the sum of the steps' streams, an
unreachable target is refused); ratio -> byte targets; the report files and the cache."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from mscncodec.bench import fields as fb
from mscncodec.bench import series as sb
from mscncodec.errors import RateError
from mscncodec.modalities import sphere_grid as sgrid
from mscncodec.modalities.series import SeriesField

T, NLAT, NLON = 6, 16, 32


@pytest.fixture(scope="module")
def series() -> SeriesField:
    lat, lon = sgrid.gaussian_latitudes(NLAT), sgrid.regular_longitudes(NLON, 0.0)
    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    rng = np.random.default_rng(0)
    v = np.stack([250 + 40 * np.cos(la) + 5 * np.sin(2 * lo + 0.3 * t) + rng.normal(0, 0.3, la.shape)
                  for t in range(T)])
    v[1, 3, 4] = v[4, 10, 20] = np.nan
    return SeriesField(v, lat, lon, time=np.arange(T) * 365.0, name="TS", units="K")


@pytest.mark.parametrize("codec", [sb.Sz3Series(), sb.ZfpSeries(), sb.ZfpSeries(center=True)],
                         ids=lambda c: c.key)
def test_error_bounded_3d_fits_and_keeps_missing(codec, series):
    if not codec.available():
        pytest.skip(codec.available().reason)
    target = sb.ratio_to_bytes(series.shape, 10)
    data, rec = codec.code(series, target)
    assert len(data) <= target and len(data) > (0.8 if codec.key == "sz3-3d" else 0.5) * target  # zfp: coarse steps
    assert rec.shape == series.shape and np.array_equal(np.isnan(rec), series.mask)
    err = np.abs(rec - series.values)[~series.mask]
    assert err.max() < 0.2 * np.nanmax(np.abs(series.values - np.nanmean(series.values)))
    finer = codec.decode(codec.encode(series, 3 * target), series)
    assert np.nanmean((finer - series.values) ** 2) < np.nanmean((rec - series.values) ** 2)


def test_error_bounded_unreachable_target_is_refused(series):
    with pytest.raises(RateError, match="below"):
        sb.Sz3Series().encode(series, 10)


def test_jpeg2000_per_field_total_is_the_sum_of_the_steps(series):
    target = 6 * 700
    for codestream in (False, True):
        codec = sb.Jpeg2000PerField(codestream=codestream)
        data, rec = codec.code(series, target)
        parts = [codec.inner.encode(series.field(k), target // T) for k in range(T)]
        assert data == b"".join(parts) and len(data) == sum(map(len, parts)) <= target
        assert all(len(p) <= target // T for p in parts)
        assert rec.shape == series.shape and np.array_equal(np.isnan(rec), series.mask)
        assert np.nanmax(np.abs(rec - series.values)) < 10
        if codestream:
            assert all(p[8:10] == b"\xff\x4f" for p in parts)  # bare codestreams, no JP2 boxes
    with pytest.raises(RateError, match="coarsest"):
        sb.Jpeg2000PerField().encode(series, 6 * 40)  # 40 bytes a step: under any JPEG 2000 stream


def test_ratio_to_bytes():
    assert sb.raw_bytes((32, 64, 128)) == 1 << 20
    assert sb.ratio_to_bytes((32, 64, 128), 100) == 10485 and sb.ratio_to_bytes((110, 64, 128), 50) == 72089
    assert [t for t, _ in sb.default_targets(SeriesField(np.zeros((2, 4, 8)), np.array([-80, -30, 30, 80.0]),
                                                         np.arange(8) * 45.0), None, (1, 2))] == [256, 128]
    with pytest.raises(Exception, match="ratio"):
        sb.ratio_to_bytes((2, 2, 2), 0)


def test_mscn_series_availability_follows_the_module():
    present = importlib.util.find_spec("mscncodec.modalities.series_codec") is not None
    a = sb.MscnSeries.available()
    if not present:
        assert not a and "series_codec" in a.reason


def test_bench_writes_reports_and_reuses_the_cache(series, tmp_path):
    codecs = [sb.Sz3Series(), sb.Jpeg2000PerField(), sb.MscnSeries(effort="fast", steps=20)]  # the bench, not the fit
    plot = importlib.util.find_spec("matplotlib") is not None
    recs = sb.run_series_bench([("ts", series)], codecs, ratios=(10, 1000), out=tmp_path, plot=plot, echo=None)
    assert {r["codec"] for r in recs} <= {"sz3-3d", "jpeg2000", codecs[2].key} and len(recs) >= 4
    j2k_small = next(r for r in recs if r["codec"] == "jpeg2000" and r["nominal_ratio"] == 1000)
    assert j2k_small.get("unreachable") and "rmse" not in j2k_small
    for name in ("results.json", "results.csv", "summary.md", "cache.jsonl") + (("rd.png",) if plot else ()):
        assert (tmp_path / name).is_file()
    summary = (tmp_path / "summary.md").read_text()
    assert "unreachable" in summary and "| 10 | 1228 | sz3-3d |" in summary
    out = json.loads((tmp_path / "results.json").read_text())["records"]
    assert next(r for r in out if r["codec"] == "sz3-3d")["rmse_vs_sz3"] == 1.0
    lines = (tmp_path / "cache.jsonl").read_text().count("\n")

    class Boom(sb.Sz3Series):
        def encode(self, f, target_bytes):
            raise AssertionError("a cached point was measured again")

    sb.run_series_bench([("ts", series)], [Boom()], ratios=(10, 1000), out=tmp_path, plot=False, echo=None)
    assert (tmp_path / "cache.jsonl").read_text().count("\n") == lines


def test_filling_matches_the_fields_bench(series):
    v = fb._filled(series)
    assert np.isfinite(v).all() and np.isclose(v[1, 3, 4], np.nanmean(series.values))
