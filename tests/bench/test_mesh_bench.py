"""Mesh metrics and the mesh bench (Draco baselines only; meshes built here with trimesh.creation)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("igl")

from mscncodec.bench import mesh as mb  # noqa: E402
from mscncodec.modalities import mesh_metrics as mm  # noqa: E402

def _missing(*mods: str) -> bool:
    import importlib.util

    return any(importlib.util.find_spec(m) is None for m in mods)


# libigl is needed by every metric; the codecs also need DracoPy (and the decimator)
needs_codecs = pytest.mark.skipif(_missing("DracoPy", "fast_simplification"),
                                  reason="DracoPy / fast_simplification not installed")

N = 20_000  # samples per metric call: enough for the tolerances below, fast on a busy 2-core machine


def arrays(m) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    return np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)


@pytest.fixture(scope="module")
def sphere() -> tuple[np.ndarray, np.ndarray]:
    return arrays(trimesh.creation.icosphere(subdivisions=4))


# --------------------------------------------------------------------------- metrics


def test_sample_surface_is_area_uniform_deterministic_and_on_surface() -> None:
    # a 2 x 1 x 1 box: the two 1x1 end faces hold 2 of the 10 units of area
    box = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    V, F = arrays(box)
    p, n = mm.sample_surface(V, F, 50_000, seed=3)
    p2, _ = mm.sample_surface(V, F, 50_000, seed=3)
    assert p.shape == n.shape == (50_000, 3)
    np.testing.assert_array_equal(p, p2)
    assert not np.array_equal(p, mm.sample_surface(V, F, 50_000, seed=4)[0])
    # every point lies on the box surface, and each normal is the axis of the face it lies on
    on_face = np.isclose(np.abs(p), [1.0, 0.5, 0.5]).any(axis=1)
    assert on_face.all()
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)
    # area share of the two 1x1 end faces is 2/10
    share = np.mean(np.isclose(np.abs(p[:, 0]), 1.0))
    assert share == pytest.approx(0.2, abs=0.01)
    axis = np.argmax(np.abs(n), axis=1)  # each normal is a coordinate axis, and the point lies on that face
    assert np.allclose(np.abs(n).max(axis=1), 1.0)
    np.testing.assert_allclose(np.abs(p[np.arange(len(p)), axis]), np.array([1.0, 0.5, 0.5])[axis])


def test_identical_meshes_are_perfect(sphere) -> None:  # noqa: ANN001
    r = mm.compare(sphere, sphere, n_samples=N)
    assert r["chamfer_l1"] == pytest.approx(0.0, abs=1e-12)
    assert r["chamfer_l2"] == pytest.approx(0.0, abs=1e-20)
    assert r["iou"] == 1.0 and r["fscore"] == 1.0 and r["precision"] == 1.0 and r["recall"] == 1.0
    assert r["normal_consistency"] == pytest.approx(1.0, abs=1e-9)
    assert r["diag"] == pytest.approx(2 * math.sqrt(3), rel=1e-6)
    # sample-to-sample distances keep a floor even here (why they are not the headline number)
    assert 0 < r["chamfer_l1_pts"] < 0.01


def test_scaled_sphere_matches_analytic_values() -> None:
    s = trimesh.creation.icosphere(subdivisions=5)  # sag of the facets ~2e-4: negligible next to 0.1
    big = s.copy()
    big.apply_scale(1.1)
    r = mm.compare(s, big, n_samples=N)
    diag = 2 * math.sqrt(3)
    assert r["chamfer_l1"] == pytest.approx(0.1 / diag, rel=0.01)  # every point is 0.1 from the other sphere
    assert r["chamfer_l2"] == pytest.approx(0.01 / diag**2, rel=0.02)
    assert r["iou"] == pytest.approx(1 / 1.1**3, abs=0.015)  # volume ratio
    assert r["fscore"] == 0.0  # 0.1 > tau = 0.01 * diag = 0.035
    assert r["normal_consistency"] == pytest.approx(1.0, abs=1e-3)
    # within tau everything matches: the same spheres 0.5% apart give F = 1
    close = s.copy()
    close.apply_scale(1.005)
    assert mm.compare(s, close, n_samples=N)["fscore"] == 1.0


def test_normal_consistency_detects_a_different_shape_and_ignores_orientation(sphere) -> None:  # noqa: ANN001
    V, F = sphere
    flipped = (V, F[:, ::-1].copy())
    assert mm.compare(sphere, flipped, n_samples=N)["normal_consistency"] == pytest.approx(1.0, abs=1e-9)
    assert mm.compare(sphere, flipped, n_samples=N)["iou"] == 1.0  # inside-out is still the same volume
    cube = arrays(trimesh.creation.box(extents=(1.6, 1.6, 1.6)))
    assert mm.compare(sphere, cube, n_samples=N)["normal_consistency"] < 0.95


def test_open_mesh_still_gets_a_sane_iou() -> None:
    cube = trimesh.creation.box()
    V, F = arrays(cube)
    open_cube = (V, F[2:])  # one side (two triangles) removed: not watertight
    assert not trimesh.Trimesh(*open_cube, process=False).is_watertight
    iou = mm.volume_iou((V, F), open_cube, n=N)
    assert 0.8 < iou <= 1.0
    # shifted by a quarter of its size, the open cube overlaps the closed one by 3/4: IoU = 0.75 / 1.25
    shifted = (V + [0.25, 0, 0], F[2:])
    assert mm.volume_iou((V, F), shifted, n=N) == pytest.approx(0.6, abs=0.06)


@pytest.mark.parametrize("empty", [
    (np.zeros((0, 3)), np.zeros((0, 3), np.int64)),
    (np.zeros((3, 3)), np.array([[0, 1, 2]])),  # one degenerate face: no area
])
def test_empty_reconstruction_is_worst_case(sphere, empty) -> None:  # noqa: ANN001
    r = mm.compare(sphere, empty, n_samples=N)
    assert r["chamfer_l1"] == math.inf and r["chamfer_l2"] == math.inf
    assert r["iou"] == 0.0 and r["fscore"] == 0.0 and r["normal_consistency"] == 0.0
    assert mm.chamfer_l1(sphere, empty, n_samples=1000) == math.inf
    with pytest.raises(ValueError):
        mm.compare(empty, sphere, n_samples=N)


def test_chamfer_grows_with_the_error(sphere) -> None:  # noqa: ANN001
    V, F = sphere
    rng = np.random.default_rng(0)
    small = mm.chamfer_l1(sphere, (V + rng.normal(0, 0.002, V.shape), F), 5000)
    large = mm.chamfer_l1(sphere, (V + rng.normal(0, 0.02, V.shape), F), 5000)
    assert 0 < small < large


# --------------------------------------------------------------------------- codecs


def test_weld_merges_split_seams_without_moving_the_surface(sphere) -> None:  # noqa: ANN001
    V, F = sphere
    split = mb.MeshData(V[F].reshape(-1, 3), np.arange(3 * len(F)).reshape(-1, 3))  # every face its own vertices
    w = mb.weld(split)
    assert len(w.vertices) == len(V) and len(w.faces) == len(F)
    assert mm.compare((V, F), (w.vertices, w.faces), n_samples=5000)["chamfer_l1"] < 1e-12


@needs_codecs
@pytest.mark.parametrize("target", [1500, 4000])
def test_draco_round_trip_respects_the_byte_target(sphere, target) -> None:  # noqa: ANN001
    codec = mb.Draco()
    mesh = mb.MeshData(*sphere)
    enc = codec.encode(mesh, target)
    assert 0 < len(enc.data) <= target
    dec = codec.decode(enc.data)
    assert len(dec.faces) == len(sphere[1])  # no decimation
    # the chosen qp is the largest that fits: one more bit does not
    assert len(mb.draco_encode(*sphere, enc.config["qp"] + 1)[0]) > target
    assert mm.chamfer_l1(sphere, (dec.vertices, dec.faces), 5000) < 0.01


@needs_codecs
def test_draco_fixed_qp_and_overshoot_are_reported_honestly(sphere) -> None:  # noqa: ANN001
    mesh = mb.MeshData(*sphere)
    lo = mb.Draco(8).encode(mesh, 10)
    hi = mb.Draco(14).encode(mesh, 10)
    assert lo.config["qp"] == 8 and len(lo.data) < len(hi.data)
    tiny = mb.Draco().encode(mesh, 10)  # nothing fits in 10 bytes: the smallest stream, over target
    assert tiny.config["qp"] == 3 and len(tiny.data) > 10


@needs_codecs
def test_simplify_draco_lands_under_a_small_target() -> None:
    V, F = arrays(trimesh.creation.icosphere(subdivisions=5))  # 20480 faces: far over 3000 bytes with Draco alone
    mesh = mb.MeshData(V, F)
    enc = mb.SimplifyDraco(qps=range(6, 13)).encode(mesh, 3000)
    assert 0 < len(enc.data) <= 3000
    dec = mb.SimplifyDraco().decode(enc.data)
    assert 0 < len(dec.faces) < len(F) and enc.config["faces"] == len(dec.faces)
    cd = mm.chamfer_l1((V, F), (dec.vertices, dec.faces), 5000)
    assert cd < 0.005  # a sphere at 3 KB is a good sphere
    # Draco alone fits 20k faces in 3 KB only with very few position bits: decimating first is far better
    draco = mb.Draco().encode(mesh, 3000)
    assert draco.config["qp"] < 6
    plain = mb.draco_decode(draco.data)
    assert cd < 0.5 * mm.chamfer_l1((V, F), (plain.vertices, plain.faces), 5000)


@needs_codecs
def test_resolve_mesh_codecs() -> None:
    from mscncodec.bench.codecs import UnknownCodecError

    codecs, _ = mb.resolve_mesh_codecs("draco,draco:10,simplify-draco,draco")
    assert [c.key for c in codecs] == ["draco", "draco-q10", "simplify-draco"]
    with pytest.raises(UnknownCodecError):
        mb.resolve_mesh_codecs("jpeg")


def test_log_chamfer_gap_is_exact_for_a_constant_ratio() -> None:
    b = np.log([1000.0, 2000.0, 4000.0])
    ref = (b, np.log([4e-3, 1e-3, 2.5e-4]))
    test = (np.log([1500.0, 3000.0, 6000.0]), np.log([1e-3, 2.5e-4, 6.25e-5]))
    gap, lo, hi = mb.log_chamfer_gap(test, ref)
    assert (lo, hi) == pytest.approx((1500.0, 4000.0))  # only the overlap, no extrapolation
    # both fall as bytes^-2: test(b) = 1e-3 (b/1500)^-2, ref(b) = 4e-3 (b/1000)^-2, a constant ratio 1.5^2 / 4
    assert math.exp(gap) == pytest.approx(1.5**2 / 4, rel=1e-9)
    assert mb.log_chamfer_gap(ref, test)[0] == pytest.approx(-gap)
    assert math.isnan(mb.log_chamfer_gap((b[:1], b[:1]), ref)[0])


# --------------------------------------------------------------------------- runner


@pytest.fixture()
def mesh_dir(tmp_path: Path) -> Path:
    d = tmp_path / "meshes"
    d.mkdir()
    trimesh.creation.capsule(height=1.0, radius=0.4, count=[16, 16]).export(d / "capsule.ply")
    (d / "notes.txt").write_text("not a mesh")
    return d


@needs_codecs
def test_runner_writes_every_report_and_resumes(mesh_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sizes = (1200, 2500)
    codecs = [mb.Draco(), mb.SimplifyDraco(qps=range(6, 11))]
    lines: list[str] = []
    res = mb.run_mesh_bench(mb.find_meshes(mesh_dir), codecs, out, sizes, n_samples=5000, echo=lines.append,
                            progress=False)
    assert res.failed == 0 and res.encoded == 4 and res.cached == 0
    assert any("1 meshes x 2 codecs x 2 sizes = 4 runs (0 cached, 4 to run)" in m for m in lines)
    for name in ("results.json", "results.csv", "rd.png", "summary.md", "side_by_side_capsule.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["records"]) == 4
    for r in doc["records"]:
        assert r["bytes"] <= r["target_bytes"] and not r["over_target"]
        assert 0 <= r["chamfer_l1"] < 0.05 and 0 < r["iou"] <= 1 and r["encode_time"] >= 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["codec"] for r in rows} == {"draco", "simplify-draco"} and len(rows) == 4
    summary = (out / "summary.md").read_text()
    assert "Decimation + Draco" in summary and "Chamfer-L1 at equal size" in summary
    # the render target (nearest 4 KB) keeps its decoded meshes for the picture
    assert (out / "meshes" / "capsule__draco__2500.ply").is_file()

    again = mb.run_mesh_bench(mb.find_meshes(mesh_dir), codecs, out, sizes, n_samples=5000, echo=lines.append,
                              progress=False, plot=False, render=False)
    assert again.encoded == 0 and again.cached == 4 and len(again.records) == 4


def test_runner_records_a_failing_codec_without_caching_it(mesh_dir: Path, tmp_path: Path) -> None:
    class Broken(mb.MeshCodec):
        key = name = "broken"

        def encode(self, mesh, target_bytes, path=None):  # noqa: ANN001, ANN201
            raise RuntimeError("boom")

    lines: list[str] = []
    res = mb.run_mesh_bench(mb.find_meshes(mesh_dir), [Broken()], tmp_path / "o", (2000,), n_samples=2000,
                            echo=lines.append, progress=False, plot=False, render=False)
    assert res.failed == 1 and res.encoded == 0 and res.records == []
    assert any("RuntimeError: boom" in m for m in lines)
    cache = tmp_path / "o" / "cache.jsonl"
    assert not cache.exists() or cache.read_text() == ""  # retried on the next run


@needs_codecs
def test_cli_runs_the_mesh_bench_for_a_mesh_folder(mesh_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mscncodec.bench.cli import bench

    out = tmp_path / "cli-out"
    res = CliRunner().invoke(bench, [str(mesh_dir), "--out", str(out), "--codecs", "draco", "--sizes", "1500",
                                     "--no-plot"])
    assert res.exit_code == 0, res.output
    assert "Mesh benchmark" in res.output and (out / "results.json").is_file()
    assert json.loads((out / "results.json").read_text())["records"][0]["target_bytes"] == 1500
    bad = CliRunner().invoke(bench, [str(mesh_dir), "--out", str(out), "--codecs", "jpeg"])
    assert bad.exit_code == 2 and "unknown mesh codec" in bad.output
    bad = CliRunner().invoke(bench, [str(mesh_dir), "--out", str(out), "--sizes", "2k"])
    assert bad.exit_code == 2
