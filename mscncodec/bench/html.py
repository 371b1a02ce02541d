"""``report.html``: one self-contained page with a bench run's curves, tables and pictures.

The pieces here take plain data -- :class:`Curve` lists for a chart, :class:`Picture` lists for the A/B
viewer and its gallery, Markdown tables -- so every bench builds its page from them: the image bench's
page is :func:`render_html`; the mesh, field, series and voxel benches' pages are in :mod:`.pages`.

Everything is inline -- the rate-distortion charts are SVG drawn from the run's numbers, the crops
are PNG ``data:`` URIs, the CSS and the little JavaScript sit in the page -- so it can be attached to
an issue, mailed or opened offline, and nothing on it reaches the network. Without JavaScript every
chart and every crop is still shown; the script only adds the metric switch and the A/B slider.
All text from the run (codec and image names, the command) is escaped.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from mscncodec.bench.crops import CropSet
from mscncodec.bench.plot import color, load_anchors, measured_points
from mscncodec.bench.report import aggregate_all, bd_tables, number
from mscncodec.bench.result import BenchResult

HTML_NAME = "report.html"

#: (results key, axis label, padding of the y range): a metric gets a chart when some codec has a value.
#: The dB metrics get rd.png's +-1 dB; a None pad means a fraction of the span (MS-SSIM's span is small).
METRICS: tuple[tuple[str, str, float | None], ...] = (
    ("psnr-rgb", "PSNR RGB [dB] (mean over images)", 1.0),
    ("ms-ssim-rgb", "MS-SSIM RGB (mean over images)", None),
    ("psnr-rgb-of-mean-mse", "PSNR RGB of the mean MSE [dB]", 1.0),
)
X_LABEL = "bits per pixel (file size incl. headers)"

# chart geometry in SVG user units: the plot area, then the legend to its right
WIDTH, HEIGHT = 960, 460
LEFT, TOP, PLOT_W, PLOT_H = 70, 16, 580, 380
LEGEND_X = LEFT + PLOT_W + 24


# --------------------------------------------------------------------------- chart


@dataclass(frozen=True)
class Axes:
    """Data range of one chart and its mapping to the plot area's pixels (y grows downwards). On a log
    axis the range is in log10 of the data, and :meth:`px` / :meth:`py` take the data itself."""

    xmin: float
    xmax: float
    ymin: float
    ymax: float
    log_x: bool = False
    log_y: bool = False

    def px(self, x: float) -> float:
        x = math.log10(x) if self.log_x else x
        return (x - self.xmin) / (self.xmax - self.xmin) * PLOT_W

    def py(self, y: float) -> float:
        y = math.log10(y) if self.log_y else y
        return PLOT_H - (y - self.ymin) / (self.ymax - self.ymin) * PLOT_H


@dataclass(frozen=True)
class Curve:
    """One line of a chart: a codec's measured points (solid) or a published anchor (dashed, hollow)."""

    key: str
    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str
    ours: bool = False  # drawn thicker: mscn's own curves
    anchor: bool = False


@dataclass(frozen=True)
class ChartSpec:
    """What a chart shows: its metric id, axis labels and scales, and how a marker's tooltip reads."""

    metric: str
    label: str
    x_label: str = X_LABEL
    pad: float | None = None  # the y range's padding in data units (None: a fraction of the span)
    log_x: bool = False
    log_y: bool = False
    x_unit: str = "bpp"
    x_spec: str = ".3f"
    y_unit: str = ""
    y_spec: str = ".4g"


def nice_ticks(lo: float, hi: float, count: int = 6) -> tuple[list[float], int]:
    """About ``count`` round tick values (1, 2, 2.5 or 5 times a power of ten) in [lo, hi], and the
    decimals their labels need."""
    raw = (hi - lo) / count
    mag = 10.0 ** math.floor(math.log10(raw))
    mult = next(m for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    step = mult * mag
    decimals = max(0, -math.floor(math.log10(step) + 1e-9) + (1 if mult == 2.5 else 0))
    first = math.ceil(lo / step - 1e-9)
    ticks = [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]
    return ticks, decimals


def log_ticks(lo: float, hi: float) -> tuple[list[float], int | None]:
    """Tick values in [10**lo, 10**hi] for a log axis whose range is given in log10: the powers of ten,
    else those and their 2 and 5 multiples, else (a range under a decade or so) round linear steps. The
    decimals are None when the labels should use ``:g``."""
    for mults in ((1,), (1, 2, 5)):
        ticks = [m * 10.0**k for k in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in mults]
        ticks = sorted(t for t in ticks if lo - 1e-9 <= math.log10(t) <= hi + 1e-9)
        if len(ticks) >= 3:
            return ticks, None
    ticks, decimals = nice_ticks(10.0**lo, 10.0**hi, 5)
    return [t for t in ticks if t > 0], decimals


def _tick_label(t: float, decimals: int | None) -> str:
    return f"{t:g}" if decimals is None else f"{t:.{decimals}f}"


def _pad_range(values: Sequence[float], pad: float | None) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if pad is None:
        pad = max((hi - lo) * 0.08, 1e-3)
    return lo - pad, hi + pad


def _curves(results: dict[str, dict[str, Any]], metric: str) -> list[tuple[int, str, dict[str, Any], list, list]]:
    """(colour index, codec key, codec results, xs, ys) of every codec with a value of ``metric``."""
    out = []
    for i, (key, res) in enumerate(results.items()):
        xs, ys = measured_points(res["results"]["bpp"], res["results"].get(metric, []))
        if xs:
            out.append((i, key, res, xs, ys))
    return out


def _pts(axes: Axes, xs: Sequence[float], ys: Sequence[float]) -> list[tuple[float, float]]:
    return [(round(axes.px(x), 2), round(axes.py(y), 2)) for x, y in zip(xs, ys)]


def svg_chart(results: dict[str, dict[str, Any]], metric: str, label: str, pad: float | None,
              anchors: list[dict[str, Any]]) -> str:
    """One image rate-distortion chart: a curve per codec and the published anchors (dashed, clipped to the
    measured rate range)."""
    curves = [Curve(key, res["name"], xs, ys, color(i), ours=key.startswith(("mscn-", "coin-")))
              for i, key, res, xs, ys in _curves(results, metric)]
    curves += [Curve(a["name"], f"{a['name']} (published)", *measured_points(a["points"]["bpp"], a["points"][metric]),
                     color(len(results) + j), anchor=True)
               for j, a in enumerate(a for a in anchors if metric in a["points"])]
    y_spec, y_unit = (".4f", "") if metric == "ms-ssim-rgb" else (".2f", " dB")
    return svg_plot(ChartSpec(metric, label, pad=pad, y_spec=y_spec, y_unit=y_unit), curves)


def _axes(spec: ChartSpec, curves: Sequence[Curve]) -> Axes:
    """The data range: from 0 to the largest rate plus 8% on a linear x axis, the measured rates plus a
    margin on a log one; y over every measured point and the anchor points inside that rate range."""
    measured = [c for c in curves if not c.anchor]
    xs = [x for c in measured for x in c.xs]
    if spec.log_x:
        lo, hi = math.log10(min(xs)), math.log10(max(xs))
        margin = max((hi - lo) * 0.05, 0.05)
        x0, x1 = lo - margin, hi + margin
        inside = (lambda x: x > 0 and x0 <= math.log10(x) <= x1)
    else:
        x0, x1 = 0.0, max(xs) * 1.08
        inside = (lambda x: x <= x1)
    ys = [y for c in measured for y in c.ys] + [y for c in curves if c.anchor for x, y in zip(c.xs, c.ys) if inside(x)]
    if spec.log_y:
        logs = [math.log10(y) for y in ys]
        margin = max((max(logs) - min(logs)) * 0.08, 0.05)
        y0, y1 = min(logs) - margin, max(logs) + margin
    else:
        y0, y1 = _pad_range(ys, spec.pad)
    return Axes(x0, x1, y0, y1, spec.log_x, spec.log_y)


def svg_plot(spec: ChartSpec, curves: Sequence[Curve]) -> str:
    """One chart as inline SVG: a polyline with markers per curve (measured ones first, at least one
    needed), ticks, grid and a legend; a marker's tooltip has its numbers."""
    axes = _axes(spec, curves)
    grid, ticks = [], []
    xt, xdec = log_ticks(axes.xmin, axes.xmax) if spec.log_x else nice_ticks(axes.xmin, axes.xmax)
    for t in xt:
        x = round(axes.px(t), 2)
        grid.append(f'<line x1="{x}" y1="0" x2="{x}" y2="{PLOT_H}"/>')
        ticks.append(f'<line x1="{LEFT + x}" y1="{TOP + PLOT_H}" x2="{LEFT + x}" y2="{TOP + PLOT_H + 5}"/>'
                     f'<text class="xtick" x="{LEFT + x}" y="{TOP + PLOT_H + 18}" text-anchor="middle">'
                     f'{_tick_label(t, xdec)}</text>')
    yt, ydec = log_ticks(axes.ymin, axes.ymax) if spec.log_y else nice_ticks(axes.ymin, axes.ymax)
    for t in yt:
        y = round(axes.py(t), 2)
        grid.append(f'<line x1="0" y1="{y}" x2="{PLOT_W}" y2="{y}"/>')
        ticks.append(f'<line x1="{LEFT - 5}" y1="{TOP + y}" x2="{LEFT}" y2="{TOP + y}"/>'
                     f'<text class="ytick" x="{LEFT - 8}" y="{TOP + y + 4}" text-anchor="end">'
                     f'{_tick_label(t, ydec)}</text>')

    lines, legend = [], []
    for n, c in enumerate(curves):
        kind, col = ("anchor" if c.anchor else "curve"), c.color
        width = 2.4 if c.ours else (1.1 if c.anchor else 1.4)
        dash = ' stroke-dasharray="6 4"' if c.anchor else ""
        pts = _pts(axes, c.xs, c.ys)
        attr = f'class="{kind}" data-codec="{escape(c.key)}"'
        lines.append(f'<polyline {attr} points="{" ".join(f"{x},{y}" for x, y in pts)}" fill="none" '
                     f'stroke="{col}" stroke-width="{width}"{dash}/>')
        fill = "#fff" if c.anchor else col
        for (x, y), bx, by in zip(pts, c.xs, c.ys):
            tip = escape(f"{c.name}: {bx:{spec.x_spec}} {spec.x_unit}, {by:{spec.y_spec}}{spec.y_unit}")
            lines.append(f'<circle class="marker" data-codec="{escape(c.key)}" cx="{x}" cy="{y}" '
                         f'r="{4 if c.ours else 3}" fill="{fill}" stroke="{col}" stroke-width="1.2">'
                         f'<title>{tip}</title></circle>')
        ly = TOP + 8 + 18 * n
        legend.append(f'<line x1="{LEGEND_X}" y1="{ly}" x2="{LEGEND_X + 24}" y2="{ly}" stroke="{col}" '
                      f'stroke-width="{width}"{dash}/><circle cx="{LEGEND_X + 12}" cy="{ly}" r="3" fill="{fill}" '
                      f'stroke="{col}"/><text x="{LEGEND_X + 30}" y="{ly + 4}">{escape(c.name)}</text>')

    height = max(HEIGHT, TOP + 16 + 18 * len(curves))
    scales = (' data-xscale="log"' if spec.log_x else "") + (' data-yscale="log"' if spec.log_y else "")
    return (
        f'<svg class="rd" data-metric="{escape(spec.metric)}" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(spec.label)} vs {escape(spec.x_unit)}">'
        f'<g class="ticks" stroke="#444">{"".join(ticks)}</g>'
        f'<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#444"/>'
        # a nested viewport clips the anchors that run past the measured rates, as rd.png's xlim does
        f'<svg class="plot" x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" overflow="hidden" '
        f'data-xmin="{axes.xmin!r}" data-xmax="{axes.xmax!r}" data-ymin="{axes.ymin!r}" data-ymax="{axes.ymax!r}"'
        f'{scales}><g class="grid" stroke="#ddd">{"".join(grid)}</g>{"".join(lines)}</svg>'
        f'<text class="xlabel" x="{LEFT + PLOT_W / 2}" y="{TOP + PLOT_H + 40}" text-anchor="middle">'
        f'{escape(spec.x_label)}</text>'
        f'<text class="ylabel" transform="translate(16 {TOP + PLOT_H / 2}) rotate(-90)" text-anchor="middle">'
        f'{escape(spec.label)}</text>'
        f'<g class="legend">{"".join(legend)}</g></svg>'
    )


# --------------------------------------------------------------------------- generic sections


@dataclass(frozen=True)
class ChartSet:
    """One chart of a page: the metric and the subset of the data it shows (``group``: "mean over
    meshes", one field, ...; empty on a page with one subset)."""

    spec: ChartSpec
    curves: Sequence[Curve]
    group: str = ""


def header_html(title: str, rows: Sequence[tuple[str, str]], notices: Sequence[str] = ()) -> str:
    """The page's heading, its settings list (``rows``: label, HTML already escaped) and its notices."""
    notes = "".join(f"<li>{escape(n)}</li>" for n in notices)
    return (f"<header><h1>{escape(title)}</h1><dl class=\"settings\">"
            + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"
            + (f"<ul class=\"notices\">{notes}</ul>" if notes else "") + "</header>")


def common_folder(paths: Sequence[Path]) -> str:
    """The folder that holds every input (their common parent), or "-" when there are none."""
    folders = {str(Path(p).parent) for p in paths}
    if not folders:
        return "-"
    return folders.pop() if len(folders) == 1 else os.path.commonpath(sorted(folders))


def listing(names: Sequence[str], most: int = 12) -> str:
    """``n: a, b, ...`` with at most ``most`` names, escaped."""
    shown = ", ".join(escape(n) for n in names[:most])
    if len(names) > most:
        shown += f", ... ({len(names) - most} more)"
    return f"{len(names)}: {shown}"


def charts_section(charts: Sequence[ChartSet], after: str = "") -> str:
    """Every chart of the page, one shown at a time: a metric switch and, with several subsets, a subset
    switch. ``after`` (HTML) follows the charts, e.g. a table of the plotted numbers."""
    if not charts:
        return "<section id=\"curves\"><h2>Rate-distortion curves</h2><p>No codec has a measured point.</p></section>"
    metrics = {c.spec.metric: c.spec.label for c in charts}
    groups = list(dict.fromkeys(c.group for c in charts))
    switches = '<label>Metric <select id="metric">' + "".join(
        f'<option value="{escape(m)}">{escape(label)}</option>' for m, label in metrics.items()) + "</select></label>"
    if len(groups) > 1:
        switches += ' <label>Data <select id="group">' + "".join(
            f'<option value="{escape(g)}">{escape(g)}</option>' for g in groups) + "</select></label>"
    figures = "".join(
        f'<figure class="chart" data-metric="{escape(c.spec.metric)}"'
        + (f' data-group="{escape(c.group)}"' if len(groups) > 1 else "") + f">{svg_plot(c.spec, c.curves)}"
        f"<figcaption>{escape(c.group + ': ' if len(groups) > 1 else '')}{escape(c.spec.label)} against rate; "
        "hover a marker for its numbers.</figcaption></figure>"
        for c in charts
    )
    missing = '<p id="nochart" hidden>No codec has a point of this metric here.</p>' if len(groups) > 1 else ""
    return (f'<section id="curves"><h2>Rate-distortion curves</h2><p>{switches}</p>{figures}{missing}{after}'
            "</section>")


_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\*([^*]+)\*")


def _inline(text: str) -> str:
    """Escaped Markdown text with its `code`, **strong** and *emphasis* spans."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(escape(text[pos:m.start()]))
        code, strong, em = m.groups()
        out.append(f"<code>{escape(code)}</code>" if code is not None else
                   f"<strong>{escape(strong)}</strong>" if strong is not None else f"<em>{escape(em)}</em>")
        pos = m.end()
    return "".join(out) + escape(text[pos:])


def table_cells(line: str) -> list[str]:
    """The cells of one Markdown table row (``| a | b |``), stripped."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _row(tag: str, cells: Sequence[str], right: Sequence[bool]) -> str:
    """A table row's cells; the columns Markdown aligns right (``---:``) are the numbers."""
    num = ' class="num"'
    return "".join(f"<{tag}{num if j < len(right) and right[j] else ''}>{_inline(c)}</{tag}>"
                   for j, c in enumerate(cells))


def markdown_html(md: str) -> str:
    """A summary.md as HTML -- headings (one level down, the page has the h1), paragraphs and tables --
    so the page's tables are the summary's, cell for cell. Only what the bench summaries use."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
        elif m := re.match(r"(#{1,5}) (.*)", line):
            level = len(m.group(1)) + 1
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(table_cells(lines[i]))
                i += 1
            align = rows[1] if len(rows) > 1 and all(re.fullmatch(r":?-+:?", c) for c in rows[1]) else None
            right = [c.endswith(":") for c in align] if align else []
            body = rows[2:] if align else rows[1:]

            out.append('<table class="summary"><thead><tr>' + _row("th", rows[0], right) + "</tr></thead><tbody>"
                       + "".join(f"<tr>{_row('td', r, right)}</tr>" for r in body) + "</tbody></table>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"#{1,5} |\s*\|", lines[i]):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "".join(out)


def summary_section(md: str) -> str:
    """The bench's summary.md (its title heads the section)."""
    return f'<section id="summary">{markdown_html(md)}</section>'


@dataclass(frozen=True)
class Picture:
    """One picture of the page: a PNG ``data:`` URI shown at ``width`` x ``height`` pixels."""

    key: str
    name: str
    caption: str
    uri: str
    width: int
    height: int


def png_data_uri(img: np.ndarray) -> str:
    """A uint8 RGB (or grey) array as a lossless PNG ``data:`` URI."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def file_data_uri(path: Path) -> str:
    """A PNG file as a ``data:`` URI, its bytes unchanged."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def gallery_html(pictures: Sequence[Picture], cls: str = "panel") -> str:
    """The pictures side by side, each with its caption; an A/B viewer takes its images from here."""
    return '<div class="gallery">' + "".join(
        f'<figure class="{cls}" data-key="{escape(p.key)}"><img data-key="{escape(p.key)}" src="{p.uri}" '
        f'width="{p.width}" height="{p.height}" alt="{escape(p.name)}"><figcaption>{escape(p.caption)}</figcaption>'
        "</figure>" for p in pictures) + "</div>"


def comparable(pictures: Sequence[Picture]) -> bool:
    """Whether the A/B viewer can show these: at least two, all of one size."""
    return len(pictures) >= 2 and len({(p.width, p.height) for p in pictures}) == 1


def viewer_html(pictures: Sequence[Picture], index: int = 0) -> str:
    """The A/B viewer: two chosen pictures (of one size) on top of each other, split by a slider; it
    starts on the first two. The first viewer of a page has the plain ids (``viewer``, ``cmp-a``, ...),
    the others a ``-N`` suffix; the script finds the parts by class."""
    w, h = pictures[0].width, pictures[0].height
    sfx = f"-{index + 1}" if index else ""

    def options(selected: int) -> str:
        return "".join(f'<option value="{escape(p.key)}"{" selected" if i == selected else ""}>{escape(p.caption)}'
                       "</option>" for i, p in enumerate(pictures))

    a, b = pictures[0], pictures[1]
    return (
        f'<div id="viewer{sfx}" class="viewer" data-split="50">'
        f'<p><label>left <select id="cmp-a{sfx}" class="cmp-a">{options(0)}</select></label> '
        f'<label>right <select id="cmp-b{sfx}" class="cmp-b">{options(1)}</select></label> '
        f'<button type="button" id="cmp-swap{sfx}" class="cmp-swap">swap</button></p>'
        f'<div class="cmp" style="width:{w}px;height:{h}px">'
        f'<img id="cmp-img-b{sfx}" class="cmp-img-b" src="{b.uri}" width="{w}" height="{h}" alt="{escape(b.name)}">'
        f'<img id="cmp-img-a{sfx}" class="cmp-img-a" src="{a.uri}" width="{w}" height="{h}" alt="{escape(a.name)}" '
        f'style="clip-path: inset(0 50% 0 0)"><div id="cmp-line{sfx}" class="cmp-line" style="left:50%"></div></div>'
        f'<p><input type="range" id="cmp-pos{sfx}" class="cmp-pos" min="0" max="100" value="50" '
        f'aria-label="split position" style="width:{w}px"></p></div>'
    )


def pictures_html(pictures: Sequence[Picture], index: int = 0, cls: str = "panel") -> str:
    """The A/B viewer over the pictures where they are comparable, then all of them in a gallery."""
    return (viewer_html(pictures, index) if comparable(pictures) else "") + gallery_html(pictures, cls)


# --------------------------------------------------------------------------- image bench sections


def _header(result: BenchResult, results: dict[str, dict[str, Any]], command: str, when: str) -> str:
    codecs = ", ".join(
        f"{escape(c.name)} (<code>{escape(c.key)}</code>)" + ("" if c.key in results else " <em>no points</em>")
        for c in result.codecs
    ) or "none"
    rows = [
        ("Data set", f"<code>{escape(common_folder([im.path for im in result.images]))}</code>"),
        ("Images", listing([im.name for im in result.images])),
        ("Codecs", codecs),
        ("Target bpp", escape(", ".join(f"{p:g}" for p in result.points))),
        ("Points", f"{result.encoded} encoded, {result.cached} cached, {result.failed} failed"),
        ("Date", escape(when)),
        ("Command", f"<code>{escape(command)}</code>"),
    ]
    return header_html("mscn bench: rate-distortion results", rows, result.notices)


def _charts(results: dict[str, dict[str, Any]], anchors: list[dict[str, Any]]) -> str:
    shown = [(m, label, pad) for m, label, pad in METRICS if _curves(results, m)]
    if not shown:
        return charts_section([])
    options = "".join(f'<option value="{escape(m)}">{escape(label)}</option>' for m, label, _ in shown)
    figures = "".join(
        f'<figure class="chart" data-metric="{escape(m)}">{svg_chart(results, m, label, pad, anchors)}'
        f"<figcaption>{escape(label)} against rate; hover a marker for its numbers.</figcaption></figure>"
        for m, label, pad in shown
    )
    return (f'<section id="curves"><h2>Rate-distortion curves</h2><p><label>Metric '
            f'<select id="metric">{options}</select></label></p>{figures}{_points_table(results)}</section>')


def _points_table(results: dict[str, dict[str, Any]]) -> str:
    """The plotted numbers, for reading off and copying."""
    rows = []
    for key, res in results.items():
        r = res["results"]
        for i, tb in enumerate(r["target-bpp"]):
            cells = [escape(res["name"]), f"{tb:g}", number(r["bpp"][i], ".4f"), number(r["psnr-rgb"][i], ".3f"),
                     number(r["ms-ssim-rgb"][i], ".4f"), str(r["num-images"][i])]
            rows.append(f'<tr data-codec="{escape(key)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<details><summary>Points (means over images)</summary><table class=\"points\"><thead><tr>"
            "<th>codec</th><th>target bpp</th><th>bpp</th><th>PSNR (dB)</th><th>MS-SSIM</th><th>images</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></details>")


def _bd_section(bd: dict[str, Any]) -> str:
    """The BD tables of bd.json/bd.md, same numbers and rounding."""
    parts = ['<section id="bd"><h2>BD-rate / BD-PSNR</h2>',
             f"<p>Metric: {escape(bd['metric'])}. Method: {escape(bd['method'])}. {escape(bd['sign'])}.</p>"]
    if not bd["references"]:
        parts.append("<p>No reference codec (jpeg or mscn) was benchmarked; nothing to compare.</p>")
    for ref, table in bd["references"].items():
        parts.append(f'<h3>vs {escape(table["name"])} (<code>{escape(ref)}</code>)</h3>'
                     f'<table class="bd" data-reference="{escape(ref)}"><thead><tr><th>codec</th>'
                     "<th>BD-rate (%)</th><th>BD-PSNR (dB)</th></tr></thead><tbody>")
        for key, row in table["codecs"].items():
            rate, dpsnr = row["bd_rate_percent"], row["bd_psnr_db"]
            parts.append(
                f'<tr data-codec="{escape(key)}"><td>{escape(row["name"])} (<code>{escape(key)}</code>)</td>'
                f'<td class="bd-rate{_sign_class(rate, -1)}" data-value="{rate!r}">{number(rate, "+.2f")}</td>'
                f'<td class="bd-psnr{_sign_class(dpsnr, 1)}" data-value="{dpsnr!r}">{number(dpsnr, "+.3f")}</td></tr>'
            )
        parts.append("</tbody></table>")
    return "".join(parts) + "</section>"


def _sign_class(value: float | None, better: int) -> str:
    """' good' / ' bad' for the cell's colour: ``better`` is the sign that beats the reference."""
    if value is None or value == 0:
        return ""
    return " good" if (value > 0) == (better > 0) else " bad"


def _crops_section(crops: CropSet | None) -> str:
    """The A/B viewer (two chosen panels, split by a slider) above every panel side by side, all the
    same crop at the same size, magnified without smoothing so artefacts stay visible."""
    head = '<section id="crops"><h2>Crops at matched size</h2>'
    if crops is None or len(crops.panels) < 2:
        return head + "<p>No crops: no codec had a point on the first image (or plotting was off).</p></section>"
    side = crops.box[2]
    size = side * max(1, 256 // side)  # 2x for the usual 128-pixel crop
    pictures = [Picture(p.key, p.name, p.name if p.bpp is None else f"{p.name}, {p.bpp:.3f} bpp, {p.psnr:.2f} dB",
                        png_data_uri(crops.crop(p)), size, size) for p in crops.panels]
    return (head + f"<p>{escape(crops.title)}; shown at {size // side}x without smoothing.</p>"
            + pictures_html(pictures, cls="crop") + "</section>")


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}h3{font-size:15px}
dl.settings{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px}dt{font-weight:600}dd{margin:0}
code{background:#f3f3f3;padding:0 3px;word-break:break-all}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px}
td.bd-rate,td.bd-psnr,td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.good{color:#17612a}.bad{color:#a11}
svg.rd{max-width:100%;height:auto;font-size:12px}svg.rd text{fill:#222;stroke:none}
figure{margin:8px 0}.gallery{display:flex;flex-wrap:wrap;gap:12px}.gallery figcaption{font-size:12px;max-width:260px}
img{image-rendering:pixelated}.cmp{position:relative;border:1px solid #999}
.cmp img{position:absolute;left:0;top:0;width:100%;height:100%}
.cmp-line{position:absolute;top:0;bottom:0;width:2px;margin-left:-1px;background:#fff;box-shadow:0 0 2px #000}
"""

# Reads everything from the page itself (the galleries' data: URIs), so no run text is ever put in script.
SCRIPT = """
(function(){
  var pick=document.getElementById('metric'),grp=document.getElementById('group');
  function showMetric(){
    var any=false;
    document.querySelectorAll('figure.chart').forEach(function(f){
      var on=f.getAttribute('data-metric')===pick.value&&(!grp||f.getAttribute('data-group')===grp.value);
      f.hidden=!on;any=any||on;});
    document.body.setAttribute('data-metric',pick.value);
    if(grp)document.body.setAttribute('data-group',grp.value);
    var none=document.getElementById('nochart');if(none)none.hidden=any;}
  if(pick){pick.addEventListener('change',showMetric);if(grp)grp.addEventListener('change',showMetric);showMetric();}
  var srcs={};
  document.querySelectorAll('.gallery img[data-key]').forEach(function(im){
    srcs[im.getAttribute('data-key')]=im.getAttribute('src');});
  document.querySelectorAll('div.viewer').forEach(function(v){
    function q(c){return v.querySelector('.'+c);}
    var a=q('cmp-a'),b=q('cmp-b'),pos=q('cmp-pos'),ia=q('cmp-img-a'),ib=q('cmp-img-b'),line=q('cmp-line');
    function split(){var p=Number(pos.value);ia.style.clipPath='inset(0 '+(100-p)+'% 0 0)';
      line.style.left=p+'%';v.setAttribute('data-split',String(p));}
    function choose(){ia.src=srcs[a.value];ib.src=srcs[b.value];
      ia.alt=a.options[a.selectedIndex].text;ib.alt=b.options[b.selectedIndex].text;
      v.setAttribute('data-left',a.value);v.setAttribute('data-right',b.value);}
    a.addEventListener('change',choose);b.addEventListener('change',choose);pos.addEventListener('input',split);
    q('cmp-swap').addEventListener('click',function(){var t=a.value;a.value=b.value;b.value=t;choose();});
    choose();split();v.setAttribute('data-ready','1');
  });
})();
"""


# --------------------------------------------------------------------------- page


def command_line() -> str:
    """The command that is running, as the user would type it again (``mscn bench ...``)."""
    return shlex.join([Path(sys.argv[0]).name or "python", *sys.argv[1:]])


def stamp(when: datetime | None = None) -> str:
    """The page's date line (UTC)."""
    return (when or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M %Z").strip()


def page_html(title: str, body: str) -> str:
    """The whole self-contained document around ``body``: the style, then the script at the end."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}<script>{SCRIPT}</script></body></html>\n")


def render_html(result: BenchResult, results: dict[str, dict[str, Any]], bd: dict[str, Any],
                crops: CropSet | None = None, anchors: bool = True, command: str | None = None,
                when: datetime | None = None) -> str:
    """The whole page as a string; ``results`` is :func:`.report.aggregate_all`'s, ``bd`` its BD tables."""
    published = load_anchors() if anchors else []
    body = (_header(result, results, command if command is not None else command_line(), stamp(when))
            + _charts(results, published) + _bd_section(bd) + _crops_section(crops))
    return page_html(f"mscn bench: {len(result.images)} images, {len(result.codecs)} codecs", body)


def write_html(result: BenchResult, crops: CropSet | None = None, anchors: bool = True,
               command: str | None = None) -> Path:
    """Write ``report.html`` into the run's output folder (beside rd.png and crops.png)."""
    results = aggregate_all(result)
    bd = result.bd or bd_tables(results)
    path = result.out / HTML_NAME
    path.write_text(render_html(result, results, bd, crops, anchors, command), encoding="utf-8")
    return path
