"""What the latent-grid families share: the lambda and latent-step tables, lambda conditioning,
Laplace bin probabilities, the channel-last 1x1 layer, image padding and the grid stream header."""

from __future__ import annotations

import math

import numpy as np

from mscncodec._lazy import F, torch  # the image decode reads these tables without torch

from mscncodec.container.bitstream import Field
from mscncodec.container.sections import Section
from mscncodec.errors import BitstreamError


LOG2_LAMBDA_MIN, LOG2_LAMBDA_STEPS = -15.0, 16  # lambda table: 2**(-15 + i/16), i in 0..255


MIN_LIKELIHOOD = 2.0**-16


def lambda_value(idx: int) -> float:
    return float(2.0 ** (LOG2_LAMBDA_MIN + idx / LOG2_LAMBDA_STEPS))


def lambda_index(lam: float) -> int:
    return int(np.clip(np.round((np.log2(lam) - LOG2_LAMBDA_MIN) * LOG2_LAMBDA_STEPS), 0, 255))


def step_for(lam: torch.Tensor) -> torch.Tensor:
    """The latent quantisation step that goes with a trade-off lambda: sqrt(lambda / 2**-9.5).

    Tying the step to lambda makes one model variable-rate by construction (high-rate
    theory: MSE ~ step**2, so the optimal step grows like sqrt(lambda)); the networks
    only learn what is left. The encoder sends the step it finally used.
    """
    return torch.exp2((torch.log2(lam) + 9.5) / 2)


def lambda_feature(lam: torch.Tensor) -> torch.Tensor:
    """log2(lambda), centred on the useful range: the networks' rate-conditioning input."""
    return (torch.log2(lam) + 9.0) / 3.0


def lambda_feature_value(lam: float) -> float:
    """``lambda_feature`` of one float, without torch: the exact ARM's lambda input (``lambda_fixed``), which
    rounds it to a multiple of 2**-8 (on the lambda table, every value equals the float64 tensor's)."""
    return (math.log2(lam) + 9.0) / 3.0


def _lin(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A 1x1 layer on channel-last features (B, N, I) with shared (O, I, 1, 1) or per-sample (B, O, I, 1, 1)
    weights, as a matrix product: on the CPU its backward pass is several times faster than conv2d's."""
    if w.dim() == 4:
        return torch.addmm(b, h.reshape(-1, h.shape[-1]), w.reshape(w.shape[0], -1).t()).reshape(*h.shape[:-1], w.shape[0])
    return torch.baddbmm(b[:, None, :], h, w.reshape(*w.shape[:3]).transpose(1, 2))


def laplace_bits(z: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(bin of width 1 around z) under Laplace(mu, exp(log_scale)); z may carry uniform noise."""
    b = log_scale.exp()
    x = (z - mu).abs()
    lower = torch.exp(-(x + 0.5) / b)
    outside = 0.5 * (torch.exp(-(x - 0.5).clamp(min=0) / b) - lower)  # bin entirely on one side of the mean
    straddle = 1.0 - 0.5 * torch.exp(-(0.5 - x).clamp(min=0) / b) - 0.5 * lower  # bin contains the mean
    p = torch.where(x < 0.5, straddle, outside)
    return -torch.log2(p.clamp(min=MIN_LIKELIHOOD))


STEP_BASE, STEP_PER_OCTAVE = 128, 32  # global latent step 2**((i - 128) / 32)


def latent_step(idx: int) -> float:
    return float(2.0 ** ((idx - STEP_BASE) / STEP_PER_OCTAVE))


def step_index_for(lam: float) -> int:
    """Index of the tabled latent step nearest the one tied to lambda (grid.step_for)."""
    step = float(step_for(torch.tensor(lam)))
    return int(np.clip(np.round(STEP_PER_OCTAVE * math.log2(step) + STEP_BASE), 0, 255))


def tied_step(lam_idx: int) -> float:
    """The tabled latent step that goes with a tabled lambda."""
    return latent_step(step_index_for(lambda_value(lam_idx)))


def pad_image(rgb: np.ndarray, align: int) -> torch.Tensor:
    """H x W x 3 uint8 -> (1, 3, Hp, Wp) in [0, 1], edge-replicated to a multiple of align."""
    h, w, _ = rgb.shape
    x = torch.from_numpy(np.array(rgb, copy=True)).float().div_(255.0).permute(2, 0, 1)[None]
    ph, pw = -h % align, -w % align
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x


def grid_section(tag: str) -> Section:
    """The latent-grid families' 2-byte section (GRID for grid, GRD2 for grid2): the lambda index and the
    latent-step index, declared once for packing, decoding and `mscn info`."""
    return Section(tag, (
        Field("lambda", "B", "index into the lambda table", None, lambda v: f"{lambda_value(v):.3g} (index {v})"),
        Field("latent_step", "B", "index into the latent-step table", None, lambda v: f"{latent_step(v):.4g} (index {v})"),
    ))


def grid_header(model, header: dict, sections: dict[str, bytes], section: Section) -> tuple[int, int]:
    """Validate a latent-grid stream's alignment and sections; -> (lambda index, latent step index)."""
    if header["patch"] != model.cfg.align:
        raise BitstreamError(f"corrupted .mscn file (alignment {header['patch']} does not match model {model.name})")
    values = section.unpack(sections)
    if "LATS" not in sections:
        raise BitstreamError("corrupted .mscn file (missing section LATS)")
    return values["lambda"], values["latent_step"]


MAX_DEADZONE = 1.5  # latents below 1.5 steps may be zeroed to fit the size (a dead-zone quantiser)
