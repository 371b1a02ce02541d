"""File I/O rules shared by every command: never overwrite by accident, never leave half a file."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np

from mscncodec.errors import InputError, MscnError

MAX_INPUT_BYTES = 1 << 30


def same_file(a: Path, b: Path) -> bool:
    """Whether a and b name the same file: equal once resolved (symlinks, "..", relative paths), or,
    both existing, the same inode (hard links, case-insensitive file systems)."""
    try:
        if Path(a).resolve() == Path(b).resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: fall through to samefile
        pass
    try:
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: Path, force: bool, src: Path | None = None) -> None:
    """Fail before any work if OUTPUT is the input `src` (even with --force), exists (without --force),
    or its folder does not."""
    if src is not None and same_file(src, path):
        raise MscnError(f"output {path} is the input file {src}: refusing to overwrite it (even with --force)")
    if path.exists() and not force:
        raise MscnError(f"{path} exists (use --force to overwrite)")
    if path.exists() and path.is_dir():
        raise MscnError(f"{path} is a directory")
    if not path.parent.resolve().is_dir():
        raise MscnError(f"output folder {path.parent} does not exist")


def atomic_write(path: Path, data: bytes, force: bool) -> None:
    check_output(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent.resolve())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_input(path: Path) -> None:
    """Fail if INPUT is a directory or no file at all (one line, naming which)."""
    if path.is_dir():
        raise InputError(f"cannot read {path}: is a directory")
    if not path.is_file():
        raise InputError(f"cannot read {path}: no such file")


def read_input(path: Path) -> bytes:
    check_input(path)
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise InputError(f"{path} is too large ({size} bytes)")
    return path.read_bytes()


def image_file_bytes(img: np.ndarray, suffix: str) -> bytes:
    """The bytes of an image file in the format an extension names."""
    from PIL import Image

    fmt = Image.registered_extensions().get(suffix.lower())
    if fmt is None:
        raise MscnError(f"unknown output image format {suffix!r} (use .png)")
    im = Image.fromarray(img)
    if im.mode == "RGBA" and fmt in ("JPEG", "BMP", "PPM"):
        im = im.convert("RGB")  # mscn only restores opaque alpha, so nothing is lost
    buf = io.BytesIO()
    # PNG at zlib level 1: the write was a quarter of a decode's wall time (docs/decisions/grid2-encoder.md)
    options = {"compress_level": 1} if fmt == "PNG" else {}
    try:
        im.save(buf, format=fmt, **options)
    except (OSError, ValueError, KeyError) as e:
        raise MscnError(f"cannot write {suffix} output: {e}") from None
    return buf.getvalue()
