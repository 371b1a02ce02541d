"""grid3 series on the held-out annual run (B06.59, steps 0:32) at the bench's compression ratios."""
import sys, time, json
import torch
from mscncodec.families.grid2.volume.model import Vol3Model
from mscncodec.modalities import series as ser, series_codec as sc
torch.set_num_threads(1)
m = None if sys.argv[1] == "auto" else Vol3Model.from_state(torch.load(sys.argv[1], weights_only=False))  # auto: the codec picks
f = ser.load_series("/work/shared/data/spherical/ccsm-trefht-annual/TREFHT.B06.59.atm.1890-1999ANN.nc", var="TREFHT", time="0:32")
raw = 4 * f.values.size
for ratio in [int(r) for r in (sys.argv[2] if len(sys.argv) > 2 else "50,100,200,300,500,1000").split(",")]:
    t = time.time()
    data, rep = sc.encode_series(f, target_bytes=raw // ratio, model=m, effort=sys.argv[3] if len(sys.argv) > 3 else "default", return_report=True)
    t1 = time.time()
    one = sc.decode_series(data, time=5)
    t2 = time.time()
    print(json.dumps({"ratio": ratio, "target": raw // ratio, "bytes": len(data), "rmse": round(rep["rmse"], 4), "max": round(rep["max_abs"], 3),
                      "enc_s": round(t1 - t, 1), "dec_all_s": round(rep["decode_s"], 2), "dec_one_s": round(t2 - t1, 3), "lambda": rep["lambda"], "model": rep["model"]}), flush=True)
