"""Series volumes for probes (training files only)."""
import numpy as np, torch, netCDF4
from mscncodec.families.grid2.volume import fit as vfit

def volume(v, lat, batch=32768):
    T, H, W = v.shape
    lo, hi = np.nanmin(v), np.nanmax(v); half = (hi - lo) / 2
    y = (v - (lo + hi) / 2) / half
    w = np.cos(np.deg2rad(lat))[None, :, None] * np.ones_like(v); w /= w.mean()
    cz, cy, cx = [(2 * torch.arange(n, dtype=torch.float32) + 1) / n - 1 for n in (T, H, W)]
    pts = torch.stack(torch.meshgrid(cz, cy, cx, indexing="ij"), -1).reshape(-1, 3)
    return vfit.VolumeTarget(pts, torch.from_numpy(y.reshape(-1)).float(), torch.from_numpy(w.reshape(-1)).float(),
                             tuple(-(-n // 2) for n in (T, H, W)), rate_norm=float(T * H * W), batch=batch), (lo + hi) / 2, half

def load(path, var, a, b):
    with netCDF4.Dataset(path) as ds:
        return np.asarray(ds[var][a:b], np.float64), np.asarray(ds["lat"][:])
