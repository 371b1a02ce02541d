"""INR codecs: mscn (one per shipped model) and the COIN-style from-scratch baseline.

The codec core is imported lazily on every use, so the benchmark still runs
(with these codecs reported unavailable) while the core is missing or broken.
"""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar

import numpy as np

from mscncodec.bench.base import Availability, Codec


def _core() -> Any:
    """The codec core, imported late so a missing/broken core only disables mscn."""
    import mscncodec

    for attr in ("encode_image", "decode"):
        if not callable(getattr(mscncodec, attr, None)):
            raise ImportError(f"mscncodec.{attr} is missing")
    return mscncodec


def list_core_models() -> list[tuple[str, str, str]]:
    """(name, description, weights id) of every shipped model; raises if the core is absent.

    The weights id (when the core provides ``model_id``) goes into the cache
    key, so retraining a model under the same name invalidates its old points.
    """
    from mscncodec.models import PROVISIONAL, list_models

    found = list_models()
    trained = [m for m in found if m.name not in PROVISIONAL]
    out = []
    for m in trained or found:  # the provisional start only when nothing is trained
        mid = getattr(m, "model_id", b"")
        out.append((m.name, getattr(m, "description", "") or "", mid.hex() if isinstance(mid, bytes) else str(mid)))
    return out


AUTO = "auto"
ARCH_DEFAULTS = ("siren", "grid", "grid2")  # mscn:siren / mscn:grid: the default model of one family


def resolve_core_model(name: str, route_effort: str | None = None) -> tuple[str, str, str]:
    """(name, description, weights id) of one model, ablation variants (NAME+dense) included.

    ``auto`` is what a user gets without --model: the shipped model routed by target
    rate (models/routing.json) and, where the routing names efforts, by effort; its id hashes every
    shipped model and the routes.
    """
    import hashlib
    from types import SimpleNamespace

    from mscncodec.models import PROVISIONAL, default_arch, list_models, load_model, routing

    name, _, effort = name.partition("@")  # NAME@fast: an effort level other than the default
    if effort:
        n, d, i = resolve_core_model(name, effort)
        return (f"{n}@{effort}", f"{d} (effort {effort})", f"{i}-{effort}")
    if name == AUTO or name in ARCH_DEFAULTS:
        arch = default_arch() if name == AUTO else name
        routes = routing(arch, route_effort or "default")  # no @EFFORT: the codec encodes at "default"
        h = hashlib.sha256(repr(routes).encode())
        rev = max((encoder_revision(load_model(n)) for _, n in routes),
                  default=encoder_revision(SimpleNamespace(arch=arch)))
        if rev > 1:
            h.update(f"encoder r{rev}".encode())
        for m in list_models():
            if m.name not in PROVISIONAL and getattr(m, "arch", "siren") == arch:
                h.update(m.model_id)
        desc = f"default {arch} model per target rate (" + ", ".join(f"<={b:g}: {n}" for b, n in routes) + ")"
        return (name, desc if routes else f"default {arch} model", h.hexdigest()[:16])
    m = load_model(name)
    rev = encoder_revision(m)
    return (m.name, m.description, m.model_id.hex() + (f"-r{rev}" if rev > 1 else ""))


def encoder_revision(model) -> int:
    """A model's encoder revision: its family's ENCODER_REVISION, or UPDATE_REVISION for the variants that
    send a decoder update where the family has one; raised when the encoder's results change while streams
    stay readable (same format, other bytes), so the bench's cache keys change and the old encoder's points
    are not reported as the new one's."""
    import importlib

    try:
        mod = importlib.import_module(f"mscncodec.families.{getattr(model, 'arch', 'siren')}.encoder")
    except ImportError:
        return 1
    if getattr(model, "sends_update", False) and hasattr(mod, "UPDATE_REVISION"):
        return int(mod.UPDATE_REVISION)
    return int(getattr(mod, "ENCODER_REVISION", 1))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


class MscnCodec(Codec):
    """One shipped mscn model.  Targets bpp directly, so there is no quality search."""

    from_scratch: ClassVar[bool] = False
    slow = True

    def __init__(self, model: str, model_description: str = "", model_id: str = "") -> None:
        self.model, _, effort = model.partition("@")
        self.effort = effort or "default"
        self.model_id = model_id
        self.key = f"mscn-{_safe(model)}"
        self.name = f"mscn ({model})"
        self.description = f"mscn meta-learned sparse INR, model {model}" + (
            f": {model_description}" if model_description else ""
        )

    @classmethod
    def available(cls) -> Availability:
        try:
            _core()
            list_core_models()
        except Exception as exc:  # the core may be mid-rewrite: any failure means "skip"
            return Availability(False, f"mscn core not usable ({type(exc).__name__}: {exc})")
        return Availability(True)

    def version(self) -> str:
        return f"mscncodec-{getattr(_core(), '__version__', '?')}-{self.model_id}"

    @property
    def auto(self) -> bool:
        """Routed: the model a user gets without --model (per rate, effort and image size)."""
        return self.model == AUTO or self.model in ARCH_DEFAULTS

    def version_at(self, target: float, shape: tuple[int, int]) -> str:
        """A routed codec's point is keyed by what encodes it: the routed model (name and weights), its
        encoder revision and rate-growth calibration. A new route then re-measures only the rates and
        sizes it serves, where a hash of every model and route re-measured every point."""
        if not self.auto or self.from_scratch:
            return self.version()
        import hashlib

        from mscncodec.modalities.image_codec import routed_model

        m = routed_model(target, None if self.model == AUTO else self.model, self.effort, shape)
        mid = getattr(m, "model_id", b"")
        h = hashlib.sha256(f"{m.name}|{mid.hex() if isinstance(mid, bytes) else mid}|r{encoder_revision(m)}".encode())
        if getattr(m, "arch", "") == "grid2":
            from mscncodec.families.grid2.encoder import growth_file

            g = growth_file(m)
            h.update(g.read_bytes() if g.is_file() else b"no growth file")
        return f"mscncodec-{getattr(_core(), '__version__', '?')}-{m.name}-{h.hexdigest()[:16]}"

    def legacy_version(self) -> str | None:
        """Routed codecs were keyed by a hash of every model and route of the family (`version()`)."""
        return self.version() if self.auto and not self.from_scratch else None

    def encode(self, img: np.ndarray, q: Any) -> bytes:
        return self.encode_at_bpp(img, float(q))

    def encode_at_bpp(self, img: np.ndarray, bpp: float) -> bytes:
        auto = self.auto
        kwargs: dict[str, Any] = {"bpp": bpp, "model": None if auto else self.model, "effort": self.effort}
        if self.model in ARCH_DEFAULTS:
            kwargs["arch"] = self.model
        if self.from_scratch:
            kwargs["from_scratch"] = True
        return _core().encode_image(img, **kwargs)

    def decode(self, data: bytes) -> np.ndarray:
        return np.asarray(_core().decode(data), dtype=np.uint8)

    def timed_encode_at_bpp(self, img: np.ndarray, bpp: float) -> tuple[bytes, Any, float]:
        t0 = time.perf_counter()
        data = self.encode_at_bpp(img, bpp)
        return data, None, time.perf_counter() - t0


class CoinCodec(MscnCodec):
    """COIN-style baseline: the same network and step budget, fitted from a random init.

    Isolates what meta-learning buys: any gap between this and ``mscn`` is due
    to the learned initialisation, not to architecture or quantisation.
    """

    from_scratch = True

    def __init__(self, model: str, model_description: str = "", model_id: str = "") -> None:
        super().__init__(model, model_description, model_id)
        self.key = f"coin-{_safe(model)}"
        self.name = f"COIN-style ({model}, from scratch)"
        self.description = (
            f"INR fitted from random init with the {model} architecture and step budget "
            "(COIN-style baseline, same quantisation and entropy coding as mscn)"
        )
