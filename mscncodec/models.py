"""The model zoo: the shipped initialisations (``mscncodec/weights/NAME.pt`` + the card ``NAME.md``),
their ablation variants ("NAME+KIND"), the provisional starts made in code, and the routing that picks
one for a target (``weights/routing.json``). Each model's class lives in its family
(``families.REGISTRY``); this module only finds, loads and routes them.

A model's id is a hash of its decoder-side bytes; every stream records it and a decoder holding a
different model refuses the stream instead of decoding garbage.
"""

from __future__ import annotations

import json
import os

from mscncodec import families
from mscncodec.errors import MscnError
from mscncodec.modelfile import base_name, models_dir

__all__ = ["base_name", "load_model", "list_models", "find_by_id", "default_model", "routing",
           "default_arch", "models_dir", "stream_model", "modality_model", "require_modality", "from_state"]


from_state = families.from_state


def variant_kinds(m) -> tuple[str, ...]:
    """The ablation variants a model of this family may be asked for."""
    return families.of(m).variants


def list_models() -> list:
    """Shipped (trained) models first, sorted by name, then the provisional ones."""
    found = [load_model(p.stem) for p in sorted(models_dir().glob("*.pt"))]
    return found + [make() for make in families.provisional().values()]


_cache: dict[str, object] = {}


def load_model(name: str):
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
    made_in_code = families.provisional()
    if name in made_in_code:
        m = made_in_code[name]()
    else:
        path = models_dir() / f"{name}.pt"
        if not path.is_file():
            known = ", ".join(sorted({p.stem for p in models_dir().glob('*.pt')} | set(made_in_code)))
            raise MscnError(f"unknown model {name!r} (known: {known})")
        import torch  # here, not at the top: the torch-free decode uses this module too (find_arrays_by_id)

        m = from_state(torch.load(path, map_location="cpu", weights_only=True))
    _cache[name] = m
    return m


def find_by_id(model_id: bytes):
    """The model (or ablation variant of one, old streams' included) a stream was made with."""
    for m in list_models():
        fam = families.of(m)
        kinds = fam.variants + fam.decode_variants
        for v in (m, *(m.variant(s) for s in kinds if s != m.sparsity)):
            if v.model_id == model_id:
                return v
    return None


_arrays_cache: dict[tuple[str, str], list] = {}


def array_models(family) -> list:
    """The shipped models of `family` as its torch-free twins (``Family.arrays``), weights read by ``ptload``
    from the same ``.pt`` files; [] for a family without one."""
    cls = family.arrays_class()
    if cls is None:
        return []
    key = (family.name, str(models_dir()))
    if key not in _arrays_cache:
        from mscncodec import ptload

        paths = sorted(models_dir().glob("*.pt"))
        ours = [p for p in paths if ptload.load(p, tensors=False).get("arch", "siren") == family.name]
        _arrays_cache[key] = [cls.from_state(ptload.load(p)) for p in ours]
    return _arrays_cache[key]


def find_arrays_by_id(model_id: bytes, family):
    """``find_by_id`` among `family`'s shipped models and their variants, as torch-free twins; None if none
    matches (the stream is then the torch decoder's to decode or refuse)."""
    for m in array_models(family):
        for v in (m, *(m.variant(s) for s in family.variants + family.decode_variants if s != m.sparsity)):
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


def default_arch() -> str:
    """The architecture used without --model/--arch: ``default_arch`` in weights/routing.json (the one
    that won the Kodak benchmark), else siren."""
    arch = _routing_file().get("default_arch", "siren")
    if arch not in families.names(encodes="image"):
        raise MscnError(f"{models_dir() / 'routing.json'} is malformed (unknown default_arch {arch!r})")
    return arch


ROUTES_AS = {"placebo": "max"}  # an effort whose rows routing.json leaves out takes these efforts' rows


def routing(arch: str | None = None, effort: str | None = None) -> list[tuple[float, str]]:
    """(upper bpp, model) pairs for one architecture from weights/routing.json, sorted; [] if absent.

    ``arch_routes[FAMILY]`` holds each family's routes (chosen on held-out *training* photos, never
    on a bench set; why each route: weights/routing.md). arch None: the default architecture. A row may name
    an ``effort``: where rows name this effort they are its routes (a long encode can afford what a short
    one cannot, e.g. a per-file decoder update), else those of the effort it routes as (``ROUTES_AS``: placebo
    as max), otherwise the rows that name none.
    """
    data = _routing_file()
    arch = arch or default_arch()
    try:
        rows = data.get("arch_routes", {}).get(arch, [])
        own = [r for r in rows if effort is not None and r.get("effort") == effort]
        if not own and effort in ROUTES_AS:  # e.g. placebo without rows of its own: max's
            own = [r for r in rows if r.get("effort") == ROUTES_AS[effort]]
        rows = own or [r for r in rows if "effort" not in r]
        return sorted((float(r["max_bpp"]), str(r["model"])) for r in rows)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise MscnError(f"{models_dir() / 'routing.json'} is malformed ({type(e).__name__})") from None


def default_model(bpp: float | None = None, arch: str | None = None, effort: str | None = None):
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
    """The modality a model codes."""
    return m.modality


def _plural(modality: str) -> str:
    from mscncodec.modalities import REGISTRY

    return REGISTRY[modality].plural if modality in REGISTRY else modality + "s"


def require_modality(m, modality: str):
    """m, if it codes `modality`; else the one-line error a user gets for --model NAME."""
    if model_modality(m) != modality:
        have, want = (_plural(x) for x in (model_modality(m), modality))
        raise MscnError(f"model {m.name} codes {have}, not {want} (see `mscn models`)")
    return m


def stream_model(header: dict, modality: str):
    """The model a stream names by id, checked against the stream's modality and architecture."""
    from mscncodec.errors import BitstreamError

    m = find_by_id(header["model_id"])
    if m is None:
        raise BitstreamError(f"stream was made with model {header['model_id'].hex()}, which this decoder does not have "
                             "(see `mscn models`)")
    family = families.of(m)
    if model_modality(m) != modality:
        raise BitstreamError(f"corrupted .mscn file (model {m.name} codes {_plural(model_modality(m))}, "
                             f"the stream holds a {modality})")
    if family.code != header["arch"]:
        raise BitstreamError(f"corrupted .mscn file (architecture {families.by_code(header['arch']).name} does not "
                             f"match model {m.name})")
    return m


def modality_model(model, modality: str, target_bytes: float | None = None):
    """--model (a name or a Model), else the shipped model of that modality routed for this size
    (weights/routing.json); a model of another modality is a one-line error."""
    m = model if model is not None and not isinstance(model, str) else (load_model(model) if model else default_modality_model(modality, target_bytes))
    return require_modality(m, modality)


def default_modality_model(modality: str, target_bytes: float | None = None):
    """The shipped model for a non-image modality: ``modality_routes`` in weights/routing.json (a name, or
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
    from mscncodec.modalities import REGISTRY

    if modality in REGISTRY and REGISTRY[modality].provisional_model:
        return load_model(REGISTRY[modality].provisional_model)
    raise MscnError(f"no {modality} model in {models_dir()} (see `mscn models`)")
