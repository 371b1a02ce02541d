"""Low-rate sweep (issue 28, item 4): encode held-out photos and crops at the given rates and efforts through
the Python API, record success or the refusal, size, PSNR, routed model, note and the debug log lines.

    OMP_NUM_THREADS=1 MSCN_THREADS=1 python experiments/2026-12-low-rates/sweep.py --effort fast \
        --bpp 0.05,0.075,0.1,0.15,0.2,2.0 --out results/low-rates/sweep-fast.jsonl IMAGE[:HxW] ...

IMAGE:HxW takes a centred H x W crop; IMAGE@S upsamples by S (Lanczos). Rows are appended (JSON lines), and a
row already in --out (same image, effort, bpp, tag) is skipped, so a run resumes."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mscncodec.errors import MscnError
from mscncodec.modalities import image as imod
from mscncodec.modalities.image_codec import encode_image, routed_model


def load(spec: str) -> np.ndarray:
    path, crop, up = spec, None, None
    if "@" in path:
        path, up = path.split("@")
    if ":" in path:
        path, crop = path.split(":")
    rgb, _ = imod.load(path)
    if crop:
        h, w = map(int, crop.split("x"))
        y, x = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
        rgb = rgb[y:y + h, x:x + w]
    if up:
        s = float(up)
        im = Image.fromarray(rgb)
        rgb = np.asarray(im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS))
    return np.ascontiguousarray(rgb)


class Grab(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(f"{record.name.split('.')[-1]}: {record.getMessage()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="+")
    ap.add_argument("--effort", default="fast")
    ap.add_argument("--bpp", default="0.05,0.075,0.1,0.15,0.2,2.0")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["image"], r["effort"], r["target_bpp"], r.get("tag", "")))
    grab = Grab()
    lg = logging.getLogger("mscncodec")
    lg.setLevel(logging.DEBUG)
    lg.addHandler(grab)
    for spec in a.images:
        rgb = load(spec)
        h, w = rgb.shape[:2]
        for bpp in map(float, a.bpp.split(",")):
            if (spec, a.effort, bpp, a.tag) in done:
                continue
            grab.lines = []
            row = {"image": spec, "width": w, "height": h, "effort": a.effort, "target_bpp": bpp, "tag": a.tag,
                   "target_bytes": int(bpp * h * w / 8)}
            try:
                row["routed"] = routed_model(bpp, None, a.effort, (h, w)).name
            except MscnError as e:
                row["routed"] = f"error: {e}"
            t = time.perf_counter()
            try:
                data, rep = encode_image(rgb, bpp=bpp, effort=a.effort, return_report=True)
                row.update(ok=True, bytes=rep["bytes"], bpp=rep["bpp"], psnr=rep["psnr"], model=rep["model"],
                           note=rep["note"])
            except MscnError as e:
                row.update(ok=False, error=str(e))
            row["seconds"] = round(time.perf_counter() - t, 1)
            row["log"] = grab.lines
            print(json.dumps({k: v for k, v in row.items() if k != "log"}), flush=True)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
