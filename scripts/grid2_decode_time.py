"""Decode seconds of grid2 streams in-process, `import torch` excluded (the issue's decode budget: <= 0.5 s per
Kodak image).

    .venv/bin/python scripts/grid2_decode_time.py ../shared/data/kodak/kodim0{1,5,9}.png \
        --bpp 0.1,0.5,1.0 --effort fast --out experiments/2026-11-grid2-speed/decode.json

Each image is encoded once per rate (the routed model, as `mscn encode` picks it), then decoded: `first` is the
first decode in the process (the model file loaded and its weights prepared), `warm` the median of --repeat
further decodes. Times are per thread count (torch and BLAS threads both set). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mscncodec import api, models
from mscncodec.container import bitstream
from mscncodec.modalities.image import load_rgb
from mscncodec.modalities.image_codec import encode_image


def _model_of(data: bytes) -> str:
    hdr, _ = bitstream.unpack(data)
    return models.find_by_id(hdr["model_id"]).name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--bpp", default="0.1,0.5,1.0")
    ap.add_argument("--effort", default="fast")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    rows = []
    for img in a.images:
        rgb = load_rgb(img)
        for bpp in (float(b) for b in a.bpp.split(",")):
            data = encode_image(rgb, bpp=bpp, effort=a.effort)
            for n in (int(t) for t in a.threads.split(",")):
                torch.set_num_threads(n)
                models._cache.clear()  # the first decode finds and loads the model files, as `mscn decode` does
                t0 = time.perf_counter()
                api.decode(data)
                first = time.perf_counter() - t0
                warm = []
                for _ in range(a.repeat):
                    t0 = time.perf_counter()
                    api.decode(data)
                    warm.append(time.perf_counter() - t0)
                rows.append({"image": img.name, "size": f"{rgb.shape[1]}x{rgb.shape[0]}", "target_bpp": bpp,
                             "bytes": len(data), "model": _model_of(data), "threads": n,
                             "first_s": round(first, 3), "warm_s": round(statistics.median(warm), 3)})
                print(json.dumps(rows[-1]), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"command": "scripts/grid2_decode_time.py " + " ".join(
        [*(str(p) for p in a.images), "--bpp", a.bpp, "--effort", a.effort, "--threads", a.threads]),
        "torch": torch.__version__, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
