"""The bench for global fields (``mscn bench fields/`` on netCDF inputs): bytes against area-weighted RMSE.

Every codec answers one question -- the best reconstruction in at most N bytes -- so the curves are
sampled at the same sizes. The baselines are the compressors this field uses, driven in their
error-bounded modes with the bound searched (bisection in log space) until the real stream fits:

* zfp (``zfpy``, fixed-accuracy mode on float64);
* SZ3 (``pysz``, absolute error bound);
* JPEG 2000 16-bit (Pillow/OpenJPEG, irreversible, rate set by the compression ratio) of the field
  normalised to 0..65535 by its range; the 8 bytes of that range are counted in its size.

Missing values: the baselines get the field with missing points filled by the mean and are scored on
the points that have values; their mask is not counted in their size (no bench field has one). mscn
carries the mask in its stream.

Metrics (modalities/sphere.compare): area-weighted (cos latitude) RMSE and mean absolute error in the
field's units, max absolute error, PSNR over the value range.

Finished points go to ``OUT/cache.jsonl`` (:mod:`.cache`), keyed by the codec's id and declared
identity (:class:`.base.Keyed`), the field (file stem and time step) and the target.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mscncodec.bench.base import Availability, Keyed, dist_version, model_identity, need_modules, require_extras
from mscncodec.bench.cache import append_cache, open_cache, refile  # one cache for every bench
from mscncodec.modalities import sphere as smod

DEFAULT_SIZES = (1000, 2000, 3000, 5000, 8000)
FIELD_EXTS = (".nc", ".nc4")


@dataclass(frozen=True)
class FieldRef:
    path: Path
    time: int | None

    @property
    def label(self) -> str:
        return self.path.stem + ("" if self.time is None else f"[t={self.time}]")


def has_fields(directory: Path) -> bool:
    return any(p.suffix.lower() in FIELD_EXTS for p in directory.iterdir() if p.is_file())


def find_fields(directory: Path, per_file: int = 1, limit: int | None = None) -> list[FieldRef]:
    """`per_file` evenly spaced time steps of each netCDF file's lat-lon variable."""
    refs = []
    for p in sorted(q for q in directory.iterdir() if q.suffix.lower() in FIELD_EXTS and q.is_file()):
        n = smod.time_steps(p)
        times = sorted({int(round(i * (n - 1) / max(per_file - 1, 1))) for i in range(min(per_file, n))})
        refs += [FieldRef(p, t if n > 1 else None) for t in times]
    return refs[:limit] if limit else refs


class FieldCodec(Keyed):
    """One codec: `encode(field, target_bytes) -> bytes` (at most that many), `decode(data, field) -> values`;
    its ``version()`` and ``config()`` key its cached points (:class:`.base.Keyed`)."""

    key = "codec"
    name = "codec"

    @classmethod
    def available(cls) -> Availability:
        return Availability(True)

    def encode(self, f: smod.SphereField, target_bytes: int) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes, f: smod.SphereField) -> np.ndarray:
        raise NotImplementedError


def _filled(f: smod.SphereField) -> np.ndarray:
    v = f.values.copy()
    v[~np.isfinite(v)] = np.nanmean(v)
    return v


class _ErrorBounded(FieldCodec):
    """A codec with an absolute error bound: bisect log(bound) for the largest stream <= target."""

    finest, steps = 1e-7, 30  # the bounds searched: finest x range .. range, in this many bisections

    def config(self) -> dict[str, Any]:
        return {"bound": [self.finest, 1.0], "steps": self.steps}

    def compress(self, v: np.ndarray, bound: float) -> bytes:
        raise NotImplementedError

    def encode(self, f: smod.SphereField, target_bytes: int) -> bytes:
        v = _filled(f)
        span = float(np.ptp(v)) or 1.0
        lo, hi = math.log(span * self.finest), math.log(span)  # fine (big file) .. coarse (small file)
        best = self.compress(v, math.exp(hi))
        if len(best) > target_bytes:
            return best  # even the coarsest bound overshoots: reported as it is
        for _ in range(self.steps):
            mid = 0.5 * (lo + hi)
            d = self.compress(v, math.exp(mid))
            if len(d) <= target_bytes:
                hi, best = mid, d
            else:
                lo = mid
        return best


class Zfp(_ErrorBounded):
    key, name = "zfp", "zfp (fixed accuracy)"

    @classmethod
    def available(cls) -> Availability:
        return need_modules("zfpy")

    def version(self) -> str:
        return f"zfpy-{dist_version('zfpy')}"

    def compress(self, v: np.ndarray, bound: float) -> bytes:
        import zfpy

        return zfpy.compress_numpy(np.ascontiguousarray(v, np.float64), tolerance=bound)

    def decode(self, data: bytes, f: smod.SphereField) -> np.ndarray:
        import zfpy

        return zfpy.decompress_numpy(data)


class Sz3(_ErrorBounded):
    key, name = "sz3", "SZ3 (absolute bound)"

    @classmethod
    def available(cls) -> Availability:
        return need_modules("pysz")

    def version(self) -> str:
        return f"pysz-{dist_version('pysz')}"

    def compress(self, v: np.ndarray, bound: float) -> bytes:
        import pysz

        conf = pysz.szConfig(v.shape)
        conf.errorBoundMode = pysz.szErrorBoundMode.ABS
        conf.absErrorBound = bound
        comp, _ = pysz.sz.compress(np.ascontiguousarray(v, np.float64), conf)
        return comp.tobytes()

    def decode(self, data: bytes, f: smod.SphereField) -> np.ndarray:
        import pysz

        out, _ = pysz.sz.decompress(np.frombuffer(data, np.uint8).copy(), np.float64, f.shape)
        return out


class Jpeg2000(FieldCodec):
    key, name = "jpeg2000-16", "JPEG 2000 16-bit"
    steps = 20  # bisections of the compression ratio

    def version(self) -> str:
        import PIL

        return f"pillow-{PIL.__version__}"

    def config(self) -> dict[str, Any]:
        return {"bits": 16, "irreversible": True, "steps": self.steps}

    def _encode(self, v: np.ndarray, vmin: float, vmax: float, ratio: float) -> bytes:
        from PIL import Image

        q = np.round((v - vmin) / max(vmax - vmin, 1e-30) * 65535).astype(np.uint16)
        buf = io.BytesIO()
        Image.fromarray(q).save(buf, "JPEG2000", quality_mode="rates", quality_layers=[ratio], irreversible=True)
        return np.array([vmin, vmax], np.float32).tobytes() + buf.getvalue()

    def encode(self, f: smod.SphereField, target_bytes: int) -> bytes:
        v = _filled(f)
        vmin, vmax = (float(x) for x in np.array([v.min(), v.max()], np.float32))
        raw = v.size * 2
        lo, hi = 1.0, max(raw / 50.0, 2.0)  # ratios: big file .. small file
        best = self._encode(v, vmin, vmax, hi)
        if len(best) > target_bytes:
            return best
        for _ in range(self.steps):
            mid = math.sqrt(lo * hi)
            d = self._encode(v, vmin, vmax, mid)
            if len(d) <= target_bytes:
                hi, best = mid, d
            else:
                lo = mid
        return best

    def decode(self, data: bytes, f: smod.SphereField) -> np.ndarray:
        from PIL import Image

        vmin, vmax = np.frombuffer(data[:8], np.float32).astype(np.float64)
        q = np.array(Image.open(io.BytesIO(data[8:]))).astype(np.float64)
        return q / 65535 * (vmax - vmin) + vmin


class Mscn(FieldCodec):
    def __init__(self, model: str | None = None, effort: str = "default"):
        self.model, self.effort = model, effort
        self.key = "mscn" + (f":{model}" if model else "") + (f"@{effort}" if effort != "default" else "")
        self.name = "mscn" + (f" ({model})" if model else "") + (f" @{effort}" if effort != "default" else "")

    def version(self) -> str:
        import mscncodec

        return f"mscncodec-{getattr(mscncodec, '__version__', '?')}"

    def config(self) -> dict[str, Any]:
        return {"model": self.model, "effort": self.effort}

    def identity(self, target: int) -> tuple[str, str, dict[str, Any]]:
        """What encodes the point: the model routed for this byte target (family encoder revision, weights
        id: :func:`.base.model_identity`) and the effort."""
        from mscncodec.modalities.sphere_codec import pick_model

        version, config = model_identity(pick_model(self.model, float(target)))
        return self.key, version, {**config, "effort": self.effort}

    def encode(self, f: smod.SphereField, target_bytes: int) -> bytes:
        from mscncodec.modalities.sphere_codec import encode_field

        return encode_field(f, target_bytes=target_bytes, model=self.model, effort=self.effort)

    def decode(self, data: bytes, f: smod.SphereField) -> np.ndarray:
        from mscncodec.modalities.sphere_codec import decode_field

        return decode_field(data).values


def resolve(spec: str) -> list[FieldCodec]:
    """Comma-separated ids: zfp, sz3, jpeg2000-16, mscn, mscn:MODEL, mscn@EFFORT, mscn:MODEL@EFFORT."""
    out: list[FieldCodec] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        base, _, effort = item.partition("@")
        name, _, model = base.partition(":")
        if name == "mscn":
            out.append(Mscn(model or None, effort or "default"))
        elif effort or model:
            raise ValueError(f"codec {item!r}: only mscn takes a model or an effort")
        elif name in ("zfp", "sz3", "jpeg2000-16"):
            out.append({"zfp": Zfp, "sz3": Sz3, "jpeg2000-16": Jpeg2000}[name]())
        else:
            raise ValueError(f"unknown field codec {item!r} (zfp, sz3, jpeg2000-16, mscn[:MODEL][@EFFORT])")
    return out


DEFAULT_CODECS = "zfp,sz3,jpeg2000-16,mscn"


def run_point(codec: FieldCodec, f: smod.SphereField, ref: FieldRef, target: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    data = codec.encode(f, target)
    t1 = time.perf_counter()
    values = codec.decode(data, f)
    t2 = time.perf_counter()
    rec = smod.SphereField(np.where(f.mask, np.nan, values), f.lat, f.lon)
    return {"key": point_key(codec, ref, target), "codec": codec.key, "name": codec.name, "field": ref.label, "target": target, "bytes": len(data),
            "fits": len(data) <= target, "encode_s": round(t1 - t0, 3), "decode_s": round(t2 - t1, 3),
            "units": f.units, **smod.compare(f, rec)}


def point_key(codec: FieldCodec, ref: FieldRef, target: int) -> str:
    return f"{codec.key}|{codec.cache_version(int(target))}|{ref.label}|{target}"


def legacy_key(codec: FieldCodec, ref: FieldRef, target: int) -> str:
    """The key before the identity scheme: no version at all (re-filed once, see :func:`.cache.refile`)."""
    return f"{codec.key}|{ref.label}|{target}"


def run_fields_bench(refs: Sequence[FieldRef], codecs: Sequence[FieldCodec], sizes: Sequence[int], out: Path,
                     progress: bool = True, plot: bool = True,
                     echo: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every codec at every size on every field (cached in OUT/cache.jsonl, so a rerun resumes), then
    OUT/results.json, points.csv, summary.md, report.html, rd.png and map.png."""
    from mscncodec._runtime import progress_bar

    if plot:
        require_extras("matplotlib")  # before the work, not after it
    out.mkdir(parents=True, exist_ok=True)
    cache_path, cache = open_cache(out, echo)
    records = []
    jobs = [(ref, c, s) for ref in refs for c in codecs for s in sizes]
    keys = [point_key(c, ref, s) for ref, c, s in jobs]
    if (moved := refile(cache, cache_path, ((k, [legacy_key(c, ref, s)]) for (ref, c, s), k in zip(jobs, keys)
                                             if k not in cache))) and echo:
        echo(f"re-filed {moved} cached points under their current cache keys (a one-time migration)")
    fields: dict[FieldRef, smod.SphereField] = {}
    for (ref, codec, size), key in progress_bar(list(zip(jobs, keys)), desc="fields bench", progress=progress,
                                                unit="point"):
        if key not in cache:
            if ref not in fields:
                fields[ref] = smod.load(ref.path, time=ref.time)
            cache[key] = run_point(codec, fields[ref], ref, size)
            append_cache(cache_path, cache[key])
        records.append(cache[key])
    write_reports(records, out, plot=plot, refs=refs)
    return records


def averages(records: list[dict]) -> dict[str, dict[int, dict[str, float]]]:
    """Per codec and target: the mean of bytes, RMSE, max error and PSNR over the fields."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for r in records:
        out.setdefault(r["codec"], {}).setdefault(r["target"], []).append(r)  # type: ignore[arg-type]
    return {c: {t: {k: float(np.mean([r[k] for r in rs])) for k in ("bytes", "rmse", "max_abs", "psnr", "encode_s",
                                                                    "decode_s")} | {"n": len(rs)}
                for t, rs in sorted(d.items())} for c, d in out.items()}


def summary_markdown(records: list[dict]) -> str:
    avg = averages(records)
    units = next((r["units"] for r in records if r.get("units")), "")
    sizes = sorted({r["target"] for r in records})
    lines = [f"# Global fields: area-weighted RMSE ({units or 'field units'}) at each size", "",
             f"Fields: {', '.join(sorted({r['field'] for r in records}))}. Mean over the fields; real bytes.", "",
             "| codec | " + " | ".join(f"{s} B" for s in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for c, d in avg.items():
        lines.append(f"| {c} | " + " | ".join(f"{d[s]['rmse']:.4g} ({d[s]['bytes']:.0f} B)" if s in d else "-"
                                              for s in sizes) + " |")
    lines += ["", "## Max absolute error", "", "| codec | " + " | ".join(f"{s} B" for s in sizes) + " |",
              "|---|" + "---:|" * len(sizes)]
    for c, d in avg.items():
        lines.append(f"| {c} | " + " | ".join(f"{d[s]['max_abs']:.4g}" if s in d else "-" for s in sizes) + " |")
    lines += ["", "## Per field (RMSE)", "", "| field | codec | " + " | ".join(f"{s} B" for s in sizes) + " |",
              "|---|---|" + "---:|" * len(sizes)]
    by = {}
    for r in records:
        by.setdefault((r["field"], r["codec"]), {})[r["target"]] = r
    for (fld, c), d in sorted(by.items()):
        lines.append(f"| {fld} | {c} | " + " | ".join(f"{d[s]['rmse']:.4g}" if s in d else "-" for s in sizes) + " |")
    lines += ["", "## Seconds per field (mean encode / decode)", "", "| codec | encode s | decode s |", "|---|---:|---:|"]
    for c, d in avg.items():
        lines.append(f"| {c} | {np.mean([v['encode_s'] for v in d.values()]):.2f} | "
                     f"{np.mean([v['decode_s'] for v in d.values()]):.3f} |")
    return "\n".join(lines) + "\n"


def write_reports(records: list[dict], out: Path, plot: bool = True, refs: Sequence[FieldRef] = ()) -> None:
    (out / "results.json").write_text(json.dumps({"records": records, "averages": {
        c: {str(t): v for t, v in d.items()} for c, d in averages(records).items()}}, indent=1))
    keys = ["field", "codec", "target", "bytes", "rmse", "mae", "max_abs", "psnr", "encode_s", "decode_s", "units"]
    with (out / "points.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(records)
    (out / "summary.md").write_text(summary_markdown(records))
    maps = None
    if plot:
        plot_rd(records, out / "rd.png")
        if refs:
            maps = plot_map(records, refs[0], out / "map.png")
    from mscncodec.bench.pages import write_fields_html

    write_fields_html(records, out, refs, maps, out / "map.png" if maps else None)


def _pyplot():
    """matplotlib's pyplot on the Agg canvas (headless); missing: the bench extra's one-line error."""
    from mscncodec.bench.base import extra

    extra("matplotlib").use("Agg")
    return extra("matplotlib.pyplot")


def plot_rd(records: list[dict], path: Path) -> None:
    plt = _pyplot()

    fields = sorted({r["field"] for r in records})
    fig, axes = plt.subplots(1, len(fields) + 1, figsize=(4.2 * (len(fields) + 1), 3.8), squeeze=False)
    units = next((r["units"] for r in records if r.get("units")), "")
    avg = averages(records)
    panels = [("mean over fields", {c: ([v["bytes"] for v in d.values()], [v["rmse"] for v in d.values()])
                                    for c, d in avg.items()})]
    for fld in fields:
        curves = {}
        for r in sorted((r for r in records if r["field"] == fld), key=lambda r: r["target"]):
            curves.setdefault(r["codec"], ([], []))
            curves[r["codec"]][0].append(r["bytes"])
            curves[r["codec"]][1].append(r["rmse"])
        panels.append((fld, curves))
    for ax, (title, curves) in zip(axes[0], panels):
        for c, (x, y) in curves.items():
            ax.plot(x, y, "o-" if c.startswith("mscn") else "s--", label=c, ms=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("bytes")
        ax.set_ylabel(f"area-weighted RMSE ({units})")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_map(records: list[dict], ref: FieldRef, path: Path, target: int = 3000) -> dict[str, Any] | None:
    """The field, and each codec's error map at the size nearest `target`, on one colour scale; returns
    what it drew (field, errors, target, colour limit, rows) for report.html, None when nothing."""
    plt = _pyplot()

    f = smod.load(ref.path, time=ref.time)
    rows = [r for r in records if r["field"] == ref.label]
    if not rows:
        return None
    size = min({r["target"] for r in rows}, key=lambda s: abs(s - target))
    codecs = sorted({r["codec"] for r in rows if r["target"] == size})
    errs = {}
    for c in codecs:
        try:
            codec = resolve(c)[0]
        except ValueError:
            continue
        errs[c] = codec.decode(codec.encode(f, size), f) - f.values
    # one colour scale for all: the median codec's 99.5th percentile, so the worst does not wash out the rest
    lim = float(np.median([np.nanpercentile(np.abs(e), 99.5) for e in errs.values()])) if errs else 1.0
    ncols = min(4, len(errs) + 1)
    nrows = -(-(len(errs) + 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.7 * nrows), squeeze=False)
    for ax in axes.reshape(-1)[len(errs) + 1:]:
        ax.axis("off")
    axes = axes.reshape(1, -1)
    extent = [float(f.lon.min()), float(f.lon.max()), float(f.lat.min()), float(f.lat.max())]
    order = np.argsort(f.lat)
    ax = axes[0][0]
    im = ax.imshow(f.values[order][::-1], extent=extent, aspect="auto", cmap="viridis")
    ax.set_title(f"{f.name} ({f.units})", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    for ax, (c, e) in zip(axes[0][1:], errs.items()):
        r = next(r for r in rows if r["codec"] == c and r["target"] == size)
        im = ax.imshow(e[order][::-1], extent=extent, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{c}: {r['bytes']} B, RMSE {r['rmse']:.3g}", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{ref.label}: error at about {size} bytes", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return {"field": f, "errors": errs, "target": size, "limit": lim, "label": ref.label,
            "rows": [r for r in rows if r["target"] == size]}
