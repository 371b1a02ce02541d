"""families/grid2/train.py: `mscn train image --arch grid2` end to end (card, checkpoint, resume, export, fine-tune,
budget), the trainer's option checks, and runs saved before two experiments were removed."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, photo_folder, synthetic_image
from grid2_testing import FAST

from mscncodec import models
from mscncodec.families.grid2 import train as g2train
from mscncodec.modalities.image_codec import decode, encode_image


def _train(monkeypatch, data, out, env, *extra):
    from click.testing import CliRunner

    from mscncodec.cli import main

    args = ["train", "image", "--arch", "grid2", "--data", str(data), "--out", str(out), "--levels", "3",
            "--hidden", "8", "--patch", "32", "--batch", "2", "--val-every", "2", "--no-progress", *extra]
    monkeypatch.setattr(sys, "argv", ["mscn", *args])
    r = CliRunner().invoke(main, args, env=env)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r


def test_train_grid2_writes_model_card_checkpoint_resumes_and_exports(tmp_path, env, monkeypatch):
    data = photo_folder(tmp_path, 48)
    out = tmp_path / "models" / "g2"
    r = _train(monkeypatch, data, out, env, "--steps", "3")
    assert r.exit_code == 0, r.output
    ck = torch.load(out.parent / "g2.run" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ck["step"] == 3 and ck["cfg"]["levels"] == 3
    card = out.with_suffix(".md").read_text()
    assert "grid2" in card and "No Kodak" in card and "--arch grid2" in card
    r = _train(monkeypatch, data, out, env, "--steps", "5", "--resume")
    assert r.exit_code == 0, r.output
    log = (out.parent / "g2.run" / "train.log").read_text()
    assert "# start step=0" in log and "# start step=3" in log
    first = models.load_model("g2").model_id
    models._cache.clear()
    r = _train(monkeypatch, data, out, env, "--export-only")
    assert r.exit_code == 0 and models.load_model("g2").model_id == first
    m = models.load_model("g2")
    assert m.arch == "grid2" and m.meta["steps"] == 5
    # the card's data hash is the folder's, as the trainer computed it when it listed the files itself
    from mscncodec.modalities.image import training_files
    from mscncodec.training import data_hash

    train_files, val_files = training_files(data, 0.05, 0)
    assert m.meta["data_sha256"] == data_hash(train_files, data) and m.meta["data"] == str(data)
    assert (m.meta["data_files"], m.meta["val_files"]) == (len(train_files), len(val_files))
    img = synthetic_image(40, 40, seed=9)
    data_ = encode_image(img, bpp=3.0, model="g2", **FAST)
    assert decode(data_).shape == img.shape


def test_train_grid2_resume_with_another_architecture_is_a_clean_error(tmp_path, env, monkeypatch):
    data = photo_folder(tmp_path, 48)
    out = tmp_path / "models" / "g2"
    assert _train(monkeypatch, data, out, env, "--steps", "1").exit_code == 0
    r = _train(monkeypatch, data, out, env, "--steps", "2", "--resume", "--levels", "2")
    assert r.exit_code != 0 and "resume with the same architecture" in r.stderr


def test_train_grid2_fine_tunes_from_init(tmp_path, env, monkeypatch):
    """--init starts from another run's weights (logged with their id); an init of another architecture is a
    one-line error."""
    data = photo_folder(tmp_path, 48)
    base = tmp_path / "models" / "g2base"
    assert _train(monkeypatch, data, base, env, "--steps", "2").exit_code == 0
    start = models.load_model("g2base")
    out = tmp_path / "models" / "g2ft"
    r = _train(monkeypatch, data, out, env, "--steps", "3", "--init", str(base.with_suffix(".pt")), "--lr", "1e-3")
    assert r.exit_code == 0, r.output
    ck = torch.load(out.parent / "g2ft.run" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ck["cfg"]["init"].endswith("g2base.pt") and not set(g2train.DROPPED_KEYS) & set(ck["cfg"])
    assert f"model id {start.model_id.hex()}" in (out.parent / "g2ft.run" / "train.log").read_text()
    tuned = models.load_model("g2ft")
    # three small steps from the init stay near it; a seeded init is nowhere near a trained start
    near = max(float((tuned.theta[k] - start.theta[k]).abs().max()) for k in start.theta)
    assert 0 < near < 0.05
    r = _train(monkeypatch, data, tmp_path / "models" / "g2bad", env, "--steps", "1", "--levels", "2",
               "--init", str(base.with_suffix(".pt")))
    assert r.exit_code != 0 and "--init" in r.stderr and "architecture" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", [["--rate-warmup", "2"], ["--grad-through-clamp"], ["--arch", "grid"]])
def test_the_removed_experiments_are_refused(tmp_path, env, monkeypatch, flag):
    """--rate-warmup and --grad-through-clamp (failed experiments) and the `grid` trainer are gone."""
    data = photo_folder(tmp_path, 48)
    r = _train(monkeypatch, data, tmp_path / "models" / "g2x", env, "--steps", "1", *flag)
    assert r.exit_code == 2 and (flag[0] in r.stderr or "grid" in r.stderr)
    assert not (tmp_path / "models" / "g2x.pt").exists()


def test_runs_saved_with_the_removed_experiments_keys_still_resume_and_export(tmp_path, env, monkeypatch):
    """Checkpoints in weights/*.run/ were saved with `grad_through_clamp` and `rate_warmup` in their train
    config (both off): they still export and resume; the keys are dropped."""
    data = photo_folder(tmp_path, 48)
    out = tmp_path / "models" / "g2old"
    assert _train(monkeypatch, data, out, env, "--steps", "2").exit_code == 0
    path = out.parent / "g2old.run" / "checkpoint.pt"
    ck = torch.load(path, map_location="cpu", weights_only=False)
    ck["cfg"].update(grad_through_clamp=False, rate_warmup=0)
    torch.save(ck, path)
    models._cache.clear()
    r = _train(monkeypatch, data, out, env, "--export-only")
    assert r.exit_code == 0, r.output
    assert "rate_warmup" not in models.load_model("g2old").meta["train_config"]
    r = _train(monkeypatch, data, out, env, "--steps", "3", "--resume")
    assert r.exit_code == 0, r.output
    assert torch.load(path, map_location="cpu", weights_only=False)["step"] == 3


def test_the_shipped_runs_checkpoint_configs_are_readable():
    for path in sorted((REPO / "mscncodec" / "weights").glob("grid2-*.run/checkpoint.pt")):
        ck = torch.load(path, map_location="cpu", weights_only=False)
        cfg = g2train.config_of(ck["cfg"])
        assert cfg.grid_config().levels == ck["model"]["cfg"]["levels"], path


@pytest.mark.parametrize("args,words", [
    (["--levels", "10"], "--levels must be in [2, 9] for grid2, got 10"),
    (["--hidden", "8,x"], "--hidden must be comma-separated integers and --log2-lam two numbers MIN,MAX"),
    (["--log2-lam", "-3,-13"], "--log2-lam needs -20 <= MIN < MAX <= 0, got '-3,-13'"),
    (["--analysis", "3"], "--analysis must be in [4, 256] channels, got 3"),
    (["--patch", "30"], "--patch 30 must be a multiple of 4 (2**(levels-1))"),
])
def test_bad_options_are_one_line_errors(tmp_path, env, monkeypatch, args, words):
    data = photo_folder(tmp_path, 48)
    r = _train(monkeypatch, data, tmp_path / "models" / "g2bad", env, "--steps", "1", *args)
    assert r.exit_code != 0 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_under_torchrun_only_rank_0_exports(tmp_path, env, monkeypatch):
    """grid2 trains under torchrun (tests/families/grid2/test_train_ddp_grids.py runs 2 ranks); an --export-only
    launched there freezes the checkpoint on rank 0 alone, the other ranks write nothing."""
    data = photo_folder(tmp_path, 48)
    out = tmp_path / "models" / "g2w"
    assert _train(monkeypatch, data, out, env, "--steps", "1").exit_code == 0
    out.with_suffix(".pt").unlink()
    out.with_suffix(".md").unlink()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    r = _train(monkeypatch, data, out, env, "--export-only")
    assert r.exit_code == 0 and "wrote" not in r.output
    assert not out.with_suffix(".pt").exists() and not out.with_suffix(".md").exists()
    monkeypatch.setenv("RANK", "0")
    r = _train(monkeypatch, data, out, env, "--export-only")
    assert r.exit_code == 0 and r.output.count("wrote") == 1 and out.with_suffix(".pt").is_file()


def test_train_grid2_stops_at_its_wall_clock_budget_and_validates_the_last_step(tmp_path, env, monkeypatch):
    """--minutes ends a run before --steps (the lent-GPU recipe trains for a budget, not a step count): the
    last step is validated and checkpointed, the budget is in the checkpoint's config, and the model exports."""
    data = photo_folder(tmp_path, 48)
    out = tmp_path / "models" / "g2t"
    r = _train(monkeypatch, data, out, env, "--steps", "100000", "--minutes", "0.0001", "--val-every", "100000")
    assert r.exit_code == 0, r.output
    ck = torch.load(out.parent / "g2t.run" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ck["cfg"]["minutes"] == 0.0001 and 1 <= ck["step"] < 100000
    log = (out.parent / "g2t.run" / "train.log").read_text()
    assert f'"step": {ck["step"]},' in log  # the validation record of the step it stopped at
    assert models.load_model("g2t").meta["steps"] == ck["step"]
    # the checkpoint keeps where it trained: a model exported from it elsewhere names that run's command
    assert "--minutes" in ck["origin"]["command"] and ck["origin"]["torch"] == torch.__version__
    models._cache.clear()
    assert _train(monkeypatch, data, out, env, "--export-only").exit_code == 0
    assert "--minutes" in models.load_model("g2t").meta["command"]
    r = _train(monkeypatch, data, tmp_path / "models" / "g2x", env, "--arch", "siren", "--minutes", "1")
    assert r.exit_code != 0 and "--minutes" in r.stderr


def test_the_family_reads_no_file_and_imports_no_modality():
    """The trainer gets its samples from the caller (the image modality's training data)."""
    pkg = REPO / "mscncodec" / "families" / "grid2"
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("mscncodec.modalities", "mscncodec.models")), path.name
                assert not (node.module.startswith("mscncodec.families.") and ".grid2" not in node.module
                            and node.module != "mscncodec.families"), path.name
    assert "load_rgb" not in (pkg / "train.py").read_text()
    assert Path(g2train.__file__).parent == pkg
