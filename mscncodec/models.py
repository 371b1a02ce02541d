"""Shipped initialisations: what the encoder starts from and the decoder must match.

A model is theta0 (the shared SIREN initialisation), the meta-learned initial gate
logits and per-parameter inner-loop learning rates (Meta-SGD), and the config it was
trained with. Its id is a hash of all those bytes; every stream records it and a
decoder holding a different model refuses the stream instead of decoding garbage.

Models live as ``models/NAME.pt`` + ``models/NAME.md`` (the model card). The
``random-*`` models are provisional starts generated in code (plain SIREN init,
no meta-learning): they are the COIN-style "from scratch" baseline.
"""

from __future__ import annotations

import hashlib
import json
import io
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from mscncodec.errors import MscnError
from mscncodec.families.grid import network as grid
from mscncodec.families.grid2 import network as grid2
from mscncodec.families.siren.network import SirenConfig, init_params
from mscncodec.coding.sparsity import closed_threshold


SPARSITY = ("gates", "magnitude", "dense")
GRID_VARIANTS = ("gates", "dense", "scratch")  # scratch: generic init, no analysis (ablation of the meta-learned start)
GRID2_VARIANTS = ("none", "dense", "gated", "scratch")  # grid2: shared decoder / + a dense per-file update /
# + an L0-gated sparse one (MSCN's, with no meta-learned gate prior yet) / generic start


def models_dir() -> Path:
    env = os.environ.get("MSCN_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


def _flatten(model, groups: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """{"group.name": tensor} over the model's tensor groups (what is saved and hashed)."""
    return {f"{g}.{k}": v for g in groups for k, v in getattr(model, g).items()}


def _digest(cfg: dict, extra: tuple, tensors: dict[str, torch.Tensor]) -> bytes:
    """8 bytes of SHA-256 over a config, a few settings and tensors' names and float32 bytes."""
    h = hashlib.sha256(repr(sorted(cfg.items())).encode())
    h.update(repr(extra).encode())
    for k, v in sorted(tensors.items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().to(torch.float32).numpy().tobytes())
    return h.digest()[:8]


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

    def summary(self) -> str:
        kind = "siren" if self.modality == "image" else f"siren-{self.modality}"
        return f"{kind} {self.cfg.mode:<5} w{self.cfg.width} d{self.cfg.depth}"

    def tensors(self) -> dict[str, torch.Tensor]:
        return _flatten(self, ("theta", "log_alpha", "lr_delta", "lr_alpha"))

    @property
    def model_id(self) -> bytes:
        """8 bytes of SHA-256 over the config and every tensor's bytes."""
        extra = (self.patch, self.colorspace, self.sparsity) + ((self.modality,) if self.modality != "image" else ())
        return _digest(self.cfg.to_dict(), extra, self.tensors())

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
        groups: dict[str, dict[str, torch.Tensor]] = {g: {} for g in ("theta", "log_alpha", "lr_delta", "lr_alpha")}
        for k, v in st["tensors"].items():
            g, name = k.split(".", 1)
            groups[g][name] = v.float()
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

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)


@dataclass
class GridModel:
    """A latent-grid initialisation (see grid.py): decoder-side theta0 with gate priors and
    Meta-SGD rates for its per-file update, plus the encoder-side analysis network."""

    name: str
    cfg: grid.GridConfig
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

    def __post_init__(self) -> None:
        if self.sparsity not in GRID_VARIANTS:
            raise MscnError(f"unknown grid variant {self.sparsity!r} ({', '.join(GRID_VARIANTS)})")

    @property
    def gated(self) -> bool:
        return self.sparsity == "gates"

    @property
    def patch(self) -> int:  # the header's alignment field
        return self.cfg.align

    def summary(self) -> str:
        c = self.cfg
        return f"grid  L{c.levels} syn{'-'.join(map(str, c.hidden))} {c.macs_per_pixel():.0f} MAC/px"

    def variant(self, sparsity: str) -> "GridModel":
        if sparsity == self.sparsity:
            return self
        base = base_name(self.name)
        if sparsity == "scratch":  # same architecture, generic seeded init, latents from zero, everything sent
            generic = fresh_grid_model(self.cfg, name=f"{base}+scratch", seed=0, inner_steps=0)
            return replace(generic, sparsity="scratch", analysis={},
                           description=f"generic start of {base}'s architecture (no meta-learning; ablation)")
        if self.sparsity == "scratch":
            raise MscnError("the scratch variant has no other variants")
        return replace(self, name=f"{base}+{sparsity}", sparsity=sparsity)

    def tensors(self) -> dict[str, torch.Tensor]:
        return _flatten(self, ("theta", "analysis", "log_alpha", "lr_delta", "lr_alpha"))

    @property
    def model_id(self) -> bytes:
        """Like Model's, without the analysis network: it is encoder-only, so a retrained one
        still decodes the same streams."""
        dec = {k: v for k, v in self.tensors().items() if not k.startswith("analysis.")}
        return _digest(self.cfg.to_dict(), ("grid", self.sparsity), dec)

    def state(self) -> dict:
        return {"arch": "grid", "name": self.name, "cfg": self.cfg.to_dict(),
                "tensors": {k: v.detach().clone() for k, v in self.tensors().items()},
                "inner_steps": self.inner_steps, "sparsity": self.sparsity,
                "description": self.description, "meta": self.meta}

    @classmethod
    def from_state(cls, st: dict) -> "GridModel":
        groups: dict[str, dict[str, torch.Tensor]] = {g: {} for g in ("theta", "analysis", "log_alpha", "lr_delta", "lr_alpha")}
        for k, v in st["tensors"].items():
            g, name = k.split(".", 1)
            groups[g][name] = v.float()
        return cls(name=st["name"], cfg=grid.GridConfig.from_dict(st["cfg"]), inner_steps=st["inner_steps"],
                   sparsity=st.get("sparsity", "gates"), description=st.get("description", ""),
                   meta=st.get("meta", {}), **groups)

    save = Model.save


def fresh_grid_model(cfg: grid.GridConfig, *, name: str, seed: int = 0, inner_steps: int = 1,
                     lr_init: float = 1e-3, log_alpha_init: float = -1.0) -> GridModel:
    """A grid model before meta-learning: seeded default init, uniform gates and learning rates."""
    p = grid.init_params(cfg, seed)
    theta = {k: v for k, v in p.items() if not k.startswith("ana.")}
    ana = {k: v for k, v in p.items() if k.startswith("ana.")}
    shapes = cfg.update_shapes()
    return GridModel(name, cfg, theta, ana, {k: torch.full(s, log_alpha_init) for k, s in shapes.items()},
                     {k: torch.full(s, lr_init) for k, s in shapes.items()},
                     {k: torch.full(s, 1.0) for k, s in shapes.items()}, inner_steps=inner_steps)


@dataclass
class Grid2Model:
    """A grid2 initialisation (see grid2.py): the meta-learned decoder theta0 (upsampling, synthesis,
    ARM) every file starts from, and the encoder-side analysis network that predicts the latents.

    sparsity: "none" sends no change to theta0; "dense" sends a quantised dense update of it;
    "scratch" is the ablation with a generic seeded decoder and zero latents, which must then send
    its whole decoder (as an update of that generic init)."""

    name: str
    cfg: grid2.Grid2Config
    theta: dict[str, torch.Tensor]
    analysis: dict[str, torch.Tensor]
    sparsity: str = "none"
    description: str = ""
    meta: dict = field(default_factory=dict)

    arch = "grid2"
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

    def summary(self) -> str:
        c = self.cfg
        return f"grid2 L{c.levels} syn{'-'.join(map(str, c.hidden))} arm{c.arm_hidden} {c.macs_per_pixel():.0f} MAC/px"

    def variant(self, sparsity: str) -> "Grid2Model":
        if sparsity == self.sparsity:
            return self
        base = base_name(self.name)
        if sparsity == "scratch":
            generic = fresh_grid2_model(self.cfg, name=f"{base}+scratch", seed=0)
            return replace(generic, sparsity="scratch", analysis={},
                           description=f"generic start of {base}'s architecture (no meta-learning; ablation)")
        if self.sparsity == "scratch":
            raise MscnError("the scratch variant has no other variants")
        return replace(self, name=f"{base}+{sparsity}", sparsity=sparsity)

    def tensors(self) -> dict[str, torch.Tensor]:
        return _flatten(self, ("theta", "analysis"))

    @property
    def model_id(self) -> bytes:
        """Hash of the decoder side only: a retrained analysis network still decodes the same streams."""
        dec = {k: v for k, v in self.tensors().items() if not k.startswith("analysis.")}
        return _digest(self.cfg.to_dict(), ("grid2", self.sparsity), dec)

    def state(self) -> dict:
        return {"arch": "grid2", "name": self.name, "cfg": self.cfg.to_dict(),
                "tensors": {k: v.detach().cpu().clone() for k, v in self.tensors().items()},
                "sparsity": self.sparsity, "description": self.description, "meta": self.meta}

    @classmethod
    def from_state(cls, st: dict) -> "Grid2Model":
        groups: dict[str, dict[str, torch.Tensor]] = {"theta": {}, "analysis": {}}
        for k, v in st["tensors"].items():
            g, name = k.split(".", 1)
            groups[g][name] = v.float()
        return cls(name=st["name"], cfg=grid2.Grid2Config.from_dict(st["cfg"]), sparsity=st.get("sparsity", "none"),
                   description=st.get("description", ""), meta=st.get("meta", {}), **groups)

    save = Model.save


def fresh_grid2_model(cfg: grid2.Grid2Config, *, name: str, seed: int = 0) -> Grid2Model:
    p = grid2.init_params(cfg, seed)
    theta = {k: v for k, v in p.items() if not k.startswith("ana.")}
    ana = {k: v for k, v in p.items() if k.startswith("ana.")}
    return Grid2Model(name, cfg, theta, ana)


def from_state(st: dict) -> "Model | GridModel | Grid2Model":
    arch = st.get("arch")
    if arch == "grid2":
        return Grid2Model.from_state(st)
    return GridModel.from_state(st) if arch == "grid" else Model.from_state(st)


def variant_kinds(m) -> tuple[str, ...]:
    """The ablation variants a model of this family has."""
    return {"grid": GRID_VARIANTS, "grid2": GRID2_VARIANTS}.get(m.arch, SPARSITY)


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
PROVISIONAL_FOR = {"image": "random-w32d5", "mesh": "random-sdf-w32d5+dense", "sphere": "random-sphere-w32d5+dense"}


def list_models() -> list[Model | GridModel]:
    """Shipped (trained) models first, sorted by name, then the provisional ones."""
    found = [load_model(p.stem) for p in sorted(models_dir().glob("*.pt"))]
    return found + [f() for f in PROVISIONAL.values()]


_cache: dict[str, Model] = {}


def load_model(name: str) -> Model:
    if name in _cache:
        return _cache[name]
    if "+" in name:
        base, sparsity = name.split("+", 1)
        parent = load_model(base)
        allowed = variant_kinds(parent)
        if sparsity not in allowed:
            raise MscnError(f"unknown model variant {sparsity!r} in {name!r} ({', '.join(allowed)})")
        m = parent.variant(sparsity)
        _cache[name] = m
        return m
    if name in PROVISIONAL:
        m = PROVISIONAL[name]()
    else:
        path = models_dir() / f"{name}.pt"
        if not path.is_file():
            known = ", ".join(sorted({p.stem for p in models_dir().glob('*.pt')} | set(PROVISIONAL)))
            raise MscnError(f"unknown model {name!r} (known: {known})")
        m = from_state(torch.load(path, map_location="cpu", weights_only=True))
    _cache[name] = m
    return m


def find_by_id(model_id: bytes) -> Model | None:
    """The model (or ablation variant of one) a stream was made with."""
    for m in list_models():
        kinds = variant_kinds(m)
        for v in (m, *(m.variant(s) for s in kinds if s != m.sparsity)):
            if v.model_id == model_id:
                return v
    return None


def _routing_file() -> dict:
    path = models_dir() / "routing.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise TypeError("not an object")
        return data
    except (ValueError, TypeError) as e:
        raise MscnError(f"{path} is malformed ({type(e).__name__})") from None


def base_name(name: str) -> str:
    """The shipped model an ablation variant is made from: "grid2-l7+dense" -> "grid2-l7"."""
    return name.split("+")[0]


def default_arch() -> str:
    """The architecture used without --model/--arch: ``default_arch`` in models/routing.json (the one
    that won the Kodak benchmark), else siren."""
    arch = _routing_file().get("default_arch", "siren")
    if arch not in ("siren", "grid", "grid2"):
        raise MscnError(f"{models_dir() / 'routing.json'} is malformed (unknown default_arch {arch!r})")
    return arch


def routing(arch: str | None = None, effort: str | None = None) -> list[tuple[float, str]]:
    """(upper bpp, model) pairs for one architecture from models/routing.json, sorted; [] if absent.

    ``routes`` holds the SIREN family's (written by benchmarks/calibrate.py from held-out
    *training* photos, never Kodak: per target rate, the model with the best measured
    PSNR); ``arch_routes`` the other families'. arch None: the default architecture. A row may name
    an ``effort``: where rows name this effort they are its routes (a long encode can afford what a short
    one cannot, e.g. a per-file decoder update), otherwise the rows that name none.
    """
    data = _routing_file()
    arch = arch or default_arch()
    try:
        rows = data.get("routes", []) if arch == "siren" else data.get("arch_routes", {}).get(arch, [])
        own = [r for r in rows if effort is not None and r.get("effort") == effort]
        rows = own or [r for r in rows if "effort" not in r]
        return sorted((float(r["max_bpp"]), str(r["model"])) for r in rows)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise MscnError(f"{models_dir() / 'routing.json'} is malformed ({type(e).__name__})") from None


def default_model(bpp: float | None = None, arch: str | None = None, effort: str | None = None
                  ) -> Model | GridModel:
    """MSCN_DEFAULT_MODEL, else the routed model of the (default) architecture for this rate and effort,
    else the first trained model of that architecture, else the first trained one."""
    name = os.environ.get("MSCN_DEFAULT_MODEL") if arch is None else None
    routes = routing(arch, effort) if not name else []
    if not name and routes:
        name = routes[-1][1]
        if bpp is not None:
            name = next((routed for max_bpp, routed in routes if bpp <= max_bpp), name)
    if not name:
        trained = [load_model(p.stem) for p in sorted(models_dir().glob("*.pt"))]
        trained = [m for m in trained if model_modality(m) == "image"]
        same = [m for m in trained if arch is None or m.arch == arch]
        if arch is not None and not same:
            raise MscnError(f"no trained {arch} model in {models_dir()} (see `mscn models`)")
        name = same[0].name if same else "random-w32d5"
    return load_model(name)


def model_modality(m) -> str:
    """The modality a model codes (the grid families are image-only)."""
    return getattr(m, "modality", "image")


_PLURAL = {"image": "images", "mesh": "meshes", "sphere": "fields"}


def require_modality(m, modality: str):
    """m, if it codes `modality`; else the one-line error a user gets for --model NAME."""
    if model_modality(m) != modality:
        have, want = (_PLURAL.get(x, x + "s") for x in (model_modality(m), modality))
        raise MscnError(f"model {m.name} codes {have}, not {want} (see `mscn models`)")
    return m


def stream_model(header: dict, modality: str):
    """The model a stream names by id, checked against the stream's modality and architecture."""
    from mscncodec.container import bitstream
    from mscncodec.errors import BitstreamError

    m = find_by_id(header["model_id"])
    if m is None:
        raise BitstreamError(f"stream was made with model {header['model_id'].hex()}, which this decoder does not have "
                             "(see `mscn models`)")
    arch = bitstream.ARCHS[header["arch"]]
    if model_modality(m) != modality:
        raise BitstreamError(f"corrupted .mscn file (model {m.name} codes {_PLURAL.get(model_modality(m))}, "
                             f"the stream holds a {modality})")
    if m.arch != arch:
        raise BitstreamError(f"corrupted .mscn file (architecture {arch} does not match model {m.name})")
    return m


def modality_model(model, modality: str, target_bytes: float | None = None):
    """--model (a name or a Model), else the shipped model of that modality routed for this size
    (models/routing.json); a model of another modality is a one-line error."""
    m = model if isinstance(model, Model) else (load_model(model) if model else default_modality_model(modality, target_bytes))
    return require_modality(m, modality)


def default_modality_model(modality: str, target_bytes: float | None = None):
    """The shipped model for a non-image modality: ``modality_routes`` in models/routing.json (a name, or
    [{"max_bytes": N, "model": NAME}, ...]: the first route whose max_bytes is at least the target; the
    last one without a target), else the first trained model of that modality, else a provisional one."""
    route = _routing_file().get("modality_routes", {}).get(modality)
    if isinstance(route, str):
        return load_model(route)
    if isinstance(route, list) and route:
        try:
            rows = sorted((float(r["max_bytes"]), str(r["model"])) for r in route)
        except (KeyError, TypeError, ValueError) as e:
            raise MscnError(f"{models_dir() / 'routing.json'} is malformed ({type(e).__name__})") from None
        if target_bytes is None:
            return load_model(rows[-1][1])
        return load_model(next((name for mb, name in rows if target_bytes <= mb), rows[-1][1]))
    trained = [load_model(p.stem) for p in sorted(models_dir().glob("*.pt"))]
    same = [m for m in trained if model_modality(m) == modality]
    if same:
        return same[0]
    if modality in PROVISIONAL_FOR:
        return load_model(PROVISIONAL_FOR[modality])
    raise MscnError(f"no {modality} model in {models_dir()} (see `mscn models`)")
