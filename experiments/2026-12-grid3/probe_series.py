"""Probe: grid3 from zero (seeded decoder) on 32 annual fields of the TRAINING run (B06.57), 64x128."""
import sys, time, math
import numpy as np, torch, netCDF4
from mscncodec.families.grid2.volume.config import Vol3Config
from mscncodec.families.grid2.volume.model import fresh_vol3_model
from mscncodec.families.grid2.volume import fit as vfit, codec as vcodec
from mscncodec.families.grid2.volume.synthesis import render

torch.set_num_threads(1)
path = "/work/shared/data/spherical/ccsm-trefht-annual/TREFHT.B06.57.atm.1890-1999ANN.nc"
with netCDF4.Dataset(path) as ds:
    v = np.asarray(ds["TREFHT"][0:32], np.float64); lat = np.asarray(ds["lat"][:])
T, H, W = v.shape
lo, hi = v.min(), v.max(); half = (hi - lo) / 2
y = (v - (lo + hi) / 2) / half
w = np.cos(np.deg2rad(lat))[None, :, None] * np.ones_like(v); w /= w.mean()
cz, cy, cx = [(2 * torch.arange(n, dtype=torch.float32) + 1) / n - 1 for n in (T, H, W)]
pts = torch.stack(torch.meshgrid(cz, cy, cx, indexing="ij"), -1).reshape(-1, 3)
levels = int(sys.argv[1]) if len(sys.argv) > 1 else 5
cfg = Vol3Config(levels=levels, periodic=(False, False, True))
m = fresh_vol3_model(cfg, name="probe", modality="series")
for budget in [int(a) for a in (sys.argv[2] if len(sys.argv) > 2 else "3400,12000").split(",")]:
    for finest in [(T, H, W)]:
        tgt = vfit.VolumeTarget(pts, torch.from_numpy(y.reshape(-1)).float(), torch.from_numpy(w.reshape(-1)).float(),
                                finest, rate_norm=float(T * H * W), batch=int(sys.argv[3]) if len(sys.argv) > 3 else 0)
        t0 = time.time()
        secs, info = vcodec.encode(m, tgt, budget, effort=sys.argv[4] if len(sys.argv) > 4 else "default", progress=print)
        t1 = time.time()
        lat_ = vcodec.decode_latents(m, dict(secs), budget)
        rec = render(cfg, m.theta, lat_, (T, H, W)).numpy() * half + (lo + hi) / 2
        t2 = time.time()
        rmse = math.sqrt(float((w * (rec - v) ** 2).mean()))
        print(f"budget {budget} finest {finest}: {info['latent_bytes']} B, rmse {rmse:.3f} K, max {np.abs(rec - v).max():.2f}, "
              f"lambda {info['lambda']:.3g} step {info['step']:.3g} enc {t1 - t0:.1f}s dec {t2 - t1:.2f}s")
