"""The zarr v3 forms of the mscn codec (``mscncodec.numcodecs.Mscn``).

zarr v3 takes only its own codec classes in an array's codec chain, in three roles: filters (array to array),
one serializer (array to bytes) and compressors (bytes to bytes). Users of xarray write
``encoding={"TS": {"compressors": [codec]}}`` as they would for Zstd or Blosc, so ``Mscn`` itself is a
bytes-to-bytes codec here (``ZarrBytesForm``, mixed into it; zarr's default serializer hands it the chunk's
little-endian bytes and the chunk's shape). ``MscnArray`` is the same codec as the serializer
(``encoding={"TS": {"serializer": MscnArray(...), "compressors": None}}``): it receives the chunk as an array
and saves zarr's copy to bytes. Both store their configuration in the array's metadata under the names
``mscn`` and ``mscn_array``, found again by the ``zarr.codecs`` entry points, so a store reopens in any process
where mscncodec is installed.

The encode and decode of a chunk run in a worker thread (``asyncio.to_thread``), as zarr's own numcodecs
wrappers do: zarr drives codecs from an event loop.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec, BytesBytesCodec

from mscncodec.errors import InputError

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

    from mscncodec.numcodecs import Mscn


def _float_dtype(dtype) -> str | None:
    """'<f4' / '<f8' for a zarr data type of float32 / float64, else None."""
    native = np.dtype(dtype.to_native_dtype())
    return native.newbyteorder("<").str if native.kind == "f" and native.itemsize in (4, 8) else None


def _check(codec: Mscn, shape: tuple[int, ...], dtype, chunk_grid) -> None:
    """A one-line error unless the array is float32/float64 and its chunks are whole (lat, lon) grids."""
    if _float_dtype(dtype) is None:
        raise InputError(f"the mscn codec codes float32 or float64 arrays, not {dtype.to_native_dtype()}")
    chunks = tuple(getattr(chunk_grid, "chunk_shape", shape))
    if len(chunks) < 2 or chunks[-2:] != (codec.nlat, codec.nlon):
        raise InputError(f"the mscn codec needs chunks ending in the whole grid ({codec.nlat}, {codec.nlon}), got "
                         f"chunks {chunks}: chunk the array as (k, {codec.nlat}, {codec.nlon})")


def _refuse_zarr_v2() -> None:
    """An InputError when zarr is writing a v2 array's metadata (``.zarray``): it would store this codec's v3
    form there, which no zarr can read back, so the chunks written after it would be lost. zarr gives a codec
    no other sign of the format than its caller: the metadata object a few frames up."""
    frame = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            return
        if type(frame.f_locals.get("self")).__name__ == "ArrayV2Metadata":
            raise InputError("the mscn codec needs a zarr v3 array (zarr_format=3): a v2 store would not read back")
        frame = frame.f_back


def _config(codec: Mscn) -> dict[str, Any]:
    return {k: v for k, v in codec.get_config().items() if k != "id"}


class ZarrBytesForm(BytesBytesCodec):
    """What makes ``Mscn`` a zarr v3 bytes-to-bytes codec (``compressors=[Mscn(...)]``)."""

    is_fixed_size = False

    def _zarr_encode_batch(self, batch):
        return BytesBytesCodec.encode(self, batch)

    def _zarr_decode_batch(self, batch):
        return BytesBytesCodec.decode(self, batch)

    async def _encode_single(self, chunk_data: Buffer, chunk_spec: ArraySpec) -> Buffer:
        values = np.frombuffer(chunk_data.to_bytes(), self.dtype).reshape(chunk_spec.shape)
        chunk = values.reshape(-1, self.nlat, self.nlon).astype(np.float64)
        data = await asyncio.to_thread(self.encode_chunk, chunk, values.ndim == 2)
        return chunk_spec.prototype.buffer.from_bytes(data)

    async def _decode_single(self, chunk_data: Buffer, chunk_spec: ArraySpec) -> Buffer:
        values = await asyncio.to_thread(self.decode_chunk, chunk_data.to_bytes())
        return chunk_spec.prototype.buffer.from_bytes(np.ascontiguousarray(values, self.dtype).tobytes())

    def evolve_from_array_spec(self, array_spec: ArraySpec):
        """The codec with ``dtype`` the array's (the default "<f4" is a default only)."""
        dt = _float_dtype(array_spec.dtype)
        return self if dt is None or dt == self.dtype else type(self).from_config({**_config(self), "dtype": dt})

    def validate(self, *, shape: tuple[int, ...], dtype, chunk_grid) -> None:
        _check(self, shape, dtype, chunk_grid)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError  # a neural stream's size is known once it is written

    def to_dict(self) -> dict[str, Any]:
        _refuse_zarr_v2()
        return {"name": "mscn", "configuration": _config(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return cls.from_config(dict(data.get("configuration") or {}))


class MscnArray(ArrayBytesCodec):
    """The mscn codec as zarr v3's serializer (array to bytes): ``MscnArray(**Mscn parameters)`` or
    ``MscnArray.of(codec)``; the streams are those of ``Mscn`` with the same configuration."""

    is_fixed_size = False

    def __init__(self, **config: Any) -> None:
        from mscncodec.numcodecs import Mscn

        object.__setattr__(self, "codec", Mscn.from_config(config))

    @classmethod
    def of(cls, codec: Mscn) -> MscnArray:
        return cls(**_config(codec))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MscnArray) and self.codec == other.codec

    def __hash__(self) -> int:
        return hash(("mscn_array", self.codec))

    def __repr__(self) -> str:
        return "MscnArray" + repr(self.codec)[len("Mscn"):]

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer:
        values = np.asarray(chunk_array.as_numpy_array())
        c = self.codec
        chunk = values.reshape(-1, c.nlat, c.nlon).astype(np.float64)
        data = await asyncio.to_thread(c.encode_chunk, chunk, values.ndim == 2)
        return chunk_spec.prototype.buffer.from_bytes(data)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        values = await asyncio.to_thread(self.codec.decode_chunk, chunk_bytes.to_bytes())
        native = np.dtype(chunk_spec.dtype.to_native_dtype())
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(values.astype(native).reshape(chunk_spec.shape))

    def evolve_from_array_spec(self, array_spec: ArraySpec) -> MscnArray:
        dt = _float_dtype(array_spec.dtype)
        return self if dt is None or dt == self.codec.dtype else MscnArray(**{**_config(self.codec), "dtype": dt})

    def validate(self, *, shape: tuple[int, ...], dtype, chunk_grid) -> None:
        _check(self.codec, shape, dtype, chunk_grid)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError  # a neural stream's size is known once it is written

    def to_dict(self) -> dict[str, Any]:
        return {"name": "mscn_array", "configuration": _config(self.codec)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MscnArray:
        return cls(**dict(data.get("configuration") or {}))
