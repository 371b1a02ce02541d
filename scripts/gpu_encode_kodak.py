"""Encode Kodak on a lent GPU and decode every stream on the CPU (issue 28: the GPU encode path).

    python3 scripts/gpu_encode_kodak.py [--data shared/kodak] [--bpp 0.25,0.5,1.0] [--efforts max,placebo]
                                        [--device cuda] [--jobs 8] [--minutes 8] [--limit N] [--steps N]

Run from the repository root on the device machine with its own python3 (``make gpu-encode-kodak``: torch,
numpy, pillow are there; constriction travels as a wheel, ``make gpu-wheels`` here, and the photos inside the
checkout, ``make gpu-kodak-data``). Each job is one photo at one rate and effort, with the model routing picks
(``image_codec.routed_model``): grid2's encoder fits on --device, codes on the CPU and renders the stream it
wrote (``reconstruct``); the stream is then decoded on the CPU (``image_codec.decode``, as any machine would)
and must equal that reconstruction pixel for pixel ("exact"). Jobs run in --jobs spawned processes sharing the
GPU (one encode is launch-bound and leaves most of it idle), photo by photo (each photo's rates and efforts
together), so a run cut short by its budget still holds whole rate-distortion curves of its first photos.
Results: OUT/gpu-encode-kodak.json (rewritten after every job, so a run cut short keeps what it did: per job
the sizes, PSNR of the CPU decode, seconds, exactness; per effort a summary), OUT/gpu-encode-kodak.log.
OUT: --out, else $OUT, else build/gpu-encode. At --minutes the unfinished jobs are dropped (listed in the JSON).
A dry run here: --device cpu --limit 1 --bpp 1.0 --efforts fast --steps 2.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _setup(threads: int) -> None:
    import torch

    from mscncodec._runtime import set_logging, tune_allocator

    tune_allocator()
    set_logging()
    torch.set_num_threads(threads)


def encode_one(job: dict) -> dict:
    """One photo, rate and effort: encode on the device, decode on the CPU, compare."""
    import numpy as np
    import torch

    from mscncodec import families
    from mscncodec.modalities import image as imod
    from mscncodec.modalities.image_codec import decode, image_header, routed_model

    out = dict(job)
    try:
        rgb, channels = imod.load(job["path"])
        h, w, _ = rgb.shape
        m = routed_model(job["bpp"], None, job["effort"], (h, w))
        out["model"] = m.name
        torch.manual_seed(0)  # as encode_image does
        t0 = time.perf_counter()
        data, info = families.of(m).encoder("image")(
            m, rgb, image_header(m, h, w, channels), bpp=job["bpp"], quality=None, rate=job["bpp"],
            steps=job.get("steps"), effort=job["effort"], progress=False, device=job["device"], reconstruct=True)
        out["encode_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        decoded = decode(data)  # on the CPU, as any machine decodes it
        out["decode_s"] = time.perf_counter() - t1
        out.update(bytes=len(data), bpp=8 * len(data) / (h * w), psnr=imod.psnr(rgb, decoded),
                   psnr_reconstruction=imod.psnr(rgb, info["reconstruction"]),
                   exact=bool(np.array_equal(decoded, info["reconstruction"])),
                   lam=info["lambda"], steps=info["steps"], note=info["note"])
        if not out["exact"]:
            diff = np.abs(decoded.astype(np.int16) - info["reconstruction"].astype(np.int16))
            out["differing_pixels"] = int(np.count_nonzero(diff.max(-1)))
    except Exception as e:  # noqa: BLE001 - a record of what failed, the other jobs go on
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def _summary(rows: list[dict]) -> dict:
    out = {}
    for effort in dict.fromkeys(r["effort"] for r in rows):
        done = [r for r in rows if r["effort"] == effort and "error" not in r]
        if not done:
            continue
        out[effort] = {"jobs": len(done), "errors": sum(r["effort"] == effort and "error" in r for r in rows),
                       "all_exact": all(r["exact"] for r in done),
                       "mean_psnr": sum(r["psnr"] for r in done) / len(done),
                       "mean_bpp": sum(r["bpp"] for r in done) / len(done),
                       "mean_encode_s": sum(r["encode_s"] for r in done) / len(done),
                       "over_target": sum(r["bytes"] > r["bpp_target"] * r["pixels"] / 8 for r in done)}
    return out


def _write(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="shared/kodak")
    ap.add_argument("--bpp", default="0.25,0.5,1.0")
    ap.add_argument("--efforts", default="max,placebo")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per job [CPUs / jobs]")
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget; unfinished jobs are dropped")
    ap.add_argument("--limit", type=int, default=0, help="the first N photos only")
    ap.add_argument("--steps", type=int, default=None, help="override the efforts' refinement steps (dry runs)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "build/gpu-encode")
    a = ap.parse_args(argv)
    t_start = time.time()
    import numpy as np
    import torch

    from mscncodec._runtime import resolve_device
    from mscncodec.errors import MscnError
    from mscncodec.modalities import image as imod

    try:
        device = str(resolve_device(a.device))
    except MscnError as e:  # CUDA asked for and absent: one line
        print(f"gpu_encode_kodak: {e}", file=sys.stderr)
        return 1
    photos = sorted(p for p in Path(a.data).glob("*.png"))[: a.limit or None]
    if not photos:
        print(f"no .png photos in {a.data} (make gpu-kodak-data copies Kodak into shared/kodak)", file=sys.stderr)
        return 1
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = out_dir / "gpu-encode-kodak.json"
    pixels = {p: int(np.prod(imod.load(p)[0].shape[:2])) for p in photos}
    jobs = [{"image": p.stem, "path": str(p), "bpp_target": bpp, "bpp": bpp, "effort": effort, "device": device,
             "steps": a.steps, "pixels": pixels[p]}
            for p in photos for bpp in (float(b) for b in a.bpp.split(",")) for effort in a.efforts.split(",")]
    threads = a.threads or max(1, (os.cpu_count() or 1) // max(a.jobs, 1))
    doc = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
           "torch": torch.__version__, "python": platform.python_version(), "jobs": a.jobs, "threads": threads,
           "minutes": a.minutes, "rows": [], "unfinished": []}
    print(f"{len(jobs)} jobs on {doc['device']} ({device}), {a.jobs} at a time, {threads} threads each", flush=True)
    deadline = t_start + 60 * a.minutes
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(a.jobs, initializer=_setup, initargs=(threads,))
    it = pool.imap_unordered(encode_one, jobs)
    finished = set()
    try:
        for _ in jobs:
            r = it.next(timeout=max(deadline - time.time(), 0.1))
            finished.add((r["image"], r["bpp"], r["effort"]))
            doc["rows"].append(r)
            doc["summary"] = _summary(doc["rows"])
            doc["elapsed_s"] = time.time() - t_start
            _write(result, doc)
            what = r.get("error") or (f"{r['bytes']} B {r['bpp']:.4f} bpp {r['psnr']:.2f} dB {r['encode_s']:.1f} s "
                                      f"exact={r['exact']}")
            print(f"{r['image']} {r['bpp_target']} {r['effort']}: {what}", flush=True)
    except multiprocessing.TimeoutError:
        print(f"budget of {a.minutes} min reached: unfinished jobs dropped", flush=True)
        pool.terminate()
    else:
        pool.close()
    pool.join()
    doc["unfinished"] = [f"{j['image']}@{j['bpp']}/{j['effort']}" for j in jobs
                         if (j["image"], j["bpp"], j["effort"]) not in finished]
    doc["summary"] = _summary(doc["rows"])
    doc["elapsed_s"] = time.time() - t_start
    _write(result, doc)
    print(json.dumps(doc["summary"], indent=1))
    bad = [r for r in doc["rows"] if "error" in r or not r.get("exact")]
    print(f"wrote {result}: {len(doc['rows'])} of {len(jobs)} jobs, {len(bad)} failed or inexact")
    return 1 if bad or not doc["rows"] else 0


if __name__ == "__main__":
    sys.exit(main())
