"""Issue 30's crafted streams, made from the golden field and mesh streams (header edited, CRC recomputed), decoded
with the default bounds in one process (one torch thread): CPU, wall, peak RSS growth, outcome.

    .venv/bin/python experiments/2026-12-07-decoder-cost/issue_cases.py > results/decoder-cost/issue-cases.jsonl
"""

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

import torch  # noqa: E402

torch.set_num_threads(1)

import mscncodec  # noqa: E402
from fuzzing import _reset_peak_rss, _status_kb  # noqa: E402
from mscncodec.container import bitstream  # noqa: E402
from mscncodec.errors import MscnError  # noqa: E402
from mscncodec.modalities import mesh_codec  # noqa: E402


def edited(data: bytes, **fields) -> bytes:
    header, sections = bitstream.unpack(data)
    return bitstream.pack(dict(header, **fields), list(sections.items()))


field = (REPO / "tests/fixtures/golden/field-1500B.mscn").read_bytes()
mesh = (REPO / "tests/fixtures/golden/mesh-shape-3000B.mscn").read_bytes()
nlon = 1600 * len(field) // 8192
j = mesh_codec.justified_resolution(len(mesh))
cases = {
    f"field 8192 x {nlon} Gaussian ({len(field)} B: the most points it may claim)":
        edited(field, nlat=8192, nlon=nlon, lat_kind=1),
    "field 8192 x 128 Gaussian": edited(field, nlat=8192, lat_kind=1),
    f"mesh 512^3 stored ({len(mesh)} B)": edited(mesh, resolution=512),
    f"mesh {j}^3 stored (the most a {len(mesh)} B stream justifies)": edited(mesh, resolution=j),
}
for name, d in cases.items():
    rss0 = _reset_peak_rss()
    c, w = time.process_time(), time.perf_counter()
    try:
        mscncodec.decode(d)
        r = "decoded"
    except MscnError as e:
        r = f"{type(e).__name__}: {e}"
    print(json.dumps({"case": name, "cpu_s": round(time.process_time() - c, 2), "wall_s": round(time.perf_counter() - w, 2),
                      "rss_growth_mb": round((_status_kb("VmHWM") * 1024 - rss0) / 2**20), "result": r}), flush=True)
