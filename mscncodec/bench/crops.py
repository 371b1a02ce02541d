"""``crops.png``: the same detail of one image from every codec at about the same file size.

PSNR averages away what people look at -- ringing, blocking, blur, colour bleeding -- so the bench
also shows it: a crop of the busiest part of the first image, for every codec at the point whose
real rate is closest to ``CROP_BPP``, labelled with codec, bpp and PSNR. The points are re-encoded
(one per codec) because the run keeps metrics, not pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mscncodec.bench import metrics
from mscncodec.bench.base import Codec

CROP = 128  # pixels per side, shown at 2x
CROP_BPP = 0.25  # the rate every codec is shown at (its closest measured point)
COLUMNS = 4


def detail_box(img: np.ndarray, size: int = CROP) -> tuple[int, int, int]:
    """(top, left, side) of the size x size window with the most gradient energy, on a half-window
    grid: the part of the image where codecs differ most. Small images: the whole image, squared."""
    h, w = img.shape[:2]
    side = min(size, h, w)
    g = img.astype(np.float32).mean(axis=2)
    energy = np.zeros_like(g)
    energy[:, 1:] += np.abs(np.diff(g, axis=1))
    energy[1:, :] += np.abs(np.diff(g, axis=0))
    stride = max(side // 2, 1)
    best, box = -1.0, (0, 0)
    for top in range(0, h - side + 1, stride):
        for left in range(0, w - side + 1, stride):
            e = float(energy[top:top + side, left:left + side].sum())
            if e > best:
                best, box = e, (top, left)
    return box[0], box[1], side


def closest_targets(records: list[dict[str, Any]], image: str, codecs: list[Codec],
                    bpp: float = CROP_BPP) -> list[tuple[Codec, float]]:
    """(codec, target bpp) of each codec's measured point on ``image`` whose real bpp is closest to
    ``bpp``; codecs with no point on that image are left out."""
    picked = []
    for c in codecs:
        rows = [r for r in records if r["codec"] == c.key and r["image"] == image and r.get("bpp")]
        if rows:
            picked.append((c, min(rows, key=lambda r: abs(r["bpp"] - bpp))["target_bpp"]))
    return picked


def render_panels(img: np.ndarray, picked: list[tuple[Codec, float]],
                  echo: Callable[[str], None]) -> list[tuple[np.ndarray, str]]:
    """(decoded image, label) for the original and each (codec, target); a codec that fails now is
    reported and left out rather than sinking the report."""
    panels = [(img, "original")]
    for codec, target in picked:
        try:
            data = codec.encode_at_bpp(img, target)
            out = np.asarray(codec.decode(data), dtype=np.uint8)
            psnr = metrics.psnr_from_mse(metrics.mse(img, out))
        except Exception as exc:  # noqa: BLE001 - one codec's failure must not lose the other panels
            echo(f"crops.png: skipping {codec.key}: {type(exc).__name__}: {exc}")
            continue
        panels.append((out, f"{codec.name}\n{metrics.bpp(data, img.shape):.3f} bpp, {psnr:.2f} dB"))
    return panels


def plot_crops(panels: list[tuple[np.ndarray, str]], box: tuple[int, int, int], path: Path, title: str) -> None:
    """A grid of the same crop of every panel, shown pixel-exact at 2x (no smoothing hides artefacts)."""
    from mscncodec.bench.base import extra

    Figure = extra("matplotlib.figure").Figure
    top, left, side = box
    cols = min(COLUMNS, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(2.6 * cols, 2.9 * rows + 0.4), dpi=110)
    for i, (im, label) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(im[top:top + side, left:left + side], interpolation="nearest")
        ax.set_title(label, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def write_crops(img: np.ndarray, image: str, records: list[dict[str, Any]], codecs: list[Codec], path: Path,
                echo: Callable[[str], None], bpp: float = CROP_BPP) -> bool:
    """Write ``path`` (crops.png) for ``image``; False when no codec has a point on it."""
    picked = closest_targets(records, image, codecs, bpp)
    if not picked:
        return False
    box = detail_box(img)
    panels = render_panels(img, picked, echo)
    title = f"{image}: {box[2]}x{box[2]} crop at x={box[1]}, y={box[0]}, each codec's point closest to {bpp:g} bpp"
    plot_crops(panels, box, path, title)
    return True
