"""The resume cache every bench shares: ``OUT/cache.jsonl``, one finished point per JSON line.

* Each line is a record with its ``key`` (the input's content, the codec's key and declared identity,
  the target: see :class:`.base.Keyed`); failed points are not cached, so they are retried.
* ``cache.jsonl`` is not committed. A results folder whose report needs its old points commits one
  archive beside it, ``cache.jsonl.gz``; when ``cache.jsonl`` is absent it is seeded from that archive
  before the run, and the run appends to the plain file.
* :func:`refile` is the one-time migration of points cached under an older key scheme: such a point is
  copied under its current key, and a tombstone line (``refiled_as``) retires the old key so that a
  later change of the codec's identity cannot re-file it again. The tombstone also carries ``error``,
  so a reader from before the migration skips it and keeps the old record.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

CACHE_NAME = "cache.jsonl"
ARCHIVE_NAME = CACHE_NAME + ".gz"


def seed_from_archive(out: Path) -> int | None:
    """Decompress ``out/cache.jsonl.gz`` into ``out/cache.jsonl`` when only the archive exists; the number of
    lines seeded, or None when there was nothing to do."""
    path, archive = Path(out) / CACHE_NAME, Path(out) / ARCHIVE_NAME
    if path.exists() or not archive.is_file():
        return None
    tmp = path.with_name(CACHE_NAME + ".seeding")
    with gzip.open(archive, "rb") as src, tmp.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    tmp.replace(path)  # a killed seed leaves no half cache that would stop the next seed
    with path.open("rb") as f:
        return sum(1 for _ in f)


def open_cache(out: Path, echo: Callable[[str], None] | None = None) -> tuple[Path, dict[str, dict[str, Any]]]:
    """(path of ``out/cache.jsonl``, its finished points), seeding it from the archive first (see module doc)."""
    seeded = seed_from_archive(out)
    if seeded is not None and echo is not None:
        echo(f"seeded {CACHE_NAME} from {ARCHIVE_NAME} ({seeded} lines)")
    path = Path(out) / CACHE_NAME
    return path, load_cache(path)


def load_cache(path: Path) -> dict[str, dict[str, Any]]:
    """Read finished points; a torn last line (killed mid-write) is ignored, a tombstone retires its key."""
    cache: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(rec, dict) or "key" not in rec:
                continue
            if "refiled_as" in rec:
                cache.pop(rec["key"], None)
            elif "error" not in rec:
                cache[rec["key"]] = rec
    return cache


def append_cache(path: Path, rec: dict[str, Any]) -> None:
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def refile(cache: dict[str, dict[str, Any]], path: Path, wanted: Iterable[tuple[str, Iterable[str]]]) -> int:
    """For each (current key, the keys older schemes filed that point under), where the current key is not
    cached and an old one is: file the old record under the current key and retire the old key (appended to
    ``path``). Returns how many points were re-filed."""
    moved = 0
    for key, olds in wanted:
        if key in cache:
            continue
        for old in olds:
            rec = cache.pop(old, None) if old != key else None
            if rec is None:
                continue
            cache[key] = {**rec, "key": key}
            append_cache(path, cache[key])
            append_cache(path, {"key": old, "refiled_as": key, "error": "re-filed under a newer cache key"})
            moved += 1
            break
    return moved
