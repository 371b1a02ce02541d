"""INR families, registered once: the twin of ``modalities.REGISTRY``.

A family owns its network, its model class (what a ``weights/NAME.pt`` file holds), its encoders and
decoders (one per modality it codes), and its trainers. Everything outside ``families/`` (the model zoo
in ``models.py``, the CLI, the modalities, the bench) iterates over this registry instead of comparing
family names. Entries name their functions as "module:function" strings, imported on first use, so
``import mscncodec.families`` costs nothing and no family imports another.

The functions an entry names:

* ``model``: a class with ``arch`` (= the family's name), ``name``, ``sparsity`` (its variant),
  ``model_id``, ``state()``, ``from_state(st)``, ``variant(kind)``, ``summary()``, ``meta``,
  ``description`` and ``modality`` (what it codes);
* ``encoders[modality]``: ``encode(model, signal, header, **options) -> (bytes, info)`` where ``header``
  is the container header the modality built (the family fills no field of it) and ``options`` are the
  modality's (images: bpp, quality, rate, steps, effort, progress, lam, from_scratch: every image encoder
  takes them all); ``info`` holds ``note`` and ``open``, and may hold ``strained`` (why the target took the model to
  or past the end of its rate range: the image router then also tries a model routed for lower rates and keeps the
  better decoded, ``image_codec.fallback_models``); a ``errors.ModelFloorError`` says the target is under this model's
  smallest stream (not the format's), which the router answers the same way;
* ``decoders[modality]``: ``decode(model, header, sections) -> signal`` (the modality's array);
* ``describers[modality]``: ``describe(model, sections) -> dict`` (extra lines for ``mscn info``);
* ``trainers[modality]``: ``train(data, out, options, *, resume, command, progress) -> Path``, where
  ``data`` is what the modality's training-data hook built (samplers; the family opens no file);
* optionally, a decode without torch (issue 28): ``arrays``, a class like ``model`` whose ``from_state``
  takes a weights file read by ``ptload`` (numpy arrays) and that has ``model_id``, ``variant``, ``patch``;
  and ``array_decoders[modality]``: ``decode(arrays_model, header, sections) -> signal | None`` (None: the
  stream is one for the torch decoder after all, e.g. a frame too big for it).

A family that has no encoder for a modality is decode-only there (``grid``: old streams still decode).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from mscncodec.container import bitstream
from mscncodec.errors import MscnError


def _load(ref: str) -> Callable:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Family:
    name: str  # the container's arch field names it (bitstream.ARCHS is the one table of codes)
    model: str  # "module:Class"
    variants: tuple[str, ...]  # the variant kinds a model of this family has ("NAME+KIND"); the first is the plain one
    encoders: dict[str, str] = field(default_factory=dict)
    decoders: dict[str, str] = field(default_factory=dict)
    describers: dict[str, str] = field(default_factory=dict)
    trainers: dict[str, str] = field(default_factory=dict)
    provisional: str = ""  # "module:DICT" of {name: factory} for the starts it makes in code (no weights file)
    decode_variants: tuple[str, ...] = ()  # kinds only old streams name: recognised by id, never encoded
    arrays: str = ""  # "module:Class": the decoder side as numpy arrays, for the torch-free decode
    array_decoders: dict[str, str] = field(default_factory=dict)  # per modality: the torch-free decode
    doc: str = ""  # one line for `mscn models` and --arch's help

    @property
    def code(self) -> int:
        return bitstream.arch_code(self.name)

    def model_class(self) -> type:
        return _load(self.model)

    def encoder(self, modality: str) -> Callable:
        if modality not in self.encoders:
            raise MscnError(f"the {self.name} family cannot encode {modality} (it decodes old streams only)"
                            if modality in self.decoders else f"the {self.name} family does not code {modality}")
        return _load(self.encoders[modality])

    def decoder(self, modality: str) -> Callable:
        if modality not in self.decoders:
            raise MscnError(f"the {self.name} family does not decode {modality}")
        return _load(self.decoders[modality])

    def arrays_class(self) -> type | None:
        return _load(self.arrays) if self.arrays else None

    def array_decoder(self, modality: str) -> Callable | None:
        """The decode of this modality's streams without torch, if the family has one."""
        return _load(self.array_decoders[modality]) if self.arrays and modality in self.array_decoders else None

    def describer(self, modality: str) -> Callable | None:
        return _load(self.describers[modality]) if modality in self.describers else None

    def encoder_revision(self, model) -> int:
        """The revision of this family's encoder for a model: its encoder module's ENCODER_REVISION, or
        UPDATE_REVISION for the variants that send a decoder update. Raised when an encoder's results change
        while streams stay readable (same format, other bytes): the bench keys its cache on it."""
        if not self.encoders:
            return 1
        module = importlib.import_module(next(iter(self.encoders.values())).split(":")[0])
        if getattr(model, "sends_update", False) and hasattr(module, "UPDATE_REVISION"):
            return int(module.UPDATE_REVISION)
        return int(getattr(module, "ENCODER_REVISION", 1))

    def trainer(self, modality: str) -> Callable:
        if modality not in self.trainers:
            raise MscnError(f"the {self.name} family has no {modality} trainer")
        return _load(self.trainers[modality])


REGISTRY: dict[str, Family] = {}


def register(f: Family) -> Family:
    if f.name in REGISTRY:
        raise ValueError(f"family {f.name} is already registered")
    f.code  # noqa: B018  (a family the container has no code for cannot be written or read)
    REGISTRY[f.name] = f
    return f


def by_name(name: str) -> Family:
    if name not in REGISTRY:
        raise MscnError(f"unknown family {name!r} (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def by_code(code: int) -> Family:
    return by_name(bitstream.ARCHS[code])


def of(model) -> Family:
    """The family a model object belongs to."""
    return by_name(model.arch)


def from_state(st: dict):
    """A model from its saved state (a weights file): the state's "arch" names the family (SIREN files,
    the first, have none)."""
    return by_name(st.get("arch", "siren")).model_class().from_state(st)


def provisional() -> dict[str, Callable]:
    """{name: factory} of every family's provisional models (starts made in code, from-scratch baselines)."""
    return {k: v for f in REGISTRY.values() if f.provisional for k, v in _load(f.provisional).items()}


def names(*, encodes: str | None = None, trains: str | None = None) -> list[str]:
    """Family names, optionally only those that encode / train a modality (the CLI's --arch choices)."""
    return [n for n, f in REGISTRY.items()
            if (encodes is None or encodes in f.encoders) and (trains is None or trains in f.trainers)]


register(Family(
    "siren", "mscncodec.families.siren.model:Model", ("gates", "magnitude", "dense"),
    encoders={"image": "mscncodec.families.siren.image:encode"},
    decoders={"image": "mscncodec.families.siren.image:decode"},
    trainers={"image": "mscncodec.families.siren.train:train_images"},
    provisional="mscncodec.families.siren.model:PROVISIONAL",
    doc="the paper's SIREN over patches, Meta-SGD, L0-gated sparse updates"))
register(Family(
    "grid", "mscncodec.families.grid.model:GridModel", ("gates", "dense", "scratch"),
    decoders={"image": "mscncodec.families.grid.decoder:decode"},
    describers={"image": "mscncodec.families.grid.decoder:describe"},
    doc="latent grids + synthesis (decode-only: grid2 replaced it)"))
register(Family(
    "grid2", "mscncodec.families.grid2.model:Grid2Model", ("none", "dense", "scratch"),
    encoders={"image": "mscncodec.families.grid2.encoder:encode"},
    decoders={"image": "mscncodec.families.grid2.decoder:decode"},
    describers={"image": "mscncodec.families.grid2.decoder:describe"},
    trainers={"image": "mscncodec.families.grid2.train:train_images"},
    decode_variants=("gated",),
    arrays="mscncodec.families.grid2.decode_np:Grid2Arrays",
    array_decoders={"image": "mscncodec.families.grid2.decode_np:decode"},
    doc="full-resolution latent grids, learned upsampling, exact auto-regressive context model (C3 / Cool-chic)"))
register(Family(
    "grid3", "mscncodec.families.grid2.volume.model:Vol3Model", ("none", "scratch"),
    # grid3's encoders take the modality's VolumeTarget and the bytes left for the latents and return the family's
    # sections (volume/codec.py); its decoders return the dequantised latents the modality renders where it needs
    encoders={m: "mscncodec.families.grid2.volume.codec:encode" for m in ("series", "voxels", "mesh")},
    decoders={m: "mscncodec.families.grid2.volume.codec:decode_latents" for m in ("series", "voxels", "mesh")},
    trainers={m: "mscncodec.families.grid2.volume.train:train" for m in ("series", "voxels", "mesh")},
    doc="3-D latent grids read trilinearly at any point, exact 3-D context model (grid2's parts): meshes, voxels, "
        "field series"))
