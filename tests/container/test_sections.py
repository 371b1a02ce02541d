"""Sections declared as data (container/sections.py): one declaration packs, unpacks with one-line
errors, and describes; the latent-grid families' GRID/GRD2 section keeps its two bytes."""

from __future__ import annotations

import pytest

from mscncodec.coding.latents import grid_section, lambda_value, latent_step
from mscncodec.container.bitstream import Field
from mscncodec.container.sections import Section
from mscncodec.errors import BitstreamError


def test_round_trip_and_layout():
    sec = grid_section("GRD2")
    tag, data = sec.pack(**{"lambda": 79, "latent_step": 120})
    assert (tag, data, sec.size) == ("GRD2", bytes([79, 120]), 2)  # the layout every grid2 stream has
    assert sec.unpack({"GRD2": data}) == {"lambda": 79, "latent_step": 120}
    assert sec.describe({"GRD2": data}) == {"lambda": f"{lambda_value(79):.3g} (index 79)",
                                            "latent_step": f"{latent_step(120):.4g} (index 120)"}


@pytest.mark.parametrize("sections, words", [({}, "missing section GRD2"), ({"GRD2": b"\0"}, "must be 2 bytes"),
                                             ({"GRD2": b"\0\0\0"}, "must be 2 bytes")])
def test_malformed_sections_are_one_line_errors(sections, words):
    with pytest.raises(BitstreamError) as ei:
        grid_section("GRD2").unpack(sections)
    assert words in str(ei.value) and "\n" not in str(ei.value)
    assert grid_section("GRD2").describe(sections) == {}  # mscn info never fails on it


def test_field_checks_apply_on_both_sides():
    sec = Section("TEST", (Field("n", "H", "a count", lambda v: None if v <= 10 else f"count {v} above 10"),))
    assert sec.unpack({"TEST": sec.pack(n=10)[1]}) == {"n": 10}
    with pytest.raises(BitstreamError, match="count 11 above 10"):
        sec.unpack({"TEST": (11).to_bytes(2, "little")})
    with pytest.raises(BitstreamError):
        sec.pack(n=11)
