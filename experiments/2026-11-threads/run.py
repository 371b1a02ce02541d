"""1 against 2 torch threads for a default-effort grid2 encode, on a machine whose other core may be busy.

Each image of ../shared/data/images-test is encoded through the CLI (`mscn --threads N encode ... --bpp 0.5`,
start-up included, as a user runs it), alternating the thread counts so a change in the machine's load hits
both alike. Also records how busy the CPUs were (from /proc/stat, over each run) so the numbers can be read
as "idle machine" or "shared machine". Writes threads.json beside this script.

    .venv/bin/python experiments/2026-11-threads/run.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MSCN = str(Path(sys.executable).with_name("mscn"))


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    vals = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


def timed_encode(image: Path, threads: int, bpp: float, effort: str) -> dict:
    """Wall seconds of one CLI encode, the CPUs' busy share during it, and our own CPU seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        b0, t0 = cpu_times()
        r0 = os.times()
        start = time.perf_counter()
        subprocess.run([MSCN, "--threads", str(threads), "encode", str(image), "-o", f"{tmp}/a.mscn",
                        "--bpp", str(bpp), "--effort", effort, "-q"], check=True)
        wall = time.perf_counter() - start
        r1 = os.times()
        b1, t1 = cpu_times()
    own = (r1.children_user + r1.children_system) - (r0.children_user + r0.children_system)
    busy_cores = (os.cpu_count() or 1) * (b1 - b0) / max(t1 - t0, 1)
    return {"threads": threads, "wall": round(wall, 2), "own_cpu": round(own, 2),
            "others_busy_cores": round(max(busy_cores - own / wall, 0.0), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared/data/images-test")
    ap.add_argument("--bpp", type=float, default=0.5)
    ap.add_argument("--effort", default="default")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("threads.json"))
    args = ap.parse_args()
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    runs = []
    for image in images:
        for rep in range(args.repeats):
            for threads in ((1, 2) if rep % 2 == 0 else (2, 1)):
                r = {"image": image.name, **timed_encode(image, threads, args.bpp, args.effort)}
                print(json.dumps(r), flush=True)
                runs.append(r)
    summary = {}
    for threads in (1, 2):
        walls = [r["wall"] for r in runs if r["threads"] == threads]
        summary[str(threads)] = {"total_wall": round(sum(walls), 2), "runs": len(walls)}
    out = {"command": f"mscn --threads N encode IMAGE -o X.mscn --bpp {args.bpp} --effort {args.effort} -q",
           "cpus": os.cpu_count(), "runs": runs, "summary": summary}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
