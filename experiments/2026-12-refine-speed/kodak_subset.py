"""Before/after on the same Kodak images and targets from two bench points.csv files: mean RGB PSNR @ mean bpp
per codec and target, median encode seconds, and BD-rate / BD-PSNR of each mscn row against the classical
codecs (Bjontegaard, as `mscn bench`'s bd.md). Measures only: nothing here is tuned on Kodak.

    python kodak_subset.py --before old/points.csv --after results/kodak-issue28/points.csv \
        --images 12 --targets 0.1,0.25,0.5,1.0 > table.md
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict

from mscncodec.bench.bd import bd_psnr, bd_rate

REFS = ("jpeg2000", "webp", "heic")


def load(path: str, images: set[str], targets: set[float], tag: str) -> dict[str, dict[float, list[dict]]]:
    out: dict[str, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in csv.DictReader(open(path)):
        t = float(r["target_bpp"])
        if r["image"] in images and (t in targets or not r["codec"].startswith("mscn")):
            name = r["codec"] + (f" ({tag})" if r["codec"].startswith("mscn") else "")
            out[name][t].append(r)
    return out


def curve(rows: dict[float, list[dict]], n: int) -> tuple[list[float], list[float], list[float]]:
    ts = [t for t in sorted(rows) if len(rows[t]) == n]  # only targets every image reached
    bpp = [statistics.mean(float(r["bpp"]) for r in rows[t]) for t in ts]
    psnr = [statistics.mean(float(r["psnr"]) for r in rows[t]) for t in ts]
    return ts, bpp, psnr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--images", type=int, default=12, help="kodim01 .. kodimNN")
    ap.add_argument("--targets", default="0.1,0.25,0.5,1.0")
    a = ap.parse_args()
    images = {f"kodim{i:02d}.png" for i in range(1, a.images + 1)}
    targets = {float(t) for t in a.targets.split(",")}
    before = load(a.before, images, targets, "before")
    after = load(a.after, images, targets, "after")
    rows = {**{k: v for k, v in before.items() if k.startswith("mscn-grid2")},
            **{k: v for k, v in after.items() if k.startswith("mscn-grid2")}}
    n = len(images)
    print(f"Kodak {sorted(images)[0]} .. {sorted(images)[-1]} ({n} images), mean RGB PSNR (dB) @ mean bpp\n")
    print("| codec | " + " | ".join(f"{t:g} bpp" for t in sorted(targets)) + " | median encode s |")
    print("|---|" + "---|" * (len(targets) + 1))
    for name in sorted(k for k in rows if k.startswith("mscn")):
        ts, bpp, psnr = curve(rows[name], n)
        cells = {t: f"{p:.2f} @ {b:.3f}" for t, b, p in zip(ts, bpp, psnr)}
        secs = [float(r["encode_time"]) for t in ts for r in rows[name][t] if r["encode_time"]]
        print(f"| {name} | " + " | ".join(cells.get(t, "") for t in sorted(targets))
              + f" | {statistics.median(secs):.0f} |" if secs else " | |")
    print("\n| mscn row | " + " | ".join(f"BD-rate vs {r} (%) | BD-PSNR vs {r} (dB)" for r in REFS) + " |")
    print("|---|" + "---|---|" * len(REFS))
    for name in sorted(k for k in rows if k.startswith("mscn")):
        _, b, p = curve(rows[name], n)
        cells = []
        for ref in REFS:
            if ref not in after:
                cells += ["", ""]
                continue
            _, rb, rp = curve(after[ref], n)
            cells += [f"{bd_rate(rb, rp, b, p):+.1f}", f"{bd_psnr(rb, rp, b, p):+.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
