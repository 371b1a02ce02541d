"""Fast tests for the benchmarking subsystem (small synthetic images, JPEG/WebP only)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import mscncodec
from mscncodec.bench import codecs as codecs_mod
from mscncodec.bench import inr, metrics
from mscncodec.bench.bd import bd_psnr, bd_rate
from mscncodec.bench.cli import bench
from mscncodec.bench.codecs import Availability, JpegCodec, WebPCodec, resolve_codecs
from mscncodec.bench.runner import find_images, prepare_images, run_bench, run_point

# --------------------------------------------------------------------------- fixtures


def _synthetic(seed: int, h: int = 200, w: int = 232) -> np.ndarray:
    """Gradients + a few rectangles + mild noise: compresses like a photo, not like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w) + 64], axis=-1)
    for _ in range(6):
        y0, x0 = rng.integers(0, h - 40), rng.integers(0, w - 40)
        img[y0:y0 + rng.integers(10, 40), x0:x0 + rng.integers(10, 40)] = rng.integers(0, 256, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    for i in range(2):
        Image.fromarray(_synthetic(i)).save(d / f"img{i}.png")
    return d


class CountingJpeg(JpegCodec):
    """JPEG that counts encodes, to prove a cached rerun does no work."""

    calls = 0

    def encode(self, img: np.ndarray, q: int) -> bytes:
        type(self).calls += 1
        return super().encode(img, q)


class MissingCodec(JpegCodec):
    key, name = "missing", "Missing"

    @classmethod
    def available(cls) -> Availability:
        return Availability(False, "library not installed")


# --------------------------------------------------------------------------- BD


RATES = [0.1, 0.2, 0.4, 0.8, 1.6]
PSNRS = [25.0, 27.5, 30.0, 32.0, 34.1]


def test_bd_rate_of_curve_needing_10_percent_more_bits():
    # Same PSNR at exactly 1.1x the rate: +10% one way, 1/1.1 - 1 = -9.09% the other.
    worse = [r * 1.1 for r in RATES]
    assert bd_rate(RATES, PSNRS, worse, PSNRS) == pytest.approx(10.0, abs=1e-6)
    assert bd_rate(worse, PSNRS, RATES, PSNRS) == pytest.approx(-100 / 11, abs=1e-6)
    assert bd_psnr(RATES, PSNRS, worse, PSNRS) < 0


def test_bd_psnr_of_curve_shifted_by_one_db():
    better = [p + 1.0 for p in PSNRS]
    assert bd_psnr(RATES, PSNRS, RATES, better) == pytest.approx(1.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, RATES, better) < 0


def test_bd_is_nan_without_overlap_or_points():
    assert math.isnan(bd_rate(RATES, PSNRS, [5, 6], [40, 41]))
    assert math.isnan(bd_psnr(RATES, PSNRS, [0.3], [28.0]))


# --------------------------------------------------------------------------- metrics / codecs


def test_bpp_is_eight_times_bytes_over_pixels(dataset: Path):
    ref = prepare_images(find_images(dataset))[0]
    rec = run_point(JpegCodec(), ref, 1.0)
    assert "error" not in rec
    assert rec["bpp"] == pytest.approx(8 * rec["bytes"] / (ref.height * ref.width))
    assert metrics.bpp(b"x" * 100, (10, 20, 3)) == pytest.approx(4.0)
    assert rec["bpp"] <= 1.0  # search never overshoots a reachable target


def test_psnr_and_ms_ssim():
    a = _synthetic(3)
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert metrics.psnr(a, a) == math.inf
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 * a.size))
    assert 0.99 < metrics.ms_ssim(a, b) <= 1.0
    assert math.isnan(metrics.ms_ssim(a[:100, :100], b[:100, :100]))  # too small: NaN, no crash


def test_unreachable_target_falls_back_to_smallest_setting():
    img = _synthetic(4)
    codec = JpegCodec()
    q, data = codec.search_quality(img, 0.001)
    assert q == codec.qmin and data == codec.encode(img, codec.qmin)


def test_resolve_codecs_dedupes_and_rejects_unknown():
    codecs, _ = resolve_codecs("jpeg, JPEG ,webp")
    assert [c.key for c in codecs] == ["jpeg", "webp"]
    with pytest.raises(ValueError, match="unknown codec"):
        resolve_codecs("jpeg,bogus")


# --------------------------------------------------------------------------- runner


def test_outputs_schema_and_cache_resume(dataset: Path, tmp_path: Path):
    out = tmp_path / "out"
    images = find_images(dataset)
    CountingJpeg.calls = 0
    first = run_bench(images, [CountingJpeg()], out, [0.5, 1.0], plot=False, progress=False)
    assert (first.encoded, first.cached, first.failed) == (4, 0, 0)
    assert CountingJpeg.calls > 0

    data = json.loads((out / "jpeg.json").read_text())
    assert set(data) >= {"name", "description", "results"}
    res = data["results"]
    for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time", "psnr-rgb-of-mean-mse"):
        assert len(res[key]) == 2 and all(isinstance(v, float) for v in res[key]), key
    assert res["bpp"][0] < res["bpp"][1] and res["psnr-rgb"][0] < res["psnr-rgb"][1]
    assert "psnr" in data["description"].lower()
    with (out / "points.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["image"] for r in rows} == {"img0.png", "img1.png"}
    assert (out / "bd.json").exists() and (out / "bd.md").exists()

    CountingJpeg.calls = 0
    second = run_bench(images, [CountingJpeg()], out, [0.5, 1.0], plot=False, progress=False)
    assert CountingJpeg.calls == 0
    assert (second.encoded, second.cached) == (0, 4)
    assert json.loads((out / "jpeg.json").read_text()) == data


def test_report_only_codecs_keep_their_cached_points_and_compute_nothing(dataset: Path, tmp_path: Path):
    out = tmp_path / "out"
    images = find_images(dataset)
    run_bench(images, [CountingJpeg()], out, [0.5, 1.0], plot=False, progress=False)
    CountingJpeg.calls = 0
    r = run_bench(images, [CountingJpeg()], out, [0.25, 0.5, 1.0], plot=False, progress=False,
                  report_only={CountingJpeg.key})
    assert CountingJpeg.calls == 0 and (r.encoded, r.cached) == (0, 4)
    assert len(json.loads((out / "jpeg.json").read_text())["results"]["bpp"]) == 2


class RoutedJpeg(CountingJpeg):
    """A codec whose points are keyed per rate (a router), with a legacy key from before that scheme."""

    legacy = "all-routes-v1"
    routes = {0.5: "model-a", 1.0: "model-b"}

    def identity(self, target, shape):
        return self.key, "r1", {"model": self.routes[target], "shape": list(shape)}

    def legacy_versions(self, target, shape):
        return (self.legacy,)


def test_points_cached_under_a_legacy_key_are_refiled_once_and_a_new_route_reencodes_only_its_rate(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "out"
    images = find_images(dataset)
    monkeypatch.setattr(RoutedJpeg, "cache_version", lambda self, t, s: self.legacy)  # an old cache: one key
    run_bench(images, [RoutedJpeg()], out, [0.5, 1.0], plot=False, progress=False)
    monkeypatch.undo()
    RoutedJpeg.calls = 0
    lines: list[str] = []
    r = run_bench(images, [RoutedJpeg()], out, [0.5, 1.0], plot=False, progress=False, echo=lines.append)
    assert RoutedJpeg.calls == 0 and (r.encoded, r.cached) == (0, 4)  # re-filed, not re-encoded
    assert any("re-filed 4 cached points" in m for m in lines)
    recs = [json.loads(ln) for ln in (out / "cache.jsonl").read_text().splitlines()]
    refiled = {r["key"] for r in recs if "refiled_as" not in r and "|all-routes-v1|" not in r["key"]}
    assert len(refiled) == 4 and all("|r1#" in k for k in refiled)
    assert sum("refiled_as" in r for r in recs) == 4  # the old keys are retired: re-filed once only
    # the configuration changes: the legacy key (still the same) is not re-filed again, and a new route at
    # 0.5 re-encodes only 0.5
    monkeypatch.setattr(RoutedJpeg, "routes", {0.5: "model-c", 1.0: "model-b"})
    r = run_bench(images, [RoutedJpeg()], out, [0.5, 1.0], plot=False, progress=False)
    assert (r.encoded, r.cached) == (2, 2)


def test_a_routed_mscn_point_is_keyed_by_the_model_that_encodes_it():
    """mscn:grid2 at default effort: the dense-update variant on a Kodak-size image, the plain model on a
    small one (families/grid2/encoder.routed_update_fits); fast effort: the plain model."""
    from mscncodec.models import routing

    (codec,) = resolve_codecs("mscn:grid2")[0]
    (fast,) = resolve_codecs("mscn:grid2@fast")[0]
    big, small = (512, 768), (256, 256)
    dense = dict((b, n) for b, n in routing("grid2", "default"))
    assert any(n.endswith("+dense") for n in dense.values())

    def model(c, target, shape):
        return c.identity(target, shape)[2]["model"]

    assert model(codec, 0.5, big).endswith("+dense") and not model(codec, 0.5, small).endswith("+dense")
    assert not model(fast, 0.5, big).endswith("+dense")
    assert codec.cache_version(0.5, big) == codec.cache_version(0.25, big)  # one route serves both rates
    assert codec.cache_version(0.5, big) != fast.cache_version(0.5, big)
    assert codec.cache_version(0.5, big).startswith("grid2-r")  # the family's encoder revision, readable
    assert "calibration" in codec.identity(0.5, big)[2]  # grid2 aims with a rate calibration: keyed too
    # caches from before the identity scheme: the per-point key, then the configuration id
    (per_point, configuration) = codec.legacy_versions(0.5, big)
    assert model(codec, 0.5, big) in per_point and configuration.endswith(codec.model_id)
    assert resolve_codecs("mscn:grid2-l7")[0][0].legacy_versions(0.5, big) == (
        f"mscncodec-{mscncodec.__version__}-{resolve_codecs('mscn:grid2-l7')[0][0].model_id}",)


def test_unavailable_codec_is_skipped_with_notice(dataset: Path, tmp_path: Path):
    notices: list[str] = []
    result = run_bench(find_images(dataset, limit=1), [JpegCodec(), MissingCodec()], tmp_path / "o",
                       [1.0], plot=False, progress=False, echo=notices.append)
    assert [c.key for c in result.codecs] == ["jpeg"]
    assert any("skipping missing: library not installed" in n for n in notices)


def test_mscn_and_coin_drive_the_core_by_target_bpp(dataset: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    # Stand-in core (JPEG underneath) so this checks the bench's side of the API contract only.
    calls: list[tuple[float, str, bool]] = []

    def encode_image(img: np.ndarray, bpp: float, model: str, from_scratch: bool = False,
                     effort: str = "?") -> bytes:
        assert effort == "default"  # the bench passes the effort level explicitly
        calls.append((bpp, model, from_scratch))
        return JpegCodec().encode_at_bpp(img, bpp)

    fake = SimpleNamespace(encode_image=encode_image, decode=JpegCodec().decode, __version__="t")
    models = [("m1", "first", "aa"), ("m2", "", "bb")]
    known = {m[0]: m for m in models + [("random-w32d5", "provisional", "cc")]}

    def resolve(name: str) -> tuple[str, str, str]:
        if name not in known:
            raise ValueError(f"unknown model {name!r}")
        return known[name]

    monkeypatch.setattr(inr, "_core", lambda: fake)
    monkeypatch.setattr(inr.MscnCodec, "identity", lambda self, t, s: (self.key, "fake-r1", {"model": self.model}))
    monkeypatch.setattr(inr, "list_core_models", lambda: models)
    monkeypatch.setattr(codecs_mod, "list_core_models", lambda: models)
    monkeypatch.setattr(codecs_mod, "resolve_core_model", resolve)

    selected, notices = resolve_codecs("mscn,coin")
    assert [c.key for c in selected] == ["mscn-m1", "mscn-m2", "coin-random-w32d5"] and not notices
    with pytest.raises(ValueError, match="unknown model"):
        resolve_codecs("mscn:m3")
    result = run_bench(find_images(dataset, limit=1), selected, tmp_path / "o", [0.5],
                       plot=False, progress=False)
    assert result.failed == 0
    assert sorted(calls) == [(0.5, "m1", False), (0.5, "m2", False), (0.5, "random-w32d5", True)]
    assert "mscn-m1" in result.bd["references"]  # first mscn codec is a BD reference


# --------------------------------------------------------------------------- CLI


def test_cli_runs_jpeg_and_webp(dataset: Path, tmp_path: Path):
    out = tmp_path / "bench-out"
    r = CliRunner().invoke(bench, [str(dataset), "--out", str(out), "--codecs", "jpeg,webp",
                                   "--points", "0.5,1.0"])
    assert r.exit_code == 0, r.output
    for name in ("jpeg.json", "webp.json", "points.csv", "bd.md", "bd.json", "rd.png", "cache.jsonl"):
        assert (out / name).is_file(), name
    bd = json.loads((out / "bd.json").read_text())
    assert "webp" in bd["references"]["jpeg"]["codecs"]
    assert "BD-rate" in r.output and "bench: 2 images x 2 codecs x 2 points" in r.output


def test_cli_unknown_codec_is_a_one_line_error(dataset: Path, tmp_path: Path):
    r = CliRunner().invoke(bench, [str(dataset), "--out", str(tmp_path / "o"), "--codecs", "jpeg,nope"])
    assert r.exit_code != 0
    assert "unknown codec 'nope'" in r.output and "Traceback" not in r.output


def test_cli_empty_dataset_is_a_one_line_error(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(bench, [str(empty), "--out", str(tmp_path / "o"), "--codecs", "jpeg"])
    assert r.exit_code != 0
    assert "no images" in r.output and "Traceback" not in r.output


def test_cli_skips_unavailable_codec(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(WebPCodec, "available", classmethod(lambda cls: Availability(False, "no libwebp")))
    out = tmp_path / "o"
    r = CliRunner().invoke(bench, [str(dataset), "--out", str(out), "--codecs", "jpeg,webp",
                                   "--points", "1.0", "--no-plot", "--limit", "1"])
    assert r.exit_code == 0, r.output
    assert "skipping webp: no libwebp" in r.output
    assert (out / "jpeg.json").exists() and not (out / "webp.json").exists()


def test_effort_suffix_selects_an_effort_level():
    selected, _ = resolve_codecs("mscn:random-w32d5@fast")
    (codec,) = selected
    assert codec.key == "mscn-random-w32d5_fast"
    assert codec.model == "random-w32d5" and codec.effort == "fast"
    assert "effort fast" in codec.description


# --------------------------------------------------------------------------- defaults, estimate, crops


def test_cli_prints_the_estimate_first_and_refines_it(dataset: Path, tmp_path: Path):
    r = CliRunner().invoke(bench, [str(dataset), "--out", str(tmp_path / "o"), "--codecs", "jpeg,webp",
                                   "--points", "0.5,1.0", "--no-plot"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("estimated time: about"))
    assert "8 points on 2 images" in lines[first] and "refined after the first image" in lines[first]
    refined = [i for i, line in enumerate(lines) if line.startswith("first image done in")]
    assert len(refined) == 1 and refined[0] > first and "left" in lines[refined[0]]
    assert first < next(i for i, line in enumerate(lines) if "BD-rate" in line)


def test_cli_writes_crops_png_beside_rd_png(dataset: Path, tmp_path: Path):
    out = tmp_path / "o"
    r = CliRunner().invoke(bench, [str(dataset), "--out", str(out), "--codecs", "jpeg,webp",
                                   "--points", "0.25,1.0", "--no-anchors"])
    assert r.exit_code == 0, r.output
    assert (out / "rd.png").is_file() and (out / "crops.png").is_file()
    with Image.open(out / "crops.png") as im:
        assert im.size[0] > 300 and im.size[1] > 200
    assert not (tmp_path / "p").exists()
    r = CliRunner().invoke(bench, [str(dataset), "--out", str(tmp_path / "p"), "--codecs", "jpeg",
                                   "--points", "1.0", "--no-plot"])
    assert r.exit_code == 0 and not (tmp_path / "p" / "crops.png").exists()


def test_crops_pick_each_codecs_point_closest_to_the_crop_rate():
    from mscncodec.bench.crops import CROP_BPP, closest_targets, detail_box

    recs = [{"codec": "jpeg", "image": "a.png", "target_bpp": t, "bpp": b}
            for t, b in ((0.1, 0.19), (0.25, 0.239), (0.5, 0.47))]
    recs += [{"codec": "webp", "image": "a.png", "target_bpp": 1.0, "bpp": 0.97},
             {"codec": "webp", "image": "b.png", "target_bpp": 0.25, "bpp": 0.25}]
    picked = closest_targets(recs, "a.png", [JpegCodec(), WebPCodec()], CROP_BPP)
    assert [(c.key, t) for c, t in picked] == [("jpeg", 0.25), ("webp", 1.0)]
    img = np.zeros((300, 400, 3), np.uint8)
    img[192:256, 256:320] = np.random.default_rng(0).integers(0, 256, (64, 64, 3))  # the only detail
    top, left, side = detail_box(img)
    assert side == 128 and top <= 192 and top + side >= 256 and left <= 256 and left + side >= 320
    assert detail_box(img[:50, :70])[2] == 50


def test_default_codecs_and_points_are_the_documented_ones(dataset: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    from mscncodec.bench import cli as bench_cli

    assert bench_cli.DEFAULT_CODECS == "jpeg,jpeg444,webp,jpeg2000,avif,heic,jxl,mscn:auto@fast"
    assert bench_cli.DEFAULT_INR_POINTS == (0.1, 0.25, 0.5, 0.75, 1.0)
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8").split())
    assert bench_cli.DEFAULT_CODECS in readme and "0.1, 0.25, 0.5, 0.75 and 1.0 bpp" in readme
    seen: list[dict] = []

    def fake_run_bench(images, codecs, out, points, **kw):
        seen.append({"codecs": [c.key for c in codecs], "points": points, "slow": kw["slow_points"]})
        raise bench_cli.BenchError("stop here")

    monkeypatch.setattr(bench_cli, "run_bench", fake_run_bench)
    CliRunner().invoke(bench, [str(dataset), "--out", str(tmp_path / "o")])
    CliRunner().invoke(bench, [str(dataset), "--out", str(tmp_path / "o"), "--full", "--codecs", "jpeg"])
    plain, full = seen
    assert plain["codecs"] == ["jpeg", "jpeg444", "webp", "jpeg2000", "avif", "heic", "jxl", "mscn-auto_fast"]
    assert plain["points"] == list(bench_cli.DEFAULT_POINTS) and plain["slow"] == [0.1, 0.25, 0.5, 0.75, 1.0]
    assert full["codecs"] == ["jpeg"] and full["slow"] is None  # --full: mscn gets every --points target


def test_estimate_sums_the_table_and_refines_once_after_the_first_image():
    from mscncodec.bench.estimate import format_duration, make_estimate, point_seconds, seconds_per_mp

    jpeg, webp = JpegCodec(), WebPCodec()
    tasks = [(c, name, 1000, 1000) for name in ("a", "b") for c in (jpeg, webp)]
    est = make_estimate(tasks, workers=1)
    assert est.total() == pytest.approx(2 * (seconds_per_mp(jpeg) + seconds_per_mp(webp)))
    assert point_seconds(jpeg, 500, 500) == pytest.approx(seconds_per_mp(jpeg) / 4)
    (fast,) = resolve_codecs("mscn:random-w32d5@fast")[0]
    (slow,) = resolve_codecs("mscn:random-w32d5")[0]
    assert seconds_per_mp(fast) < seconds_per_mp(slow)
    assert est.done(0) is None and est.done(2) is None  # the second image's point does not finish the first
    line = est.done(1)
    assert line and line.startswith("first image done in") and est.done(3) is None
    assert format_duration(30) == "30 s" and format_duration(600) == "10 min" and format_duration(7500) == "2 h 05 min"
