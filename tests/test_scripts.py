"""The reusable tools in scripts/ keep working as the package changes: every name they import from
mscncodec (at any depth of the file) exists. Experiments under experiments/ are records of a commit
and are not checked."""

from __future__ import annotations

import ast
import importlib

import pytest
from conftest import REPO

SCRIPTS = sorted((REPO / "scripts").glob("*.py"))


def _mscncodec_imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mscncodec"):
            for a in node.names:
                yield node.module, a.name
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mscncodec"):
                    yield a.name, None


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_imports_resolve(path):
    for module, name in _mscncodec_imports(path):
        mod = importlib.import_module(module)
        if name is not None and not hasattr(mod, name):
            importlib.import_module(f"{module}.{name}")  # a submodule, else ModuleNotFoundError names it
