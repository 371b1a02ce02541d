"""The series codec: a time series of global fields (time x lat x lon) as ONE stream on grid3's 3-D latent grid.

Coding the steps together keeps the redundancy between them that coding them one by one throws away. The
volume is the series normalised by its range ([vmin, vmax] in the header), longitude periodic, weighted by
cos(latitude) (the figure of merit is the area-weighted RMSE), a missing value weighing 0 and coded as a
bitmap (MISS, never filled in). What else a user needs back travels in its own sections, counted in the size:
``META`` (variable, units, attributes, the time coordinate bit-exact: ``series.pack_series_meta``) and ``LATC``
/ ``LONC`` (grid corrections, as for one field). ``decode_series(data, time=K)`` renders one step only.
"""

from __future__ import annotations

import math
import time as _time
from pathlib import Path

import numpy as np

from mscncodec import families
from mscncodec.coding.bitmap import decode_bitmap, encode_bitmap
from mscncodec.container import bitstream
from mscncodec.errors import BitstreamError, LimitError, MscnError, RateError
from mscncodec.models import modality_model, stream_model
from mscncodec.modalities import check_byte_target, check_density, grid3_description, unpack_stream
from mscncodec.modalities import series as ser
from mscncodec.modalities import sphere_grid as sgrid

MODALITY_CODE = bitstream.modality_code("series")
EFFORTS = ("fast", "default", "max")
QUALITY_RATIO = 200.0  # compression of the float32 data that quality 50 aims at
POINTS_PER_STEP = 1 << 16  # points of the fit's random batch per step
FIT_LR_SCALE = 4.0  # held-out run, 300x, default effort: RMSE 1.23 K at 4x the schedule's rates, 2.12 K at 1x


def quality_bytes(quality: int, points: int) -> float:
    """The size a quality setting aims at: 200x compression of the float32 values at 50, x2 per 25 more."""
    return 4.0 * points / QUALITY_RATIO * 2.0 ** ((quality - 50) / 25)


def pick_model(model=None, target_bytes: float | None = None, points: int | None = None):
    """--model, else the shipped series start whose trained rates (its card's calibration points, bits per point)
    are centred nearest the target's bits per point (in octaves): a start trains at one finest grid, which
    serves one range of rates."""
    if model is not None or target_bytes is None or not points:
        return modality_model(model, "series", target_bytes)
    from mscncodec.models import models_dir, load_model

    starts = [m for m in (load_model(p.stem) for p in sorted(models_dir().glob("*.pt")))
              if m.modality == "series" and m.meta.get("calibration_points")]
    if not starts:
        return modality_model(None, "series", target_bytes)
    want = math.log2(8.0 * target_bytes / points)

    def distance(m) -> float:
        rates = [math.log2(max(p["bits_per_point"], 1e-9)) for p in m.meta["calibration_points"]]
        return abs((min(rates) + max(rates)) / 2 - want)

    return min(starts, key=distance)


def _sections(f: ser.SeriesField, kind: int) -> list[tuple[str, bytes]]:
    t, nlat, nlon = f.shape
    secs = [("META", ser.pack_series_meta(f))]
    if f.mask.any():
        secs.append(("MISS", encode_bitmap(f.mask.reshape(t * nlat, nlon))))
    latc = sgrid.corrections(f.lat, sgrid.latitudes(kind, nlat, float(f.lat[0]), float(f.lat[-1])))
    lonc = sgrid.corrections(f.lon, sgrid.regular_longitudes(nlon, float(f.lon[0])))
    return secs + [(tag, c) for tag, c in (("LATC", latc), ("LONC", lonc)) if c]


def finest_grid(shape: tuple[int, int, int], divisor: int = 2) -> tuple[int, int, int]:
    """The finest latent grid: the series' resolution over `divisor` on every axis, rounded up (the model's own:
    a start is trained at one; at 100x and more, half the resolution, at lower ratios the full one)."""
    return tuple(max(1, -(-n // divisor)) for n in shape)  # type: ignore[return-value]


def volume_target(f: ser.SeriesField, vmin: float, vmax: float, divisor: int = 2):
    """The family's target: every point of the series, normalised to [-1, 1], cos(lat)-weighted, mean weight 1."""
    import torch

    from mscncodec.families.grid2.volume.fit import VolumeTarget
    from mscncodec.families.grid2.volume.synthesis import cell_centres

    t, nlat, nlon = f.shape
    mid, half = (vmin + vmax) / 2, max((vmax - vmin) / 2, 1e-30)
    ok = ~f.mask
    y = np.where(ok, (f.values - mid) / half, 0.0)
    w = np.cos(np.deg2rad(f.lat.astype(np.float64)))[None, :, None] * ok
    w = w / max(w.mean(), 1e-30)
    cz, cy, cx = cell_centres((t, nlat, nlon))
    pts = torch.stack(torch.meshgrid(cz, cy, cx, indexing="ij"), -1).reshape(-1, 3)
    return VolumeTarget(pts, torch.from_numpy(y.reshape(-1)).float(), torch.from_numpy(w.reshape(-1)).float(),
                        finest_grid(f.shape, divisor), rate_norm=float(t * nlat * nlon), batch=POINTS_PER_STEP,
                        lr_scale=FIT_LR_SCALE)


def header_for(m, f: ser.SeriesField, kind: int, vmin: float, vmax: float) -> dict:
    t, nlat, nlon = f.shape
    return {"magic": bitstream.MAGIC, "version": bitstream.VERSION, "modality": MODALITY_CODE,
            "arch": families.of(m).code, "model_id": m.model_id, "steps": t, "nlat": nlat, "nlon": nlon,
            "lat_kind": kind, "lat_first": float(f.lat[0]), "lat_last": float(f.lat[-1]),
            "lon_first": float(f.lon[0]), "vmin": vmin, "vmax": vmax}


def encode_series(src, *, target_bytes: int | None = None, quality: int | None = None, model=None,
                  effort: str = "default", steps: int | None = None, var: str | None = None, time=None,
                  level: int | None = None, grid: str | None = None, progress: bool = False,
                  return_report: bool = False):
    """Encode the steps `time` ("a:b", None: all) of netCDF variable `var` (or a SeriesField) as one stream at or
    just under `target_bytes`, else at `quality` (0-100, default 50: 200x compression)."""
    check_byte_target(target_bytes, quality, effort, EFFORTS)
    if grid is not None:
        raise MscnError("--grid names the layout of a .npy field; a series comes from a netCDF file")
    t0 = _time.perf_counter()
    f = ser.validate_series(src) if isinstance(src, ser.SeriesField) else ser.load_series(src, var=var, time=time,
                                                                                        level=level)
    t, nlat, nlon = f.shape
    if target_bytes is None:
        target_bytes = int(round(quality_bytes(50 if quality is None else quality, t * nlat * nlon)))
    m = pick_model(model, float(target_bytes), t * nlat * nlon)
    vmin, vmax = sgrid.value_range(f.values)
    kind = sgrid.lat_kind(f.lat)
    header = header_for(m, f, kind, vmin, vmax)
    extra = _sections(f, kind)
    fixed = bitstream.header_size(MODALITY_CODE) + sum(len(d) + 8 for _, d in extra)
    floor = max(fixed + 64, min_series_bytes(t, nlat, nlon))
    if target_bytes < floor:
        raise RateError(f"target {target_bytes} bytes is below this codec's minimum for this series ({floor} bytes: "
                        "header, metadata" + (", missing-value mask" if f.mask.any() else "") + " and the latents)")
    import torch

    from mscncodec.families.grid2.volume import codec as vcodec

    say = (lambda msg: print(msg, flush=True)) if progress else None
    with torch.random.fork_rng():
        torch.manual_seed(0)
        secs, info = vcodec.encode(m, volume_target(f, vmin, vmax, m.meta.get("finest_divisor", 2)), target_bytes - fixed, effort=effort,
                                   steps=steps, progress=say)
    data = bitstream.pack(header, secs + extra)
    if not return_report:
        return data
    t_enc = _time.perf_counter() - t0
    t1 = _time.perf_counter()
    rec = decode_series(data)
    report = {"bytes": len(data), "points": t * nlat * nlon, "steps": t, "model": m.name, "arch": m.arch,
              "encode_s": t_enc, "decode_s": _time.perf_counter() - t1, "units": f.units, "variable": f.name,
              "meta_bytes": fixed, "ratio": 4.0 * t * nlat * nlon / len(data), "lambda": info["lambda"],
              "note": ""}
    report.update({k: v for k, v in ser.compare_series(f, rec).items() if k != "rmse_per_step"})
    return data, report


def min_series_bytes(steps: int, nlat: int, nlon: int) -> int:
    """The smallest stream a decoder accepts for a series: bitstream.MIN_BPP bits per point (the images' rule)."""
    return math.ceil(steps * nlat * nlon * bitstream.MIN_BPP / 8)


def _unpack(data: bytes) -> tuple[dict, dict[str, bytes]]:
    header, sections = unpack_stream(data, "series")
    t, nlat, nlon = header["steps"], header["nlat"], header["nlon"]
    check_density(len(data), t * nlat * nlon, f"{t} x {nlat} x {nlon} points")
    return header, sections


def decode_series(data: bytes, time: int | None = None, max_points: int = ser.MAX_SERIES_POINTS,
                  grid: str | None = None):
    """.mscn bytes -> SeriesField (every step), or with `time` K only step K (a SeriesField of one step): the
    latents are decoded whole (they are a few KB), the synthesis runs on that step's points only."""
    import torch

    from mscncodec.families.grid2.volume import codec as vcodec
    from mscncodec.families.grid2.volume.synthesis import cell_centres, render, synthesis

    if grid is not None:
        raise MscnError("--grid: a series stream decodes on its own grid")
    header, sections = _unpack(data)
    t, nlat, nlon = header["steps"], header["nlat"], header["nlon"]
    if time is not None and not (isinstance(time, int) and 0 <= time < t):
        raise MscnError(f"--time {time} is out of range: the stream holds {t} steps (0..{t - 1})")
    points = (1 if time is not None else t) * nlat * nlon
    if points > max_points:
        raise LimitError(f"decoding {points} points is more than the limit of {max_points}: decode one step with "
                         "--time K or raise the limit")
    m = stream_model(header, "series")
    if "META" not in sections:
        raise BitstreamError("corrupted .mscn file (missing section META)")
    meta = ser.unpack_series_meta(sections["META"])
    if len(meta["time"]) != t:
        raise BitstreamError(f"corrupted .mscn file ({len(meta['time'])} time values for {t} steps)")
    mask = decode_bitmap(sections["MISS"], (t * nlat, nlon)).reshape(t, nlat, nlon) if "MISS" in sections else None
    latents = vcodec.decode_latents(m, sections, len(data))
    if time is None:
        norm = render(m.cfg, m.theta, latents, (t, nlat, nlon)).double().numpy()
    else:
        cz, cy, cx = cell_centres((t, nlat, nlon))
        pts = torch.stack(torch.meshgrid(cz[time:time + 1], cy, cx, indexing="ij"), -1).reshape(-1, 3)
        with torch.no_grad():
            norm = synthesis(m.cfg, m.theta, latents, pts).double().numpy().reshape(1, nlat, nlon)
    vmin, vmax = header["vmin"], header["vmax"]
    values = norm * ((vmax - vmin) / 2) + (vmin + vmax) / 2
    sel = slice(None) if time is None else slice(time, time + 1)
    if mask is not None:
        values[mask[sel]] = np.nan
    lat = sgrid.apply_corrections(sgrid.latitudes(header["lat_kind"], nlat, header["lat_first"], header["lat_last"]),
                                  sections.get("LATC", b""))
    lon = sgrid.apply_corrections(sgrid.regular_longitudes(nlon, header["lon_first"]), sections.get("LONC", b""))
    times = meta.pop("time")[sel]
    return ser.SeriesField(values, lat, lon, time=times, **{k: v for k, v in meta.items()
                                                             if k in ser.SeriesField.__dataclass_fields__})


def describe(data: bytes) -> dict:
    header, sections = _unpack(data)
    d = grid3_description(header, sections)
    if "META" in sections:
        meta = ser.unpack_series_meta(sections["META"])
        d["variable"] = f"{meta.get('name')} [{meta.get('units')}], {len(meta['time'])} steps"
    return {"header": d, "sections": bitstream.section_sizes(header, sections), "bytes": len(data)}


def write(f: ser.SeriesField, suffix: str) -> bytes:
    return ser.write_series(f, suffix)


# ---------------------------------------------------------------- hooks (modalities.Modality)

def encode_limits(kw: dict, max_pixels: int, max_voxels: int) -> dict:
    return kw


def decode_limits(header: dict, kw: dict, max_pixels: int, max_voxels: int) -> dict:
    return dict(kw, max_points=ser.MAX_SERIES_POINTS)


def encode_summary(report: dict) -> str:
    u = report["units"] or "units"
    return (f"{report['bytes']} bytes for {report['steps']} steps ({report['ratio']:.0f}x), area-weighted RMSE "
            f"{report['rmse']:.4g} {u}, max error {report['max_abs']:.4g} {u} (model {report['model']}")


def signal_info(signal) -> dict:
    t, nlat, nlon = signal.shape
    return {"steps": t, "nlat": nlat, "nlon": nlon, "variable": signal.name, "units": signal.units}


def decode_summary(info: dict) -> str:
    return (f"{info['variable']} [{info['units']}], {info['steps']} steps on {info['nlat']}x{info['nlon']} points, "
            f"decoded {info['bytes']} bytes")


# ---------------------------------------------------------------- training data (grid3's shared decoder)

TRAIN_SERIES = (  # (file under the spherical data folder, variable, first steps of 32-step windows)
    ("ccsm-trefht-annual/TREFHT.B06.57.atm.1890-1999ANN.nc", "TREFHT", (0, 26, 52, 78)),
    ("ccsm-ts-monthly/b003_TS_200-299.nc", "TS", (0, 24, 48)),  # steps 80-99 are held out
)
TRAIN_WINDOW = 32


def training_volumes(root: Path, divisor: int = 2):
    """grid3's training set for series: 32-step windows of the annual run B06.57 and of the first 80 months of
    the monthly TS (B06.59 and the last 20 months are held out for the bench)."""
    from mscncodec.families.grid2.volume.train import VolumeSet

    root = Path(root)
    vols, files = [], []
    for rel, var, starts in TRAIN_SERIES:
        files.append(root / rel)
        for a in starts:
            f = ser.load_series(root / rel, var=var, time=f"{a}:{a + TRAIN_WINDOW}")
            vmin, vmax = sgrid.value_range(f.values)
            vols.append(volume_target(f, vmin, vmax, divisor))
    return VolumeSet(vols, [], files, root, f"{len(vols)} windows of {TRAIN_WINDOW} steps, 64x128: "
                     f"TREFHT B06.57 (annual) and TS b003 months 0-79; finest latent grid 1/{divisor}",
                     meta={"finest_divisor": divisor})
