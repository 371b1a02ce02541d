"""Convergence curves from probe.py's JSON lines: rate + D / lambda, PSNR and bpp against steps (and the
seconds they took), one panel row per photo and lambda, one line per variant.

    python plot.py runs.jsonl --out curves.png
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="curves.png")
    a = ap.parse_args()
    rows = [json.loads(l) for f in a.runs for l in open(f) if l.strip()]
    keys = sorted({(r["photo"], r.get("crop"), r["model"], r["log2_lam"]) for r in rows}, key=str)
    fig, axes = plt.subplots(len(keys), 3, figsize=(13, 2.8 * len(keys)), squeeze=False)
    for row, key in zip(axes, keys):
        by = defaultdict(list)
        for r in rows:
            if (r["photo"], r.get("crop"), r["model"], r["log2_lam"]) == key:
                by[r["variant"]].append(r)
        for name, rs in sorted(by.items()):
            rs.sort(key=lambda r: r["steps"])
            s = [r["steps"] for r in rs]
            row[0].plot(s, [r["J"] for r in rs], "o-", label=name)
            row[1].plot(s, [r["psnr"] for r in rs], "o-", label=name)
            row[2].plot(s, [r["bpp"] for r in rs], "o-", label=name)
        photo, crop, model, ll = key
        row[0].set_title(f"{photo}{' ' + crop if crop else ''}, {model}, lambda 2^{ll:g}: rate + D/lambda", fontsize=8)
        row[1].set_title("PSNR (dB), rounded latents", fontsize=8)
        row[2].set_title("estimated bpp (update included)", fontsize=8)
        for ax in row:
            ax.set_xlabel("refinement steps (schedule spans them)", fontsize=7)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)


if __name__ == "__main__":
    main()
