"""Per-codec mean bpp / PSNR at each target and median encode/decode seconds, from a bench's points.csv;
with --bd, the README's BD tables instead: each mscn row against JPEG, WebP, JPEG 2000 and HEIC (the bench's
own bd.md has them against its anchors only), over all targets or, with --from, from that bpp up.

    .venv/bin/python scripts/summarize.py results/kodak/points.csv [codec ...]
    .venv/bin/python scripts/summarize.py results/kodak/points.csv --bd [--from 0.25]
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict

from mscncodec.bench.bd import bd_psnr, bd_rate

BD_REFS = ("jpeg", "webp", "jpeg2000", "heic")


def by_codec(path: str, only: list[str]) -> dict[str, dict[float, list[dict]]]:
    """codec -> target bpp -> its rows (one per image)."""
    by: dict[str, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in csv.DictReader(open(path)):
        if only and r["codec"] not in only:
            continue
        by[r["codec"]][float(r["target_bpp"])].append(r)
    return by


def mean_curve(pts: dict[float, list[dict]], lo: float = 0.0) -> tuple[list[float], list[float]]:
    """(mean bpp, mean PSNR) per target from `lo` up, in rate order: the curve BD compares (as in bd.md)."""
    xy = sorted((statistics.mean(float(r["bpp"]) for r in rs), statistics.mean(float(r["psnr"]) for r in rs))
                for t, rs in pts.items() if t >= lo)
    return [b for b, _ in xy], [p for _, p in xy]


def table(by: dict[str, dict[float, list[dict]]]) -> None:
    print("| codec | " + " | ".join(["points (mean PSNR dB @ mean bpp, n images)", "encode s (median)", "decode s (median)"]) + " |")
    print("|---|---|---|---|")
    for codec, pts in by.items():
        cells, enc, dec = [], [], []
        for t in sorted(pts):
            rs = pts[t]
            cells.append(f"{statistics.mean(float(r['psnr']) for r in rs):.2f} @ {statistics.mean(float(r['bpp']) for r in rs):.3f}"
                         f" ({len(rs)})")
            enc += [float(r["encode_time"]) for r in rs]
            dec += [float(r["decode_time"]) for r in rs]
        print(f"| {codec} | {'; '.join(cells)} | {statistics.median(enc):.1f} | {statistics.median(dec):.2f} |")


def bd(by: dict[str, dict[float, list[dict]]], lo: float) -> None:
    refs = [r for r in BD_REFS if r in by]
    print("| test | " + " | ".join(refs) + " |")
    print("|---|" + "---|" * len(refs))
    ref_curves = [mean_curve(by[ref]) for ref in refs]
    for test in sorted(c for c in by if c.startswith("mscn")):
        tb, tp = mean_curve(by[test], lo)
        cells = [f"{bd_rate(rb, rp, tb, tp):+.1f} % / {bd_psnr(rb, rp, tb, tp):+.2f} dB" for rb, rp in ref_curves]
        print(f"| {test} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("points")
    ap.add_argument("codecs", nargs="*", help="only these codecs (the table)")
    ap.add_argument("--bd", action="store_true", help="BD-rate / BD-PSNR of each mscn row against " + ", ".join(BD_REFS))
    ap.add_argument("--from", dest="lo", type=float, default=0.0, help="--bd: only the mscn targets from this bpp up")
    a = ap.parse_args()
    if a.bd:
        bd(by_codec(a.points, []), a.lo)
    else:
        table(by_codec(a.points, a.codecs))


if __name__ == "__main__":
    main()
