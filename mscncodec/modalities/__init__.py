"""Modalities: the only code that knows what a signal is (load, sample, render, save), and the registry
that maps a container's ``modality`` field and a file's extension to the modality that codes it.

Each entry names its functions as "module:function" strings, imported on first use: ``mscn`` starts
without importing torch or trimesh, and adding a modality means adding one entry and its modules, never
editing another modality. The functions a modality provides:

* ``encode(src, *, target_bytes=None, quality=None, model=None, effort="default", steps=None,
  progress=False, return_report=False, **options) -> bytes | (bytes, report)``
* ``decode(data, **options) -> signal`` (what ``write`` takes)
* ``write(signal, suffix) -> bytes`` (the output file's bytes, for an atomic write)
* ``describe(data) -> dict`` (header, sections, size; for ``mscn info``)

and, in its ``hooks`` module (its codec module), what the API, the CLI and batch mode ask of any modality:

* ``encode_limits(kw, max_pixels, max_voxels) -> kw`` / ``decode_limits(header, kw, max_pixels, max_voxels)
  -> kw``: the work bounds checked before any work (a LimitError), or passed on as options;
* ``encode_summary(report) -> str``, ``signal_info(signal) -> dict`` and ``decode_summary(info) -> str``:
  what ``mscn encode`` / ``mscn decode --verbose`` print.

Adding a modality: its module(s), one ``register`` line below, and its header body in
``container/bitstream.py`` (``MODALITIES`` + ``BODIES``). Its trainer, if any, is a ``mscn train`` command.
"""

from __future__ import annotations

import importlib
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError, InputError, MscnError


@dataclass(frozen=True)
class Modality:
    name: str
    inputs: tuple[str, ...]  # file extensions read by encode ("*": anything not claimed by another modality)
    outputs: tuple[str, ...]  # file extensions written by decode ("*": the writer decides)
    encode_fn: str
    decode_fn: str
    write_fn: str
    describe_fn: str
    hooks: str = ""  # the module with the limit and summary hooks (see above)
    options: tuple[str, ...] = ()  # encode/decode options only this modality understands
    default_output: str = ""  # the extension batch decoding writes when no --format is given
    plural: str = ""  # how messages name several signals ("model X codes meshes, not images")
    provisional_model: str = ""  # the start made in code when no trained model of this modality ships
    array_decode_fn: str = ""  # optional "module:function": the decode of the streams it can without torch
    # (data, header, max_pixels, max_voxels, **options) -> signal, or None where it does not apply (issue 28)

    @property
    def code(self) -> int:
        """The container's modality field (bitstream.MODALITIES is the one table of codes)."""
        return bitstream.modality_code(self.name)

    def _fn(self, ref: str) -> Callable:
        module, name = ref.split(":")
        return getattr(importlib.import_module(module), name)

    def encode(self, src, **kw):
        return self._fn(self.encode_fn)(src, **kw)

    def decode(self, data: bytes, **kw):
        return self._fn(self.decode_fn)(data, **kw)

    def array_decode(self, data: bytes, header: dict, max_pixels: int, max_voxels: int, **kw):
        """The torch-free decode of this stream, or None where there is none (then ``decode``)."""
        if not self.array_decode_fn:
            return None
        return self._fn(self.array_decode_fn)(data, header, max_pixels, max_voxels, **kw)

    def write(self, signal, suffix: str) -> bytes:
        return self._fn(self.write_fn)(signal, suffix)

    def describe(self, data: bytes) -> dict:
        return self._fn(self.describe_fn)(data)

    def hook(self, name: str) -> Callable:
        return getattr(importlib.import_module(self.hooks), name)

    def encode_summary(self, report: dict) -> str:
        return self.hook("encode_summary")(report)

    def signal_info(self, signal, n_bytes: int, seconds: float) -> dict:
        return {"modality": self.name, "bytes": n_bytes, "seconds": seconds, **self.hook("signal_info")(signal)}

    def decode_summary(self, info: dict) -> str:
        return self.hook("decode_summary")(info)


REGISTRY: dict[str, Modality] = {}


def check_byte_target(target_bytes, quality, effort: str, efforts) -> None:
    """The checks every size-targeted encoder (meshes, fields) makes first, each a one-line error."""
    if target_bytes is not None and quality is not None:
        raise MscnError("give either a byte target or a quality, not both")
    if target_bytes is not None and (isinstance(target_bytes, bool) or not isinstance(target_bytes, numbers.Integral)
                                     or target_bytes <= 0):
        raise MscnError(f"the byte target must be a positive integer, got {target_bytes}")
    if effort not in efforts:
        raise MscnError(f"unknown effort {effort!r} ({', '.join(efforts)})")


def unpack_stream(data, name: str) -> tuple[dict, dict[str, bytes]]:
    """A stream's checked header and sections, refused (one line) unless it holds modality `name`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MscnError("decode expects bytes")
    header, sections = bitstream.unpack(bytes(data))
    if header["modality"] != bitstream.modality_code(name):
        raise BitstreamError(f"not a {name} stream (modality {bitstream.MODALITIES[header['modality']]})")
    return header, sections


def check_density(n_bytes: int, n_points: int, what: str, unit: str = "point") -> None:
    """Refuse a stream shorter than bitstream.MIN_BPP bits per point it claims (`what`: "6 x 64 x 128 points"),
    before decoding allocates anything: a decode costs time and memory in proportion to the points."""
    if n_bytes < math.ceil(n_points * bitstream.MIN_BPP / 8):
        raise BitstreamError(f"a {n_bytes}-byte stream cannot code {what} (the format's minimum is "
                             f"{bitstream.MIN_BPP} bits per {unit}): corrupted or crafted")


def grid3_description(header: dict, sections: dict[str, bytes]) -> dict:
    """`mscn info`'s header lines of a grid3 stream: the header, the model and its network, the GRD3 section."""
    from mscncodec.families.grid2.volume.codec import describe as grid_describe
    from mscncodec.models import find_by_id

    d = bitstream.describe_header(header)
    m = find_by_id(header["model_id"])
    d["model"] = m.name if m else "(unknown to this decoder)"
    if m is not None:
        d["network"] = m.summary()
    d.update(grid_describe(sections))
    return d


def register(m: Modality) -> Modality:
    if m.name in REGISTRY or any(o.code == m.code for o in REGISTRY.values()):
        raise ValueError(f"modality {m.name} (code {m.code}) is already registered")
    REGISTRY[m.name] = m
    return m


def by_code(code: int) -> Modality:
    for m in REGISTRY.values():
        if m.code == code:
            return m
    raise BitstreamError(f"unsupported modality {code} (this decoder knows {', '.join(REGISTRY)})")


def by_name(name: str) -> Modality:
    if name not in REGISTRY:
        raise InputError(f"unknown modality {name!r} (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def for_input(path: str | Path) -> Modality:
    """The modality whose encoder reads this file, by extension; the catch-all one (images, whose
    loader sniffs the content) for anything else."""
    suffix = Path(path).suffix.lower()
    for m in REGISTRY.values():
        if suffix in m.inputs:
            return m
    return next(m for m in REGISTRY.values() if "*" in m.inputs)


register(Modality("image", ("*",), ("*",),
                  "mscncodec.modalities.image_codec:encode_image", "mscncodec.modalities.image_codec:decode",
                  "mscncodec.container.files:image_file_bytes",
                  "mscncodec.modalities.image_codec:describe", "mscncodec.modalities.image_codec", options=("bpp", "arch", "device"), default_output=".png",
                  plural="images", provisional_model="random-w32d5",
                  array_decode_fn="mscncodec.modalities.image_arrays:decode"))
register(Modality("mesh", (".obj", ".ply", ".stl", ".off", ".glb"), (".obj", ".ply", ".stl", ".off", ".glb"),
                  "mscncodec.modalities.mesh_codec:encode_mesh", "mscncodec.modalities.mesh_codec:decode_mesh",
                  "mscncodec.modalities.mesh:encode_file",
                  "mscncodec.modalities.mesh_codec:describe", "mscncodec.modalities.mesh_codec", options=("resolution",), default_output=".ply",
                  plural="meshes", provisional_model="random-sdf-w32d5+dense"))
register(Modality("sphere", (".nc", ".nc4", ".npy"), (".nc", ".nc4", ".npy"),
                  "mscncodec.modalities.sphere_codec:encode_field", "mscncodec.modalities.sphere_codec:decode_field",
                  "mscncodec.modalities.sphere:write",
                  "mscncodec.modalities.sphere_codec:describe", "mscncodec.modalities.sphere_codec",
                  options=("var", "time", "level", "grid"),
                  default_output=".nc", plural="fields", provisional_model="random-sphere-w32d5+dense"))
register(Modality("series", (), (".nc", ".nc4", ".npy"),
                  "mscncodec.modalities.series_codec:encode_series", "mscncodec.modalities.series_codec:decode_series",
                  "mscncodec.modalities.series_codec:write", "mscncodec.modalities.series_codec:describe",
                  "mscncodec.modalities.series_codec", options=("var", "time", "level", "grid"), default_output=".nc",
                  plural="field series"))
register(Modality("voxels", (".binvox",), (".binvox", ".npy"),
                  "mscncodec.modalities.voxels_codec:encode_voxels", "mscncodec.modalities.voxels_codec:decode_voxels",
                  "mscncodec.modalities.voxels_codec:write", "mscncodec.modalities.voxels_codec:describe",
                  "mscncodec.modalities.voxels_codec", options=("resolution",), default_output=".binvox",
                  plural="voxel grids"))
