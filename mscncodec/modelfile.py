"""What every family's model file shares: the id (a hash over config, settings and tensors), the tensor
groups it saves, the atomic save, and the names of ablation variants ("grid2-l7+dense")."""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from mscncodec._lazy import torch  # the torch-free decoder hashes numpy weights here (digest)


def models_dir() -> Path:
    """Where model files live: MSCN_MODELS, else the weights shipped inside the package (package data,
    so a plain ``pip install .`` carries them)."""
    env = os.environ.get("MSCN_MODELS")
    return Path(env) if env else Path(str(importlib.resources.files("mscncodec") / "weights"))


def flatten(model, groups: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """{"group.name": tensor} over the model's tensor groups (what is saved and hashed)."""
    return {f"{g}.{k}": v for g in groups for k, v in getattr(model, g).items()}


def unflatten(tensors: dict[str, torch.Tensor], groups: tuple[str, ...]) -> dict[str, dict[str, torch.Tensor]]:
    """The inverse of flatten, as float32 tensors."""
    out: dict[str, dict[str, torch.Tensor]] = {g: {} for g in groups}
    for k, v in tensors.items():
        g, name = k.split(".", 1)
        out[g][name] = v.float()
    return out


def digest(cfg: dict, extra: tuple, tensors: dict[str, torch.Tensor | np.ndarray]) -> bytes:
    """8 bytes of SHA-256 over a config, a few settings and tensors' names and float32 bytes (tensors or numpy
    arrays: the same bytes, so the same id)."""
    h = hashlib.sha256(repr(sorted(cfg.items())).encode())
    h.update(repr(extra).encode())
    for k, v in sorted(tensors.items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v, np.float32).tobytes() if isinstance(v, np.ndarray)
                 else v.detach().contiguous().to(torch.float32).numpy().tobytes())
    return h.digest()[:8]


def save(model, path: Path) -> None:
    """torch.save of model.state(), written to a temporary file and renamed (never half a model)."""
    buf = io.BytesIO()
    torch.save(model.state(), buf)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def base_name(name: str) -> str:
    """The shipped model an ablation variant is made from: "grid2-l7+dense" -> "grid2-l7"."""
    return name.split("+")[0]


def latent_variant(model, kind: str, generic: Callable[[str], object]):
    """A latent-grid model coded another way ("NAME+KIND"). "scratch" is the ablation of the meta-learned
    start: the same architecture from `generic(name)` (a seeded default init), latents from zero, no
    analysis network; it has no variants of its own."""
    from mscncodec.errors import MscnError

    if kind == model.sparsity:
        return model
    base = base_name(model.name)
    if kind == "scratch":
        return replace(generic(f"{base}+scratch"), sparsity="scratch", analysis={},
                       description=f"generic start of {base}'s architecture (no meta-learning; ablation)")
    if model.sparsity == "scratch":
        raise MscnError("the scratch variant has no other variants")
    return replace(model, name=f"{base}+{kind}", sparsity=kind)

