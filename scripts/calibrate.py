"""Route target rates to shipped models, measured on held-out *training* photos (never Kodak).

    .venv/bin/python scripts/calibrate.py --models siren-full-w32,siren-full-w32-hi \\
        --points 0.1,0.2,0.3,0.5,0.75,1.0 --effort fast

For each target it encodes the validation split of ../shared/data/natural-train (the
same split `mscn train` holds out) with every model, averages PSNR, and writes
mscncodec/weights/routing.json (`arch_routes.siren`, `measured`, `effort`): the rate ranges where each model wins, the
mean PSNR behind them and the effort they were measured at. encode() uses it to pick a model when none is
named. The JSON holds data only: what the numbers were measured on (the photos, the crops) goes in
mscncodec/weights/routing.md, by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mscncodec.modalities.image_codec import encode_image
from mscncodec.modalities.image import list_images, load_rgb
from mscncodec.training import split
from mscncodec.models import models_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/natural-train")
    ap.add_argument("--models", required=True)
    ap.add_argument("--points", default="0.1,0.2,0.3,0.5,0.75,1.0")
    ap.add_argument("--effort", default="default")
    ap.add_argument("--images", type=int, default=2, help="validation images used (cropped to 256x384)")
    a = ap.parse_args()
    root = Path(a.data)
    _, val = split(list_images(root), root, 0.05)
    imgs = [load_rgb(f)[:256, :384] for f in val[:: max(1, len(val) // a.images)][: a.images]]
    names, points = a.models.split(","), [float(x) for x in a.points.split(",")]
    table: dict[str, dict[float, float]] = {n: {} for n in names}
    for n in names:
        for p in points:
            ps = [encode_image(im, bpp=p, model=n, effort=a.effort, return_report=True)[1]["psnr"] for im in imgs]
            table[n][p] = float(np.mean(ps))
            print(f"{n:24s} {p:5.2f} bpp  {table[n][p]:.2f} dB", flush=True)
    best = [max(names, key=lambda n: table[n][p]) for p in points]
    routes = []
    for i, (p, n) in enumerate(zip(points, best)):
        upper = (p + points[i + 1]) / 2 if i + 1 < len(points) else 1e9
        if routes and routes[-1]["model"] == n:
            routes[-1]["max_bpp"] = upper
        else:
            routes.append({"max_bpp": upper, "model": n})
    path = models_dir() / "routing.json"
    out = json.loads(path.read_text()) if path.is_file() else {}  # keep default_arch / arch_routes
    out.pop("data", None)  # prose (what was measured) lives in routing.md, not in the JSON
    out.pop("routes", None)  # the old place of the SIREN rows
    out.setdefault("arch_routes", {})["siren"] = routes
    out.update({"measured": {n: {str(p): v for p, v in t.items()} for n, t in table.items()},
                "effort": a.effort})
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(routes))
    print(f"measured on the validation split of {root} ({len(imgs)} images, 256x384 crops), effort {a.effort}: "
          f"record this in {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
