"""Fuzzing mscncodec.decode with real streams mutated, truncated and spliced, with and without a recomputed
CRC (tests/fuzzing.py): every case decodes or raises an MscnError, within 5 s and 500 MB.

The time and memory bounds are robustness bounds (a crafted stream must not buy minutes or gigabytes of
work), far above what any case needs; they are not performance targets. The default run is short and
derandomized; `pytest -m slow tests/test_fuzz.py` runs 5000 cases.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzing


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    s = fuzzing.make_seeds()
    return [s["siren"], s["grid2"], s["mesh"], s["sphere"]]


def test_the_seeds_decode_within_the_bounds(seeds):
    for data in seeds:
        o = fuzzing.run_case(data)
        assert o.result == "decoded"
        fuzzing.check(o, "seed")


def _case(seeds, data) -> None:
    stream, what = fuzzing.mutate(seeds, fuzzing.HypothesisChooser(data))
    fuzzing.check(fuzzing.run_case(stream), what)


@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_decode(seeds, data):
    _case(seeds, data)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_decode_long(seeds, data):
    _case(seeds, data)


def test_mutations_cover_every_operation_and_reach_the_decoders(seeds):
    """The fuzzer is not a no-op: every operation occurs, and many cases pass the container (CRC and all)."""
    chooser = fuzzing.RandomChooser(1)
    ops, results = set(), {}
    for _ in range(200):
        stream, what = fuzzing.mutate(seeds, chooser)
        ops.add(what.split()[0])
        if what.endswith("CRC recomputed"):
            r = fuzzing.run_case(stream).result
            results[r] = results.get(r, 0) + 1
    assert ops == {"flip", "overwrite", "cut", "splice", "insert", "field"}
    assert results.get("decoded", 0) > 0, results  # some crafted streams decode (to something)
    assert set(results) - {"decoded"}, results  # and others are refused past the CRC
