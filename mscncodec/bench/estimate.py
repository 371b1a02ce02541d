"""How long a bench run will take, said before it starts and corrected after the first image.

A bench that silently runs for hours is one people kill; an estimate up front lets them pick fewer
points or codecs instead. The table is wall seconds per megapixel for one (image, target) point --
rate search, encode, decode, PSNR and MS-SSIM, as :func:`runner.run_point` does them -- measured on
one Kodak image on the 2-core machine with its other core busy training
(``experiments/2026-11-bench-time/times.json``), so it errs on the slow side. After the first image the
measured time replaces the table's guess for the rest of the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from mscncodec.bench.base import Codec

#: Classical codecs, seconds per MP per point (experiments/2026-11-bench-time/times.json, kodim01, 0.39 MP).
SECONDS_PER_MP: dict[str, float] = {
    "jpeg": 0.35, "jpeg444": 0.35, "webp": 0.55, "jpeg2000": 0.75, "avif": 3.7, "heic": 3.7, "jxl": 2.8,
}
#: mscn, per family at `default` effort, with the threads `mscn` picks (1 while the other core is busy; 2
#: threads there took 128 s/MP at `fast`, times.json). grid2: 26 s/MP at `fast` in the 2-image Kodak run
#: (experiments/2026-11-bench-time/kodak-2/); grid, siren: the Kodak medians (docs/results.md).
MSCN_SECONDS_PER_MP: dict[str, float] = {"grid2": 78.0, "grid": 150.0, "siren": 120.0}
#: Cost of an effort relative to `default` (grid2 refinement steps 8 / 50 / 400 plus the fixed work; placebo's
#: 10k steps on the CPU: 25x max's, unmeasured).
EFFORT_FACTOR: dict[str, float] = {"fast": 0.33, "default": 1.0, "max": 6.0, "placebo": 150.0}
UNKNOWN_SECONDS_PER_MP = 5.0  # a codec nobody timed: a classical one's order of magnitude


def mscn_family(model: str) -> str | None:
    """The INR family a bench model name belongs to, asked of the family registry (``auto``: the shipped
    default family; a family's name: itself); None when the core cannot tell (the codec will be skipped)."""
    try:
        from mscncodec.bench.inr import model_family

        return model_family(model).name
    except Exception:  # noqa: BLE001 - no usable core, or an unknown model
        return None


def seconds_per_mp(codec: Codec) -> float:
    """Wall seconds per megapixel for one point of ``codec`` (see the module docstring)."""
    if codec.key in SECONDS_PER_MP:
        return SECONDS_PER_MP[codec.key]
    model = getattr(codec, "model", None)
    if model is None:
        return UNKNOWN_SECONDS_PER_MP
    effort = getattr(codec, "effort", "default")
    family = mscn_family(model)
    per_mp = MSCN_SECONDS_PER_MP.get(family, max(MSCN_SECONDS_PER_MP.values())) if family else max(
        MSCN_SECONDS_PER_MP.values())  # an untimed family: the slowest timed one (the estimate errs slow)
    return per_mp * EFFORT_FACTOR.get(effort, 1.0)


def point_seconds(codec: Codec, height: int, width: int) -> float:
    """Predicted wall seconds of one point of ``codec`` on a height x width image."""
    return seconds_per_mp(codec) * height * width / 1e6


def format_duration(seconds: float) -> str:
    """'45 s', '12 min', '2 h 05 min': what a person reads at a glance."""
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass
class Estimate:
    """The predicted time of the pending points, and its correction once the first image is done.

    ``tasks`` are (codec, image name, seconds predicted) for every point still to run, in run order;
    ``workers`` the processes running them at once.
    """

    tasks: list[tuple[Codec, str, float]]
    workers: int = 1
    extra: float = 0.0  # work after the points (the crops' re-encodes), predicted
    started: float = field(default_factory=time.perf_counter)
    finished_predicted: float = 0.0
    first_left: set[int] = field(default_factory=set)
    refined: bool = False

    def __post_init__(self) -> None:
        first = self.tasks[0][1] if self.tasks else None
        self.first_left = {i for i, t in enumerate(self.tasks) if t[1] == first}

    def total(self) -> float:
        """Predicted wall seconds for all pending points plus the extra work."""
        return sum(t[2] for t in self.tasks) / self.workers + self.extra

    def start_line(self, n_images: int, n_cached: int) -> str:
        """The line printed before any work: total, and the codecs that cost most."""
        per: dict[str, float] = {}
        for codec, _, s in self.tasks:
            per[codec.key] = per.get(codec.key, 0.0) + s / self.workers
        top = ", ".join(f"{k} {format_duration(v)}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
        cached = f" ({n_cached} cached)" if n_cached else ""
        return (f"estimated time: about {format_duration(self.total())} for {len(self.tasks)} points on "
                f"{n_images} images{cached}" + (f": {top}" if top else "") + "; refined after the first image")

    def done(self, index: int) -> str | None:
        """Record that task ``index`` finished; the refined estimate's line once the first image is done."""
        self.finished_predicted += self.tasks[index][2]
        self.first_left.discard(index)
        if self.refined or self.first_left:
            return None
        self.refined = True
        elapsed = time.perf_counter() - self.started
        ratio = elapsed / max(self.finished_predicted / self.workers, 1e-6)
        left = (sum(t[2] for t in self.tasks) - self.finished_predicted) / self.workers * ratio + self.extra * ratio
        return (f"first image done in {format_duration(elapsed)} ({ratio:.2f}x the estimate): "
                f"about {format_duration(left)} left")


def make_estimate(tasks: Iterable[tuple[Codec, str, int, int]], workers: int, extra_codecs: Iterable[Codec] = (),
                  extra_shape: tuple[int, int] = (0, 0)) -> Estimate:
    """An :class:`Estimate` for (codec, image name, height, width) points; ``extra_codecs`` each re-encode
    one point of an ``extra_shape`` image afterwards (crops.png)."""
    pending = [(c, name, point_seconds(c, h, w)) for c, name, h, w in tasks]
    extra = sum(point_seconds(c, *extra_shape) for c in extra_codecs)
    return Estimate(pending, max(workers, 1), extra)

