"""grid3 meshes: encode a mesh at byte targets with a model, report Chamfer-L1 / diagonal, IoU and times."""
import sys, json, time
import torch
from mscncodec.modalities import mesh_codec as mc
torch.set_num_threads(1)
path, model = sys.argv[1], sys.argv[2]
for b in [int(x) for x in sys.argv[3].split(",")]:
    t = time.time()
    data, rep = mc.encode_mesh(path, target_bytes=b, model=model, effort=sys.argv[4] if len(sys.argv) > 4 else "default", return_report=True)
    print(json.dumps({"mesh": path.split("/")[-1], "model": model, "target": b, "bytes": len(data), "chamfer": rep.get("chamfer_l1"),
                      "iou": rep.get("iou"), "enc_s": round(rep["encode_s"], 1), "dec_s": round(rep["decode_s"], 2)}), flush=True)
