"""Turn per-point records into the files a benchmark run leaves behind.

* ``NAME.json`` per codec, in CompressAI's results layout so existing plotting
  scripts (and CompressAI's published curves) can be mixed freely with ours;
* ``points.csv`` with every (image, codec, point) for custom analysis;
* ``bd.json`` / ``bd.md`` with BD-rate / BD-PSNR against the reference codecs;
* ``rd.png`` (see :mod:`.plot`);
* ``report.html``, the self-contained results page (see :mod:`.html`).
"""

from __future__ import annotations

import csv
import json
import math
from typing import Any

import numpy as np

from mscncodec.bench.base import Codec
from mscncodec.bench.bd import bd_psnr, bd_rate
from mscncodec.bench.metrics import psnr_from_mse
from mscncodec.bench.result import BenchResult

CSV_FIELDS = (
    "image", "codec", "codec_name", "target_bpp", "bpp", "bytes", "psnr", "ms_ssim", "mse",
    "encode_time", "decode_time", "quality",
)
#: The classical reference every codec is compared with in the BD tables.
BASELINE_KEY = "jpeg"
PSNR_NOTE = (
    "'psnr-rgb' (plotted, used for BD) is the mean over images of per-image RGB PSNR; "
    "'psnr-rgb-of-mean-mse' is the PSNR of the mean MSE (weights bad images more)"
)


def _mean(values: list[Any]) -> float | None:
    """Mean over finite values; None (JSON null) when there are none."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def aggregate(records: list[dict[str, Any]], codec: Codec, points: list[float]) -> dict[str, Any]:
    """CompressAI-style results for one codec: per target point, means over images.

    Points every image failed at are left out rather than written as nulls, so
    the lists stay plottable.
    """
    res: dict[str, list[Any]] = {k: [] for k in (
        "target-bpp", "bpp", "psnr-rgb", "ms-ssim-rgb", "psnr-rgb-of-mean-mse",
        "encoding_time", "decoding_time", "num-images",
    )}
    mine = [r for r in records if r["codec"] == codec.key]
    for p in points:
        rows = [r for r in mine if math.isclose(r["target_bpp"], p)]
        if not rows:
            continue
        mean_mse = _mean([r["mse"] for r in rows])
        res["target-bpp"].append(p)
        res["bpp"].append(_mean([r["bpp"] for r in rows]))
        res["psnr-rgb"].append(_mean([r["psnr"] for r in rows]))
        res["ms-ssim-rgb"].append(_mean([r["ms_ssim"] for r in rows]))
        res["psnr-rgb-of-mean-mse"].append(
            None if mean_mse is None or mean_mse <= 0 else psnr_from_mse(mean_mse)
        )
        res["encoding_time"].append(_mean([r["encode_time"] for r in rows]))
        res["decoding_time"].append(_mean([r["decode_time"] for r in rows]))
        res["num-images"].append(len(rows))
    n = max(res["num-images"], default=0)
    return {
        "name": codec.name,
        "description": f"{codec.description}. Mean over {n} images per target bpp; {PSNR_NOTE}.",
        "results": res,
    }


def bd_tables(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """BD-rate/BD-PSNR of every codec vs JPEG 4:2:0 and vs the first mscn codec present."""
    refs = [k for k in results if k == BASELINE_KEY] + [k for k in results if k.startswith("mscn-")][:1]
    tables: dict[str, Any] = {}
    for ref in refs:
        rr = results[ref]["results"]
        rows = {}
        for key, res in results.items():
            if key == ref:
                continue
            tr = res["results"]
            rate = bd_rate(rr["bpp"], rr["psnr-rgb"], tr["bpp"], tr["psnr-rgb"])
            dpsnr = bd_psnr(rr["bpp"], rr["psnr-rgb"], tr["bpp"], tr["psnr-rgb"])
            rows[key] = {
                "name": res["name"],
                "bd_rate_percent": rate if math.isfinite(rate) else None,
                "bd_psnr_db": dpsnr if math.isfinite(dpsnr) else None,
            }
        tables[ref] = {"name": results[ref]["name"], "codecs": rows}
    return {
        "metric": "psnr-rgb (mean of per-image RGB PSNR) vs mean bpp",
        "method": "Bjontegaard (VCEG-M33): cubic fit in log-rate over the overlapping interval; "
                  "lower degree when a curve has < 4 points",
        "sign": "BD-rate < 0 and BD-PSNR > 0 mean the codec beats the reference",
        "references": tables,
    }


def number(x: float | None, spec: str) -> str:
    """A table cell: `x` in format `spec`, or n/a."""
    return "n/a" if x is None else format(x, spec)


def bd_markdown(bd: dict[str, Any]) -> str:
    """The BD tables as Markdown (also what the CLI prints)."""
    lines = [
        "# BD-rate / BD-PSNR",
        "",
        f"Metric: {bd['metric']}. Method: {bd['method']}. {bd['sign']}.",
    ]
    if not bd["references"]:
        lines += ["", f"No reference codec ({BASELINE_KEY} or mscn) was benchmarked; nothing to compare."]
    for ref, table in bd["references"].items():
        lines += ["", f"## vs {table['name']} (`{ref}`)", "",
                  "| codec | BD-rate (%) | BD-PSNR (dB) |", "|---|---:|---:|"]
        for key, row in table["codecs"].items():
            lines.append(
                f"| {row['name']} (`{key}`) | {number(row['bd_rate_percent'], '+.2f')} "
                f"| {number(row['bd_psnr_db'], '+.3f')} |"
            )
    return "\n".join(lines) + "\n"


def write_csv(result: BenchResult) -> None:
    """Every finished point, one row each, sorted for stable diffs."""
    rows = sorted(result.records, key=lambda r: (r["codec"], r["image"], r["target_bpp"]))
    with (result.out / "points.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def aggregate_all(result: BenchResult) -> dict[str, dict[str, Any]]:
    """:func:`aggregate` of every codec with at least one point, by codec key in run order."""
    results: dict[str, dict[str, Any]] = {}
    for codec in result.codecs:
        agg = aggregate(result.records, codec, result.points)
        if agg["results"]["bpp"]:
            results[codec.key] = agg
    return results


def write_reports(result: BenchResult, plot: bool = True, anchors: bool = True) -> dict[str, Any]:
    """Write JSON/CSV/BD (and the plot) for everything measured; returns the BD dict.

    ``report.html`` (:mod:`.html`) is written by the runner after the crops, which it shows."""
    results = aggregate_all(result)
    for key, agg in results.items():
        (result.out / f"{key}.json").write_text(json.dumps(agg, indent=2) + "\n")
    write_csv(result)
    bd = bd_tables(results)
    (result.out / "bd.json").write_text(json.dumps(bd, indent=2) + "\n")
    (result.out / "bd.md").write_text(bd_markdown(bd))
    if plot and results:
        from mscncodec.bench.plot import plot_rd

        plot_rd(results, result.out / "rd.png", with_anchors=anchors)
    return bd


def summary_line(result: BenchResult) -> str:
    """One line for the end of a run: size of the sweep, cache use, failures, headline BD."""
    line = (
        f"bench: {len(result.images)} images x {len(result.codecs)} codecs x {len(result.points)} "
        f"points: {result.encoded} encoded, {result.cached} cached, {result.failed} failed "
        f"in {result.seconds:.1f}s -> {result.out}"
    )
    rows = result.bd.get("references", {}).get(BASELINE_KEY, {}).get("codecs", {})
    scored = [(r["bd_rate_percent"], r["name"]) for r in rows.values() if r["bd_rate_percent"] is not None]
    if scored:
        rate, name = min(scored)
        line += f"; best BD-rate vs JPEG: {name} {rate:+.1f}%"
    return line
