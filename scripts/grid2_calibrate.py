"""Calibrate grid2's lambda choice: how much refinement raises the rate at a fixed lambda.

The encoder picks lambda *before* refining, from the amortised latents' estimated rate. Refinement at
that fixed lambda spends more bits than the amortised start (it buys distortion with them), so the
encoder aims the amortised rate at target / growth(steps). This script measures growth(steps) on the
held-out split of natural-train (never Kodak): the ratio of the rounded latents' estimated rate after
an n-step refinement to the amortised one, median over photos and lambdas (`growth`), and median over photos
per lambda (`growth_by_log2_lam`, reported only: the growth rises with the rate, 0.73-0.84 at 2^-4..2^-8 and
0.93-0.96 at 2^-10..2^-12 for grid2-l7-ft256+dense, but aiming with it measured worse on Kodak than the
one number, which aims high rates rich and re-aims them precisely: experiments/2026-11-grid2-probe/aim-r9-kodak-partial.json).
For a variant that sends a decoder update (`--model grid2-l7+dense`) the refined rate is the latents' under the
chosen update plus the update's bytes, written to that variant's own file (mscncodec/weights/grid2-l7+dense.growth.json).

    .venv/bin/python scripts/grid2_calibrate.py --model grid2-l7 --out mscncodec/weights/grid2-l7.growth.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grid2_probe import photos  # noqa: E402

from mscncodec import _runtime, models
from mscncodec.coding.latents import lambda_index, lambda_value, pad_image, tied_step  # noqa: E402
from mscncodec.families.grid2.frame import est_bits  # noqa: E402
from mscncodec.families.grid2.network import analysis  # noqa: E402
from mscncodec.families.grid2.quantizer import symbols_of  # noqa: E402
from mscncodec.families.grid2.refine import refine  # noqa: E402
from mscncodec.families.grid2.update import choose_update  # noqa: E402


def calibrate_photo(job: tuple[str, str, np.ndarray, list[int], list[float]]) -> list[dict]:
    """Rows (one per lambda and step count) of one photo; one process, one thread."""
    model, name, rgb, steps, log2_lams = job
    _runtime.tune_allocator()
    torch.set_num_threads(1)
    m = models.load_model(model)
    n_pix = rgb.shape[0] * rgb.shape[1]
    x = pad_image(rgb, m.cfg.align)
    rows = []
    for l2 in log2_lams:
        li = lambda_index(2.0**l2)
        lam, step = lambda_value(li), tied_step(li)
        with torch.no_grad():
            y0 = symbols_of(analysis(m.cfg, m.analysis, x, torch.tensor([lam])), torch.tensor([step]))
        r0 = est_bits(m, m.theta, y0, torch.tensor([lam]))
        for n in steps:
            torch.manual_seed(0)
            y, delta, log = refine(m, x, y0, lam, step, n, n_pix, update=m.sends_update)
            # with a decoder update: the latents' rate under the update the encoder would choose, plus
            # the update's own bytes (what the first aim has to leave room for)
            cands, chosen, _ = choose_update(m, x, y, delta, lam, step, n_pix)
            secs, params = cands[chosen]
            r = est_bits(m, params, y, torch.tensor([lam])) + 8 * sum(len(b) for _, b in secs)
            rows.append({"photo": name, "log2_lam": l2, "steps": n, "amortised_bpp": round(r0 / n_pix, 4),
                         "refined_bpp": round(r / n_pix, 4), "ratio": round(r / r0, 4),
                         "psnr": round(log[-1]["psnr"], 3), "update": chosen})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="grid2-l7")
    ap.add_argument("--steps", default="10,30,100,300")
    ap.add_argument("--log2-lam", default="-5,-8,-11")
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--names", default="", help="comma-separated photo name prefixes instead of the first N")
    ap.add_argument("--crop", default="320x480", help="top-left crop HxW (512x768: Kodak's size)")
    ap.add_argument("--jobs", type=int, default=1, help="photos calibrated in parallel (one thread each)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    steps = [int(s) for s in a.steps.split(",")]
    lams = [float(v) for v in a.log2_lam.split(",")]
    pics = photos(a.photos, [v for v in a.names.split(",") if v] or None, tuple(int(v) for v in a.crop.split("x")))
    jobs = [(a.model, name, rgb, steps, lams) for name, rgb in pics]
    t0 = time.time()
    if a.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(min(a.jobs, len(jobs))) as pool:
            rows = [r for part in pool.map(calibrate_photo, jobs) for r in part]
    else:
        rows = [r for job in jobs for r in calibrate_photo(job)]
    m = models.load_model(a.model)
    growth = {str(n): round(float(np.median([r["ratio"] for r in rows if r["steps"] == n])), 4) for n in steps}
    by_lam = {str(n): {str(l2): round(float(np.median([r["ratio"] for r in rows
                                                       if r["steps"] == n and r["log2_lam"] == l2])), 4)
                       for l2 in lams} for n in steps}
    res = {"model": a.model, "model_id": m.model_id.hex(), "growth": growth, "growth_by_log2_lam": by_lam,
           "rows": rows,
           "wall_s": round(time.time() - t0, 1), "data": "validation split of natural-train (grid2_probe.photos)",
           "command": "scripts/grid2_calibrate.py " + " ".join(sys.argv[1:])}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(growth))


if __name__ == "__main__":
    main()
