"""Field series on grid3 (issue 29): one stream for a whole time series, the time coordinate and missing values
back on decode, one step decoded alone, the routing from the field encoder, the CLI, and bounded decoding. The
model is a seeded grid3 decoder (fast); the trained start's quality is measured by the bench, not here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mscncodec import models
from mscncodec.cli import main
from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError, MscnError
from mscncodec.families.grid2.volume.config import Vol3Config
from mscncodec.families.grid2.volume.model import fresh_vol3_model
from mscncodec.modalities import series as ser
from mscncodec.modalities import series_codec as sc
from mscncodec.modalities.sphere_codec import encode_field
from tests.modalities.test_series_io import TIMES, write_series_nc

MODEL = fresh_vol3_model(Vol3Config(levels=3, periodic=(False, False, True)), name="t-series", modality="series")


@pytest.fixture(autouse=True)
def _known_model(monkeypatch):
    """The seeded model is what the zoo finds for series streams (decoders look models up by id)."""
    real_find, real_list = models.find_by_id, models.list_models
    monkeypatch.setattr(models, "find_by_id", lambda i: MODEL if i == MODEL.model_id else real_find(i))
    monkeypatch.setattr(models, "list_models", lambda: [MODEL, *real_list()])


@pytest.fixture(scope="module")
def nc_file(tmp_path_factory) -> Path:
    return write_series_nc(tmp_path_factory.mktemp("series") / "ts.nc")


def _encode(nc_file, **kw):
    return sc.encode_series(nc_file, target_bytes=kw.pop("target_bytes", 900), model=MODEL, effort="fast", steps=30, **kw)


def test_round_trip_keeps_time_and_missing_values(nc_file):
    data = _encode(nc_file)
    assert len(data) <= 900
    rec = sc.decode_series(data)
    ref = ser.load_series(nc_file)
    assert rec.values.shape == ref.values.shape
    assert np.array_equal(rec.time, TIMES) and rec.time_attrs == ref.time_attrs
    assert np.array_equal(np.isnan(rec.values), np.isnan(ref.values))
    assert sc.encode_series(nc_file, target_bytes=900, model=MODEL, effort="fast", steps=30) == data  # deterministic


def test_one_step_decodes_alone_and_equals_the_full_decode(nc_file):
    data = _encode(nc_file)
    full, one = sc.decode_series(data), sc.decode_series(data, time=3)
    assert one.values.shape == (1,) + full.values.shape[1:] and one.time[0] == full.time[3]
    assert np.allclose(one.values, full.values[3:4], atol=1e-4, equal_nan=True)
    with pytest.raises(MscnError, match="out of range"):
        sc.decode_series(data, time=6)


def test_a_time_range_selects_steps(nc_file):
    rec = sc.decode_series(_encode(nc_file, time="1:4"))
    assert rec.values.shape[0] == 3 and np.array_equal(rec.time, TIMES[1:4])


def test_the_field_encoder_routes_whole_files_and_ranges_to_series(nc_file):
    head = lambda d: bitstream.unpack(d)[0]["modality"]  # noqa: E731
    assert head(encode_field(nc_file, target_bytes=900, model=MODEL, effort="fast", steps=10, var="TS")) == sc.MODALITY_CODE
    assert head(encode_field(nc_file, target_bytes=900, model=MODEL, effort="fast", steps=10, var="TS", time="0:2")) == sc.MODALITY_CODE


def test_short_or_corrupt_streams_are_refused(nc_file):
    data = _encode(nc_file)
    header, sections = bitstream.unpack(data)
    big = bitstream.pack(dict(header, steps=100000), list(sections.items()))
    with pytest.raises(BitstreamError, match="cannot code"):
        sc.decode_series(big)
    with pytest.raises(BitstreamError):
        sc.decode_series(data[:-3])


def test_describe_names_the_steps(nc_file):
    d = sc.describe(_encode(nc_file))
    assert "6 steps" in d["header"]["variable"] and "lambda" in d["header"]


def test_cli_encodes_a_range_and_decodes_one_step(nc_file, tmp_path, monkeypatch):
    monkeypatch.setattr(sc, "pick_model", lambda model=None, target_bytes=None, points=None: MODEL)
    out = tmp_path / "ts.mscn"
    r = CliRunner().invoke(main, ["encode", str(nc_file), "-o", str(out), "--bytes", "900", "--time", "0:4", "--var", "TS",
                                  "--effort", "fast", "--steps", "10", "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["decode", str(out), "-o", str(tmp_path / "two.nc"), "--time", "2"])
    assert r.exit_code == 0, r.output
    back = ser.load_series(tmp_path / "two.nc")
    assert back.values.shape[0] == 1 and back.time[0] == TIMES[2]
    r = CliRunner().invoke(main, ["decode", str(out), "-o", str(tmp_path / "x.nc"), "--time", "9"])
    assert r.exit_code != 0 and "out of range" in r.output and "Traceback" not in r.output


def test_the_start_is_picked_by_the_rates_it_was_trained_for(monkeypatch, tmp_path):
    """Two starts, one trained at low rates, one at high: a target's bits per point picks the nearer one."""
    import dataclasses

    from mscncodec import models as zoo

    low = dataclasses.replace(MODEL, name="t-low", meta={"calibration_points": [{"bits_per_point": 0.03},
                                                                               {"bits_per_point": 0.1}]})
    high = dataclasses.replace(MODEL, name="t-high", meta={"calibration_points": [{"bits_per_point": 0.3},
                                                                                 {"bits_per_point": 0.9}]})
    for m in (low, high):
        (tmp_path / f"{m.name}.pt").write_bytes(b"")
    monkeypatch.setattr(zoo, "models_dir", lambda: tmp_path)
    monkeypatch.setattr(zoo, "load_model", lambda name: {"t-low": low, "t-high": high}[name])
    points = 32 * 64 * 128
    assert sc.pick_model(None, points * 4 / 300, points).name == "t-low"  # 300x: 0.107 bits per point
    assert sc.pick_model(None, points * 4 / 50, points).name == "t-high"  # 50x: 0.64
