"""Issue 31, item 2: encoding one netCDF file into a zarr store with mscn, serially and on a Dask LocalCluster of
1 and 2 worker processes (one torch thread each): wall time, time per chunk, bytes per chunk, bytes moved
over the cluster's connections, compression ratio and error, and whether the stores are equal byte for byte.

    OMP_NUM_THREADS=1 MSCN_THREADS=1 .venv/bin/python experiments/2026-12-07-dask/run.py \
        --steps-in-file 100 --chunk-steps 10 --bytes 4000 --fit-steps 100 --configs serial,1,2

Writes results.json beside this script (and the stores under --work, removed unless --keep).

Bytes moved: every TCP write of distributed's comms, counted at the sender, in this process (client and
scheduler: a LocalCluster's scheduler runs here) and in each worker, from just before the encode's graph is
submitted to its end (heartbeats included). Times per chunk: the scheduler's task stream (the compute span of
each store task) on the cluster; dask callbacks around each store task serially.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[2] / "shared/data/spherical/ccsm-ts-monthly/b003_TS_200-299.nc"

def count_tcp() -> None:
    """Count the bytes every distributed TCP comm of this process writes, once. The counter lives on the tcp
    module (these functions travel to the workers by value, their globals copied: a global here would not be
    the one the patched write adds to)."""
    from distributed.comm import tcp

    if hasattr(tcp, "_sent"):
        return
    tcp._sent = {"bytes": 0, "messages": 0}
    original = tcp.TCP.write

    async def write(self, msg, serializers=None, on_error="message"):
        n = await original(self, msg, serializers=serializers, on_error=on_error)
        tcp._sent["bytes"] += int(n or 0)
        tcp._sent["messages"] += 1
        return n

    tcp.TCP.write = write


def reset_sent() -> None:
    from distributed.comm import tcp

    tcp._sent.update(bytes=0, messages=0)


def read_sent() -> dict:
    from distributed.comm import tcp

    return dict(tcp._sent)


def subset(n_steps: int, work: Path) -> Path:
    """The first n_steps of TS as a netCDF file of its own (the whole file for 100)."""
    import xarray as xr

    path = work / f"TS-{n_steps}.nc"
    with xr.open_dataset(SRC, decode_times=False) as ds:
        ds[["TS"]].isel(time=slice(0, n_steps)).load().to_netcdf(path)
    return path


def errors(src: Path, store: Path) -> dict:
    import xarray as xr

    with xr.open_dataset(src, decode_times=False) as a, xr.open_zarr(store, decode_times=False) as b:
        ref, rec = a.TS.values.astype(np.float64), b.TS.values.astype(np.float64)
        w = np.cos(np.radians(a.lat.values))[None, :, None] * np.ones_like(ref)
        rmse = float(np.sqrt(np.sum(w * (ref - rec) ** 2) / np.sum(w)))
        return {"rmse_area_K": rmse, "max_abs_K": float(np.max(np.abs(ref - rec))), "std_K": float(ref.std())}


def run_serial(src: Path, store: Path, args) -> dict:
    from dask.callbacks import Callback

    from mscncodec import zarrstore

    spans = []

    class Spans(Callback):
        def _pretask(self, key, dsk, state):
            self.t = time.perf_counter()

        def _posttask(self, key, result, dsk, state, id):
            name = key[0] if isinstance(key, tuple) else key
            if str(name).startswith("store-map"):
                spans.append(time.perf_counter() - self.t)

    t = time.perf_counter()
    with Spans():
        report = zarrstore.encode_to_zarr(src, store, target_bytes=args.bytes, chunk_steps=args.chunk_steps,
                                          effort="fast", steps=args.fit_steps)
    return {"wall_s": time.perf_counter() - t, "cluster_start_s": 0.0, "chunk_s": spans, "report": report,
            "sent": None}


def run_cluster(src: Path, store: Path, n: int, args) -> dict:
    import logging

    from distributed import Client, LocalCluster

    from mscncodec import zarrstore

    t0 = time.perf_counter()
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as lc, Client(lc) as c:
        start = time.perf_counter() - t0
        count_tcp()
        c.run(count_tcp)
        c.get_task_stream(start=time.time())  # installs the scheduler's task-stream plugin before the encode
        reset_sent()
        c.run(reset_sent)
        t_from = time.time()
        t = time.perf_counter()
        report = zarrstore.encode_to_zarr(src, store, target_bytes=args.bytes, chunk_steps=args.chunk_steps,
                                          effort="fast", steps=args.fit_steps, scheduler=lc.scheduler_address)
        encode_s = time.perf_counter() - t
        here = read_sent()
        workers = c.run(read_sent)
        stream = c.get_task_stream(start=t_from)
    spans, per_worker, transfers = [], {}, 0
    for rec in stream:
        name = rec["key"][0] if isinstance(rec["key"], tuple) else rec["key"]
        for ss in rec.get("startstops", []):
            if ss["action"] == "compute" and str(name).startswith("store-map"):
                spans.append(ss["stop"] - ss["start"])
                per_worker.setdefault(rec["worker"], []).append(round(ss["stop"] - ss["start"], 2))
            if ss["action"] == "transfer":
                transfers += 1
    return {"wall_s": time.perf_counter() - t0, "cluster_start_s": start, "encode_s": encode_s, "chunk_s": spans,
            "chunks_per_worker": per_worker, "transfers": transfers, "report": report,
            "sent": {"client_and_scheduler": here, "workers": workers,
                     "total_bytes": here["bytes"] + sum(w["bytes"] for w in workers.values())}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps-in-file", type=int, default=100)
    p.add_argument("--chunk-steps", type=int, default=10)
    p.add_argument("--bytes", type=int, default=4000, help="bytes per chunk")
    p.add_argument("--fit-steps", type=int, default=100)
    p.add_argument("--configs", default="serial,1,2")
    p.add_argument("--work", type=Path, default=Path("/tmp/mscn-dask-exp"))
    p.add_argument("--keep", action="store_true")
    p.add_argument("--out", type=Path, default=HERE / "results.json")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    src = subset(args.steps_in_file, args.work)
    runs = {}
    for cfg in args.configs.split(","):
        store = args.work / f"{cfg}.zarr"
        r = run_serial(src, store, args) if cfg == "serial" else run_cluster(src, store, int(cfg), args)
        r["errors"] = errors(src, store)
        runs[cfg] = r
        cs = r["chunk_s"]
        print(f"{cfg:>6}: wall {r['wall_s']:.1f} s (cluster start {r['cluster_start_s']:.1f} s), chunks "
              f"{len(cs)}: median {np.median(cs):.1f} s, first {cs[0] if cs else 0:.1f} s, sum {sum(cs):.1f} s; "
              f"{r['report']['bytes']} bytes ({r['report']['ratio']:.0f}x); sent "
              f"{r['sent']['total_bytes'] if r['sent'] else '-'} B; RMSE {r['errors']['rmse_area_K']:.3f} K",
              flush=True)
    stores = [args.work / f"{c}.zarr" for c in runs]
    same = all(subprocess.run(["diff", "-r", str(stores[0] / "TS"), str(s / "TS")], capture_output=True,
                              check=False).returncode == 0 for s in stores[1:])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                            cwd=HERE).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "mscncodec"], capture_output=True, text=True,
                                check=False, cwd=HERE.parents[1]).stdout.strip())
    out = {"command": " ".join(sys.argv), "commit": commit + ("+dirty" if dirty else ""), "args": vars(args) | {
        "work": str(args.work), "out": str(args.out)}, "raw_bytes": runs[next(iter(runs))]["report"]["raw_bytes"],
        "same_bytes": same, "runs": runs}
    args.out.write_text(json.dumps(out, indent=1, default=str))
    print(f"stores equal byte for byte: {same}; wrote {args.out}")
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
