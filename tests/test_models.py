"""Model routing by target rate, and the rate-adaptive shift of the gate prior."""

import json

import pytest
import torch

from mscncodec import models
from mscncodec.errors import MscnError
from mscncodec.coding.sparsity import gate_shift_for
from mscncodec.families.siren.fit import initial_state
from mscncodec.families.siren.model import fresh_model
from mscncodec.models import default_model
from mscncodec.families.siren.network import SirenConfig
from mscncodec.coding.sparsity import deterministic_gate


@pytest.fixture
def two_models(tmp_path, monkeypatch):
    monkeypatch.setenv("MSCN_MODELS", str(tmp_path))
    monkeypatch.delenv("MSCN_DEFAULT_MODEL", raising=False)
    monkeypatch.setattr(models, "_cache", {})
    cfg = SirenConfig(width=8, depth=3)
    for name in ("lo", "hi"):
        fresh_model(cfg, name=name, patch=8).save(tmp_path / f"{name}.pt")
    return tmp_path


def test_routing_picks_model_by_rate(two_models):
    (two_models / "routing.json").write_text(json.dumps({"arch_routes": {"siren": [
        {"max_bpp": 0.4, "model": "lo"}, {"max_bpp": 1e9, "model": "hi"}]}}))
    assert default_model(0.1).name == "lo"
    assert default_model(0.4).name == "lo"
    assert default_model(0.41).name == "hi"
    assert default_model(None).name == "hi"  # no rate: first trained model by name


def test_without_routing_the_first_trained_model_is_default(two_models):
    assert default_model(0.3).name == "hi"


def test_env_overrides_routing(two_models, monkeypatch):
    (two_models / "routing.json").write_text(json.dumps({"arch_routes": {"siren": [{"max_bpp": 1e9, "model": "lo"}]}}))
    monkeypatch.setenv("MSCN_DEFAULT_MODEL", "hi")
    assert default_model(0.1).name == "hi"


def test_malformed_routing_is_a_one_line_error(two_models):
    (two_models / "routing.json").write_text("{not json")
    with pytest.raises(MscnError, match="routing.json is malformed"):
        default_model(0.3)


def test_gate_shift_opens_at_least_the_requested_number_of_gates():
    cfg = SirenConfig(width=8, depth=3)
    m = fresh_model(cfg, name="g", patch=8, log_alpha_init=-6.0)
    with torch.no_grad():
        m.log_alpha["w1"][0, :3] = 4.0  # three entries the prior likes
    assert gate_shift_for(m, 2) == 0.0  # already open: never shifted down
    for want in (10, 50):
        shift = gate_shift_for(m, want)
        st = initial_state(m, 1, gate_shift=shift)
        opened = sum(int((deterministic_gate(v) > 0).sum()) for v in st.log_alpha.values())
        assert opened >= want
    ungated = fresh_model(cfg, name="u", patch=8, gated=False)
    assert gate_shift_for(ungated, 50) == 0.0


@pytest.fixture
def mixed_models(two_models):
    from mscncodec.families.grid2.model import fresh_grid2_model
    from mscncodec.families.grid2.config import Grid2Config

    fresh_grid2_model(Grid2Config(levels=3, hidden=(4,), arm_hidden=4, analysis=4), name="gr").save(two_models / "gr.pt")
    return two_models


def test_default_arch_and_arch_routes(mixed_models):
    from mscncodec.models import default_arch

    assert default_arch() == "siren"  # no routing file
    assert default_model(0.3, arch="grid2").name == "gr"  # the only grid2 model
    (mixed_models / "routing.json").write_text(json.dumps({
        "default_arch": "grid2", "arch_routes": {"siren": [{"max_bpp": 1e9, "model": "lo"}],
                                                 "grid2": [{"max_bpp": 1e9, "model": "gr"}]}}))
    assert default_arch() == "grid2"
    assert default_model(0.3).name == "gr"
    assert default_model(0.3, arch="siren").name == "lo"


def test_unknown_default_arch_is_a_clean_error(mixed_models):
    (mixed_models / "routing.json").write_text(json.dumps({"default_arch": "mlp"}))
    with pytest.raises(MscnError, match="unknown default_arch"):
        default_model(0.3)


def test_arch_option_picks_the_family_and_rejects_a_mismatch(mixed_models):
    from conftest import synthetic_image
    from mscncodec.modalities.image_codec import encode_image

    img = synthetic_image(24, 32)
    _, rep = encode_image(img, quality=50, arch="grid2", steps=1, effort="fast", return_report=True)
    assert rep["arch"] == "grid2" and rep["model"] == "gr"
    _, rep = encode_image(img, quality=50, arch="siren", steps=1, effort="fast", return_report=True)
    assert rep["arch"] == "siren"
    with pytest.raises(MscnError, match="is a grid2 model, not siren"):
        encode_image(img, quality=50, model="gr", arch="siren", steps=1)


def test_no_model_of_the_requested_arch_is_a_clean_error(two_models):
    with pytest.raises(MscnError, match="no trained grid2 model"):
        default_model(0.3, arch="grid2")


def test_routes_may_name_an_effort(mixed_models):
    """A row naming an effort routes that effort only (max: a per-file decoder update the short efforts
    cannot afford); efforts no row names take the rows that name none."""
    from mscncodec.models import routing

    (mixed_models / "routing.json").write_text(json.dumps({"arch_routes": {"siren": [
        {"max_bpp": 1e9, "model": "lo"}, {"max_bpp": 1e9, "model": "hi", "effort": "max"}]}}))
    assert routing("siren") == routing("siren", "fast") == routing("siren", "default") == [(1e9, "lo")]
    assert routing("siren", "max") == [(1e9, "hi")]
    assert default_model(0.3).name == default_model(0.3, effort="default").name == "lo"
    assert default_model(0.3, effort="max").name == "hi"


def test_bench_keys_follow_the_effort_routes(mixed_models):
    """The bench's cache key of the default model at an effort hashes that effort's routes: adding a route
    for max leaves the other efforts' keys (and cached points) alone and gives max a new one."""
    from mscncodec.bench.inr import resolve_core_model

    route = {"arch_routes": {"siren": [{"max_bpp": 1e9, "model": "lo"}]}}
    (mixed_models / "routing.json").write_text(json.dumps(route))
    before = {e: resolve_core_model(f"siren@{e}")[2] for e in ("fast", "max")}
    route["arch_routes"]["siren"].append({"max_bpp": 1e9, "model": "hi", "effort": "max"})
    (mixed_models / "routing.json").write_text(json.dumps(route))
    after = {e: resolve_core_model(f"siren@{e}")[2] for e in ("fast", "max")}
    assert after["fast"] == before["fast"] and after["max"] != before["max"]


def test_the_plain_bench_key_follows_the_default_effort_routes(mixed_models):
    """`mscn:ARCH` (no @EFFORT) encodes at the default effort, so its key hashes the default effort's
    routes: a row for "default" must give it a new key (else the cache would report the old route's
    points as the new one's), and a row for max must not."""
    from mscncodec.bench.inr import resolve_core_model

    route = {"arch_routes": {"siren": [{"max_bpp": 1e9, "model": "lo"}]}}
    (mixed_models / "routing.json").write_text(json.dumps(route))
    plain = resolve_core_model("siren")[2]
    assert resolve_core_model("siren@default")[2].startswith(plain)
    route["arch_routes"]["siren"].append({"max_bpp": 1e9, "model": "hi", "effort": "max"})
    (mixed_models / "routing.json").write_text(json.dumps(route))
    assert resolve_core_model("siren")[2] == plain
    route["arch_routes"]["siren"].append({"max_bpp": 1e9, "model": "hi", "effort": "default"})
    (mixed_models / "routing.json").write_text(json.dumps(route))
    assert resolve_core_model("siren")[2] != plain


def test_every_routed_grid2_model_aims_with_a_calibration_of_its_own_weights(monkeypatch):
    """The encoder aims lambda at target / growth(steps) from models/NAME.growth.json (or the base model's):
    a file measured on other weights (a model retrained or renamed without re-calibrating) would aim every
    encode off and cost re-aims, so each shipped calibration must name the id of the model it sits beside,
    and every grid2 route must find one."""
    from conftest import REPO

    from mscncodec.families.grid2.rate_control import growth_file

    shipped = REPO / "mscncodec" / "weights"
    monkeypatch.setenv("MSCN_MODELS", str(shipped))
    monkeypatch.setattr(models, "_cache", {})
    for path in sorted(shipped.glob("*.growth.json")):
        cal = json.loads(path.read_text())
        m = models.load_model(path.name[: -len(".growth.json")])
        assert cal["model_id"] == m.model_id.hex(), path.name
        assert cal["growth"] and all(0.25 < v < 4 for v in cal["growth"].values()), path.name
    routes = json.loads((shipped / "routing.json").read_text())["arch_routes"]["grid2"]
    assert routes
    for r in routes:
        assert growth_file(models.load_model(r["model"])).is_file(), r["model"]
