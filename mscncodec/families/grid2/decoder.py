"""Decoding of grid2 streams (image): decode, and the sections' description for `mscn info`.

A stream of the retired ``+gated`` variant (an L0-gated update, no longer encoded) carries the same
sections as a ``+dense`` one and decodes the same way: its update is whatever QPRM/MASK/VALS hold.
"""

from __future__ import annotations

import numpy as np
import torch

from mscncodec.coding import latents as lt
from mscncodec.coding.quantize import dequantise
from mscncodec.errors import BitstreamError, MscnError
from mscncodec.families.grid2 import frame
from mscncodec.families.grid2.config import GRD2
from mscncodec.families.grid2.latent_codec import LatentCodec
from mscncodec.families.grid2.model import Grid2Model
from mscncodec.families.grid2.update import effective


def decode(model: Grid2Model, header: dict, sections: dict[str, bytes]) -> np.ndarray:
    """-> H x W x 3 uint8."""
    from mscncodec.coding.update import unpack_update

    cfg = model.cfg
    lam_idx, step_idx = lt.grid_header(model, header, sections, GRD2)
    params = model.theta
    if "QPRM" in sections:
        symbols, steps = unpack_update(model, sections, 1)
        params = effective(model, {k: dequantise(s, steps[k])[0] for k, s in symbols.items()})
    elif model.sparsity == "scratch":
        raise BitstreamError("corrupted .mscn file (missing section QPRM)")
    h, w = header["height"], header["width"]
    sym = LatentCodec(cfg, params, lt.lambda_value(lam_idx)).decompress(sections["LATS"], cfg.grid_shapes(h, w))
    s = np.float32(lt.latent_step(step_idx))
    with torch.no_grad():
        lat = [torch.from_numpy(v.astype(np.float32) * s)[None, None] for v in sym]
        del sym
        out = frame.synthesis(model, params, lat)[0, :, :h, :w]
    return out.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()  # in place: no copies


def describe(model: Grid2Model, sections: dict[str, bytes]) -> dict[str, str]:
    """The GRD2 section's lambda and latent step and what the decoder update sends, for `mscn info`."""
    d = GRD2.describe(sections)
    if not d:
        return {}
    d["update"] = "none (shared decoder)"
    if "QPRM" in sections:
        from mscncodec.coding.update import unpack_update

        try:
            sent = sum(int(np.count_nonzero(v)) for v in unpack_update(model, sections, 1)[0].values())
            total = sum(v.numel() for v in model.theta.values())
            d["update"] = f"{model.sparsity} update of the decoder: {sent} of {total} entries sent"
        except MscnError:
            d["update"] = f"{model.sparsity} update of the decoder (unreadable)"
    return d
