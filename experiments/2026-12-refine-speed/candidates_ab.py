"""Real encodes (file size is the rate) with and without the start candidates, at equal target sizes, on
held-out photos: PSNR and bytes of each stream.

    python candidates_ab.py --photos 14037,55067 --bpp 0.1,0.3 --effort default --out ab.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time

import numpy as np

import mscncodec
from mscncodec.families.grid2 import refine as R
from probe import load


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", required=True)
    ap.add_argument("--bpp", default="0.1,0.3")
    ap.add_argument("--effort", default="default")
    ap.add_argument("--out", default="ab.jsonl")
    a = ap.parse_args()
    with_c = dict(R.PRESETS)
    without = {k: dataclasses.replace(p, candidates=()) for k, p in with_c.items()}
    for photo in a.photos.split(","):
        rgb = load(photo, None)
        for bpp in map(float, a.bpp.split(",")):
            for name, presets in (("without", without), ("with", with_c)):
                R.PRESETS.clear()
                R.PRESETS.update(presets)
                t = time.perf_counter()
                data = mscncodec.encode(rgb, bpp=bpp, effort=a.effort)
                secs = time.perf_counter() - t
                out = mscncodec.decode(data)
                mse = float(np.mean((out.astype(np.float64) - rgb) ** 2))
                r = {"photo": photo, "bpp_target": bpp, "effort": a.effort, "candidates": name, "bytes": len(data),
                     "bpp": 8 * len(data) / (rgb.shape[0] * rgb.shape[1]), "psnr": 10 * math.log10(255**2 / mse),
                     "seconds": round(secs, 1)}
                print(json.dumps(r), flush=True)
                with open(a.out, "a") as f:
                    f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
