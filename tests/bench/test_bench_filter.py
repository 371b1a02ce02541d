"""`mscn bench DIR --codecs mscn` (issue 30): a bare `mscn` means the shipped models of the bench's modality,
by the modality each model's card declares: images for a folder of images, never a mesh or field model
(which would fail at every image and point with "model sphere-w32 codes fields, not images"). A mesh or field
model named on purpose (`mscn:sphere-w32`) is refused in one line before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from mscncodec.bench import cli as bench_cli
from mscncodec.bench.codecs import UnknownCodecError, resolve_codecs
from mscncodec.bench.inr import MODALITY
from mscncodec.models import list_models, load_model


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("RGB", (16, 16), (120, 30, 200)).save(d / "a.png")
    return d


def _other_models() -> list[str]:
    return [m.name for m in list_models() if m.modality != MODALITY]


def test_bare_mscn_lists_only_image_models():
    codecs, notices = resolve_codecs("mscn")
    assert codecs and not notices
    for c in codecs:
        assert load_model(c.model).modality == MODALITY, c.model
    others = set(_other_models())
    assert others and not others & {c.model for c in codecs}  # the shipped mesh and field models are left out


def test_the_bench_cli_hands_only_image_models_to_an_image_folder(images, tmp_path, monkeypatch):
    seen: list[list[str]] = []

    def fake_run_bench(paths, codecs, out, points, **kw):  # no encoding: what the CLI would run
        seen.append([c.model for c in codecs])
        raise bench_cli.BenchError("stop here")

    monkeypatch.setattr(bench_cli, "run_bench", fake_run_bench)
    r = CliRunner().invoke(bench_cli.bench, [str(images), "--out", str(tmp_path / "o"), "--codecs", "mscn"])
    assert r.exit_code == 1 and "stop here" in r.output and "codes " not in r.output, r.output
    (models,) = seen
    assert models and all(load_model(m).modality == MODALITY for m in models)


@pytest.mark.parametrize("base", ["mscn", "coin"])
def test_a_named_model_of_another_modality_is_one_usage_line(base, images, tmp_path):
    other = _other_models()[0]
    with pytest.raises(UnknownCodecError, match=rf"{base}:{other}: model {other} codes \w+.*, not images"):
        resolve_codecs(f"{base}:{other}")
    r = CliRunner().invoke(bench_cli.bench, [str(images), "--out", str(tmp_path / "o"), "--codecs",
                                             f"jpeg,{base}:{other}@fast"])
    assert r.exit_code == 2 and "not images" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "o").exists()
