"""``mscn bench``: rate-distortion benchmark of mscn against classical codecs.

Registered into the main ``mscn`` group by the core CLI (``main.add_command(bench)``);
also runnable alone as ``python -m mscncodec.bench.cli``.
"""

from __future__ import annotations

from pathlib import Path

import click

from mscncodec.bench.codecs import CODEC_IDS, UnknownCodecError, resolve_codecs
from mscncodec.bench.runner import DEFAULT_POINTS, IMAGE_EXTS, BenchError, find_images, run_bench

DEFAULT_CODECS = ",".join(CODEC_IDS)


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
@click.option("--codecs", default=DEFAULT_CODECS, show_default=True,
              help="Comma-separated ids: " + ", ".join(CODEC_IDS) + "; mscn:MODEL / coin:MODEL pick one model. "
                   "Meshes: draco, draco:QP, simplify-draco, mscn, mscn@EFFORT (default: all).")
@click.option("--points", default=",".join(f"{p:g}" for p in DEFAULT_POINTS), show_default=True,
              help="Comma-separated target bits per pixel.")
@click.option("--inr-points", default=None,
              help="Target bpps for the per-image-fitted codecs (mscn, coin), which take seconds per point; "
                   "default: same as --points.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes (1 = run inline).")
@click.option("--limit", default=None, type=click.IntRange(min=1),
              help="Use only the first N images (sorted by name).")
@click.option("--report-only", default="",
              help="Comma-separated codec ids (from --codecs) whose missing points are not computed; their cached "
                   "points are still reported (keeps old rows when the point list grows).")
@click.option("--no-plot", is_flag=True, help="Skip rd.png.")
@click.option("--no-anchors", is_flag=True,
              help="Do not overlay published Kodak curves (use for non-Kodak datasets).")
@click.option("--sizes", default="2000,4000,8000", show_default=True,
              help="Meshes only: comma-separated byte targets.")
@click.option("--resolution", default=128, show_default=True, type=click.IntRange(min=8, max=1024),
              help="Meshes only: marching-cubes grid mscn decodes at.")
def bench(dataset_dir: Path, out: Path, codecs: str, points: str, inr_points: str | None, jobs: int,
          limit: int | None, report_only: str, no_plot: bool, no_anchors: bool, sizes: str, resolution: int) -> None:
    """Benchmark codecs on the images (or meshes) in DATASET_DIR at fixed targets.

    Every codec is pushed to the largest file that fits each target bpp; PSNR
    (RGB), MS-SSIM, real bpp and timings are written to OUT as per-codec
    CompressAI-style JSON, points.csv, bd.md/bd.json and rd.png.  Rerunning
    with the same OUT resumes from OUT/cache.jsonl.

    A folder with meshes (.obj .ply .stl .off .glb) and no images runs the mesh
    bench instead: codecs draco, simplify-draco, mscn (default all) at --sizes
    byte targets; Chamfer, normal consistency, F-score and IoU go to
    OUT/results.json/.csv, summary.md, rd.png and side_by_side_*.png.
    """
    from mscncodec.bench.mesh import has_meshes

    if not _has_images(dataset_dir) and has_meshes(dataset_dir):
        ctx = click.get_current_context()
        default = ctx.get_parameter_source("codecs") == click.core.ParameterSource.DEFAULT
        _bench_meshes(dataset_dir, out, None if default else codecs, sizes, resolution, limit, no_plot)
        return
    pts = _parse_points(points)
    slow_pts = _parse_points(inr_points) if inr_points else None
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


def _bench_meshes(dataset_dir: Path, out: Path, codecs: str | None, sizes: str, resolution: int,
                  limit: int | None, no_plot: bool) -> None:
    """The mesh bench behind ``mscn bench`` (see :mod:`.mesh`); ``codecs`` None means all mesh codecs."""
    from mscncodec.bench import mesh

    try:
        targets = [int(t) for t in sizes.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {sizes!r}", param_hint="--sizes")
    if not targets or any(t <= 0 for t in targets):
        raise click.BadParameter("byte targets must be positive", param_hint="--sizes")
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
