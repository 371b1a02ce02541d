"""The bench for field time series (time x lat x lon): total bytes against area-weighted RMSE.

Every codec gets one TOTAL byte target for the whole series and answers with the best reconstruction in at
most that many bytes (real streams). Targets default to compression ratios of the float32 data
(bytes = 4 T nlat nlon / ratio). The baselines:

* SZ3 3-D (``pysz`` on the float32 array, absolute error bound) and zfp 3-D (``zfpy`` fixed accuracy on
  float32), the bound bisected in log space until the stream is at or just under the target
  (:class:`.fields._ErrorBounded`);
* JPEG 2000 per field: the 2-D :class:`.fields.Jpeg2000` codec on each step with the target split evenly;
  its size is the sum of the per-step streams. ``jpeg2000-j2k`` is the same with each step's JP2 boxes left
  out (the bare codestream, about 85 bytes less a step).
* mscn: ``modalities.series_codec.encode_series`` / ``decode_series`` when that module exists.

A target a codec cannot reach (even its coarsest setting is larger) is reported as unreachable, with the
smallest size it can make; never as a point over the target. Missing values are filled with the mean for the
baselines (as :func:`.fields._filled`) and restored as NaN after decoding; their mask is not counted in
their size (the bench fields have none). Points go to ``OUT/cache.jsonl`` keyed by codec, its declared
identity (:class:`.base.Keyed`), the series name and the target, so a rerun measures only new points.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import math
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mscncodec.bench import fields as fb
from mscncodec.bench.base import Availability, Keyed, require_extras
from mscncodec.bench.cache import append_cache, open_cache
from mscncodec.errors import BitstreamError, MscnError, RateError
from mscncodec.modalities.series import SeriesField, compare_series

DEFAULT_RATIOS = (50, 100, 200, 300, 500, 1000)
REFERENCE = "sz3-3d"  # the codec the error ratios are taken against


def raw_bytes(shape: Sequence[int]) -> int:
    """The size of the series as float32."""
    return 4 * int(np.prod(shape))


def ratio_to_bytes(shape: Sequence[int], ratio: float) -> int:
    """The byte target of a compression ratio of the float32 data (rounded down)."""
    if not ratio > 0:
        raise MscnError(f"bad compression ratio {ratio}: give a positive number")
    return int(raw_bytes(shape) // ratio)


def unreachable(target: int, floor: int, how: str) -> RateError:
    e = RateError(f"target {target} bytes is below this codec's minimum: about {floor} bytes {how}")
    e.floor_bytes = floor
    return e


class SeriesCodec(Keyed):
    """One codec: ``encode(series, target_bytes) -> bytes`` (at most that many; RateError when it cannot),
    ``decode(data, series) -> (T, nlat, nlon) float64`` (NaN where the series misses values)."""

    key = "codec"
    name = "codec"

    @classmethod
    def available(cls) -> Availability:
        return Availability(True)

    def encode(self, f: SeriesField, target_bytes: int) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes, f: SeriesField) -> np.ndarray:
        raise NotImplementedError

    def code(self, f: SeriesField, target_bytes: int) -> tuple[bytes, np.ndarray]:
        """(the stream, the decoded (T, nlat, nlon) array)."""
        data = self.encode(f, target_bytes)
        return data, self.decode(data, f)


def _restore(values: np.ndarray, f: SeriesField) -> np.ndarray:
    return np.where(f.mask, np.nan, np.asarray(values, np.float64).reshape(f.shape))


class _Bounded3D(SeriesCodec):
    """An error-bounded 3-D compressor on float32 (mixed in before a :class:`.fields._ErrorBounded` codec for
    its library, version and compress): the largest stream <= target by bisection of log(bound), from
    finest x range up to 1024 x the largest |value| (zfp keeps 2 (dims + 1) guard bit planes above the
    bound: only there does it write its smallest stream, one bit a block; temperatures in K, with a range
    far under their size, need bounds far beyond the range); over the target even there: unreachable."""

    finest, steps = 1e-7, 30
    scan = (-5, 10, 0.01)  # after the bisection: bounds at these 1% steps around it (sizes are not monotonic)
    center = False  # code v - mean (the mean's float32 first in the stream)

    @classmethod
    def available(cls) -> Availability:
        return super(SeriesCodec, cls).available()  # the 2-D codec's: its library imports

    def config(self) -> dict[str, Any]:
        return {"bound": [self.finest, "1024 max|v|"], "steps": self.steps, "scan": list(self.scan), "dims": 3,
                "dtype": "float32", "center": self.center}

    def _pack(self, v: np.ndarray, bound: float, mean: np.float32 | None) -> bytes:
        return self.compress(v, bound) if mean is None else mean.tobytes() + self.compress(v, bound)

    def encode(self, f: SeriesField, target_bytes: int) -> bytes:
        v = fb._filled(f).astype(np.float32)  # type: ignore[arg-type]
        mean = None
        if self.center:
            mean = np.float32(np.mean(v, dtype=np.float64))
            v = v - mean
        span = float(np.ptp(v)) or 1.0
        lo, hi = math.log(span * self.finest), math.log(1024.0 * max(span, float(np.max(np.abs(v)))))
        best = self._pack(v, math.exp(hi), mean)
        if len(best) > target_bytes:
            raise unreachable(target_bytes, len(best), "at its coarsest error bound")
        for _ in range(self.steps):
            mid = 0.5 * (lo + hi)
            d = self._pack(v, math.exp(mid), mean)
            if len(d) <= target_bytes:
                hi, best = mid, d
            else:
                lo = mid
        a, b, step = self.scan
        for j in range(a, b + 1):
            d = self._pack(v, math.exp(hi - j * step), mean) if j else best
            if len(best) < len(d) <= target_bytes:
                best = d
        return best

    def _unpack(self, data: bytes) -> tuple[bytes, float]:
        if not self.center:
            return data, 0.0
        return data[4:], float(np.frombuffer(data[:4], np.float32)[0])


class Sz3Series(_Bounded3D, fb.Sz3):
    key, name = "sz3-3d", "SZ3 3-D (absolute bound)"

    def compress(self, v: np.ndarray, bound: float) -> bytes:
        import pysz

        conf = pysz.szConfig(v.shape)
        conf.errorBoundMode = pysz.szErrorBoundMode.ABS
        conf.absErrorBound = bound
        comp, _ = pysz.sz.compress(np.ascontiguousarray(v, np.float32), conf)
        return comp.tobytes()

    def decode(self, data: bytes, f: SeriesField) -> np.ndarray:
        import pysz

        body, mean = self._unpack(data)
        out, _ = pysz.sz.decompress(np.frombuffer(body, np.uint8).copy(), np.float32, f.shape)
        return _restore(out.astype(np.float64) + mean, f)


class ZfpSeries(_Bounded3D, fb.Zfp):
    """zfp 3-D; center=True codes the anomaly from the series' mean (zfp's precision is relative to each
    block's largest |value|: an offset such as 280 K costs it bit planes)."""

    key, name = "zfp-3d", "zfp 3-D (fixed accuracy)"

    def __init__(self, center: bool = False):
        self.center = center
        if center:
            self.key, self.name = "zfp-3d-centered", "zfp 3-D (fixed accuracy, mean removed)"

    def compress(self, v: np.ndarray, bound: float) -> bytes:
        import zfpy

        return zfpy.compress_numpy(np.ascontiguousarray(v, np.float32), tolerance=bound)

    def decode(self, data: bytes, f: SeriesField) -> np.ndarray:
        import zfpy

        body, mean = self._unpack(data)
        return _restore(zfpy.decompress_numpy(body).astype(np.float64) + mean, f)


class _J2kCodestream(fb.Jpeg2000):
    """fields.Jpeg2000 with the JP2 boxes left out: the 8 bytes of range and the bare codestream."""

    def _encode(self, v: np.ndarray, vmin: float, vmax: float, ratio: float) -> bytes:
        d = super()._encode(v, vmin, vmax, ratio)
        return d[:8] + _jp2c(d, 8)


def _jp2c(d: bytes, pos: int) -> bytes:
    """The codestream inside the JP2 file at d[pos:]."""
    end, start = _stream_end(d, pos), pos
    while start < end:
        n, kind = struct.unpack(">I4s", d[start:start + 8])
        head = 16 if n == 1 else 8
        if kind == b"jp2c":
            return d[start + head:end]
        start += struct.unpack(">Q", d[start + 8:start + 16])[0] if n == 1 else n
    raise BitstreamError("JP2 file without a codestream")


def _stream_end(d: bytes, pos: int) -> int:
    """Where the JPEG 2000 stream (a JP2 file or a bare codestream) starting at d[pos] ends: JP2 box
    lengths, or the codestream's marker segment and tile-part (Psot) lengths up to EOC."""
    try:
        if d[pos:pos + 2] == b"\xff\x4f":  # SOC: a codestream
            p = pos + 2
            while True:
                (m,) = struct.unpack(">H", d[p:p + 2])
                if m == 0xFFD9:  # EOC
                    return p + 2
                if m == 0xFF90:  # SOT: Psot is the tile-part's whole length
                    (psot,) = struct.unpack(">I", d[p + 6:p + 10])
                    if psot == 0:
                        raise BitstreamError("JPEG 2000 tile-part of unknown length")
                    p += psot
                else:
                    (n,) = struct.unpack(">H", d[p + 2:p + 4])
                    p += 2 + n
        p = pos
        while True:
            n, kind = struct.unpack(">I4s", d[p:p + 8])
            if n == 1:
                (n,) = struct.unpack(">Q", d[p + 8:p + 16])
            if n < 8:
                raise BitstreamError("JP2 box of unknown length")
            p += n
            if kind == b"jp2c":
                return p
    except struct.error:
        raise BitstreamError("truncated JPEG 2000 stream") from None


class Jpeg2000PerField(SeriesCodec):
    """fields.Jpeg2000 on each step, target // T bytes each; the stream is the steps' streams in order
    (each: 8 bytes of range, then the JP2 file or, with codestream=True, the bare codestream)."""

    def __init__(self, codestream: bool = False):
        self.codestream = codestream
        self.inner = _J2kCodestream() if codestream else fb.Jpeg2000()
        self.key = "jpeg2000-j2k" if codestream else "jpeg2000"
        self.name = "JPEG 2000 per field" + (" (codestreams)" if codestream else "")

    def version(self) -> str:
        return self.inner.version()

    def config(self) -> dict[str, Any]:
        return {**self.inner.config(), "split": "even", "codestream": self.codestream}

    def encode(self, f: SeriesField, target_bytes: int) -> bytes:
        T = f.shape[0]
        per = target_bytes // T
        parts = []
        for k in range(T):
            d = self.inner.encode(f.field(k), per)
            if len(d) > per:
                raise unreachable(target_bytes, len(d) * T, f"({T} steps of at least {len(d)} bytes: JPEG 2000 at "
                                                            "its coarsest rate)")
            parts.append(d)
        return b"".join(parts)

    def decode(self, data: bytes, f: SeriesField) -> np.ndarray:
        out, pos = [], 0
        for k in range(f.shape[0]):
            end = _stream_end(data, pos + 8)
            out.append(self.inner.decode(data[pos:end], f.field(k)))
            pos = end
        if pos != len(data):
            raise BitstreamError(f"{len(data) - pos} bytes after the last step's stream")
        return _restore(np.stack(out), f)


class MscnSeries(SeriesCodec):
    """mscn's series codec (``modalities.series_codec``), when present; keyword arguments go to encode_series."""

    MODULE = "mscncodec.modalities.series_codec"

    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs
        self.key = "mscn-series" + "".join(f":{k}={v}" for k, v in sorted(kwargs.items()))
        self.name = "mscn (series)" + (f" {kwargs}" if kwargs else "")

    @classmethod
    def _module(cls):
        return importlib.import_module(cls.MODULE)

    @classmethod
    def available(cls) -> Availability:
        try:
            if importlib.util.find_spec(cls.MODULE) is None:
                return Availability(False, f"{cls.MODULE} does not exist yet")
            m = cls._module()
        except Exception as e:  # noqa: BLE001 -- a half-written module: say why, do not stop the bench
            return Availability(False, f"{cls.MODULE} does not import ({type(e).__name__}: {e})")
        missing = [n for n in ("encode_series", "decode_series") if not hasattr(m, n)]
        if missing:
            return Availability(False, f"{cls.MODULE} has no {', '.join(missing)}")
        return Availability(True)

    def version(self) -> str:
        import mscncodec

        try:
            m = self._module()
        except Exception:  # noqa: BLE001 -- not there (yet): no points are measured, the key only names it
            return "absent"
        rev = getattr(m, "ENCODER_REVISION", getattr(m, "__version__", "?"))
        return f"mscncodec-{getattr(mscncodec, '__version__', '?')}-series-r{rev}"

    def config(self) -> dict[str, Any]:
        return {k: str(v) for k, v in self.kwargs.items()}

    def encode(self, f: SeriesField, target_bytes: int) -> bytes:
        return self._module().encode_series(f, target_bytes=target_bytes, **self.kwargs)

    def decode(self, data: bytes, f: SeriesField) -> np.ndarray:
        out = self._module().decode_series(data)
        return np.where(f.mask, np.nan, np.asarray(getattr(out, "values", out), np.float64))


CODECS: dict[str, Callable[[], SeriesCodec]] = {
    "sz3": Sz3Series, "zfp": ZfpSeries, "zfp-centered": lambda: ZfpSeries(center=True), "jpeg2000": Jpeg2000PerField,
    "jpeg2000-j2k": lambda: Jpeg2000PerField(codestream=True), "mscn": MscnSeries}


def resolve(spec: str) -> list[SeriesCodec]:
    """Comma-separated ids: sz3, zfp, zfp-centered, jpeg2000, jpeg2000-j2k, mscn."""
    out = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item not in CODECS:
            raise MscnError(f"unknown series codec {item!r} ({', '.join(CODECS)})")
        out.append(CODECS[item]())
    return out


# ---------------------------------------------------------------- the bench

def point_key(codec: SeriesCodec, name: str, target: int) -> str:
    return f"{codec.key}|{codec.cache_version(int(target))}|{name}|{target}"


def run_point(codec: SeriesCodec, f: SeriesField, name: str, target: int) -> dict[str, Any]:
    """One measured point; an unreachable target is a record too ("unreachable", "min_bytes"), a codec's
    other failure a record with "error" (not cached, so retried)."""
    T, nlat, nlon = f.shape
    rec: dict[str, Any] = {"key": point_key(codec, name, target), "codec": codec.key, "name": codec.name,
                           "series": name, "steps": T, "grid": [nlat, nlon], "target": int(target),
                           "target_ratio": raw_bytes(f.shape) / target, "units": f.units}
    t0 = time.perf_counter()
    try:
        data = codec.encode(f, target)
        t1 = time.perf_counter()
        values = codec.decode(data, f)
        t2 = time.perf_counter()
    except RateError as e:
        return {**rec, "unreachable": True, "min_bytes": getattr(e, "floor_bytes", None), "message": str(e)}
    except MscnError as e:
        return {**rec, "error": f"{type(e).__name__}: {e}"}
    m = compare_series(f, values)
    return {**rec, "bytes": len(data), "ratio": raw_bytes(f.shape) / len(data), "fits": len(data) <= target,
            "encode_s": round(t1 - t0, 3), "decode_s": round(t2 - t1, 3), **m}


def default_targets(f: SeriesField, sizes: Sequence[int] | None, ratios: Sequence[float]) -> list[tuple[int, float | None]]:
    """(byte target, the compression ratio it stands for or None), largest target first."""
    if sizes:
        return [(int(s), None) for s in sorted({int(s) for s in sizes}, reverse=True)]
    return sorted({ratio_to_bytes(f.shape, r): float(r) for r in ratios}.items(), reverse=True)


def run_series_bench(refs: Sequence[tuple[str, SeriesField]], codecs: Sequence[SeriesCodec],
                     sizes: Sequence[int] | None = None, ratios: Sequence[float] = DEFAULT_RATIOS,
                     out: Path = Path("series-bench"), plot: bool = True, progress: bool = False,
                     echo: Callable[[str], None] | None = print) -> list[dict[str, Any]]:
    """Every available codec at every target (sizes, else the byte targets of `ratios`) on every series;
    points cached in OUT/cache.jsonl; then OUT/results.json, results.csv, summary.md, report.html and rd.png."""
    from mscncodec._runtime import progress_bar

    if plot:
        require_extras("matplotlib")  # before the work, not after it
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache_path, cache = open_cache(out, echo)
    usable, skipped = [], []
    for c in codecs:
        a = c.available()
        if a:
            usable.append(c)
        else:
            skipped.append(f"{c.key}: {a.reason}")
            if echo:
                echo(f"skipping {c.key}: {a.reason}")
    jobs = [(name, f, c, t, r) for name, f in refs for t, r in default_targets(f, sizes, ratios) for c in usable]
    records = []
    for name, f, codec, target, ratio in progress_bar(jobs, desc="series bench", progress=progress, unit="point"):
        key = point_key(codec, name, target)
        if key not in cache:
            rec = run_point(codec, f, name, target)
            if "error" not in rec:
                cache[key] = rec
                append_cache(cache_path, rec)
            elif echo:
                echo(f"{codec.key} on {name} at {target} bytes failed: {rec['error']}")
        else:
            rec = cache[key]
        records.append({**rec, "nominal_ratio": ratio})  # a label of the target: not part of the cached point
    write_reports(records, out, plot=plot, skipped=skipped)
    return records


def _with_ratios(records: list[dict]) -> list[dict]:
    """Each record with "rmse_vs_sz3": its RMSE over SZ3 3-D's at the same series and target."""
    ref = {(r["series"], r["target"]): r["rmse"] for r in records if r["codec"] == REFERENCE and "rmse" in r}
    out = []
    for r in records:
        s = ref.get((r["series"], r["target"]))
        out.append({**r, "rmse_vs_sz3": r["rmse"] / s if "rmse" in r and s else None})
    return out


CSV_KEYS = ["series", "codec", "target", "nominal_ratio", "target_ratio", "bytes", "ratio", "rmse", "mae", "max_abs", "psnr",
            "rmse_vs_sz3", "unreachable", "min_bytes", "error", "encode_s", "decode_s", "units"]


def write_reports(records: list[dict], out: Path, plot: bool = True, skipped: Sequence[str] = ()) -> None:
    records = _with_ratios(records)
    (out / "results.json").write_text(json.dumps({"records": records, "skipped": list(skipped)}, indent=1))
    with (out / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_KEYS, extrasaction="ignore")
        w.writeheader()
        w.writerows(records)
    (out / "summary.md").write_text(summary_markdown(records, skipped))
    if plot:
        plot_rd(records, out / "rd.png")
    from mscncodec.bench.pages import write_series_html

    write_series_html(records, out, skipped)


def _cell(r: dict | None) -> str:
    if r is None:
        return "- | - | - | -"
    if r.get("unreachable"):
        return f"unreachable (min ~{r.get('min_bytes')} B) | - | - | -"
    if "error" in r:
        return "failed | - | - | -"
    rel = "-" if r.get("rmse_vs_sz3") is None else f"{r['rmse_vs_sz3']:.3f}"
    return f"{r['bytes']} | {r['rmse']:.4g} | {r['max_abs']:.4g} | {rel}"


def summary_markdown(records: list[dict], skipped: Sequence[str] = ()) -> str:
    records = _with_ratios(records) if records and "rmse_vs_sz3" not in records[0] else records
    lines = ["# Field series: area-weighted RMSE at equal total bytes", "",
             ("Real stream bytes for the whole series; RMSE area-weighted (cos latitude) over every step and point; "
              "`vs SZ3` = RMSE / SZ3 3-D's RMSE at the same target."), ""]
    if skipped:
        lines += ["Skipped: " + "; ".join(skipped), ""]
    for series in dict.fromkeys(r["series"] for r in records):
        rows = [r for r in records if r["series"] == series]
        r0 = rows[0]
        units = next((r["units"] for r in rows if r.get("units")), "") or "field units"
        lines += [f"## {series} ({r0['steps']} x {r0['grid'][0]} x {r0['grid'][1]}, {units})", "",
                  "| ratio | target B | codec | bytes | RMSE | max err | vs SZ3 |", "|---:|---:|---|---:|---:|---:|---:|"]
        codecs = list(dict.fromkeys(r["codec"] for r in rows))
        raw = raw_bytes([r0["steps"], *r0["grid"]])
        nominal = {r["target"]: r.get("nominal_ratio") for r in rows}
        for t in sorted({r["target"] for r in rows}, reverse=True):
            for c in codecs:
                r = next((x for x in rows if x["target"] == t and x["codec"] == c), None)
                lines.append(f"| {nominal.get(t) or raw / t:.4g} | {t} | {c} | {_cell(r)} |")
        lines.append("")
    return "\n".join(lines)


def plot_rd(records: list[dict], path: Path) -> None:
    """RMSE against the achieved compression ratio (log-log), a panel per series."""
    plt = fb._pyplot()

    series = list(dict.fromkeys(r["series"] for r in records))
    if not series:
        return
    fig, axes = plt.subplots(1, len(series), figsize=(4.6 * len(series), 3.8), squeeze=False)
    for ax, s in zip(axes[0], series):
        rows = [r for r in records if r["series"] == s and "rmse" in r]
        units = next((r["units"] for r in rows if r.get("units")), "")
        for c in dict.fromkeys(r["codec"] for r in rows):
            pts = sorted((r["ratio"], r["rmse"]) for r in rows if r["codec"] == c)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if c.startswith("mscn") else "s--", label=c, ms=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compression ratio (float32 bytes / stream bytes)")
        ax.set_ylabel(f"area-weighted RMSE ({units})")
        ax.set_title(s, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
