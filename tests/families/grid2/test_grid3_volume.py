"""grid3 (3-D latent grids, families/grid2/volume): the 3-D context is causal for the wavefront coder, the exact
coder round-trips 3-D grids with a periodic axis, the synthesis wraps on periodic axes, a fit lowers the error,
the codec stays under its budget and a stream claiming more latents than its bytes justify is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mscncodec.errors import BitstreamError, RateError
from mscncodec.families.grid2.latent_codec import LatentCodec
from mscncodec.families.grid2.volume import codec as vcodec
from mscncodec.families.grid2.volume import fit as vfit
from mscncodec.families.grid2.volume.config import NEIGHBOURS3, SLOPES3, Vol3Config
from mscncodec.families.grid2.volume.model import Vol3Model, fresh_vol3_model
from mscncodec.families.grid2.volume.synthesis import cell_centres, render, synthesis


def _model(periodic=(False, False, True), levels=3) -> Vol3Model:
    return fresh_vol3_model(Vol3Config(levels=levels, periodic=periodic), name="t", modality="series")


def _target(shape=(4, 8, 16)) -> vfit.VolumeTarget:
    cz, cy, cx = cell_centres(shape)
    pts = torch.stack(torch.meshgrid(cz, cy, cx, indexing="ij"), -1).reshape(-1, 3)
    v = torch.sin(3 * pts[:, 2] * np.pi) * 0.5 + 0.3 * pts[:, 0]
    return vfit.VolumeTarget(pts, v, torch.ones(len(v)), shape, rate_norm=float(len(v)))


def test_every_neighbour_is_in_an_earlier_wave():
    assert all(sum(s * d for s, d in zip(SLOPES3, o)) < 0 for o in NEIGHBOURS3)
    Vol3Config(periodic=(False, True, True)).geometry  # noqa: B018  (Geometry checks causality too)


@pytest.mark.parametrize("periodic", [(False, False, False), (False, False, True)])
def test_exact_coder_round_trips_3d_grids(periodic):
    m = _model(periodic)
    rng = np.random.default_rng(0)
    shapes = m.cfg.grid_shapes((5, 6, 9))
    sym = [rng.integers(-3, 4, s).astype(np.int32) for s in shapes]
    codec = LatentCodec(m.cfg, m.theta, 2.0**-10)
    out = codec.decompress(codec.compress(sym), shapes)
    assert all(np.array_equal(a, b) for a, b in zip(sym, out))


def test_synthesis_wraps_on_a_periodic_axis():
    m = _model((False, False, True))
    lat = [torch.randn(1, 1, *s) for s in m.cfg.grid_shapes((2, 4, 8))]
    edge = torch.tensor([[0.0, 0.0, -1.0 + 1e-4], [0.0, 0.0, 1.0 - 1e-4]])
    a, b = synthesis(m.cfg, m.theta, lat, edge)
    assert torch.allclose(a, b, atol=1e-3)  # both sides of the seam are one place
    clamped = _model((False, False, False))
    c, d = synthesis(clamped.cfg, m.theta, lat, edge)
    assert not torch.allclose(c, d, atol=1e-3)


def test_fit_lowers_the_error():
    m, t = _model(), _target()
    zero = vfit.weighted_error(m.cfg, m.theta, vfit.zero_latents(m.cfg, t.finest), t)
    y = vfit.fit_latents(m.cfg, m.theta, t, 2.0**-12, vfit.Schedule(60, vfit.SCHEDULES["fast"].phases))
    assert vfit.weighted_error(m.cfg, m.theta, y, t) < 0.9 * zero  # a seeded (untrained) decoder: a modest gain


def test_codec_meets_its_budget_and_decodes():
    m, t = _model(), _target()
    secs, info = vcodec.encode(m, t, 300, steps=30)
    assert vcodec._size(secs) <= 300 and info["latent_bytes"] == vcodec._size(secs)
    lat = vcodec.decode_latents(m, dict(secs), 400)
    assert [tuple(x.shape[2:]) for x in lat] == m.cfg.grid_shapes(t.finest)
    assert render(m.cfg, m.theta, lat, (4, 8, 16)).shape == (4, 8, 16)
    with pytest.raises(RateError):
        vcodec.encode(m, t, 10, steps=4)


def test_a_grid_its_stream_cannot_justify_is_refused():
    m = _model()
    secs = dict([vcodec.GRD3.pack(**{"lambda": 80, "step": 0, "depth": 1024, "height": 1024, "width": 1024}),
                 ("LATS", b"\0" * 8)])
    with pytest.raises(BitstreamError, match="cannot code"):
        vcodec.decode_latents(m, secs, 100)


def test_model_state_round_trips_and_ids_differ_by_modality():
    m = _model()
    assert Vol3Model.from_state(m.state()).model_id == m.model_id
    other = fresh_vol3_model(m.cfg, name="t", modality="mesh")
    assert other.model_id != m.model_id
    assert m.variant("scratch").sparsity == "scratch"
