"""Calibrate grid2's lambda choice: how much refinement raises the rate at a fixed lambda.

The encoder picks lambda *before* refining, from the amortised latents' estimated rate. Refinement at
that fixed lambda spends more bits than the amortised start (it buys distortion with them), so the
encoder aims the amortised rate at target / growth(steps). This script measures growth(steps) on the
held-out split of natural-train (never Kodak): the ratio of the rounded latents' estimated rate after
an n-step refinement to the amortised one, median over photos and lambdas.

    .venv/bin/python benchmarks/grid2_calibrate.py --model grid2-l7 --out models/grid2-l7.growth.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grid2_probe import photos  # noqa: E402

from mscncodec import _runtime, models
from mscncodec.families.grid2 import network as grid2, encoder as grid2codec  # noqa: E402
from mscncodec.coding.latents import lambda_index, lambda_value  # noqa: E402
from mscncodec.families.grid2.train import symbols_of  # noqa: E402
from mscncodec.coding.latents import tied_step  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="grid2-l7")
    ap.add_argument("--steps", default="10,30,100,300")
    ap.add_argument("--log2-lam", default="-5,-8,-11")
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    _runtime.tune_allocator()
    torch.set_num_threads(1)
    m = models.load_model(a.model)
    steps = [int(s) for s in a.steps.split(",")]
    ratios: dict[int, list[float]] = {n: [] for n in steps}
    rows = []
    t0 = time.time()
    for name, rgb in photos(a.photos):
        n_pix = rgb.shape[0] * rgb.shape[1]
        x = grid2codec.pad_image(rgb, m.cfg.align)
        for l2 in (float(v) for v in a.log2_lam.split(",")):
            li = lambda_index(2.0**l2)
            lam, step = lambda_value(li), tied_step(li)
            with torch.no_grad():
                y0 = symbols_of(grid2.analysis(m.cfg, m.analysis, x, torch.tensor([lam])), torch.tensor([step]))
            r0 = grid2codec._est_bits(m, m.theta, y0, torch.tensor([lam]))
            for n in steps:
                torch.manual_seed(0)
                y, _, log = grid2codec.refine(m, x, y0, lam, step, n, n_pix)
                r = grid2codec._est_bits(m, m.theta, y, torch.tensor([lam]))
                ratios[n].append(r / r0)
                rows.append({"photo": name, "log2_lam": l2, "steps": n, "amortised_bpp": round(r0 / n_pix, 4),
                             "refined_bpp": round(r / n_pix, 4), "ratio": round(r / r0, 4),
                             "psnr": round(log[-1]["psnr"], 3)})
                print(rows[-1], flush=True)
    growth = {str(n): round(float(np.median(v)), 4) for n, v in ratios.items()}
    res = {"model": a.model, "model_id": m.model_id.hex(), "growth": growth, "rows": rows,
           "wall_s": round(time.time() - t0, 1), "data": "validation split of natural-train (grid2_probe.photos)",
           "command": "benchmarks/grid2_calibrate.py " + " ".join(sys.argv[1:])}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(growth))


if __name__ == "__main__":
    main()
