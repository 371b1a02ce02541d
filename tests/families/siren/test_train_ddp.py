"""Data-parallel meta-training under torchrun (gloo, CPU): 2 processes, tiny config."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow


def test_torchrun_two_processes_train_one_model(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        img = (np.random.default_rng(i).random((48, 48, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(data / f"im{i}.png")
    torchrun = Path(sys.executable).with_name("torchrun")
    mscn = Path(sys.executable).with_name("mscn")
    env = dict(os.environ, MSCN_MODELS=str(tmp_path / "models"))
    r = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", str(mscn), "train", "image", "--data", str(data),
         "--out", str(tmp_path / "models" / "ddp"), "--width", "8", "--depth", "3", "--patch", "8", "--batch", "4",
         "--steps", "4", "--val-every", "2", "--val-patches", "8", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("wrote") == 1  # only rank 0 reports and writes
    card = (tmp_path / "models" / "ddp.md").read_text()
    assert "world size 2" in card
    ck = torch.load(tmp_path / "models" / "ddp.run" / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 4
