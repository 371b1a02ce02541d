"""The field-series bench: SZ3 3-D, zfp 3-D, JPEG 2000 per field (and mscn's series codec when present) at
equal total bytes on a netCDF series (time x lat x lon).

    python scripts/series_bench.py --data FILE.nc --var TREFHT --time 0:32 --ratios 50,100,200 \\
        --codecs sz3,zfp,jpeg2000 --out build/series-bench

Writes OUT/results.json, results.csv, summary.md, rd.png; OUT/cache.jsonl keeps measured points, so a rerun
measures only new ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mscncodec.bench import series as sb
from mscncodec.errors import MscnError
from mscncodec.modalities.series import load_series


def _numbers(text: str | None, kind: type) -> list | None:
    if not text:
        return None
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"error: bad list {text!r}: comma-separated numbers") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, action="append", required=True, help="netCDF file (repeatable)")
    ap.add_argument("--var", default=None, help="variable (default: the only lat-lon variable with a time axis)")
    ap.add_argument("--time", default=None, help="steps a:b (b excluded), k, or all (default)")
    ap.add_argument("--level", type=int, default=None, help="index along a non-time extra dimension")
    ap.add_argument("--sizes", default=None, help="total byte targets, comma-separated (override --ratios)")
    ap.add_argument("--ratios", default=",".join(map(str, sb.DEFAULT_RATIOS)),
                    help="compression ratios of the float32 data, comma-separated")
    ap.add_argument("--codecs", default="sz3,zfp,jpeg2000,mscn", help=f"comma-separated: {', '.join(sb.CODECS)}")
    ap.add_argument("--out", type=Path, default=Path("build/series-bench"))
    ap.add_argument("--no-plot", action="store_true")
    a = ap.parse_args(argv)
    try:
        codecs = sb.resolve(a.codecs)
        refs = []
        for path in a.data:
            f = load_series(path, var=a.var, time=a.time, level=a.level)
            sel = "" if a.time in (None, "all") else f"[{a.time}]"
            refs.append((f"{path.stem}{sel}" + ("" if a.level is None else f"[lev={a.level}]"), f))
        sb.run_series_bench(refs, codecs, sizes=_numbers(a.sizes, int), ratios=_numbers(a.ratios, float) or (),
                            out=a.out, plot=not a.no_plot, progress=True)
    except MscnError as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    print((a.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
