"""report.html of the mesh, field, series and voxel benches: each bench, run on a tiny input, writes the page
beside its other outputs; parsed here, its curves map back to the bench's numbers, its tables are summary.md's
cell for cell, its pictures decode, and it references nothing outside itself. Where Chromium is installed
the fields page (two viewers, a subset switch) is also run in a headless browser."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mscncodec.bench.html import HTML_NAME, log_ticks, markdown_html
from tests.bench.test_report_html import Node, assert_self_contained, parse

# --------------------------------------------------------------------------- helpers


def _points(svg: Node, polyline: Node) -> list[tuple[float, float]]:
    """The polyline's vertices mapped back through the plot area's data range (log10 on a log axis)."""
    plot = next(svg.iter("svg", class_="plot"))
    w, h = float(plot.attrs["width"]), float(plot.attrs["height"])
    x0, x1, y0, y1 = (float(plot.attrs[f"data-{k}"]) for k in ("xmin", "xmax", "ymin", "ymax"))
    logx, logy = plot.attrs.get("data-xscale") == "log", plot.attrs.get("data-yscale") == "log"
    out = []
    for p in polyline.attrs["points"].split():
        px, py = map(float, p.split(","))
        x, y = x0 + px / w * (x1 - x0), y0 + (h - py) / h * (y1 - y0)
        out.append((10**x if logx else x, 10**y if logy else y))
    return out


def _charts(root: Node) -> dict[tuple[str, str], Node]:
    """(metric, group) -> the chart's svg."""
    return {(f.attrs["data-metric"], f.attrs.get("data-group", "")): next(f.iter("svg", class_="rd"))
            for f in root.iter("figure", class_="chart")}


def _assert_curves(svg: Node, want: dict[str, list[tuple[float, float]]]) -> None:
    """One polyline per codec of ``want`` (in order), its vertices the codec's (x, y) points."""
    lines = list(svg.iter("polyline", class_="curve"))
    assert [pl.attrs["data-codec"] for pl in lines] == list(want)
    plot = next(svg.iter("svg", class_="plot"))

    def close(axis: str, got: float, exp: float) -> bool:
        """Equal up to the vertices' rounding to 1/100 pixel (of a plot a few hundred pixels wide)."""
        if plot.attrs.get(f"data-{axis}scale") == "log":
            return got == pytest.approx(exp, rel=1e-3)
        span = float(plot.attrs[f"data-{axis}max"]) - float(plot.attrs[f"data-{axis}min"])
        return got == pytest.approx(exp, abs=span * 1e-4)

    for pl in lines:
        got, exp = _points(svg, pl), sorted(want[pl.attrs["data-codec"]])
        assert len(got) == len(exp), pl.attrs["data-codec"]
        for (gx, gy), (wx, wy) in zip(got, exp):
            assert close("x", gx, wx) and close("y", gy, wy), (pl.attrs["data-codec"], (gx, gy), (wx, wy))
        markers = [c for c in svg.iter("circle", class_="marker") if c.attrs["data-codec"] == pl.attrs["data-codec"]]
        assert len(markers) == len(exp)


def _md_rows(md: str) -> list[list[str]]:
    """Every table row of a summary.md (header rows included, alignment rows not), as the page shows it."""
    rows = []
    for line in md.splitlines():
        if line.lstrip().startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append([re.sub(r"`([^`]+)`|\*\*([^*]+)\*\*", lambda m: m.group(1) or m.group(2), c)
                             for c in cells])
    return rows


def _assert_summary_tables(root: Node, md: str) -> None:
    section = next(root.iter("section", id="summary"))
    rows = [[c.all_text() for c in tr.children if c.tag in ("td", "th")]
            for t in section.iter("table", class_="summary") for tr in t.iter("tr")]
    assert rows and rows == _md_rows(md)


def _png(uri: str) -> np.ndarray:
    head, b64 = uri.split(",", 1)
    assert head == "data:image/png;base64"
    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def _missing(*mods: str) -> bool:
    return any(importlib.util.find_spec(m) is None for m in mods)


# --------------------------------------------------------------------------- fields


@pytest.fixture(scope="module")
def fields_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if _missing("pysz", "matplotlib"):
        pytest.skip("pysz / matplotlib not installed")
    from mscncodec.bench import fields as fb
    from tests.modalities.test_sphere import write_nc

    d = tmp_path_factory.mktemp("fields")
    write_nc(d / "a.nc", nlat=16, nlon=32, times=3)
    out = d / "out"
    fb.run_fields_bench(fb.find_fields(d, per_file=2), fb.resolve("sz3,jpeg2000-16"), [600, 1500], out,
                        progress=False, plot=True)
    return out


def test_fields_page_curves_tables_and_maps(fields_run: Path):
    from mscncodec.bench.fields import averages

    out = fields_run
    page = (out / HTML_NAME).read_text(encoding="utf-8")
    assert_self_contained(page)
    root = parse(page)
    records = json.loads((out / "results.json").read_text())["records"]
    charts = _charts(root)
    groups = ["mean over 2 fields", "a[t=0]", "a[t=2]"]
    assert [o.attrs["value"] for o in next(root.iter("select", id="group")).iter("option")] == groups
    assert [o.attrs["value"] for o in next(root.iter("select", id="metric")).iter("option")] == \
        ["rmse", "max_abs", "psnr"]
    assert set(charts) == {(m, g) for m in ("rmse", "max_abs", "psnr") for g in groups}
    for (metric, group), svg in charts.items():
        if group.startswith("mean"):
            want = {c: [(v["bytes"], v[metric]) for v in d.values()] for c, d in averages(records).items()}
        else:
            want = {c: [(r["bytes"], r[metric]) for r in records if r["codec"] == c and r["field"] == group]
                    for c in ("sz3", "jpeg2000-16")}
        _assert_curves(svg, want)
        assert ("data-yscale" in next(svg.iter("svg", class_="plot")).attrs) == (metric != "psnr")
    _assert_summary_tables(root, (out / "summary.md").read_text())

    # the reconstructions (field + each codec) and the errors: two A/B viewers over pictures of one size
    viewers = list(root.iter("div", class_="viewer"))
    assert [v.attrs["id"] for v in viewers] == ["viewer", "viewer-2"]
    keys = [f.attrs["data-key"] for f in root.iter("figure", class_="panel")]
    assert keys == ["field", "rec:jpeg2000-16", "rec:sz3", "err:jpeg2000-16", "err:sz3"]
    for fig in root.iter("figure", class_="panel"):
        img = next(fig.iter("img"))
        assert _png(img.attrs["src"]).shape == (16, 32, 3)
        assert (img.attrs["width"], img.attrs["height"]) == ("512", "256")  # magnified 16x, pixelated
    assert [o.attrs["value"] for o in next(viewers[1].iter("select", class_="cmp-b")).iter("option")] == keys[3:]
    mapfig = next(root.iter("figure", class_="figure"))
    assert base64.b64decode(next(mapfig.iter("img")).attrs["src"].split(",", 1)[1]) == (out / "map.png").read_bytes()


def test_fields_page_without_plots_has_curves_and_no_pictures(fields_run: Path, tmp_path: Path):
    from mscncodec.bench import fields as fb

    records = json.loads((fields_run / "results.json").read_text())["records"]
    fb.write_reports(records, tmp_path, plot=False)
    page = (tmp_path / HTML_NAME).read_text(encoding="utf-8")
    root = parse(page)
    assert len(_charts(root)) == 9 and not list(root.iter("img")) and "No pictures" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (CI): the parsing tests cover the page")
def test_fields_page_runs_in_headless_chromium(fields_run: Path, tmp_path: Path):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-extensions",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (fields_run / HTML_NAME).as_uri()]
    root = parse(subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout)
    shown = [(f.attrs["data-metric"], f.attrs["data-group"]) for f in root.iter("figure", class_="chart")
             if "hidden" not in f.attrs]
    assert shown == [("rmse", "mean over 2 fields")]
    body = next(root.iter("body"))
    assert (body.attrs["data-metric"], body.attrs["data-group"]) == ("rmse", "mean over 2 fields")
    assert "hidden" in next(root.iter("p", id="nochart")).attrs
    first, second = root.iter("div", class_="viewer")
    assert first.attrs["data-ready"] == second.attrs["data-ready"] == "1"
    assert (first.attrs["data-left"], first.attrs["data-right"]) == ("field", "rec:jpeg2000-16")
    assert (second.attrs["data-left"], second.attrs["data-right"]) == ("err:jpeg2000-16", "err:sz3")


# --------------------------------------------------------------------------- meshes


@pytest.mark.skipif(_missing("trimesh", "igl", "DracoPy", "fast_simplification", "matplotlib"),
                    reason="the mesh bench's codecs or metrics are not installed")
def test_mesh_page_curves_tables_and_side_by_side_panels(tmp_path: Path):
    import trimesh

    from mscncodec.bench import mesh as mb

    d = tmp_path / "meshes"
    d.mkdir()
    trimesh.creation.capsule(height=1.0, radius=0.4, count=[16, 16]).export(d / "capsule.ply")
    trimesh.creation.icosphere(subdivisions=2).export(d / "ico<&>.ply")
    out = tmp_path / "out"
    res = mb.run_mesh_bench(mb.find_meshes(d), [mb.Draco(), mb.SimplifyDraco(qps=range(6, 11))], out, (1200, 2500),
                            n_samples=2000, echo=lambda m: None, progress=False)
    page = (out / HTML_NAME).read_text(encoding="utf-8")
    assert_self_contained(page)
    assert "ico<&>" not in page and "ico&lt;&amp;&gt;.ply" in page
    root = parse(page)
    records = json.loads((out / "results.json").read_text())["records"]
    avg = mb.averages(res)
    charts = _charts(root)
    groups = ["mean over 2 meshes", "capsule.ply", "ico<&>.ply"]
    assert [o.attrs["value"] for o in next(root.iter("select", id="group")).iter("option")] == groups
    assert {m for m, _ in charts} == {"chamfer_l1", "iou", "fscore", "normal_consistency"}
    for (metric, group), svg in charts.items():
        if group.startswith("mean"):
            want = {c: [(a["bytes"], a[metric]) for a in per.values() if a["n_meshes"] == 2] for c, per in avg.items()}
        else:
            want = {c: [(r["bytes"], r[metric]) for r in records if r["codec"] == c and r["mesh"] == group]
                    for c in ("draco", "simplify-draco")}
        want = {c: [p for p in pts if p[1] is not None] for c, pts in want.items()}
        _assert_curves(svg, {c: pts for c, pts in want.items() if pts})
    _assert_summary_tables(root, (out / "summary.md").read_text())

    # each mesh's side-by-side picture, cut into its panels below the titles: one viewer per mesh
    from mscncodec.bench.mesh.render import PANEL_TOP

    viewers = list(root.iter("div", class_="viewer"))
    assert [v.attrs["id"] for v in viewers] == ["viewer", "viewer-2"]
    panels = list(root.iter("figure", class_="panel"))
    assert [f.attrs["data-key"] for f in panels] == [f"{m}/{k}" for m in groups[1:]
                                                     for k in ("original", "draco", "simplify-draco")]
    for mesh, stem in (("capsule.ply", "capsule"), ("ico<&>.ply", "ico_")):  # the file name made safe
        with Image.open(out / f"side_by_side_{stem}.png") as im:
            full = np.asarray(im.convert("RGB"))
        w, top = full.shape[1] // 3, round(full.shape[0] * (1 - PANEL_TOP))
        for i, fig in enumerate(f for f in panels if f.attrs["data-key"].startswith(mesh + "/")):
            np.testing.assert_array_equal(_png(next(fig.iter("img")).attrs["src"]), full[top:, i * w:(i + 1) * w])
    cap = next(f for f in panels if f.attrs["data-key"] == "capsule.ply/draco").all_text()
    rec = next(r for r in records if r["mesh"] == "capsule.ply" and r["codec"] == "draco" and r["target_bytes"] == 2500)
    assert cap.startswith(f"Draco, {rec['bytes']} B, CD-L1 ")


# --------------------------------------------------------------------------- series


def test_series_page_leaves_unreachable_targets_out(tmp_path: Path):
    if _missing("pysz"):
        pytest.skip("pysz not installed")
    from mscncodec.bench import series as sb
    from mscncodec.modalities import sphere_grid as sgrid
    from mscncodec.modalities.series import SeriesField

    lat, lon = sgrid.gaussian_latitudes(16), sgrid.regular_longitudes(32, 0.0)
    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    v = np.stack([250 + 40 * np.cos(la) + 5 * np.sin(2 * lo + 0.3 * t) for t in range(6)])
    f = SeriesField(v, lat, lon, time=np.arange(6) * 365.0, name="TS", units="K")
    records = sb.run_series_bench([("ts<&>", f)], [sb.Sz3Series(), sb.Jpeg2000PerField()], ratios=(2, 4, 1000),
                                  out=tmp_path, plot=False, echo=None)
    assert any(r.get("unreachable") for r in records)
    page = (tmp_path / HTML_NAME).read_text(encoding="utf-8")
    assert_self_contained(page)
    assert "ts<&>" not in page
    root = parse(page)
    charts = _charts(root)
    assert set(charts) == {("rmse", ""), ("max_abs", ""), ("psnr", "")}  # one series: no subset switch
    assert not list(root.iter("select", id="group"))
    for (metric, _), svg in charts.items():
        _assert_curves(svg, {c: [(r["bytes"], r[metric]) for r in records if r["codec"] == c and "rmse" in r]
                             for c in ("sz3-3d", "jpeg2000")})
    # SZ3 is exact on this smooth series at these sizes: an RMSE of 0 puts that chart on a linear y axis
    assert {r["rmse"] for r in records if r["codec"] == "sz3-3d" and "rmse" in r} == {0.0}
    assert "data-yscale" not in next(charts[("rmse", "")].iter("svg", class_="plot")).attrs
    assert next(charts[("rmse", "")].iter("svg", class_="plot")).attrs["data-xscale"] == "log"
    _assert_summary_tables(root, (tmp_path / "summary.md").read_text())
    assert "unreachable" in next(root.iter("section", id="summary")).all_text()
    assert not list(root.iter("img")) and not list(root.iter("div", class_="viewer"))


# --------------------------------------------------------------------------- voxels


def test_voxel_page_joins_the_downsampling_factors_into_one_curve(tmp_path: Path):
    if _missing("constriction", "matplotlib"):
        pytest.skip("constriction / matplotlib not installed")
    from mscncodec.bench import voxels as BV
    from mscncodec.errors import RateError
    from mscncodec.modalities.voxels import VoxelGrid

    g = np.indices((16, 16, 16)) - 7.5
    occ = (g**2).sum(0) < 36

    def mscn_encode(grid: VoxelGrid, target: int) -> bytes:
        if target < 20:
            raise RateError(f"target {target} bytes is below the minimum")
        return BV.downsample_encode(grid.occ, 2)[1]

    rows = BV.run_voxel_bench([("ball", VoxelGrid(occ))], mscn_encode, lambda d: VoxelGrid(BV.downsample_decode(d)),
                              sizes=(0.01, 0.5, 64), out=tmp_path)
    page = (tmp_path / HTML_NAME).read_text(encoding="utf-8")
    assert_self_contained(page)
    root = parse(page)
    charts = _charts(root)
    assert set(charts) == {("iou", ""), ("chamfer", "")}
    curve = {"downsample-2": "downsample-K", "downsample-4": "downsample-K"}
    for (metric, _), svg in charts.items():
        want: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            if r["bytes"] is not None:
                want.setdefault(curve.get(r["codec"], r["codec"]), []).append((r["bytes"], r[metric]))
        assert len(want["downsample-K"]) == 2 and len(want["mscn"]) == 2  # the refused target has no point
        _assert_curves(svg, want)
    _assert_summary_tables(root, (tmp_path / "summary.md").read_text())


# --------------------------------------------------------------------------- pieces


def test_markdown_tables_and_text_are_escaped_and_kept_cell_for_cell():
    md = "# Title <x>\n\nA *b* & `c<d>` **e**.\nsecond line\n\n| codec | n |\n|---|---:|\n| a|b | 1.5 |\n| `k` | - |\n"
    root = parse(markdown_html(md))
    assert next(root.iter("h2")).all_text() == "Title <x>"
    p = next(root.iter("p"))
    assert p.all_text() == "A b & c<d> e. second line"
    assert next(p.iter("code")).all_text() == "c<d>" and next(p.iter("em")).all_text() == "b"
    rows = [[c.all_text() for c in tr.children] for tr in root.iter("tr")]
    assert rows == [["codec", "n"], ["a", "b", "1.5"], ["k", "-"]]  # a bare | splits a cell, as in Markdown
    assert [c.attrs.get("class") for c in next(root.iter("tbody")).children[1].children] == [None, "num"]


def test_log_ticks():
    assert log_ticks(math.log10(2e-7), math.log10(3e-3)) == ([1e-6, 1e-5, 1e-4, 1e-3], None)
    ticks, dec = log_ticks(math.log10(0.011), math.log10(0.3))
    assert dec is None and ticks == pytest.approx([0.02, 0.05, 0.1, 0.2])
    ticks, dec = log_ticks(math.log10(560), math.log10(1550))  # under a decade: round linear steps
    assert ticks == pytest.approx([600, 800, 1000, 1200, 1400]) and dec == 0
