"""``crops.png``: the same detail of one image from every codec at about the same file size.

PSNR averages away what people look at -- ringing, blocking, blur, colour bleeding -- so the bench
also shows it: a crop of the busiest part of the first image, for every codec at the point whose
real rate is closest to ``CROP_BPP``, labelled with codec, bpp and PSNR. The points are re-encoded
(one per codec) because the run keeps metrics, not pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mscncodec.bench import metrics
from mscncodec.bench.base import Codec

CROP = 128  # pixels per side, shown at 2x
CROP_BPP = 0.25  # the rate every codec is shown at (its closest measured point)
COLUMNS = 4


@dataclass(frozen=True)
class Panel:
    """One picture of the crop set: the original (``key`` "original") or one codec's decoded image."""

    key: str
    name: str
    image: np.ndarray
    bpp: float | None = None
    psnr: float | None = None

    @property
    def label(self) -> str:
        """The caption crops.png prints under the panel."""
        if self.bpp is None:
            return self.name
        return f"{self.name}\n{self.bpp:.3f} bpp, {self.psnr:.2f} dB"


@dataclass(frozen=True)
class CropSet:
    """What crops.png shows, kept as data so report.html can show the same crops at their own pixels."""

    image: str
    box: tuple[int, int, int]  # (top, left, side), see detail_box
    bpp: float
    panels: list[Panel]

    @property
    def title(self) -> str:
        top, left, side = self.box
        return (f"{self.image}: {side}x{side} crop at x={left}, y={top}, "
                f"each codec's point closest to {self.bpp:g} bpp")

    def crop(self, panel: Panel) -> np.ndarray:
        """The panel's side x side detail (every panel's has the same size)."""
        top, left, side = self.box
        return panel.image[top:top + side, left:left + side]


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
                  echo: Callable[[str], None]) -> list[Panel]:
    """The original and each (codec, target) decoded; a codec that fails now is reported and left
    out rather than sinking the report."""
    panels = [Panel("original", "original", img)]
    for codec, target in picked:
        try:
            data = codec.encode_at_bpp(img, target)
            out = np.asarray(codec.decode(data), dtype=np.uint8)
            psnr = metrics.psnr_from_mse(metrics.mse(img, out))
        except Exception as exc:  # noqa: BLE001 - one codec's failure must not lose the other panels
            echo(f"crops.png: skipping {codec.key}: {type(exc).__name__}: {exc}")
            continue
        panels.append(Panel(codec.key, codec.name, out, metrics.bpp(data, img.shape), psnr))
    return panels


def plot_crops(crops: CropSet, path: Path) -> None:
    """A grid of the same crop of every panel, shown pixel-exact at 2x (no smoothing hides artefacts)."""
    from mscncodec.bench.base import extra

    Figure = extra("matplotlib.figure").Figure
    panels = crops.panels
    cols = min(COLUMNS, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(2.6 * cols, 2.9 * rows + 0.4), dpi=110)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(crops.crop(panel), interpolation="nearest")
        ax.set_title(panel.label, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(crops.title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def write_crops(img: np.ndarray, image: str, records: list[dict[str, Any]], codecs: list[Codec], path: Path,
                echo: Callable[[str], None], bpp: float = CROP_BPP) -> CropSet | None:
    """Write ``path`` (crops.png) for ``image`` and return what it shows; None when no codec has a
    point on it."""
    picked = closest_targets(records, image, codecs, bpp)
    if not picked:
        return None
    crops = CropSet(image, detail_box(img), bpp, render_panels(img, picked, echo))
    plot_crops(crops, path)
    return crops
