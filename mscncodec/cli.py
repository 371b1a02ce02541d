"""The ``mscn`` command line: parse options, call the Python API, print, map errors to exit codes."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import click

from mscncodec.errors import MscnError


def _fail(e: MscnError) -> None:
    click.echo(f"mscn: error: {e}", err=True)
    sys.exit(e.exit_code)


#: Input and output paths: the commands report a file the OS will not let them read or write themselves, in
#: one line (mscncodec.container.files), where click's own check would print a usage error.
_PATH = click.Path(path_type=Path, readable=False)


class _Group(click.Group):
    """Turn every MscnError into one line on stderr and a non-zero exit code; `mscn bench` is imported when
    named (its codec table costs ~0.1 s that no other command needs: issue 28)."""

    LAZY = {"bench": "mscncodec.bench.cli:bench"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, name: str):
        if name in self.LAZY and name not in self.commands:
            import importlib

            module, attr = self.LAZY[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MscnError as e:
            _fail(e)
        except OSError as e:  # one the commands did not name (a library opening a file itself): still one line
            from mscncodec.container.files import os_error

            _fail(os_error(e))
        except KeyboardInterrupt:
            click.echo("mscn: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mscncodec")
@click.option("--threads", type=click.IntRange(1, None), default=None,
              help="torch threads (with --jobs: in all, shared by the worker processes) "
                   "[MSCN_THREADS, else the CPUs this process may run on that no other process is using].")
def main(threads: int | None) -> None:
    """mscn: compress images into small .mscn files with meta-learned sparse neural networks."""
    from mscncodec._runtime import ignore_file_size_signal, set_logging, set_threads, tune_allocator

    ignore_file_size_signal()  # over `ulimit -f` a write fails with EFBIG (one line) instead of killing mscn
    tune_allocator()  # the CLI owns its process: fitting steps run 2-2.6x faster with freed blocks kept
    set_logging()
    if click.get_current_context().invoked_subcommand != "decode":
        set_threads(threads)  # decode sets them only if it needs torch (a grid2 image does not: issue 28)


def _torch_threads() -> int:
    """Set torch's threads as `main` does for every command but decode (--threads, MSCN_THREADS, else the
    idle CPUs): decode imports torch only for a stream that needs it."""
    from mscncodec._runtime import set_threads

    return set_threads(_root_threads())


def _root_threads() -> int | None:
    """`mscn --threads N`, if given (the train commands' own --threads wins over it)."""
    return click.get_current_context().find_root().params.get("threads")


def _threads() -> int:
    """The torch threads the command runs with (what --threads, MSCN_THREADS or the default set)."""
    import torch

    return torch.get_num_threads()


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write via a temporary file in the same folder, then rename: never a half-written output."""
    from mscncodec.container.files import atomic_write

    atomic_write(path, data, force)


def _outputs(srcs: tuple[Path, ...], out: Path | None, out_dir: Path | None, one: str) -> None:
    """Single-file mode (-o, one SRC) or batch mode (--out-dir, any number of SRC), never both."""
    if out is not None and out_dir is not None:
        raise MscnError("give either -o OUTPUT or --out-dir DIR, not both")
    if out is None and out_dir is None:
        raise MscnError(f"give -o OUTPUT ({one}) or --out-dir DIR (any number of inputs)")
    if out is not None and len(srcs) > 1:
        raise MscnError(f"-o names one output but {len(srcs)} inputs were given: use --out-dir DIR")


def _finish_batch(failures) -> None:
    from mscncodec.batch import exit_code

    if failures:
        sys.exit(exit_code(failures))


from mscncodec.container.bitstream import MAX_PIXELS, MAX_VOXELS  # noqa: E402  (stdlib only: `mscn` starts light)
from mscncodec.targets import summary as target_summary  # noqa: E402  (bitstream and errors only)


def _image_families(trains: bool = False, docs: bool = False) -> list:
    """The families that encode (or train) images, from the registry: --arch's choices."""
    from mscncodec import families

    found = families.names(**({"trains": "image"} if trains else {"encodes": "image"}))
    return [(n, families.by_name(n).doc) for n in found] if docs else found


SPHERE_TRAIN, SPHERE_VAL = "ccsm-trefht-annual/*B06.57*,ccsm-ts-monthly/*.nc", "ccsm-trefht-annual/*B06.59*"

_max_pixels = click.option("--max-pixels", type=click.IntRange(1, None), default=MAX_PIXELS, show_default=True,
                           help=f"Images (and fields: decoded grid points): refuse more pixels, before any large allocation (the format "
                                f"holds at most {MAX_PIXELS}).")
_max_voxels = click.option("--max-voxels", type=click.IntRange(1, None), default=MAX_VOXELS, show_default=True,
                           help="Meshes and voxels: refuse a decoding grid of more than this many samples (resolution^3; "
                                "the default allows 512^3). A mesh stream's stored grid is also bounded by its "
                                "length (docs/decoder-cost.md); --resolution chooses another.")


def _sphere_options(f):
    """--var, --time, --level, --grid: which field of a netCDF file, and the grid of a .npy."""
    f = click.option("--grid", default=None,
                     help="Fields in .npy: the array's grid: regular (poles included, the default), gaussian, or a "
                          "netCDF file whose lat/lon to use.")(f)
    f = click.option("--level", type=click.IntRange(0, None), default=None,
                     help="Fields: index along the level dimension [0].")(f)
    f = click.option("--time", "time_index", default=None,
                     help="Fields: a step K (one field), a range a:b or all (one series stream, issue 29) [a file's "
                          "every step; a single field where it has one].")(f)
    return click.option("--var", default=None, help="Fields: the netCDF variable [the only lat-lon one]; with a .zarr "
                                                    "output, names separated by commas [every lat-lon one].")(f)


_jobs = click.option("-j", "--jobs", type=click.IntRange(1, None), default=1, show_default=True,
                     help="With --out-dir: worker processes (each gets --threads / JOBS torch threads); encode to a "
                          ".zarr output: Dask worker processes, one torch thread each.")


def _error_targets(f):
    """--rmse, --max-error, --psnr, --chamfer: a quality of the decoded result, met by a search over byte
    targets (mscncodec.targets), or refused (exit 4) with the best value reached."""
    search = ("instead of a size: the smallest stream a search over byte targets finds, each try a real encode "
              "decoded and measured (-q hides the tries), else refused (exit 4) with the best value reached")
    for option, what in reversed((
            ("--rmse", f"Fields: area-weighted RMSE (the variable's units) the decoded field may have, {search}."),
            ("--max-error", "Fields: max absolute error (the variable's units) the decoded field may have (see --rmse)."),
            ("--psnr", "Images: PSNR (dB) the decoded image must reach (see --rmse)."),
            ("--chamfer", "Meshes: Chamfer-L1 (of the bounding-box diagonal) the decoded mesh may have (see --rmse)."))):
        f = click.option(option, type=float, default=None, help=what)(f)
    return f


def _encode_summary(out: Path, report: dict, mod, seconds: float) -> str:
    return f"{out}: {mod.encode_summary(report)}, {seconds:.1f} s)"


@main.command()
@click.argument("srcs", nargs=-1, required=True, type=_PATH, metavar="SRC...")
@click.option("-o", "--output", "--out", "out", type=_PATH, default=None,
              help="Output .mscn file (one SRC); a NAME.zarr output: a zarr v3 store of a netCDF file's fields, "
                   "coded chunk by chunk by Dask (--jobs, --scheduler, --chunk-steps).")
@click.option("--out-dir", type=_PATH, default=None,
              help="Batch: write DIR/<stem>.mscn for every SRC (DIR is created if missing); a file that fails is "
                   "reported and skipped.")
@click.option("--bpp", type=float, default=None, help="Images: target rate in bits per pixel (real file size).")
@click.option("--bytes", "target_bytes", type=click.IntRange(1, None), default=None,
              help="Target file size in bytes (at or just under), for any modality; with a .zarr output, the "
                   "size of each chunk.")
@click.option("--quality", type=click.IntRange(0, 100), default=None, help="Quality 0-100 instead of a size target.")
@click.option("--model", "model_name", default=None, help="Model name (see `mscn models`); default: picked for the rate.")
@click.option("--arch", type=click.Choice(_image_families()), default=None,
              help="Images: INR family when no --model is given [default: the shipped default, see `mscn models`].")
@click.option("--resolution", type=click.IntRange(8, 1024), default=None,
              help="Meshes: default decoding grid stored in the file [128].")
@_sphere_options
@click.option("--steps", type=click.IntRange(0, 100000), default=None, help="Fitting steps after the inner loop.")
@click.option("--effort", type=click.Choice(["fast", "default", "max", "placebo"]), default="default", show_default=True,
              help="Encode time for quality. placebo: grid2's 10k refinement steps (C3 / Cool-chic's budget), for a "
                   "GPU (--device cuda); on a CPU it takes hours per photo.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Images: where grid2's fit runs (auto: cuda where torch sees a GPU, else cpu) [auto]. The exact "
                   "coding always runs on the CPU, so the file decodes bit-exactly on any CPU; the SIREN family "
                   "fits on the CPU.")
@_error_targets
@_max_pixels
@_max_voxels
@_jobs
@click.option("--chunk-steps", type=click.IntRange(1, None), default=None,
              help="With a .zarr output: time steps per chunk (each level its own chunks) [12].")
@click.option("--scheduler", default=None,
              help="With a .zarr output: the address of a running Dask scheduler (tcp://HOST:PORT) whose workers "
                   "encode the chunks, instead of --jobs worker processes here.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def encode(srcs: tuple[Path, ...], out: Path | None, out_dir: Path | None, bpp, target_bytes, quality, model_name,
           arch, resolution, var, time_index, level, grid, steps, effort, device, max_pixels, max_voxels, jobs,
           chunk_steps, scheduler, force, quiet, rmse, max_error, psnr, chamfer) -> None:
    """Encode images, meshes (.obj .ply .stl .off .glb) or global fields (.nc .npy) SRC into .mscn files: one
    with -o OUTPUT, any number with --out-dir DIR."""
    sphere = {"var": var, "time": time_index, "level": level, "grid": grid}
    _outputs(srcs, out, out_dir, "one SRC")
    given = [n for n, v in (("--bpp", bpp), ("--bytes", target_bytes), ("--quality", quality)) if v is not None]
    errors = {"rmse": rmse, "max_error": max_error, "psnr": psnr, "chamfer": chamfer}  # mscncodec.targets
    given += [f"--{k.replace('_', '-')}" for k, v in errors.items() if v is not None]
    zarr_only = {"--chunk-steps": chunk_steps, "--scheduler": scheduler}
    if out is not None and out.suffix.lower() == ".zarr":
        others = {"--bpp": bpp, "--quality": quality, "--model": model_name, "--arch": arch, "--resolution": resolution,
                  "--time": time_index, "--level": level, "--grid": grid, "--device": device,
                  "--psnr": psnr, "--chamfer": chamfer}
        _encode_zarr(srcs[0], out, var, {"bytes": target_bytes, "rmse": rmse, "max_abs": max_error},
                     [n for n, v in others.items() if v is not None], jobs, chunk_steps, scheduler, effort, steps,
                     force, quiet)
        return
    if any(v is not None for v in zarr_only.values()):
        raise MscnError(f"{', '.join(n for n, v in zarr_only.items() if v is not None)} apply to a .zarr output only")
    if device == "cuda":  # refused before any work where torch sees no GPU
        from mscncodec._runtime import resolve_device

        resolve_device(device)
    if out_dir is not None:
        if len(given) > 1:
            raise MscnError(f"give only one of {' or '.join(given)} (a size or a quality target)")
        _encode_batch(list(srcs), out_dir, force, quiet, jobs,
                      dict(target_bytes=target_bytes, quality=quality, model=model_name, steps=steps, effort=effort,
                           max_pixels=max_pixels, max_voxels=max_voxels, **errors),
                      {"bpp": bpp, "arch": arch, "resolution": resolution, "device": device, **sphere})
        return
    from mscncodec.api import encode as encode_any, input_modality
    from mscncodec.container.files import check_input, check_output

    src = srcs[0]
    check_input(src)
    check_output(out, force, src=src)
    if len(given) > 1:
        raise MscnError(f"give only one of {' or '.join(given)} (a size or a quality target)")
    mod = input_modality(src)
    t = time.perf_counter()
    data, report = encode_any(src, bpp=bpp, target_bytes=target_bytes, quality=quality, model=model_name, arch=arch,
                              resolution=resolution, steps=steps, effort=effort, progress=not quiet,
                              return_report=True, max_pixels=max_pixels, max_voxels=max_voxels,
                              device=_device(device, mod), **sphere, **errors)
    write_atomic(out, data, force)
    if not quiet:
        click.echo(_encode_summary(out, report, mod, time.perf_counter() - t))
        if line := target_summary(report):  # the error target asked and met, None without one
            click.echo(line)
        if report.get("note"):
            click.echo(f"note: {report['note']}")


def _encode_zarr(src: Path, out: Path, var: str | None, target: dict, refused: list[str], jobs: int,
                 chunk_steps: int | None, scheduler: str | None, effort: str, steps: int | None, force: bool,
                 quiet: bool) -> None:
    """`mscn encode FILE.nc --var A,B --out STORE.zarr`: the fields into a zarr store by Dask (zarrstore); `target`
    per chunk: bytes, rmse or max_abs (--bytes, --rmse, --max-error)."""
    from mscncodec import zarrstore

    if refused:
        raise MscnError(f"{', '.join(refused)} {'does' if len(refused) == 1 else 'do'} not apply to a .zarr output "
                        "(give --bytes per chunk, --rmse or --max-error)")
    given = {k: v for k, v in target.items() if v is not None}
    if len(given) != 1:
        raise MscnError("give one of --bytes (per chunk), --rmse or --max-error for a .zarr output")
    names = None if var is None else [v.strip() for v in var.split(",") if v.strip()]
    report = zarrstore.encode_to_zarr(src, out, var=names, target_bytes=given.get("bytes"), rmse=given.get("rmse"),
                                      max_abs=given.get("max_abs"), jobs=jobs, scheduler=scheduler,
                                      chunk_steps=chunk_steps or zarrstore.DEFAULT_CHUNK_STEPS, effort=effort,
                                      steps=steps, force=force, progress=not quiet)
    if not quiet:
        click.echo(f"{out}: {', '.join(report['variables'])}, {report['chunks']} chunks, {report['bytes']} bytes "
                   f"({report['ratio']:.0f}x), {report['workers']} worker(s), {report['seconds']:.1f} s")


def _device(device: str | None, mod) -> str | None:
    """--device for an input of this modality: as given, else auto where the modality takes one."""
    return device if device is not None or "device" not in mod.options else "auto"


def _modal_options(mods, modal: dict) -> None:
    """In batch mode an option of one modality (--bpp, --arch, --resolution) applies to the inputs of that
    modality; one that applies to none of them is a mistake."""
    for k, v in modal.items():
        if v is not None and not any(k in m.options for m in mods):
            raise MscnError(f"--{k} applies to none of the inputs ({', '.join(sorted({m.name for m in mods}))})")


def _encode_batch(srcs: list[Path], out_dir: Path, force: bool, quiet: bool, jobs: int, common: dict,
                  modal: dict) -> None:
    from mscncodec import batch
    from mscncodec.api import input_modality

    _modal_options({input_modality(s) for s in srcs}, modal)

    def name(src: Path) -> tuple[str, dict]:
        mod = input_modality(src)
        options = dict(common, **{k: v for k, v in modal.items() if v is not None and k in mod.options})
        if "device" in mod.options:
            options["device"] = _device(modal.get("device"), mod)
        return ".mscn", options

    jobs_, failures = batch.plan(srcs, out_dir, name, force)
    for f in failures:
        click.echo(f"mscn: error: {f.line()}", err=True)
    if jobs_:
        batch.prepare_out_dir(out_dir)

    def done(job, result, say) -> None:
        data, report = result
        write_atomic(job.out, data, force)
        if not quiet:
            say(_encode_summary(job.out, report, input_modality(job.src),
                                report.get("encode_s", 0) + report.get("decode_s", 0)))
            if line := target_summary(report):  # the error target asked and met, None without one
                say(line)
            if report.get("note"):
                say(f"note: {report['note']}")

    failures += batch.run(jobs_, batch.encode_one, lambda j: (str(j.src), j.options), n_jobs=jobs,
                          threads=_threads(), progress=not quiet, desc="encode", done=done)
    _finish_batch(failures)


@main.command()
@click.argument("srcs", nargs=-1, required=True, type=_PATH, metavar="SRC...")
@click.option("-o", "--output", "out", type=_PATH, default=None,
              help="Output image (.png, ...) or mesh (.ply .obj .stl .off .glb), for one SRC.")
@click.option("--out-dir", type=_PATH, default=None,
              help="Batch: write DIR/<stem>.<format> for every SRC (DIR is created if missing); a file that fails "
                   "is reported and skipped.")
@click.option("--format", "fmt", default=None,
              help="With --out-dir: output format, e.g. png or ply [png for images, ply for meshes].")
@click.option("--resolution", type=click.IntRange(8, 1024), default=None,
              help="Meshes: decoding grid (samples per side) [the file's, 128 by default]; 256 or 512 give finer surfaces.")
@click.option("--grid", default=None,
              help="Fields: decode onto another grid: a spacing in degrees (0.25), gaussian:N, or a netCDF file's grid "
                   "[the encoded grid].")
@click.option("--time", "time_index", type=click.IntRange(0, None), default=None,
              help="Field series: decode step K only (the others are not rendered).")
@_max_pixels
@_max_voxels
@_jobs
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("-v", "--verbose", is_flag=True, help="Print size and decode time.")
@click.option("-q", "--quiet", is_flag=True, help="With --out-dir: no progress bar.")
def decode(srcs: tuple[Path, ...], out: Path | None, out_dir: Path | None, fmt: str | None, resolution, grid,
           time_index, max_pixels, max_voxels, jobs, force: bool, verbose: bool, quiet: bool) -> None:
    """Decode .mscn files SRC into images or meshes (whichever each holds): one with -o OUTPUT, any number
    with --out-dir DIR."""
    _outputs(srcs, out, out_dir, "one SRC")
    if out_dir is not None:
        _decode_batch(list(srcs), out_dir, fmt, force, verbose, quiet, jobs,
                      dict(max_pixels=max_pixels, max_voxels=max_voxels),
                      {"resolution": resolution, "grid": grid, "time": time_index})
        return
    if fmt is not None:
        raise MscnError("--format is for --out-dir (with -o the output's extension names the format)")
    from mscncodec.api import decode as decode_any, decode_without_torch, stream_modality
    from mscncodec.batch import check_format
    from mscncodec.container.files import check_output, read_input
    from mscncodec.zarrstore import is_store  # numpy only: `mscn decode` of an image stays light

    src = srcs[0]
    if is_store(src):  # a store written by `mscn encode FILE.nc --out STORE.zarr`: back to netCDF
        from mscncodec.zarrstore import decode_to_netcdf

        given = [n for n, v in (("--resolution", resolution), ("--grid", grid), ("--time", time_index)) if v is not None]
        if given:
            raise MscnError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to a zarr store")
        _torch_threads()
        report = decode_to_netcdf(src, out, force=force)
        if verbose:
            click.echo(f"{out}: {', '.join(report['variables'])} in {report['seconds']:.2f} s")
        return
    check_output(out, force, src=src)
    data = read_input(src)
    mod = stream_modality(data)
    check_format(mod, out.suffix, src)
    t = time.perf_counter()
    options = dict(resolution=resolution, grid=grid, time=time_index, max_pixels=max_pixels, max_voxels=max_voxels)
    signal = decode_without_torch(data, **options)
    if signal is None:
        _torch_threads()
        signal = decode_any(data, **options)
    dt = time.perf_counter() - t
    write_atomic(out, mod.write(signal, out.suffix), force)
    if verbose:
        click.echo(_decode_summary(out, mod.signal_info(signal, len(data), dt)))


def _decode_summary(out: Path, info: dict) -> str:
    from mscncodec.modalities import by_name

    return f"{out}: {by_name(info['modality']).decode_summary(info)} in {info['seconds']:.2f} s"


def _decode_batch(srcs: list[Path], out_dir: Path, fmt: str | None, force: bool, verbose: bool, quiet: bool,
                  jobs: int, common: dict, modal: dict) -> None:
    from mscncodec import batch
    from mscncodec.api import stream_modality
    from mscncodec.container.files import read_input

    suffix = None if fmt is None else "." + fmt.strip().lstrip(".").lower()
    if suffix == ".":
        raise MscnError("--format must name a format, e.g. png or ply")
    seen = set()

    def name(src: Path) -> tuple[str, dict]:
        mod = stream_modality(read_input(src))
        seen.add(mod)
        ext = suffix or mod.default_output
        batch.check_format(mod, ext, src)
        return ext, dict(common, **{k: v for k, v in modal.items() if v is not None and k in mod.options})

    jobs_, failures = batch.plan(srcs, out_dir, name, force)
    if seen:
        _modal_options(seen, modal)
    for f in failures:
        click.echo(f"mscn: error: {f.line()}", err=True)
    if jobs_:
        batch.prepare_out_dir(out_dir)

    def done(job, result, say) -> None:
        blob, info = result
        write_atomic(job.out, blob, force)
        if verbose:
            say(_decode_summary(job.out, info))

    failures += batch.run(jobs_, batch.decode_one, lambda j: (str(j.src), j.out.suffix, j.options), n_jobs=jobs,
                          threads=_torch_threads(), progress=not quiet, desc="decode", done=done)
    _finish_batch(failures)


@main.command()
@click.argument("src", type=_PATH)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(src: Path, as_json: bool) -> None:
    """Print the header and section sizes of a .mscn file."""
    from mscncodec.api import describe
    from mscncodec.container.files import read_input

    d = describe(read_input(src))
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    for k, v in d["header"].items():
        click.echo(f"{k:>14}: {v}")
    click.echo("      sections:")
    for name, n in d["sections"].items():
        click.echo(f"{'':>16}{name:<10} {n:>9} bytes")
    click.echo(f"{'total':>14}: {d['bytes']} bytes" + (f", {d['bpp']:.4f} bpp" if "bpp" in d else ""))


@main.command("models")
def models_cmd() -> None:
    """List the available initialisations."""
    from mscncodec.models import default_arch, list_models

    from .models import default_modality_model

    click.echo(f"default architecture (images): {default_arch()}")
    try:
        click.echo(f"default mesh model: {default_modality_model('mesh').name}")
    except MscnError as e:
        click.echo(f"default mesh model: none ({e})")
    for m in list_models():
        val = m.meta.get("validation", {}).get("val_psnr")
        extra = f", val {val:.2f} dB" if val else ""
        click.echo(f"{m.name:<24} id {m.model_id.hex()}  {m.summary()}{extra}  {m.description}")


@main.group()
def train() -> None:
    """Meta-train an initialisation (writes NAME.pt + its model card)."""


@train.command("image")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="mscncodec/weights/NAME (no suffix).")
@click.option("--arch", type=click.Choice(_image_families(trains=True)), default="siren", show_default=True,
              help="; ".join(f"{n}: {d}" for n, d in _image_families(trains=True, docs=True)) + ".")
@click.option("--mode", type=click.Choice(["full", "shift"]), default="full", show_default=True,
              help="siren: full = unstructured gates on every weight; shift = structured per-neuron shifts.")
@click.option("--width", type=int, default=32, show_default=True, help="siren width.")
@click.option("--depth", type=int, default=5, show_default=True, help="siren depth.")
@click.option("--patch", type=int, default=None, help="siren patch / grid2 crop side [siren 32, grid2 192].")
@click.option("--levels", type=int, default=None, help="grid2: number of latent grids [7].")
@click.option("--hidden", default=None, help="grid2: synthesis hidden widths [20,20].")
@click.option("--inner-steps", type=int, default=None, help="siren: Meta-SGD inner steps [3].")
@click.option("--log2-lam", default=None,
              help="grid2 [-13,-3]: range of log2(lambda) sampled in training (rate + MSE / lambda): the rates the model covers.")
@click.option("--lam", type=float, default=0.1, show_default=True, help="siren: L0 weight (higher = sparser).")
@click.option("--batch", type=int, default=None, help="Batch of crops [siren 32, grid2 6].")
@click.option("--steps", type=int, default=20000, show_default=True)
@click.option("--lr", type=float, default=None, help="Outer learning rate [siren 2e-4, grid2 2e-3].")
@click.option("--first-order", is_flag=True, help="siren: first-order Meta-SGD (no second derivatives).")
@click.option("--val-every", type=int, default=250, show_default=True)
@click.option("--max-images", type=int, default=0, help="Use only the first N training images (tests).")
@click.option("--val-patches", type=int, default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT.run/checkpoint.pt.")
@click.option("--threads", type=int, default=0,
              help="torch threads (0: `mscn --threads`, else all cores / one share per torchrun process).")
@click.option("--no-progress", is_flag=True)
@click.option("--device", default="cpu", show_default=True, help="grid2: torch device (cuda where a GPU is lent).")
@click.option("--export-only", is_flag=True, help="grid2: freeze OUT.run/checkpoint.pt into OUT.pt + card, no training.")
@click.option("--init", "init", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="grid2: fine-tune from this model .pt or run checkpoint.pt (same architecture), not a seeded init.")
@click.option("--analysis", type=int, default=None,
              help="grid2: channels of the amortised analysis network [32] (encoder only: no decoder cost).")
@click.option("--minutes", type=float, default=0.0, show_default=True,
              help="grid2: wall-clock budget of this run (0: none); it stops at --steps or the budget, whichever "
                   "comes first, and the learning-rate schedule follows that one.")
def train_image(data, out, arch, threads, no_progress, resume, **options) -> None:
    """Meta-train an image initialisation on a folder of photos (never on Kodak): the family's trainer
    (families.REGISTRY) gets the image modality's training data and these options."""
    import torch

    from mscncodec import families
    from mscncodec.modalities.image import training_data

    from mscncodec.training import rank_threads

    torch.set_num_threads(rank_threads(threads or _root_threads()))  # under torchrun, a share of the cores
    args = [a for a in sys.argv[1:] if a != "--resume"]
    command = "mscn " + " ".join(shlex.quote(a) for a in args)
    trainer = families.by_name(arch).trainer("image")
    path = trainer(training_data(data, options["max_images"]), out, options, resume=resume, command=command,
                   progress=not no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"wrote {path}")


@train.command("mesh")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of meshes (a MESHES.tsv there selects the watertight ones).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="mscncodec/weights/NAME (no suffix).")
@click.option("--width", type=int, default=64, show_default=True)
@click.option("--depth", type=int, default=5, show_default=True)
@click.option("--inner-steps", type=int, default=3, show_default=True, help="Meta-SGD inner steps.")
@click.option("--lam", type=float, default=2e-5, show_default=True, help="L0 weight (higher = sparser updates).")
@click.option("--batch", type=int, default=6, show_default=True, help="Meshes per outer step.")
@click.option("--points", type=int, default=2048, show_default=True, help="Signed-distance samples per mesh and step.")
@click.option("--steps", type=int, default=10000, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Outer learning rate of theta0.")
@click.option("--first-order", is_flag=True, help="First-order (no second derivatives: learns theta0 only).")
@click.option("--val-every", type=int, default=250, show_default=True)
@click.option("--max-meshes", type=int, default=0, help="Use only the first N training meshes (tests).")
@click.option("--pool", type=int, default=65536, show_default=True, help="Samples computed once per mesh.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT.run/checkpoint.pt.")
@click.option("--threads", type=int, default=0, help="torch threads (0: `mscn --threads`, else all cores).")
@click.option("--no-progress", is_flag=True)
@click.option("--export-only", is_flag=True, help="Freeze OUT.run/checkpoint.pt into OUT.pt + card, no training.")
def train_mesh(data, out, width, depth, inner_steps, lam, batch, points, steps, lr, first_order, val_every, max_meshes,
               pool, seed, resume, threads, no_progress, export_only) -> None:
    """Meta-train a signed-distance SIREN on a folder of meshes (never on the test meshes)."""
    import torch

    if "meshes-test" in str(data):
        raise MscnError("refusing to train on meshes-test: it is a benchmark set")
    torch.set_num_threads(threads or _root_threads() or (os.cpu_count() or 1))
    from mscncodec.modalities.mesh_train import MeshTrainConfig, train as run_mesh

    args = [a for a in sys.argv[1:] if a not in ("--resume", "--export-only")]
    cfg = MeshTrainConfig(width=width, depth=depth, inner_steps=inner_steps, lam=lam, batch=batch, points=points,
                          steps=steps, lr=lr, first_order=first_order, val_every=val_every, max_meshes=max_meshes,
                          pool=pool, seed=seed)
    path = run_mesh(data, out, cfg, resume=resume, command="mscn " + " ".join(shlex.quote(a) for a in args),
                    progress=not no_progress, export_only=export_only)
    click.echo(f"wrote {path}")


@train.command("sphere")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of netCDF files (the --train and --val globs are relative to it).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="mscncodec/weights/NAME (no suffix).")
@click.option("--train", "train_glob", default=SPHERE_TRAIN, show_default=True, help="Training files (globs, comma-separated).")
@click.option("--val", "val_glob", default=SPHERE_VAL, show_default=True, help="Held-out files for validation.")
@click.option("--width", type=int, default=32, show_default=True)
@click.option("--depth", type=int, default=5, show_default=True)
@click.option("--inner-steps", type=int, default=3, show_default=True, help="Meta-SGD inner steps.")
@click.option("--lam", type=float, default=2e-5, show_default=True, help="L0 weight (higher = sparser updates).")
@click.option("--batch", type=int, default=8, show_default=True, help="Fields per outer step.")
@click.option("--points", type=int, default=2048, show_default=True, help="Points per field and step (drawn by area).")
@click.option("--steps", type=int, default=5000, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Outer learning rate of theta0.")
@click.option("--first-order", is_flag=True, help="First-order (no second derivatives: learns theta0 only).")
@click.option("--val-every", type=int, default=250, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT.run/checkpoint.pt.")
@click.option("--threads", type=int, default=0, help="torch threads (0: `mscn --threads`, else all cores).")
@click.option("--no-progress", is_flag=True)
@click.option("--export-only", is_flag=True, help="Freeze OUT.run/checkpoint.pt into OUT.pt + card, no training.")
def train_sphere(data, out, train_glob, val_glob, width, depth, inner_steps, lam, batch, points, steps, lr, first_order,
                 val_every, seed, resume, threads, no_progress, export_only) -> None:
    """Meta-train a SIREN for global fields on the sphere (one run held out; never the bench's single fields)."""
    import torch

    torch.set_num_threads(threads or _root_threads() or (os.cpu_count() or 1))
    from mscncodec.modalities.sphere_train import SphereTrainConfig, train as run_sphere

    args = [a for a in sys.argv[1:] if a not in ("--resume", "--export-only")]
    cfg = SphereTrainConfig(width=width, depth=depth, inner_steps=inner_steps, lam=lam, batch=batch, points=points,
                            steps=steps, lr=lr, first_order=first_order, val_every=val_every, seed=seed,
                            train=train_glob, val=val_glob)
    path = run_sphere(data, out, cfg, resume=resume, command="mscn " + " ".join(shlex.quote(a) for a in args),
                      progress=not no_progress, export_only=export_only)
    click.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
