"""report.html: the bench's self-contained results page, checked by parsing it (everywhere) and, where
Chromium is installed, by loading it in a headless browser and reading the DOM after its script ran."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mscncodec.bench.cli import bench
from mscncodec.bench.codecs import JpegCodec, WebPCodec
from mscncodec.bench.crops import CropSet, Panel
from mscncodec.bench.html import HTML_NAME, nice_ticks, render_html, write_html
from mscncodec.bench.report import aggregate_all, bd_markdown, bd_tables
from mscncodec.bench.result import BenchResult, ImageRef

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# --------------------------------------------------------------------------- a small DOM from html.parser


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def iter(self, tag: str | None = None, **attrs: str):
        """Every descendant (self included) with ``tag`` whose attributes contain ``attrs``
        (``class_`` matches one class of the class list)."""
        want_class = attrs.pop("class_", None)
        stack = [self]
        while stack:
            n = stack.pop(0)
            if ((tag is None or n.tag == tag) and all(n.attrs.get(k) == v for k, v in attrs.items())
                    and (want_class is None or want_class in n.attrs.get("class", "").split())):
                yield n
            stack = n.children + stack

    def all_text(self) -> str:
        return "".join(self.text) + "".join(c.all_text() for c in self.children)


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: (v if v is not None else "") for k, v in attrs}))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data):
        self.stack[-1].children.append(Node("#text", {}, text=[data]))  # a child: keeps text in order


def parse(page: str) -> Node:
    b = TreeBuilder()
    b.feed(page)
    b.close()
    assert b.stack == [b.root], "unclosed elements"
    return b.root


# --------------------------------------------------------------------------- a synthetic run


class OddName(WebPCodec):
    """A codec whose name needs escaping everywhere it is shown."""

    key, name = "odd", "<J&P> \"codec\""


class NoPoints(JpegCodec):
    key, name = "nopoints", "Never measured"


def _rec(codec: str, image: str, target: float, bpp: float, psnr: float, ms_ssim: float | None) -> dict:
    return {"codec": codec, "image": image, "target_bpp": target, "bpp": bpp, "psnr": psnr,
            "mse": 255.0**2 / 10 ** (psnr / 10), "ms_ssim": ms_ssim, "encode_time": 0.01, "decode_time": 0.01}


def synthetic_result(tmp_path: Path) -> BenchResult:
    recs = []
    for im, shift in (("a.png", 0.0), ("b.png", 1.0)):
        for t, b, p, s in ((0.25, 0.24, 27.0, 0.90), (0.5, 0.47, 30.0, 0.95), (1.0, 0.93, 33.5, 0.98)):
            recs.append(_rec("jpeg", im, t, b, p + shift, s))
        for t, b, p, s in ((0.25, 0.22, 29.0, 0.93), (0.5, 0.49, 32.0, 0.96), (1.0, 0.96, 35.0, 0.985),
                           (2.0, 1.9, 38.0, None)):
            recs.append(_rec("odd", im, t, b, p + shift, s))
    images = [ImageRef(tmp_path / n, n, "0" * 40, 64, 64) for n in ("a.png", "b.png")]
    return BenchResult(tmp_path, recs, [JpegCodec(), OddName(), NoPoints()], [0.25, 0.5, 1.0, 2.0], images,
                       encoded=14, notices=["heic: unavailable <pillow-heif> missing"])


def crop_set() -> CropSet:
    rng = np.random.default_rng(0)
    full = [rng.integers(0, 256, (80, 90, 3), dtype=np.uint8) for _ in range(3)]
    return CropSet("a&b.png", (8, 10, 64), 0.25, [Panel("original", "original", full[0]),
                                                  Panel("jpeg", "JPEG 4:2:0", full[1], 0.241, 27.5),
                                                  Panel("odd", OddName.name, full[2], 0.22, 29.1)])


def _page(tmp_path: Path, crops: CropSet | None = None, anchors: bool = False) -> tuple[str, BenchResult]:
    result = synthetic_result(tmp_path)
    path = write_html(result, crops, anchors=anchors, command="mscn bench data --codecs 'a<b>' & echo")
    assert path == tmp_path / HTML_NAME
    return path.read_text(encoding="utf-8"), result


def _data_points(svg: Node, polyline: Node) -> list[tuple[float, float]]:
    """The polyline's vertices mapped back through the plot area's data range."""
    plot = next(svg.iter("svg", class_="plot"))
    w, h = float(plot.attrs["width"]), float(plot.attrs["height"])
    x0, x1, y0, y1 = (float(plot.attrs[f"data-{k}"]) for k in ("xmin", "xmax", "ymin", "ymax"))
    pts = [tuple(map(float, p.split(","))) for p in polyline.attrs["points"].split()]
    return [(x0 + px / w * (x1 - x0), y0 + (h - py) / h * (y1 - y0)) for px, py in pts]


# --------------------------------------------------------------------------- the page


def test_curves_one_polyline_per_codec_that_maps_back_to_the_numbers(tmp_path: Path):
    page, result = _page(tmp_path)
    root = parse(page)
    results = aggregate_all(result)
    assert list(results) == ["jpeg", "odd"]  # the codec without points has no curve
    charts = {f.attrs["data-metric"]: f for f in root.iter("figure", class_="chart")}
    assert list(charts) == ["psnr-rgb", "ms-ssim-rgb", "psnr-rgb-of-mean-mse"]
    options = [o.attrs["value"] for o in next(root.iter("select", id="metric")).iter("option")]
    assert options == list(charts)
    for metric, fig in charts.items():
        svg = next(fig.iter("svg", class_="rd"))
        lines = list(svg.iter("polyline", class_="curve"))
        assert [pl.attrs["data-codec"] for pl in lines] == ["jpeg", "odd"]
        assert not list(svg.iter("polyline", class_="anchor"))
        for pl in lines:
            res = results[pl.attrs["data-codec"]]["results"]
            want = sorted((b, v) for b, v in zip(res["bpp"], res[metric]) if v is not None)
            got = _data_points(svg, pl)
            assert len(got) == len(want) == (3 if pl.attrs["data-codec"] == "jpeg" or metric == "ms-ssim-rgb" else 4)
            for (gx, gy), (wx, wy) in zip(got, want):
                assert gx == pytest.approx(wx, abs=2e-4) and gy == pytest.approx(wy, abs=2e-3 if "psnr" in metric
                                                                                   else 2e-5)
            markers = [c for c in svg.iter("circle", class_="marker") if c.attrs["data-codec"] == pl.attrs["data-codec"]]
            assert len(markers) == len(want)
        # a legend entry per curve, and axes with increasing tick labels inside the plotted range
        assert len(list(next(svg.iter("g", class_="legend")).iter("text"))) == 2
        plot = next(svg.iter("svg", class_="plot"))
        for axis, lo, hi in (("xtick", "xmin", "xmax"), ("ytick", "ymin", "ymax")):
            ticks = [float(t.all_text()) for t in svg.iter("text", class_=axis)]
            assert len(ticks) >= 3 and ticks == sorted(ticks)
            assert float(plot.attrs[f"data-{lo}"]) - 1e-9 <= ticks[0] and ticks[-1] <= float(plot.attrs[f"data-{hi}"])


def test_published_anchors_are_dashed_extra_lines_on_the_psnr_chart(tmp_path: Path):
    root = parse(_page(tmp_path, anchors=True)[0])
    charts = {f.attrs["data-metric"]: f for f in root.iter("figure", class_="chart")}
    assert len(list(charts["psnr-rgb"].iter("polyline", class_="curve"))) == 2
    anchors = list(charts["psnr-rgb"].iter("polyline", class_="anchor"))
    assert anchors and all(a.attrs.get("stroke-dasharray") for a in anchors)
    assert not list(charts["ms-ssim-rgb"].iter("polyline", class_="anchor"))


def test_bd_table_cells_are_the_bench_numbers(tmp_path: Path):
    page, result = _page(tmp_path)
    bd = bd_tables(aggregate_all(result))
    md_rows = {m.group(1): (m.group(2), m.group(3))
               for m in re.finditer(r"^\| .*?\(`([^`]+)`\) \| (\S+) \| (\S+) \|$", bd_markdown(bd), re.MULTILINE)}
    tables = list(parse(page).iter("table", class_="bd"))
    assert [t.attrs["data-reference"] for t in tables] == list(bd["references"]) == ["jpeg"]
    rows = list(tables[0].iter("tr"))[1:]
    assert [r.attrs["data-codec"] for r in rows] == ["odd"]
    for row in rows:
        key = row.attrs["data-codec"]
        rate, dpsnr = next(row.iter("td", class_="bd-rate")), next(row.iter("td", class_="bd-psnr"))
        assert (rate.all_text(), dpsnr.all_text()) == md_rows[key]
        want = bd["references"]["jpeg"]["codecs"][key]
        assert float(rate.attrs["data-value"]) == want["bd_rate_percent"]
        assert float(dpsnr.attrs["data-value"]) == want["bd_psnr_db"]
        assert want["bd_rate_percent"] < 0 and "good" in rate.attrs["class"].split()  # odd beats jpeg


def test_crops_are_equal_size_pngs_of_the_same_detail(tmp_path: Path):
    crops = crop_set()
    root = parse(_page(tmp_path, crops)[0])
    figs = list(root.iter("figure", class_="crop"))
    assert [f.attrs["data-key"] for f in figs] == ["original", "jpeg", "odd"]
    sizes = set()
    for fig, panel in zip(figs, crops.panels):
        img = next(fig.iter("img"))
        head, b64 = img.attrs["src"].split(",", 1)
        assert head == "data:image/png;base64"
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            assert im.format == "PNG"
            arr = np.asarray(im.convert("RGB"))
        np.testing.assert_array_equal(arr, panel.image[8:72, 10:74])
        sizes.add((arr.shape, img.attrs["width"], img.attrs["height"]))
    assert sizes == {((64, 64, 3), "256", "256")}  # the same crop, shown at 4x
    assert "0.241 bpp, 27.50 dB" in figs[1].all_text()
    # the A/B viewer starts on the original vs the first codec, split by a range input
    viewer = next(root.iter("div", id="viewer"))
    assert next(viewer.iter("img", id="cmp-img-a")).attrs["src"] == next(figs[0].iter("img")).attrs["src"]
    assert next(viewer.iter("img", id="cmp-img-b")).attrs["src"] == next(figs[1].iter("img")).attrs["src"]
    assert next(viewer.iter("input", id="cmp-pos")).attrs["type"] == "range"
    for sel in ("cmp-a", "cmp-b"):
        assert [o.attrs["value"] for o in next(viewer.iter("select", id=sel)).iter("option")] == \
            ["original", "jpeg", "odd"]


def assert_self_contained(page: str) -> None:
    """No reference out of the page: every src/href a data: URI or an anchor, no link, iframe, script src,
    CSS @import or url()."""
    root = parse(page)
    for node in root.iter():
        for name in ("src", "href", "xlink:href", "action", "poster", "data", "srcset"):
            if name in node.attrs:
                assert node.attrs[name].startswith(("data:", "#")), (node.tag, name, node.attrs[name][:60])
        assert "url(" not in node.attrs.get("style", "")
    assert not list(root.iter("link")) and not list(root.iter("iframe"))
    assert all("src" not in s.attrs for s in root.iter("script"))
    css = "".join(s.all_text() for s in root.iter("style"))
    assert "@import" not in css and "url(" not in css
    assert not re.search(r"https?:|ftp:|wss?:", page, re.IGNORECASE)  # base64 has no ':', so this covers the data: URIs


def test_no_network_reference_anywhere(tmp_path: Path):
    assert_self_contained(_page(tmp_path, crop_set(), anchors=True)[0])


def test_text_is_escaped_and_header_says_what_ran(tmp_path: Path):
    page = _page(tmp_path, crop_set())[0]
    assert "<J&P>" not in page and "&lt;J&amp;P&gt;" in page
    assert "a<b>" not in page and "a&b.png" not in page
    root = parse(page)
    legend = next(next(root.iter("figure", class_="chart")).iter("g", class_="legend"))
    assert [t.all_text() for t in legend.iter("text")] == ["JPEG 4:2:0", OddName.name]
    settings = {dt.all_text(): dd.all_text() for dt, dd in zip(root.iter("dt"), root.iter("dd"))}
    assert settings["Command"] == "mscn bench data --codecs 'a<b>' & echo"
    assert settings["Images"].startswith("2: a.png, b.png")
    assert "Never measured (nopoints) no points" in settings["Codecs"] and OddName.name in settings["Codecs"]
    assert settings["Data set"] == str(tmp_path) and settings["Target bpp"] == "0.25, 0.5, 1, 2"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", settings["Date"])
    assert "heic: unavailable <pillow-heif> missing" in next(root.iter("ul", class_="notices")).all_text()
    caption = next(root.iter("section", id="crops")).all_text()
    assert "a&b.png: 64x64 crop at x=10, y=8" in caption


def test_page_without_crops_or_points(tmp_path: Path):
    page = _page(tmp_path, None)[0]
    assert "No crops" in page and 'id="viewer"' not in page
    empty = BenchResult(tmp_path, [], [NoPoints()], [0.5], [])
    root = parse(render_html(empty, {}, bd_tables({}), None, anchors=True, command="x"))
    assert not list(root.iter("svg")) and not list(root.iter("table", class_="bd"))
    text = root.all_text()
    assert "No codec has a measured point" in text and "nothing to compare" in text and "No crops" in text
    # a crop set where every codec failed at re-encoding has only the original: no viewer either
    lone = CropSet("a.png", (0, 0, 8), 0.25, [Panel("original", "original", np.zeros((8, 8, 3), np.uint8))])
    assert 'id="viewer"' not in render_html(empty, {}, bd_tables({}), lone, command="x")


def test_nice_ticks():
    assert nice_ticks(0.0, 1.08) == (pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]), 1)
    assert nice_ticks(25.3, 34.9) == (pytest.approx([26, 28, 30, 32, 34]), 0)
    assert nice_ticks(25.3, 38.9) == (pytest.approx([27.5, 30, 32.5, 35, 37.5]), 1)  # a 2.5 step needs a decimal
    ticks, dec = nice_ticks(0.9, 0.99)
    assert ticks[0] >= 0.9 and ticks[-1] <= 0.99 and len(ticks) >= 4 and dec >= 2


# --------------------------------------------------------------------------- a real (tiny) run


def _photo_like(seed: int, h: int = 96, w: int = 112) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w) + 64], axis=-1)
    img[20:50, 30:70] = rng.integers(0, 256, 3)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture()
def small_run(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(_photo_like(i)).save(data / f"im{i}.png")
    out = tmp_path / "out"
    r = CliRunner().invoke(bench, [str(data), "--out", str(out), "--codecs", "jpeg,webp", "--points", "0.25,0.5,1.0"])
    assert r.exit_code == 0, r.output
    return out


def test_bench_writes_report_html_beside_rd_and_crops(small_run: Path):
    out = small_run
    assert (out / "rd.png").is_file() and (out / "crops.png").is_file()
    root = parse((out / HTML_NAME).read_text(encoding="utf-8"))
    psnr = next(f for f in root.iter("figure", class_="chart") if f.attrs["data-metric"] == "psnr-rgb")
    for pl in psnr.iter("polyline", class_="curve"):
        res = json.loads((out / f"{pl.attrs['data-codec']}.json").read_text())["results"]
        want = sorted(zip(res["bpp"], res["psnr-rgb"]))
        got = _data_points(psnr, pl)
        assert len(got) == len(want) == 3
        assert all(math.isclose(g[0], w[0], abs_tol=2e-4) and math.isclose(g[1], w[1], abs_tol=2e-3)
                   for g, w in zip(got, want))
    bd = json.loads((out / "bd.json").read_text())
    cell = next(next(root.iter("table", class_="bd")).iter("td", class_="bd-rate"))
    want = bd["references"]["jpeg"]["codecs"]["webp"]["bd_rate_percent"]
    assert (cell.attrs["data-value"] == "None") if want is None else float(cell.attrs["data-value"]) == want
    crops = [next(f.iter("img")) for f in root.iter("figure", class_="crop")]
    assert [f.attrs["data-key"] for f in root.iter("figure", class_="crop")] == ["original", "jpeg", "webp"]
    shapes = set()
    for img in crops:
        with Image.open(io.BytesIO(base64.b64decode(img.attrs["src"].split(",", 1)[1]))) as im:
            shapes.add((im.format, im.size))
    assert shapes == {("PNG", (96, 96))}  # the whole (squared) small image, same size for every codec
    # --no-plot (here a cached rerun) still writes the page, which needs no matplotlib, without crops
    data = out.parent / "data"
    r = CliRunner().invoke(bench, [str(data), "--out", str(out), "--codecs", "jpeg,webp", "--points", "0.25,0.5,1.0",
                                   "--no-plot"])
    assert r.exit_code == 0, r.output
    page = (out / HTML_NAME).read_text(encoding="utf-8")
    assert "No crops" in page and len(list(parse(page).iter("polyline", class_="curve"))) >= 2


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (CI): the parsing tests cover the page")
def test_page_runs_in_headless_chromium(tmp_path: Path):
    page = _page(tmp_path, crop_set())[0]
    before = parse(page)
    assert "data-ready" not in next(before.iter("div", id="viewer")).attrs  # only the script sets these
    assert not any("hidden" in f.attrs for f in before.iter("figure", class_="chart"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-extensions",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (tmp_path / HTML_NAME).as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    root = parse(dom)
    viewer = next(root.iter("div", id="viewer"))
    assert viewer.attrs["data-ready"] == "1" and viewer.attrs["data-split"] == "50"
    assert (viewer.attrs["data-left"], viewer.attrs["data-right"]) == ("original", "jpeg")
    assert re.search(r"inset\(0(px)? 50% 0(px)? 0(px)?\)", next(viewer.iter("img", id="cmp-img-a")).attrs["style"])
    shown = [f.attrs["data-metric"] for f in root.iter("figure", class_="chart") if "hidden" not in f.attrs]
    assert shown == ["psnr-rgb"] and next(root.iter("body")).attrs["data-metric"] == "psnr-rgb"
