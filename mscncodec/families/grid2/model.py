"""The grid2 family's model: the meta-learned decoder theta0 and the encoder-side analysis network."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mscncodec.errors import MscnError
from mscncodec.families.grid2.config import Grid2Config, init_params
from mscncodec.modelfile import digest, flatten, latent_variant, save, unflatten

GRID2_VARIANTS = ("none", "dense", "gated", "scratch")  # grid2: shared decoder / + a dense per-file update /
# + an L0-gated one (retired: old streams still decode, as +dense) / generic start


@dataclass
class Grid2Model:
    """A grid2 initialisation (see network.py): the meta-learned decoder theta0 (upsampling, synthesis,
    ARM) every file starts from, and the encoder-side analysis network that predicts the latents.

    sparsity: "none" sends no change to theta0; "dense" sends a quantised dense update of it;
    "scratch" is the ablation with a generic seeded decoder and zero latents, which must then send
    its whole decoder (as an update of that generic init)."""

    name: str
    cfg: Grid2Config
    theta: dict[str, torch.Tensor]
    analysis: dict[str, torch.Tensor]
    sparsity: str = "none"
    description: str = ""
    meta: dict = field(default_factory=dict)

    arch = "grid2"
    modality = "image"
    gated = False  # the shared update coder: no gate priors, the mask is coded with a sent offset

    def __post_init__(self) -> None:
        if self.sparsity not in GRID2_VARIANTS:
            raise MscnError(f"unknown grid2 variant {self.sparsity!r} ({', '.join(GRID2_VARIANTS)})")

    @property
    def patch(self) -> int:  # the header's alignment field
        return self.cfg.align

    @property
    def sends_update(self) -> bool:
        return self.sparsity != "none"

    patch_field = "alignment"  # what the image header's patch field means for this family

    def routable(self, height: int, width: int, effort: str | None) -> bool:
        """Whether routing may pick this model for an image of this size: a decoder-update variant only where
        the update pays and the frame is refined whole (the encoder's routed_update_fits)."""
        if not self.sends_update:
            return True
        from mscncodec.families.grid2.encoder import routed_update_fits

        return routed_update_fits(self.cfg, height, width, effort)

    def growth_file(self):
        """NAME.growth.json: the rate-growth calibration the encoder aims lambda with (rate_control.growth_file)."""
        from mscncodec.families.grid2.rate_control import growth_file

        return growth_file(self)

    def summary(self) -> str:
        c = self.cfg
        return f"grid2 L{c.levels} syn{'-'.join(map(str, c.hidden))} arm{c.arm_hidden} {c.macs_per_pixel():.0f} MAC/px"

    def variant(self, sparsity: str) -> "Grid2Model":
        return latent_variant(self, sparsity, lambda name: fresh_grid2_model(self.cfg, name=name, seed=0))

    def tensors(self) -> dict[str, torch.Tensor]:
        return flatten(self, ("theta", "analysis"))

    @property
    def model_id(self) -> bytes:
        """Hash of the decoder side only: a retrained analysis network still decodes the same streams."""
        dec = {k: v for k, v in self.tensors().items() if not k.startswith("analysis.")}
        return digest(self.cfg.to_dict(), ("grid2", self.sparsity), dec)

    def state(self) -> dict:
        return {"arch": "grid2", "name": self.name, "cfg": self.cfg.to_dict(),
                "tensors": {k: v.detach().cpu().clone() for k, v in self.tensors().items()},
                "sparsity": self.sparsity, "description": self.description, "meta": self.meta}

    @classmethod
    def from_state(cls, st: dict) -> "Grid2Model":
        groups = unflatten(st["tensors"], ("theta", "analysis"))
        return cls(name=st["name"], cfg=Grid2Config.from_dict(st["cfg"]), sparsity=st.get("sparsity", "none"),
                   description=st.get("description", ""), meta=st.get("meta", {}), **groups)

    save = save


def fresh_grid2_model(cfg: Grid2Config, *, name: str, seed: int = 0) -> Grid2Model:
    p = init_params(cfg, seed)
    theta = {k: v for k, v in p.items() if not k.startswith("ana.")}
    ana = {k: v for k, v in p.items() if k.startswith("ana.")}
    return Grid2Model(name, cfg, theta, ana)
