"""Fuzzing mscncodec.decode with real streams of every modality (siren and grid2 images, SIREN and grid3
meshes, a field, a field series, an occupancy grid) mutated, truncated and spliced, with and without a
recomputed CRC (tests/fuzzing.py), decoded with the API's default bounds: every case decodes or raises an
MscnError, within 5 s of CPU and 500 MB.

The time and memory bounds are robustness bounds (a crafted stream must not buy minutes or gigabytes of
work), far above what almost every case needs; they are not performance targets. The default run is short
and derandomized; `pytest -m slow tests/test_fuzz.py` runs 5000 cases, `scripts/fuzz.py` millions.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzing


@pytest.fixture(scope="module")
def named_seeds() -> dict[str, bytes]:
    return fuzzing.make_seeds()


@pytest.fixture(scope="module")
def seeds(named_seeds) -> list[bytes]:
    return [named_seeds[k] for k in fuzzing.SEED_NAMES]


def test_the_seeds_cover_every_modality_and_decode_within_the_bounds(named_seeds):
    from mscncodec.container import bitstream

    assert tuple(named_seeds) == fuzzing.SEED_NAMES
    assert {bitstream.MODALITIES[d[5]] for d in named_seeds.values()} == set(bitstream.MODALITIES.values())
    for name, data in named_seeds.items():
        o = fuzzing.run_case(data)
        assert o.result == "decoded", name
        fuzzing.check(o, f"seed {name}")


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
    ops, results, reached = set(), {}, set()
    for _ in range(300):
        index, stream, what = fuzzing.mutate_from(seeds, chooser)
        ops.add(what.split()[0])
        if what.endswith("CRC recomputed"):
            r = fuzzing.run_case(stream, trace=False).result
            results[r] = results.get(r, 0) + 1
            if r == "decoded":
                reached.add(fuzzing.SEED_NAMES[index])
    assert ops == {"flip", "overwrite", "cut", "splice", "insert", "field"}
    assert results.get("decoded", 0) > 0, results  # some crafted streams decode (to something)
    assert set(results) - {"decoded"}, results  # and others are refused past the CRC
    assert len(reached) >= 4, reached  # crafted streams of several modalities get through to their decoders
