"""The grid family's model (decode-only since grid2 replaced it): the decoder-side theta0 with gate
priors and Meta-SGD rates for its per-file update, plus the encoder-side analysis network."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mscncodec.errors import MscnError
from mscncodec.families.grid.network import GridConfig, init_params
from mscncodec.modelfile import digest, flatten, latent_variant, save, unflatten

GRID_VARIANTS = ("gates", "dense", "scratch")  # scratch: generic init, no analysis (ablation of the meta-learned start)


@dataclass
class GridModel:
    """A latent-grid initialisation (see grid.py): decoder-side theta0 with gate priors and
    Meta-SGD rates for its per-file update, plus the encoder-side analysis network."""

    name: str
    cfg: GridConfig
    theta: dict[str, torch.Tensor]  # synthesis + context network
    analysis: dict[str, torch.Tensor]  # encoder only; empty for the generic start
    log_alpha: dict[str, torch.Tensor]
    lr_delta: dict[str, torch.Tensor]
    lr_alpha: dict[str, torch.Tensor]
    inner_steps: int = 1
    sparsity: str = "gates"  # "gates" | "dense" | "scratch"
    description: str = ""
    meta: dict = field(default_factory=dict)

    arch = "grid"
    modality = "image"

    def __post_init__(self) -> None:
        if self.sparsity not in GRID_VARIANTS:
            raise MscnError(f"unknown grid variant {self.sparsity!r} ({', '.join(GRID_VARIANTS)})")

    @property
    def gated(self) -> bool:
        return self.sparsity == "gates"

    @property
    def patch(self) -> int:  # the header's alignment field
        return self.cfg.align

    patch_field = "alignment"  # what the image header's patch field means for this family

    def routable(self, height: int, width: int, effort: str | None) -> bool:
        """Whether routing may pick this model for an image of this size (any size)."""
        return True

    def summary(self) -> str:
        c = self.cfg
        return f"grid  L{c.levels} syn{'-'.join(map(str, c.hidden))} {c.macs_per_pixel():.0f} MAC/px"

    def variant(self, sparsity: str) -> "GridModel":
        return latent_variant(self, sparsity, lambda name: fresh_grid_model(self.cfg, name=name, seed=0, inner_steps=0))

    def tensors(self) -> dict[str, torch.Tensor]:
        return flatten(self, ("theta", "analysis", "log_alpha", "lr_delta", "lr_alpha"))

    @property
    def model_id(self) -> bytes:
        """Like Model's, without the analysis network: it is encoder-only, so a retrained one
        still decodes the same streams."""
        dec = {k: v for k, v in self.tensors().items() if not k.startswith("analysis.")}
        return digest(self.cfg.to_dict(), ("grid", self.sparsity), dec)

    def state(self) -> dict:
        return {"arch": "grid", "name": self.name, "cfg": self.cfg.to_dict(),
                "tensors": {k: v.detach().clone() for k, v in self.tensors().items()},
                "inner_steps": self.inner_steps, "sparsity": self.sparsity,
                "description": self.description, "meta": self.meta}

    @classmethod
    def from_state(cls, st: dict) -> "GridModel":
        groups = unflatten(st["tensors"], ("theta", "analysis", "log_alpha", "lr_delta", "lr_alpha"))
        return cls(name=st["name"], cfg=GridConfig.from_dict(st["cfg"]), inner_steps=st["inner_steps"],
                   sparsity=st.get("sparsity", "gates"), description=st.get("description", ""),
                   meta=st.get("meta", {}), **groups)

    save = save


def fresh_grid_model(cfg: GridConfig, *, name: str, seed: int = 0, inner_steps: int = 1,
                     lr_init: float = 1e-3, log_alpha_init: float = -1.0) -> GridModel:
    """A grid model before meta-learning: seeded default init, uniform gates and learning rates."""
    p = init_params(cfg, seed)
    theta = {k: v for k, v in p.items() if not k.startswith("ana.")}
    ana = {k: v for k, v in p.items() if k.startswith("ana.")}
    shapes = cfg.update_shapes()
    return GridModel(name, cfg, theta, ana, {k: torch.full(s, log_alpha_init) for k, s in shapes.items()},
                     {k: torch.full(s, lr_init) for k, s in shapes.items()},
                     {k: torch.full(s, 1.0) for k, s in shapes.items()}, inner_steps=inner_steps)
