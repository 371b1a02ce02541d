"""Encodes pinned byte for byte (tests/fixtures/golden/): a restructure or refactor must not change a
single byte of what the encoders write for images (SIREN, grid2, grid2 with its decoder update, the
routed default, quality mode), meshes and fields; the streams also decode as they did."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import mscncodec
from mscncodec import models

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
_spec = importlib.util.spec_from_file_location("golden_cases", GOLDEN / "cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


@pytest.fixture()
def shipped(monkeypatch):
    monkeypatch.delenv("MSCN_MODELS", raising=False)  # the weights shipped in the package
    monkeypatch.delenv("MSCN_DEFAULT_MODEL", raising=False)
    monkeypatch.setattr(models, "_cache", {})


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_encode_matches_the_golden_stream(shipped, name):
    import torch

    threads = torch.get_num_threads()
    try:
        data = cases.encode(name)
    finally:
        torch.set_num_threads(threads)
    expected = (GOLDEN / f"{name}.mscn").read_bytes()
    assert data == expected, f"{name}: {len(data)} bytes, golden {len(expected)} (first difference at byte " \
                             f"{next((i for i, (a, b) in enumerate(zip(data, expected)) if a != b), min(len(data), len(expected)))})"


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_golden_streams_decode(shipped, name):
    mscncodec.decode((GOLDEN / f"{name}.mscn").read_bytes())
