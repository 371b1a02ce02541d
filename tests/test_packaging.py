"""The shipped weights are package data: a plain `pip install .` (no -e) carries every model the zoo
lists, its card, the routing and the rate calibrations, and none of the training runs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import PurePosixPath

import pytest
from conftest import REPO

WEIGHTS = REPO / "mscncodec" / "weights"


def _package_globs() -> list[str]:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [f"mscncodec/{g}" for g in cfg["tool"]["setuptools"]["package-data"]["mscncodec"]]


def test_package_data_covers_every_shipped_weight_file():
    globs = _package_globs()
    shipped = [p for p in WEIGHTS.iterdir() if p.is_file()]
    assert any(p.suffix == ".pt" for p in shipped)
    for p in shipped:
        rel = p.relative_to(REPO).as_posix()
        assert any(PurePosixPath(rel).match(g) for g in globs), f"{rel} is not package data"
    runs = [p for p in WEIGHTS.rglob("*") if ".run/" in p.relative_to(REPO).as_posix() and p.is_file()]
    for p in runs:  # training runs (checkpoints, logs) stay in the repository
        assert not any(PurePosixPath(p.relative_to(REPO).as_posix()).match(g) for g in globs), p


def test_the_zoo_finds_the_weights_through_the_package(monkeypatch):
    from mscncodec import modelfile

    monkeypatch.delenv("MSCN_MODELS", raising=False)
    assert modelfile.models_dir().resolve() == WEIGHTS.resolve()


@pytest.mark.slow
def test_the_wheel_holds_the_weights(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO),
                    "-w", str(tmp_path)], check=True)
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    for p in WEIGHTS.glob("*.pt"):
        assert f"mscncodec/weights/{p.name}" in names
    assert "mscncodec/weights/routing.json" in names and not any(".run/" in n for n in names)
