"""Error targets (``--rmse``, ``--max-error``, ``--psnr``, ``--chamfer``): a quality asked for on the decoded
result, met by searching the byte target of the codec's own rate control.

Every modality's encoder lands at or just under a byte target; the decoded result's error falls (not always
strictly) as the bytes grow. :func:`search_bytes` probes byte targets in log space (doubling or halving until
the target is bracketed, then bisection guided by a secant on log error vs log bytes) and keeps the smallest
stream whose *measured* value meets the target. Where nothing up to the cap meets it, it also halves down from
the start while that improves the value: an error not monotone in the bytes (another model routed at smaller
targets) can meet a target below the start that no larger stream meets. Nothing is estimated: each probe is
a real stream, decoded and measured.

Guarantees and requirements:

* the stream returned met the target when measured (``measure(data)``), and no smaller probe did;
* at most ``max_tries`` encodes, each at a byte target in [lo, hi];
* where no probe meets the target, a :class:`TargetError` names the best value reached and its size:
  the target is refused, never silently missed;
* ``encode_at`` may raise a RateError for a byte target under its floor: that probe counts as a miss.

:func:`encode_to` is what ``mscncodec.api.encode(src, rmse=...)`` (and so ``mscn encode --rmse``) runs: it
picks the byte range of the input's modality (:data:`RANGES`), and measures each probe with the value the
modality's own encode report computes on the decoded stream (:data:`METRICS`), the same number
``mscn encode`` prints and the bench reports.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from mscncodec.container.bitstream import MIN_BPP
from mscncodec.errors import MscnError, RateError


class TargetError(RateError):
    """An error target the codec cannot reach within the byte range searched (the message names the best
    value reached and its size)."""


@dataclass(frozen=True)
class Metric:
    """One error target: the API keyword and CLI option that ask for it, the modalities it applies to, the
    key of the encode report that measures it, and how messages name it."""

    name: str  # Target.metric
    keyword: str  # mscncodec.api.encode's keyword
    option: str  # mscn encode's option
    modalities: tuple[str, ...]
    report_key: str
    label: str
    unit: str  # "" where the signal's own units apply (a field's variable)
    higher_is_better: bool = False


#: The error targets, and where each is measured: the modality's encode report (``return_report=True``),
#: which decodes the stream it wrote and compares it with the input.
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("rmse", "rmse", "--rmse", ("sphere", "series"), "rmse", "area-weighted RMSE", ""),
    Metric("max_abs", "max_error", "--max-error", ("sphere", "series"), "max_abs", "max error", ""),
    Metric("psnr", "psnr", "--psnr", ("image",), "psnr", "PSNR", "dB", higher_is_better=True),
    Metric("chamfer", "chamfer", "--chamfer", ("mesh",), "chamfer_l1", "Chamfer-L1", "of the diagonal"),
)}


@dataclass(frozen=True)
class ByteRange:
    """Where the search over byte targets looks for one modality. Each bound is (bits per point, fixed
    bytes): a point is a pixel of an image or a grid point of each step of a field; a mesh has no points."""

    start: tuple[float, int]  # the modality's quality-50 size: where the search begins
    lo: tuple[float, int]  # the format's floor (an encoder refuses less: a miss)
    hi: tuple[float, int]  # a generous cap

    def bytes(self, points: int) -> tuple[int, int, int]:
        """(start, lo, hi) in bytes for a signal of `points` points, start held to [lo, hi]."""
        def at(b: tuple[float, int]) -> int:
            return max(1, math.ceil(b[0] * points / 8 + b[1]))

        lo = at(self.lo)
        hi = max(lo, at(self.hi))
        return min(hi, max(lo, at(self.start))), lo, hi


#: The byte range of each modality's search. Starts: images image_codec.nominal_bpp(50); a field
#: sphere_codec.QUALITY_BYTES; a series series_codec.quality_bytes(50, points) (4 bytes / QUALITY_RATIO per
#: point); a mesh mesh_codec.QUALITY_BYTES (tests/test_targets.py holds them equal). Caps: images 4 bpp,
#: fields and series the raw float32 size / 4, meshes 16 times the quality-50 size.
RANGES: dict[str, ByteRange] = {
    "image": ByteRange(start=(0.05 * 2.0 ** 2.5, 0), lo=(MIN_BPP, 0), hi=(4.0, 0)),
    "sphere": ByteRange(start=(0.0, 3000), lo=(MIN_BPP, 0), hi=(8.0, 0)),
    "series": ByteRange(start=(32.0 / 200.0, 0), lo=(MIN_BPP, 0), hi=(8.0, 0)),
    "mesh": ByteRange(start=(0.0, 4000), lo=(0.0, 64), hi=(0.0, 64000)),
}


@dataclass(frozen=True)
class Target:
    """A quality asked for on the decoded result: ``metric`` (``rmse``, ``max_abs``, ``psnr``, ``chamfer``)
    at ``value`` or better."""

    metric: str
    value: float
    unit: str = ""

    HIGHER_IS_BETTER = frozenset(m.name for m in METRICS.values() if m.higher_is_better)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise MscnError(f"unknown error target {self.metric!r} ({', '.join(METRICS)})")
        if isinstance(self.value, bool) or not (isinstance(self.value, (int, float)) and math.isfinite(self.value)
                                                and self.value > 0):
            raise MscnError(f"the {self.label} target must be a positive number, got {self.value!r}")

    @property
    def label(self) -> str:
        return METRICS[self.metric].label if self.metric in METRICS else self.metric

    def met(self, measured: float) -> bool:
        if not math.isfinite(measured):
            return measured == math.inf and self.metric in self.HIGHER_IS_BETTER
        return measured >= self.value if self.metric in self.HIGHER_IS_BETTER else measured <= self.value

    def show(self, v: float) -> str:
        return f"{v:.4g}{' ' + self.unit if self.unit else ''}"

    def asked(self) -> str:
        """The target as the messages name it: "area-weighted RMSE <= 0.5 K"."""
        return f"{self.label} {'>=' if self.metric in self.HIGHER_IS_BETTER else '<='} {self.show(self.value)}"


@dataclass
class Probe:
    target_bytes: int
    bytes: int
    value: float  # the measured metric; nan where the encoder refused the byte target
    met: bool


@dataclass
class Search:
    """What :func:`search_bytes` found: the chosen stream, its measured value, and every probe."""

    data: bytes
    value: float
    probes: list[Probe] = field(default_factory=list)
    extra: object = None  # what ``encode_at`` returned beside the stream for the chosen probe (a report)
    target_bytes: int = 0  # the byte target of the chosen probe


def search_bytes(target: Target, encode_at: Callable[[int], tuple[bytes, object]],
                 measure: Callable[[bytes, object], float], *, start: int, lo: int, hi: int,
                 max_tries: int = 8, tolerance: float = 1.06,
                 on_probe: Callable[[Probe], None] | None = None) -> Search:
    """The smallest stream (among the probes) whose measured value meets `target`.

    ``encode_at(n)`` returns (stream of at most n bytes, anything) and ``measure(stream, anything)`` the
    metric on its decoded result. The search starts at `start` bytes, stays in [lo, hi], stops once the
    bracket is within `tolerance` (a ratio of byte targets) or after `max_tries` encodes."""
    if not 1 <= lo <= hi:
        raise MscnError(f"byte range [{lo}, {hi}] is empty")
    if max_tries < 1:
        raise MscnError(f"max_tries must be at least 1, got {max_tries}")
    start = int(min(hi, max(lo, start)))
    probes: list[Probe] = []
    best: tuple[int, bytes, float, object] | None = None  # smallest meeting stream
    closest: Probe | None = None  # the best value of all (for the refusal)
    results: dict[int, Probe] = {}
    streams: list[bytes] = []  # the streams written, in order (b"" where refused)

    def probe(n: int) -> Probe:
        nonlocal best, closest
        n = int(min(hi, max(lo, n)))
        if n in results:
            return results[n]
        try:
            data, extra = encode_at(n)
        except TargetError:
            raise
        except RateError:
            p, data = Probe(n, 0, math.nan, False), b""
        else:
            v = float(measure(data, extra))
            p = Probe(n, len(data), v, target.met(v))
            if p.met and (best is None or len(data) < len(best[1])):
                best = (n, data, v, extra)
            if closest is None or _better(target, v, closest.value):
                closest = p
        probes.append(p)
        streams.append(data)
        results[n] = p
        if on_probe is not None:
            on_probe(p)
        return p

    miss, hit = None, None  # byte targets: largest known miss, smallest known hit
    topped = 0  # the size of the stream the codec topped out at
    p = probe(start)
    if p.met:
        hit = p.target_bytes
    else:
        miss = p.target_bytes
    # bracket: double up from a miss, halve down from a hit
    while len(probes) < max_tries and (hit is None or miss is None):
        if hit is None:
            if len(streams) >= 3 and streams[-1] and streams[-1] == streams[-2] == streams[-3]:
                topped = len(streams[-1])
            if miss >= hi or topped:  # at the cap, or the codec topped out: twice doubled, the same stream
                break
            p = probe(miss * 2)
            hit, miss = (p.target_bytes, miss) if p.met else (None, p.target_bytes)
        else:
            if hit <= lo:
                break
            p = probe(hit // 2)
            hit, miss = (hit, p.target_bytes) if not p.met else (p.target_bytes, None)
    if hit is None:
        # nothing up to hi met it: a codec whose error is not monotone in the bytes (a smaller model routed
        # at smaller targets, a mesh whose coarser update decodes closer) may still meet it under the start,
        # searched while halving the bytes improves the value
        n, last = start, results[start].value
        while len(probes) < max_tries and hit is None and n > lo:
            n = max(lo, n // 2)
            if n in results:
                continue
            p = probe(n)
            if p.met:
                hit, miss = n, None
            elif not _better(target, p.value, last) and p.value != last:  # worse (or refused): stop
                break
            last = p.value
        while len(probes) < max_tries and hit is not None and miss is None and hit > lo:
            p = probe(hit // 2)
            hit, miss = (hit, p.target_bytes) if not p.met else (p.target_bytes, None)
    # refine: bisection in log bytes, at the secant's guess where the two ends have values; where the
    # secant moved the same end twice running (a flat stretch, a jump between routed models), the midpoint
    same, last = 0, None
    while len(probes) < max_tries and hit is not None and miss is not None and hit / miss > tolerance:
        n = _guess(target, results[miss], results[hit], secant=same < 2)
        if n in results:
            break
        p = probe(n)
        side = p.met
        same = same + 1 if side == last else 1
        last = side
        if p.met:
            hit = p.target_bytes
        else:
            miss = p.target_bytes
    if best is None:
        tried = sorted(results)
        searched = f"{len(probes)} encode{'s' if len(probes) > 1 else ''}, byte targets {tried[0]:,} to {tried[-1]:,}"
        if topped:
            searched += f"; larger targets gave the same {topped:,}-byte stream"
        elif tried[-1] < hi:  # stopped by max_tries before the cap: say so, the cap was not tried
            searched += f" of at most {hi:,}"
        if closest is None:
            raise TargetError(f"{target.asked()} not reachable: no stream could be written ({searched})")
        raise TargetError(f"{target.asked()} not reachable: the best reached is {target.show(closest.value)} at "
                          f"{closest.bytes:,} bytes ({searched})")
    n, data, v, extra = best
    return Search(data, v, probes, extra, n)


def _better(target: Target, a: float, b: float) -> bool:
    if math.isnan(b):
        return not math.isnan(a)
    if math.isnan(a):
        return False
    return a > b if target.metric in target.HIGHER_IS_BETTER else a < b


def _guess(target: Target, miss: Probe, hit: Probe, secant: bool = True) -> int:
    """The next byte target between a miss and a hit: where the line through (log bytes, log error) meets
    the target (dB for PSNR are already logarithmic), held to the middle 80 % of the bracket; else (or
    without `secant`) the geometric mean."""
    a, b = math.log(miss.target_bytes), math.log(hit.target_bytes)
    mid = (a + b) / 2
    x = mid
    lg = (lambda v: v) if target.metric in target.HIGHER_IS_BETTER else (lambda v: math.log(max(v, 1e-300)))
    if secant and math.isfinite(miss.value) and math.isfinite(hit.value) and miss.value != hit.value:
        ya, yb, yt = lg(miss.value), lg(hit.value), lg(target.value)
        if ya != yb:
            x = a + (yt - ya) * (b - a) / (yb - ya)
    x = min(max(x, a + 0.1 * (b - a)), b - 0.1 * (b - a))
    return round(math.exp(x))


# ---------------------------------------------------------------- the API's error targets

def requested(**given: float | None) -> Target | None:
    """The Target named by `mscncodec.api.encode`'s error-target keywords (``rmse``, ``max_error``, ``psnr``,
    ``chamfer``: None where not given), or None; more than one is a one-line error."""
    by_keyword = {m.keyword: m for m in METRICS.values()}
    asked = [(by_keyword[k], v) for k, v in given.items() if v is not None]
    if len(asked) > 1:
        raise MscnError(f"give only one of {' or '.join(m.option for m, _ in asked)} (one error target)")
    if not asked:
        return None
    m, v = asked[0]
    return Target(m.name, v)


def encode_to(mod, src, target: Target, options: dict, say: Callable[[str], None] | None = None):
    """Encode `src` (modality `mod`) to the smallest stream the search finds whose decoded result meets
    `target`; `options` are the modality's encode options (a size or quality target among them is an
    error). Returns what the encode returns (the stream, or with ``return_report`` (stream, report)); the
    report's ``target`` holds the target, the measured value and every probe. `say` gets one line per
    probe."""
    metric = METRICS[target.metric]
    clash = [k for k in ("target_bytes", "bpp", "quality") if options.get(k) is not None]
    if clash:
        word = {"target_bytes": "a byte target", "bpp": "bpp", "quality": "a quality"}[clash[0]]
        raise MscnError(f"give either {metric.option} (an error target) or {word}, not both")
    kind, points, units = _signal(mod, src, options)
    if kind not in metric.modalities:
        fits = metric.modalities
        raise MscnError(f"{metric.option} applies to {' and '.join(_PLURAL[k] for k in fits)}, not to "
                        f"{_PLURAL.get(kind, kind)}")
    target = replace(target, unit=metric.unit or units)
    start, lo, hi = RANGES[kind].bytes(points)
    base = dict(options, target_bytes=None, return_report=True)
    if say is not None:
        say(f"searching for {target.asked()}: byte targets {lo:,} to {hi:,}, from {start:,}")

    def encode_at(n: int):
        return mod.encode(src, **dict(base, target_bytes=n))

    def shown(p: Probe) -> None:
        if p.bytes == 0:
            say(f"  {p.target_bytes:,} bytes asked: refused (under the codec's minimum)")
        else:
            say(f"  {p.target_bytes:,} bytes asked, {p.bytes:,} written: {metric.label} {target.show(p.value)} "
                f"({'meets' if p.met else 'misses'} the target)")

    t0 = time.perf_counter()
    found = search_bytes(target, encode_at, lambda data, report: report[metric.report_key], start=start, lo=lo,
                         hi=hi, on_probe=shown if say is not None else None)
    report = dict(found.extra)
    report["encode_s"] = time.perf_counter() - t0 - report.get("decode_s", 0.0)  # the search is the encode
    report["note"] = _drop_byte_note(report.get("note", ""), found.target_bytes)
    report["target"] = {"metric": target.metric, "value": target.value, "unit": target.unit, "label": metric.label,
                        "measured": found.value, "encodes": len(found.probes),
                        "probes": [(p.target_bytes, p.bytes, p.value) for p in found.probes]}
    return (found.data, report) if options.get("return_report") else found.data


def summary(report: dict) -> str | None:
    """The line ``mscn encode`` prints under its summary for an error target (None without one)."""
    t = report.get("target")
    if not t:
        return None
    target = Target(t["metric"], t["value"], t["unit"])
    n = t["encodes"]
    return (f"target {target.asked()} met: {target.show(t['measured'])} at {report['bytes']:,} bytes "
            f"(search: {n} encode{'s' if n > 1 else ''})")


_PLURAL = {"image": "images", "mesh": "meshes", "sphere": "fields", "series": "field series", "voxels": "voxel grids"}


def _drop_byte_note(note: str, target_bytes: int) -> str:
    """The encode report's note without its remark on the byte target not being reached: that target was
    one probe of the search, not the user's."""
    return "; ".join(n for n in note.split("; ") if n and not n.startswith(f"target {target_bytes} bytes not reached"))


def _signal(mod, src, options: dict) -> tuple[str, int, str]:
    """(what the encode will code: a modality name, its points for RANGES, its values' units) of `src`:
    a .nc of several steps codes as a series, a 3-D .npy as voxels (as the encoders route them)."""
    if mod.name == "image":
        from mscncodec.modalities import image as imod

        rgb, _ = imod.load(src, options.get("max_pixels"))
        return "image", rgb.shape[0] * rgb.shape[1], "dB"
    if mod.name in ("sphere", "series"):
        from mscncodec.modalities import series as ser
        from mscncodec.modalities import sphere as smod
        from mscncodec.modalities.sphere_codec import route

        var, time, level, grid = (options.get(k) for k in ("var", "time", "level", "grid"))
        kind, time = route(src, var, time)
        if kind == "voxels":
            return "voxels", 0, ""
        if mod.name == "series" or kind == "series":
            f = ser.validate_series(src) if isinstance(src, ser.SeriesField) else \
                ser.load_series(src, var=var, time=time, level=level, grid=grid)
            return "series", int(f.values.size), f.units
        f = smod.load(src, var=var, time=time, level=level, grid=grid)
        return "sphere", int(f.values.size), f.units
    return mod.name, 0, ""
