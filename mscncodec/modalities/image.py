"""Images as groups of patches.

An image is padded to a multiple of the patch size by edge replication and cut
into P x P patches; every patch is one group of the batched SIREN, sampled at the
same P x P grid of coordinates in [-1, 1]^2. Pixel values map to [-1, 1].
Grayscale is coded as RGB and converted back; an opaque alpha channel is dropped
and restored; a translucent one is refused (it would be silently lost).

Files are read as a viewer shows them: the EXIF orientation is applied, 16-bit
samples are scaled to 8 bits (value / 257, rounded: 65535 -> 255, not clipped), and
an RGB image with an embedded ICC profile other than sRGB is converted to sRGB
with ``PIL.ImageCms``. Where Pillow was built without LittleCMS (no ImageCms), or
the profile cannot be read, the pixels are kept as stored, in the profile's colour
space: the codec then codes those values, and the decoded PNG carries no profile.
Grayscale and CMYK profiles are not applied (grayscale stays grayscale; CMYK goes
through Pillow's plain conversion).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:
    from PIL import ImageCms
except ImportError:  # Pillow without LittleCMS: ICC profiles are ignored (see the module docstring)
    ImageCms = None

from mscncodec._lazy import torch  # decoding an image (restore_channels) needs no torch
from mscncodec.errors import InputError, LimitError
from mscncodec.errors import MscnError
from mscncodec.training import split

MAX_SIDE = 16384
MAX_PIXELS = 1 << 25  # 33.5M pixels: beyond this a 2-core machine is the wrong tool


def load(src: str | Path | np.ndarray, max_pixels: int | None = None) -> tuple[np.ndarray, int]:
    """Return (H x W x 3 uint8 RGB array, original channel count 1/3/4). `max_pixels`: refuse a larger image
    (a LimitError) from its header, before its pixels are decoded."""
    if isinstance(src, np.ndarray):
        if src.ndim >= 2:
            check_limit(src.shape[1], src.shape[0], max_pixels)
        arr = src
    else:
        arr = read_file(Path(src), max_pixels)
    return to_rgb(arr)


def read_file(path: Path, max_pixels: int | None = None, what: str = "") -> np.ndarray:
    """The pixels of an image file as a viewer shows them (see the module docstring): H x W (x 1/3/4) uint8.
    The one reader of image files, for encoding and for training alike; `what` names the file in messages
    ("training image ")."""
    if path.is_dir():
        raise InputError(f"cannot read {what}{path}: is a directory")
    if not path.is_file():
        raise InputError(f"cannot read {what}{path}: no such file")
    try:
        with warnings.catch_warnings():
            # Pillow warns about (and past twice its limit refuses) huge images; both are far above
            # MAX_PIXELS, which is checked here, on the header, before anything is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_size(*im.size)
                check_limit(*im.size, max_pixels)
                im.load()
                return pixels(im)
    except Image.DecompressionBombError:
        raise InputError(f"image {path} is too large (max side {MAX_SIDE}, max {MAX_PIXELS} pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"cannot read {what}{path}: not an image Pillow can decode ({type(e).__name__})") from None


def _check_size(w: int, h: int) -> None:
    if h > MAX_SIDE or w > MAX_SIDE or h * w > MAX_PIXELS:
        raise InputError(f"image {w}x{h} is too large (max side {MAX_SIDE}, max {MAX_PIXELS} pixels)")


def check_limit(w: int, h: int, max_pixels: int | None) -> None:
    """A LimitError if a w x h image has more pixels than the caller allows (None: no limit but the format's)."""
    if max_pixels is not None and w * h > max_pixels:
        raise LimitError(f"image {w}x{h} has {w * h} pixels, more than the limit of {max_pixels} "
                         "(raise --max-pixels / max_pixels to allow it)")


def _as_viewed(im: Image.Image) -> Image.Image:
    """The image as a viewer shows it: EXIF orientation applied, colours in sRGB."""
    icc = im.info.get("icc_profile")
    try:
        im = ImageOps.exif_transpose(im)
    except (OSError, ValueError, KeyError, TypeError, SyntaxError, struct.error):
        pass  # unreadable EXIF: keep the stored orientation
    return _to_srgb(im, icc) if icc else im


def _is_srgb(profile) -> bool:
    return "srgb" in ImageCms.getProfileDescription(profile).lower()


def _to_srgb(im: Image.Image, icc: bytes) -> Image.Image:
    """Convert an RGB(A) image with an embedded non-sRGB ICC profile to sRGB (unchanged otherwise)."""
    if ImageCms is None or im.mode not in ("RGB", "RGBA"):
        return im
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if src.profile.xcolor_space.strip() != "RGB" or _is_srgb(src):
            return im
        return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode=im.mode)
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return im  # a profile LittleCMS cannot read: keep the stored values, as viewers do


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def pixels(im: Image.Image) -> np.ndarray:
    """An opened Pillow image's pixels as `mscn encode` reads a file's (viewer orientation, sRGB, 8 bits; grey
    stays grey, a transparency channel kept for the caller to judge): what the Pillow plugin's save codes."""
    return _from_pil(_as_viewed(im))


def _from_pil(im: Image.Image) -> np.ndarray:
    if im.mode in SIXTEEN_BIT:  # 0..65535 -> 0..255 by value / 257 (Pillow's convert would clip)
        v = np.asarray(im).astype(np.float64)
        return np.clip(np.round(v / 257.0), 0, 255).astype(np.uint8)
    if im.mode in ("L", "F", "1"):
        return np.asarray(im.convert("L"))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return np.asarray(im.convert("RGBA"))
    return np.asarray(im.convert("RGB"))


def to_rgb(arr: np.ndarray) -> tuple[np.ndarray, int]:
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and 0.0 <= arr.min() and arr.max() <= 1.0:
            arr = np.round(arr * 255.0).astype(np.uint8)
        else:
            raise InputError(f"image array must be uint8 (or float in [0,1]), got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InputError(f"image must be H x W with 1, 3 or 4 channels, got shape {arr.shape}")
    h, w, c = arr.shape
    if h < 1 or w < 1:
        raise InputError("image is empty")
    _check_size(w, h)
    if c == 4:
        if (arr[:, :, 3] != 255).any():
            raise InputError("image has a translucent alpha channel, which mscn does not code; flatten it first")
        arr = arr[:, :, :3]
    elif c == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr), c


def restore_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        y = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.round(y), 0, 255).astype(np.uint8)
    if channels == 4:
        return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return rgb

PSNR_ROWS_VALUES = 1 << 22  # values per slice of rows: float64 work arrays of 32 MB, whatever the image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """RGB PSNR in dB with peak 255 (inf for identical images). Summed over slices of rows: whole-image float64
    copies cost 48 bytes per pixel (they set the encoder's peak on big photos, issue 30); for 8-bit images every
    partial sum is an integer under 2**53, so the result is exactly the one-pass mean's."""
    a, b = np.broadcast_arrays(np.atleast_1d(a), np.atleast_1d(b))
    rows = max(1, PSNR_ROWS_VALUES // max(1, a[0].size))
    sse = 0.0
    for i in range(0, len(a), rows):
        d = a[i:i + rows].astype(np.float64) - b[i:i + rows]
        sse += float(np.dot(d.ravel(), d.ravel()))
    mse = sse / a.size
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


def list_images(root: Path) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise MscnError(f"no training images found under {root}")
    return files


def training_files(data: Path, val_fraction: float, max_images: int) -> tuple[list[Path], list[Path]]:
    """(train, held-out) image files; the held-out split falls back to the last training file."""
    train_files, val_files = split(list_images(data), data, val_fraction)
    if max_images:
        train_files = train_files[:max_images]
    return train_files, val_files or train_files[-1:]


def load_rgb(path: Path) -> np.ndarray:
    """A training image as H x W x 3 uint8, read by `read_file` like a file to encode (EXIF orientation,
    16-bit scaling, ICC to sRGB), so a model learns on the pixels it will later be asked to code. Alpha is
    dropped: training crops have no transparency to keep."""
    try:
        arr = read_file(Path(path), what="training image ")
    except InputError as e:  # a training failure, not an encode input's: the trainers' exit code
        raise MscnError(str(e)) from None
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return to_rgb(arr)[0]


class PatchSampler:
    """Random P x P crops with random flips, as (B, P*P, 3) in [-1, 1]."""

    def __init__(self, images: list[np.ndarray], patch: int, seed: int):
        self.images = [im for im in images if im.shape[0] >= patch and im.shape[1] >= patch]
        if not self.images:
            raise MscnError(f"no image is at least {patch}x{patch} pixels (the patch size)")
        self.p = patch
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int) -> torch.Tensor:
        p = self.p
        return torch.from_numpy(self.sample_u8(n)).float().div_(127.5).sub_(1.0).reshape(n, p * p, 3)

    def sample_u8(self, n: int, keep: range | None = None) -> np.ndarray:
        """The same crops as (B, P, P, 3) uint8: a quarter of the bytes to move, converted where they are used
        (why: docs/decisions/grid2-training.md, "Crops travel as uint8").
        `keep`: only those of the n crops (a torchrun rank's share of a global batch); all n are drawn, so the
        generator moves on as one process's does at the global batch."""
        keep = range(n) if keep is None else keep
        p, out = self.p, np.empty((len(keep), self.p, self.p, 3), np.uint8)
        idx = self.rng.integers(0, len(self.images), n)
        for i, j in enumerate(idx):
            im = self.images[j]
            y = self.rng.integers(0, im.shape[0] - p + 1)
            x = self.rng.integers(0, im.shape[1] - p + 1)
            crop = im[y : y + p, x : x + p]
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            if self.rng.random() < 0.5:
                crop = crop[::-1]
            if i in keep:
                out[keep.index(i)] = crop
        return out


@dataclass(frozen=True)
class ImageTrainingData:
    """What the image modality hands a family's trainer: the split of a folder of photos (for the model card
    and its data hash) and crop samplers over their pixels. The family opens no file itself."""

    root: Path
    train_files: tuple[Path, ...]
    val_files: tuple[Path, ...]

    def sampler(self, crop: int, seed: int) -> PatchSampler:
        """Random crops of the training photos."""
        return PatchSampler([load_rgb(f) for f in self.train_files], crop, seed)

    def val_sampler(self, crop: int, seed: int) -> PatchSampler:
        """Random crops of the held-out photos (a fixed seed gives a fixed validation set)."""
        return PatchSampler([load_rgb(f) for f in self.val_files], crop, seed)


VAL_FRACTION = 0.05  # the held-out share of a training folder (a hash split: the same photos every run)


def training_data(root: Path, max_images: int = 0) -> ImageTrainingData:
    """The training split of a folder of photos (refusing a benchmark set)."""
    if "kodak" in str(root).lower():
        raise MscnError("refusing to train on Kodak: it is a benchmark set")
    train_files, val_files = training_files(root, VAL_FRACTION, max_images)
    return ImageTrainingData(Path(root), tuple(train_files), tuple(val_files))

