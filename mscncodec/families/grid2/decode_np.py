"""grid2's image decode without torch: the decoder side of a model as numpy arrays, and the decode.

Why (issue 28): a Kodak decode through the CLI spent most of its time importing torch, which it used for
a few kilobytes of weights and a float32 synthesis; the exact-integer ARM is numpy already. Here the
weights come from the shipped ``.pt`` files through ``ptload`` (no conversion: the ``.pt`` files stay the one
source), the ARM and the range coder are the exact coder itself (``latent_codec``, ``arm``: the same code
as the torch decoder's, so the same symbols), and the upsampling and synthesis are their numpy twins
(``synthesis_np``), which give the torch decoder's pixels bit for bit where measured (see there).

Frames the torch decoder synthesises tile by tile (over ``WHOLE_FRAME_PIXELS``) are left to it: ``decode``
returns None and the caller falls back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mscncodec.coding import latents as lt
from mscncodec.coding.quantize import step_size
from mscncodec.errors import BitstreamError
from mscncodec.families.grid2.config import GRD2, Grid2Config, init_arrays
from mscncodec.families.grid2.latent_codec import LatentCodec
from mscncodec.families.grid2.synthesis_np import synthesis
from mscncodec.modelfile import digest, latent_variant

WHOLE_FRAME_PIXELS = 1 << 20  # tiles.TILED_PIXELS (a test pins it): larger frames are decoded tile by tile


@dataclass
class Grid2Arrays:
    """The decoder side of a ``Grid2Model`` as float32 numpy arrays: the same name, config, variant and id."""

    name: str
    cfg: Grid2Config
    theta: dict[str, np.ndarray]
    analysis: dict = field(default_factory=dict)  # never read (the encoder's); latent_variant sets it
    sparsity: str = "none"
    description: str = ""
    meta: dict = field(default_factory=dict)

    arch = "grid2"
    modality = "image"
    gated = False  # the update coder's question (coding.update.mask_prior)

    @property
    def patch(self) -> int:
        return self.cfg.align

    @property
    def model_id(self) -> bytes:
        """``Grid2Model.model_id``: the same hash over the same float32 bytes."""
        return digest(self.cfg.to_dict(), ("grid2", self.sparsity), {f"theta.{k}": v for k, v in self.theta.items()})

    def variant(self, sparsity: str) -> "Grid2Arrays":
        return latent_variant(self, sparsity, lambda name: fresh_arrays(self.cfg, name=name))

    @classmethod
    def from_state(cls, st: dict) -> "Grid2Arrays":
        """From a weights file read by ``ptload`` (tensors as numpy arrays); the analysis network is skipped."""
        theta = {k.split(".", 1)[1]: np.asarray(v, np.float32) for k, v in st["tensors"].items() if k.startswith("theta.")}
        return cls(name=st["name"], cfg=Grid2Config.from_dict(st["cfg"]), theta=theta,
                   sparsity=st.get("sparsity", "none"), description=st.get("description", ""), meta=st.get("meta", {}))


def fresh_arrays(cfg: Grid2Config, *, name: str, seed: int = 0) -> Grid2Arrays:
    """``model.fresh_grid2_model``'s decoder (the ``+scratch`` start): the same seeded draws."""
    return Grid2Arrays(name, cfg, {k: v for k, v in init_arrays(cfg, seed).items() if not k.startswith("ana.")})


def decode(model: Grid2Arrays, header: dict, sections: dict[str, bytes]) -> np.ndarray | None:
    """``decoder.decode`` without torch: -> H x W x 3 uint8, or None for a frame synthesised tile by tile."""
    from mscncodec.coding.update import unpack_update

    cfg = model.cfg
    h, w = header["height"], header["width"]
    shapes = cfg.grid_shapes(h, w)
    if shapes[0][0] * shapes[0][1] > WHOLE_FRAME_PIXELS:
        return None
    lam_idx, step_idx = lt.grid_header(model, header, sections, GRD2)
    params = model.theta
    if "QPRM" in sections:
        symbols, steps = unpack_update(model, sections, 1)
        # coding.quantize.dequantise and update.effective: float32 products and sums
        params = {k: v + symbols[k][0].astype(np.float32) * np.float32(step_size(steps[k])) if k in symbols else v
                  for k, v in model.theta.items()}
    elif model.sparsity == "scratch":
        raise BitstreamError("corrupted .mscn file (missing section QPRM)")
    sym = LatentCodec(cfg, params, lt.lambda_value(lam_idx)).decompress(sections["LATS"], shapes)
    s = np.float32(lt.latent_step(step_idx))
    lat = [v.astype(np.float32) * s for v in sym]
    del sym
    out = synthesis(cfg, params, lat)[:, :h, :w]
    np.clip(out, 0, 1, out=out)
    out *= np.float32(255.0)
    return np.round(out, out=out).astype(np.uint8).transpose(1, 2, 0)
