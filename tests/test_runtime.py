"""Process-wide runtime settings."""

from __future__ import annotations

import sys

import torch

from mscncodec import _runtime


def test_set_threads_reads_mscn_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("MSCN_THREADS", "1")
        _runtime.set_threads()
        assert torch.get_num_threads() == 1
        _runtime.set_threads(2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_tune_allocator_is_idempotent():
    first = _runtime.tune_allocator()
    assert _runtime.tune_allocator() == first
    if sys.platform.startswith("linux"):
        assert first is True
