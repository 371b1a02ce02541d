"""Probes of the grid2 decoder from a *generic* start, on held-out natural-train photos (never Kodak).

capacity: unquantised fit (no rate term, no rounding) of latents + the whole decoder from the generic
          seeded init: PSNR against steps, so the architecture's ceiling is a number.
rd:       a model (e.g. the codec's own `+scratch` variant: generic decoder sent in the file, latents from
          zero, the C3-style recipe) at N refinement steps (or, with --steps 0, at an --effort), against
          JPEG 2000 at the same real file size.

    .venv/bin/python scripts/grid2_probe.py capacity --steps 1500 --out experiments/2026-11-grid2-probe/capacity.json
    .venv/bin/python scripts/grid2_probe.py rd --model grid2-l7+scratch --steps 1000 --bpp 0.3,0.8 \
        --out build/rd-scratch.json

Photos: the first three files of the validation split of ../shared/data/natural-train (the split the
trainers hold out), top-left crops of at most 320x480 to keep the CPU time in reach.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from mscncodec import _runtime
from mscncodec.coding.latents import pad_image
from mscncodec.families.grid2.config import Grid2Config, init_params
from mscncodec.families.grid2.synthesis import synthesis
from mscncodec.modalities.image import load_rgb, training_files

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "natural-train"
CROP = (320, 480)


def photos(n: int = 3, names: list[str] | None = None, crop: tuple[int, ...] = CROP) -> list[tuple[str, np.ndarray]]:
    """The first n validation photos, or those named (Kodak-size ones: beach_sun_*, ruin_sun_*), crops
    (h, w) from the top left or (h, w, y, x) from row y, column x: only two held-out photos are Kodak's size,
    so a second crop of each doubles the photos a Kodak-size setting can be chosen on."""
    _, val = training_files(DATA, 0.05, 0)
    picked = [f for f in val if any(f.name.startswith(m) for m in names)] if names else val[:n]
    out = []
    for f in picked:
        y, x = crop[2:] if len(crop) == 4 else (0, 0)
        im = load_rgb(f)[y : y + crop[0], x : x + crop[1]]
        if len(crop) == 4 and im.shape[:2] != crop[:2]:  # an offset crop is asked for its size: say so
            raise SystemExit(f"{f.name}: the {crop[0]}x{crop[1]} crop at row {y}, column {x} leaves the photo "
                             f"(it gives {im.shape[0]}x{im.shape[1]})")
        out.append((f.name, np.ascontiguousarray(im)))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def capacity(steps: int, lr: float, record: list[int]) -> dict:
    cfg = Grid2Config()
    res = {}
    for name, rgb in photos():
        h, w, _ = rgb.shape
        x = pad_image(rgb, cfg.align)
        p = {k: v.clone().requires_grad_(True) for k, v in init_params(cfg, 0, analysis=False).items()}
        lat = [torch.zeros(1, 1, a, b, requires_grad=True) for a, b in cfg.grid_shapes(h, w)]
        opt = torch.optim.Adam([{"params": lat, "lr": lr}, {"params": list(p.values()), "lr": lr}])
        curve, t0 = [], time.time()
        for i in range(steps + 1):
            pred = synthesis(cfg, p, lat)
            mse = (pred[..., :h, :w] - x[..., :h, :w]).pow(2).mean()
            if i in record:
                out = (pred[0, :, :h, :w].detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
                curve.append({"step": i, "psnr": round(psnr(rgb, out), 3), "wall_s": round(time.time() - t0, 1)})
                print(name, curve[-1], flush=True)
            if i == steps:
                break
            for g in opt.param_groups:
                g["lr"] = lr * (0.5 * (1 + math.cos(math.pi * i / steps)) * 0.95 + 0.05)
            opt.zero_grad()
            mse.backward()
            opt.step()
        res[name] = {"size": [h, w], "curve": curve}
    return {"what": "unquantised fit of grid2 (latents + whole decoder) from the generic init, Adam, cosine lr",
            "lr": lr, "photos": res,
            "mean_final_psnr": round(float(np.mean([r["curve"][-1]["psnr"] for r in res.values()])), 3)}


def rd(model: str, steps: int | None, bpps: list[float], n_photos: int = 3, effort: str = "default",
       names: list[str] | None = None, crop: tuple[int, int] = CROP) -> dict:
    from mscncodec.modalities import image_codec as codec
    from mscncodec.bench.classic import Jpeg2000Codec

    j2k = Jpeg2000Codec()
    rows = []
    for name, rgb in photos(n_photos, names, crop):
        n_pix = rgb.shape[0] * rgb.shape[1]
        for bpp in bpps:
            t0 = time.time()
            data, rep = codec.encode_image(rgb, bpp=bpp, model=model, steps=steps, effort=effort, return_report=True)
            t_enc = time.time() - t0
            # JPEG 2000 at the same real size (largest file not above ours)
            _, jdata = j2k.search_quality(rgb, 8 * len(data) / n_pix)
            jp = psnr(rgb, j2k.decode(jdata))
            row = {"photo": name, "target_bpp": bpp, "bytes": len(data), "bpp": round(8 * len(data) / n_pix, 4),
                   "psnr": round(float(rep["psnr"]), 3), "j2k_bytes": len(jdata), "j2k_psnr": round(jp, 3),
                   "delta_db": round(float(rep["psnr"]) - jp, 3), "encode_s": round(t_enc, 1)}
            rows.append(row)
            print(row, flush=True)
    return {"model": model, "steps": steps, "effort": effort, "rows": rows,
            "mean_delta_db": round(float(np.mean([r["delta_db"] for r in rows])), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["capacity", "rd"])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--model", default="grid2-l7+scratch")
    ap.add_argument("--bpp", default="0.3,0.8")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--effort", default="default", help="rd: effort when --steps is 0")
    ap.add_argument("--names", default="", help="rd: comma-separated photo name prefixes instead of the first N")
    ap.add_argument("--crop", default="320x480",
                    help="rd: crop HxW from the top left (512x768: Kodak's size), or HxW+Y+X from row Y, column X")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    _runtime.tune_allocator()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.mode == "capacity":
        rec = sorted({0, 50, 100, 250, 500, 1000, 1500, 2000, 3000, a.steps} - {s for s in range(a.steps + 1, 10**6)})
        res = capacity(a.steps, a.lr, [s for s in rec if s <= a.steps])
    else:
        crop = tuple(int(v) for v in a.crop.replace("+", "x").split("x"))
        if len(crop) not in (2, 4):  # "HxW+Y" would otherwise crop from the top left, its Y dropped
            ap.error(f"--crop {a.crop}: give HxW or HxW+Y+X")
        res = rd(a.model, a.steps or None, [float(v) for v in a.bpp.split(",")], a.photos, a.effort,
                 [v for v in a.names.split(",") if v] or None, crop)
    res["command"] = "scripts/grid2_probe.py " + " ".join(__import__("sys").argv[1:])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
