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


class _Group(click.Group):
    """Turn every MscnError into one line on stderr and a non-zero exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MscnError as e:
            _fail(e)
        except KeyboardInterrupt:
            click.echo("mscn: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mscncodec")
def main() -> None:
    """mscn: compress images into small .mscn files with meta-learned sparse neural networks."""
    from mscncodec._runtime import set_threads

    set_threads()


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write via a temporary file in the same folder, then rename: never a half-written output."""
    from mscncodec.container.files import atomic_write

    atomic_write(path, data, force)


@main.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), required=True, help="Output .mscn file.")
@click.option("--bpp", type=float, default=None, help="Images: target rate in bits per pixel (real file size).")
@click.option("--bytes", "target_bytes", type=click.IntRange(1, None), default=None,
              help="Target file size in bytes (at or just under), for any modality.")
@click.option("--quality", type=click.IntRange(0, 100), default=None, help="Quality 0-100 instead of a size target.")
@click.option("--model", "model_name", default=None, help="Model name (see `mscn models`); default: picked for the rate.")
@click.option("--arch", type=click.Choice(["siren", "grid", "grid2"]), default=None,
              help="Images: INR family when no --model is given [default: the shipped default, see `mscn models`].")
@click.option("--resolution", type=click.IntRange(8, 1024), default=None,
              help="Meshes: default decoding grid stored in the file [128].")
@click.option("--steps", type=click.IntRange(0, 100000), default=None, help="Fitting steps after the inner loop.")
@click.option("--effort", type=click.Choice(["fast", "default", "max"]), default="default", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def encode(src: Path, out: Path, bpp, target_bytes, quality, model_name, arch, resolution, steps, effort, force,
           quiet) -> None:
    """Encode an image or a mesh SRC (.obj .ply .stl .off .glb) into a .mscn file."""
    from mscncodec.api import encode as encode_any, input_modality
    from mscncodec.container.files import check_input, check_output

    check_input(src)
    check_output(out, force, src=src)
    given = [n for n, v in (("--bpp", bpp), ("--bytes", target_bytes), ("--quality", quality)) if v is not None]
    if len(given) > 1:
        raise MscnError(f"give only one of {' or '.join(given)} (a size or a quality target)")
    mod = input_modality(src)
    t = time.perf_counter()
    data, report = encode_any(src, bpp=bpp, target_bytes=target_bytes, quality=quality, model=model_name, arch=arch,
                              resolution=resolution, steps=steps, effort=effort, progress=not quiet,
                              return_report=True)
    write_atomic(out, data, force)
    if not quiet:
        if mod.name == "image":
            click.echo(f"{out}: {len(data)} bytes, {report['bpp']:.4f} bpp, PSNR {report['psnr']:.2f} dB "
                       f"(model {report['model']}, arch {report['arch']}, {time.perf_counter() - t:.1f} s)")
        else:
            click.echo(f"{out}: {len(data)} bytes, Chamfer-L1 {report['chamfer_l1']:.5f} of the diagonal, "
                       f"IoU {report['iou']:.3f} at {report['resolution']}^3 (model {report['model']}, "
                       f"{time.perf_counter() - t:.1f} s)")
        if report.get("note"):
            click.echo(f"note: {report['note']}")


@main.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), required=True,
              help="Output image (.png, ...) or mesh (.ply .obj .stl .off .glb).")
@click.option("--resolution", type=click.IntRange(8, 1024), default=None,
              help="Meshes: decoding grid (samples per side) [the file's, 128 by default]; 256 or 512 give finer surfaces.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("-v", "--verbose", is_flag=True, help="Print size and decode time.")
def decode(src: Path, out: Path, resolution, force: bool, verbose: bool) -> None:
    """Decode a .mscn file SRC into an image or a mesh (whichever it holds)."""
    from mscncodec.api import decode as decode_any, stream_modality
    from mscncodec.container.files import check_output, read_input

    check_output(out, force, src=src)
    data = read_input(src)
    mod = stream_modality(data)
    if "*" not in mod.outputs and out.suffix.lower() not in mod.outputs:
        raise MscnError(f"unknown output format {out.suffix or '(none)'!r} for the {mod.name} in {src} "
                        f"(use {', '.join(mod.outputs)})")
    t = time.perf_counter()
    signal = decode_any(data, resolution=resolution)
    dt = time.perf_counter() - t
    write_atomic(out, mod.write(signal, out.suffix), force)
    if verbose:
        if mod.name == "image":
            h, w = signal.shape[:2]
            click.echo(f"{out}: {w}x{h}, decoded {len(data)} bytes ({8 * len(data) / (h * w):.4f} bpp) in {dt:.2f} s")
        else:
            click.echo(f"{out}: {len(signal.vertices)} vertices, {len(signal.faces)} faces, decoded {len(data)} bytes "
                       f"in {dt:.2f} s")


@main.command()
@click.argument("src", type=click.Path(path_type=Path))
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

    click.echo(f"default architecture: {default_arch()}")
    for m in list_models():
        val = m.meta.get("validation", {}).get("val_psnr")
        extra = f", val {val:.2f} dB" if val else ""
        click.echo(f"{m.name:<24} id {m.model_id.hex()}  {m.summary()}{extra}  {m.description}")


@main.group()
def train() -> None:
    """Meta-train an initialisation (writes models/NAME.pt + model card)."""


@train.command("image")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="models/NAME (no suffix).")
@click.option("--arch", type=click.Choice(["siren", "grid", "grid2"]), default="siren", show_default=True,
              help="siren: the paper's SIREN over patches; grid: latent grids + synthesis network; "
                   "grid2: full-resolution grids, learned upsampling, auto-regressive context model.")
@click.option("--mode", type=click.Choice(["full", "shift"]), default="full", show_default=True,
              help="siren: full = unstructured gates on every weight; shift = structured per-neuron shifts.")
@click.option("--width", type=int, default=32, show_default=True, help="siren width.")
@click.option("--depth", type=int, default=5, show_default=True, help="siren depth.")
@click.option("--patch", type=int, default=None, help="siren patch / grid crop side [siren 32, grid 32, grid2 192].")
@click.option("--levels", type=int, default=None, help="grid/grid2: number of latent grids [grid 6, grid2 7].")
@click.option("--first", type=int, default=1, show_default=True, help="grid: the finest grid is at 1/2**FIRST resolution.")
@click.option("--hidden", default=None, help="grid/grid2: synthesis hidden widths [grid 24,24; grid2 20,20].")
@click.option("--inner-steps", type=int, default=None, help="Meta-SGD inner steps [siren 3, grid 1].")
@click.option("--inner-every", type=int, default=4, show_default=True, help="grid: inner loop on every k-th step.")
@click.option("--log2-lam", default=None,
              help="grid/grid2 [-12,-2 / -13,-3]: range of log2(lambda) sampled in training (rate + MSE / lambda): the rates the model covers.")
@click.option("--lam", type=float, default=0.1, show_default=True, help="siren: L0 weight (higher = sparser).")
@click.option("--batch", type=int, default=None, help="Batch of crops [siren 32, grid 8].")
@click.option("--steps", type=int, default=20000, show_default=True)
@click.option("--lr", type=float, default=None, help="Outer learning rate [siren 2e-4, grid 2e-3].")
@click.option("--first-order", is_flag=True, help="First-order Meta-SGD (no second derivatives).")
@click.option("--val-every", type=int, default=250, show_default=True)
@click.option("--max-images", type=int, default=0, help="Use only the first N training images (tests).")
@click.option("--val-patches", type=int, default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT.run/checkpoint.pt.")
@click.option("--threads", type=int, default=0, help="torch threads (0: all cores / one per torchrun process).")
@click.option("--no-progress", is_flag=True)
@click.option("--device", default="cpu", show_default=True, help="grid2: torch device (cuda where a GPU is lent).")
@click.option("--export-only", is_flag=True, help="grid2: freeze OUT.run/checkpoint.pt into OUT.pt + card, no training.")
def train_image(data, out, arch, mode, width, depth, patch, levels, first, hidden, inner_steps, inner_every, log2_lam, lam, batch,
                steps, lr, first_order, val_every, max_images, val_patches, seed, resume, threads, no_progress, device,
                export_only) -> None:
    """Meta-train an image initialisation on a folder of photos (never on Kodak)."""
    import torch

    if "kodak" in str(data).lower():
        raise MscnError("refusing to train on Kodak: it is a benchmark set")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // world))
    args = [a for a in sys.argv[1:] if a != "--resume"]
    command = "mscn " + " ".join(shlex.quote(a) for a in args)
    if arch != "grid2" and (export_only or device != "cpu"):
        raise MscnError("--device and --export-only are for --arch grid2")
    if arch == "grid2":
        from mscncodec.families.grid2.train import Grid2TrainConfig, export_checkpoint, train as run_grid2

        if export_only:
            click.echo(f"wrote {export_checkpoint(data, out, command.replace(' --export-only', ''))}")
            return
        if world > 1:
            raise MscnError("--arch grid2 trains on one process (no torchrun)")
        try:
            widths = tuple(int(v) for v in (hidden or "20,20").split(","))
            lam_lo, lam_hi = (float(v) for v in (log2_lam or "-13,-3").split(","))
        except ValueError:
            raise MscnError("--hidden must be comma-separated integers and --log2-lam two numbers MIN,MAX") from None
        if not -20 <= lam_lo < lam_hi <= 0:
            raise MscnError(f"--log2-lam needs -20 <= MIN < MAX <= 0, got {log2_lam!r}")
        lv = levels or 7
        if not 2 <= lv <= 9:
            raise MscnError(f"--levels must be in [2, 9] for grid2, got {lv}")
        g2 = Grid2TrainConfig(levels=lv, hidden=widths, crop=patch or 192, batch=batch or 6,
                              steps=steps, lr=lr or 2e-3, log2_lam=(lam_lo, lam_hi), val_every=val_every,
                              max_images=max_images, seed=seed)
        path = run_grid2(data, out, g2, resume=resume, command=command, progress=not no_progress, device=device)
        click.echo(f"wrote {path}")
        return
    levels = levels or 6
    hidden = hidden or "24,24"
    patch = patch or 32
    log2_lam = log2_lam or "-12,-2"
    if arch == "grid":
        from mscncodec.families.grid.train import GridTrainConfig, train as run_grid

        if world > 1:
            raise MscnError("--arch grid trains on one process (no torchrun)")
        try:
            widths = tuple(int(v) for v in hidden.split(","))
        except ValueError:
            raise MscnError(f"--hidden must be comma-separated integers, got {hidden!r}") from None
        try:
            lam_lo, lam_hi = (float(v) for v in log2_lam.split(","))
        except ValueError:
            raise MscnError(f"--log2-lam must be two numbers MIN,MAX, got {log2_lam!r}") from None
        if not -20 <= lam_lo < lam_hi <= 0:
            raise MscnError(f"--log2-lam needs -20 <= MIN < MAX <= 0, got {log2_lam!r}")
        align = 2 ** (first + levels - 1)
        if levels < 1 or first < 0 or not 4 <= align <= 256:
            raise MscnError(f"2**(first+levels-1) = {align} must be in [4, 256] (the stream's alignment field)")
        if patch % align:
            raise MscnError(f"--patch {patch} must be a multiple of 2**(first+levels-1) = {align}")
        gcfg = GridTrainConfig(levels=levels, first=first, hidden=widths, crop=patch, batch=batch or 8, steps=steps,
                               inner_steps=1 if inner_steps is None else inner_steps, inner_every=inner_every,
                               log2_lam=(lam_lo, lam_hi),
                               lr=lr or 2e-3, val_every=val_every, max_images=max_images, seed=seed,
                               first_order=first_order)
        path = run_grid(data, out, gcfg, resume=resume, command=command, progress=not no_progress)
        click.echo(f"wrote {path}")
        return
    from mscncodec.families.siren.train import TrainConfig, train as run

    cfg = TrainConfig(width=width, depth=depth, mode=mode, patch=patch,
                      inner_steps=3 if inner_steps is None else inner_steps, lam=lam,
                      batch=batch or 32, steps=steps, lr=lr or 2e-4, first_order=first_order, val_every=val_every,
                      max_images=max_images, val_patches=val_patches, seed=seed)
    path = run(data, out, cfg, resume=resume, command=command, progress=not no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"wrote {path}")


@train.command("mesh")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of meshes (a MESHES.tsv there selects the watertight ones).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="models/NAME (no suffix).")
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
@click.option("--threads", type=int, default=0, help="torch threads (0: all cores).")
@click.option("--no-progress", is_flag=True)
@click.option("--export-only", is_flag=True, help="Freeze OUT.run/checkpoint.pt into OUT.pt + card, no training.")
def train_mesh(data, out, width, depth, inner_steps, lam, batch, points, steps, lr, first_order, val_every, max_meshes,
               pool, seed, resume, threads, no_progress, export_only) -> None:
    """Meta-train a signed-distance SIREN on a folder of meshes (never on the test meshes)."""
    import torch

    if "meshes-test" in str(data):
        raise MscnError("refusing to train on meshes-test: it is a benchmark set")
    torch.set_num_threads(threads or (os.cpu_count() or 1))
    from mscncodec.families.siren.train_sdf import MeshTrainConfig, train as run_mesh

    args = [a for a in sys.argv[1:] if a not in ("--resume", "--export-only")]
    cfg = MeshTrainConfig(width=width, depth=depth, inner_steps=inner_steps, lam=lam, batch=batch, points=points,
                          steps=steps, lr=lr, first_order=first_order, val_every=val_every, max_meshes=max_meshes,
                          pool=pool, seed=seed)
    path = run_mesh(data, out, cfg, resume=resume, command="mscn " + " ".join(shlex.quote(a) for a in args),
                    progress=not no_progress, export_only=export_only)
    click.echo(f"wrote {path}")


from mscncodec.bench.cli import bench  # noqa: E402  (registered last: it imports nothing heavy at start-up)

main.add_command(bench)

if __name__ == "__main__":  # pragma: no cover
    main()
