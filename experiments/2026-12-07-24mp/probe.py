"""Which phase sets the peak memory and the time of `mscn encode`/`mscn decode` of a big photo.

Runs the CLI in this process with a sampler thread that reads VmRSS every 20 ms and, at each new peak and
once a second, records the main thread's innermost mscncodec frames (the phase). Writes JSON.

    .venv/bin/python experiments/2026-12-07-24mp/probe.py encode IMG OUT.mscn --json enc.json
    .venv/bin/python experiments/2026-12-07-24mp/probe.py decode IN.mscn OUT.png --json dec.json
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback


def rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def phase(frame) -> list[str]:
    stack = traceback.extract_stack(frame)
    ours = [f"{s.filename.split('mscncodec/')[-1]}:{s.name}:{s.lineno}" for s in stack if "mscncodec" in s.filename]
    return ours[-6:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["encode", "decode"])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--json", required=True)
    ap.add_argument("--extra", default="--bpp 0.3 --effort fast")
    args = ap.parse_args()
    main_id = threading.get_ident()
    peak = {"gb": 0.0, "t": 0.0, "phase": []}
    timeline: list[dict] = []
    done = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        last = -1.0
        while not done.is_set():
            g = rss_gb()
            t = time.perf_counter() - t0
            frame = sys._current_frames().get(main_id)
            if g > peak["gb"] + 0.005 and frame is not None:
                peak.update(gb=g, t=t, phase=phase(frame))
            if t - last >= 1.0 and frame is not None:
                timeline.append({"t": round(t, 2), "gb": round(g, 3), "phase": phase(frame)[-3:]})
                last = t
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    from mscncodec.cli import main as cli

    argv = [args.what, args.src, "-o", args.dst, "--force", "-q"]
    if args.what == "encode":
        argv += args.extra.split()
    try:
        cli.main(argv, standalone_mode=False)
    finally:
        done.set()
        th.join()
    out = {"argv": argv, "wall_s": round(time.perf_counter() - t0, 1), "peak_gb": round(peak["gb"], 3),
           "peak_t": round(peak["t"], 1), "peak_phase": peak["phase"], "timeline": timeline}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: out[k] for k in ("wall_s", "peak_gb", "peak_t", "peak_phase")}, indent=1))


if __name__ == "__main__":
    main()
