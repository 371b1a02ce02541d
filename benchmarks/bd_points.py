"""BD-rate / BD-PSNR of the mscn rows of a bench's points.csv against the classical codecs (the README's tables).

The bench's own bd.md compares every codec with its anchors (JPEG and the first mscn row); the README quotes
each mscn row against JPEG, WebP, JPEG 2000 and HEIC, over all targets and from 0.25 bpp up (where the 0.1 bpp
point is left out). Curves are the per-target means over the images, as in bd.md.

    .venv/bin/python benchmarks/bd_points.py benchmarks/kodak/points.csv [--from 0.25] [--refs jpeg,webp,...]
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict

from mscncodec.bench.bd import bd_psnr, bd_rate


def curves(path: str) -> dict[str, dict[float, list[tuple[float, float]]]]:
    """codec -> target bpp -> [(bpp, psnr) per image]."""
    by: dict[str, dict[float, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in csv.DictReader(open(path)):
        by[r["codec"]][float(r["target_bpp"])].append((float(r["bpp"]), float(r["psnr"])))
    return by


def mean_curve(points: dict[float, list[tuple[float, float]]], lo: float = 0.0) -> tuple[list[float], list[float]]:
    pts = sorted((sum(b for b, _ in v) / len(v), sum(p for _, p in v) / len(v)) for t, v in points.items() if t >= lo)
    return [b for b, _ in pts], [p for _, p in pts]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("points")
    ap.add_argument("--from", dest="lo", type=float, default=0.0, help="only the mscn targets at or above this bpp")
    ap.add_argument("--refs", default="jpeg,webp,jpeg2000,heic")
    a = ap.parse_args()
    by = curves(a.points)
    refs = [r for r in a.refs.split(",") if r in by]
    print("| test | " + " | ".join(refs) + " |")
    print("|---|" + "---|" * len(refs))
    for test in sorted(c for c in by if c.startswith("mscn")):
        tb, tp = mean_curve(by[test], a.lo)
        cells = []
        for ref in refs:
            rb, rp = mean_curve(by[ref])
            cells.append(f"{bd_rate(rb, rp, tb, tp):+.1f} % / {bd_psnr(rb, rp, tb, tp):+.2f} dB")
        print(f"| {test} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
