"""The benchmark loop: every (image, codec, target bpp) point, resumable.

Each finished point is appended as one JSON line to ``OUT/cache.jsonl``,
keyed by the image's content hash, the codec id and version, and the target.
A rerun (after a crash, Ctrl-C, or with more codecs/points) therefore only
encodes what is missing; renaming an image file does not invalidate it, but
editing its pixels does.  Failed points are not cached, so they are retried.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm  # tqdm.write: messages that do not break a live bar

from mscncodec._runtime import available_cpus, progress_bar
from mscncodec.bench import metrics
from mscncodec.bench.base import Codec, available_codecs
from mscncodec.bench.estimate import make_estimate

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
DEFAULT_POINTS: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0)
CACHE_NAME = "cache.jsonl"


class BenchError(Exception):
    """A user-facing problem (bad dataset, unreadable image): reported in one line."""


@dataclass(frozen=True)
class ImageRef:
    """An input image identified by content, so the cache survives renames."""

    path: Path
    name: str
    sha1: str
    height: int
    width: int


@dataclass
class BenchResult:
    """What a run produced; the CLI prints from it and tests inspect it."""

    out: Path
    records: list[dict[str, Any]]
    codecs: list[Codec]
    points: list[float]
    images: list[ImageRef]
    encoded: int = 0
    cached: int = 0
    failed: int = 0
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)
    bd: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- images


def find_images(directory: Path, limit: int | None = None) -> list[Path]:
    """Image files directly inside ``directory``, sorted by name (stable subsets with --limit)."""
    try:
        files = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_EXTS)
    except OSError as exc:
        raise BenchError(f"cannot read dataset directory {directory}: {exc.strerror or exc}") from exc
    if not files:
        raise BenchError(f"no images ({', '.join(IMAGE_EXTS)}) found in {directory}")
    return files[:limit] if limit else files


@lru_cache(maxsize=4)
def load_image(path: str) -> np.ndarray:
    """Decode to HxWx3 uint8 RGB (alpha dropped, grey expanded); read-only to guard the cache."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB")).copy()
    arr.setflags(write=False)
    return arr


def prepare_images(paths: Iterable[Path]) -> list[ImageRef]:
    """Hash and decode each image once up front, so a bad file fails before hours of work."""
    refs = []
    for p in paths:
        try:
            sha1 = hashlib.sha1(Path(p).read_bytes()).hexdigest()
            h, w = load_image(str(p)).shape[:2]
        except Exception as exc:
            raise BenchError(f"cannot read image {p}: {exc}") from exc
        refs.append(ImageRef(Path(p), Path(p).name, sha1, h, w))
    return refs


# --------------------------------------------------------------------------- one point


def point_key(image: ImageRef, codec: Codec, target: float, version: str | None = None) -> str:
    """Cache key: content hash + codec id + the codec's version for this point (or `version`) + target bpp."""
    v = codec.version_at(target, (image.height, image.width)) if version is None else version
    return f"{image.sha1}|{codec.key}|{v}|{target:.6g}"


def rekey(cache: dict[str, dict[str, Any]], path: Path, tasks: list, keys: list[str]) -> int:
    """File under its per-point key each point that is cached only under its codec's legacy key.

    Sound only because a legacy key is the codec's version *now* (e.g. a hash of every model and route
    the router has today): a hit means the point was measured by exactly today's configuration, whose
    per-point version is the new key. Once the configuration changes the legacy key changes too and
    nothing more is re-filed, so this carries an old cache across the change of key scheme once."""
    moved = 0
    for (c, im, p), k in zip(tasks, keys):
        legacy = c.legacy_version()
        if k in cache or legacy is None:
            continue
        old = cache.get(point_key(im, c, p, legacy))
        if old is not None:
            cache[k] = {**old, "key": k}
            append_cache(path, cache[k])
            moved += 1
    return moved


def _finite(x: float) -> float | None:
    """JSON has no NaN/inf: store them as null."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def run_point(codec: Codec, image: ImageRef, target: float) -> dict[str, Any]:
    """Encode, decode and measure one point.  Errors become a record, not a crash."""
    rec: dict[str, Any] = {
        "key": point_key(image, codec, target),
        "image": image.name,
        "codec": codec.key,
        "codec_name": codec.name,
        "target_bpp": target,
    }
    try:
        img = load_image(str(image.path))
        data, quality, enc_t = codec.timed_encode_at_bpp(img, target)
        t0 = time.perf_counter()
        out = codec.decode(data)
        dec_t = time.perf_counter() - t0
        m = metrics.mse(img, out)
        rec.update(
            bpp=metrics.bpp(data, img.shape),
            bytes=len(data),
            psnr=_finite(metrics.psnr_from_mse(m)),
            mse=m,
            ms_ssim=_finite(metrics.ms_ssim(img, out)),
            encode_time=enc_t,
            decode_time=dec_t,
            quality=quality,
        )
    except Exception as exc:  # one broken point must not sink a multi-hour run
        rec["error"] = f"{type(exc).__name__}: {exc}"
    return rec


def _init_worker() -> None:
    """One BLAS/OpenMP thread per worker: ``--jobs`` is the parallelism knob, not torch."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if "torch" in sys.modules:  # the package __init__ may already have imported it
        sys.modules["torch"].set_num_threads(1)


# --------------------------------------------------------------------------- cache


def load_cache(path: Path) -> dict[str, dict[str, Any]]:
    """Read finished points; a torn last line (killed mid-write) is ignored."""
    cache: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "key" in rec and "error" not in rec:
                cache[rec["key"]] = rec
    return cache


def append_cache(path: Path, rec: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


# --------------------------------------------------------------------------- run


def run_bench(
    images: list[Path],
    codecs: list[Codec],
    out: Path,
    points: Iterable[float] = DEFAULT_POINTS,
    jobs: int = 1,
    slow_points: Iterable[float] | None = None,
    plot: bool = True,
    anchors: bool = True,
    echo: Callable[[str], None] = tqdm.write,
    progress: bool = True,
    report_only: Iterable[str] = (),
) -> BenchResult:
    """Run every missing point, then write all reports into ``out``.

    ``jobs=1`` runs inline (debuggable, no pickling); ``jobs>1`` uses spawned
    worker processes -- spawn rather than fork because forking a process that
    already initialised torch/OpenMP threads can deadlock the children.
    ``report_only``: codec keys whose missing points are not computed (their
    cached points are still reported): keeps an expensive old codec's rows in a
    report whose point list has grown.  The estimated time is echoed before any
    work and again, corrected, once the first image is done; with ``plot``,
    ``crops.png`` (:mod:`.crops`) is written beside ``rd.png``.
    """
    from mscncodec.bench import report  # late: keeps `import runner` light for the CLI's --help

    t_start = time.perf_counter()
    points = sorted({float(p) for p in points})
    slow_pts = sorted({float(p) for p in slow_points}) if slow_points else points
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    refs = prepare_images(images)
    usable, notices = available_codecs(codecs)
    for n in notices:
        echo(n)

    cache_path = out / CACHE_NAME
    cache = load_cache(cache_path)
    tasks = [(c, im, p) for im in refs for c in usable  # image-major: warm image cache
             for p in (slow_pts if c.slow else points)]
    keys = [point_key(im, c, p) for c, im, p in tasks]
    if (moved := rekey(cache, cache_path, tasks, keys)):
        echo(f"re-filed {moved} cached points under per-point keys")
    done = {k: cache.get(k) for k in keys}
    skip = set(report_only)
    pending = [t for t, k in zip(tasks, keys) if done[k] is None and t[0].key not in skip]
    n_skipped = sum(1 for (c, _, _), k in zip(tasks, keys) if done[k] is None and c.key in skip)
    all_points = set(points) | (set(slow_pts) if any(c.slow for c in usable) else set())
    result = BenchResult(out, [], usable, sorted(all_points), refs,
                         cached=len(tasks) - len(pending) - n_skipped, notices=notices)

    crop_codecs = [c for c in usable if c.key not in skip] if plot else []
    est = make_estimate([(c, im.name, im.height, im.width) for c, im, _ in pending],
                        min(jobs, available_cpus(), max(len(pending), 1)), crop_codecs, (refs[0].height, refs[0].width))
    echo(est.start_line(len(refs), result.cached))
    bar = progress_bar(total=len(tasks) - n_skipped, initial=result.cached, desc="bench", unit="pt", progress=progress)

    def finish(rec: dict[str, Any], index: int) -> None:
        bar.update(1)
        refined = est.done(index)
        if refined:
            echo(refined)
        if "error" in rec:
            result.failed += 1
            echo(f"failed {rec['codec']} {rec['image']} @ {rec['target_bpp']:g} bpp: {rec['error']}")
        else:
            result.encoded += 1
            append_cache(cache_path, rec)
        done[rec["key"]] = rec

    try:
        if jobs <= 1:
            for i, (c, im, p) in enumerate(pending):
                bar.set_postfix_str(f"{c.key} {im.name} {p:g}", refresh=False)
                finish(run_point(c, im, p), i)
        elif pending:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker) as pool:
                futs: dict[Future, int] = {pool.submit(run_point, *t): i for i, t in enumerate(pending)}
                try:
                    for fut in as_completed(futs):
                        finish(fut.result(), futs[fut])
                except KeyboardInterrupt:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                except BrokenProcessPool as exc:  # a codec crashed hard (e.g. segfault, OOM kill)
                    raise BenchError(f"a worker process died ({exc}); rerun to resume from the cache") from exc
    finally:
        bar.close()

    names = {k: im.name for (_, im, _), k in zip(tasks, keys)}  # cached rows may predate a rename
    result.records = [{**r, "image": names[k]} for k, r in done.items() if r and "error" not in r]
    result.bd = report.write_reports(result, plot=plot, anchors=anchors)
    if crop_codecs:
        from mscncodec.bench.crops import write_crops

        write_crops(load_image(str(refs[0].path)), refs[0].name, result.records, crop_codecs,
                    out / "crops.png", echo)
    result.seconds = time.perf_counter() - t_start
    return result
