"""trimesh support for .mscn mesh streams: ``import mscncodec.trimesh_plugin`` and trimesh loads and exports them.

Why: mesh code reads and writes with trimesh; with this module imported, ``trimesh.load_mesh("x.mscn")`` is a
decoded ``trimesh.Trimesh`` and ``mesh.export("x.mscn", bytes=4000)`` an encode.

trimesh (5.2) has no plugin entry point: its loaders and exporters are module-level tables keyed by file type
(``trimesh.exchange.load.mesh_loaders``, ``trimesh.exchange.export._mesh_exporters``) that every load and
export looks the type up in, so this module adds "mscn" to both when imported.

* Loading decodes with ``mscncodec.api.decode``; ``resolution=`` (and ``max_voxels=``) given to the load are
  the decode's options (the decoding grid; default the stream's own). ``trimesh.load_mesh`` and
  ``trimesh.load(..., force="mesh")`` give a ``Trimesh``; plain ``trimesh.load``, which its docstring calls
  deprecated, wraps every format outside its fixed legacy list (OBJ, STL, PLY, ...) in a ``Scene`` holding
  the one mesh. trimesh merges duplicate vertices on load unless ``process=False``.
* A stream of another modality (an image, a field) is refused with a one-line ``BitstreamError`` naming it.
* Exporting takes ``bytes`` (or ``target_bytes``), ``quality``, ``effort``, ``steps``, ``model``,
  ``resolution`` and ``max_voxels``: the options of ``mscncodec.api.encode`` for meshes; any other is refused.
  trimesh opens an output file before the exporter runs, so a refused export to a path leaves an empty file:
  ``data = mesh.export(file_type="mscn", ...)`` returns the bytes without touching the disk.
"""

from __future__ import annotations

from typing import IO

from mscncodec.errors import BitstreamError, MscnError

FILE_TYPE = "mscn"
EXPORT_OPTIONS = ("quality", "effort", "steps", "model", "resolution", "max_voxels")


def _stream_bytes(file_obj: IO[bytes] | bytes | bytearray | memoryview) -> bytes:
    if isinstance(file_obj, (bytes, bytearray, memoryview)):
        return bytes(file_obj)
    data = file_obj.read()
    if isinstance(data, str):
        raise MscnError("a .mscn stream is binary: open it in binary mode ('rb')")
    return bytes(data)


def decode_stream(data: bytes, resolution: int | None = None, max_voxels: int | None = None):
    """A mesh stream's `mscncodec.modalities.mesh.Mesh`, refusing a stream of another modality by name."""
    from mscncodec import api

    modality = api.stream_modality(data).name  # checks the whole container (magic, lengths, CRC) first
    if modality != "mesh":
        article = "an" if modality[0] in "aeiou" else "a"
        raise BitstreamError(f"the .mscn stream is {article} {modality} stream, not a mesh: decode it with mscncodec.api.decode")
    return api.decode(data, resolution=resolution, max_voxels=max_voxels)


def load_mscn(file_obj, file_type: str | None = None, resolver=None, metadata: dict | None = None,
              resolution: int | None = None, max_voxels: int | None = None, **kwargs) -> dict:
    """trimesh's loader for "mscn": the Trimesh constructor's arguments (vertices, faces) of the decoded mesh."""
    mesh = decode_stream(_stream_bytes(file_obj), resolution, max_voxels)
    return {"vertices": mesh.vertices, "faces": mesh.faces}


def export_mscn(mesh, **options) -> bytes:
    """trimesh's exporter for "mscn": the mesh encoded by `mscncodec.api.encode` (``bytes`` is ``target_bytes``)."""
    from mscncodec import api
    from mscncodec.modalities.mesh import mesh_from_trimesh

    options = api.plugin_options(options, EXPORT_OPTIONS, "export")
    if not hasattr(mesh, "faces") or not hasattr(mesh, "vertices"):
        raise MscnError(f"cannot export a {type(mesh).__name__} as .mscn: it codes triangle meshes")
    return api.encode(mesh_from_trimesh(mesh), **options)


def register() -> None:
    """Add "mscn" to trimesh's loader and exporter tables (done on import; calling it again changes nothing)."""
    from trimesh.exchange import export, load

    load.mesh_loaders[FILE_TYPE] = load_mscn
    export._mesh_exporters[FILE_TYPE] = export_mscn


register()

__all__ = ["FILE_TYPE", "decode_stream", "export_mscn", "load_mscn", "register"]
