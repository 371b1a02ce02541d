"""A torch-free reader of the shipped weight files (``torch.save`` zips), tensors as numpy arrays.

Why: decoding an image needs a few kilobytes of decoder weights, and importing torch to read them cost
more than the whole decode (issue 28). The ``.pt`` files stay the single source of the weights; this reads
them as they are.

A ``.pt`` is a zip: ``<root>/data.pkl`` (a pickle whose tensors are calls of
``torch._utils._rebuild_tensor_v2`` on storages named by persistent ids) and ``<root>/data/<key>`` (each
storage's raw little-endian bytes). The unpickler here is *restricted*: it resolves only the globals that
rebuild plain tensors (the rebuild function, the typed storage classes of the dtypes numpy has, and
``collections.OrderedDict``) and refuses any other with a one-line ``WeightsFileError``, so a crafted file
cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

from mscncodec.errors import MscnError


class WeightsFileError(MscnError):
    """A weights file that is not a plain tensor file this reader accepts."""


# the typed storage classes torch.save writes into persistent ids, as numpy dtypes (little-endian)
_STORAGES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class _Storage:
    """A storage class named in the pickle: only its dtype matters here."""

    def __init__(self, name: str) -> None:
        self.name, self.dtype = name, np.dtype(_STORAGES[name])


_UNREAD = object()  # the storage of load(tensors=False)


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, requires_grad=False,
                    hooks=None, metadata=None) -> np.ndarray | None:
    """``torch._utils._rebuild_tensor_v2`` for numpy: a strided view of the storage, copied (None where the
    storages were not read)."""
    if storage is _UNREAD:
        return None
    if not isinstance(storage, np.ndarray):
        raise WeightsFileError("weights file: a tensor is not built on a storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if offset < 0 or any(s < 0 for s in size + stride) or len(size) != len(stride):
        raise WeightsFileError("weights file: a tensor has an invalid shape")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= len(storage):
        raise WeightsFileError("weights file: a tensor reaches past its storage")
    flat = storage[offset:]
    view = np.lib.stride_tricks.as_strided(flat, size, tuple(s * storage.itemsize for s in stride), writeable=False)
    return np.array(view)  # a copy: native byte order, owns its memory


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    **{("torch", name): _Storage(name) for name in _STORAGES},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, tensors: bool) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.root, self.tensors = archive, root, tensors

    def find_class(self, module: str, name: str):
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise WeightsFileError(f"weights file refers to {module}.{name}, which a weights file may not "
                                   "(only plain tensors are read)") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise WeightsFileError("weights file: unknown persistent id")
        _, kind, key, _location, numel = pid
        if not self.tensors:
            return _UNREAD
        try:
            raw = self.archive.read(f"{self.root}/data/{key}")
        except KeyError:
            raise WeightsFileError(f"weights file: storage {key!r} is missing") from None
        if len(raw) < int(numel) * kind.dtype.itemsize:
            raise WeightsFileError(f"weights file: storage {key!r} is truncated")
        return np.frombuffer(raw, kind.dtype, int(numel))


def load(path: str | Path, tensors: bool = True):
    """What ``torch.load(path, weights_only=True)`` returns for a file of plain tensors, with every tensor a
    numpy array (a copy in native byte order); tensors False: every tensor None, no storage read (to look at a
    file's settings). A WeightsFileError for anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise WeightsFileError(f"{path} is not a torch weights file (no data.pkl)")
            root = pickles[0].split("/")[0]
            names = set(archive.namelist())
            if f"{root}/byteorder" in names and archive.read(f"{root}/byteorder").strip() != b"little":
                raise WeightsFileError(f"{path} stores big-endian tensors")
            return _Unpickler(archive.read(pickles[0]), archive, root, tensors).load()
    except WeightsFileError:
        raise
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError) as e:
        raise WeightsFileError(f"{path} is not a readable weights file ({type(e).__name__})") from None
