"""Codec registry: the short ids ``--codecs`` accepts, and their resolution.

Re-exports the codec classes so callers need a single import::

    from mscncodec.bench.codecs import Codec, JpegCodec, resolve_codecs
"""

from __future__ import annotations

from mscncodec.bench.base import Availability, Codec
from mscncodec.bench.classic import AvifCodec, HeicCodec, Jpeg2000Codec, Jpeg444Codec, JpegCodec, JpegXLCodec, PillowCodec, WebPCodec
from mscncodec.bench.inr import CoinCodec, MscnCodec, list_core_models, resolve_core_model

__all__ = [
    "Availability", "Codec", "PillowCodec", "JpegCodec", "Jpeg444Codec", "WebPCodec", "AvifCodec",
    "Jpeg2000Codec", "HeicCodec", "JpegXLCodec", "MscnCodec", "CoinCodec", "STANDARD_CODECS",
    "CODEC_IDS", "UnknownCodecError", "resolve_codecs",
]

STANDARD_CODECS: dict[str, type[Codec]] = {
    c.key: c
    for c in (JpegCodec, Jpeg444Codec, WebPCodec, Jpeg2000Codec, AvifCodec, HeicCodec, JpegXLCodec)
}
#: Every id ``--codecs`` accepts (``mscn``/``coin`` also take ``:MODEL``).
CODEC_IDS: tuple[str, ...] = (*STANDARD_CODECS, "mscn", "coin")


class UnknownCodecError(ValueError):
    """A ``--codecs`` entry that names no codec (or no shipped model)."""


def resolve_codecs(spec: str) -> tuple[list[Codec], list[str]]:
    """Parse ``"jpeg,webp,mscn:small"`` into codec instances plus skip notices.

    Unknown ids raise :class:`UnknownCodecError` (a user typo should stop the
    run), whereas an id whose library or core is missing yields a notice, so a
    long benchmark still produces the curves it can.
    """
    ids = [s.strip() for s in spec.split(",") if s.strip()]
    if not ids:
        raise UnknownCodecError("no codecs given")
    codecs: list[Codec] = []
    notices: list[str] = []
    for ident in ids:
        base, _, model = ident.partition(":")
        base = base.lower()
        if base in STANDARD_CODECS and not model:
            codecs.append(STANDARD_CODECS[base]())
        elif base in ("mscn", "coin"):
            codecs.extend(_resolve_inr(base, model, notices))
        else:
            raise UnknownCodecError(
                f"unknown codec {ident!r}; choose from {', '.join(CODEC_IDS)} (or mscn:MODEL, coin:MODEL)"
            )
    seen: set[str] = set()
    unique = [c for c in codecs if not (c.key in seen or seen.add(c.key))]
    return unique, notices


def _resolve_inr(base: str, model: str, notices: list[str]) -> list[Codec]:
    """Expand ``mscn``/``coin`` (optionally ``:MODEL``) using the shipped model list."""
    cls = MscnCodec if base == "mscn" else CoinCodec
    avail = cls.available()
    if not avail:
        notices.append(f"skipping {base}{':' + model if model else ''}: {avail.reason}")
        return []
    if model:
        try:
            models = [resolve_core_model(model)]
            _require_image_model(model)
        except Exception as e:  # the core's own one-line message (unknown model, bad variant, not an image model)
            raise UnknownCodecError(f"{base}:{model}: {e}") from None
    elif base == "coin":
        models = [resolve_core_model("random-w32d5")]
    else:
        models = list_core_models()  # the image models only: a mesh or field model is no image codec
    if not models:
        notices.append(f"skipping {base}: no shipped models found")
        return []
    if base == "coin" and not model:
        models = models[:1]  # one from-scratch baseline is enough; it is slow
    return [cls(*m) for m in models]


def _require_image_model(name: str) -> None:
    """A named model (not a routed name) must code images, by the modality its card declares: `mscn:sphere-w32`
    is refused in one line up front, not as a failure at every image and point."""
    from mscncodec.bench.inr import MODALITY, routed_name
    from mscncodec.models import load_model, require_modality

    name = name.partition("@")[0]
    if not routed_name(name):
        require_modality(load_model(name), MODALITY)
