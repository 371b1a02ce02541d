"""``mscn bench``: rate-distortion benchmark of mscn against classical codecs.

Registered into the main ``mscn`` group by the core CLI (``main.add_command(bench)``);
also runnable alone as ``python -m mscncodec.bench.cli``.
"""

from __future__ import annotations

from pathlib import Path

import click

from mscncodec.bench.codecs import CODEC_IDS, UnknownCodecError, resolve_codecs
from mscncodec.bench.runner import DEFAULT_POINTS, IMAGE_EXTS, BenchError, find_images, run_bench

#: What a plain `mscn bench DIR` runs: every classical codec at DEFAULT_POINTS (cheap: about a second per
#: image and point) and the default mscn model at `fast` effort at DEFAULT_INR_POINTS, chosen so the 24
#: Kodak images finish within an hour on 2 cores (experiments/2026-11-bench-time/). `--full` is the old sweep.
DEFAULT_CODECS = "jpeg,jpeg444,webp,jpeg2000,avif,heic,jxl,mscn:auto@fast"
DEFAULT_INR_POINTS: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0)
#: `--full`: every codec id (each shipped mscn model at default effort, and the COIN baseline) at every point.
FULL_CODECS = ",".join(CODEC_IDS)


def _parse_points(text: str) -> list[float]:
    """Comma-separated target bpps; a bad entry is a usage error, not a traceback."""
    try:
        pts = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint="--points")
    if not pts or any(not 0 < p <= 24 for p in pts):
        raise click.BadParameter("target bpps must be in (0, 24]", param_hint="--points")
    return pts


@click.command("bench")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out", default=Path("bench-out"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (also holds the resume cache).")
@click.option("--codecs", default=None,
              help="Comma-separated ids: " + ", ".join(CODEC_IDS) + "; mscn:MODEL / coin:MODEL pick one model "
                   "(mscn alone: every shipped model), MODEL@EFFORT an effort. [default: " + DEFAULT_CODECS
                   + "; with --full: all]. Meshes: draco, draco:QP, simplify-draco, mscn, mscn@EFFORT (default: all).")
@click.option("--points", default=",".join(f"{p:g}" for p in DEFAULT_POINTS), show_default=True,
              help="Comma-separated target bits per pixel.")
@click.option("--inr-points", default=None,
              help="Target bpps for the per-image-fitted codecs (mscn, coin), which take seconds per point "
                   "[default: " + ",".join(f"{p:g}" for p in DEFAULT_INR_POINTS) + "; with --full: --points].")
@click.option("--full", is_flag=True,
              help="The full, slow sweep: every codec id (each shipped mscn model at default effort, COIN) at every "
                   "--points target (hours on 2 cores). Without it the defaults fit Kodak in about an hour.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes (1 = run inline).")
@click.option("--limit", default=None, type=click.IntRange(min=1),
              help="Use only the first N images (sorted by name).")
@click.option("--report-only", default="",
              help="Comma-separated codec ids (from --codecs) whose missing points are not computed; their cached "
                   "points are still reported (keeps old rows when the point list grows).")
@click.option("--no-plot", is_flag=True, help="Skip rd.png and crops.png.")
@click.option("--no-anchors", is_flag=True,
              help="Do not overlay published Kodak curves (use for non-Kodak datasets).")
@click.option("--sizes", default=None,
              help="Meshes and fields: comma-separated byte targets [meshes 2000,4000,8000; fields "
                   "1000,2000,3000,5000,8000].")
@click.option("--per-file", default=1, show_default=True, type=click.IntRange(min=1),
              help="Fields only: evenly spaced time steps benchmarked per netCDF file.")
@click.option("--resolution", default=128, show_default=True, type=click.IntRange(min=8, max=1024),
              help="Meshes only: marching-cubes grid mscn decodes at.")
def bench(dataset_dir: Path, out: Path, codecs: str | None, points: str, inr_points: str | None, full: bool,
          jobs: int, limit: int | None, report_only: str, no_plot: bool, no_anchors: bool, sizes: str | None,
          per_file: int, resolution: int) -> None:
    """Benchmark codecs on the images (or meshes) in DATASET_DIR at fixed targets.

    Every codec is pushed to the largest file that fits each target bpp; PSNR
    (RGB), MS-SSIM, real bpp and timings are written to OUT as per-codec
    CompressAI-style JSON, points.csv, bd.md/bd.json, rd.png and crops.png (the
    same detail of the first image from every codec near 0.25 bpp), and
    report.html, one offline page with the curves, BD tables and crops.  The
    estimated time is printed first and refined after the first image.
    Rerunning with the same OUT resumes from OUT/cache.jsonl.

    A folder with meshes (.obj .ply .stl .off .glb) and no images runs the mesh
    bench instead: codecs draco, simplify-draco, mscn (default all) at --sizes
    byte targets; Chamfer, normal consistency, F-score and IoU go to
    OUT/results.json/.csv, summary.md, rd.png and side_by_side_*.png.

    A folder of netCDF files (.nc) runs the fields bench: zfp, SZ3, JPEG 2000
    16-bit and mscn (default all) at --sizes byte targets on --per-file time
    steps of each file; area-weighted RMSE, max error and PSNR go to
    OUT/results.json, points.csv, summary.md, rd.png and map.png.
    """
    from mscncodec.bench.fields import has_fields
    from mscncodec.bench.mesh import has_meshes

    if not _has_images(dataset_dir) and has_fields(dataset_dir):
        _bench_fields(dataset_dir, out, codecs, sizes, per_file, limit, no_plot)
        return
    if not _has_images(dataset_dir) and has_meshes(dataset_dir):
        _bench_meshes(dataset_dir, out, codecs, sizes or "2000,4000,8000", resolution, limit, no_plot)
        return
    pts = _parse_points(points)
    slow_pts = _parse_points(inr_points) if inr_points else (None if full else list(DEFAULT_INR_POINTS))
    codecs = codecs or (FULL_CODECS if full else DEFAULT_CODECS)
    try:
        selected, notices = resolve_codecs(codecs)
    except UnknownCodecError as exc:
        raise click.UsageError(str(exc))
    for n in notices:
        click.echo(n, err=True)
    keep = set()
    if report_only:
        try:
            keep = {c.key for c in resolve_codecs(report_only)[0]}
        except UnknownCodecError as exc:
            raise click.UsageError(str(exc))
    try:
        images = find_images(dataset_dir, limit)
        result = run_bench(images, selected, out, pts, jobs=jobs, slow_points=slow_pts, plot=not no_plot,
                           anchors=not no_anchors, echo=lambda m: click.echo(m, err=True), report_only=keep)
    except BenchError as exc:
        raise click.ClickException(str(exc))
    if not result.codecs:
        raise click.ClickException("no usable codecs (all were unavailable)")
    from mscncodec.bench.report import bd_markdown, summary_line

    click.echo(bd_markdown(result.bd))
    click.echo(summary_line(result))


def _has_images(directory: Path) -> bool:
    """Whether the folder holds an image (an unreadable folder: False, the image path reports it)."""
    try:
        return any(p.suffix.lower() in IMAGE_EXTS for p in directory.iterdir())
    except OSError:
        return False


def _byte_targets(sizes: str) -> list[int]:
    try:
        targets = [int(t) for t in sizes.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {sizes!r}", param_hint="--sizes")
    if not targets or any(t <= 0 for t in targets):
        raise click.BadParameter("byte targets must be positive", param_hint="--sizes")
    return targets


def _bench_fields(dataset_dir: Path, out: Path, codecs: str | None, sizes: str | None, per_file: int,
                  limit: int | None, no_plot: bool) -> None:
    """The fields bench behind ``mscn bench`` (see :mod:`.fields`)."""
    from mscncodec.bench import fields
    from mscncodec.bench.base import available_codecs

    targets = _byte_targets(sizes or ",".join(str(s) for s in fields.DEFAULT_SIZES))
    try:
        selected, notices = available_codecs(fields.resolve(codecs or fields.DEFAULT_CODECS))
    except ValueError as exc:
        raise click.UsageError(str(exc))
    for n in notices:
        click.echo(n, err=True)
    if not selected:
        raise click.ClickException("no usable field codecs (all were unavailable)")
    refs = fields.find_fields(dataset_dir, per_file, limit)
    try:
        fields.run_fields_bench(refs, selected, targets, out, plot=not no_plot, echo=lambda m: click.echo(m, err=True))
    except BenchError as exc:
        raise click.ClickException(str(exc))
    click.echo((out / "summary.md").read_text(encoding="utf-8"))


def _bench_meshes(dataset_dir: Path, out: Path, codecs: str | None, sizes: str, resolution: int,
                  limit: int | None, no_plot: bool) -> None:
    """The mesh bench behind ``mscn bench`` (see :mod:`.mesh`); ``codecs`` None means all mesh codecs."""
    from mscncodec.bench import mesh

    targets = _byte_targets(sizes)
    try:
        selected, notices = mesh.resolve_mesh_codecs(codecs or mesh.DEFAULT_MESH_CODECS, resolution)
    except UnknownCodecError as exc:
        raise click.UsageError(str(exc))
    for n in notices:
        click.echo(n, err=True)
    if not selected:
        raise click.ClickException("no usable mesh codecs (all were unavailable)")
    try:
        result = mesh.run_mesh_bench(mesh.find_meshes(dataset_dir, limit), selected, out, targets, plot=not no_plot,
                                     render=not no_plot, echo=lambda m: click.echo(m, err=True))
    except BenchError as exc:
        raise click.ClickException(str(exc))
    click.echo((out / "summary.md").read_text(encoding="utf-8"))
    click.echo(mesh.summary_line(result))


if __name__ == "__main__":
    bench()
