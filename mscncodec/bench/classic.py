"""Classical codecs: Pillow (JPEG, WebP, AVIF, JPEG 2000), pillow-heif (HEVC) and cjxl.

Library imports happen inside methods: a missing optional library must make
that one codec *unavailable* (skipped with a notice), never break the import.
Encoders run single-threaded where the library allows it so that encode times
are comparable across codecs.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mscncodec.bench.base import Availability, Codec


def _pillow_version() -> str:
    import PIL

    return f"pillow-{PIL.__version__}"


def _pillow_feature(feature: str) -> Availability:
    try:
        from PIL import features
    except ImportError as exc:  # pragma: no cover - Pillow is a core dependency
        return Availability(False, f"Pillow not importable ({exc})")
    if not features.check(feature):
        return Availability(False, f"this Pillow build lacks {feature} support")
    return Availability(True)


class PillowCodec(Codec):
    """Codecs whose encoder and decoder are Pillow plugins."""

    format: ClassVar[str] = ""
    feature: ClassVar[str] = ""

    @classmethod
    def available(cls) -> Availability:
        return _pillow_feature(cls.feature)

    def version(self) -> str:
        return _pillow_version()

    def save_kwargs(self, q: Any) -> dict[str, Any]:
        """Encoder options for quality ``q``."""
        raise NotImplementedError

    def encode(self, img: np.ndarray, q: Any) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(img, "RGB").save(buf, self.format, **self.save_kwargs(q))
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))


class JpegCodec(PillowCodec):
    """Baseline JPEG (libjpeg via Pillow) with 4:2:0 chroma, the usual web default."""

    key, name, format, feature = "jpeg", "JPEG 4:2:0", "JPEG", "jpg"
    description = "JPEG (Pillow/libjpeg), 4:2:0 chroma subsampling, quality 1-100"
    qmin, qmax = 1, 100
    settings: ClassVar[dict[str, Any]] = {"subsampling": 2}  # Pillow: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0

    def save_kwargs(self, q: Any) -> dict[str, Any]:
        return {"quality": int(q), **self.settings}


class Jpeg444Codec(JpegCodec):
    """JPEG without chroma subsampling: wins at high rates, loses at low ones."""

    key, name = "jpeg444", "JPEG 4:4:4"
    description = "JPEG (Pillow/libjpeg), 4:4:4 (no chroma subsampling), quality 1-100"
    settings = {"subsampling": 0}


class WebPCodec(PillowCodec):
    """Lossy WebP (libwebp, always 4:2:0), default effort."""

    key, name, format, feature = "webp", "WebP", "WEBP", "webp"
    description = "WebP lossy (Pillow/libwebp), method 4, quality 0-100"
    settings = {"method": 4}

    def save_kwargs(self, q: Any) -> dict[str, Any]:
        return {"quality": int(q), **self.settings}


class AvifCodec(PillowCodec):
    """AVIF through Pillow's built-in plugin, single-threaded for comparable timings."""

    key, name, format, feature = "avif", "AVIF", "AVIF", "avif"
    description = "AVIF (Pillow/libavif), 4:2:0, speed 6, 1 thread, quality 0-100"
    settings = {"subsampling": "4:2:0", "speed": 6, "max_threads": 1}

    def save_kwargs(self, q: Any) -> dict[str, Any]:
        return {"quality": int(q), **self.settings}


class Jpeg2000Codec(PillowCodec):
    """JPEG 2000 (OpenJPEG) in rate mode with the colour transform on.

    ``mct=1`` applies the RGB->YCbCr transform; without it the three channels
    are coded independently and PSNR collapses by 2-4 dB at equal rate.  The
    9/7 irreversible wavelet is the standard lossy choice.  The quality knob is
    a *nominal* bpp (OpenJPEG's rate = 24 / bpp), so no blind search is needed.
    """

    key, name, format, feature = "jpeg2000", "JPEG 2000", "JPEG2000", "jpg_2000"
    description = "JPEG 2000 (Pillow/OpenJPEG), 9/7 wavelet, mct=1, rate mode"
    settings = {"quality_mode": "rates", "mct": 1, "irreversible": True}
    shave, tries = 0.97, 40  # the rate search below: nominal rate x shave until the file fits

    def config(self) -> dict[str, Any]:
        return {**self.settings, "search": [self.shave, self.tries]}  # no quality range: the knob is the rate

    def save_kwargs(self, q: Any) -> dict[str, Any]:
        ratio = 24.0 / max(float(q), 1e-3)
        return {**self.settings, "quality_layers": [ratio]}

    def search_quality(self, img: np.ndarray, bpp: float) -> tuple[Any, bytes]:
        """OpenJPEG hits the rate within ~1%; shave the nominal rate until it fits."""
        budget = int(bpp * img.shape[0] * img.shape[1] / 8)
        q = bpp
        for _ in range(self.tries):
            data = self.encode(img, q)
            if len(data) <= budget:
                break
            q *= self.shave
        return q, data


# --------------------------------------------------------------------------- HEIC


class HeicCodec(Codec):
    """HEVC intra in a HEIF container via pillow-heif/x265: our stand-in for BPG.

    4:4:4 chroma to match the "BPG 4:4:4" anchor; one x265 thread pool so the
    timings are comparable with the other single-threaded encoders.
    """

    key, name = "heic", "HEIC (x265 4:4:4)"
    description = "HEVC intra (pillow-heif/libheif/x265), 4:4:4, quality 0-100"
    settings = {"chroma": 444, "enc_params": {"x265:pools": "1"}}

    @classmethod
    def available(cls) -> Availability:
        try:
            import pillow_heif
        except ImportError:
            return Availability(False, "pillow-heif is not installed (pip install pillow-heif)")
        if not pillow_heif.libheif_info().get("HEIF"):
            return Availability(False, "pillow-heif has no HEVC encoder")
        return Availability(True)

    def version(self) -> str:
        import pillow_heif

        return f"pillow-heif-{pillow_heif.libheif_info().get('libheif', '?')}"

    def encode(self, img: np.ndarray, q: Any) -> bytes:
        import pillow_heif

        heif = pillow_heif.from_bytes("RGB", (img.shape[1], img.shape[0]), img.tobytes())
        kwargs: dict[str, Any] = {"quality": int(q), **self.settings}
        if hasattr(pillow_heif.options, "GRID_TILE_SIZE"):
            kwargs["tile_size"] = 0  # one coded image, no grid overhead (option exists in newer releases)
        buf = io.BytesIO()
        heif.save(buf, **kwargs)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        return np.asarray(heif.to_pillow().convert("RGB"))


# --------------------------------------------------------------------------- JPEG XL


@lru_cache(maxsize=1)
def _cjxl_version() -> str:
    try:
        out = subprocess.run(["cjxl", "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "cjxl-?"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "cjxl-?"


class JpegXLCodec(Codec):
    """JPEG XL through the reference ``cjxl``/``djxl`` binaries (no Python binding needed)."""

    key, name = "jxl", "JPEG XL"
    description = "JPEG XL (libjxl cjxl/djxl), default effort, quality 5-100"
    qmin, qmax = 5, 100  # cjxl 0.7 refuses distances above 25 (quality below ~4)

    @classmethod
    def available(cls) -> Availability:
        missing = [b for b in ("cjxl", "djxl") if shutil.which(b) is None]
        if missing:
            return Availability(False, f"{' and '.join(missing)} not found on PATH")
        return Availability(True)

    def version(self) -> str:
        return _cjxl_version()

    def encode(self, img: np.ndarray, q: Any) -> bytes:
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="mscn-jxl-") as tmp:
            src, dst = Path(tmp, "in.png"), Path(tmp, "out.jxl")
            Image.fromarray(img, "RGB").save(src)
            _run_tool(["cjxl", str(src), str(dst), "-q", str(int(q))])
            return dst.read_bytes()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="mscn-jxl-") as tmp:
            src, dst = Path(tmp, "in.jxl"), Path(tmp, "out.png")
            src.write_bytes(data)
            _run_tool(["djxl", str(src), str(dst)])
            with Image.open(dst) as im:
                return np.asarray(im.convert("RGB"))


def _run_tool(cmd: list[str]) -> None:
    """Run an external encoder, turning a failure into a one-line error."""
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{cmd[0]} failed ({res.returncode}): {tail[0]}")
