"""What an image bench run works on and produces: shared by :mod:`.runner` (which fills it) and
:mod:`.report` (which writes it out), so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mscncodec.bench.base import Codec


@dataclass(frozen=True)
class ImageRef:
    """An input image identified by content, so the cache survives renames."""

    path: Path
    name: str
    sha1: str
    height: int
    width: int


@dataclass
class BenchResult:
    """What a run produced; the CLI prints from it and tests inspect it."""

    out: Path
    records: list[dict[str, Any]]
    codecs: list[Codec]
    points: list[float]
    images: list[ImageRef]
    encoded: int = 0
    cached: int = 0
    failed: int = 0
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)
    bd: dict[str, Any] = field(default_factory=dict)
