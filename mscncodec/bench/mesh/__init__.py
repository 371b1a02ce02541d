"""Mesh benchmark: mscn against Draco and decimation + Draco at fixed byte targets.

The mesh counterpart of the image bench (:mod:`mscncodec.bench.runner`, ``.report``, ``.plot``): meshes need
their own codec interface, metrics and pictures but the same discipline:

* every codec is asked for "the best file that fits in N bytes", so all curves
  are sampled at the same targets and can be averaged over meshes;
* the rate is the real size of the bytes the codec returns;
* every metric is computed by :func:`mscncodec.modalities.mesh_metrics.compare`
  on the decoded mesh against the same reference, for every codec alike;
* finished points go to ``OUT/cache.jsonl`` (:mod:`mscncodec.bench.cache`: keyed by the mesh's
  content hash, the codec id and declared identity (:class:`mscncodec.bench.base.Keyed`), the target
  and the metric settings), so reruns only do what is missing; failed points are
  not cached and are retried.

Outputs in ``OUT``: ``results.json``, ``results.csv``, ``rd.png`` (Chamfer-L1
vs bytes, per mesh and averaged), ``summary.md`` (tables and the log-Chamfer
gap at equal bytes, see :func:`.report.log_chamfer_gap`) and
``side_by_side_<mesh>.png`` (the original and every codec's reconstruction at
the target nearest 4 KB, rendered from one camera).  The decoded meshes at
that target are kept in ``OUT/meshes/`` so a cached rerun can still render.

The parts: :mod:`.data` (meshes as arrays, the inputs, the run's result), :mod:`.codecs` (the codec
interface, Draco, decimation + Draco, mscn), :mod:`.runner` (the resumable loop), :mod:`.report`
(tables, comparison and the rate-distortion plot), :mod:`.render` (the side-by-side pictures).

Heavy libraries (trimesh, DracoPy, fast_simplification, libigl, matplotlib,
the mscn core) are imported inside functions: importing this package is cheap,
and a missing library makes one codec unavailable instead of breaking the
bench.
"""

from mscncodec.bench.mesh.data import (MESH_EXTS, RENDER_BYTES, MeshBenchResult, MeshData, MeshRef, as_mesh,
                                       decoded_path, find_meshes, has_meshes, load_mesh, prepare_meshes, render_target,
                                       save_ply, weld)
from mscncodec.bench.mesh.codecs import (DEFAULT_MESH_CODECS, DEFAULT_RESOLUTION, MESH_CODEC_IDS, Draco, Encoded,
                                         MeshCodec, Mscn, SimplifyDraco, draco_decode, draco_encode,
                                         resolve_mesh_codecs)
from mscncodec.bench.mesh.render import render_side_by_side
from mscncodec.bench.mesh.report import (AVG_FIELDS, COMPARE_METHOD, CSV_FIELDS, averages, compare_codecs,
                                         log_chamfer_gap, plot_rd, summary_line, summary_markdown, write_reports)
from mscncodec.bench.mesh.runner import DEFAULT_SAMPLES, DEFAULT_SIZES, point_key, run_mesh_bench, run_mesh_point

__all__ = [
    "MESH_EXTS", "RENDER_BYTES", "MeshBenchResult", "MeshData", "MeshRef", "as_mesh", "decoded_path", "find_meshes",
    "has_meshes", "load_mesh", "prepare_meshes", "render_target", "save_ply", "weld",
    "DEFAULT_MESH_CODECS", "DEFAULT_RESOLUTION", "MESH_CODEC_IDS", "Draco", "Encoded", "MeshCodec", "Mscn",
    "SimplifyDraco", "draco_decode", "draco_encode", "resolve_mesh_codecs", "render_side_by_side",
    "AVG_FIELDS", "COMPARE_METHOD", "CSV_FIELDS", "averages", "compare_codecs", "log_chamfer_gap", "plot_rd",
    "summary_line", "summary_markdown", "write_reports",
    "DEFAULT_SAMPLES", "DEFAULT_SIZES", "point_key", "run_mesh_bench", "run_mesh_point",
]
