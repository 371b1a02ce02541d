"""The mesh bench's loop: every (mesh, codec, byte target) point, resumable from ``OUT/cache.jsonl``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mscncodec._runtime import progress_bar
from mscncodec.bench.base import BenchError, available_codecs, require_extras
from mscncodec.bench.cache import append_cache, open_cache, refile  # one cache for every bench
from mscncodec.bench.mesh.codecs import MeshCodec
from mscncodec.bench.mesh.data import (MeshBenchResult, MeshRef, _finite, decoded_path, load_mesh, prepare_meshes,
                                       render_target, save_ply)
from mscncodec.bench.mesh.report import write_reports


DEFAULT_SIZES: tuple[int, ...] = (2000, 4000, 8000)


DEFAULT_SAMPLES = 100_000


def point_key(ref: MeshRef, codec: MeshCodec, target: int, n_samples: int, seed: int, version: str | None = None) -> str:
    """Cache key: content hash | codec id | codec identity (or `version`) | target | metric definition and sampling."""
    from mscncodec.modalities.mesh_metrics import METRICS_VERSION

    v = codec.cache_version(int(target)) if version is None else version
    return f"{ref.sha1}|{codec.key}|{v}|{int(target)}|m{METRICS_VERSION}|n{n_samples}|s{seed}"


def run_mesh_point(codec: MeshCodec, ref: MeshRef, target: int, n_samples: int = DEFAULT_SAMPLES, seed: int = 0,
                   save_to: Path | None = None) -> dict[str, Any]:
    """Encode, decode and measure one (mesh, codec, target) point.  Errors become a record, not a crash."""
    from mscncodec.modalities.mesh_metrics import compare

    rec: dict[str, Any] = {
        "key": point_key(ref, codec, target, n_samples, seed),
        "mesh": ref.name, "codec": codec.key, "codec_name": codec.name, "target_bytes": int(target),
    }
    try:
        mesh = load_mesh(str(ref.path))
        enc = codec.encode(mesh, int(target), path=ref.path)
        t0 = time.perf_counter()
        dec = codec.decode(enc.data)
        dec_t = time.perf_counter() - t0
        t1 = time.perf_counter()
        m = compare(mesh, dec, n_samples=n_samples, seed=seed)
        rec.update({k: _finite(v) for k, v in m.items()})
        rec.update(
            bytes=len(enc.data), over_target=len(enc.data) > target, faces_out=int(len(dec.faces)),
            vertices_out=int(len(dec.vertices)), encode_time=enc.encode_time, search_time=enc.search_time,
            decode_time=dec_t, metric_time=time.perf_counter() - t1, config=enc.config,
        )
        if save_to is not None:
            save_ply(dec, save_to)
    except Exception as exc:  # one broken point must not sink a long run
        rec["error"] = f"{type(exc).__name__}: {exc}"
    return rec


def run_mesh_bench(
    paths: list[Path],
    codecs: list[MeshCodec],
    out: Path,
    sizes: Iterable[int] = DEFAULT_SIZES,
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    plot: bool = True,
    render: bool = True,
    echo: Callable[[str], None] = tqdm.write,
    progress: bool = True,
) -> MeshBenchResult:
    """Run every missing (mesh x codec x target) point, then write all reports into ``out``.

    Runs inline (one process): mesh points are few, and the metrics and
    decimation are native code.  Before starting it prints how many runs the
    grid has and how many are already cached.
    """
    t_start = time.perf_counter()
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] <= 0:
        raise BenchError("byte targets must be positive integers")
    try:
        import igl  # noqa: F401
    except ImportError as exc:
        raise BenchError(f"the mesh bench needs libigl for its metrics ({exc})") from exc
    if plot or render:
        require_extras("matplotlib")  # before the work, not after it
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    refs = prepare_meshes(paths)
    usable, notices = available_codecs(codecs)
    for n in notices:
        echo(n)

    cache_path, cache = open_cache(out, echo)
    shown = render_target(sizes)
    tasks = [(c, r, s) for r in refs for c in usable for s in sizes]
    keys = [point_key(r, c, s, n_samples, seed) for c, r, s in tasks]
    if (moved := refile(cache, cache_path, ((k, [point_key(r, c, s, n_samples, seed, v) for v in c.legacy_versions(s)])
                                             for (c, r, s), k in zip(tasks, keys) if k not in cache))):
        echo(f"re-filed {moved} cached points under their current cache keys (a one-time migration)")
    done = {k: cache.get(k) for k in keys}
    pending = [t for t, k in zip(tasks, keys) if done[k] is None]
    result = MeshBenchResult(out, [], usable, sizes, refs, cached=len(tasks) - len(pending), notices=notices)
    slow = sum(1 for c, _, _ in pending if c.slow)
    echo(f"mesh bench: {len(refs)} meshes x {len(usable)} codecs x {len(sizes)} sizes = {len(tasks)} runs "
         f"({result.cached} cached, {len(pending)} to run" + (f", {slow} of them fitted per mesh (slow)" if slow else "")
         + ")")

    bar = progress_bar(total=len(tasks), initial=result.cached, desc="mesh bench", unit="pt", progress=progress)
    try:
        for c, r, s in pending:
            bar.set_postfix_str(f"{c.key} {r.name} {s}B", refresh=False)
            rec = run_mesh_point(c, r, s, n_samples, seed, decoded_path(out, r, c, s) if s == shown else None)
            bar.update(1)
            if "error" in rec:
                result.failed += 1
                echo(f"failed {rec['codec']} {rec['mesh']} @ {s} bytes: {rec['error']}")
            else:
                result.encoded += 1
                append_cache(cache_path, rec)
            done[rec["key"]] = rec
    finally:
        bar.close()

    names = {k: r.name for (_, r, _), k in zip(tasks, keys)}  # cached rows may predate a rename
    result.records = [{**rec, "mesh": names[k]} for k, rec in done.items() if rec and "error" not in rec]
    write_reports(result, plot=plot, render=render, echo=echo)
    result.seconds = time.perf_counter() - t_start
    return result
