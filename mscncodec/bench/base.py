"""The ``Codec`` interface every benchmarked codec implements.

Every codec is driven the same way -- "give me the best file that fits in this
many bits per pixel" -- so that all curves are sampled at the same target rates
and can be averaged over images point by point.  Classical codecs only expose a
quality knob, so :meth:`Codec.encode_at_bpp` binary-searches that knob; mscn
does rate control internally and overrides it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Availability:
    """Result of :meth:`Codec.available`: falsy when unusable, with the reason why.

    A plain ``bool`` would force callers to guess why a codec was skipped;
    this keeps ``if codec.available():`` working while carrying the notice text.
    """

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


class Codec:
    """Base class: one configured codec (e.g. JPEG with 4:2:0 chroma).

    Subclasses set ``key`` (short file/cache-safe id), ``name`` (legend text),
    ``description`` and the integer quality range ``qmin..qmax``, ordered so
    that a larger quality gives a larger file (the search relies on it).
    """

    key: str = "codec"
    name: str = "codec"
    description: str = ""
    slow: bool = False  # fitted per image (seconds per point): may get its own, sparser point set
    qmin: int = 0
    qmax: int = 100

    @classmethod
    def available(cls) -> Availability:
        """Whether the library/binary this codec needs is present."""
        return Availability(True)

    def version(self) -> str:
        """Library version; part of the cache key so upgrades invalidate results."""
        return ""

    def version_at(self, target: float, shape: tuple[int, int]) -> str:
        """The version of one point (target bpp, image height x width) for its cache key: `version()` unless
        what encodes the point depends on the point (a router that picks a model per rate and size)."""
        return self.version()

    def legacy_version(self) -> str | None:
        """A key version that older caches filed this codec's points under, where it differs from
        `version_at` (None: none). The runner re-files such points under the new key, see runner.rekey."""
        return None

    def encode(self, img: np.ndarray, q: Any) -> bytes:
        """Encode an HxWx3 uint8 RGB image at native quality ``q``."""
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        """Decode to an HxWx3 uint8 RGB array."""
        raise NotImplementedError

    def search_quality(self, img: np.ndarray, bpp: float) -> tuple[Any, bytes]:
        """Largest-file quality whose real size is <= ``bpp``; else the smallest setting.

        Binary search over ``qmin..qmax`` (about 7 encodes).  Sizes are only
        *nearly* monotonic in quality for some encoders (WebP at q=0), so the
        largest fitting file seen anywhere during the search is returned rather
        than trusting the final bracket.
        """
        budget = int(bpp * img.shape[0] * img.shape[1] / 8)
        tried: dict[int, bytes] = {}
        memo = self.__dict__.setdefault("_memo", {})  # (image digest, q) -> bytes, shared by all targets
        digest = hashlib.sha1(img.tobytes()).hexdigest()
        if len(memo) > 256:
            memo.clear()

        def size(q: int) -> int:
            if (digest, q) not in memo:
                memo[(digest, q)] = self.encode(img, q)
            tried[q] = memo[(digest, q)]
            return len(tried[q])

        lo, hi = self.qmin, self.qmax
        if size(lo) <= budget:
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if size(mid) <= budget:
                    lo = mid
                else:
                    hi = mid - 1
        fitting = [(len(d), q) for q, d in tried.items() if len(d) <= budget]
        if not fitting:  # even the coarsest setting overshoots: report it honestly
            return self.qmin, tried[self.qmin]
        q = max(fitting)[1]
        return q, tried[q]

    def encode_at_bpp(self, img: np.ndarray, bpp: float) -> bytes:
        """Encode as close to (but not above) ``bpp`` bits per pixel as the codec allows."""
        return self.search_quality(img, bpp)[1]

    def timed_encode_at_bpp(self, img: np.ndarray, bpp: float) -> tuple[bytes, Any, float]:
        """Return (data, quality, seconds) where the time excludes the rate search.

        The search is a benchmarking artefact (a real user picks one quality),
        so the reported encode time is that of one encode at the chosen quality.
        """
        q, _ = self.search_quality(img, bpp)
        t0 = time.perf_counter()
        data = self.encode(img, q)
        return data, q, time.perf_counter() - t0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}>"


def need_modules(*modules: str) -> Availability:
    """Available when every module imports; else the first that does not, and why."""
    import importlib

    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            return Availability(False, f"{mod} is not installed ({exc})")
    return Availability(True)


def available_codecs(codecs) -> tuple[list, list[str]]:
    """(the codecs that can run here, one "skipping ..." notice for each that cannot)."""
    usable, notices = [], []
    for c in codecs:
        avail = c.available()
        if avail:
            usable.append(c)
        else:
            notices.append(f"skipping {c.key}: {avail.reason}")
    return usable, notices
