"""The benchmark loop: every (image, codec, target bpp) point, resumable.

Each finished point is appended as one JSON line to ``OUT/cache.jsonl`` (:mod:`.cache`; seeded
from ``OUT/cache.jsonl.gz`` when only the archive is there), keyed by the image's content hash, the
codec id, the codec's declared identity at that point (:class:`.base.Keyed`) and the target.
A rerun (after a crash, Ctrl-C, or with more codecs/points) therefore only
encodes what is missing; renaming an image file does not invalidate it, but
editing its pixels does.  Failed points are not cached, so they are retried.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm  # tqdm.write: messages that do not break a live bar

from mscncodec._runtime import available_cpus, progress_bar
from mscncodec.bench import metrics
from mscncodec.bench.base import BenchError, Codec, available_codecs, require_extras
from mscncodec.bench.cache import CACHE_NAME, append_cache, load_cache, open_cache, refile
from mscncodec.bench.estimate import make_estimate
from mscncodec.bench.result import BenchResult, ImageRef

__all__ = ["BenchError", "BenchResult", "ImageRef", "CACHE_NAME", "DEFAULT_POINTS", "IMAGE_EXTS", "append_cache",
           "find_images", "load_cache", "load_image", "point_key", "prepare_images", "run_bench", "run_point"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
DEFAULT_POINTS: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0)


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
    """Cache key: content hash + codec id + the codec's identity at this point (or `version`) + target bpp."""
    v = codec.cache_version(target, (image.height, image.width)) if version is None else version
    return f"{image.sha1}|{codec.key}|{v}|{target:.6g}"


def legacy_keys(image: ImageRef, codec: Codec, target: float) -> list[str]:
    """The keys caches from before the identity scheme filed this point under (see :func:`.cache.refile`)."""
    return [point_key(image, codec, target, v) for v in codec.legacy_versions(target, (image.height, image.width))]


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


def _init_worker(parent_pid: int | None = None) -> None:
    """One BLAS/OpenMP thread per worker: ``--jobs`` is the parallelism knob, not torch. The worker ends
    with the bench that started it (``parent_pid``), even a killed one (issue 30)."""
    if parent_pid is not None:
        from mscncodec._runtime import die_with_parent

        die_with_parent(parent_pid)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if "torch" in sys.modules:  # the package __init__ may already have imported it
        sys.modules["torch"].set_num_threads(1)


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
    ``crops.png`` (:mod:`.crops`) is written beside ``rd.png``; ``report.html`` (:mod:`.html`) shows
    the curves, BD tables and those crops on one self-contained page.
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

    if plot:
        require_extras("matplotlib")  # before the work, not after it
    cache_path, cache = open_cache(out, echo)
    tasks = [(c, im, p) for im in refs for c in usable  # image-major: warm image cache
             for p in (slow_pts if c.slow else points)]
    keys = [point_key(im, c, p) for c, im, p in tasks]
    if (moved := refile(cache, cache_path, ((k, legacy_keys(im, c, p)) for (c, im, p), k in zip(tasks, keys)
                                             if k not in cache))):
        echo(f"re-filed {moved} cached points under their current cache keys (a one-time migration)")
    done = {k: cache.get(k) for k in keys}
    skip = set(report_only)
    pending = [t for t, k in zip(tasks, keys) if done[k] is None and t[0].key not in skip]
    pending_keys = [k for t, k in zip(tasks, keys) if done[k] is None and t[0].key not in skip]
    for c in dict.fromkeys(c for c, _, _ in pending):
        if (why := c.unmeasurable()):
            raise BenchError(f"cannot measure {c.key}: {why}")
    if pending:
        require_extras("pytorch_msssim")
    n_skipped = sum(1 for (c, _, _), k in zip(tasks, keys) if done[k] is None and c.key in skip)
    all_points = set(points) | (set(slow_pts) if any(c.slow for c in usable) else set())
    result = BenchResult(out, [], usable, sorted(all_points), refs,
                         cached=len(tasks) - len(pending) - n_skipped, notices=notices)

    crop_codecs = [c for c in usable if c.key not in skip and not c.unmeasurable()] if plot else []
    est = make_estimate([(c, im.name, im.height, im.width) for c, im, _ in pending],
                        min(jobs, available_cpus(), max(len(pending), 1)), crop_codecs, (refs[0].height, refs[0].width))
    echo(est.start_line(len(refs), result.cached))
    bar = progress_bar(total=len(tasks) - n_skipped, initial=result.cached, desc="bench", unit="pt", progress=progress)

    def finish(rec: dict[str, Any], index: int) -> None:
        # filed under the key this process gave the task: a worker can name a codec's version differently (heic
        # from a spawned process: a KeyError here, after every point was measured)
        rec["key"] = pending_keys[index]
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
            from mscncodec._runtime import quiet_resource_tracker

            quiet_resource_tracker()
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                     initargs=(os.getpid(),)) as pool:
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
    crops = None
    if crop_codecs:
        from mscncodec.bench.crops import write_crops

        crops = write_crops(load_image(str(refs[0].path)), refs[0].name, result.records, crop_codecs,
                            out / "crops.png", echo)
    from mscncodec.bench.html import write_html  # needs no matplotlib: written with --no-plot too

    write_html(result, crops, anchors=anchors)
    result.seconds = time.perf_counter() - t_start
    return result
