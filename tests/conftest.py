"""Shared fixtures for the mscn core tests.

MSCN_THREADS is set before anything imports mscncodec so the suite stays on one
core (the CI/dev machine has two and is often busy training). The package reads
MSCN_THREADS only when the `mscn` CLI starts (not on import), so for the tests
that call the Python API directly torch is also pinned here explicitly.
"""

from __future__ import annotations

import os

os.environ.setdefault("MSCN_THREADS", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["MSCN_THREADS"]))

REPO = Path(__file__).resolve().parents[1]
PHOTO = Path(__file__).resolve().parents[2] / "shared/data/images-test/101085.jpg"
PROVISIONAL = "random-w32d5"


def synthetic_image(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """Smooth gradients + a few flat rectangles + mild noise (photo-like, not white noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(h + w - 2, 1) + 64], -1)
    for _ in range(3):
        y0, x0 = rng.integers(0, max(h - 8, 1)), rng.integers(0, max(w - 8, 1))
        img[y0 : y0 + rng.integers(4, 16), x0 : x0 + rng.integers(4, 16)] = rng.integers(0, 256, 3)
    img += rng.normal(0, 3, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if channels == 1:
        return img[:, :, 0].copy()
    return img


def load_photo() -> np.ndarray:
    if not PHOTO.is_file():
        pytest.skip(f"test photo {PHOTO} not present (expected shared/ beside the repository)")
    from PIL import Image

    with Image.open(PHOTO) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def isolated_models(tmp_path_factory):
    """An empty MSCN_MODELS folder and a fresh model cache for one test module.

    Keeps the codec tests independent of whatever trained models sit in models/
    (a training job may be writing there while the tests run).
    """
    from mscncodec import models

    d = tmp_path_factory.mktemp("models-empty")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MSCN_MODELS", str(d))
        mp.setattr(models, "_cache", {})
        yield d


@pytest.fixture()
def env(tmp_path, monkeypatch) -> dict:
    """A fresh models folder (MSCN_MODELS) and model cache, so trained names never collide;
    returns the environment a training subprocess needs."""
    from mscncodec import models

    d = tmp_path / "models"
    monkeypatch.setenv("MSCN_MODELS", str(d))
    monkeypatch.setattr(models, "_cache", {})
    return {"MSCN_MODELS": str(d), "MSCN_THREADS": "1"}


def photo_folder(root: Path, side: int, n: int = 3) -> Path:
    """A folder of n synthetic side x side PNG "photos" (training data for tests; never real sets)."""
    from PIL import Image

    d = root / "photos"
    d.mkdir()
    for i in range(n):
        Image.fromarray(synthetic_image(side, side, seed=100 + i)).save(d / f"img{i}.png")
    return d


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_photo()


@pytest.fixture(scope="module")
def small_stream(isolated_models) -> tuple[np.ndarray, bytes]:
    """A tiny real .mscn stream (40x48 synthetic image, provisional model, very few steps)."""
    from mscncodec.modalities.image_codec import encode_image

    img = synthetic_image(40, 48, seed=7)
    data = encode_image(img, model=PROVISIONAL, effort="fast", steps=2, quality=0)
    return img, data
