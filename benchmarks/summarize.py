"""Per-codec mean bpp / PSNR at each target and median encode/decode seconds, from a bench's points.csv.

    .venv/bin/python benchmarks/summarize.py benchmarks/kodak/points.csv [codec ...]
"""

from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict


def main(path: str, only: list[str]) -> None:
    rows = list(csv.DictReader(open(path)))
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if only and r["codec"] not in only:
            continue
        by[r["codec"]][float(r["target_bpp"])].append(r)
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


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
