"""Summarise an ablation from `mscn bench` outputs.

Run the bench first (docs/bench.md, "What is committed, and the exact commands"), then:
    .venv/bin/python scripts/ablation.py results/ablation            # SIREN: the paper's two claims
    .venv/bin/python scripts/ablation.py results/grid-ablation grid  # latent grids: meta-learned start
It reads the per-codec CompressAI-style JSON files and writes ablation.md / ablation.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = [  # (codec key = result file stem, label, what it tests)
    ("mscn-siren-full-w32-l05", "(a) meta-learned, sparse, unstructured gates", "MSCN: L0 gates inside the inner loop"),
    ("mscn-siren-shift-w64-l2", "(a) meta-learned, sparse, structured gates", "per-neuron shift modulations, gated"),
    ("mscn-siren-full-w32-l05_dense", "(b) meta-learned init, dense update", "same init as (a); every entry sent, rate by step size"),
    ("coin-random-w32d5", "(c) random init, same steps (COIN-style)", "plain SIREN init, magnitude mask"),
    ("mscn-siren-full-w32-l05_magnitude", "(d) magnitude pruning after the inner loop", "same init as (a); no gates in the loop"),
]


GRID_ROWS = [
    ("mscn-grid", "meta-learned start, gated sparse update (MSCN; the shipped default)", "analysis-net latents + meta-learned theta0; update gated, coded with the gate priors"),
    ("mscn-grid-l6_dense", "meta-learned start, dense update of the networks", "same start; every update entry sent"),
    ("mscn-grid-l6_scratch", "generic start, same step budget (Cool-chic-style)", "zero latents, seeded default init, dense update"),
    ("mscn-grid_fast", "meta-learned start, effort fast", "as the first row, 40 refinement steps"),
    ("mscn-grid-l6_scratch_fast", "generic start, effort fast", "as the scratch row, 40 refinement steps"),
]
FAMILIES = {"siren": ROWS, "grid": GRID_ROWS}


def main(folder: Path, family: str = "siren") -> None:
    rows = FAMILIES[family]
    found = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json") if p.stem not in ("bd",)}
    table, out = [], []
    for stem, label, what in rows:
        hit = found.get(stem)
        if hit is None:
            continue
        r = hit["results"]
        pts = list(zip(r["target-bpp"], r["bpp"], r["psnr-rgb"], r["encoding_time"], r["num-images"]))
        out.append({"label": label, "what": what, "name": hit["name"], "points": [
            {"target_bpp": t, "bpp": b, "psnr": p, "encode_s": e, "images": n} for t, b, p, e, n in pts]})
        cells = " | ".join(f"{b:.3f} bpp / {p:.2f} dB" for _, b, p, _, _ in pts)
        table.append(f"| {label} | {cells} | {what} |")
    if not out:
        sys.exit(f"no ablation results in {folder}")
    targets = [p["target_bpp"] for p in out[0]["points"]]
    head = "| variant | " + " | ".join(f"target {t:g} bpp" for t in targets) + " | note |"
    sep = "|---" * (len(targets) + 2) + "|"
    n = out[0]["points"][0]["images"]
    title = "MSCN ablation" if family == "siren" else "Latent-grid ablation: what the meta-learned start buys"
    md = [f"# {title} (Kodak, first {n} images, real file sizes, mean per-image RGB PSNR)", "", head, sep, *table]
    (folder / "ablation.md").write_text("\n".join(md) + "\n")
    (folder / "ablation.json").write_text(json.dumps(out, indent=2) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/ablation"), sys.argv[2] if len(sys.argv) > 2 else "siren")
