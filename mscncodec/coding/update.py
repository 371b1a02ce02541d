"""The sparse-update coder shared by the families: which entries are sent (a mask coded against
the meta-learned gate prior), their quantisation steps and values, as three sections (QPRM, MASK, VALS)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mscncodec.coding.entropy import Decoder, Encoder, MaskModel, ValueModel
from mscncodec.coding.quantize import dequantise
from mscncodec.coding.sparsity import BETA, GAMMA, ZETA
from mscncodec.errors import BitstreamError

if TYPE_CHECKING:  # a type only: unpacking an update needs no torch (the image decode runs without it)
    import torch


class UpdateModel(Protocol):
    """What the update coder needs of a model (any family's): its update shapes and gate priors."""

    gated: bool
    cfg: object  # has update_shapes() -> {name: shape}
    log_alpha: dict


def mask_prior(model: UpdateModel, key: str) -> np.ndarray:
    """Logit of the meta-learned P(gate open) per entry (0 for ungated models)."""
    if not model.gated:
        return np.zeros(int(np.prod(model.cfg.update_shapes()[key])), np.float64)
    la = model.log_alpha[key].detach().numpy().astype(np.float64).reshape(-1)
    return la - BETA * np.log(-GAMMA / ZETA)


def pack_update(model: UpdateModel, symbols: dict[str, np.ndarray], steps: dict[str, int]) -> list[tuple[str, bytes]]:
    qprm, enc_mask, enc_vals = bytearray(), Encoder(), Encoder()
    for k in model.cfg.update_shapes():
        sym = symbols[k].reshape(symbols[k].shape[0], -1)
        bits = (sym != 0).astype(np.int32)
        prior = mask_prior(model, k)
        mm = MaskModel(prior, MaskModel.best_offset(prior, bits))
        nz = sym[sym != 0]
        vm = ValueModel.fit(nz)
        qprm += struct.pack("<Bb", steps[k], mm.offset_q) + vm.to_bytes()
        enc_mask.bits(bits, mm.probs())
        enc_vals.values(nz, vm)
    return [("QPRM", bytes(qprm)), ("MASK", enc_mask.finish()), ("VALS", enc_vals.finish())]


def empty_update(model: UpdateModel, n_groups: int = 1) -> list[tuple[str, bytes]]:
    """The sections of an update that sends nothing: what the smallest stream of a model carries."""
    zeros = {k: np.zeros((n_groups, int(np.prod(s))), np.int32) for k, s in model.cfg.update_shapes().items()}
    return pack_update(model, zeros, {k: 0 for k in zeros})


def unpack_update(model: UpdateModel, sections: dict[str, bytes], n_groups: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    for tag in ("QPRM", "MASK", "VALS"):
        if tag not in sections:
            raise BitstreamError(f"corrupted .mscn file (missing section {tag})")
    buf, pos = memoryview(sections["QPRM"]), 0
    dm, dv = Decoder(sections["MASK"]), Decoder(sections["VALS"])
    symbols, steps = {}, {}
    for k, shape in model.cfg.update_shapes().items():
        if pos + 2 > len(buf):
            raise BitstreamError("corrupted .mscn file (quantisation parameters truncated)")
        idx, off = struct.unpack_from("<Bb", buf, pos)
        vm, pos = ValueModel.from_bytes(buf, pos + 2)
        bits = dm.bits(n_groups, MaskModel(mask_prior(model, k), off).probs())
        n_open = int(bits.sum())
        vals = dv.values(n_open, vm)
        sym = np.zeros(bits.shape, np.int32)
        sym[bits.astype(bool)] = vals
        symbols[k], steps[k] = sym.reshape(n_groups, *shape), idx
    if pos != len(buf):
        raise BitstreamError("corrupted .mscn file (trailing quantisation parameters)")
    return symbols, steps


def dequantise_all(symbols: dict[str, np.ndarray], steps: dict[str, int]) -> dict[str, torch.Tensor]:
    return {k: dequantise(s, steps[k]) for k, s in symbols.items()}
