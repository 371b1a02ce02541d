"""INR codecs: mscn (one per shipped model) and the COIN-style from-scratch baseline.

The codec core is imported lazily on every use, so the benchmark still runs
(with these codecs reported unavailable) while the core is missing or broken.
"""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar

import numpy as np

from mscncodec.bench.base import Availability, Codec, calibration_bytes, model_identity

AUTO = "auto"  # mscn:auto: the model a user gets without --model or --arch
MODALITY = "image"


def _core() -> Any:
    """The codec core, imported late so a missing/broken core only disables mscn."""
    import mscncodec

    for attr in ("encode_image", "decode"):
        if not callable(getattr(mscncodec, attr, None)):
            raise ImportError(f"mscncodec.{attr} is missing")
    return mscncodec


def list_core_models() -> list[tuple[str, str, str]]:
    """(name, description, weights id) of every shipped image model a family can encode with (what a bare
    ``mscn`` measures); raises if the core is absent. The provisional starts only when nothing is trained."""
    from mscncodec import families
    from mscncodec.models import list_models

    provisional = families.provisional()
    found = [m for m in list_models() if m.modality == MODALITY and MODALITY in families.of(m).encoders]
    trained = [m for m in found if m.name not in provisional]
    out = []
    for m in trained or found:
        mid = getattr(m, "model_id", b"")
        out.append((m.name, getattr(m, "description", "") or "", mid.hex() if isinstance(mid, bytes) else str(mid)))
    return out


def routed_name(name: str) -> bool:
    """Whether a bench model name is routed (the model a user gets without --model): ``auto`` (the default
    family) or a family's name (``mscn:grid2``: that family's routed model)."""
    from mscncodec import families

    return name == AUTO or name in families.REGISTRY


def resolve_core_model(name: str, route_effort: str | None = None) -> tuple[str, str, str]:
    """(name, description, configuration id) of one model, ablation variants (NAME+dense) included.

    ``auto`` is what a user gets without --model: the shipped model routed by target rate
    (weights/routing.json) and, where the routing names efforts, by effort; a family's name is that
    family's routed model. The id of a routed name hashes its routes, every shipped image model of the family
    and the family's encoder revision; of a model, its weights id and encoder revision (``-rN`` where N > 1).
    It is what caches from before the identity scheme keyed the codec's points by (:meth:`MscnCodec.legacy_versions`).
    """
    import hashlib

    from mscncodec import families
    from mscncodec.models import default_arch, list_models, load_model, routing

    name, _, effort = name.partition("@")  # NAME@fast: an effort level other than the default
    if effort:
        n, d, i = resolve_core_model(name, effort)
        return (f"{n}@{effort}", f"{d} (effort {effort})", f"{i}-{effort}")
    if routed_name(name):
        fam = families.by_name(default_arch() if name == AUTO else name)
        routes = routing(fam.name, route_effort or "default")  # no @EFFORT: the codec encodes at "default"
        h = hashlib.sha256(repr(routes).encode())
        rev = max((encoder_revision(load_model(n)) for _, n in routes), default=fam.encoder_revision(None))
        if rev > 1:
            h.update(f"encoder r{rev}".encode())
        provisional = families.provisional()
        for m in list_models():  # the models the route may pick: the family's image models (a mesh model of
            if m.name not in provisional and families.of(m) is fam and m.modality == MODALITY:  # it is no route)
                h.update(m.model_id)
        desc = f"default {fam.name} model per target rate (" + ", ".join(f"<={b:g}: {n}" for b, n in routes) + ")"
        return (name, desc if routes else f"default {fam.name} model", h.hexdigest()[:16])
    m = load_model(name)
    rev = encoder_revision(m)
    return (m.name, m.description, m.model_id.hex() + (f"-r{rev}" if rev > 1 else ""))


def encoder_revision(model) -> int:
    """A model's encoder revision, as its family declares it (``Family.encoder_revision``)."""
    from mscncodec import families

    return families.of(model).encoder_revision(model)


def model_family(name: str):
    """The family (``families.Family``) of a bench model name: a routed name's, else the model's."""
    from mscncodec import families
    from mscncodec.models import default_arch, load_model

    if routed_name(name):
        return families.by_name(default_arch() if name == AUTO else name)
    return families.of(load_model(name))


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

    @property
    def auto(self) -> bool:
        """Routed: the model a user gets without --model (per rate, effort and image size)."""
        return routed_name(self.model)

    @property
    def spec(self) -> str:
        """The ``--codecs`` id that names this codec."""
        return f"{'coin' if self.from_scratch else 'mscn'}:{self.model}" + (
            "" if self.effort == "default" else f"@{self.effort}")

    def model_at(self, target: float, shape: tuple[int, int]):
        """The model that encodes one point (target bpp, image height x width), as ``encode_image`` picks it."""
        from mscncodec.models import load_model

        if self.from_scratch:  # the modality's provisional start, whatever the architecture label
            from mscncodec.modalities import by_name

            return load_model(by_name(MODALITY).provisional_model)
        if not self.auto:
            return load_model(self.model)
        from mscncodec.modalities.image_codec import routed_model

        return routed_model(target, None if self.model == AUTO else self.model, self.effort, shape)

    def identity(self, target: float, shape: tuple[int, int]) -> tuple[str, str, dict[str, Any]]:
        """What encodes the point: the model (routed per rate, effort and size) with its family's encoder
        revision, weights id and calibration, and the effort. A new route re-measures only the rates and
        sizes it serves; a retrained model or a new encoder revision, only that model's points."""
        version, config = model_identity(self.model_at(target, shape))
        return self.key, version, {**config, "effort": self.effort, "from_scratch": self.from_scratch}

    def legacy_versions(self, target: float, shape: tuple[int, int]) -> tuple[str, ...]:
        """Before the identity scheme: a routed point was keyed by its routed model (name, weights, encoder
        revision, calibration), and before that every point by the configuration id (resolve_core_model)."""
        package = f"mscncodec-{getattr(_core(), '__version__', '?')}"
        old = (f"{package}-{self.model_id}",)
        if not self.auto or self.from_scratch:
            return old
        import hashlib

        m = self.model_at(target, shape)
        h = hashlib.sha256(f"{m.name}|{m.model_id.hex()}|r{encoder_revision(m)}".encode())
        cal = calibration_bytes(m)
        if cal is not None:
            h.update(cal)
        return (f"{package}-{m.name}-{h.hexdigest()[:16]}", *old)

    def unmeasurable(self) -> str | None:
        if self.from_scratch:
            return None
        try:
            fam = model_family(self.model)
        except Exception:  # noqa: BLE001 - an unknown model: its encode reports why, point by point
            return None
        if MODALITY in fam.encoders:
            return None
        return (f"the {fam.name} family is decode-only (it has no image encoder): its cached points can only be "
                f"reported, with --report-only {self.spec}")

    def encode(self, img: np.ndarray, q: Any) -> bytes:
        return self.encode_at_bpp(img, float(q))

    def encode_at_bpp(self, img: np.ndarray, bpp: float) -> bytes:
        auto = self.auto
        kwargs: dict[str, Any] = {"bpp": bpp, "model": None if auto else self.model, "effort": self.effort}
        if auto and self.model != AUTO:
            kwargs["arch"] = self.model  # a family's name: its routed model
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
