"""grid3's model: the shared decoder theta0 (synthesis + ARM) of one modality; a stream carries only latents."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mscncodec.errors import MscnError
from mscncodec.families.grid2.volume.config import Vol3Config, init_arrays
from mscncodec.modelfile import base_name, digest, flatten, save, unflatten

GRID3_VARIANTS = ("none", "scratch")  # the trained shared decoder / the seeded generic one (the ablation)
GRID3_MODALITIES = ("mesh", "voxels", "series")


@dataclass
class Vol3Model:
    """A grid3 start: the decoder every file of `modality` shares. "scratch" is the same architecture with the
    seeded init: what a from-zero fit without a trained start gets (it sends no decoder either)."""

    name: str
    cfg: Vol3Config
    theta: dict[str, torch.Tensor]
    modality: str = "series"
    sparsity: str = "none"
    description: str = ""
    meta: dict = field(default_factory=dict)

    arch = "grid3"
    sends_update = False
    volume = True  # what the modalities ask (not the family's name) to pick the volume route

    def __post_init__(self) -> None:
        if self.sparsity not in GRID3_VARIANTS:
            raise MscnError(f"unknown grid3 variant {self.sparsity!r} ({', '.join(GRID3_VARIANTS)})")
        if self.modality not in GRID3_MODALITIES:
            raise MscnError(f"grid3 codes {', '.join(GRID3_MODALITIES)}, not {self.modality!r}")

    def summary(self) -> str:
        c = self.cfg
        axes = "".join("p" if p else "c" for p in c.periodic)
        return (f"grid3 L{c.levels} syn{'-'.join(map(str, c.hidden))} arm{c.arm_hidden} axes {axes} "
                f"{c.macs_per_point()} MAC/point, {c.n_params()} decoder parameters")

    def variant(self, sparsity: str) -> "Vol3Model":
        if sparsity == self.sparsity:
            return self
        if sparsity != "scratch":
            raise MscnError(f"grid3 models have the variants {', '.join(GRID3_VARIANTS)}, not {sparsity!r}")
        return fresh_vol3_model(self.cfg, name=f"{base_name(self.name)}+scratch", modality=self.modality,
                                sparsity="scratch", meta=dict(self.meta))

    def tensors(self) -> dict[str, torch.Tensor]:
        return flatten(self, ("theta",))

    @property
    def model_id(self) -> bytes:
        return digest(self.cfg.to_dict(), ("grid3", self.modality, self.sparsity), self.tensors())

    def state(self) -> dict:
        return {"arch": "grid3", "name": self.name, "cfg": self.cfg.to_dict(), "modality": self.modality,
                "tensors": {k: v.detach().cpu().clone() for k, v in self.tensors().items()},
                "sparsity": self.sparsity, "description": self.description, "meta": self.meta}

    @classmethod
    def from_state(cls, st: dict) -> "Vol3Model":
        groups = unflatten(st["tensors"], ("theta",))
        return cls(name=st["name"], cfg=Vol3Config.from_dict(st["cfg"]), modality=st.get("modality", "series"),
                   sparsity=st.get("sparsity", "none"), description=st.get("description", ""),
                   meta=st.get("meta", {}), **groups)

    save = save


def fresh_vol3_model(cfg: Vol3Config, *, name: str, modality: str, seed: int = 0, sparsity: str = "none",
                     meta: dict | None = None) -> Vol3Model:
    theta = {k: torch.from_numpy(v) for k, v in init_arrays(cfg, seed).items()}
    return Vol3Model(name, cfg, theta, modality=modality, sparsity=sparsity, meta=meta or {})
