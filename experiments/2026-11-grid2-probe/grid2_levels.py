"""Which latent grids a grid2 model's amortised start uses, and what each costs (held-out photos, never Kodak).

For each photo and lambda: per grid (level 0 = full resolution ... 6 = 1/64) the share of non-zero rounded
latents and the estimated bits per pixel the ARM gives them, and the PSNR of the start with the latents
unrounded and rounded (the gap is what quantisation costs before any refinement). This is how the smooth-
photo gap was found: the start codes a sky through the 1/2-1/8 grids and leaves 1/16 and 1/32 empty.

    .venv/bin/python experiments/2026-11-grid2-probe/grid2_levels.py --names beach_sun,ruin_sun --crop 512x768 \
        --out experiments/2026-11-grid2-probe/levels.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from grid2_probe import photos  # noqa: E402

from mscncodec import _runtime, models  # noqa: E402
from mscncodec.coding.latents import lambda_index, lambda_value, pad_image, tied_step  # noqa: E402
from mscncodec.families.grid2 import network as grid2  # noqa: E402
from mscncodec.families.grid2.train import symbols_of  # noqa: E402


def levels_row(m, x: torch.Tensor, n_pix: int, log2_lam: float) -> dict:
    li = lambda_index(2.0**log2_lam)
    lam, step = lambda_value(li), tied_step(li)
    lt = torch.tensor([lam])
    with torch.no_grad():
        y = symbols_of(grid2.analysis(m.cfg, m.analysis, x, lt), torch.tensor([step]))
        hard = [torch.round(v) for v in y]
        bits = []
        for lv in range(m.cfg.levels):
            mu, ls = grid2.arm_float(m.cfg, m.theta, hard, lv, lt)
            bits.append(float(grid2.laplace_bits(hard[lv], mu, ls).sum()) / n_pix)

        def psnr(vals: list[torch.Tensor]) -> float:
            pred = grid2.synthesis(m.cfg, m.theta, [v * step for v in vals])
            return round(10 * math.log10(1 / float((pred - x).pow(2).mean())), 3)

        return {"log2_lam": log2_lam, "bpp": round(sum(bits), 4), "psnr_unrounded": psnr(y), "psnr_rounded": psnr(hard),
                "nonzero": [round(float((v != 0).float().mean()), 4) for v in hard],
                "bpp_per_level": [round(b, 4) for b in bits]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="grid2-l7")
    ap.add_argument("--log2-lam", default="-5,-8,-11")
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--names", default="", help="comma-separated photo name prefixes instead of the first N")
    ap.add_argument("--crop", default="320x480", help="top-left crop HxW (512x768: Kodak's size)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    _runtime.tune_allocator()
    torch.set_num_threads(1)
    m = models.load_model(a.model)
    res: dict = {"model": a.model, "model_id": m.model_id.hex(), "levels": "0 = full resolution ... "
                 f"{m.cfg.levels - 1} = 1/{m.cfg.align}", "photos": {}}
    for name, rgb in photos(a.photos, [v for v in a.names.split(",") if v] or None,
                            tuple(int(v) for v in a.crop.split("x"))):
        x = pad_image(rgb, m.cfg.align)
        rows = [levels_row(m, x, rgb.shape[0] * rgb.shape[1], float(v)) for v in a.log2_lam.split(",")]
        res["photos"][name] = rows
        for r in rows:
            print(name, r, flush=True)
    res["command"] = "experiments/2026-11-grid2-probe/grid2_levels.py " + " ".join(sys.argv[1:])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
