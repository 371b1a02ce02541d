"""The SIREN family's model: theta0 (the shared SIREN initialisation), the meta-learned initial gate
logits and per-parameter inner-loop learning rates (Meta-SGD), and the config it was trained with.
The ``random-*`` models are provisional starts generated in code (plain SIREN init, no meta-learning):
the COIN-style "from scratch" baseline."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from mscncodec.coding.sparsity import closed_threshold
from mscncodec.errors import MscnError
from mscncodec.families.siren.network import SirenConfig, init_params
from mscncodec.modelfile import base_name, digest, flatten, save, unflatten

SPARSITY = ("gates", "magnitude", "dense")


@dataclass
class Model:
    """Everything both ends need, beside the bitstream, to rebuild a signal."""

    name: str
    cfg: SirenConfig
    theta: dict[str, torch.Tensor]
    log_alpha: dict[str, torch.Tensor]  # initial gate logits, one per update entry
    lr_delta: dict[str, torch.Tensor]  # Meta-SGD inner learning rates for delta
    lr_alpha: dict[str, torch.Tensor]  # ... and for the gate logits
    patch: int = 32
    inner_steps: int = 3
    lam: float = 0.0  # L0 weight the model was meta-trained with
    gated: bool = True  # use the hard-concrete gates (False: magnitude masks or dense)
    sparsity: str = ""  # "gates" | "magnitude" | "dense"; derived from `gated` when empty
    colorspace: str = "rgb"
    description: str = ""
    meta: dict = field(default_factory=dict)
    modality: str = "image"  # what the SIREN's groups are: image patches, or one mesh's signed distance function

    def __post_init__(self) -> None:
        self.sparsity = self.sparsity or ("gates" if self.gated else "magnitude")
        if self.sparsity not in SPARSITY:
            raise MscnError(f"unknown sparsity {self.sparsity!r}")
        self.gated = self.sparsity == "gates"

    def variant(self, sparsity: str) -> "Model":
        """The same initialisation encoded another way (ablations): magnitude masks or a dense update."""
        if sparsity == self.sparsity:
            return self
        base = base_name(self.name)
        return replace(self, name=f"{base}+{sparsity}", sparsity=sparsity, gated=sparsity == "gates")

    arch = "siren"

    patch_field = "patch"  # what the image header's patch field means for this family

    def routable(self, height: int, width: int, effort: str | None) -> bool:
        """Whether routing may pick this model for an image of this size (any size)."""
        return True

    def summary(self) -> str:
        kind = "siren" if self.modality == "image" else f"siren-{self.modality}"
        return f"{kind} {self.cfg.mode:<5} w{self.cfg.width} d{self.cfg.depth}"

    def tensors(self) -> dict[str, torch.Tensor]:
        return flatten(self, ("theta", "log_alpha", "lr_delta", "lr_alpha"))

    @property
    def model_id(self) -> bytes:
        """8 bytes of SHA-256 over the config and every tensor's bytes."""
        extra = (self.patch, self.colorspace, self.sparsity) + ((self.modality,) if self.modality != "image" else ())
        return digest(self.cfg.to_dict(), extra, self.tensors())

    def state(self) -> dict:
        return {
            "name": self.name,
            "cfg": self.cfg.to_dict(),
            "tensors": {k: v.detach().clone() for k, v in self.tensors().items()},
            "patch": self.patch,
            "inner_steps": self.inner_steps,
            "lam": self.lam,
            "gated": self.gated,
            "sparsity": self.sparsity,
            "colorspace": self.colorspace,
            "description": self.description,
            "meta": self.meta,
            "modality": self.modality,
        }

    @classmethod
    def from_state(cls, st: dict) -> "Model":
        groups = unflatten(st["tensors"], ("theta", "log_alpha", "lr_delta", "lr_alpha"))
        return cls(
            name=st["name"],
            cfg=SirenConfig(**st["cfg"]),
            patch=st["patch"],
            inner_steps=st["inner_steps"],
            lam=st["lam"],
            gated=st["gated"],
            sparsity=st.get("sparsity", ""),
            colorspace=st.get("colorspace", "rgb"),
            description=st.get("description", ""),
            meta=st.get("meta", {}),
            modality=st.get("modality", "image"),
            **groups,
        )

    save = save



def fresh_model(
    cfg: SirenConfig,
    *,
    name: str,
    patch: int = 32,
    seed: int = 0,
    gated: bool = True,
    inner_steps: int = 3,
    lam: float = 0.0,
    lr_init: float = 1e-2,
    log_alpha_init: float = 2.0,
    modality: str = "image",
) -> Model:
    """A model before meta-learning: SIREN init, uniform gates and learning rates."""
    theta = init_params(cfg, seed)
    shapes = cfg.update_shapes()
    la = {k: torch.full(s, log_alpha_init) for k, s in shapes.items()}
    lr_d = {k: torch.full(s, lr_init) for k, s in shapes.items()}
    lr_a = {k: torch.full(s, lr_init) for k, s in shapes.items()}
    return Model(name, cfg, theta, la, lr_d, lr_a, patch=patch, gated=gated, inner_steps=inner_steps, lam=lam,
                 modality=modality)


def _provisional(width: int, depth: int) -> Model:
    cfg = SirenConfig(width=width, depth=depth, mode="full")
    m = fresh_model(cfg, name=f"random-w{width}d{depth}", gated=False, log_alpha_init=10.0 + closed_threshold())
    m.description = "provisional: plain SIREN init, no meta-learning (COIN-style from-scratch baseline)"
    return m


def _provisional_r3(width: int, depth: int, modality: str, prefix: str, what: str) -> Model:
    """A plain SIREN init R^3 -> R (a mesh's signed distance, a field on the unit sphere)."""
    cfg = SirenConfig(in_dim=3, out_dim=1, width=width, depth=depth, mode="full")
    m = fresh_model(cfg, name=f"{prefix}-w{width}d{depth}", patch=0, gated=False,
                    log_alpha_init=10.0 + closed_threshold(), modality=modality)
    m.description = f"provisional: plain SIREN init for {what}, no meta-learning (from-scratch baseline)"
    return m


PROVISIONAL = {"random-w32d5": lambda: _provisional(32, 5),
               "random-sdf-w32d5": lambda: _provisional_r3(32, 5, "mesh", "random-sdf", "signed distances"),
               "random-sphere-w32d5": lambda: _provisional_r3(32, 5, "sphere", "random-sphere", "fields on the sphere")}
