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


def _samples(monkeypatch, busy_share: float, own_cpu_s: float = 0.0, cpus: int = 2):
    """Fake /proc/stat readings 1 s apart on `cpus` CPUs, busy_share of them busy (ours included)."""
    seq = iter([_runtime.CpuSample(0.0, 0.0, 0.0, 0.0),
                _runtime.CpuSample(1.0, 100.0 * cpus * busy_share, 100.0 * cpus, own_cpu_s)])
    monkeypatch.setattr(_runtime, "cpu_sample", lambda: next(seq))
    monkeypatch.setattr(_runtime, "available_cpus", lambda: cpus)
    monkeypatch.setattr(_runtime.time, "monotonic", lambda: 1.0)  # the window is over: no sleep


def test_default_threads_leave_out_the_cpus_other_processes_use(monkeypatch):
    monkeypatch.delenv("MSCN_THREADS", raising=False)
    _samples(monkeypatch, busy_share=0.5)  # one of two CPUs busy with another job
    assert _runtime.default_threads() == 1
    _samples(monkeypatch, busy_share=0.55, own_cpu_s=1.0)  # our own import is not another job
    assert _runtime.idle_cpus() == 2
    _samples(monkeypatch, busy_share=0.05)  # an idle machine: every CPU
    assert _runtime.idle_cpus() == 2
    _samples(monkeypatch, busy_share=1.0, cpus=4)  # all taken: still one thread
    assert _runtime.idle_cpus() == 1
    monkeypatch.setenv("MSCN_THREADS", "3")
    assert _runtime.default_threads() == 3


def test_cpu_sample_reads_proc_stat_where_there_is_one():
    s = _runtime.cpu_sample()
    if sys.platform.startswith("linux"):
        assert s is not None and s.total >= s.busy >= 0
