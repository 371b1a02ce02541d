"""The `mscn` command line: happy path, --force, and every user error as one clean line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from mscncodec.container import bitstream
from mscncodec.cli import main

from conftest import PROVISIONAL, synthetic_image

pytestmark = pytest.mark.usefixtures("isolated_models")

FAST = ["--model", PROVISIONAL, "--effort", "fast", "--steps", "2", "-q"]


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(inputs folder with a.png, empty output folder)."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    Image.fromarray(synthetic_image(40, 48, seed=9)).save(src / "a.png")
    return src, out


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


def _ok(result) -> None:
    assert result.exit_code == 0, (result.output, result.exception)


def _one_line_error(result, code: int, words: str) -> None:
    """Non-zero exit with `code`, one line on stderr naming the problem, no traceback, nothing on stdout."""
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mscn: error:"), lines[0]
    assert words.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_encode_info_decode(runner, dirs):
    src, out = dirs
    r = runner.invoke(main, ["encode", str(src / "a.png"), "-o", str(out / "a.mscn"), *FAST[:-1]])
    _ok(r)
    data = (out / "a.mscn").read_bytes()
    assert data[:4] == b"MSCN"
    assert f"{len(data)} bytes" in r.stdout and "PSNR" in r.stdout and PROVISIONAL in r.stdout

    r = runner.invoke(main, ["info", str(out / "a.mscn")])
    _ok(r)
    for f in bitstream.HEADER:
        assert f"{f.name}:" in r.stdout
    assert "MASK" in r.stdout and "VALS" in r.stdout and f"{len(data)} bytes" in r.stdout

    r = runner.invoke(main, ["info", "--json", str(out / "a.mscn")])
    _ok(r)
    d = json.loads(r.stdout)
    assert d["bytes"] == len(data) and d["header"]["width"] == "48" and d["header"]["model"] == PROVISIONAL

    r = runner.invoke(main, ["decode", str(out / "a.mscn"), "-o", str(out / "a.png")])
    _ok(r)
    with Image.open(out / "a.png") as im:
        assert im.size == (48, 40) and im.mode == "RGB"
    assert sorted(p.name for p in out.iterdir()) == ["a.mscn", "a.png"]  # no temporaries left


def test_files_get_normal_permissions(runner, dirs):
    src, out = dirs
    _ok(runner.invoke(main, ["encode", str(src / "a.png"), "-o", str(out / "a.mscn"), *FAST]))
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "a.mscn").stat().st_mode & 0o777 == 0o666 & ~umask


def test_force(runner, dirs):
    src, out = dirs
    target = out / "a.mscn"
    _ok(runner.invoke(main, ["encode", str(src / "a.png"), "-o", str(target), *FAST, "--quality", "10"]))
    first = target.read_bytes()

    r = runner.invoke(main, ["encode", str(src / "a.png"), "-o", str(target), *FAST, "--quality", "90"])
    _one_line_error(r, 1, "exists")
    assert target.read_bytes() == first

    _ok(runner.invoke(main, ["encode", str(src / "a.png"), "-o", str(target), *FAST, "--quality", "90", "--force"]))
    second = target.read_bytes()
    assert second != first and len(second) > len(first)

    png = out / "a.png"
    png.write_bytes(b"keep me")
    r = runner.invoke(main, ["decode", str(target), "-o", str(png)])
    _one_line_error(r, 1, "exists")
    assert png.read_bytes() == b"keep me"
    _ok(runner.invoke(main, ["decode", str(target), "-o", str(png), "--force"]))
    with Image.open(png) as im:
        assert im.size == (48, 40)
    assert sorted(p.name for p in out.iterdir()) == ["a.mscn", "a.png"]


# ------------------------------------------------------------------ bad input: one clean line, nothing written


@pytest.fixture()
def stream(runner, dirs) -> Path:
    """A valid .mscn in the inputs folder."""
    src, _ = dirs
    p = src / "a.mscn"
    _ok(runner.invoke(main, ["encode", str(src / "a.png"), "-o", str(p), *FAST]))
    return p


def _variant(stream: Path, name: str, fn) -> Path:
    p = stream.with_name(name)
    p.write_bytes(fn(bytearray(stream.read_bytes())))
    return p


def _set(b: bytearray, pos: int, value: int) -> bytes:
    b[pos] = value
    return bytes(b)


def _flip_last(b: bytearray) -> bytes:
    b[-1] ^= 0xFF
    return bytes(b)


CASES = {
    # name: (argv builder (src, out, stream) -> args, exit code, words in the message)
    "missing-input": (lambda s, o, m: ["encode", str(s / "nope.png"), "-o", str(o / "x.mscn")], 2, "no such file"),
    "text-as-png": (lambda s, o, m: ["encode", str(s / "t.png"), "-o", str(o / "x.mscn")], 2, "not an image"),
    "truncated": (lambda s, o, m: ["decode", str(_variant(m, "t.mscn", lambda b: bytes(b[:-7]))),
                                   "-o", str(o / "x.png")], 3, "truncated"),
    "crc": (lambda s, o, m: ["decode", str(_variant(m, "c.mscn", _flip_last)), "-o", str(o / "x.png")], 3, "CRC"),
    "magic": (lambda s, o, m: ["decode", str(_variant(m, "m.mscn", lambda b: _set(b, 0, ord("X")))),
                               "-o", str(o / "x.png")], 3, "magic"),
    "version": (lambda s, o, m: ["decode", str(_variant(m, "v.mscn", lambda b: _set(b, 4, 99))),
                                 "-o", str(o / "x.png")], 3, "version"),
    "foreign-png": (lambda s, o, m: ["decode", str(s / "a.png"), "-o", str(o / "x.png")], 3, "not a .mscn"),
    "info-truncated": (lambda s, o, m: ["info", str(_variant(m, "t2.mscn", lambda b: bytes(b[:20])))], 3, "mscn"),
    "missing-folder-encode": (lambda s, o, m: ["encode", str(s / "a.png"), "-o", str(o / "sub" / "x.mscn")], 1,
                              "does not exist"),
    "missing-folder-decode": (lambda s, o, m: ["decode", str(m), "-o", str(o / "sub" / "x.png")], 1, "does not exist"),
    "unknown-model": (lambda s, o, m: ["encode", str(s / "a.png"), "-o", str(o / "x.mscn"), "--model", "nope-w1"],
                      1, "unknown model"),
    "bpp-and-quality": (lambda s, o, m: ["encode", str(s / "a.png"), "-o", str(o / "x.mscn"), "--bpp", "1",
                                         "--quality", "50"], 1, "--bpp or --quality"),
    "bpp-too-low": (lambda s, o, m: ["encode", str(s / "a.png"), "-o", str(o / "x.mscn"), *FAST, "--bpp", "0.001"],
                    4, "bpp"),
    "unknown-output-format": (lambda s, o, m: ["decode", str(m), "-o", str(o / "x.xyz")], 1, "format"),
    # Pillow refuses to save: RGB as XBM (OSError), no GRIB save handler installed (OSError)
    "unwritable-output-mode": (lambda s, o, m: ["decode", str(m), "-o", str(o / "x.xbm")], 1, "cannot write .xbm"),
    "no-save-handler": (lambda s, o, m: ["decode", str(m), "-o", str(o / "x.grib")], 1, "cannot write .grib"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clean_line_and_writes_nothing(runner, dirs, stream, case):
    src, out = dirs
    (src / "t.png").write_text("this is not a PNG\n")
    build, code, words = CASES[case]
    args = build(src, out, stream)
    before_in, before_out = _listing(src), _listing(out)
    r = runner.invoke(main, args)
    assert _listing(out) == before_out  # no output, no .part temporary, no new folder
    assert _listing(src) == before_in
    assert not (out / "sub").exists()
    _one_line_error(r, code, words)


def test_bpp_and_quality_together_is_refused_cleanly(runner, dirs):
    """--bpp with --quality is an MscnError: one `mscn: error:` line, exit 1, nothing written."""
    src, out = dirs
    r = runner.invoke(main, ["encode", str(src / "a.png"), "-o", str(out / "x.mscn"), "--bpp", "1", "--quality", "5"])
    _one_line_error(r, 1, "give only one of --bpp or --quality")
    assert "Usage:" not in r.output
    assert _listing(out) == {}


@pytest.fixture()
def rgba_stream(runner, dirs) -> tuple[Path, np.ndarray]:
    """A 4-channel (opaque alpha) .mscn in the inputs folder, and what it decodes to."""
    import mscncodec

    src, _ = dirs
    rgba = np.dstack([synthetic_image(24, 24, seed=3), np.full((24, 24), 255, np.uint8)])
    Image.fromarray(rgba).save(src / "rgba.png")
    _ok(runner.invoke(main, ["encode", str(src / "rgba.png"), "-o", str(src / "rgba.mscn"), *FAST]))
    decoded = mscncodec.decode((src / "rgba.mscn").read_bytes())
    assert decoded.shape == (24, 24, 4) and (decoded[:, :, 3] == 255).all()
    return src / "rgba.mscn", decoded


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg"])
def test_rgba_stream_to_jpeg_drops_the_opaque_alpha(runner, dirs, rgba_stream, suffix):
    _, out = dirs
    stream, decoded = rgba_stream
    r = runner.invoke(main, ["decode", str(stream), "-o", str(out / f"x{suffix}")])
    _ok(r)
    assert r.stderr == "" and "Traceback" not in r.output
    assert sorted(p.name for p in out.iterdir()) == [f"x{suffix}"]  # no temporaries left
    with Image.open(out / f"x{suffix}") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (24, 24)
        jpeg = np.asarray(im)
    # the colour channels are the decoded ones, up to JPEG loss (measured: mean |diff| 10.0 on this noisy
    # 24x24 decode with 4:2:0 chroma, per-channel mean shift < 0.25; a dropped/swapped channel is off by > 50)
    diff = jpeg.astype(int) - decoded[:, :, :3].astype(int)
    assert np.abs(diff).mean() < 16
    assert (np.abs(diff.reshape(-1, 3).mean(0)) < 2).all()


def test_rgba_stream_to_png_keeps_the_alpha(runner, dirs, rgba_stream):
    _, out = dirs
    stream, decoded = rgba_stream
    _ok(runner.invoke(main, ["decode", str(stream), "-o", str(out / "x.png")]))
    with Image.open(out / "x.png") as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im), decoded)


def test_pillow_save_error_is_one_clean_line(runner, dirs, rgba_stream):
    """RGBA cannot be saved as PCX (Pillow raises ValueError): an MscnError, nothing written."""
    _, out = dirs
    stream, _ = rgba_stream
    r = runner.invoke(main, ["decode", str(stream), "-o", str(out / "x.pcx")])
    _one_line_error(r, 1, "cannot write .pcx")
    assert _listing(out) == {}


def test_cli_reads_mscn_threads_at_start(runner, monkeypatch):
    before = torch.get_num_threads()
    try:
        for n in (2, 1):
            torch.set_num_threads(3)
            monkeypatch.setenv("MSCN_THREADS", str(n))
            _ok(runner.invoke(main, ["models"]))
            assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)


def _mscn_command() -> list[str]:
    exe = Path(sys.executable).with_name("mscn")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("mscn")
    return [found] if found else [sys.executable, "-m", "mscncodec.cli"]


def test_real_process_exit_code_and_stderr(dirs, stream, tmp_path):
    src, out = dirs
    bad = _variant(stream, "trunc.mscn", lambda b: bytes(b[:-3]))
    env = dict(os.environ, MSCN_THREADS="1")
    p = subprocess.run([*_mscn_command(), "decode", str(bad), "-o", str(out / "x.png")], capture_output=True,
                       text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mscn: error:") and "truncated" in lines[0], p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    assert _listing(out) == {}


# ------------------------------------------------------------------ unreachable rates: every architecture


@pytest.fixture()
def arch_models(env) -> Path:
    """A models folder with one tiny untrained model of each image architecture (--arch picks it)."""
    from mscncodec.families.grid2 import config as grid2
    from mscncodec.families.grid2.model import fresh_grid2_model
    from mscncodec.families.siren.model import fresh_model
    from mscncodec.families.siren.network import SirenConfig

    d = Path(env["MSCN_MODELS"])
    d.mkdir()
    fresh_model(SirenConfig(width=8, depth=3), name="tiny-siren", patch=16).save(d / "tiny-siren.pt")
    fresh_grid2_model(grid2.Grid2Config(levels=3, hidden=(8,), arm_hidden=6, analysis=4), name="tiny-grid2").save(
        d / "tiny-grid2.pt")
    return d


@pytest.mark.parametrize("arch", ["siren", "grid2"])
@pytest.mark.parametrize("target", [["--bpp", "0.001"], ["--bytes", "1"]])
def test_unreachable_rate_is_a_rate_error_for_every_arch(runner, tmp_path, arch_models, monkeypatch, arch, target):
    """0.001 bpp of a 32x32 image is 0 bytes (it was a ZeroDivisionError in the grid encoder): a RateError
    naming the minimum in bpp and bytes, found before any fitting, and no file."""
    from mscncodec.errors import RateError
    from mscncodec.families.grid2 import refine as g2refine
    from mscncodec.families.siren import image as siren_image

    def no_fitting(*a, **k):
        raise AssertionError("the encoder fitted before refusing an unreachable size")

    for mod, name in ((siren_image, "fit_and_pack"), (g2refine, "refine"), (g2refine, "Adam")):
        monkeypatch.setattr(mod, name, no_fitting)
    Image.fromarray(synthetic_image(32, 32, seed=2)).save(tmp_path / "small.png")
    r = runner.invoke(main, ["encode", str(tmp_path / "small.png"), "-o", str(tmp_path / "x.mscn"), "--arch", arch,
                             *target])
    _one_line_error(r, RateError.exit_code, "below this codec's minimum for a 32x32 image")
    line = r.stderr.strip()
    want = "(0 bytes)" if target[0] == "--bpp" else "(1 bytes)"
    assert want in line and " bpp (" in line.split("minimum")[1], line  # names the minimum: "N bpp (M bytes)"
    floor = int(line.rsplit("bpp (", 1)[1].split(" bytes)")[0])
    assert floor > 32  # at least the container's header
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "small.png"]  # no output, no temporary


def test_siren_minimum_named_is_reachable(tmp_path, arch_models):
    """The SIREN floor the error names is exact: a target of that many bytes encodes, one byte less does not."""
    from mscncodec.errors import RateError
    from mscncodec.modalities.image_codec import encode_image

    img = synthetic_image(32, 32, seed=2)
    with pytest.raises(RateError) as ei:
        encode_image(img, target_bytes=1, arch="siren", effort="fast", steps=1)
    floor = int(str(ei.value).rsplit("bpp (", 1)[1].split(" bytes)")[0])
    assert len(encode_image(img, target_bytes=floor, arch="siren", effort="fast", steps=1)) == floor
    with pytest.raises(RateError):
        encode_image(img, target_bytes=floor - 1, arch="siren", effort="fast", steps=1)


# ------------------------------------------------------------------ the output must never be the input


def _same_file_as(kind: str, target: Path) -> Path:
    """A path naming `target`: itself, a symlink, a hard link, or a detour through the parent folder."""
    if kind == "same":
        return target
    if kind == "dotdot":
        return target.parent / ".." / target.parent.name / target.name
    link = target.with_name(f"link-{kind}{target.suffix}")
    if kind == "symlink":
        link.symlink_to(target.name)
    else:
        os.link(target, link)
    return link


@pytest.mark.parametrize("force", [[], ["--force"]])
@pytest.mark.parametrize("kind", ["same", "symlink", "hardlink", "dotdot"])
def test_encode_refuses_to_overwrite_its_input(runner, dirs, kind, force):
    src, _ = dirs
    photo = src / "a.png"
    before = photo.read_bytes()
    out = _same_file_as(kind, photo)
    listing = _listing(src)
    r = runner.invoke(main, ["encode", str(photo), "-o", str(out), *FAST, *force])
    _one_line_error(r, 1, "is the input file")
    assert photo.read_bytes() == before and _listing(src) == listing  # no .part temporary either
    if kind == "symlink":
        assert out.is_symlink()


@pytest.mark.parametrize("kind", ["same", "symlink", "hardlink"])
def test_encode_refuses_an_input_link_to_its_output(runner, dirs, kind):
    """The other way round: the input is a link to the (existing) output."""
    src, _ = dirs
    photo = src / "a.png"
    before = photo.read_bytes()
    link = _same_file_as(kind, photo)
    r = runner.invoke(main, ["encode", str(link), "-o", str(photo), *FAST, "--force"])
    _one_line_error(r, 1, "is the input file")
    assert photo.read_bytes() == before


@pytest.mark.parametrize("kind", ["same", "symlink", "hardlink", "dotdot"])
def test_decode_refuses_to_overwrite_its_input(runner, stream, kind):
    before = stream.read_bytes()
    out = _same_file_as(kind, stream)
    r = runner.invoke(main, ["decode", str(stream), "-o", str(out), "--force"])
    _one_line_error(r, 1, "is the input file")
    assert stream.read_bytes() == before


def test_distinct_output_with_force_still_works(runner, dirs, stream):
    """The check compares files, not names: another file (even one with the same content) is overwritten."""
    src, out = dirs
    twin = out / "twin.mscn"
    twin.write_bytes(stream.read_bytes())
    _ok(runner.invoke(main, ["encode", str(src / "a.png"), "-o", str(twin), *FAST, "--quality", "90", "--force"]))
    assert twin.read_bytes() != stream.read_bytes()


@pytest.mark.parametrize("cmd", ["encode", "decode"])
def test_directory_input_is_named_as_such(runner, dirs, cmd):
    src, out = dirs
    folder = src / "folder.obj"  # a mesh suffix: the check does not depend on the modality
    folder.mkdir()
    for given in (src, folder):
        r = runner.invoke(main, [cmd, str(given), "-o", str(out / ("x.mscn" if cmd == "encode" else "x.png"))])
        _one_line_error(r, 2, "is a directory")
        assert "no such file" not in r.stderr
    assert _listing(out) == {}


# ------------------------------------------------------------------ what the summary and stderr say


def _psnr_printed(stdout: str) -> float:
    return float(stdout.split("PSNR ")[1].split(" dB")[0])


@pytest.mark.parametrize("channels", [3, 1])
def test_reported_psnr_is_that_of_the_written_file(runner, tmp_path, channels):
    """The PSNR `mscn encode` prints is measured on decode() of the exact bytes it wrote."""
    import mscncodec
    from mscncodec.modalities import image as imod

    img = synthetic_image(24, 40, seed=5, channels=channels)
    Image.fromarray(img).save(tmp_path / "a.png")
    r = runner.invoke(main, ["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.mscn"), *FAST[:-1]])
    _ok(r)
    decoded = mscncodec.decode((tmp_path / "a.mscn").read_bytes())
    assert decoded.shape == img.shape
    measured = imod.psnr(img, decoded)
    assert _psnr_printed(r.stdout) == pytest.approx(measured, abs=0.005)  # printed with 2 decimals
    # and the report itself, to full precision, from the Python API (deterministic: the same bytes)
    from mscncodec.modalities.image_codec import encode_image

    data, report = encode_image(tmp_path / "a.png", model=PROVISIONAL, effort="fast", steps=2, return_report=True)
    assert data == (tmp_path / "a.mscn").read_bytes()
    assert report["psnr"] == imod.psnr(img, mscncodec.decode(data)) and report["bytes"] == len(data)


def test_no_progress_bars_when_stderr_is_not_a_terminal(runner, dirs):
    """Without -q the encoder asks for bars, but CliRunner's stderr is no terminal: nothing on stderr."""
    src, out = dirs
    r = runner.invoke(main, ["encode", str(src / "a.png"), "-o", str(out / "a.mscn"), "--model", PROVISIONAL,
                             "--effort", "fast", "--steps", "3"])
    _ok(r)
    assert r.stderr == "" and "PSNR" in r.stdout


def test_progress_helper_follows_the_terminal(monkeypatch):
    from mscncodec import _runtime

    class Stream:
        def __init__(self, tty: bool):
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

        def write(self, s):  # tqdm may write to it
            return len(s)

        def flush(self):
            pass

    for tty, asked, shown in ((True, True, True), (True, False, False), (False, True, False)):
        monkeypatch.setattr(sys, "stderr", Stream(tty))
        assert _runtime.show_progress(asked) is shown
        bar = _runtime.progress_bar(range(3), progress=asked)
        assert bar.disable is (not shown)
        assert list(bar) == [0, 1, 2]
    monkeypatch.setattr(sys, "stderr", None)
    assert _runtime.show_progress(True) is False


def test_16_bit_png_round_trip_keeps_its_brightness(runner, tmp_path):
    """A 0..65535 ramp comes back with mean ~127 (it was clipped to 255 almost everywhere: mean 248)."""
    ramp = np.tile(np.round(np.linspace(0, 65535, 64)).astype(np.uint16), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    _ok(runner.invoke(main, ["encode", str(tmp_path / "ramp16.png"), "-o", str(tmp_path / "r.mscn"), "--model",
                             PROVISIONAL, "--effort", "fast", "--steps", "40", "-q"]))
    _ok(runner.invoke(main, ["decode", str(tmp_path / "r.mscn"), "-o", str(tmp_path / "r.png")]))
    with Image.open(tmp_path / "r.png") as im:
        assert im.mode == "L" and im.size == (64, 32)
        out = np.asarray(im).astype(float)
    assert abs(out.mean() - 127.5) < 12, out.mean()


def test_exif_rotated_jpeg_decodes_upright(runner, tmp_path):
    stored = np.zeros((64, 96, 3), np.uint8)
    stored[:32] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "r.jpg", exif=exif, quality=95)
    _ok(runner.invoke(main, ["encode", str(tmp_path / "r.jpg"), "-o", str(tmp_path / "r.mscn"), *FAST]))
    _ok(runner.invoke(main, ["decode", str(tmp_path / "r.mscn"), "-o", str(tmp_path / "r.png")]))
    with Image.open(tmp_path / "r.png") as im:
        assert im.size == (64, 96)  # as every viewer shows the JPEG, not its stored 96x64
