"""Encode and decode time and peak memory against image size (0.4 ... 24 MP), through the CLI.

Test photos are mosaics of natural-train photos (never Kodak), each tile a centre crop of one photo,
assembled row by row into a 3:2 picture of the asked size; they are written to build/scaling/. Every
`mscn encode` (at --effort, fixed --bpp) and `mscn decode` runs in its own process; its wall time and
peak resident memory come from os.wait4 (that child's ru_maxrss). A size whose encode would need more
memory than the machine can spare (predicted from the GB per MP of the sizes already measured) is
skipped and reported, never run: an out-of-memory kill could take a neighbouring job with it.

    .venv/bin/python experiments/2026-11-scaling/run.py --sizes 0.4,1.6,6,12,24
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
MSCN = str(Path(sys.executable).with_name("mscn"))
TILE = (384, 256)  # (width, height) of one mosaic tile: photo-like detail at every size


def photos(data: Path) -> list[Path]:
    """natural-train photos at least one tile large, in a fixed order."""
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        sys.exit(f"no photos under {data}")
    return files


def mosaic(files: list[Path], megapixels: float) -> np.ndarray:
    """A 3:2 image of about `megapixels` MP tiled with centre crops of successive photos."""
    h = round(math.sqrt(megapixels * 1e6 / 1.5))
    w = round(1.5 * h)
    out = np.zeros((h, w, 3), np.uint8)
    tw, th = TILE
    k = 0
    for top in range(0, h, th):
        for left in range(0, w, tw):
            with Image.open(files[k % len(files)]) as im:
                im = im.convert("RGB")
                if im.width < tw or im.height < th:
                    im = im.resize((max(tw, im.width), max(th, im.height)))
                x0, y0 = (im.width - tw) // 2, (im.height - th) // 2
                tile = np.asarray(im.crop((x0, y0, x0 + tw, y0 + th)))
            k += 1
            out[top:top + th, left:left + tw] = tile[:h - top, :w - left]
    return out


def run_measured(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of one command, from its own rusage."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return wall, usage.ru_maxrss / 2**20  # kB -> GB


def available_gb() -> float:
    """MemAvailable from /proc/meminfo, in GB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


def measure(img_path: Path, work: Path, args: argparse.Namespace) -> dict:
    """One size: encode and decode through the CLI, times, peaks, rate and PSNR."""
    stream, decoded = work / f"{img_path.stem}.mscn", work / f"{img_path.stem}.decoded.png"
    threads = ["--threads", str(args.threads)] if args.threads else []
    enc_t, enc_gb = run_measured([MSCN, *threads, "encode", str(img_path), "-o", str(stream), "--bpp", str(args.bpp),
                                  "--effort", args.effort, "--force", "-q"])
    dec_t, dec_gb = run_measured([MSCN, *threads, "decode", str(stream), "-o", str(decoded), "--force", "-q"])
    with Image.open(img_path) as a, Image.open(decoded) as b:
        ref, out = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))
    mp = ref.shape[0] * ref.shape[1] / 1e6
    return {"width": ref.shape[1], "height": ref.shape[0], "megapixels": round(mp, 3),
            "bpp": round(8 * stream.stat().st_size / (mp * 1e6), 4), "psnr": round(psnr(ref, out), 2),
            "encode_s": round(enc_t, 1), "encode_peak_gb": round(enc_gb, 3), "decode_s": round(dec_t, 1),
            "decode_peak_gb": round(dec_gb, 3), "encode_s_per_mp": round(enc_t / mp, 1),
            "encode_gb_per_mp": round(enc_gb / mp, 3)}


def predicted_gb(rows: list[dict], mp: float) -> float | None:
    """Encode peak at `mp` megapixels, linear through the two largest measured sizes; None before two."""
    if len(rows) < 2:
        return None
    a, b = sorted(rows, key=lambda r: r["megapixels"])[-2:]
    slope = (b["encode_peak_gb"] - a["encode_peak_gb"]) / max(b["megapixels"] - a["megapixels"], 1e-9)
    return b["encode_peak_gb"] + slope * (mp - b["megapixels"])


def plot(rows: list[dict], path: Path) -> None:
    """Encode/decode time and peak memory against megapixels."""
    from matplotlib.figure import Figure

    mp = [r["megapixels"] for r in rows]
    fig = Figure(figsize=(10, 4), dpi=110)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(mp, [r["encode_s"] for r in rows], "-o", label="encode")
    ax1.plot(mp, [r["decode_s"] for r in rows], "-o", label="decode")
    ax1.set_xlabel("megapixels"), ax1.set_ylabel("wall seconds (CLI, start-up included)"), ax1.legend()
    ax2.plot(mp, [r["encode_peak_gb"] for r in rows], "-o", label="encode")
    ax2.plot(mp, [r["decode_peak_gb"] for r in rows], "-o", label="decode")
    ax2.axhline(2.0, color="grey", ls="--", lw=1, label="2 GB")
    ax2.set_xlabel("megapixels"), ax2.set_ylabel("peak RSS [GB]"), ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0.4,1.6,6,12,24", help="megapixels, comma-separated")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/natural-train")
    ap.add_argument("--work", type=Path, default=ROOT / "build/scaling")
    ap.add_argument("--bpp", type=float, default=0.3)
    ap.add_argument("--effort", default="fast")
    ap.add_argument("--threads", type=int, default=0, help="0: the CLI's default")
    ap.add_argument("--spare-gb", type=float, default=4.0, help="memory to leave free for other jobs")
    ap.add_argument("--note", default="one of the 2 cores was busy with a training job throughout",
                    help="what else the machine was doing (recorded in the JSON)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    files = photos(args.data)
    out_json = args.out / "scaling.json"
    rows: list[dict] = []
    skipped: list[dict] = []
    for mp in (float(s) for s in args.sizes.split(",")):
        need = predicted_gb(rows, mp)
        if need is not None and need > available_gb() - args.spare_gb:
            skipped.append({"megapixels": mp, "predicted_encode_peak_gb": round(need, 2),
                            "available_gb": round(available_gb(), 2)})
            print(f"skip {mp} MP: predicted encode peak {need:.1f} GB, {available_gb():.1f} GB available", flush=True)
            continue
        path = args.work / f"mosaic-{mp:g}mp.png"
        if not path.exists():
            Image.fromarray(mosaic(files, mp)).save(path)
        row = measure(path, args.work, args)
        print(json.dumps(row), flush=True)
        rows.append(row)
        write(out_json, args, rows, skipped)
    write(out_json, args, rows, skipped)
    if rows:
        plot(rows, args.out / "scaling.png")


def write(path: Path, args: argparse.Namespace, rows: list[dict], skipped: list[dict]) -> None:
    """scaling.json: what was measured, how, and what was skipped for lack of memory."""
    path.write_text(json.dumps({
        "command": f"mscn encode IMG -o X.mscn --bpp {args.bpp} --effort {args.effort}; mscn decode X.mscn",
        "threads": args.threads or "CLI default", "cpus": os.cpu_count(),
        "note": args.note, "rows": rows,
        "skipped": skipped}, indent=2) + "\n")


if __name__ == "__main__":
    main()
