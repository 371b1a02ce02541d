"""A netCDF file's global fields into a zarr v3 store, chunk by chunk, by Dask: serially here or on a cluster.

``encode_to_zarr`` opens the file with xarray, chunks every selected lat-lon variable by time (``chunk_steps``
steps per chunk, one level per chunk, the whole grid), gives it the ``mscn`` codec (``mscncodec.numcodecs``;
the coordinates keep zarr's lossless default) and writes the store with ``Dataset.to_zarr``. The same graph
runs on dask's synchronous scheduler in this process (``jobs=1``), on a ``LocalCluster`` of ``jobs`` worker
processes, or on a running ``dask.distributed`` cluster (``scheduler=ADDRESS``): each chunk is one task that
reads its steps from the file, encodes them and writes its chunk file, so what travels between the client,
the scheduler and the workers is the graph and the tasks' small results, never the fields. On a cluster of
other machines the input file and the store's folder must therefore be on a file system every worker sees.

Every encode runs on one torch thread (in this process while it encodes, and in every worker through a
worker plugin): a float reduction split over another number of threads may round differently, and then the
bytes of a chunk would depend on the machine that happened to run it. So the store is the same byte for byte
whichever scheduler wrote it.

The store is written under a temporary name beside the target (``.NAME.XXXXXXXX.part``) and renamed once
complete: a failure or an interrupt leaves no half-written store at the target, and an existing one is
replaced only with ``force`` (after the new one is complete). ``decode_to_netcdf`` reads a store back with
``xr.open_zarr`` and writes a netCDF file, the same way (a temporary file renamed).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mscncodec.errors import InputError, MscnError

DEFAULT_CHUNK_STEPS = 12  # a year of monthly fields: steps coded together share their redundancy in time
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MSCN_THREADS": "1"}
NETCDF_SUFFIXES = (".nc", ".nc4")
CONNECT_TIMEOUT_S = 20  # how long --scheduler ADDRESS waits for the scheduler to answer


# ------------------------------------------------------------------ choosing what to encode

def _lat_lon_names(src: Path, var: str | Sequence[str] | None) -> list[str]:
    """The variables to encode: `var` (one name or several), else every global lat-lon variable of the file;
    an unknown name or a variable that is not lat-lon is a one-line InputError (the file is read with the
    package's own netCDF checks first: a truncated or damaged file is refused the same way as by `mscn encode`)."""
    from mscncodec.modalities import series as ser
    from mscncodec.modalities import sphere as smod

    with smod._open_nc(src) as ds:
        if var is None:
            names = ser._lat_lon_vars(ds)
            if not names:
                raise InputError(f"{src} has no latitude-longitude variable")
            return names
        names = [var] if isinstance(var, str) else list(var)
        if not names:
            raise MscnError("no variable named: give --var NAME (or leave it out for every lat-lon variable)")
        for n in names:
            if n not in ds.variables:
                found = ", ".join(ser._lat_lon_vars(ds)) or "none"
                raise InputError(f"{src} has no variable {n!r} (lat-lon variables: {found})")
            smod._coord_dims(ds, ds.variables[n])  # a one-line InputError where it is not lat-lon
        return list(dict.fromkeys(names))


def open_fields(src: str | Path, var: str | Sequence[str] | None = None, chunk_steps: int = DEFAULT_CHUNK_STEPS):
    """The selected lat-lon variables of netCDF file `src` as an xarray Dataset of dask arrays, one chunk per
    `chunk_steps` time steps and per level, the whole grid in every chunk; their coordinates come along.
    Times stay numbers with their units (decode_times=False): calendars such as "noleap" need no cftime, and the
    values go back to netCDF as they came."""
    import xarray as xr

    from mscncodec.modalities import sphere as smod

    src = Path(src)
    if isinstance(chunk_steps, bool) or not isinstance(chunk_steps, (int, np.integer)) or chunk_steps < 1:
        raise MscnError(f"chunk_steps must be a positive whole number, got {chunk_steps!r}")
    names = _lat_lon_names(src, var)
    try:
        with warnings.catch_warnings():
            # e.g. "non-conforming _FillValue nan ... dropping": a NaN fill value, and NaN is what a missing value is
            warnings.simplefilter("ignore", xr.SerializationWarning)
            ds = xr.open_dataset(src, decode_times=False, engine="netcdf4")
    except (OSError, RuntimeError, ValueError) as e:
        raise InputError(f"cannot read {src}: {smod._first_line(e)}") from None
    ds = ds[names]
    chunks = {}
    for n in names:
        dims = ds[n].dims
        chunks |= {d: int(chunk_steps) if smod._is_time(d) else 1 for d in dims[:-2]} | {d: -1 for d in dims[-2:]}
    return ds.chunk(chunks)


def mscn_codec(target: dict, effort: str = "default", steps: int | None = None) -> Callable:
    """DataArray -> the mscn codec of that variable (its grid from the DataArray's coordinates), with `target`
    per chunk ({"bytes": N}, {"rmse": x} or {"max_abs": x}: Mscn checks it) and the encoder's options."""
    from mscncodec.numcodecs import Mscn

    options = {"effort": effort} | ({"steps": steps} if steps is not None else {})
    return lambda da: Mscn.for_dataarray(da, **target, **options)


def set_encodings(ds, codec: Callable) -> None:
    """Give every data variable of `ds` the compressor codec(DataArray) and zarr chunks equal to its dask
    chunks, dropping what the netCDF file's encoding said (its _FillValue would be written into the missing
    points before the codec sees them, and its chunk sizes are the netCDF file's). Coordinates keep
    zarr's defaults: lossless."""
    for da in ds.data_vars.values():
        chunks = tuple(c[0] for c in da.chunks)
        da.encoding = {"compressors": [codec(da)], "chunks": chunks, "dtype": da.dtype}
        if np.issubdtype(da.dtype, np.floating):
            da.encoding["_FillValue"] = np.nan  # a missing value reaches the codec as NaN, its lossless mask
    for c in ds.coords.values():
        c.encoding = {k: v for k, v in c.encoding.items() if k in ("dtype", "units", "calendar")}


# ------------------------------------------------------------------ running the graph

def _one_thread_here() -> None:
    """This process: one torch thread and the package's allocator tuning, as in every mscn process."""
    os.environ.update(WORKER_ENV)
    import torch

    from mscncodec._runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(1)


def _plugin_class() -> type:
    """OneThreadPlugin: a distributed WorkerPlugin that pins every worker of a cluster to one torch thread before
    it runs a task (see the module docstring). Made on first use (module __getattr__), so importing this module
    (`mscn decode` asks it whether an input is a store) does not import distributed; pickle finds it by name."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class OneThreadPlugin(WorkerPlugin):
        name = "mscn-one-thread"

        def setup(self, worker) -> None:
            _one_thread_here()

    OneThreadPlugin.__module__, OneThreadPlugin.__qualname__ = __name__, "OneThreadPlugin"
    return OneThreadPlugin


def __getattr__(name: str):
    if name == "OneThreadPlugin":
        globals()[name] = cls = _plugin_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextmanager
def _client(jobs: int, scheduler: str | None):
    """A dask.distributed Client: to a LocalCluster of `jobs` one-threaded worker processes, or to the running
    scheduler at `scheduler`; its workers pinned to one torch thread. None for the serial encode."""
    if scheduler is None and jobs == 1:
        yield None
        return
    import logging

    from distributed import Client, LocalCluster

    if scheduler is None:
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR, env=WORKER_ENV)
        client = Client(cluster)
    else:
        cluster = None
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as e:
            raise MscnError(f"cannot reach the Dask scheduler at {scheduler}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    try:
        try:
            client.register_plugin(sys.modules[__name__].OneThreadPlugin())
        except ImportError as e:  # a worker of a running cluster without mscncodec (or torch) installed
            raise MscnError(f"the Dask workers cannot run mscn: {e}") from None
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _chunk_lines(total: int, say: Callable[[str], None]):
    """A dask callback for the serial encode: one line per chunk written ("chunk 3/10 written, 4.2 s")."""
    from dask.callbacks import Callback

    class Lines(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.done, self.t = 0, time.perf_counter()

        def _posttask(self, key, result, dsk, state, id) -> None:
            name = key[0] if isinstance(key, tuple) else key
            if str(name).startswith("store-map"):
                self.done += 1
                now = time.perf_counter()
                say(f"chunk {self.done}/{total} written, {now - self.t:.1f} s")
                self.t = now

    return Lines()


def _run(delayed, client, total: int, progress: bool | Callable[[str], None]) -> None:
    """Compute the to_zarr graph: on the client's cluster (a progress bar where stderr is a terminal), else on
    dask's synchronous scheduler in this process, on one torch thread (one line per chunk)."""
    import dask

    say = progress if callable(progress) else (lambda line: print(line, file=sys.stderr, flush=True))
    if client is not None:
        future = client.compute(delayed)
        from mscncodec._runtime import show_progress

        if progress and show_progress(True):
            from distributed import progress as bar

            bar(future)
        future.result()
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with dask.config.set(scheduler="synchronous"):
            if progress:
                with _chunk_lines(total, say):
                    dask.compute(delayed)
            else:
                dask.compute(delayed)
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ the output path

def _check_store_path(store: Path, force: bool, src: Path | None = None) -> None:
    """Before any work: refuse to overwrite the input or, without force, an existing path; the folder must exist
    and be writable."""
    from mscncodec.container.files import may_write_in, same_file, write_error

    if src is not None and same_file(src, store):
        raise MscnError(f"output {store} is the input file {src}: refusing to overwrite it (even with --force)")
    try:
        if (store.exists() or store.is_symlink()) and not force:
            raise MscnError(f"{store} exists (use --force to overwrite)")
        if store.exists() and not store.is_dir():
            raise MscnError(f"{store} exists and is not a zarr store (a folder): not replaced")
        folder = store.parent.resolve()
        if not folder.is_dir():
            raise MscnError(f"output folder {store.parent} does not exist")
        if not may_write_in(folder):
            import errno

            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as e:
        raise write_error(store, e) from None


def _part_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.urandom(4).hex()}.part"


def _commit(tmp: Path, target: Path, force: bool) -> None:
    """Move the complete store `tmp` to `target`; an existing target (force) is moved aside first and removed
    only once the new store is in place, so a failure here leaves the old store or the new one, whole."""
    if not target.exists():
        os.rename(tmp, target)  # a folder: rename fails (EEXIST/ENOTEMPTY) rather than replace one that appeared
        return
    if not force:
        raise MscnError(f"{target} exists (use --force to overwrite)")
    old = _part_name(target)
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def chunk_sizes(store: str | Path) -> dict[str, list[int]]:
    """The size in bytes of every chunk file of every array of a zarr v3 store on disk, by array name."""
    store = Path(store)
    out = {}
    for meta in sorted(store.glob("*/zarr.json")):
        grid = meta.parent / "c"
        files = [p for p in grid.rglob("*") if p.is_file()] if grid.is_dir() else []
        files.sort(key=lambda p: tuple(int(i) for i in p.relative_to(grid).parts))  # chunk 2 before chunk 10
        out[meta.parent.name] = [p.stat().st_size for p in files]
    return out


# ------------------------------------------------------------------ the two entry points

def encode_to_zarr(src: str | Path, store: str | Path, *, var: str | Sequence[str] | None = None,
                   target_bytes: int | None = None, rmse: float | None = None, max_abs: float | None = None,
                   chunk_steps: int = DEFAULT_CHUNK_STEPS, jobs: int = 1, scheduler: str | None = None,
                   effort: str = "default", steps: int | None = None, force: bool = False,
                   progress: bool | Callable[[str], None] = False, codec: Callable | None = None) -> dict:
    """Encode the global lat-lon variables `var` of netCDF file `src` (one name, several, or None: all of
    them) into the zarr v3 store `store`, each chunk (`chunk_steps` time steps of one level) coded by mscn to
    `target_bytes` per chunk, or to an error bound (`rmse`, `max_abs`, in the variable's units).

    `jobs`=1 and no `scheduler`: dask's synchronous scheduler in this process. `jobs`=N: a LocalCluster of N
    one-threaded worker processes. `scheduler`="tcp://HOST:PORT": the running dask.distributed cluster there
    (the file and the store's folder must be visible to its workers). The bytes are the same in all three.
    `codec`: a function DataArray -> compressor, instead of mscn (another numcodecs/zarr codec).
    `progress`: True prints one line per chunk (serially) or a bar (cluster, on a terminal) on stderr; a
    callable gets the lines instead.

    Returns a report: variables, chunks, chunk bytes, raw bytes, ratio, seconds, workers."""
    src, store = Path(src), Path(store)
    from mscncodec.container.files import check_input, write_error

    check_input(src)
    _check_store_path(store, force, src)
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise MscnError(f"jobs must be a positive whole number, got {jobs!r}")
    if scheduler is not None and jobs != 1:
        raise MscnError("give --jobs N (a cluster on this machine) or --scheduler ADDRESS (a running one), not both")
    _need_extra()
    if codec is None:
        target = {k: v for k, v in (("bytes", target_bytes), ("rmse", rmse), ("max_abs", max_abs)) if v is not None}
        codec = mscn_codec(target, effort, steps)
    t0 = time.perf_counter()
    ds = open_fields(src, var, chunk_steps)
    with _quiet_zarr():
        set_encodings(ds, codec)
    total = sum(int(np.prod(ds[n].data.numblocks)) for n in ds.data_vars)
    tmp = _part_name(store)
    try:
        with _client(int(jobs), scheduler) as client:
            workers = len(client.scheduler_info()["workers"]) if client is not None else 1
            with _quiet_zarr():
                # consolidated: one read of metadata for xr.open_zarr, and no warning there that it falls back
                delayed = ds.to_zarr(str(tmp.resolve()), mode="w-", zarr_format=3, consolidated=True, compute=False)
                _run(delayed, client, total, progress)
        sizes = chunk_sizes(tmp)
        _commit(tmp, store, force)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise write_error(store, e) from None
        raise
    finally:
        ds.close()
    raw = sum(ds[n].size * ds[n].dtype.itemsize for n in ds.data_vars)
    coded = sum(sum(sizes.get(n, [])) for n in ds.data_vars)
    return {"store": str(store), "variables": list(ds.data_vars), "chunks": total, "workers": workers,
            "chunk_bytes": {n: sizes.get(n, []) for n in ds.data_vars}, "bytes": coded, "raw_bytes": int(raw),
            "ratio": raw / coded if coded else float("inf"), "seconds": time.perf_counter() - t0}


def is_store(path: str | Path) -> bool:
    """Whether `path` is a zarr store on disk (a folder with zarr.json or .zgroup), what `mscn decode` routes."""
    path = Path(path)
    return path.is_dir() and ((path / "zarr.json").is_file() or (path / ".zgroup").is_file())


def decode_to_netcdf(store: str | Path, out: str | Path, *, force: bool = False) -> dict:
    """Decode the zarr store `store` (written by encode_to_zarr, or any store xarray reads) into netCDF file
    `out`: every variable with its coordinates and attributes, missing values as NaN (_FillValue NaN). Decoded
    on dask's synchronous scheduler in this process; the file is written whole or not at all."""
    store, out = Path(store), Path(out)
    from mscncodec.container.files import check_output, write_error

    if not is_store(store):
        raise InputError(f"cannot read {store}: not a zarr store (no zarr.json)")
    if out.suffix.lower() not in NETCDF_SUFFIXES:
        raise MscnError(f"a zarr store decodes to a netCDF file ({', '.join(NETCDF_SUFFIXES)}), not {out.name}")
    check_output(out, force, src=store)
    _need_extra()
    import dask
    import xarray as xr

    t0 = time.perf_counter()
    try:
        with _quiet_zarr():
            ds = xr.open_zarr(store, decode_times=False)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"cannot read {store}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    for v in ds.variables.values():
        keep = {k: v.encoding[k] for k in ("dtype", "units", "calendar") if k in v.encoding}
        v.encoding = keep | ({"_FillValue": np.nan} if np.issubdtype(v.dtype, np.floating) else {})
    tmp = _part_name(out)
    try:
        with dask.config.set(scheduler="synchronous"), _quiet_zarr():
            ds.to_netcdf(tmp, engine="netcdf4")
        if force:
            os.replace(tmp, out)
        else:
            os.link(tmp, out)  # EEXIST where a file appeared meanwhile: never overwritten
            os.unlink(tmp)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(out, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        ds.close()
    return {"output": str(out), "variables": list(ds.data_vars), "seconds": time.perf_counter() - t0}


@contextmanager
def _quiet_zarr():
    """Without zarr's warnings that a codec not in the v3 specification (mscn, numcodecs') or consolidated
    metadata may not be read by other zarr implementations: true, said on every chunk, and no use to a user of
    `mscn` (the module docstring of mscncodec.zarr_codec says which implementations read the store)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(Numcodecs codecs|Consolidated metadata).*not .*Zarr")
        yield


def _need_extra() -> None:
    """A one-line error where the zarr extra (xarray, zarr, dask.distributed) is not installed."""
    import importlib.util

    missing = [m for m in ("xarray", "zarr", "dask", "distributed") if importlib.util.find_spec(m) is None]
    if missing:
        raise MscnError(f"this needs {', '.join(missing)}: pip install 'mscncodec[zarr]'")


__all__ = [
    "DEFAULT_CHUNK_STEPS",
    "chunk_sizes",
    "decode_to_netcdf",
    "encode_to_zarr",
    "is_store",
    "mscn_codec",
    "open_fields",
    "set_encodings",
]
