"""Probe behind rate_control.coding_lambda: encode IMAGE at BPP (fast, routed), then re-code the stream's own
symbols with the context model conditioned on other lambda indices and print the LATS bytes of each
(results/low-rates/coding-lambda.json). Run from this folder: python coding_lambda_probe.py 0.1 IMAGE ..."""
import sys

import torch

from sweep import load
from mscncodec.modalities.image_codec import encode_image
from mscncodec.container import bitstream
from mscncodec.coding import latents as lt
from mscncodec.families.grid2.config import GRD2
from mscncodec.families.grid2.latent_codec import LatentCodec
from mscncodec.models import find_by_id
torch.set_num_threads(1)
for spec in sys.argv[2:]:
    rgb = load(spec)
    data = encode_image(rgb, bpp=float(sys.argv[1]), effort="fast")
    header, sections = bitstream.unpack(data)
    m = find_by_id(header["model_id"])
    li, si = lt.grid_header(m, header, sections, GRD2)
    shapes = m.cfg.grid_shapes(header["height"], header["width"])
    sym = LatentCodec(m.cfg, m.theta, lt.lambda_value(li)).decompress(sections["LATS"], shapes)
    res = {}
    for l2 in sorted(set(list(range(max(li - 64, 0), 256, 8)) + [li])):
        res[l2] = len(LatentCodec(m.cfg, m.theta, lt.lambda_value(l2)).compress(sym))
    best = min(res, key=res.get)
    print(spec.split('/')[-1], m.name, "coded at", li, len(sections["LATS"]), "B; best", best, res[best], "B;", {k: v for k, v in res.items()}, flush=True)
