"""The torch-free weights reader (mscncodec/ptload.py): every shipped model reads as torch.load reads it, and
a pickle naming any other global is refused in one line, also through the CLI."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mscncodec import ptload
from mscncodec.modelfile import models_dir

SHIPPED = sorted(Path(str(models_dir())).glob("*.pt"))


def _same(a, b, where: str) -> None:
    if isinstance(b, torch.Tensor):
        assert isinstance(a, np.ndarray) and a.dtype == b.numpy().dtype and a.shape == tuple(b.shape), where
        assert np.array_equal(a, b.numpy()), where
    elif isinstance(b, dict):
        assert type(a) is type(b) and list(a) == list(b), where
        for k in b:
            _same(a[k], b[k], f"{where}/{k}")
    elif isinstance(b, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, where


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_model_reads_as_torch_load_reads_it(path):
    _same(ptload.load(path), torch.load(path, map_location="cpu", weights_only=True), path.stem)


def test_settings_only_read_no_storage():
    st = ptload.load(SHIPPED[0], tensors=False)
    assert st["name"] == SHIPPED[0].stem and all(v is None for v in st["tensors"].values())


def test_a_strided_tensor_is_rebuilt(tmp_path):
    t = torch.arange(24, dtype=torch.float64).reshape(4, 6)[1:, ::2]  # an offset, a stride
    torch.save({"x": t, "n": torch.tensor(3, dtype=torch.int64)}, tmp_path / "s.pt")
    got = ptload.load(tmp_path / "s.pt")
    assert np.array_equal(got["x"], t.numpy()) and got["x"].dtype == np.float64 and got["n"] == 3


class _Boom:
    def __reduce__(self):
        return (print, ("pwned",))


def _crafted(path: Path) -> Path:
    """A torch.save zip whose pickle calls builtins.print: what a malicious weights file would do."""
    buf = io.BytesIO()
    torch.save({"x": torch.zeros(2)}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(path, "w") as out:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps({"x": _Boom()}, protocol=4)
            out.writestr(item, data)
    return path


def test_a_crafted_pickle_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(ptload.WeightsFileError, match=r"builtins\.print") as e:
        ptload.load(_crafted(tmp_path / "evil.pt"))
    assert "\n" not in str(e.value) and "pwned" not in capsys.readouterr().out


def test_a_crafted_weights_file_is_one_line_through_the_cli(tmp_path):
    """MSCN_MODELS naming a folder with a crafted grid2 weights file: decoding a grid2 stream reads it
    with ptload and stops with one line, no traceback, nothing run."""
    models = tmp_path / "models"
    models.mkdir()
    _crafted(models / "grid2-evil.pt")
    stream = Path(__file__).parent / "fixtures" / "golden" / "image-grid2-l7-0.5bpp.mscn"
    r = subprocess.run([sys.executable, "-m", "mscncodec.cli", "decode", str(stream), "-o", str(tmp_path / "o.png")],
                       capture_output=True, text=True, env={"MSCN_MODELS": str(models), "MSCN_THREADS": "1",
                                                            "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode != 0 and "pwned" not in r.stdout
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("mscn: error: ") and "builtins.print" in r.stderr
