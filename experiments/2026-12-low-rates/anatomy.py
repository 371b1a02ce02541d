"""Where a grid2 stream's bytes go, and how it compares with JPEG 2000 at the same real size (issue 28, item 4).

    OMP_NUM_THREADS=1 MSCN_THREADS=1 python experiments/2026-12-low-rates/anatomy.py --bpp 0.1 --effort fast \
        --models grid2-l7-c256,grid2-l7-ft256c,grid2-l7,grid2-l7-ft256 --out results/low-rates/anatomy-0.1.jsonl IMAGE ...

Per encode: size, PSNR, JPEG 2000's PSNR at the same or fewer bytes (the bench's codec: OpenJPEG, mct=1, rates
mode, its nominal rate shaved until the file fits), the container's share (everything but the LATS payload),
lambda and step, and per grid: latents, non-zero latents, the bits the ARM spends on them (float twin, the
probabilities the coder uses up to its integer rounding), split into bits on zero and on non-zero symbols, and
how many latents sit at the smallest scale (SCALE_MIN)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from mscncodec.bench.classic import Jpeg2000Codec
from mscncodec.coding import latents as lt
from mscncodec.container import bitstream
from mscncodec.families.grid2.arm import arm_float
from mscncodec.families.grid2.config import GRD2, SCALE_MIN
from mscncodec.families.grid2.latent_codec import LatentCodec
from mscncodec.modalities import image as imod
from mscncodec.modalities.image_codec import encode_image
from mscncodec.models import find_by_id

from sweep import load  # IMAGE[:HxW][@SCALE]


def anatomy(data: bytes) -> dict:
    header, sections = bitstream.unpack(data)
    m = find_by_id(header["model_id"])
    lam_idx, step_idx = lt.grid_header(m, header, sections, GRD2)
    lam = lt.lambda_value(lam_idx)
    if "QPRM" in sections:
        return {"model": m.name, "note": "update variant: per-grid bits not computed"}
    h, w = header["height"], header["width"]
    sym = LatentCodec(m.cfg, m.theta, lam).decompress(sections["LATS"], m.cfg.grid_shapes(h, w))
    ctx = [torch.from_numpy(v.astype(np.float32))[None, None] for v in sym]
    grids = []
    with torch.no_grad():
        for l, v in enumerate(ctx):
            mu, ls = arm_float(m.cfg, m.theta, ctx, l, torch.tensor([lam]))
            bits = lt.laplace_bits(v, mu, ls)[0, 0].numpy()
            z = sym[l] == 0
            grids.append({"level": l, "shape": list(sym[l].shape), "latents": int(sym[l].size),
                          "nonzero": int((~z).sum()), "bits": float(bits.sum()),
                          "bits_on_zeros": float(bits[z].sum()), "bits_on_nonzero": float(bits[~z].sum()),
                          "at_scale_min": int((ls[0, 0].numpy() <= math.log(SCALE_MIN) + 1e-6).sum()),
                          "mean_scale_on_zeros": float(np.exp(ls[0, 0].numpy()[z]).mean()) if z.any() else None})
    return {"model": m.name, "lambda_index": lam_idx, "log2_lambda": math.log2(lam), "step_index": step_idx,
            "tied_step_index": lt.step_index_for(lam), "bytes": len(data), "lats_bytes": len(sections["LATS"]),
            "container_bytes": len(data) - len(sections["LATS"]), "grids": grids}


def j2k_at(rgb: np.ndarray, n_bytes: int) -> dict:
    c = Jpeg2000Codec()
    data = c.encode_at_bpp(rgb, 8 * n_bytes / (rgb.shape[0] * rgb.shape[1]))
    return {"j2k_bytes": len(data), "j2k_psnr": imod.psnr(rgb, c.decode(data))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="+")
    ap.add_argument("--bpp", type=float, default=0.1)
    ap.add_argument("--effort", default="fast")
    ap.add_argument("--models", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    for path in a.images:
        rgb = load(path)
        for name in (a.models.split(",") if a.models else [None]):
            try:
                data, rep = encode_image(rgb, bpp=a.bpp, effort=a.effort, model=name, return_report=True)
            except Exception as e:  # noqa: BLE001 (a refusal is a result here)
                row = {"image": path, "model": name, "bpp_target": a.bpp, "effort": a.effort, "error": str(e)}
            else:
                row = {"image": path, "bpp_target": a.bpp, "effort": a.effort, "psnr": rep["psnr"], "bpp": rep["bpp"],
                       "seconds": rep["encode_s"], **anatomy(data), **j2k_at(rgb, len(data))}
                row["delta_db"] = row["psnr"] - row["j2k_psnr"]
            print(json.dumps({k: v for k, v in row.items() if k != "grids"}), flush=True)
            with Path(a.out).open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
