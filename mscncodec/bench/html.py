"""``report.html``: one self-contained page with an image bench run's curves, BD tables and crops.

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
from mscncodec.bench.plot import _xy, load_anchors
from mscncodec.bench.report import _fmt, aggregate_all, bd_tables
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

#: matplotlib's tab20, so a codec has the same colour here as in rd.png (see plot._color).
TAB20 = ("#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
         "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
         "#bcbd22", "#dbdb8d", "#17becf", "#9edae5")

# chart geometry in SVG user units: the plot area, then the legend to its right
WIDTH, HEIGHT = 960, 460
LEFT, TOP, PLOT_W, PLOT_H = 70, 16, 580, 380
LEGEND_X = LEFT + PLOT_W + 24


def color(i: int) -> str:
    """The i-th curve's colour, in rd.png's order (dark shades first)."""
    return TAB20[(2 * i) % 20 + (i // 10) % 2]


# --------------------------------------------------------------------------- chart


@dataclass(frozen=True)
class Axes:
    """Data range of one chart and its mapping to the plot area's pixels (y grows downwards)."""

    xmin: float
    xmax: float
    ymin: float
    ymax: float

    def px(self, x: float) -> float:
        return (x - self.xmin) / (self.xmax - self.xmin) * PLOT_W

    def py(self, y: float) -> float:
        return PLOT_H - (y - self.ymin) / (self.ymax - self.ymin) * PLOT_H


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


def _pad_range(values: Sequence[float], pad: float | None) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if pad is None:
        pad = max((hi - lo) * 0.08, 1e-3)
    return lo - pad, hi + pad


def _curves(results: dict[str, dict[str, Any]], metric: str) -> list[tuple[int, str, dict[str, Any], list, list]]:
    """(colour index, codec key, codec results, xs, ys) of every codec with a value of ``metric``."""
    out = []
    for i, (key, res) in enumerate(results.items()):
        xs, ys = _xy(res["results"]["bpp"], res["results"].get(metric, []))
        if xs:
            out.append((i, key, res, xs, ys))
    return out


def _fmt_value(metric: str, y: float) -> str:
    return f"{y:.4f}" if metric == "ms-ssim-rgb" else f"{y:.2f} dB"


def _pts(axes: Axes, xs: Sequence[float], ys: Sequence[float]) -> list[tuple[float, float]]:
    return [(round(axes.px(x), 2), round(axes.py(y), 2)) for x, y in zip(xs, ys)]


def svg_chart(results: dict[str, dict[str, Any]], metric: str, label: str, pad: float | None,
              anchors: list[dict[str, Any]]) -> str:
    """One rate-distortion chart: a polyline with markers per codec (solid) and published anchor
    (dashed, hollow markers, clipped to the measured rate range), ticks, grid and a legend."""
    curves = _curves(results, metric)
    xmax = max(max(xs) for _, _, _, xs, _ in curves)
    x_hi = xmax * 1.08
    drawn = [(a, *_xy(a["points"]["bpp"], a["points"][metric])) for a in anchors if metric in a["points"]]
    ys_seen = [y for *_, ys in curves for y in ys] + [y for _, xs, ys in drawn for x, y in zip(xs, ys) if x <= x_hi]
    axes = Axes(0.0, x_hi, *_pad_range(ys_seen, pad))

    grid, ticks = [], []
    xt, xdec = nice_ticks(axes.xmin, axes.xmax)
    for t in xt:
        x = round(axes.px(t), 2)
        grid.append(f'<line x1="{x}" y1="0" x2="{x}" y2="{PLOT_H}"/>')
        ticks.append(f'<line x1="{LEFT + x}" y1="{TOP + PLOT_H}" x2="{LEFT + x}" y2="{TOP + PLOT_H + 5}"/>'
                     f'<text class="xtick" x="{LEFT + x}" y="{TOP + PLOT_H + 18}" text-anchor="middle">'
                     f'{t:.{xdec}f}</text>')
    yt, ydec = nice_ticks(axes.ymin, axes.ymax)
    for t in yt:
        y = round(axes.py(t), 2)
        grid.append(f'<line x1="0" y1="{y}" x2="{PLOT_W}" y2="{y}"/>')
        ticks.append(f'<line x1="{LEFT - 5}" y1="{TOP + y}" x2="{LEFT}" y2="{TOP + y}"/>'
                     f'<text class="ytick" x="{LEFT - 8}" y="{TOP + y + 4}" text-anchor="end">{t:.{ydec}f}</text>')

    lines, legend = [], []
    entries = [(color(i), res["name"], key, "curve", xs, ys) for i, key, res, xs, ys in curves]
    entries += [(color(len(results) + j), f"{a['name']} (published)", a["name"], "anchor", xs, ys)
                for j, (a, xs, ys) in enumerate(drawn)]
    for n, (col, name, key, kind, xs, ys) in enumerate(entries):
        ours = kind == "curve" and key.startswith(("mscn-", "coin-"))
        width = 2.4 if ours else (1.1 if kind == "anchor" else 1.4)
        dash = ' stroke-dasharray="6 4"' if kind == "anchor" else ""
        pts = _pts(axes, xs, ys)
        attr = f'class="{kind}" data-codec="{escape(key)}"'
        lines.append(f'<polyline {attr} points="{" ".join(f"{x},{y}" for x, y in pts)}" fill="none" '
                     f'stroke="{col}" stroke-width="{width}"{dash}/>')
        fill = "#fff" if kind == "anchor" else col
        for (x, y), bx, by in zip(pts, xs, ys):
            tip = escape(f"{name}: {bx:.3f} bpp, {_fmt_value(metric, by)}")
            lines.append(f'<circle class="marker" data-codec="{escape(key)}" cx="{x}" cy="{y}" r="{4 if ours else 3}" '
                         f'fill="{fill}" stroke="{col}" stroke-width="1.2"><title>{tip}</title></circle>')
        ly = TOP + 8 + 18 * n
        legend.append(f'<line x1="{LEGEND_X}" y1="{ly}" x2="{LEGEND_X + 24}" y2="{ly}" stroke="{col}" '
                      f'stroke-width="{width}"{dash}/><circle cx="{LEGEND_X + 12}" cy="{ly}" r="3" fill="{fill}" '
                      f'stroke="{col}"/><text x="{LEGEND_X + 30}" y="{ly + 4}">{escape(name)}</text>')

    height = max(HEIGHT, TOP + 16 + 18 * len(entries))
    return (
        f'<svg class="rd" data-metric="{escape(metric)}" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(label)} vs bpp">'
        f'<g class="ticks" stroke="#444">{"".join(ticks)}</g>'
        f'<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#444"/>'
        # a nested viewport clips the anchors that run past the measured rates, as rd.png's xlim does
        f'<svg class="plot" x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" overflow="hidden" '
        f'data-xmin="{axes.xmin!r}" data-xmax="{axes.xmax!r}" data-ymin="{axes.ymin!r}" data-ymax="{axes.ymax!r}">'
        f'<g class="grid" stroke="#ddd">{"".join(grid)}</g>{"".join(lines)}</svg>'
        f'<text class="xlabel" x="{LEFT + PLOT_W / 2}" y="{TOP + PLOT_H + 40}" text-anchor="middle">'
        f'{escape(X_LABEL)}</text>'
        f'<text class="ylabel" transform="translate(16 {TOP + PLOT_H / 2}) rotate(-90)" text-anchor="middle">'
        f'{escape(label)}</text>'
        f'<g class="legend">{"".join(legend)}</g></svg>'
    )


# --------------------------------------------------------------------------- sections


def _header(result: BenchResult, results: dict[str, dict[str, Any]], command: str, when: str) -> str:
    folders = {str(im.path.parent) for im in result.images}
    dataset = folders.pop() if len(folders) == 1 else os.path.commonpath(sorted(folders)) if folders else "-"
    codecs = ", ".join(
        f"{escape(c.name)} (<code>{escape(c.key)}</code>)" + ("" if c.key in results else " <em>no points</em>")
        for c in result.codecs
    ) or "none"
    images = ", ".join(escape(im.name) for im in result.images[:12])
    if len(result.images) > 12:
        images += f", ... ({len(result.images) - 12} more)"
    rows = [
        ("Data set", f"<code>{escape(dataset)}</code>"),
        ("Images", f"{len(result.images)}: {images}"),
        ("Codecs", codecs),
        ("Target bpp", escape(", ".join(f"{p:g}" for p in result.points))),
        ("Points", f"{result.encoded} encoded, {result.cached} cached, {result.failed} failed"),
        ("Date", escape(when)),
        ("Command", f"<code>{escape(command)}</code>"),
    ]
    notes = "".join(f"<li>{escape(n)}</li>" for n in result.notices)
    return ("<header><h1>mscn bench: rate-distortion results</h1><dl class=\"settings\">"
            + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"
            + (f"<ul class=\"notices\">{notes}</ul>" if notes else "") + "</header>")


def _charts(results: dict[str, dict[str, Any]], anchors: list[dict[str, Any]]) -> str:
    shown = [(m, label, pad) for m, label, pad in METRICS if _curves(results, m)]
    if not shown:
        return "<section id=\"curves\"><h2>Rate-distortion curves</h2><p>No codec has a measured point.</p></section>"
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
            cells = [escape(res["name"]), f"{tb:g}", _fmt(r["bpp"][i], ".4f"), _fmt(r["psnr-rgb"][i], ".3f"),
                     _fmt(r["ms-ssim-rgb"][i], ".4f"), str(r["num-images"][i])]
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
                f'<td class="bd-rate{_sign_class(rate, -1)}" data-value="{rate!r}">{_fmt(rate, "+.2f")}</td>'
                f'<td class="bd-psnr{_sign_class(dpsnr, 1)}" data-value="{dpsnr!r}">{_fmt(dpsnr, "+.3f")}</td></tr>'
            )
        parts.append("</tbody></table>")
    return "".join(parts) + "</section>"


def _sign_class(value: float | None, better: int) -> str:
    """' good' / ' bad' for the cell's colour: ``better`` is the sign that beats the reference."""
    if value is None or value == 0:
        return ""
    return " good" if (value > 0) == (better > 0) else " bad"


def png_data_uri(img: np.ndarray) -> str:
    """A uint8 RGB array as a lossless PNG ``data:`` URI."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _crops_section(crops: CropSet | None) -> str:
    """The A/B viewer (two chosen panels, split by a slider) above every panel side by side, all the
    same crop at the same size, magnified without smoothing so artefacts stay visible."""
    head = '<section id="crops"><h2>Crops at matched size</h2>'
    if crops is None or len(crops.panels) < 2:
        return head + "<p>No crops: no codec had a point on the first image (or plotting was off).</p></section>"
    side = crops.box[2]
    size = side * max(1, 256 // side)  # 2x for the usual 128-pixel crop
    uris = [png_data_uri(crops.crop(p)) for p in crops.panels]
    captions = [p.name if p.bpp is None else f"{p.name}, {p.bpp:.3f} bpp, {p.psnr:.2f} dB" for p in crops.panels]
    gallery = "".join(
        f'<figure class="crop" data-key="{escape(p.key)}"><img data-key="{escape(p.key)}" src="{uri}" '
        f'width="{size}" height="{size}" alt="{escape(p.name)}"><figcaption>{escape(cap)}</figcaption></figure>'
        for p, uri, cap in zip(crops.panels, uris, captions)
    )

    def options(selected: int) -> str:
        return "".join(f'<option value="{escape(p.key)}"{" selected" if i == selected else ""}>{escape(cap)}</option>'
                       for i, (p, cap) in enumerate(zip(crops.panels, captions)))

    viewer = (
        f'<div id="viewer" class="viewer" data-split="50">'
        f'<p><label>left <select id="cmp-a">{options(0)}</select></label> '
        f'<label>right <select id="cmp-b">{options(1)}</select></label> '
        f'<button type="button" id="cmp-swap">swap</button></p>'
        f'<div class="cmp" style="width:{size}px;height:{size}px">'
        f'<img id="cmp-img-b" src="{uris[1]}" width="{size}" height="{size}" alt="{escape(crops.panels[1].name)}">'
        f'<img id="cmp-img-a" src="{uris[0]}" width="{size}" height="{size}" alt="{escape(crops.panels[0].name)}" '
        f'style="clip-path: inset(0 50% 0 0)"><div id="cmp-line" class="cmp-line" style="left:50%"></div></div>'
        f'<p><input type="range" id="cmp-pos" min="0" max="100" value="50" aria-label="split position" '
        f'style="width:{size}px"></p></div>'
    )
    return (head + f"<p>{escape(crops.title)}; shown at {size // side}x without smoothing.</p>"
            + viewer + f'<div class="gallery">{gallery}</div></section>')


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}h3{font-size:15px}
dl.settings{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px}dt{font-weight:600}dd{margin:0}
code{background:#f3f3f3;padding:0 3px;word-break:break-all}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px}
td.bd-rate,td.bd-psnr{text-align:right;font-variant-numeric:tabular-nums}.good{color:#17612a}.bad{color:#a11}
svg.rd{max-width:100%;height:auto;font-size:12px}svg.rd text{fill:#222;stroke:none}
figure{margin:8px 0}.gallery{display:flex;flex-wrap:wrap;gap:12px}.gallery figcaption{font-size:12px;max-width:260px}
img{image-rendering:pixelated}.cmp{position:relative;border:1px solid #999}
.cmp img{position:absolute;left:0;top:0;width:100%;height:100%}
.cmp-line{position:absolute;top:0;bottom:0;width:2px;margin-left:-1px;background:#fff;box-shadow:0 0 2px #000}
"""

# Reads everything from the page itself (the gallery's data: URIs), so no run text is ever put in script.
SCRIPT = """
(function(){
  var pick=document.getElementById('metric');
  function showMetric(){
    document.querySelectorAll('figure.chart').forEach(function(f){
      f.hidden=f.getAttribute('data-metric')!==pick.value;});
    document.body.setAttribute('data-metric',pick.value);}
  if(pick){pick.addEventListener('change',showMetric);showMetric();}
  var v=document.getElementById('viewer');
  if(!v)return;
  var srcs={};
  document.querySelectorAll('.gallery img[data-key]').forEach(function(im){
    srcs[im.getAttribute('data-key')]=im.getAttribute('src');});
  var a=document.getElementById('cmp-a'),b=document.getElementById('cmp-b'),pos=document.getElementById('cmp-pos');
  var ia=document.getElementById('cmp-img-a'),ib=document.getElementById('cmp-img-b');
  var line=document.getElementById('cmp-line');
  function split(){var p=Number(pos.value);ia.style.clipPath='inset(0 '+(100-p)+'% 0 0)';
    line.style.left=p+'%';v.setAttribute('data-split',String(p));}
  function choose(){ia.src=srcs[a.value];ib.src=srcs[b.value];
    ia.alt=a.options[a.selectedIndex].text;ib.alt=b.options[b.selectedIndex].text;
    v.setAttribute('data-left',a.value);v.setAttribute('data-right',b.value);}
  a.addEventListener('change',choose);b.addEventListener('change',choose);pos.addEventListener('input',split);
  document.getElementById('cmp-swap').addEventListener('click',function(){
    var t=a.value;a.value=b.value;b.value=t;choose();});
  choose();split();v.setAttribute('data-ready','1');
})();
"""


# --------------------------------------------------------------------------- page


def command_line() -> str:
    """The command that is running, as the user would type it again (``mscn bench ...``)."""
    return shlex.join([Path(sys.argv[0]).name or "python", *sys.argv[1:]])


def render_html(result: BenchResult, results: dict[str, dict[str, Any]], bd: dict[str, Any],
                crops: CropSet | None = None, anchors: bool = True, command: str | None = None,
                when: datetime | None = None) -> str:
    """The whole page as a string; ``results`` is :func:`.report.aggregate_all`'s, ``bd`` its BD tables."""
    stamp = (when or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M %Z").strip()
    published = load_anchors() if anchors else []
    body = (_header(result, results, command if command is not None else command_line(), stamp)
            + _charts(results, published) + _bd_section(bd) + _crops_section(crops))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>mscn bench: {len(result.images)} images, {len(result.codecs)} codecs</title>"
            f"<style>{STYLE}</style></head><body>{body}<script>{SCRIPT}</script></body></html>\n")


def write_html(result: BenchResult, crops: CropSet | None = None, anchors: bool = True,
               command: str | None = None) -> Path:
    """Write ``report.html`` into the run's output folder (beside rd.png and crops.png)."""
    results = aggregate_all(result)
    bd = result.bd or bd_tables(results)
    path = result.out / HTML_NAME
    path.write_text(render_html(result, results, bd, crops, anchors, command), encoding="utf-8")
    return path
