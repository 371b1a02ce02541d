"""The rate-distortion figure: measured curves plus published Kodak anchors.

Uses matplotlib's object API with the Agg canvas (no pyplot global state), so
plotting works headless, inside worker processes and in tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ANCHORS_PATH = Path(__file__).with_name("anchors.json")


def load_anchors(path: Path = ANCHORS_PATH) -> list[dict[str, Any]]:
    """Published curves from ``anchors.json``; only entries explicitly marked published."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [a for a in data.get("anchors", []) if a.get("published") is True]


def measured_points(xs: list[Any], ys: list[Any]) -> tuple[list[float], list[float]]:
    """Drop null points and sort by rate so lines do not zig-zag."""
    pts = sorted((x, y) for x, y in zip(xs, ys) if x is not None and y is not None)
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_rd(results: dict[str, dict[str, Any]], path: Path, with_anchors: bool = True) -> None:
    """PSNR-vs-bpp for every measured codec (solid) and published anchor (dashed, hollow)."""
    from mscncodec.bench.base import extra

    Figure = extra("matplotlib.figure").Figure
    fig = Figure(figsize=(8, 5.5), dpi=120)
    ax = fig.add_subplot()
    xmax, ys_seen = 0.0, []
    for i, (key, res) in enumerate(results.items()):
        xs, ys = measured_points(res["results"]["bpp"], res["results"]["psnr-rgb"])
        if not xs:
            continue
        ours = key.startswith(("mscn-", "coin-"))
        ax.plot(xs, ys, "-o", color=color(i), lw=2.4 if ours else 1.3, ms=5 if ours else 4, label=res["name"])
        xmax, ys_seen = max(xmax, max(xs)), ys_seen + ys
    if with_anchors:
        for j, anchor in enumerate(load_anchors()):
            xs, ys = measured_points(anchor["points"]["bpp"], anchor["points"]["psnr-rgb"])
            ax.plot(xs, ys, "--o", color=color(len(results) + j), mfc="none", lw=1.1, ms=5,
                    label=f"{anchor['name']} (published)")
            ys_seen += [y for x, y in zip(xs, ys) if x <= xmax * 1.08]
    if xmax > 0:
        ax.set_xlim(0, xmax * 1.08)
    if ys_seen:
        ax.set_ylim(min(ys_seen) - 1, max(ys_seen) + 1)
    ax.set_xlabel("bits per pixel (file size incl. headers)")
    ax.set_ylabel("PSNR RGB [dB] (mean over images)")
    ax.set_title("Rate-distortion" + (" (published anchors: full Kodak)" if with_anchors else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


#: matplotlib's tab20 colour map, written out so that report.html needs no matplotlib for rd.png's colours
TAB20 = ("#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
         "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
         "#bcbd22", "#dbdb8d", "#17becf", "#9edae5")


def color(i: int) -> str:
    """The i-th curve's colour, the same in rd.png and report.html: distinct for up to 20 curves (tab20
    ordering: dark shades first)."""
    return TAB20[(2 * i) % 20 + (i // 10) % 2]
