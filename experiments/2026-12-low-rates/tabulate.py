"""The sweep's JSON lines -> one CSV (results/low-rates/sweep.csv), with JPEG 2000's PSNR at each stream's size
(the bench's codec, same or fewer bytes).

    python experiments/2026-12-low-rates/tabulate.py before=BEFORE.jsonl,... after=AFTER.jsonl,... --out results/low-rates/sweep.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from anatomy import j2k_at
from sweep import load

COLS = ["phase", "image", "width", "height", "effort", "target_bpp", "target_bytes", "routed", "ok", "model", "bytes",
        "bpp", "psnr", "j2k_bytes", "j2k_psnr", "delta_db", "seconds", "message"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("phases", nargs="+", help="PHASE=FILE.jsonl[,FILE...]")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rows, images = [], {}
    for spec in a.phases:
        phase, files = spec.split("=")
        for f in files.split(","):
            for line in Path(f).read_text().splitlines():
                r = json.loads(line)
                row = {k: r.get(k) for k in COLS}
                row.update(phase=phase, image=r["image"].split("natural-train/")[-1],
                           message=r.get("error") or r.get("note") or "")
                if r.get("ok"):
                    rgb = images.setdefault(r["image"], load(r["image"]))
                    row.update(j2k_at(rgb, r["bytes"]))
                    row["delta_db"] = round(row["psnr"] - row["j2k_psnr"], 3)
                    row["psnr"], row["j2k_psnr"] = round(row["psnr"], 3), round(row["j2k_psnr"], 3)
                    row["bpp"] = round(row["bpp"], 5)
                rows.append(row)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, COLS)
        w.writeheader()
        w.writerows(rows)
    print(len(rows), "rows ->", a.out)


if __name__ == "__main__":
    main()
