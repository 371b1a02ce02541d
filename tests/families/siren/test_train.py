"""`mscn train image` end to end on a tiny generated data set (seconds, not hours)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from mscncodec import models as models_mod
from mscncodec.cli import main

from conftest import photo_folder, synthetic_image

TINY = ["--width", "8", "--depth", "3", "--patch", "8", "--batch", "4", "--val-every", "3", "--val-patches", "8",
        "--no-progress", "--threads", "1"]


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    return photo_folder(tmp_path, 64)


def _train(data: Path, out: Path, env: dict, steps: int, *extra: str):
    return CliRunner().invoke(main, ["train", "image", "--data", str(data), "--out", str(out), *TINY,
                                     "--steps", str(steps), *extra], env=env)


def _reraise(result) -> None:
    """Surface an uncaught exception from CliRunner as itself (with its traceback, not just an exit code)."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception


def _one_line_error(result, code: int, *words: str) -> None:
    """Exit `code`, one `mscn: error:` line on stderr naming the problem, no traceback, nothing on stdout."""
    _reraise(result)
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mscn: error:"), lines[0]
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])
    assert "Traceback" not in result.output
    assert result.stdout == ""


def _no_model_written(models: Path) -> None:
    """No .pt, model card, checkpoint or log: at most empty folders."""
    if models.exists():
        assert [p for p in models.rglob("*") if not p.is_dir()] == []


def _ckpt(out: Path) -> dict:
    return torch.load(out.parent / f"{out.name}.run" / "checkpoint.pt", map_location="cpu", weights_only=False)


def test_train_writes_model_card_checkpoint_and_resumes(tmp_path, env, data_dir):
    out = tmp_path / "models" / "tiny"
    r = _train(data_dir, out, env, 6)
    _reraise(r)
    assert r.exit_code == 0, r.output
    assert "wrote" in r.stdout and "tiny.pt" in r.stdout
    pt, md = out.with_suffix(".pt"), out.with_suffix(".md")
    assert pt.is_file() and md.is_file()
    card = md.read_text()
    for word in ("command", "sha256", "steps", "6 outer steps", "id"):
        assert word in card, word
    ck = _ckpt(out)
    assert ck["step"] == 6
    assert [h["step"] for h in ck["history"]] == [3, 6]
    assert all(np.isfinite(h["val_psnr"]) for h in ck["history"])
    state = torch.load(pt, map_location="cpu", weights_only=False)
    assert state["meta"]["steps"] == 6 and state["patch"] == 8 and state["cfg"]["width"] == 8
    theta6 = {k: v.clone() for k, v in state["tensors"].items()}

    r = _train(data_dir, out, env, 8, "--resume")
    _reraise(r)
    assert r.exit_code == 0, r.output
    ck = _ckpt(out)
    assert ck["step"] == 8
    assert [h["step"] for h in ck["history"]] == [3, 6, 8]  # continued, did not restart
    log = (out.parent / "tiny.run" / "train.log").read_text()
    assert "# start step=0" in log and "# start step=6" in log
    assert "8 outer steps" in out.with_suffix(".md").read_text()
    state = torch.load(pt, map_location="cpu", weights_only=False)
    assert state["meta"]["steps"] == 8
    assert any(not torch.equal(theta6[k], v) for k, v in state["tensors"].items())  # 2 more steps moved it


def _list_encode_decode(tmp_path: Path, env: dict, name: str) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["models"], env=env)
    _reraise(r)
    assert r.exit_code == 0, r.output
    names = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    assert name in names and "random-w32d5" in names

    Image.fromarray(synthetic_image(40, 48, seed=5)).save(tmp_path / "x.png")
    r = runner.invoke(main, ["encode", str(tmp_path / "x.png"), "-o", str(tmp_path / "x.mscn"), "--model", name,
                             "--effort", "fast", "--steps", "3", "-q"], env=env)
    _reraise(r)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["info", "--json", str(tmp_path / "x.mscn")], env=env)
    _reraise(r)
    assert r.exit_code == 0 and f'"model": "{name}"' in r.stdout and '"patch": "8"' in r.stdout
    r = runner.invoke(main, ["decode", str(tmp_path / "x.mscn"), "-o", str(tmp_path / "y.png")], env=env)
    _reraise(r)
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "y.png") as im:
        assert im.size == (48, 40)


def test_trained_model_is_listed_and_codes_images(tmp_path, env, data_dir):
    """A freshly trained .pt loads as written (weights_only=True) and codes images: the gated codec path."""
    out = tmp_path / "models" / "tinygated"
    r = _train(data_dir, out, env, 6)
    _reraise(r)
    assert r.exit_code == 0, r.output
    pt = out.with_suffix(".pt")
    state = torch.load(pt, map_location="cpu", weights_only=True)  # no pickled classes in the model file
    assert type(state["meta"]["torch"]) is str and state["meta"]["torch"] == str(torch.__version__)
    m = models_mod.load_model("tinygated")
    assert m.gated and m.patch == 8 and m.meta["steps"] == 6
    _list_encode_decode(tmp_path, env, "tinygated")


def test_refuses_to_train_on_kodak(tmp_path, env):
    data = tmp_path / "Kodak24"
    data.mkdir()
    Image.fromarray(synthetic_image(64, 64)).save(data / "kodim01.png")
    out = tmp_path / "models" / "k"
    r = _train(data, out, env, 2)
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1
    assert "kodak" in r.stderr.lower() and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "models").exists()


def test_no_images_is_a_clean_error(tmp_path, env):
    data = tmp_path / "empty"
    data.mkdir()
    (data / "notes.txt").write_text("no images here")
    r = _train(data, tmp_path / "models" / "e", env, 2)
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1
    assert "no training images" in r.stderr
    _one_line_error(r, 1, "no training images")
    _no_model_written(tmp_path / "models")


def test_unreadable_image_in_data_is_a_clean_error(tmp_path, env, data_dir):
    (data_dir / "broken.png").write_text("not a png")
    r = _train(data_dir, tmp_path / "models" / "b", env, 2)
    _one_line_error(r, 1, "cannot read training image", str(data_dir / "broken.png"))
    _no_model_written(tmp_path / "models")


def test_images_smaller_than_patch_is_a_clean_error(tmp_path, env):
    data = tmp_path / "small"
    data.mkdir()
    Image.fromarray(synthetic_image(6, 6)).save(data / "s.png")
    r = _train(data, tmp_path / "models" / "s", env, 2)
    _one_line_error(r, 1, "no image is at least 8x8 pixels", "patch")
    _no_model_written(tmp_path / "models")
