"""Run N random fuzz cases through mscncodec.decode and report the outcomes, the slowest case and the peak memory,
per seed stream (one per decoder route: siren and grid2 images, SIREN and grid3 meshes, field, series, voxels).

    .venv/bin/python scripts/fuzz.py --cases 300 [--seed 0] [--report results/fuzz/run.json] [--workers 2]
    .venv/bin/python scripts/fuzz.py --cases 1000000 --minutes 90 --seeds results/fuzz/seeds --report results/fuzz/run.json

The cases are those of tests/test_fuzz.py (tests/fuzzing.py: small real streams mutated, truncated, spliced, with
and without a recomputed CRC), decoded with the API's default bounds. Case i is made by its own generator
(seeded by --seed and i), so `--only I` replays case I alone whatever --workers was. A case that raises anything
but an MscnError is a failure: its bytes go to fuzz-failure-I.mscn (next to the report, else here), its traceback
to the report, and the run goes on (exit status 1). A case over the bounds (CPU time, memory: tests/fuzzing.py)
is counted, listed and kept as over-I.mscn. --seeds DIR keeps the seed streams (made once, ~25 s) for later runs.
--report FILE writes JSON, rewritten every --every cases, so a long run can be read while it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))
os.environ.setdefault("MSCN_THREADS", "1")

CASE_SEED_STRIDE = 1_000_003  # generator of case i: Random(seed * stride + i)


def _setup() -> None:
    import torch

    torch.set_num_threads(int(os.environ["MSCN_THREADS"]))


def load_seeds(folder: Path | None) -> dict[str, bytes]:
    """The seed streams: from `folder` where it holds every one (NAME.mscn), else made (and saved there)."""
    import fuzzing

    if folder is not None and all((folder / f"{n}.mscn").is_file() for n in fuzzing.SEED_NAMES):
        return {n: (folder / f"{n}.mscn").read_bytes() for n in fuzzing.SEED_NAMES}
    seeds = fuzzing.make_seeds()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for n, d in seeds.items():
            (folder / f"{n}.mscn").write_bytes(d)
    return seeds


def make_case(seeds: dict[str, bytes], seed: int, i: int) -> tuple[str, bytes, str]:
    import fuzzing

    names = list(seeds)
    index, data, what = fuzzing.mutate_from([seeds[n] for n in names], fuzzing.RandomChooser(seed * CASE_SEED_STRIDE + i))
    return names[index], data, what


def _empty_stats() -> dict:
    return {"cases": 0, "outcomes": {}, "cpu_s": 0.0, "max_cpu_s": 0.0, "max_wall_s": 0.0, "slowest": "",
            "max_traced_mb": 0.0, "max_traced": "", "max_rss_growth_mb": 0.0, "max_rss_growth": ""}


def _traced(data: bytes, trace: str) -> bool:
    """Whether to watch this case with tracemalloc: always, never, or ("passed") when the container accepts it
    (a stream refused by the container costs microseconds; tracemalloc doubles the cost of the rest)."""
    if trace != "passed":
        return trace == "all"
    from mscncodec.container import bitstream
    from mscncodec.errors import MscnError

    try:
        bitstream.unpack(data)
    except MscnError:
        return False
    return True


def run_range(seeds: dict[str, bytes], seed: int, cases: range, trace: str, out_dir: Path,
              progress=None, minutes: float | None = None) -> dict:
    """Run the given case numbers; -> partial report (per-seed stats, over-bound cases, failures)."""
    import fuzzing

    _setup()
    per = {n: _empty_stats() for n in seeds}
    over, failures = [], []
    rss_known = True
    t0, c0 = time.perf_counter(), time.process_time()
    rss_start = fuzzing._status_kb("VmRSS")
    for k, i in enumerate(cases):
        if minutes is not None and time.perf_counter() - t0 > 60 * minutes:
            break
        name, data, what = make_case(seeds, seed, i)
        label = f"case {i} [{name}] {what}"
        try:
            o = fuzzing.run_case(data, trace=_traced(data, trace))
        except Exception:  # noqa: BLE001 - a failure is recorded, the run goes on
            path = out_dir / f"fuzz-failure-{i}.mscn"
            path.write_bytes(data)
            failures.append({"case": i, "seed_stream": name, "what": what, "bytes": str(path),
                             "traceback": traceback.format_exc(limit=8)})
            print(f"{label}: raised a non-MscnError; its bytes are in {path}", file=sys.stderr, flush=True)
            continue
        s = per[name]
        s["cases"] += 1
        s["outcomes"][o.result] = s["outcomes"].get(o.result, 0) + 1
        s["cpu_s"] += o.cpu_seconds
        if o.cpu_seconds > s["max_cpu_s"]:
            s["max_cpu_s"], s["slowest"] = o.cpu_seconds, f"{label} -> {o.result} ({o.seconds:.3f} s wall)"
        s["max_wall_s"] = max(s["max_wall_s"], o.seconds)
        if o.traced_peak / 2**20 > s["max_traced_mb"]:
            s["max_traced_mb"], s["max_traced"] = o.traced_peak / 2**20, f"{label} -> {o.result}"
        if o.rss_growth is None:
            rss_known = False
        elif o.rss_growth / 2**20 > s["max_rss_growth_mb"]:
            s["max_rss_growth_mb"], s["max_rss_growth"] = o.rss_growth / 2**20, f"{label} -> {o.result}"
        try:
            fuzzing.check(o, label)
        except AssertionError as e:
            path = out_dir / f"over-{i}.mscn"
            path.write_bytes(data)
            over.append({"case": i, "seed_stream": name, "message": str(e), "bytes": str(path)})
        if progress is not None:
            progress(k + 1, per, over, failures, time.perf_counter() - t0)
    rss_end = fuzzing._status_kb("VmRSS")
    return {"per_seed": per, "over": over, "failures": failures, "seconds": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0, "rss_known": rss_known,
            "rss_start_mb": None if rss_start is None else rss_start / 1024,
            "rss_end_mb": None if rss_end is None else rss_end / 1024}


def _worker(args: tuple) -> dict:
    seeds, seed, cases, trace, out_dir, minutes = args
    return run_range(seeds, seed, cases, trace, Path(out_dir), minutes=minutes)


def merge(parts: list[dict]) -> dict:
    per: dict[str, dict] = {}
    for p in parts:
        for name, s in p["per_seed"].items():
            m = per.setdefault(name, _empty_stats())
            m["cases"] += s["cases"]
            m["cpu_s"] += s["cpu_s"]
            for k, v in s["outcomes"].items():
                m["outcomes"][k] = m["outcomes"].get(k, 0) + v
            for key, what in (("max_cpu_s", "slowest"), ("max_traced_mb", "max_traced"),
                              ("max_rss_growth_mb", "max_rss_growth")):
                if s[key] > m[key]:
                    m[key], m[what] = s[key], s[what]
            m["max_wall_s"] = max(m["max_wall_s"], s["max_wall_s"])
    return {"per_seed": per, "over": [o for p in parts for o in p["over"]],
            "failures": [f for p in parts for f in p["failures"]], "rss_known": all(p["rss_known"] for p in parts),
            "workers": [{k: p[k] for k in ("seconds", "cpu_s", "rss_start_mb", "rss_end_mb")} for p in parts]}


def summary(r: dict, args, seed_sizes: dict[str, int], elapsed: float, done: int, final: bool) -> dict:
    import fuzzing

    per = r["per_seed"]
    slow = max(per.items(), key=lambda kv: kv[1]["max_cpu_s"])
    traced = max(per.items(), key=lambda kv: kv[1]["max_traced_mb"])
    rss = max(per.items(), key=lambda kv: kv[1]["max_rss_growth_mb"])
    outcomes: Counter[str] = Counter()
    for s in per.values():
        outcomes.update(s["outcomes"])
    return {
        "finished": final, "cases_done": done, "cases_asked": args.cases, "seed": args.seed, "workers": args.workers,
        "tracemalloc": args.trace, "elapsed_s": elapsed, "cases_per_s": done / max(elapsed, 1e-9),
        "cases_per_cpu_s": done / max(sum(p["cpu_s"] for p in r.get("workers", [])) or elapsed, 1e-9),
        "bounds": {"cpu_s": fuzzing.TIME_LIMIT_S, "memory_mb": fuzzing.MEMORY_LIMIT / 2**20},
        "seed_streams": seed_sizes, "outcomes": dict(outcomes.most_common()),
        "slowest": {"cpu_s": slow[1]["max_cpu_s"], "case": slow[1]["slowest"]},
        "peak_traced_mb": {"mb": traced[1]["max_traced_mb"], "case": traced[1]["max_traced"]},
        "peak_rss_growth_mb": {"mb": rss[1]["max_rss_growth_mb"], "case": rss[1]["max_rss_growth"]}
        if r["rss_known"] else None,
        "over_bounds": r["over"], "failures": r["failures"], "per_seed": per,
        "processes": r.get("workers", []),
        "host": {"cpus": os.cpu_count(), "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                 "threads": os.environ.get("MSCN_THREADS")},
    }


def _write(path: Path | None, rep: dict) -> None:
    if path is None:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(rep, indent=1) + "\n")
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", type=Path, default=None, help="write a JSON report here (rewritten as the run goes)")
    ap.add_argument("--workers", type=int, default=1, help="processes (each with MSCN_THREADS torch threads)")
    ap.add_argument("--seeds", type=Path, default=None, help="folder keeping the seed streams between runs")
    ap.add_argument("--trace", choices=("all", "passed", "none"), default="passed",
                    help="which cases tracemalloc watches (it halves the rate): all, those the container accepts "
                         "(the default), none (the peak RSS is measured for every case either way)")
    ap.add_argument("--every", type=int, default=10000, help="rewrite the report every N cases (one worker)")
    ap.add_argument("--only", type=int, default=None, help="replay case I alone (prints its outcome)")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this long (the cases so far reported)")
    args = ap.parse_args()

    _setup()
    out_dir = args.report.parent if args.report else Path(".")
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seeds = load_seeds(args.seeds)
    seed_sizes = {k: len(v) for k, v in seeds.items()}
    print("seeds: " + ", ".join(f"{k} {v} bytes" for k, v in seed_sizes.items()) +
          f" (ready in {time.perf_counter() - t0:.1f} s)", flush=True)
    if args.only is not None:
        import fuzzing

        name, data, what = make_case(seeds, args.seed, args.only)
        o = fuzzing.run_case(data, trace=args.trace != "none")
        print(f"case {args.only} [{name}] {what}: {o}")
        return

    t0 = time.perf_counter()
    if args.workers <= 1:
        last = [0.0]

        def progress(done, per, over, failures, elapsed):
            if done % args.every == 0 or elapsed - last[0] > 600:
                last[0] = elapsed
                part = {"per_seed": per, "over": over, "failures": failures, "rss_known": True}
                rep = summary(part, args, seed_sizes, elapsed, done, False)
                _write(args.report, rep)
                print(f"{done} cases, {rep['cases_per_s']:.0f}/s, slowest {rep['slowest']['cpu_s']:.3f} s CPU, "
                      f"over {len(over)}, failures {len(failures)}", flush=True)

        r = merge([run_range(seeds, args.seed, range(args.cases), args.trace, out_dir, progress, args.minutes)])
    else:
        import multiprocessing as mp

        jobs = [(seeds, args.seed, range(w, args.cases, args.workers), args.trace, str(out_dir), args.minutes)
                for w in range(args.workers)]
        with mp.get_context("spawn").Pool(args.workers) as pool:
            r = merge(pool.map(_worker, jobs))
    elapsed = time.perf_counter() - t0
    rep = summary(r, args, seed_sizes, elapsed, sum(s["cases"] for s in r["per_seed"].values()) + len(r["failures"]),
                  True)
    _write(args.report, rep)
    print(f"cases: {rep['cases_done']} (seed {args.seed}) in {elapsed:.1f} s ({rep['cases_per_s']:.0f}/s); outcomes: "
          + ", ".join(f"{k} {v}" for k, v in rep["outcomes"].items()))
    for name, s in r["per_seed"].items():
        print(f"  {name:10s} {s['cases']:8d} cases, max {s['max_cpu_s']:.3f} s CPU / {s['max_wall_s']:.3f} s wall, "
              f"traced {s['max_traced_mb']:.1f} MB, RSS +{s['max_rss_growth_mb']:.1f} MB, decoded "
              f"{s['outcomes'].get('decoded', 0)}")
    print(f"slowest case: {rep['slowest']['cpu_s']:.3f} s CPU ({rep['slowest']['case']})")
    print(f"peak memory: tracemalloc {rep['peak_traced_mb']['mb']:.1f} MB ({rep['peak_traced_mb']['case']})")
    if rep["peak_rss_growth_mb"] is not None:
        print(f"peak memory: RSS growth {rep['peak_rss_growth_mb']['mb']:.1f} MB ({rep['peak_rss_growth_mb']['case']})")
    print(f"over the bounds ({rep['bounds']['cpu_s']:g} s CPU, {rep['bounds']['memory_mb']:.0f} MB): {len(rep['over_bounds'])}; "
          f"failures (not an MscnError): {len(rep['failures'])}")
    for o in rep["over_bounds"][:10]:
        print("  " + o["message"])
    if args.report:
        print(f"report: {args.report}")
    sys.exit(1 if rep["over_bounds"] or rep["failures"] else 0)


if __name__ == "__main__":
    main()
