"""What a mesh bench run leaves behind: results.json/.csv, summary.md (tables and the Chamfer-L1 gap at equal
size), rd.png and the side-by-side pictures (:mod:`.render`)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mscncodec.bench.mesh.data import (MeshBenchResult, MeshData, _finite, _read_ply, as_mesh, decoded_path, load_mesh,
                                       render_target)
from mscncodec.bench.mesh.render import render_side_by_side


CSV_FIELDS = (
    "mesh", "codec", "codec_name", "target_bytes", "bytes", "over_target", "chamfer_l1", "chamfer_l2",
    "chamfer_l1_pts", "chamfer_l2_pts", "normal_consistency", "iou", "precision", "recall", "fscore",
    "faces_out", "vertices_out", "encode_time", "search_time", "decode_time", "config",
)


#: Per-point fields averaged over meshes in results.json.
AVG_FIELDS = ("bytes", "chamfer_l1", "chamfer_l2", "chamfer_l1_pts", "normal_consistency", "iou", "fscore",
              "encode_time", "decode_time")


def _num(x: Any) -> float:
    """A stored metric as float; null (an inf Chamfer of an empty decode, or NaN) becomes inf/NaN again."""
    return float(x) if isinstance(x, (int, float)) else math.nan


def _chamfer(rec: dict[str, Any], key: str = "chamfer_l1") -> float:
    """Chamfer of a record; null means inf when the decode was empty."""
    v = rec.get(key)
    if v is None:
        return math.inf if rec.get("faces_out", 1) == 0 else math.nan
    return float(v)


def averages(result: MeshBenchResult) -> dict[str, dict[str, dict[str, Any]]]:
    """codec -> target -> arithmetic mean over meshes of each :data:`AVG_FIELDS` entry, with ``n_meshes``.

    A Chamfer that is inf for any mesh makes the mean inf (null in JSON): an
    empty decode is not averaged away.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for c in result.codecs:
        per: dict[str, dict[str, Any]] = {}
        for s in result.sizes:
            rows = [r for r in result.records if r["codec"] == c.key and r["target_bytes"] == s]
            if not rows:
                continue
            agg: dict[str, Any] = {"n_meshes": len(rows)}
            for f in AVG_FIELDS:
                vals = [_chamfer(r, f) if f.startswith("chamfer") else _num(r.get(f)) for r in rows]
                agg[f] = _finite(float(np.mean(vals)))
            per[str(s)] = agg
        out[c.key] = per
    return out


def _curve(records: list[dict[str, Any]], codec: str, mesh: str) -> tuple[np.ndarray, np.ndarray]:
    """(ln bytes, ln Chamfer-L1) of one codec on one mesh, sorted by bytes; equal byte counts averaged."""
    pts: dict[int, list[float]] = {}
    for r in records:
        if r["codec"] == codec and r["mesh"] == mesh:
            c = _chamfer(r)
            if math.isfinite(c) and c > 0 and r.get("bytes"):
                pts.setdefault(int(r["bytes"]), []).append(math.log(c))
    b = sorted(pts)
    return np.log(np.array(b, dtype=np.float64)), np.array([np.mean(pts[x]) for x in b])


def log_chamfer_gap(test: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray],
                    grid: int = 256) -> tuple[float, float, float]:
    """Mean of ln CD_test(b) - ln CD_ref(b) over the overlapping range of ln bytes, and that range in bytes.

    Each curve is the piecewise-linear interpolant of its measured points in
    (ln bytes, ln Chamfer-L1) -- with 2-4 points per curve a polynomial fit
    (classic Bjontegaard) would invent wiggles -- and the gap is averaged
    uniformly in ln bytes (trapezoid rule on ``grid`` points).  ``exp(gap)`` is
    the geometric-mean ratio of the Chamfer distances at equal size; < 1 means
    the test codec is more accurate.  Returns ``(nan, nan, nan)`` when either
    curve has < 2 points or the ranges do not overlap (no extrapolation).
    """
    (xt, yt), (xr, yr) = test, ref
    if len(xt) < 2 or len(xr) < 2:
        return math.nan, math.nan, math.nan
    lo, hi = max(xt[0], xr[0]), min(xt[-1], xr[-1])
    if not hi > lo:
        return math.nan, math.nan, math.nan
    x = np.linspace(lo, hi, grid)
    gap = np.interp(x, xt, yt) - np.interp(x, xr, yr)
    mean = float(np.sum((gap[1:] + gap[:-1]) * 0.5 * np.diff(x)) / (hi - lo))
    return mean, float(math.exp(lo)), float(math.exp(hi))


def compare_codecs(result: MeshBenchResult) -> list[dict[str, Any]]:
    """The log-Chamfer gap at equal bytes of every mscn codec (else every later baseline) vs every baseline.

    Per mesh :func:`log_chamfer_gap`; the summary is the mean of the per-mesh
    gaps over the meshes where both curves overlap, reported as a ratio
    ``exp(mean gap)`` (geometric mean over meshes and over the byte range).
    """
    keys = [c.key for c in result.codecs]
    names = {c.key: c.name for c in result.codecs}
    base = [k for k in keys if not k.startswith("mscn")]
    tests = [k for k in keys if k.startswith("mscn")]
    pairs = [(t, b) for t in tests for b in base] + [(base[j], base[i]) for i in range(len(base))
                                                      for j in range(i + 1, len(base))]
    rows = []
    for t, b in pairs:
        per_mesh = {}
        for m in result.meshes:
            gap, lo, hi = log_chamfer_gap(_curve(result.records, t, m.name), _curve(result.records, b, m.name))
            if math.isfinite(gap):
                per_mesh[m.name] = {"log_gap": gap, "ratio": math.exp(gap), "bytes_lo": lo, "bytes_hi": hi}
        gaps = [v["log_gap"] for v in per_mesh.values()]
        mean = float(np.mean(gaps)) if gaps else math.nan
        rows.append({"test": t, "test_name": names[t], "ref": b, "ref_name": names[b], "meshes": per_mesh,
                     "mean_log_gap": _finite(mean), "ratio": _finite(math.exp(mean)) if gaps else None})
    return rows


COMPARE_METHOD = (
    "For each mesh, each codec's measured points are joined piecewise-linearly in (ln bytes, ln Chamfer-L1); "
    "the gap ln CD_test - ln CD_ref is averaged uniformly in ln bytes over the byte range both codecs cover "
    "(no extrapolation). The per-mesh gaps are averaged over meshes; ratio = exp(mean gap) is the "
    "geometric-mean Chamfer-L1 ratio at equal size (< 1: the test codec is more accurate; 0.8 = 20% lower "
    "Chamfer). Points over their target still count at their real size."
)


def summary_markdown(result: MeshBenchResult, avg: dict[str, Any], comp: list[dict[str, Any]]) -> str:
    """Tables per target (means over meshes) and the equal-size Chamfer comparison, as Markdown."""
    lines = [
        "# Mesh benchmark",
        "",
        f"{len(result.meshes)} meshes x {len(result.codecs)} codecs x targets {', '.join(map(str, result.sizes))} "
        "bytes. Chamfer (CD) is symmetric, mean of the two directions' mean distance from a surface sample to the "
        "other *surface*, in units of the reference's bounding-box diagonal (CD-L2: squared, units of diag^2); "
        "CD-L1pts uses sample-to-sample distances (includes a sampling floor, for comparison with the literature). "
        "NC: normal consistency; F: F-score at tau = 0.01 diag; IoU: volumetric, generalised winding number. "
        "Means over meshes.",
        "",
        "| codec | target | bytes | CD-L1 (1e-3) | CD-L2 (1e-6) | CD-L1pts (1e-3) | NC | F | IoU | enc s | dec s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(x: Any, scale: float = 1.0, spec: str = ".3f") -> str:
        return "inf/n.a." if x is None else format(x * scale, spec)

    for c in result.codecs:
        for s, a in avg.get(c.key, {}).items():
            lines.append(
                f"| {c.name} | {s} | {f(a['bytes'], spec='.0f')} | {f(a['chamfer_l1'], 1e3)} | "
                f"{f(a['chamfer_l2'], 1e6)} | {f(a['chamfer_l1_pts'], 1e3)} | {f(a['normal_consistency'])} | "
                f"{f(a['fscore'])} | {f(a['iou'])} | {f(a['encode_time'], spec='.2f')} | "
                f"{f(a['decode_time'], spec='.2f')} |")
    lines += ["", "## Chamfer-L1 at equal size", "", COMPARE_METHOD, ""]
    if not comp:
        lines.append("Fewer than two codecs: nothing to compare.")
    else:
        lines += ["| test | vs | CD-L1 ratio | change | meshes | per mesh (ratio over bytes range) |",
                  "|---|---|---:|---:|---:|---|"]
        for row in comp:
            per = "; ".join(f"{m}: {v['ratio']:.3f} over {v['bytes_lo']:.0f}-{v['bytes_hi']:.0f} B"
                            for m, v in row["meshes"].items()) or "no overlap"
            ratio = row["ratio"]
            lines.append(f"| {row['test_name']} | {row['ref_name']} | {f(ratio)} | "
                         f"{'n/a' if ratio is None else format((ratio - 1) * 100, '+.1f') + '%'} | "
                         f"{len(row['meshes'])} | {per} |")
    over = [r for r in result.records if r.get("over_target")]
    if over:
        lines += ["", "Over target (the codec's smallest file is larger than the target): " + ", ".join(
            f"{r['codec']} on {r['mesh']} @ {r['target_bytes']} B -> {r['bytes']} B" for r in over) + "."]
    return "\n".join(lines) + "\n"


def write_reports(result: MeshBenchResult, plot: bool = True, render: bool = True,
                  echo: Callable[[str], None] = tqdm.write) -> None:
    """results.json, results.csv, summary.md, report.html; rd.png and side_by_side_*.png unless switched off."""
    from mscncodec.modalities.mesh_metrics import DEFAULT_TAU, METRICS_VERSION

    out = result.out
    recs = sorted(result.records, key=lambda r: (r["mesh"], r["codec"], r["target_bytes"]))
    avg = averages(result)
    comp = compare_codecs(result)
    result.summary = {"averages": avg, "comparisons": comp}
    doc = {
        "settings": {"sizes": result.sizes, "metrics_version": METRICS_VERSION, "tau": DEFAULT_TAU,
                     "units": "distances / reference bbox diagonal; chamfer_l2 / diagonal^2",
                     "chamfer": "(mean_ref d(p, rec surface) + mean_rec d(q, ref surface)) / 2; "
                                "_pts: distances to the other mesh's samples",
                     "comparison_method": COMPARE_METHOD},
        "meshes": [{"name": m.name, "sha1": m.sha1, "vertices": m.vertices, "faces": m.faces, "diag": m.diag,
                    "file_bytes": m.file_bytes} for m in result.meshes],
        "codecs": [{"key": c.key, "name": c.name, "description": c.description, "version": c.version(),
                    "config": c.config()} for c in result.codecs],
        "records": recs,
        "averages": avg,
        "comparisons": comp,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in recs:
            w.writerow({**r, "config": json.dumps(r.get("config", {}), sort_keys=True)})
    (out / "summary.md").write_text(summary_markdown(result, avg, comp), encoding="utf-8")
    if plot and recs:
        plot_rd(result, out / "rd.png")
    sides = []  # (mesh, picture, (key, title) per panel) for report.html
    if render and recs:
        shown = render_target(result.sizes)
        for m in result.meshes:
            panels: list[tuple[str, MeshData | None]] = [
                (f"original\n{m.faces} faces, {m.file_bytes / 1000:.0f} KB file", load_mesh(str(m.path)))]
            keys = ["original"]
            for c in result.codecs:
                rec = next((r for r in recs if r["mesh"] == m.name and r["codec"] == c.key
                            and r["target_bytes"] == shown), None)
                p = decoded_path(out, m, c, shown)
                if rec is None:
                    continue
                keys.append(c.key)
                title = f"{c.name}\n{rec['bytes']} B, CD-L1 {_fmt_cd(_chamfer(rec))}"
                if p.is_file():
                    panels.append((title, as_mesh(_read_ply(p))))
                else:
                    echo(f"no decoded mesh kept for {c.key} on {m.name} @ {shown} B (cached before it was saved)")
                    panels.append((title + "\n(decoded mesh not kept)", None))
            try:
                render_side_by_side(panels, out / f"side_by_side_{m.stem}.png")
                sides.append((m.name, out / f"side_by_side_{m.stem}.png", list(zip(keys, (t for t, _ in panels)))))
            except Exception as exc:  # a picture must never lose the numbers
                echo(f"could not render {m.name}: {type(exc).__name__}: {exc}")
    from mscncodec.bench.mesh.render import PANEL_TOP
    from mscncodec.bench.pages import write_mesh_html

    write_mesh_html(result, sides, top=PANEL_TOP)


def _fmt_cd(x: float) -> str:
    return "inf" if math.isinf(x) else ("n/a" if math.isnan(x) else f"{x * 1e3:.2f}e-3")


def summary_line(result: MeshBenchResult) -> str:
    """One line for the end of a run: size of the sweep, cache use, failures, headline comparison."""
    line = (f"mesh bench: {len(result.meshes)} meshes x {len(result.codecs)} codecs x {len(result.sizes)} sizes: "
            f"{result.encoded} encoded, {result.cached} cached, {result.failed} failed in {result.seconds:.1f}s "
            f"-> {result.out}")
    heads = [r for r in result.summary.get("comparisons", []) if r["test"].startswith("mscn") and r["ratio"]]
    if heads:
        line += "; CD-L1 at equal size: " + ", ".join(
            f"{r['test']} vs {r['ref']} x{r['ratio']:.2f}" for r in heads)
    return line


def plot_rd(result: MeshBenchResult, path: Path) -> None:
    """Chamfer-L1 vs bytes (log-log), one panel per mesh plus the mean over meshes.

    The mean panel only shows targets every mesh has a finite point for, so
    the averaged curve never mixes different mesh subsets.
    """
    from mscncodec.bench.base import extra
    from mscncodec.bench.plot import color

    Figure = extra("matplotlib.figure").Figure
    names = [m.name for m in result.meshes]
    n = len(names) + (1 if len(names) > 1 else 0)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(5.2 * cols, 4.2 * rows), dpi=110)
    avg = result.summary.get("averages") or averages(result)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        for j, c in enumerate(result.codecs):
            if i < len(names):
                pts = sorted((r["bytes"], _chamfer(r)) for r in result.records
                             if r["codec"] == c.key and r["mesh"] == names[i])
                title = names[i]
            else:
                pts = sorted((a["bytes"], a["chamfer_l1"]) for a in avg.get(c.key, {}).values()
                             if a["n_meshes"] == len(names) and a["chamfer_l1"] is not None and a["bytes"])
                title = f"mean over {len(names)} meshes"
            pts = [(b, y) for b, y in pts if math.isfinite(y) and y > 0]
            if not pts:
                continue
            ours = c.key.startswith("mscn")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color=color(j), lw=2.4 if ours else 1.3,
                    ms=5 if ours else 4, label=c.name)
        for s in result.sizes:
            ax.axvline(s, color="0.8", lw=0.8, ls=":", zorder=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("bytes (real file size)")
        ax.set_ylabel("Chamfer-L1 / bbox diagonal")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
