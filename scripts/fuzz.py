"""Run N random fuzz cases through mscncodec.decode and report the count, the slowest case and the peak memory.

    .venv/bin/python scripts/fuzz.py --cases 300 [--seed 0]

The cases are those of tests/test_fuzz.py (tests/fuzzing.py: small real streams - a 24x32 image with
--arch siren and --arch grid2, a mesh - mutated, truncated, spliced, with and without a recomputed CRC).
A case that raises anything but an MscnError stops the run with its traceback and the case's bytes in
fuzz-failure.mscn; a case over the bounds (5 s, 500 MB) is counted and listed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))
os.environ.setdefault("MSCN_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ["MSCN_THREADS"]))
    import fuzzing

    t0 = time.perf_counter()
    seeds = fuzzing.make_seeds()
    print("seeds: " + ", ".join(f"{k} {len(v)} bytes" for k, v in seeds.items()) +
          f" (made in {time.perf_counter() - t0:.1f} s)")
    chooser = fuzzing.RandomChooser(args.seed)
    results: Counter[str] = Counter()
    slowest, slowest_what = 0.0, ""
    traced, traced_what, rss, rss_what = 0, "", 0, ""
    over: list[str] = []
    rss_known = True
    t0 = time.perf_counter()
    for i in range(args.cases):
        data, what = fuzzing.mutate(list(seeds.values()), chooser)
        try:
            o = fuzzing.run_case(data)
        except Exception:
            Path("fuzz-failure.mscn").write_bytes(data)
            print(f"case {i} ({what}) raised a non-MscnError; its bytes are in fuzz-failure.mscn", file=sys.stderr)
            raise
        results[o.result] += 1
        if o.seconds > slowest:
            slowest, slowest_what = o.seconds, f"{what} -> {o.result}"
        if o.traced_peak > traced:
            traced, traced_what = o.traced_peak, f"{what} -> {o.result}"
        if o.rss_growth is None:
            rss_known = False
        elif o.rss_growth > rss:
            rss, rss_what = o.rss_growth, f"{what} -> {o.result}"
        try:
            fuzzing.check(o, what)
        except AssertionError as e:
            over.append(str(e))
    total = time.perf_counter() - t0
    print(f"cases: {args.cases} (seed {args.seed}) in {total:.1f} s; outcomes: "
          + ", ".join(f"{k} {v}" for k, v in results.most_common()))
    print(f"slowest case: {slowest:.3f} s ({slowest_what})")
    print(f"peak memory: tracemalloc {traced / 2**20:.1f} MB ({traced_what})")
    if rss_known:
        print(f"peak memory: RSS growth {rss / 2**20:.1f} MB ({rss_what})")
    print(f"over the bounds ({fuzzing.TIME_LIMIT_S:.0f} s, {fuzzing.MEMORY_LIMIT // 2**20} MB): {len(over)}")
    for line in over[:10]:
        print("  " + line)
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
