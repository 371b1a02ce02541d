"""Seconds per point of every default `mscn bench` codec on one Kodak image: the measurement behind
the bench's time estimate (mscncodec/bench/estimate.py, SECONDS_PER_MP).

Runs each codec's points exactly as the bench does (run_point: rate search, encode, decode, PSNR,
MS-SSIM), inline with the torch threads `mscn bench` gets, and writes seconds per point and per
megapixel to times.json beside this script.

    .venv/bin/python experiments/2026-11-bench-time/run.py ../shared/data/kodak/kodim01.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from mscncodec._runtime import set_threads
from mscncodec.bench.cli import DEFAULT_CODECS, DEFAULT_INR_POINTS
from mscncodec.bench.codecs import resolve_codecs
from mscncodec.bench.runner import DEFAULT_POINTS, prepare_images, run_point


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("--codecs", default=DEFAULT_CODECS)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("times.json"))
    ap.add_argument("--threads", type=int, default=0, help="0: what `mscn bench` uses (every CPU)")
    args = ap.parse_args()
    threads = set_threads(args.threads or None)
    ref = prepare_images([args.image])[0]
    mp = ref.height * ref.width / 1e6
    codecs, _ = resolve_codecs(args.codecs)
    out: dict = {"image": ref.name, "megapixels": mp, "threads": threads, "torch": torch.__version__,
                 "cpus": os.cpu_count(), "machine": platform.machine(),
                 "note": "one core of two was busy with a training job: times are pessimistic", "codecs": {}}
    for c in codecs:
        pts = DEFAULT_INR_POINTS if c.slow else DEFAULT_POINTS
        per: dict[str, dict] = {}
        for p in pts:
            t0 = time.perf_counter()
            rec = run_point(c, ref, p)
            wall = time.perf_counter() - t0
            per[f"{p:g}"] = {"wall": round(wall, 3), "encode": rec.get("encode_time"), "bpp": rec.get("bpp"),
                             "psnr": rec.get("psnr"), "error": rec.get("error")}
            print(f"{c.key} {p:g}: {wall:.2f} s  bpp {rec.get('bpp')}  psnr {rec.get('psnr')}", flush=True)
        total = sum(v["wall"] for v in per.values())
        out["codecs"][c.key] = {"points": per, "seconds": round(total, 3),
                                "seconds_per_mp_per_point": round(total / len(pts) / mp, 3)}
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v["seconds_per_mp_per_point"] for k, v in out["codecs"].items()}, indent=1))


if __name__ == "__main__":
    main()
