"""ms per refinement step of grid2 on a Kodak-sized frame (512x768), before and after this session's cuts.

    .venv/bin/python benchmarks/grid2_stepcost.py --threads 2 --out benchmarks/grid2-speed/stepcost-2t.json

"before": the first version of the decoder (GELU in the synthesis, upsampling by grouped
conv_transpose2d); "after": the shipped one (ReLU, polyphase upsampling as elementwise ops). Random
latents and image, generic init: the cost of a step does not depend on the values. Median of 3 runs
of 6 steps after 2 warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mscncodec import _runtime
from mscncodec.families.grid2 import network as grid2, encoder as grid2codec
from mscncodec.models import fresh_grid2_model


def _up2_convt(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    kw = k.reshape(1, 1, 1, 4).expand(c, 1, 1, 4)
    y = F.conv_transpose2d(F.pad(x, (1, 1, 0, 0), mode="replicate"), kw, stride=(1, 2), groups=c)
    y = y[..., 3 : 3 + 2 * x.shape[3]]
    y = F.conv_transpose2d(F.pad(y, (0, 0, 1, 1), mode="replicate"), kw.transpose(2, 3), stride=(2, 1), groups=c)
    return y[:, :, 3 : 3 + 2 * x.shape[2]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    _runtime.tune_allocator()
    torch.set_num_threads(a.threads)
    m = fresh_grid2_model(grid2.Grid2Config(), name="t")
    torch.manual_seed(0)
    x = torch.rand(1, 3, 512, 768)
    y0 = [torch.randn(1, 1, h, w) for h, w in grid2codec.grid_shapes(m.cfg, 512, 768)]
    shipped_up2, shipped_syn = grid2.up2, grid2.synthesis

    def before_synthesis(cfg, p, latents):
        up = grid2.upsample_all(cfg, p, latents)
        bsz, _, hh, ww = up.shape
        h = up.flatten(2).transpose(1, 2)
        n = len(cfg.hidden) + 1
        for i in range(n):
            h = grid2._lin(h, p[f"syn.w{i}"], p[f"syn.b{i}"])
            if i < n - 1:
                h = F.gelu(h)
        h = h.transpose(1, 2).reshape(bsz, 3, hh, ww)
        h = h + F.conv2d(F.pad(h, (1, 1, 1, 1), mode="replicate"), p["syn.c1w"], p["syn.c1b"])
        h = h + F.conv2d(F.pad(F.gelu(h), (1, 1, 1, 1), mode="replicate"), p["syn.c2w"], p["syn.c2b"])
        return h + 0.5

    res = {}
    for tag, up, syn in (("before", _up2_convt, before_synthesis), ("after", shipped_up2, shipped_syn)):
        grid2.up2, grid2.synthesis = up, syn
        grid2codec.refine(m, x, y0, 2.0**-8, 0.5, 2, 512 * 768)
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            grid2codec.refine(m, x, y0, 2.0**-8, 0.5, 6, 512 * 768)
            runs.append((time.perf_counter() - t) / 6 * 1000)
        res[tag] = round(float(np.median(runs)), 1)
        print(tag, res[tag], "ms/step", flush=True)
    grid2.up2, grid2.synthesis = shipped_up2, shipped_syn
    out = {"threads": a.threads, "frame": "512x768", "ms_per_step": res, "command": "benchmarks/grid2_stepcost.py"}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
