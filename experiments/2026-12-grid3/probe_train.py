import sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from series_targets import volume, load
from mscncodec.families.grid2.volume import train as vtrain
torch.set_num_threads(1)
A = "/work/shared/data/spherical/ccsm-trefht-annual/TREFHT.B06.57.atm.1890-1999ANN.nc"
M = "/work/shared/data/spherical/ccsm-ts-monthly/b003_TS_200-299.nc"
vols = [volume(*load(A, "TREFHT", a, a + 32))[0] for a in (0, 26, 52, 78)]
vols += [volume(*load(M, "TS", a, a + 32))[0] for a in (0, 24, 48)]
cfg = vtrain.Vol3TrainConfig(levels=5, periodic=(False, False, True), steps=int(sys.argv[2]), val_every=50)
data = vtrain.VolumeSet(vols, [], [Path(A), Path(M)], Path("/work/shared/data/spherical"), "probe")
t = time.time()
p = vtrain.train(data, Path(sys.argv[1]), cfg, modality="series", resume=True, command="probe")
print(p, time.time() - t)
