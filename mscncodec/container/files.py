"""File I/O rules shared by every command: never overwrite by accident, never leave half a file, and
an OS error while reading an input or writing an output (permission, a full disk, a file-size limit) is
one line naming the path and the cause (InputError, OutputError), not a traceback."""

from __future__ import annotations

import errno
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from mscncodec.errors import InputError, MscnError, OutputError

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


def _cause(e: OSError) -> str:
    """An OS error's cause in words ("Permission denied", "No space left on device")."""
    return e.strerror or (os.strerror(e.errno) if e.errno else str(e)) or type(e).__name__


def read_error(path: Path, e: OSError) -> InputError:
    """The one-line error of an input the OS refuses to read."""
    return InputError(f"cannot read {path}: {_cause(e)}")


def write_error(path: Path, e: OSError, what: str | None = None) -> OutputError:
    """The one-line error of an output the OS refuses to write ("cannot write PATH: cause", or `what`
    instead of "cannot write PATH"); `e.errno` is kept (OutputError.errno)."""
    hint = " (the file-size limit, ulimit -f)" if e.errno == errno.EFBIG else ""
    err = OutputError(f"{what or f'cannot write {path}'}: {_cause(e)}{hint}")
    err.errno = e.errno
    return err


def os_error(e: OSError) -> MscnError:
    """An OSError that escaped the checks above (a library opening a file itself), as one line naming the
    file where the OS said which."""
    return MscnError(f"{e.filename}: {_cause(e)}" if e.filename is not None else _cause(e))


def may_write_in(folder: Path) -> bool:
    """Whether this process may create files in `folder` (permissions, ACLs, a read-only mount), as far as
    the OS tells before trying."""
    return os.access(folder, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)


def check_output(path: Path, force: bool, src: Path | None = None) -> None:
    """Fail before any work if OUTPUT is the input `src` (even with --force), exists (without --force),
    or its folder does not; an OS error while looking (a folder we may not search) is an OutputError."""
    if src is not None and same_file(src, path):
        raise MscnError(f"output {path} is the input file {src}: refusing to overwrite it (even with --force)")
    try:
        exists = path.exists()
        if exists and not force:
            raise MscnError(f"{path} exists (use --force to overwrite)")
        if exists and path.is_dir():
            raise MscnError(f"{path} is a directory")
        folder = path.parent.resolve()
        if not folder.is_dir():
            raise MscnError(f"output folder {path.parent} does not exist")
        if not may_write_in(folder):  # before minutes of coding, not after
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as e:
        raise write_error(path, e) from None


def atomic_write(path: Path, data: bytes, force: bool) -> None:
    """Write `data` to `path` whole or not at all: a reader sees the old file or the whole new one, never a
    part, and a failure or a kill leaves nothing behind.

    Where the OS has unnamed files (Linux O_TMPFILE) the data goes into one in the output's folder, is
    synced, and only then gets a name: `path` itself without --force (the link fails if a file appeared
    there meanwhile: never overwritten), else a temporary ``.NAME.XXXX.part`` renamed over `path`, so even
    ``kill -9`` in the middle of the write leaves no file. Elsewhere the data goes to the ``.part`` file
    from the start. Any OS error (a read-only folder, a full disk, the file-size limit) removes what was
    written and is an OutputError naming `path`; an existing file is then left as it was."""
    check_output(path, force)
    folder = path.parent.resolve()
    try:
        fd = _unnamed_file(folder)
        if fd is None or not _write_unnamed(fd, path, folder, data, force):
            _write_part(path, folder, data)
    except OSError as e:
        if e.errno == errno.EEXIST and not force:
            raise MscnError(f"{path} exists (use --force to overwrite)") from None
        raise write_error(path, e) from None


def _unnamed_file(folder: Path) -> int | None:
    """A file open for writing in `folder` with no name yet (O_TMPFILE), or None where the OS or the file
    system has none; permissions as for any new file (0666 less the umask)."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not Path("/proc/self/fd").is_dir():  # naming it goes through /proc/self/fd
        return None
    try:
        return os.open(folder, os.O_WRONLY | flag | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):  # not on this file system
            return None
        raise


def _write_unnamed(fd: int, path: Path, folder: Path, data: bytes, force: bool) -> bool:
    """Write and sync the unnamed file `fd`, then name it (`path`, or a ``.part`` renamed over it with
    --force). False, with nothing written, where this file system cannot name it through /proc."""
    with os.fdopen(fd, "wb") as f:  # closed (and so freed) on any error
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        target = path if not force else folder / f".{path.name}.{os.urandom(4).hex()}.part"
        if not _link_fd(f.fileno(), target):
            return False
    if force:
        try:
            os.replace(target, path)
        except BaseException:
            _remove(target)
            raise
    return True


def _link_fd(fd: int, target: Path) -> bool:
    """Give the open file `fd` the name `target` (linkat through /proc/self/fd, following the link:
    os.link follows it only when given a directory fd); EEXIST where `target` exists. False where the file
    system refuses such a link."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(str(fd), target, src_dir_fd=proc, follow_symlinks=True)
    except OSError as e:
        if e.errno in (errno.EXDEV, errno.ENOENT, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
            return False
        raise
    finally:
        os.close(proc)
    return True


def _write_part(path: Path, folder: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
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
        _remove(tmp)
        raise


def _remove(path) -> None:
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def check_input(path: Path) -> None:
    """Fail if INPUT is a directory, no file at all, or one we may not read (one line, naming which)."""
    try:
        if path.is_dir():
            raise InputError(f"cannot read {path}: is a directory")
        if not path.is_file():
            raise InputError(f"cannot read {path}: no such file")
        with open(path, "rb"):  # before any work: a file we may not read (is_file excludes FIFOs)
            pass
    except OSError as e:  # a folder on the way we may not search, a file we may not read
        raise read_error(path, e) from None


def read_input(path: Path) -> bytes:
    check_input(path)
    try:
        size = path.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise InputError(f"{path} is too large ({size} bytes)")
        return path.read_bytes()
    except OSError as e:
        raise read_error(path, e) from None


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
