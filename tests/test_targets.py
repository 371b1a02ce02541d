"""Error targets (mscncodec.targets; `mscn encode --rmse/--max-error/--psnr/--chamfer`): the search over byte
targets on synthetic encoders, and real encodes met (the output decoded and measured here) or refused."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mscncodec import targets
from mscncodec.cli import main
from mscncodec.errors import MscnError, RateError
from mscncodec.targets import RANGES, Target, TargetError, search_bytes

from conftest import REPO, synthetic_image

FIELD = REPO / "examples" / "field.nc"
SHAPE = REPO / "examples" / "shape.obj"
FAST = ["--effort", "fast", "--steps", "2"]


# ---------------------------------------------------------------- search_bytes on synthetic encoders

class Codec:
    """A stand-in encoder: a stream of min(n, cap) bytes whose measured value is `value(len)`; byte
    targets under `floor` are refused with a RateError (an encoder's minimum). Records every call."""

    def __init__(self, value, floor: int = 0, cap: int = 10**9):
        self.value, self.floor, self.cap, self.asked = value, floor, cap, []

    def encode_at(self, n: int) -> tuple[bytes, dict]:
        self.asked.append(n)
        if n < self.floor:
            raise RateError(f"target {n} bytes is below this codec's minimum")
        size = min(n, self.cap)
        return bytes(size), {"value": self.value(size)}

    @staticmethod
    def measure(data: bytes, report: dict) -> float:
        return report["value"]


def _search(target, codec, **kw):
    kw = {"start": 50, "lo": 1, "hi": 10_000, **kw}
    return search_bytes(target, codec.encode_at, codec.measure, **kw)


def _smallest_meeting(found, target) -> None:
    """The stream chosen met the target and no smaller probe did."""
    assert target.met(found.value)
    sizes = [p.bytes for p in found.probes if p.met]
    assert len(found.data) == min(sizes)
    assert all(not p.met for p in found.probes if 0 < p.bytes < len(found.data))


def test_monotone_error_brackets_upward_and_finds_the_smallest_stream():
    codec = Codec(lambda n: 137.0 / n)  # meets 1.0 from 137 bytes on
    t = Target("rmse", 1.0)
    found = _search(t, codec)
    _smallest_meeting(found, t)
    assert 137 <= len(found.data) <= 137 * 1.06
    assert codec.asked[:3] == [50, 100, 200]  # doubling from the start until the first hit


def test_a_start_that_meets_brackets_downward():
    codec = Codec(lambda n: 137.0 / n)
    t = Target("rmse", 1.0)
    found = _search(t, codec, start=2000)
    _smallest_meeting(found, t)
    assert codec.asked[:4] == [2000, 1000, 500, 250]  # halving until the first miss
    assert 137 <= len(found.data) <= 137 * 1.06


def test_psnr_is_higher_is_better():
    codec = Codec(lambda n: 10 * math.log10(n))  # 20 dB from 100 bytes on
    t = Target("psnr", 20.0)
    found = _search(t, codec, start=30)
    _smallest_meeting(found, t)
    assert 100 <= len(found.data) <= 106


def test_non_monotone_error_keeps_the_smallest_meeting_probe():
    # a dip: 200..299 bytes meet, 300..799 do not, 800 on meet again
    codec = Codec(lambda n: 0.5 if 200 <= n < 300 or n >= 800 else 2.0)
    t = Target("max_abs", 1.0)
    found = _search(t, codec, start=100)
    _smallest_meeting(found, t)
    assert len(found.data) == 200  # the dip's edge, though larger streams up to 799 bytes miss


def test_nothing_up_to_the_cap_meets_but_a_smaller_stream_does():
    # a mesh-like codec: the coarse update decodes closer than the dense one routed at larger targets
    codec = Codec(lambda n: 0.01 if n <= 1200 else 0.02)
    t = Target("chamfer", 0.015)
    found = _search(t, codec, start=4000, lo=64, hi=64_000)
    _smallest_meeting(found, t)
    assert len(found.data) <= 1200 and len(codec.asked) <= 8


def test_the_downward_retry_stops_when_smaller_streams_get_worse():
    codec = Codec(lambda n: 100.0 / n)
    t = Target("rmse", 0.001)
    with pytest.raises(TargetError):
        _search(t, codec, start=1000, hi=8000)
    assert codec.asked == [1000, 2000, 4000, 8000, 500]  # up to the cap, one step down, worse: stop


def test_refusal_names_the_best_value_and_its_size():
    codec = Codec(lambda n: 100.0 / n, cap=5000)  # tops out at 5000 bytes: 0.02
    t = Target("rmse", 0.001, "K")
    with pytest.raises(TargetError) as e:
        _search(t, codec, start=1000, hi=8000)
    msg = str(e.value)
    assert "\n" not in msg
    assert "area-weighted RMSE <= 0.001 K not reachable" in msg
    assert "best reached is 0.02 K at 5,000 bytes" in msg
    assert e.value.exit_code == 4 and isinstance(e.value, RateError)


def test_refusal_when_no_stream_can_be_written():
    codec = Codec(lambda n: 0.0, floor=10**6)
    with pytest.raises(TargetError, match="no stream could be written"):
        _search(Target("rmse", 1.0), codec)


def test_byte_targets_stay_in_lo_hi():
    codec = Codec(lambda n: 137.0 / n)
    t = Target("rmse", 1.0)
    found = _search(t, codec, start=5, lo=20, hi=150)  # the start is under lo: clamped
    assert codec.asked[0] == 20
    assert all(20 <= n <= 150 for n in codec.asked)
    _smallest_meeting(found, t)
    codec = Codec(lambda n: 137.0 / n)
    with pytest.raises(TargetError, match="best reached is 1.37 at 100 bytes"):
        _search(t, codec, start=5000, lo=20, hi=100)  # the start is over hi: clamped; 100 bytes miss
    assert codec.asked[0] == 100 and max(codec.asked) == 100


def test_rate_errors_count_as_misses():
    codec = Codec(lambda n: 137.0 / n, floor=150)  # under 150 bytes the encoder refuses
    t = Target("rmse", 1.0)
    found = _search(t, codec, start=800)
    refused = [p for p in found.probes if p.bytes == 0]
    assert refused and all(not p.met and math.isnan(p.value) and p.target_bytes < 150 for p in refused)
    _smallest_meeting(found, t)
    assert 150 <= len(found.data) <= 160


def test_max_tries_is_respected_and_reported():
    for tries in (1, 3, 5):
        codec = Codec(lambda n: 137.0 / n)
        found = _search(Target("rmse", 1.0), codec, start=150, max_tries=tries)  # 150 meets at once
        assert len(codec.asked) <= tries and len(found.probes) == len(codec.asked)
    codec = Codec(lambda n: 137.0 / n)
    with pytest.raises(TargetError, match="2 encodes, byte targets 50 to 100 of at most 10,000"):
        _search(Target("rmse", 1.0), codec, max_tries=2)
    assert codec.asked == [50, 100]


def test_on_probe_sees_every_probe():
    seen = []
    codec = Codec(lambda n: 137.0 / n)
    found = _search(Target("rmse", 1.0), codec, on_probe=seen.append)
    assert seen == found.probes and [p.target_bytes for p in seen] == codec.asked


@pytest.mark.parametrize("metric, value", [("rmse", 0), ("rmse", -1.0), ("psnr", float("nan")),
                                           ("chamfer", float("inf")), ("max_abs", True), ("ssim", 0.9)])
def test_bad_targets_are_one_line_errors(metric, value):
    with pytest.raises(MscnError) as e:
        Target(metric, value)
    assert "\n" not in str(e.value)


def test_one_error_target_at_a_time():
    assert targets.requested(rmse=None, psnr=None) is None
    assert targets.requested(rmse=0.5, psnr=None) == Target("rmse", 0.5)
    assert targets.requested(max_error=2.0).metric == "max_abs"
    with pytest.raises(MscnError, match="give only one of --rmse or --psnr"):
        targets.requested(rmse=0.5, psnr=30.0)


def test_range_starts_are_each_codecs_quality_50_size():
    from mscncodec.modalities import mesh_codec, series_codec, sphere_codec
    from mscncodec.modalities.image_codec import nominal_bpp

    points = 1000 * 8  # a multiple of 8: bits per point are whole bytes
    assert RANGES["image"].bytes(points)[0] == math.ceil(nominal_bpp(50) * points / 8)
    assert RANGES["sphere"].bytes(10**6)[0] == sphere_codec.quality_bytes(50)
    assert RANGES["series"].bytes(points)[0] == round(series_codec.quality_bytes(50, points))
    assert RANGES["mesh"].bytes(0)[0] == mesh_codec.quality_bytes(50)
    # caps: images 4 bpp, fields the raw float32 size / 4; a start over the cap is held to it
    assert RANGES["image"].bytes(points)[2] == points // 2
    assert RANGES["sphere"].bytes(64 * 128) == (3000, math.ceil(64 * 128 * 0.005 / 8), 64 * 128)
    assert RANGES["sphere"].bytes(16 * 32)[0] == 16 * 32


# ---------------------------------------------------------------- real encodes through the CLI

@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    p = tmp_path / "a.png"
    Image.fromarray(synthetic_image(32, 32, seed=5)).save(p)
    return p


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def _one_line_error(result, code: int, words: str) -> None:
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.startswith("mscn: error:")]
    assert len(lines) == 1 and words.lower() in lines[0].lower(), result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_psnr_target_on_an_image_is_met_on_the_decoded_file(runner, tmp_path, image):
    out, png = tmp_path / "a.mscn", tmp_path / "a-dec.png"
    enc = runner.invoke(main, ["encode", str(image), "-o", str(out), "--psnr", "22", *FAST])
    assert enc.exit_code == 0, (enc.output, enc.exception)
    probes = [ln for ln in enc.stderr.splitlines() if "bytes asked" in ln]
    assert len(probes) >= 2 and all("PSNR" in ln or "refused" in ln for ln in probes)  # each: bytes and value
    r = runner.invoke(main, ["decode", str(out), "-o", str(png)])
    assert r.exit_code == 0, (r.output, r.exception)
    measured = _psnr(np.asarray(Image.open(image).convert("RGB")), np.asarray(Image.open(png).convert("RGB")))
    assert measured >= 22
    # the summary names the target, the value measured on the decoded file, its size and the encodes
    assert f"target PSNR >= 22 dB met: {measured:.4g} dB at {out.stat().st_size:,} bytes (search: " \
           f"{len(probes)} encodes)" in enc.stdout


def test_unreachable_target_is_refused_with_exit_4_and_no_file(runner, tmp_path, image):
    out = tmp_path / "a.mscn"
    r = runner.invoke(main, ["encode", str(image), "-o", str(out), "--psnr", "90", *FAST])
    _one_line_error(r, 4, "PSNR >= 90 dB not reachable: the best reached is")
    assert "bytes" in r.stderr.splitlines()[-1]
    assert not out.exists() and list(tmp_path.iterdir()) == [image]


def test_rmse_target_on_a_field_is_met_on_the_decoded_file(runner, tmp_path):
    import xarray as xr

    from mscncodec.modalities.sphere_grid import area_weights

    out, nc = tmp_path / "f.mscn", tmp_path / "f.nc"
    r = runner.invoke(main, ["encode", str(FIELD), "-o", str(out), "--rmse", "1.8", *FAST])
    assert r.exit_code == 0, (r.output, r.exception)
    r2 = runner.invoke(main, ["decode", str(out), "-o", str(nc)])
    assert r2.exit_code == 0, (r2.output, r2.exception)
    with xr.open_dataset(FIELD, decode_times=False) as a, xr.open_dataset(nc, decode_times=False) as b:
        ref, rec, lat = (np.asarray(a["T2m"], np.float64), np.asarray(b["T2m"], np.float64),
                         np.asarray(a["lat"]))
    w = area_weights(lat, ref.shape[1])
    rmse = float(np.sqrt(np.sum(w * (rec - ref) ** 2) / np.sum(w)))
    assert rmse <= 1.8
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("target "))
    assert line.startswith("target area-weighted RMSE <= 1.8 K met: ")
    assert f"{rmse:.4g} K at {out.stat().st_size:,} bytes" in line


@pytest.mark.parametrize("args, words", [
    (["--psnr", "30", "--bytes", "500"], "give only one of --bytes or --psnr"),
    (["--psnr", "30", "--quality", "50"], "give only one of --quality or --psnr"),
    (["--psnr", "30", "--bpp", "1"], "give only one of --bpp or --psnr"),
    (["--psnr", "30", "--rmse", "1"], "give only one of --rmse or --psnr"),
    (["--rmse", "1"], "--rmse applies to fields and field series, not to images"),
    (["--chamfer", "0.01"], "--chamfer applies to meshes, not to images"),
    (["--psnr", "-3"], "the PSNR target must be a positive number"),
])
def test_option_errors_are_one_line(runner, tmp_path, image, args, words):
    out = tmp_path / "a.mscn"
    r = runner.invoke(main, ["encode", str(image), "-o", str(out), *args, *FAST])
    _one_line_error(r, 1, words)
    assert not out.exists()


def test_a_target_of_another_modality_is_refused_before_any_encode(runner, tmp_path):
    r = runner.invoke(main, ["encode", str(SHAPE), "-o", str(tmp_path / "m.mscn"), "--psnr", "30", *FAST])
    _one_line_error(r, 1, "--psnr applies to images, not to meshes")
    r = runner.invoke(main, ["encode", str(FIELD), "-o", str(tmp_path / "f.mscn"), "--chamfer", "0.01", *FAST])
    _one_line_error(r, 1, "--chamfer applies to meshes, not to fields")


def test_api_error_target_returns_the_stream_and_the_search(tmp_path):
    from mscncodec.api import decode, encode

    img = synthetic_image(32, 32, seed=5)
    data, report = encode(img, psnr=21.0, effort="fast", steps=2, return_report=True)
    t = report["target"]
    assert t["metric"] == "psnr" and t["measured"] == report["psnr"] >= 21.0
    assert t["encodes"] == len(t["probes"]) >= 2 and report["bytes"] == len(data)
    assert _psnr(img, decode(data)) == pytest.approx(report["psnr"], abs=1e-9)
    met = [b for _, b, v in t["probes"] if v >= 21.0]
    assert len(data) == min(met)


@pytest.mark.slow
def test_chamfer_target_on_a_mesh_is_met_or_refused_as_measured(runner, tmp_path):
    from mscncodec.modalities import mesh as mmod
    from mscncodec.modalities.mesh_codec import decode_mesh
    from mscncodec.modalities.mesh_metrics import chamfer_l1

    out = tmp_path / "m.mscn"
    r = runner.invoke(main, ["encode", str(SHAPE), "-o", str(out), "--chamfer", "0.012", "--resolution", "32",
                             "--effort", "fast", "--steps", "0"])
    ref, _ = mmod.solid(mmod.load(SHAPE), str(SHAPE))
    if r.exit_code == 0:
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith("target "))
        measured = chamfer_l1(ref, decode_mesh(out.read_bytes()), n_samples=30_000)  # the report's definition
        assert measured <= 0.012
        assert line.startswith(f"target Chamfer-L1 <= 0.012 of the diagonal met: {measured:.4g} of the diagonal")
    else:
        _one_line_error(r, 4, "Chamfer-L1 <= 0.012 of the diagonal not reachable")
        assert not out.exists()
        best = float(r.stderr.split("the best reached is ")[1].split()[0])
        assert best > 0.012


@pytest.mark.slow
def test_batch_mode_takes_the_target_to_every_input_and_fails_those_it_does_not_fit(runner, tmp_path, image):
    out = tmp_path / "out"
    r = runner.invoke(main, ["encode", str(image), str(SHAPE), "--out-dir", str(out), "--psnr", "21", *FAST])
    assert r.exit_code != 0
    assert "--psnr applies to images, not to meshes" in r.stderr
    assert (out / "a.mscn").exists() and not (out / "shape.mscn").exists()
    assert "target PSNR >= 21 dB met" in r.output


def test_a_codec_that_tops_out_stops_the_upward_search():
    codec = Codec(lambda n: 100.0 / n, cap=300)  # writes at most 300 bytes, whatever the target
    with pytest.raises(TargetError, match=r"best reached is 0.3333 at 300 bytes .*larger targets gave the same "
                                          r"300-byte stream"):
        _search(Target("rmse", 0.01), codec, start=400)
    assert codec.asked[:3] == [400, 800, 1600] and 3200 not in codec.asked


def test_a_multi_step_netcdf_variable_is_searched_as_a_series():
    from mscncodec.modalities import by_name

    nc = REPO.parent / "shared/data/spherical/ccsm-ts-monthly/b003_TS_200-299.nc"
    if not nc.is_file():
        pytest.skip(f"{nc} not present")
    kind, points, units = targets._signal(by_name("sphere"), nc, {"time": "0:4"})
    assert (kind, points, units) == ("series", 4 * 64 * 128, "K")
    assert targets._signal(by_name("sphere"), nc, {"time": "3"})[:2] == ("sphere", 64 * 128)
    assert targets._signal(by_name("sphere"), FIELD, {})[:2] == ("sphere", 64 * 128)
