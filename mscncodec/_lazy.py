"""torch, bound at import time and imported on first use: ``from mscncodec._lazy import torch, F``.

Why: importing torch costs 1.5-4 s, more than a whole image decode, and the decode of a grid2 image
stream runs without it (numpy: the exact-integer ARM and a float32 synthesis, issue 28). The modules that
path shares with the torch code (the grid coders' exact twins, the quantiser tables, the latent tables)
name torch through these proxies, so importing them stays cheap; the first attribute read
(``torch.tensor``) imports the real module. A module-level use (a ``torch.autograd.Function`` base class,
a ``@torch.no_grad()`` decorator) would import it at once: such code lives in modules that import torch
plainly. ``tests/families/grid2/test_grid2_decode_np.py`` checks that the decode imports no torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """A module imported on its first attribute access."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name, self._module = name, None

    def _load(self) -> ModuleType:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return self._module

    def __getattr__(self, attr: str):
        return getattr(self._load(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{' (imported)' if self._module is not None else ''}>"


torch = LazyModule("torch")
F = LazyModule("torch.nn.functional")
