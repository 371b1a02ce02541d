"""The ``Codec`` interface every benchmarked image codec implements, and what all benches share.

Every codec is driven the same way -- "give me the best file that fits in this
many bits per pixel" -- so that all curves are sampled at the same target rates
and can be averaged over images point by point.  Classical codecs only expose a
quality knob, so :meth:`Codec.encode_at_bpp` binary-searches that knob; mscn
does rate control internally and overrides it.

Shared by the image, mesh and field benches: :class:`Keyed`, the one cache-key scheme (a
codec's declared identity); :class:`BenchError`, the one-line error; :func:`extra`, the import
of a dependency that only the bench needs (the ``bench`` extra).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mscncodec.errors import MscnError

#: What a user reads when a bench-only library is missing.
BENCH_EXTRA = "`mscn bench` needs the bench extra: pip install 'mscncodec[bench]'"


class BenchError(MscnError):
    """A user-facing problem (bad dataset, unreadable image, missing extra): reported in one line."""


def extra(module: str) -> Any:
    """Import a library only the bench uses (matplotlib, pytorch_msssim); missing: the one-line :class:`BenchError`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BenchError(f"{BENCH_EXTRA} ({module.split('.')[0]} is missing: {exc})") from None


def require_extras(*modules: str) -> None:
    """Fail before any work (not after hours of it) when a bench-only library is missing."""
    import importlib.util

    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise BenchError(f"{BENCH_EXTRA} ({module} is missing)")


# --------------------------------------------------------------------------- the cache-key scheme

KEY_DIGITS = 16


def identity_key(name: str, version: str, config: Mapping[str, Any]) -> str:
    """A codec's field of a cache key, from its declared identity: ``VERSION#DIGEST``, where DIGEST is the
    first 16 hex digits of sha256 over the canonical JSON of ``[name, version, config]``. The version
    stays readable in the cache; the digest covers every setting."""
    blob = json.dumps([name, version, dict(config)], sort_keys=True, separators=(",", ":"), default=str)
    return f"{version}#{hashlib.sha256(blob.encode()).hexdigest()[:KEY_DIGITS]}"


class Keyed:
    """The one cache-key scheme of every bench codec (image, mesh and field codecs all inherit it).

    A codec declares what makes its output what it is: ``version()`` (the library's version; for mscn,
    its family's encoder revision) and ``config()`` (every setting that changes the output, as JSON-able
    data). A cached point is filed under :func:`identity_key` of that (name, version, config), so a new
    library, setting, model weights or encoder revision files new points and the same codec always finds
    its own; nothing is bumped by hand and no source file is hashed. A codec whose identity depends on the
    point (a router that picks a model per rate and size) overrides :meth:`identity`.
    """

    key: str = "codec"

    def version(self) -> str:
        """Library (or encoder) version; part of the cache key so upgrades invalidate results."""
        return ""

    def config(self) -> dict[str, Any]:
        """The settings that change this codec's output (part of the cache key)."""
        return {}

    def identity(self, *point: Any) -> tuple[str, str, dict[str, Any]]:
        """(name, version, config) of what encodes one point (``point``: the bench's target and, for
        images, the (height, width)); the codec's own unless it routes per point."""
        return self.key, self.version(), self.config()

    def cache_version(self, *point: Any) -> str:
        """This codec's field of the cache key of one point: :func:`identity_key` of :meth:`identity`."""
        return identity_key(*self.identity(*point))

    def legacy_versions(self, *point: Any) -> tuple[str, ...]:
        """The codec fields that caches written before this scheme filed the point under (newest first).
        The benches re-file a point found under one of them under its current key, once
        (:func:`.cache.refile`); a codec with no such caches returns ()."""
        return ()

    def unmeasurable(self) -> str | None:
        """Why this codec cannot measure new points here (its cached ones can still be reported), or None."""
        return None


def model_identity(m: Any) -> tuple[str, dict[str, Any]]:
    """(version, config) an mscn model contributes to a cache key: its family and that family's encoder
    revision (``families.of(m).encoder_revision(m)``), its name, weights id and rate calibration."""
    from mscncodec import families

    fam = families.of(m)
    config: dict[str, Any] = {"model": m.name, "weights": m.model_id.hex()}
    cal = calibration_bytes(m)
    if cal is not None:
        config["calibration"] = hashlib.sha256(cal).hexdigest()[:KEY_DIGITS]
    return f"{fam.name}-r{fam.encoder_revision(m)}", config


def calibration_bytes(m: Any) -> bytes | None:
    """The rate calibration a model's encoder aims with (grid2: ``m.growth_file()``, NAME.growth.json), or None
    when its family has none."""
    find = getattr(m, "growth_file", None)
    if find is None:
        return None
    path = find()
    return path.read_bytes() if path.is_file() else b"no growth file"


# --------------------------------------------------------------------------- image codecs


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


class Codec(Keyed):
    """Base class: one configured image codec (e.g. JPEG with 4:2:0 chroma).

    Subclasses set ``key`` (short file/cache-safe id), ``name`` (legend text),
    ``description``, the integer quality range ``qmin..qmax``, ordered so
    that a larger quality gives a larger file (the search relies on it), and
    ``settings``: the fixed encoder options, part of the cache key (:class:`Keyed`).
    """

    key: str = "codec"
    name: str = "codec"
    description: str = ""
    slow: bool = False  # fitted per image (seconds per point): may get its own, sparser point set
    qmin: int = 0
    qmax: int = 100
    settings: ClassVar[dict[str, Any]] = {}

    @classmethod
    def available(cls) -> Availability:
        """Whether the library/binary this codec needs is present."""
        return Availability(True)

    def config(self) -> dict[str, Any]:
        return {"quality": [self.qmin, self.qmax], **self.settings}

    def legacy_versions(self, target: float, shape: tuple[int, int]) -> tuple[str, ...]:
        """Before the identity scheme an image codec's points were filed under its library version alone."""
        return (self.version(),)

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


def dist_version(name: str) -> str:
    """The installed version of a distribution ("?" when not installed)."""
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "?"


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
