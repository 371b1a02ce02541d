"""The shape of the house: families never import each other, module-level imports form no cycle, and
every modality in the registry has a container code and importable functions."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from mscncodec.container import bitstream
from mscncodec.modalities import REGISTRY

PKG = Path(__file__).resolve().parents[1] / "mscncodec"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(path: Path, name: str, top_level_only: bool) -> set[str]:
    """Absolute names of the mscncodec modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.startswith("mscncodec"):
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mscncodec"))
    return found


MODULES = _modules()


def test_no_family_imports_another_family():
    for name, path in MODULES.items():
        if not name.startswith("mscncodec.families."):
            continue
        family = name.split(".")[2]
        for imp in _imports(path, name, top_level_only=False):
            if imp.startswith("mscncodec.families.") and len(imp.split(".")) > 2:
                assert imp.split(".")[2] == family, f"{name} imports {imp}"


def test_module_level_imports_have_no_cycle():
    graph = {n: {i for i in _imports(p, n, top_level_only=True) if i in MODULES and i != n} for n, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for m in graph[n]:
            if state.get(m) == 1 and not n.startswith(m + "."):  # a package __init__ importing from its child is fine
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(m):] + [n, m]) if m in stack else f"{n} -> {m}")
            if m not in state:
                visit(m, stack + [n])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_modality_is_complete(name):
    m = REGISTRY[name]
    assert bitstream.MODALITIES[m.code] == name
    assert m.code in bitstream.BODIES  # its header body is declared
    for ref in (m.encode_fn, m.decode_fn, m.write_fn, m.describe_fn):
        module, fn = ref.split(":")
        assert callable(getattr(importlib.import_module(module), fn)), ref


def _family_names() -> set[str]:
    from mscncodec import families

    return set(families.REGISTRY)


def _compared_strings(tree: ast.AST) -> set[str]:
    """String constants that take part in a comparison (==, !=, in, not in), tuples and sets of them included."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                elts = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                found.update(e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return found


def test_no_module_outside_families_compares_family_names():
    """Code outside families/ asks the registry (families.of(model), by_name, names) instead of testing names."""
    names = _family_names()
    for name, path in MODULES.items():
        if name.startswith("mscncodec.families"):
            continue
        hits = _compared_strings(ast.parse(path.read_text())) & names
        assert not hits, f"{name} compares family names {sorted(hits)}: ask mscncodec.families instead"


@pytest.mark.parametrize("prefix, forbidden", [
    ("mscncodec.coding", ("mscncodec.models", "mscncodec.families", "mscncodec.modalities")),
    ("mscncodec.container", ("mscncodec.models", "mscncodec.families", "mscncodec.modalities")),
    ("mscncodec.families.", ("mscncodec.modalities", "mscncodec.models", "mscncodec.api", "mscncodec.cli",
                             "mscncodec.bench")),
])
def test_layering(prefix, forbidden):
    """coding/ and the container import no model, family or modality; a family imports no modality and not
    the zoo (the layers: container, coding <- families <- models (zoo), modalities <- api <- cli, bench)."""
    for name, path in MODULES.items():
        if not name.startswith(prefix):
            continue
        for imp in _imports(path, name, top_level_only=False):
            assert not any(imp == f or imp.startswith(f + ".") for f in forbidden), f"{name} imports {imp}"


def test_every_registered_family_is_complete():
    from mscncodec import families

    for f in families.REGISTRY.values():
        assert bitstream.ARCHS[f.code] == f.name
        assert f.model_class().arch == f.name
        assert f.decoders, f"{f.name} decodes nothing"
        for ref in (*f.encoders.values(), *f.decoders.values(), *f.describers.values(), *f.trainers.values()):
            module, fn = ref.split(":")
            assert callable(getattr(importlib.import_module(module), fn)), ref
