"""Probe: at a low rate, is a sparse half-resolution grid worth its bytes? Encode with every latent of the grids
--zero (e.g. 1) forced to zero in the packed stream (the size fit then fills the freed bytes with a finer step),
against the plain encode, at equal real size; JPEG 2000 at the same size for reference.

    python experiments/2026-12-low-rates/zero_grid.py --bpp 0.1 --model grid2-l7-c256 --zero 1 --out OUT.jsonl IMAGE ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mscncodec.families.grid2 import encoder as g2enc
from mscncodec.modalities.image_codec import encode_image

from anatomy import j2k_at
from sweep import load


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="+")
    ap.add_argument("--bpp", type=float, default=0.1)
    ap.add_argument("--effort", default="fast")
    ap.add_argument("--model", default="grid2-l7-c256")
    ap.add_argument("--zero", default="1")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    zero = {int(v) for v in a.zero.split(",")}
    plain = g2enc.quantise

    def zeroed(v, s, deadzone, level=0, *rest):
        q = plain(v, s, deadzone, level, *rest)
        return np.zeros_like(q) if level in zero else q

    for path in a.images:
        rgb = load(path)
        row = {"image": path, "model": a.model, "bpp_target": a.bpp, "effort": a.effort, "zero": sorted(zero)}
        for tag, fn in (("plain", plain), ("zeroed", zeroed)):
            g2enc.quantise = fn
            try:
                data, rep = encode_image(rgb, bpp=a.bpp, effort=a.effort, model=a.model, return_report=True)
            finally:
                g2enc.quantise = plain
            row[tag] = {"bytes": len(data), "psnr": rep["psnr"], "note": rep["note"], **j2k_at(rgb, len(data))}
        row["gain_db"] = row["zeroed"]["psnr"] - row["plain"]["psnr"]
        print(json.dumps(row), flush=True)
        with Path(a.out).open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
