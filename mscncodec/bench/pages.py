"""``report.html`` of the mesh, field, series and voxel benches, from the numbers each already writes.

Each page is built from :mod:`.html`'s pieces: a header with what ran, the rate-distortion charts (one per
metric and subset of the data -- the mean over inputs, each input -- as the bench's rd.png has panels),
the bench's summary.md rendered cell for cell, and its pictures as ``data:`` URIs: the A/B viewer where
pictures of one size exist (the mesh bench's side-by-side panels, the field maps), else a gallery.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from mscncodec.bench.html import (HTML_NAME, ChartSet, ChartSpec, Curve, Picture, charts_section, color,
                                  command_line, common_folder, file_data_uri, header_html, listing, page_html,
                                  pictures_html, png_data_uri, stamp, summary_section)

BYTES = "bytes (real file size)"


def _number(v: Any) -> float | None:
    """A finite number, else None (a missing metric, an inf Chamfer of an empty decode, NaN)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def line_charts(groups: Mapping[str, Sequence[Mapping[str, Any]]], specs: Sequence[ChartSpec], x: str,
                codecs: Mapping[str, str]) -> list[ChartSet]:
    """A chart per (metric, subset) with points: a curve per codec (``row["codec"]``, coloured by its place
    in ``codecs``, key -> name), its rows' (x, metric) pairs sorted by x; a point without a finite value is
    left out. A chart whose points include a value <= 0 (an exact reconstruction's error) gets a linear
    axis there instead of a log one, so no point is dropped."""
    out = []
    for spec in specs:
        for group, rows in groups.items():
            pts = {key: sorted((xv, yv) for r in rows if r["codec"] == key
                               if (xv := _number(r.get(x))) is not None
                               and (yv := _number(r.get(spec.metric))) is not None)
                   for key in codecs}
            every = [p for ps in pts.values() for p in ps]
            if not every:
                continue
            shown = replace(spec, log_x=spec.log_x and min(p[0] for p in every) > 0,
                            log_y=spec.log_y and min(p[1] for p in every) > 0)
            curves = [Curve(key, name, [p[0] for p in pts[key]], [p[1] for p in pts[key]], color(i),
                            ours=key.startswith("mscn")) for i, (key, name) in enumerate(codecs.items()) if pts[key]]
            out.append(ChartSet(shown, curves, group))
    return out


def _codec_row(codecs: Mapping[str, str], measured: set[str]) -> str:
    return ", ".join(f"{escape(name)} (<code>{escape(key)}</code>)" + ("" if key in measured else " <em>no points</em>")
                     for key, name in codecs.items()) or "none"


def _write(out: Path, title: str, header: str, charts: list[ChartSet], md: str, pictures: str = "") -> Path:
    body = header + charts_section(charts) + summary_section(md) + pictures
    path = Path(out) / HTML_NAME
    path.write_text(page_html(title, body), encoding="utf-8")
    return path


def _pictures_section(title: str, intro: str, blocks: Sequence[str]) -> str:
    if not blocks:
        return (f'<section id="pictures"><h2>{escape(title)}</h2><p>No pictures: plotting was off or nothing was '
                "rendered.</p></section>")
    return f'<section id="pictures"><h2>{escape(title)}</h2><p>{escape(intro)}</p>{"".join(blocks)}</section>'


# --------------------------------------------------------------------------- meshes

MESH_SPECS = (
    ChartSpec("chamfer_l1", "Chamfer-L1 / bbox diagonal", BYTES, log_x=True, log_y=True, x_unit="B", x_spec=".0f",
              y_spec=".4g"),
    ChartSpec("iou", "IoU (volumetric)", BYTES, log_x=True, x_unit="B", x_spec=".0f", y_spec=".4f"),
    ChartSpec("fscore", "F-score (tau = 0.01 diag)", BYTES, log_x=True, x_unit="B", x_spec=".0f", y_spec=".4f"),
    ChartSpec("normal_consistency", "normal consistency", BYTES, log_x=True, x_unit="B", x_spec=".0f",
              y_spec=".4f"),
)

#: One mesh's side-by-side picture: (mesh name, side_by_side_*.png, (key, title) of each panel).
SidePicture = tuple[str, Path, Sequence[tuple[str, str]]]


def split_panels(path: Path, panels: Sequence[tuple[str, str]], prefix: str, top: float) -> list[Picture]:
    """The side-by-side PNG cut into its panels: equal columns, below ``top`` (the fraction of the height
    the panels fill, :data:`.mesh.render.PANEL_TOP`; the titles above it are left out, the captions carry
    them), so the A/B viewer can lay one over another."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    cw, y0 = w // len(panels), round(h * (1 - top))
    return [Picture(f"{prefix}/{key}", title.replace("\n", ", "), title.replace("\n", ", "),
                    png_data_uri(rgb[y0:, i * cw:(i + 1) * cw]), cw, h - y0)
            for i, (key, title) in enumerate(panels)]


def write_mesh_html(result: Any, sides: Sequence[SidePicture] = (), top: float = 1.0) -> Path:
    """The mesh bench's page (``result``: a :class:`.mesh.data.MeshBenchResult` after its reports):
    Chamfer-L1, IoU, F-score and normal consistency against bytes, for the mean over meshes (the targets
    every mesh has, as in rd.png) and each mesh; summary.md; every side-by-side picture's panels."""
    from mscncodec.bench.mesh.report import averages

    codecs = {c.key: c.name for c in result.codecs}
    names = [m.name for m in result.meshes]
    groups: dict[str, list[dict[str, Any]]] = {}
    if len(names) > 1:
        avg = result.summary.get("averages") or averages(result)
        groups[f"mean over {len(names)} meshes"] = [
            {"codec": k, **a} for k, per in avg.items() for a in per.values() if a["n_meshes"] == len(names)]
    for n in names:
        groups[n] = [r for r in result.records if r["mesh"] == n]
    rows = [
        ("Data set", f"<code>{escape(common_folder([m.path for m in result.meshes]))}</code>"),
        ("Meshes", listing(names)),
        ("Codecs", _codec_row(codecs, {r["codec"] for r in result.records})),
        ("Target bytes", escape(", ".join(str(s) for s in result.sizes))),
        ("Points", f"{result.encoded} encoded, {result.cached} cached, {result.failed} failed"),
        ("Date", escape(stamp())),
        ("Command", f"<code>{escape(command_line())}</code>"),
    ]
    blocks = []
    for i, (mesh, path, panels) in enumerate(sides):
        pics = split_panels(path, panels, mesh, top)
        blocks.append(f"<h3>{escape(mesh)}</h3>" + pictures_html(pics, i))
    pictures = _pictures_section("Side by side", "The original and every codec's reconstruction at one target, "
                                 "from one camera (side_by_side_*.png, cut into its panels).", blocks)
    return _write(result.out, f"mscn mesh bench: {len(names)} meshes, {len(codecs)} codecs",
                  header_html("mscn bench: meshes", rows, result.notices),
                  line_charts(groups, MESH_SPECS, "bytes", codecs), (result.out / "summary.md").read_text(), pictures)


# --------------------------------------------------------------------------- fields

def field_specs(units: str) -> tuple[ChartSpec, ...]:
    u = f" ({units})" if units else ""
    return (
        ChartSpec("rmse", f"area-weighted RMSE{u}", "bytes", log_x=True, log_y=True, x_unit="B", x_spec=".0f",
                  y_unit=f" {units}".rstrip()),
        ChartSpec("max_abs", f"max absolute error{u}", "bytes", log_x=True, log_y=True, x_unit="B", x_spec=".0f",
                  y_unit=f" {units}".rstrip()),
        ChartSpec("psnr", "PSNR over the value range [dB]", "bytes", pad=1.0, log_x=True, x_unit="B", x_spec=".0f",
                  y_spec=".2f", y_unit=" dB"),
    )


def colour_map(values: np.ndarray, lo: float, hi: float, cmap: str) -> np.ndarray:
    """A 2-D field as uint8 RGB through a matplotlib colour map on [lo, hi]; missing values grey."""
    import matplotlib

    t = np.clip((np.asarray(values, np.float64) - lo) / max(hi - lo, 1e-30), 0.0, 1.0)
    rgb = matplotlib.colormaps[cmap](np.nan_to_num(t))[..., :3]
    rgb[~np.isfinite(values)] = 0.6
    return np.round(rgb * 255).astype(np.uint8)


def map_pictures(maps: Mapping[str, Any]) -> list[str]:
    """The field and each codec's reconstruction on the field's colour scale (A/B viewer), then each codec's
    error on one symmetric scale (a second viewer); north up, magnified without smoothing."""
    f, errs, lim = maps["field"], maps["errors"], maps["limit"]
    order = np.argsort(f.lat)[::-1]  # north at the top, as map.png
    nlat, nlon = f.values.shape
    k = max(1, 512 // nlon)
    lo, hi = float(np.nanmin(f.values)), float(np.nanmax(f.values))
    rows = {r["codec"]: r for r in maps["rows"]}

    def pic(key: str, name: str, cap: str, img: np.ndarray) -> Picture:
        return Picture(key, name, cap, png_data_uri(img), nlon * k, nlat * k)

    recon = [pic("field", f"{maps['label']}", f"{maps['label']} ({f.units}), {lo:.4g} .. {hi:.4g}",
                 colour_map(f.values[order], lo, hi, "viridis"))]
    error = []
    for c, e in errs.items():
        r = rows.get(c, {})
        cap = f"{r.get('name', c)}: {r.get('bytes', '?')} B, RMSE {r.get('rmse', math.nan):.3g}"
        recon.append(pic(f"rec:{c}", c, cap, colour_map((f.values + e)[order], lo, hi, "viridis")))
        error.append(pic(f"err:{c}", c, f"error of {cap}", colour_map(e[order], -lim, lim, "RdBu_r")))
    return [f"<h3>Reconstructions at about {maps['target']} bytes</h3>" + pictures_html(recon, 0),
            f"<h3>Errors (blue - red: -{lim:.3g} .. +{lim:.3g} {escape(f.units)})</h3>" + pictures_html(error, 1)]


def write_fields_html(records: Sequence[Mapping[str, Any]], out: Path, refs: Sequence[Any] = (),
                      maps: Mapping[str, Any] | None = None, map_png: Path | None = None) -> Path:
    """The fields bench's page: RMSE, max error and PSNR against bytes for the mean over fields and each
    field; summary.md; the maps of the first field (``maps``: what :func:`.fields.plot_map` returns) and
    map.png itself."""
    from mscncodec.bench.fields import averages

    codecs = {r["codec"]: r.get("name", r["codec"]) for r in records}
    fields = sorted({r["field"] for r in records})
    units = next((r["units"] for r in records if r.get("units")), "")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    if len(fields) > 1:
        groups[f"mean over {len(fields)} fields"] = [{"codec": c, **v} for c, d in averages(list(records)).items()
                                                     for v in d.values()]
    for fld in fields:
        groups[fld] = [r for r in records if r["field"] == fld]
    rows = [
        ("Data set", f"<code>{escape(common_folder([r.path for r in refs]))}</code>"),
        ("Fields", listing(fields)),
        ("Codecs", _codec_row(codecs, set(codecs))),
        ("Target bytes", escape(", ".join(str(s) for s in sorted({r["target"] for r in records})))),
        ("Date", escape(stamp())),
        ("Command", f"<code>{escape(command_line())}</code>"),
    ]
    blocks = map_pictures(maps) if maps and maps.get("errors") else []
    if map_png is not None and Path(map_png).is_file():
        blocks.append('<h3>map.png</h3><figure class="figure"><img src="' + file_data_uri(map_png)
                      + '" alt="map.png: the field and each codec\'s error"></figure>')
    pictures = _pictures_section("Maps", "The first field and each codec at the target nearest 3000 bytes.",
                                 blocks)
    return _write(out, f"mscn fields bench: {len(fields)} fields, {len(codecs)} codecs",
                  header_html("mscn bench: global fields", rows), line_charts(groups, field_specs(units), "bytes",
                                                                            codecs),
                  (Path(out) / "summary.md").read_text(), pictures)


# --------------------------------------------------------------------------- series

def write_series_html(records: Sequence[Mapping[str, Any]], out: Path, skipped: Sequence[str] = ()) -> Path:
    """The series bench's page: RMSE, max error and PSNR against the total bytes, a chart per series (the
    unreachable targets have no point); summary.md."""
    codecs = {r["codec"]: r.get("name", r["codec"]) for r in records}
    series = list(dict.fromkeys(r["series"] for r in records))
    units = next((r["units"] for r in records if r.get("units")), "")
    groups = {s: [r for r in records if r["series"] == s] for s in series}
    shapes = [f"{s} ({rs[0]['steps']} x {rs[0]['grid'][0]} x {rs[0]['grid'][1]})" for s, rs in groups.items()]
    rows = [
        ("Series", listing(shapes)),
        ("Codecs", _codec_row(codecs, {r["codec"] for r in records if "rmse" in r})),
        ("Target bytes", escape(", ".join(str(t) for t in sorted({r["target"] for r in records}, reverse=True)))),
        ("Date", escape(stamp())),
        ("Command", f"<code>{escape(command_line())}</code>"),
    ]
    specs = tuple(replace(s, x_label="total bytes of the series") for s in field_specs(units))
    return _write(out, f"mscn series bench: {len(series)} series, {len(codecs)} codecs",
                  header_html("mscn bench: field series", rows, [f"skipped {s}" for s in skipped]),
                  line_charts(groups, specs, "bytes", codecs), (Path(out) / "summary.md").read_text())


# --------------------------------------------------------------------------- voxels

VOXEL_SPECS = (
    ChartSpec("iou", "IoU", "bytes", log_x=True, x_unit="B", x_spec=".0f", y_spec=".4f"),
    ChartSpec("chamfer", "Chamfer distance (voxels)", "bytes", log_x=True, x_unit="B", x_spec=".0f", y_spec=".4g"),
)


def voxel_curve(codec: str) -> str:
    """The curve a voxel codec's point belongs to: the downsampling factors make one, as in rd.png."""
    return "downsample-K" if codec.startswith("downsample-") else codec


def write_voxel_html(rows: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """The voxel bench's page: IoU and Chamfer against bytes, a chart per shape (a lossless codec is one
    point); summary.md."""
    points = [{**r, "codec": voxel_curve(r["codec"])} for r in rows]
    codecs = {c: c for c in dict.fromkeys(p["codec"] for p in points)}
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    groups = {s: [p for p in points if p["shape"] == s] for s in shapes}
    res = {r["shape"]: r["resolution"] for r in rows}
    hdr = [
        ("Shapes", listing([f"{s} ({res[s]})" for s in shapes])),
        ("Codecs", _codec_row(codecs, {p["codec"] for p in points if p.get("bytes") is not None})),
        ("Date", escape(stamp())),
        ("Command", f"<code>{escape(command_line())}</code>"),
    ]
    return _write(out, f"mscn voxel bench: {len(shapes)} shapes", header_html("mscn bench: occupancy grids", hdr),
                  line_charts(groups, VOXEL_SPECS, "bytes", codecs), (Path(out) / "summary.md").read_text())
