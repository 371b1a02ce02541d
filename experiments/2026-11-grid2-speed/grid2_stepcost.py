"""ms per refinement step of grid2 on a Kodak-sized frame (512x768): this checkout's decoder against the
decoder module of an earlier commit, measured in one process, interleaved (this VM's speed drifts by
~20 % over minutes, so runs alternate and the median is reported).

    .venv/bin/python experiments/2026-11-grid2-speed/grid2_stepcost.py --threads 1 --before df8b250 \
        --out experiments/2026-11-grid2-speed/stepcost-1t.json

A step is what `refine` does: the rate of every latent grid (ARM + Laplace bits), the synthesis, MSE,
backward, Adam. Two kinds: latents only (`fast`) and latents + the dense decoder update (`default`, `max`).
The parts (rate and synthesis, forward + backward, with the decoder's gradients) are timed alone as well.
Random latents and image, the shipped grid2-l7 weights: the cost of a step does not depend on the values.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mscncodec import _runtime
from mscncodec.families.grid2 import encoder as grid2codec, network as grid2
from mscncodec.models import load_model

NETWORK = "mscncodec/families/grid2/network.py"


def module_at(commit: str):
    """grid2's network module as it was at `commit` (loaded beside the current one)."""
    src = subprocess.run(["git", "show", f"{commit}:{NETWORK}"], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    path = Path(tempfile.mkdtemp()) / "grid2_network_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("grid2_network_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--before", default="df8b250", help="commit whose decoder module is the baseline")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="refinement steps per timed run")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    _runtime.tune_allocator()
    torch.set_num_threads(a.threads)
    before = module_at(a.before)
    shipped = {"rate_bits": grid2.rate_bits, "synthesis": grid2.synthesis}
    variants = {"before": {"rate_bits": before.rate_bits, "synthesis": before.synthesis}, "after": shipped}

    m = load_model("grid2-l7+dense")
    torch.manual_seed(0)
    x = torch.rand(1, 3, 512, 768)
    y0 = [torch.randn(1, 1, h, w).mul(3) for h, w in grid2codec.grid_shapes(m.cfg, 512, 768)]
    p = {k: v.clone().requires_grad_(True) for k, v in m.theta.items()}
    yg = [v.round().requires_grad_(True) for v in y0]
    lam = torch.tensor([2.0**-8])

    def use(tag: str) -> None:
        for k, f in variants[tag].items():
            setattr(grid2, k, f)

    def step(update: bool):
        return lambda: grid2codec.refine(m, x, y0, float(lam), 0.5, a.steps, 512 * 768, update=update)

    jobs = {
        "step, latents only (fast)": (step(False), a.steps),
        "step, latents + dense update (default, max)": (step(True), a.steps),
        "rate: ARM + Laplace bits, fwd + bwd": (lambda: grid2.rate_bits(m.cfg, p, yg, yg, lam).sum().backward(), 1),
        "synthesis, fwd + bwd": (lambda: grid2.synthesis(m.cfg, p, [v * 0.5 for v in yg]).pow(2).mean().backward(), 1),
    }
    times: dict[str, dict[str, list[float]]] = {j: {"before": [], "after": []} for j in jobs}
    try:
        for r in range(a.runs + 1):  # the first round warms up and is dropped
            for j, (f, n) in jobs.items():
                for tag in ("before", "after"):
                    use(tag)
                    t = time.perf_counter()
                    f()
                    if r:
                        times[j][tag].append((time.perf_counter() - t) / n * 1000)
    finally:
        use("after")
    res = {j: {tag: round(statistics.median(v), 1) for tag, v in d.items()} for j, d in times.items()}
    for j, d in res.items():
        print(f"{j}: {d['before']} -> {d['after']} ms ({d['after'] / d['before']:.2f}x)", flush=True)
    out = {"threads": a.threads, "frame": "512x768", "before": a.before, "ms": res,
           "runs": {j: d for j, d in times.items()}, "torch": torch.__version__,
           "command": f"experiments/2026-11-grid2-speed/grid2_stepcost.py --threads {a.threads} --before {a.before}"}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
