"""The latent-grid INR family (``--arch grid``): Cool-chic's shape with a meta-learned start.

An image is represented by ``levels`` one-channel latent grids at 1/2, 1/4, ... resolution
(``first`` = 1: a full-resolution grid cost most of the bits in a first probe). Each grid is upsampled (bilinear) to full resolution, the stack is
fed per pixel to a tiny synthesis network (1x1 layers, then one residual 3x3
convolution) that outputs RGB. Latents are integers after quantisation and are
range-coded with a quantised Laplace whose mean and scale come from a small
*context network*. The context of a latent is the already-decoded coarser grid
(upsampled) and, in a checkerboard second pass, the four already-decoded
neighbours of the same grid (He et al. 2021): every pass is one parallel
convolution, so decoding needs 2 x levels network calls, not one per latent as an
autoregressive model would.

What is meta-learned (and shipped in ``models/``) is everything that makes a few
hundred CPU steps per file enough:

* theta0 of the synthesis and context networks, which each file updates with a
  sparse, gated, quantised delta (MSCN's mechanism; gate priors and Meta-SGD
  learning rates are meta-learned as for SIREN);
* an *analysis network* (encoder side only) that predicts the latents from the
  image in one pass, conditioned on the rate-distortion trade-off lambda; the
  encoder then refines those latents instead of starting from zero.

All network weights live in flat ``dict[str, Tensor]``s. Per-file updates carry a
leading batch axis; batched per-sample weights are applied with grouped
convolutions, so meta-training adapts a batch of crops in one pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mscncodec.coding.latents import _lin, lambda_feature, laplace_bits

SYMBOL_RANGE = 255  # latents are coded in [-R, R]; the encoder clamps to it
SCALE_MIN, SCALE_MAX = 0.04, 64.0
N_SCALES = 128  # coded Laplace scales are snapped to a log-spaced table (bit-identical both ends)
MEAN_GRID = 1 / 16  # ... and means to this grid










@dataclass(frozen=True)
class GridConfig:
    levels: int = 6  # number of grids
    first: int = 1  # the finest grid is at 1/2**first resolution (a full-resolution grid costs the most bits)
    hidden: tuple[int, ...] = (24, 24)  # synthesis 1x1 widths
    conv3: bool = True  # a residual 3x3 convolution after the 1x1 layers
    ctx_hidden: int = 16
    analysis: int = 16  # analysis channels

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GridConfig":
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", (24, 24)))
        return cls(**d)

    @property
    def align(self) -> int:
        """Images are padded to a multiple of this, so every grid has an integer size."""
        return 2 ** (self.first + self.levels - 1)

    def scale(self, level: int) -> int:
        """Downscale factor of a grid relative to the image."""
        return 2 ** (self.first + level)

    def synthesis_shapes(self) -> dict[str, tuple[int, ...]]:
        dims = [self.levels, *self.hidden, 3]
        s: dict[str, tuple[int, ...]] = {}
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            s[f"syn.w{i}"], s[f"syn.b{i}"] = (b, a, 1, 1), (b,)
        if self.conv3:
            s["syn.cw"], s["syn.cb"] = (3, 3, 3, 3), (3,)
        return s

    def context_shapes(self) -> dict[str, tuple[int, ...]]:
        h = self.ctx_hidden
        return {"ctx.w0": (h, 3, 3, 3), "ctx.b0": (h,), "ctx.w1": (h, h, 1, 1), "ctx.b1": (h,),
                "ctx.w2": (2, h, 1, 1), "ctx.b2": (2,), "ctx.lvl": (self.levels, 2)}

    def update_shapes(self) -> dict[str, tuple[int, ...]]:
        """Decoder-side parameters; each file may send a sparse update of any of them."""
        return {**self.synthesis_shapes(), **self.context_shapes()}

    def analysis_shapes(self) -> dict[str, tuple[int, ...]]:
        c, s = self.analysis, {}
        s["ana.in.w"], s["ana.in.b"] = (c, 4, 3, 3), (c,)
        for l in range(1, self.levels):
            s[f"ana.down{l}.w"], s[f"ana.down{l}.b"] = (c, c, 3, 3), (c,)
        for l in range(self.levels - 1):
            s[f"ana.up{l}.w"], s[f"ana.up{l}.b"] = (c, 2 * c, 3, 3), (c,)  # top-down, into grid l
        s["ana.out.w"], s["ana.out.b"] = (self.levels, c, 1, 1), (self.levels,)
        return s

    def macs_per_pixel(self) -> float:
        """Decoder multiply-adds per image pixel: synthesis, bilinear upsampling, context passes."""
        dims = [self.levels, *self.hidden, 3]
        syn = sum(a * b for a, b in zip(dims[:-1], dims[1:])) + (81 if self.conv3 else 0)
        up = 4 * self.levels  # four taps per upsampled grid value
        h = self.ctx_hidden
        # the first 3x3 layer runs over the whole grid in both checkerboard passes; the 1x1 layers only
        # where that pass decodes
        ctx_per_latent = 2 * 27 * h + h * h + 2 * h
        latents_per_pixel = sum(4.0 ** -(self.first + l) for l in range(self.levels))
        return syn + up + ctx_per_latent * latents_per_pixel


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return torch.from_numpy(rng.uniform(-bound, bound, size=shape).astype(np.float32))


def init_params(cfg: GridConfig, seed: int = 0, analysis: bool = True) -> dict[str, torch.Tensor]:
    """Uniform init from a seeded numpy generator: both ends can rebuild it.

    Weights draw from +-1/sqrt(fan_in) (PyTorch's default). Biases are non-zero on
    purpose (with zero latents and zero biases every ReLU is dead): a bias named
    ``*.b`` uses its ``*.w``'s fan-in; the numbered ones (``syn.b0``, ``ctx.b1``, ...)
    draw from +-1. That asymmetry is an accident of the first version, kept because
    the shipped model and the ``+scratch`` variant's id were made with it.
    """
    rng = np.random.default_rng(seed)
    shapes = {**cfg.update_shapes(), **(cfg.analysis_shapes() if analysis else {})}
    out = {}
    for k, s in shapes.items():
        if k == "ctx.lvl":
            lvl = np.zeros(s, np.float32)
            lvl[:, 1] = math.log(0.5)  # initial Laplace scale 0.5: a zero latent costs < 1 bit
            out[k] = torch.from_numpy(lvl)
            continue
        wkey = k[:-1] + "w" if k.endswith("b") else k
        wshape = shapes.get(wkey, s)
        fan_in = int(np.prod(wshape[1:])) if len(wshape) > 1 else 1
        out[k] = _uniform(rng, s, fan_in)
    if "syn.cw" in out:  # the residual conv starts near identity
        out["syn.cw"] = out["syn.cw"] * 0.1
        out["syn.cb"] = out["syn.cb"] * 0.0
    return out


def effective(theta: dict[str, torch.Tensor], delta: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """theta0 + delta (delta has a leading batch axis; theta does not)."""
    if not delta:
        return theta
    return {k: (theta[k] + delta[k]) if k in delta else theta[k] for k in theta}


def _conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, padding: int | str = 0) -> torch.Tensor:
    """Convolution with shared (O,C,k,k) or per-sample (B,O,C,k,k) weights."""
    if w.dim() == 4:
        return F.conv2d(x, w, b if b.dim() == 1 else None, padding=padding) + (b[:, :, None, None] if b.dim() == 2 else 0)
    bsz, c = x.shape[:2]
    o = w.shape[1]
    y = F.conv2d(x.reshape(1, bsz * c, *x.shape[2:]), w.reshape(bsz * o, *w.shape[2:]), b.reshape(bsz * o),
                 padding=padding, groups=bsz)
    return y.reshape(bsz, o, *y.shape[2:])


# ---------------------------------------------------------------- analysis (encoder side)

def analysis(cfg: GridConfig, p: dict[str, torch.Tensor], x: torch.Tensor, lam: torch.Tensor) -> list[torch.Tensor]:
    """Image (B,3,H,W) in [0,1] and lambda (B,) -> latents [(B,1,H/s_l,W/s_l)], finest first.

    A small U-Net: strided 3x3 convolutions down to the coarsest grid, then a
    top-down path so each level's latent knows what the coarser ones carry.
    """
    if cfg.first > 1:
        x = F.avg_pool2d(x, 2 ** (cfg.first - 1))
    feat = lambda_feature(lam)[:, None, None, None].expand(-1, 1, *x.shape[2:])
    h = F.gelu(F.conv2d(torch.cat([x - 0.5, feat], 1), p["ana.in.w"], p["ana.in.b"], padding=1,
                        stride=2 if cfg.first else 1))
    downs = [h]
    for l in range(1, cfg.levels):
        h = F.gelu(F.conv2d(h, p[f"ana.down{l}.w"], p[f"ana.down{l}.b"], stride=2, padding=1))
        downs.append(h)
    outs = [None] * cfg.levels
    t = downs[-1]
    outs[-1] = t
    for l in range(cfg.levels - 2, -1, -1):
        up = F.interpolate(t, scale_factor=2, mode="nearest")
        t = F.gelu(F.conv2d(torch.cat([downs[l], up], 1), p[f"ana.up{l}.w"], p[f"ana.up{l}.b"], padding=1))
        outs[l] = t
    w, b = p["ana.out.w"], p["ana.out.b"]
    return [F.conv2d(outs[l], w[l : l + 1], b[l : l + 1]) for l in range(cfg.levels)]


# ---------------------------------------------------------------- synthesis (decoder side)

def upsample_all(cfg: GridConfig, latents: list[torch.Tensor]) -> torch.Tensor:
    """Bilinear upsampling of every grid to full resolution, concatenated: (B, levels, H, W)."""
    s0 = cfg.scale(0)
    full = (latents[0].shape[2] * s0, latents[0].shape[3] * s0)
    ups = [z if z.shape[2:] == full else F.interpolate(z, size=full, mode="bilinear", align_corners=False)
           for z in latents]
    return torch.cat(ups, 1)




def synthesis(cfg: GridConfig, p: dict[str, torch.Tensor], latents: list[torch.Tensor]) -> torch.Tensor:
    """Latents -> RGB (B,3,H,W), roughly in [0,1] (the caller clamps)."""
    up = upsample_all(cfg, latents)
    bsz, _, hh, ww = up.shape
    h = up.flatten(2).transpose(1, 2)  # (B, HW, levels)
    n = len(cfg.hidden) + 1
    for i in range(n):
        h = _lin(h, p[f"syn.w{i}"], p[f"syn.b{i}"])
        if i < n - 1:
            h = F.relu(h)
    h = h.transpose(1, 2).reshape(bsz, 3, hh, ww)
    if cfg.conv3:
        h = h + _conv(F.pad(h, (1, 1, 1, 1), mode="replicate"), p["syn.cw"], p["syn.cb"])
    return h + 0.5


# ---------------------------------------------------------------- entropy model of the latents

def checkerboard(h: int, w: int) -> torch.Tensor:
    """1 on the anchors (decoded first), 0 on the others."""
    return ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == 0).float()


def _ctx_head(p: dict[str, torch.Tensor], level: int, h0: torch.Tensor, keep: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """First-layer pre-activations (B, C, h, w) -> (mean, log-scale) at the positions `keep` (all if None)."""
    bsz = h0.shape[0]
    h = h0.flatten(2).transpose(1, 2)  # (B, n, C)
    if keep is not None:
        h = h[:, keep.reshape(-1)]
    h = F.gelu(_lin(F.gelu(h), p["ctx.w1"], p["ctx.b1"]))
    o = _lin(h, p["ctx.w2"], p["ctx.b2"])
    lvl = p["ctx.lvl"]
    o = o + (lvl[level] if lvl.dim() == 2 else lvl[:, level][:, None, :])
    lo, hi = math.log(SCALE_MIN), math.log(SCALE_MAX)
    if keep is None:
        o = o.transpose(1, 2).reshape(bsz, 2, *h0.shape[2:])
        return o[:, :1], o[:, 1:].clamp(lo, hi)
    return o[..., 0], o[..., 1].clamp(lo, hi)


def context_pass(cfg: GridConfig, p: dict[str, torch.Tensor], level: int, coarse_up: torch.Tensor,
                 neighbours: torch.Tensor, lam_feat: torch.Tensor, keep: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, log-scale) of one grid from the decoded context: the decoder's exact computation.

    keep: a boolean (h, w) mask of the positions wanted; the results are then (B, n).
    """
    lf = lam_feat[:, None, None, None].expand(-1, 1, *coarse_up.shape[2:])
    h0 = _conv(torch.cat([coarse_up, neighbours, lf], 1), p["ctx.w0"], p["ctx.b0"], padding=1)
    return _ctx_head(p, level, h0, keep)


def coarse_context(latents: list[torch.Tensor], level: int) -> torch.Tensor:
    """The next-coarser grid brought to this grid's size (zeros for the coarsest)."""
    if level + 1 >= len(latents):
        return torch.zeros_like(latents[level])
    return F.interpolate(latents[level + 1], scale_factor=2, mode="nearest")


def latent_params(cfg: GridConfig, p: dict[str, torch.Tensor], latents: list[torch.Tensor], level: int,
                  lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, log-scale, anchor mask) of one grid, both checkerboard passes at once (training, encoding).

    The first layer is linear in its inputs, so the neighbours' contribution is a
    separate 3x3 convolution added only where the second pass applies; the later
    layers act per position, so one evaluation serves both passes. Mathematically
    the decoder's two passes (``context_pass``), which the final coding uses.
    """
    z = latents[level]
    coarse = coarse_context(latents, level)
    mask = checkerboard(*z.shape[2:]).to(z)
    w0, b0 = p["ctx.w0"], p["ctx.b0"]
    lf = lambda_feature(lam)[:, None, None, None].expand(-1, 1, *z.shape[2:])
    w_cl, w_n = (w0[:, [0, 2]], w0[:, 1:2]) if w0.dim() == 4 else (w0[:, :, [0, 2]], w0[:, :, 1:2])
    h0 = _conv(torch.cat([coarse, lf], 1), w_cl, b0, padding=1) + (1 - mask) * _conv(
        z * mask, w_n, torch.zeros_like(b0), padding=1)
    mu, ls = _ctx_head(p, level, h0)
    return mu, ls, mask




def rate_bits(cfg: GridConfig, p: dict[str, torch.Tensor], latents: list[torch.Tensor], lam: torch.Tensor,
              step: torch.Tensor) -> torch.Tensor:
    """Estimated bits of all latents (quantised with `step`, (B,)), per batch element (B,)."""
    total = 0
    s = step.reshape(-1, 1, 1, 1)
    for l in range(cfg.levels):
        mu, ls, _ = latent_params(cfg, p, latents, l, lam)
        total = total + laplace_bits(latents[l] / s, mu / s, ls - s.log()).sum(dim=(1, 2, 3))
    return total


def snap_params(mu: np.ndarray, log_scale: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale as the coder uses them, in units of the quantisation step (float64 grids)."""
    m = np.round(np.asarray(mu, np.float64) / MEAN_GRID) * MEAN_GRID
    lo, hi = math.log(SCALE_MIN), math.log(SCALE_MAX)
    i = np.clip(np.round((np.asarray(log_scale, np.float64) - lo) / (hi - lo) * (N_SCALES - 1)), 0, N_SCALES - 1)
    s = np.exp(lo + i * (hi - lo) / (N_SCALES - 1))
    return m / step, s / step
