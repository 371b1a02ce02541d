"""The latent-grid codec (``--arch grid``): latent coding, the public API, bad streams, the CLI, training.

Tiny models (3 grids, an 8-wide synthesis) and images of a few thousand pixels keep
every test well under a second or two on one core.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import photo_folder, synthetic_image
from PIL import Image

from mscncodec.coding import latents as lt
from mscncodec.container import bitstream
from mscncodec.families.grid import network as grid, encoder as gridcodec
from mscncodec import models
from mscncodec.cli import main
from mscncodec.modalities.image_codec import decode, describe, encode_image
from mscncodec.errors import BitstreamError, MscnError, RateError
from mscncodec.training import data_hash, split
from mscncodec.modalities.image import list_images
from mscncodec.modalities import image as imod
from mscncodec.models import GridModel, find_by_id, fresh_grid_model, load_model

CFG = grid.GridConfig(levels=3, hidden=(8,), ctx_hidden=4, analysis=4)
CFG0 = grid.GridConfig(levels=3, first=0, hidden=(8,), ctx_hidden=4, analysis=4)  # full-resolution finest grid
FAST = {"effort": "fast", "steps": 4}
H, W = 37, 53  # odd, not a multiple of any alignment


@pytest.fixture(scope="module")
def gm(isolated_models) -> str:
    """Two saved grid models in the module's MSCN_MODELS folder: gt (first=1) and gt0 (first=0)."""
    fresh_grid_model(CFG, name="gt", seed=0).save(isolated_models / "gt.pt")
    fresh_grid_model(CFG0, name="gt0", seed=1).save(isolated_models / "gt0.pt")
    return "gt"


@pytest.fixture(scope="module")
def stream(gm) -> tuple[np.ndarray, bytes, dict]:
    """A real grid stream of a 37x53 RGB image at 3 bpp, and its report."""
    img = synthetic_image(H, W, seed=1)
    data, rep = encode_image(img, bpp=3.0, model=gm, return_report=True, **FAST)
    return img, data, rep


def _repack(data: bytes, edit=None, **header_changes) -> bytes:
    """Unpack a stream, change header fields and/or sections, pack it again with a valid CRC."""
    header, sections = bitstream.unpack(data)
    header = {k: v for k, v in header.items() if k not in ("n_sections", "payload_crc32")}
    header.update(header_changes)
    secs = list(sections.items())
    if edit is not None:
        secs = edit(secs)
    return bitstream.pack(header, secs)


def _edit_section(tag: str, fn):
    return lambda secs: [(k, fn(v) if k == tag else v) for k, v in secs]


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, msg
    return msg


def _symbols(shapes, seed: int, scale: float) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sym = [np.clip(np.round(rng.laplace(0, scale, s)), -grid.SYMBOL_RANGE, grid.SYMBOL_RANGE).astype(np.int32)
           for s in shapes]
    sym[0].flat[0], sym[-1].flat[-1] = grid.SYMBOL_RANGE, -grid.SYMBOL_RANGE  # both ends of the symbol range
    return sym


def _random_params(cfg: grid.GridConfig, seed: int) -> dict[str, torch.Tensor]:
    """A decoder as a file would see it: theta0 plus a dense random update."""
    p = grid.init_params(cfg, seed=seed, analysis=False)
    g = torch.Generator().manual_seed(seed)
    return {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in p.items()}


def _as_symbols(decoded: list[torch.Tensor], step_idx: int) -> list[np.ndarray]:
    step = lt.latent_step(step_idx)
    return [np.round(z[0, 0].numpy() / step).astype(np.int64) for z in decoded]


# ---------------------------------------------------------------- geometry

@pytest.mark.parametrize("cfg", [CFG, CFG0], ids=["first1", "first0"])
def test_grid_shapes_and_padding(cfg):
    shapes = gridcodec.grid_shapes(cfg, H, W)
    hp, wp = -(-H // cfg.align) * cfg.align, -(-W // cfg.align) * cfg.align
    assert shapes == [(hp // cfg.scale(l), wp // cfg.scale(l)) for l in range(cfg.levels)]
    assert len(shapes) == cfg.levels and shapes[-1][0] * cfg.align == hp and shapes[-1][1] * cfg.align == wp
    rgb = synthetic_image(H, W, seed=2)
    x = lt.pad_image(rgb, cfg.align)
    assert x.shape == (1, 3, hp, wp) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, :, :H, :W], torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    assert torch.equal(x[0, :, H:, :W], x[0, :, H - 1 : H, :W].expand(-1, hp - H, -1))  # edge-replicated
    assert torch.equal(x[0, :, :, W:], x[0, :, :, W - 1 : W].expand(-1, -1, wp - W))
    aligned = synthetic_image(cfg.align, 2 * cfg.align)
    assert lt.pad_image(aligned, cfg.align).shape == (1, 3, cfg.align, 2 * cfg.align)


def test_latent_step_table():
    assert lt.latent_step(lt.STEP_BASE) == 1.0
    assert lt.latent_step(lt.STEP_BASE + lt.STEP_PER_OCTAVE) == 2.0
    assert lt.latent_step(lt.STEP_BASE - lt.STEP_PER_OCTAVE) == 0.5
    steps = [lt.latent_step(i) for i in range(256)]
    assert steps == sorted(steps)


# ---------------------------------------------------------------- latent coding

@pytest.mark.parametrize("cfg", [CFG, CFG0], ids=["first1", "first0"])
@pytest.mark.parametrize("step_idx", [128, 150, 96, 20])  # steps 1, 1.61, 0.5, 0.15
@pytest.mark.parametrize("seed,scale", [(0, 0.7), (1, 4.0)])
def test_latents_round_trip_exactly(cfg, step_idx, seed, scale):
    shapes = gridcodec.grid_shapes(cfg, H, W)
    params = _random_params(cfg, seed)
    sym = _symbols(shapes, seed, scale)
    lam_idx = 40 + 60 * seed
    data = gridcodec.encode_latents(cfg, params, sym, lam_idx, step_idx)
    assert isinstance(data, bytes) and len(data) % 4 == 0 and len(data) > 0
    out = gridcodec.decode_latents(cfg, params, data, shapes, lam_idx, step_idx)
    assert [tuple(z.shape) for z in out] == [(1, 1, *s) for s in shapes]
    step = np.float32(lt.latent_step(step_idx))
    for z, s in zip(out, sym):
        assert z.dtype == torch.float32
        np.testing.assert_array_equal(z[0, 0].numpy(), s.astype(np.float32) * step)  # symbol x step, exactly


def test_latent_coding_is_deterministic_and_depends_on_the_context_model():
    shapes = gridcodec.grid_shapes(CFG, H, W)
    sym = _symbols(shapes, 3, 2.0)
    p = _random_params(CFG, 3)
    a = gridcodec.encode_latents(CFG, p, sym, 100, 128)
    assert gridcodec.encode_latents(CFG, p, sym, 100, 128) == a
    # the coder's probabilities come from the context model: other params or lambda give other bytes
    assert gridcodec.encode_latents(CFG, _random_params(CFG, 4), sym, 100, 128) != a
    assert gridcodec.encode_latents(CFG, p, sym, 200, 128) != a
    # ... and a decoder with the wrong params does not get the symbols back (nor crashes)
    try:
        wrong = gridcodec.decode_latents(CFG, _random_params(CFG, 4), a, shapes, 100, 128)
    except BitstreamError as e:
        assert "corrupted" in _one_line(e)
    else:
        assert any(not np.array_equal(d, s) for d, s in zip(_as_symbols(wrong, 128), sym))


def test_latent_coding_cost_tracks_the_rate_model():
    """The real LATS size follows laplace_bits' estimate for symbols the model finds likely; wide ones cost more."""
    shapes = gridcodec.grid_shapes(CFG, H, W)
    lam = torch.tensor([lt.lambda_value(100)])
    for seed in (0, 1):
        p = grid.init_params(CFG, seed=seed, analysis=False)
        for sym in ([np.zeros(s, np.int32) for s in shapes], _symbols(shapes, 6, 0.5)):
            sym[0].flat[0], sym[-1].flat[-1] = 0, 0
            lat = [torch.from_numpy(s.astype(np.float32))[None, None] for s in sym]
            est = float(grid.rate_bits(CFG, p, lat, lam, torch.ones(1)))  # step index 128 = step 1
            real = 8 * len(gridcodec.encode_latents(CFG, p, sym, 100, 128))
            assert abs(real - est) <= 0.1 * est + 64, (seed, real, est)
        small = len(gridcodec.encode_latents(CFG, p, [np.zeros(s, np.int32) for s in shapes], 100, 128))
        assert len(gridcodec.encode_latents(CFG, p, _symbols(shapes, 5, 6.0), 100, 128)) > 2 * small


def test_corrupted_latent_payload_never_escapes_as_a_raw_exception():
    """Bad LATS bytes raise BitstreamError or decode to other symbols; no other outcome is allowed.

    (A truncated payload inside an intact container is not detected by the range
    decoder itself: the container CRC is what catches truncation, see below.)
    """
    shapes = gridcodec.grid_shapes(CFG, H, W)
    p = _random_params(CFG, 0)
    sym = _symbols(shapes, 0, 2.0)
    data = gridcodec.encode_latents(CFG, p, sym, 80, 128)
    with pytest.raises(BitstreamError, match="multiple of 4"):
        gridcodec.decode_latents(CFG, p, data[:-1], shapes, 80, 128)
    rng = np.random.default_rng(0)
    bad = [data[:-4], data[: len(data) // 2 // 4 * 4], b"", bytes(len(data)), b"\xff" * len(data),
           bytes([data[0] ^ 0xFF]) + data[1:], rng.integers(0, 256, len(data), dtype=np.uint8).tobytes()]
    for b in bad:
        try:
            out = gridcodec.decode_latents(CFG, p, b, shapes, 80, 128)
        except BitstreamError as e:
            assert "corrupted" in _one_line(e)
        else:
            assert [tuple(z.shape) for z in out] == [(1, 1, *s) for s in shapes]
            assert any(not np.array_equal(d, s) for d, s in zip(_as_symbols(out, 128), sym))


def test_latents_round_trip_with_a_one_by_one_grid():
    shapes = gridcodec.grid_shapes(CFG, CFG.align, CFG.align)
    assert shapes[-1] == (1, 1)
    p = _random_params(CFG, 0)
    sym = _symbols(shapes, 0, 1.0)
    data = gridcodec.encode_latents(CFG, p, sym, 80, 128)
    out = gridcodec.decode_latents(CFG, p, data, shapes, 80, 128)
    assert all(np.array_equal(d, s) for d, s in zip(_as_symbols(out, 128), sym))


# ---------------------------------------------------------------- the public API

def test_round_trip_at_a_target_rate(stream):
    img, data, rep = stream
    out = decode(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    target = int(np.floor(3.0 * H * W / 8))
    assert len(data) <= target and rep["bytes"] == len(data)
    assert rep["bpp"] == pytest.approx(8 * len(data) / (H * W)) and rep["bpp"] <= 3.0
    assert rep["model"] == "gt" and rep["arch"] == "grid"
    mse = np.mean((img.astype(np.float64) - out.astype(np.float64)) ** 2)
    assert rep["psnr"] == pytest.approx(10 * np.log10(255.0**2 / mse), abs=1e-9)
    assert np.isfinite(rep["psnr"])


def test_encoding_is_deterministic(stream, gm):
    img, data, _ = stream
    assert encode_image(img, bpp=3.0, model=gm, **FAST) == data
    assert np.array_equal(decode(data), decode(data))


@pytest.mark.parametrize("model", ["gt", "gt0", "gt+scratch", "gt+dense"])
@pytest.mark.parametrize("shape,channels", [((33, 41), 1), ((19, 70), 3), ((24, 32), 4)], ids=["gray", "rgb", "rgba"])
def test_round_trip_shapes(gm, model, shape, channels):
    img = synthetic_image(*shape, seed=4, channels=1 if channels == 1 else 3)
    if channels == 4:
        img = np.concatenate([img, np.full(shape + (1,), 255, np.uint8)], axis=2)  # opaque alpha
    data, rep = encode_image(img, bpp=4.0, model=model, return_report=True, **FAST)
    assert len(data) * 8 <= 4.0 * shape[0] * shape[1]
    out = decode(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert rep["psnr"] == pytest.approx(imod.psnr(img, out))
    if channels == 4:
        assert np.all(out[..., 3] == 255)
    header = describe(data)["header"]
    assert header["channels"] == str(channels) and header["model"] == model and header["arch"] == "grid"


def test_describe_shows_the_grid_stream(stream):
    _, data, _ = stream
    d = describe(data)
    h = d["header"]
    assert h["arch"] == "grid" and h["model"] == "gt" and h["patch"] == str(CFG.align)
    assert h["height"] == str(H) and h["width"] == str(W) and h["model_id"] == load_model("gt").model_id.hex()
    assert "index" in h["lambda"] and "index" in h["latent_step"]
    _, sections = bitstream.unpack(data)
    lam_idx, step_idx = struct.unpack("<BB", sections["GRID"])
    assert h["lambda"] == f"{lt.lambda_value(lam_idx):.3g} (index {lam_idx})"
    assert h["latent_step"] == f"{lt.latent_step(step_idx):.4g} (index {step_idx})"
    secs = d["sections"]
    assert list(sections) == ["GRID", "QPRM", "MASK", "VALS", "LATS"]
    assert secs["GRID"] == 2 and secs["LATS"] > 0
    assert sum(secs.values()) == len(data) == d["bytes"]
    assert d["bpp"] == pytest.approx(8 * len(data) / (H * W))


def test_variants_round_trip_with_distinct_ids(gm, stream):
    img, _, _ = stream
    names = ["gt", "gt+scratch", "gt+dense"]
    ms = [load_model(n) for n in names]
    assert [m.arch for m in ms] == ["grid"] * 3 and all(isinstance(m, GridModel) for m in ms)
    assert [m.sparsity for m in ms] == ["gates", "scratch", "dense"]
    assert len({m.model_id for m in ms}) == 3
    assert ms[1].analysis == {} and ms[0].analysis and ms[2].analysis
    assert ms[0].gated and not ms[1].gated and not ms[2].gated
    for n, m in zip(names, ms):
        data, rep = encode_image(img, bpp=3.0, model=n, return_report=True, **FAST)
        assert len(data) * 8 <= 3.0 * H * W and rep["model"] == n
        assert describe(data)["header"]["model"] == n  # the decoder finds the variant from the id alone
        assert decode(data).shape == img.shape
        assert find_by_id(m.model_id).name == n
    with pytest.raises(MscnError, match="variant"):
        load_model("gt+magnitude")  # a SIREN-only variant
    with pytest.raises(MscnError):
        load_model("gt+scratch").variant("dense")


def test_quality_mode(gm, stream):
    img, _, _ = stream
    for q in (0, 100):
        data, rep = encode_image(img, quality=q, model=gm, return_report=True, **FAST)
        _, sections = bitstream.unpack(data)
        lam_idx, step_idx = struct.unpack("<BB", sections["GRID"])
        assert lam_idx == lt.lambda_index(2.0 ** (-6.0 - 7.0 * q / 100))  # no rate control in quality mode
        assert step_idx == lt.step_index_for(lt.lambda_value(lam_idx))  # the step tied to lambda, no size fit
        out = decode(data)
        assert out.shape == img.shape and rep["psnr"] == pytest.approx(imod.psnr(img, out))
    with pytest.raises(MscnError, match="not both"):
        encode_image(img, quality=50, bpp=1.0, model=gm, **FAST)


def test_unreachable_rate_is_a_rate_error(gm, stream):
    img, _, _ = stream
    with pytest.raises(RateError) as ei:
        encode_image(img, bpp=0.01, model=gm, **FAST)
    assert "bpp" in _one_line(ei.value)


def test_model_id_ignores_the_encoder_only_analysis_net(gm, tmp_path):
    m = load_model(gm)
    again = GridModel.from_state(torch.load(models.models_dir() / "gt.pt", map_location="cpu", weights_only=True))
    assert again.model_id == m.model_id and again.cfg == CFG and again.arch == "grid"
    other_ana = GridModel.from_state(m.state())
    other_ana.analysis = {k: v + 1 for k, v in other_ana.analysis.items()}
    assert other_ana.model_id == m.model_id  # a retrained analysis net decodes the same streams
    other_theta = GridModel.from_state(m.state())
    other_theta.theta = {k: v + (k == "syn.b0") for k, v in other_theta.theta.items()}
    assert other_theta.model_id != m.model_id
    assert fresh_grid_model(CFG0, name="x", seed=0).model_id != fresh_grid_model(CFG, name="x", seed=0).model_id
    m.save(tmp_path / "copy.pt")
    assert GridModel.from_state(torch.load(tmp_path / "copy.pt", weights_only=True)).model_id == m.model_id


@pytest.mark.parametrize("shape", [(CFG.align, CFG.align), (1, 1), (3, 5)])
def test_images_no_larger_than_the_alignment_round_trip(gm, shape):
    img = synthetic_image(*shape, seed=0)
    data = encode_image(img, quality=50, model=gm, **FAST)
    assert decode(data).shape == img.shape


# ---------------------------------------------------------------- bad streams

def test_truncation_at_every_cut_point(stream):
    _, data, _ = stream
    for n in range(len(data)):
        with pytest.raises(BitstreamError) as ei:
            decode(data[:n])
        _one_line(ei.value)


def test_every_byte_flip_is_refused(stream):
    _, data, _ = stream
    for pos in range(0, len(data), 7):
        b = bytearray(data)
        b[pos] ^= 0x5A
        with pytest.raises(BitstreamError):
            decode(bytes(b))


@pytest.mark.parametrize("name,edit,header,words", [
    ("grid-3-bytes", _edit_section("GRID", lambda v: v + b"\0"), {}, "GRID section must be 2 bytes"),
    ("grid-1-byte", _edit_section("GRID", lambda v: v[:1]), {}, "GRID section must be 2 bytes"),
    ("grid-empty", _edit_section("GRID", lambda v: b""), {}, "GRID section must be 2 bytes"),
    ("no-grid", lambda s: [(k, v) for k, v in s if k != "GRID"], {}, "missing section GRID"),
    ("no-lats", lambda s: [(k, v) for k, v in s if k != "LATS"], {}, "missing section LATS"),
    ("no-vals", lambda s: [(k, v) for k, v in s if k != "VALS"], {}, "missing section VALS"),
    ("lats-odd", _edit_section("LATS", lambda v: v[:-1]), {}, "multiple of 4"),
    ("qprm-short", _edit_section("QPRM", lambda v: v[:-1]), {}, ""),
    ("unknown-model", None, {"model_id": b"\x01" * 8}, "which this decoder does not have"),
    ("siren-arch", None, {"arch": 1}, "architecture siren does not match"),
    ("wrong-alignment", None, {"patch": 2 * CFG.align}, "alignment"),
])
def test_malformed_grid_streams_are_one_line_bitstream_errors(stream, name, edit, header, words):
    _, data, _ = stream
    bad = _repack(data, edit, **header)
    with pytest.raises(BitstreamError) as ei:
        decode(bad)
    assert words.lower() in _one_line(ei.value).lower()
    assert isinstance(ei.value, MscnError) and ei.value.exit_code == 3


def test_unknown_model_stream_is_still_described(stream):
    _, data, _ = stream
    d = describe(_repack(data, model_id=b"\x02" * 8))
    assert d["header"]["model"] == "(unknown to this decoder)" and d["header"]["arch"] == "grid"
    assert "lambda" not in d["header"] and d["sections"]["GRID"] == 2


def test_grid_stream_with_a_siren_model_id_is_refused(stream):
    """A grid header naming a SIREN model: the architecture check refuses it before any decoding."""
    _, data, _ = stream
    siren_id = load_model("random-w32d5").model_id
    with pytest.raises(BitstreamError, match="architecture grid does not match"):
        decode(_repack(data, model_id=siren_id, patch=32))


# ---------------------------------------------------------------- the command line

def test_cli_encode_info_decode_grid(gm, tmp_path):
    runner = CliRunner()
    Image.fromarray(synthetic_image(H, W, seed=8)).save(tmp_path / "a.png")
    r = runner.invoke(main, ["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.mscn"), "--model", gm,
                             "--bpp", "3", "--effort", "fast", "--steps", "3"])
    assert r.exit_code == 0, (r.output, r.exception)
    data = (tmp_path / "a.mscn").read_bytes()
    assert f"{len(data)} bytes" in r.stdout and "model gt" in r.stdout and len(data) * 8 <= 3 * H * W
    r = runner.invoke(main, ["info", str(tmp_path / "a.mscn")])
    assert r.exit_code == 0, r.output
    for word in ("arch: grid", "model: gt", "lambda:", "latent_step:", "GRID", "LATS", "QPRM"):
        assert word in r.stdout, word
    r = runner.invoke(main, ["decode", str(tmp_path / "a.mscn"), "-o", str(tmp_path / "b.png")])
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "b.png") as im:
        assert im.size == (W, H)
        assert np.array_equal(np.asarray(im.convert("RGB")), decode(data))
    r = runner.invoke(main, ["models"])
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.stdout.splitlines() if ln.split()[0] == "gt")
    assert load_model("gt").model_id.hex() in line and "grid" in line


@pytest.mark.parametrize("cut", [1, 5, 200])
def test_cli_decode_truncated_grid_file(stream, tmp_path, cut):
    _, data, _ = stream
    src, out = tmp_path / "t.mscn", tmp_path / "t.png"
    src.write_bytes(data[:-cut])
    r = CliRunner().invoke(main, ["decode", str(src), "-o", str(out)])
    assert isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 3, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mscn: error:") and "truncated" in lines[0], r.stderr
    assert r.stdout == "" and "Traceback" not in r.output
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["t.mscn"]  # no (partial) output


def test_cli_decode_unknown_model_grid_file(stream, tmp_path):
    _, data, _ = stream
    src, out = tmp_path / "u.mscn", tmp_path / "u.png"
    src.write_bytes(_repack(data, model_id=b"\x03" * 8))
    r = CliRunner().invoke(main, ["decode", str(src), "-o", str(out)])
    assert r.exit_code == 3 and isinstance(r.exception, SystemExit)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not have" in lines[0] and lines[0].startswith("mscn: error:")
    assert not out.exists()


# ---------------------------------------------------------------- training

TINY = ["--arch", "grid", "--patch", "16", "--levels", "3", "--hidden", "8", "--batch", "2", "--val-every", "2",
        "--max-images", "2", "--no-progress", "--threads", "1"]


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    return photo_folder(tmp_path, 40)


def _train(monkeypatch, data: Path, out: Path, env: dict, *extra: str):
    args = ["train", "image", "--data", str(data), "--out", str(out), *TINY, *extra]
    monkeypatch.setattr(sys, "argv", ["mscn", *args])  # the card records the command line from sys.argv
    r = CliRunner().invoke(main, args, env=env)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r


def _ckpt(out: Path) -> dict:
    return torch.load(out.parent / f"{out.name}.run" / "checkpoint.pt", map_location="cpu", weights_only=False)


def _one_line_cli_error(r, code: int, words: str) -> None:
    assert isinstance(r.exception, SystemExit) and r.exit_code == code, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mscn: error:"), r.stderr
    assert words.lower() in lines[0].lower(), lines[0]
    assert r.stdout == ""


def test_train_grid_writes_model_and_card_then_resumes(tmp_path, env, data_dir, monkeypatch):
    out = tmp_path / "models" / "tg"
    r = _train(monkeypatch, data_dir, out, env, "--steps", "3")
    assert r.exit_code == 0, r.output
    pt, md = out.with_suffix(".pt"), out.with_suffix(".md")
    assert "wrote" in r.stdout and str(pt) in r.stdout
    assert pt.is_file() and md.is_file()
    state = torch.load(pt, map_location="cpu", weights_only=True)  # plain tensors and builtins only
    assert state["arch"] == "grid" and state["meta"]["steps"] == 3
    train_files, _ = split(list_images(data_dir), data_dir, 0.05)
    sha = data_hash(train_files[:2], data_dir)
    assert state["meta"]["data_sha256"] == sha
    card = md.read_text()
    assert sha in card and "sha256" in card
    assert "mscn train image" in card and "--arch grid" in card and "--steps 3" in card
    assert "3 outer steps" in card and load_model("tg").model_id.hex() in card
    ck = _ckpt(out)
    assert ck["step"] == 3 and [h["step"] for h in ck["history"]] == [2, 3]
    assert all(np.isfinite(h["psnr_mid"]) and h["bpp_mid"] > 0 for h in ck["history"])

    m = load_model("tg")
    assert isinstance(m, GridModel) and m.arch == "grid" and m.sparsity == "gates"
    assert m.cfg.levels == 3 and m.cfg.hidden == (8,) and m.cfg.align == 2 ** (m.cfg.first + 2)
    assert m.analysis and set(m.theta) == set(m.cfg.update_shapes())
    fresh = fresh_grid_model(m.cfg, name="tg", seed=0)
    assert any(not torch.equal(fresh.theta[k], v) for k, v in m.theta.items())  # training moved theta0
    theta3 = {k: v.clone() for k, v in m.theta.items()}
    img = synthetic_image(20, 28, seed=3)
    assert decode(encode_image(img, quality=50, model="tg", **FAST)).shape == img.shape

    r = _train(monkeypatch, data_dir, out, env, "--steps", "5", "--resume")
    assert r.exit_code == 0, r.output
    ck = _ckpt(out)
    assert ck["step"] == 5 and [h["step"] for h in ck["history"]] == [2, 3, 4, 5]  # continued, not restarted
    log = (out.parent / "tg.run" / "train.log").read_text()
    assert "# start step=0" in log and "# start step=3" in log
    card = md.read_text()
    assert "5 outer steps" in card and "resumed at steps 0, 3" in card
    assert "--resume" not in card and "--steps 5" in card
    models._cache.clear()
    m5 = load_model("tg")
    assert m5.meta["steps"] == 5
    assert any(not torch.equal(theta3[k], v) for k, v in m5.theta.items())


def test_train_grid_refuses_kodak(tmp_path, env, monkeypatch):
    data = tmp_path / "my-KODAK-copy"
    data.mkdir()
    Image.fromarray(synthetic_image(40, 40)).save(data / "kodim01.png")
    r = _train(monkeypatch, data, tmp_path / "models" / "k", env, "--steps", "2")
    _one_line_cli_error(r, 1, "kodak")
    assert not (tmp_path / "models").exists()


def test_train_grid_refuses_a_crop_not_aligned_to_the_grids(tmp_path, env, data_dir, monkeypatch):
    r = _train(monkeypatch, data_dir, tmp_path / "models" / "p", env, "--steps", "2", "--patch", "12")
    _one_line_cli_error(r, 1, "--patch 12")
    assert not (tmp_path / "models").exists()


def test_train_grid_refuses_bad_hidden(tmp_path, env, data_dir, monkeypatch):
    r = _train(monkeypatch, data_dir, tmp_path / "models" / "h", env, "--steps", "2", "--hidden", "8,x")
    _one_line_cli_error(r, 1, "--hidden")


def test_train_grid_never_writes_a_model_that_cannot_encode(tmp_path, env, data_dir, monkeypatch):
    r = _train(monkeypatch, data_dir, tmp_path / "models" / "l1", env, "--steps", "1", "--levels", "1",
               "--first", "1", "--patch", "8")
    if r.exit_code != 0:  # refusing the option cleanly is as good as coding with the model
        _one_line_cli_error(r, 1, "levels")
        return
    img = synthetic_image(20, 20, seed=0)
    assert decode(encode_image(img, quality=50, model="l1", **FAST)).shape == img.shape


def test_train_grid_resume_with_another_architecture_is_a_clean_error(tmp_path, env, data_dir, monkeypatch):
    out = tmp_path / "models" / "ra"
    assert _train(monkeypatch, data_dir, out, env, "--steps", "1").exit_code == 0
    r = _train(monkeypatch, data_dir, out, env, "--steps", "2", "--resume", "--hidden", "6")
    _one_line_cli_error(r, 1, "resume")
