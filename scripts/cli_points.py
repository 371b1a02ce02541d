"""Encode/decode a few photos through the real `mscn` CLI at fixed targets; record bpp, PSNR, times.

    .venv/bin/python scripts/cli_points.py ../shared/data/images-test results/images-test/cli-fast.json 0.25,0.5,1.0 --effort fast

Times are wall-clock of the whole CLI process (start-up included), as a user sees them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

BIN = Path(sys.executable).parent


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def main(folder: Path, out: Path, targets: list[float], extra: list[str]) -> None:
    rows = []
    for img in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        ref = np.asarray(Image.open(img).convert("RGB"))
        for bpp in targets:
            with tempfile.TemporaryDirectory() as d:
                f, rec = Path(d) / "x.mscn", Path(d) / "x.png"
                t0 = time.perf_counter()
                subprocess.run([BIN / "mscn", "encode", img, "-o", f, "--bpp", str(bpp), "-q", *extra], check=True)
                t1 = time.perf_counter()
                subprocess.run([BIN / "mscn", "decode", f, "-o", rec], check=True)
                t2 = time.perf_counter()
                dec = np.asarray(Image.open(rec).convert("RGB"))
                real = 8 * f.stat().st_size / (ref.shape[0] * ref.shape[1])
                row = {"image": img.name, "size": f"{ref.shape[1]}x{ref.shape[0]}", "target_bpp": bpp,
                       "bpp": round(real, 4), "psnr": round(psnr(ref, dec), 3),
                       "encode_s": round(t1 - t0, 2), "decode_s": round(t2 - t1, 2)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "extra_args": extra, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), [float(x) for x in sys.argv[3].split(",")], sys.argv[4:])
