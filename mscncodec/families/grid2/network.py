"""The latent-grid family, v2 (``--arch grid2``): a C3 / Cool-chic-class decoder with a meta-learned start.

Why a second version: the first grid decoder (``grid.py``) had no full-resolution
grid (it topped out near 31 dB unquantised), fixed bilinear upsampling and a
4-neighbour checkerboard context, so it could not reach JPEG 2000 whatever the
encoder did. This one has the shape of the published overfitted codecs:

* ``levels`` (7) one-channel latent grids from **full resolution** down to 1/64;
* **learned upsampling**: each 2x step is a separable 4-tap transposed filter per
  stage, initialised bilinear;
* **synthesis**: per-pixel 1x1 layers (ReLU), then two residual 3x3 convolutions
  on RGB;
* an **auto-regressive context model** (ARM) per latent over 16 causal neighbours
  of the same grid plus the 3x3 neighbourhood of the co-located latent of the
  already-decoded coarser grid, predicting a Laplace mean and scale.

The ARM is decoded in *wavefronts*: every neighbour (dy, dx) has dy < 0 and
dx <= 2, or dy == 0 and dx < 0, so all latents with equal ``x + 3*y`` are
independent given the earlier waves and are decoded by one batched evaluation.
The encoder evaluates every latent at once; to make both ends derive *identical*
probabilities whatever the summation order, the coding-time ARM runs in exact
integer arithmetic (``arm_fixed``): weights are rounded to ``2**-W_BITS``,
activations to ``2**-A_BITS``, every sum is an integer below 2**53 carried in
float64 (so BLAS gives the exact result in any order), ReLU and floor shifts are
exact. Training and refinement use the float twin (``arm_float``), which differs
only by those roundings.

Latents are coded in *symbol units*: integer symbols times a global step tied to
lambda (``coding.latents.step_for``), so one model covers every rate. All weights live in
flat ``dict[str, Tensor]``s, as in ``grid.py``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mscncodec.coding.latents import lambda_feature, laplace_bits

SYMBOL_RANGE = 255
SCALE_MIN, SCALE_MAX, N_SCALES = 0.02, 64.0, 256  # Laplace scales in symbol units, log-spaced table
MEAN_BITS = 4  # means are coded on a 1/16 grid
W_BITS, A_BITS = 8, 8  # fixed point of the coding-time ARM: weights 2**-8, activations 2**-8
W_MAX, A_MAX = 2**15, 2**24  # clamps that keep every integer sum below 2**53 (exact in float64)
WAVE_K = 3  # wavefront slope: a wave is x + WAVE_K * y = t

# causal neighbours (dy, dx) of a latent in its own grid: 16 of them
NEIGHBOURS: tuple[tuple[int, int], ...] = (
    (0, -3), (0, -2), (0, -1),
    *((-1, dx) for dx in range(-2, 3)),
    *((-2, dx) for dx in range(-2, 3)),
    *((-3, dx) for dx in range(-1, 2)),
)
COARSE: tuple[tuple[int, int], ...] = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
PAD_T, PAD_L, PAD_R = 3, 3, 2  # zero padding that holds every neighbour offset
assert all(dy < 0 and dx <= WAVE_K - 1 or dy == 0 and dx < 0 for dy, dx in NEIGHBOURS)


@dataclass(frozen=True)
class Grid2Config:
    levels: int = 7  # grids at 1/1 ... 1/2**(levels-1)
    hidden: tuple[int, ...] = (20, 20)  # synthesis 1x1 widths
    arm_hidden: int = 20  # ARM widths (two hidden layers)
    analysis: int = 32  # analysis channels (encoder only)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Grid2Config":
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", (20, 20)))
        return cls(**d)

    @property
    def align(self) -> int:
        return 2 ** (self.levels - 1)

    @property
    def n_inputs(self) -> int:
        return len(NEIGHBOURS) + len(COARSE) + 1

    def decoder_shapes(self) -> dict[str, tuple[int, ...]]:
        """Everything the decoder needs: upsampling, synthesis, ARM (what a file may update)."""
        s: dict[str, tuple[int, ...]] = {"up.k": (self.levels - 1, 4)}
        dims = [self.levels, *self.hidden, 3]
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            s[f"syn.w{i}"], s[f"syn.b{i}"] = (b, a, 1, 1), (b,)
        for j in (1, 2):
            s[f"syn.c{j}w"], s[f"syn.c{j}b"] = (3, 3, 3, 3), (3,)
        h = self.arm_hidden
        s.update({"arm.wn": (h, len(NEIGHBOURS)), "arm.wc": (h, len(COARSE)), "arm.wl": (h,),
                  "arm.b0": (self.levels, h), "arm.w1": (h, h), "arm.b1": (h,), "arm.w2": (2, h), "arm.b2": (2,)})
        return s

    # the grid family's name for the same thing (the shared update coder asks for it)
    update_shapes = decoder_shapes

    def analysis_shapes(self) -> dict[str, tuple[int, ...]]:
        """Encoder-only U-Net. It works from 1/2 resolution up (space-to-depth input, depth-to-space for the
        full-resolution grid): full-resolution convolutions cost most of a training step."""
        c, s = self.analysis, {}
        s["ana.in.w"], s["ana.in.b"] = (c, 13, 3, 3), (c,)
        for l in range(2, self.levels):
            s[f"ana.d{l}.w"], s[f"ana.d{l}.b"] = (c, c, 3, 3), (c,)
        for l in range(1, self.levels - 1):
            s[f"ana.u{l}.w"], s[f"ana.u{l}.b"] = (c, 2 * c, 3, 3), (c,)
        for l in range(1, self.levels):
            s[f"ana.o{l}.w"], s[f"ana.o{l}.b"] = (1, c, 1, 1), (1,)
        s["ana.o0.w"], s["ana.o0.b"] = (4, c, 3, 3), (4,)
        return s

    def macs_per_pixel(self) -> float:
        """Decoder multiply-adds per image pixel: ARM per latent, upsampling, synthesis."""
        dims = [self.levels, *self.hidden, 3]
        syn = sum(a * b for a, b in zip(dims[:-1], dims[1:])) + 2 * 81
        h = self.arm_hidden
        arm = (self.n_inputs * h + h * h + 2 * h) * sum(4.0**-l for l in range(self.levels))
        # a separable 2x step costs 2 + 2 taps per output value; grid l goes through l steps
        up = sum(4 * sum(4.0**-s for s in range(l)) for l in range(1, self.levels))
        return syn + arm + up


def init_params(cfg: Grid2Config, seed: int = 0, analysis: bool = True) -> dict[str, torch.Tensor]:
    """Seeded init (numpy generator, so both ends can rebuild it): +-1/sqrt(fan_in) weights, zero biases
    except the synthesis' first bias (keeps ReLU/GELU units alive on zero latents); bilinear upsampling;
    residual convolutions near zero; the ARM starts at mean 0, scale ~0.5."""
    rng = np.random.default_rng(seed)
    shapes = {**cfg.decoder_shapes(), **(cfg.analysis_shapes() if analysis else {})}
    out: dict[str, torch.Tensor] = {}
    fan = {"arm.wn": cfg.n_inputs, "arm.wc": cfg.n_inputs, "arm.wl": cfg.n_inputs}
    for k, s in shapes.items():
        if k == "up.k":
            v = np.tile(np.array([0.25, 0.75, 0.75, 0.25], np.float32), (s[0], 1))
        elif (last := k.split(".")[-1]) == "b" or last.startswith("b") or last.endswith("b"):
            v = np.zeros(s, np.float32)
            if k == "syn.b0":
                v = rng.uniform(-1, 1, size=s).astype(np.float32)
            if k == "arm.b2":
                v = np.array([0.0, math.log(0.5)], np.float32)
        else:
            fan_in = fan.get(k, int(np.prod(s[1:])) if len(s) > 1 else 1)
            bound = 1.0 / math.sqrt(fan_in)
            v = rng.uniform(-bound, bound, size=s).astype(np.float32)
            if k.startswith("syn.c"):
                v = v * 0.1
            if k == "arm.w2":
                v = v * 0.1
        out[k] = torch.from_numpy(np.ascontiguousarray(v))
    return out


# ---------------------------------------------------------------- analysis (encoder side)

def analysis(cfg: Grid2Config, p: dict[str, torch.Tensor], x: torch.Tensor, lam: torch.Tensor) -> list[torch.Tensor]:
    """Image (B,3,H,W) in [0,1] (H, W multiples of align) and lambda (B,) -> latent values
    [(B,1,H/2**l,W/2**l)], finest first (the caller divides by the step). Strided 3x3 convolutions
    down to the coarsest grid, then a top-down path so each level knows what the coarser ones carry."""
    u = F.pixel_unshuffle(x - 0.5, 2)
    feat = lambda_feature(lam)[:, None, None, None].expand(-1, 1, *u.shape[2:])
    h = F.gelu(F.conv2d(torch.cat([u, feat], 1), p["ana.in.w"], p["ana.in.b"], padding=1))
    downs = {1: h}
    for l in range(2, cfg.levels):
        h = F.gelu(F.conv2d(h, p[f"ana.d{l}.w"], p[f"ana.d{l}.b"], stride=2, padding=1))
        downs[l] = h
    outs: list[torch.Tensor] = [None] * cfg.levels  # type: ignore[list-item]
    t = downs[cfg.levels - 1]
    outs[-1] = F.conv2d(t, p[f"ana.o{cfg.levels - 1}.w"], p[f"ana.o{cfg.levels - 1}.b"])
    for l in range(cfg.levels - 2, 0, -1):
        up = F.interpolate(t, scale_factor=2, mode="nearest")
        t = F.gelu(F.conv2d(torch.cat([downs[l], up], 1), p[f"ana.u{l}.w"], p[f"ana.u{l}.b"], padding=1))
        outs[l] = F.conv2d(t, p[f"ana.o{l}.w"], p[f"ana.o{l}.b"])
    outs[0] = F.pixel_shuffle(F.conv2d(t, p["ana.o0.w"], p["ana.o0.b"], padding=1), 2)
    return outs


# ---------------------------------------------------------------- synthesis (decoder side)

def _up2_along(x: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    """2x along axis `dim` (2: rows, 3: columns) of (B, C, h, w): the 4-tap transposed filter k (stride 2, edges
    replicated) written as its two polyphase halves, even = k1 x[j] + k3 x[j-1], odd = k2 x[j] + k0 x[j+1]:
    elementwise, so several times faster on the CPU than conv_transpose2d with one group per channel. Along
    the rows the halves interleave whole rows, so neither pass needs a transpose."""
    n = x.shape[dim]
    xp = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)], dim)
    mid = xp.narrow(dim, 1, n)
    even = k[1] * mid + k[3] * xp.narrow(dim, 0, n)
    odd = k[2] * mid + k[0] * xp.narrow(dim, 2, n)
    return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)


def up2(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """2x upsampling of every channel (B, C, h, w) with the separable 4-tap transposed filter k (bilinear
    at init); edges replicated."""
    return _up2_along(_up2_along(x, k, 3), k, 2)


def upsample_all(cfg: Grid2Config, p: dict[str, torch.Tensor], latents: list[torch.Tensor]) -> torch.Tensor:
    """Latent values (finest first) -> (B, levels, H, W): coarsest first, each stage upsamples all the
    coarser channels together with its own learned filter and appends the grid of that resolution."""
    u = latents[-1]
    for l in range(cfg.levels - 2, -1, -1):
        u = torch.cat([latents[l], up2(u, p["up.k"][l])], 1)
    return u


def linear_cf(w: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A 1x1 layer in the channels-first layout the grids already have: weights (O, I) or (O, I, 1, 1),
    features (B, I, N), bias (O,), (1, O) or per sample (B, O) -> (B, O, N). One (O, I) x (I, N) product per sample,
    no transposes: forward and backward ~2x faster on the CPU than the channel-last product over a Kodak frame
    (and far faster than conv2d's backward)."""
    w = w.reshape(w.shape[0], -1)
    if x.shape[0] == 1:
        # a view, not x[0]: a select's backward would zero-fill and copy a frame-sized gradient
        return torch.addmm(b.reshape(-1, 1), w, x.view(x.shape[1:]))[None]
    return torch.baddbmm(b.reshape(-1, w.shape[0], 1), w.expand(x.shape[0], *w.shape), x)


class _Conv3x3Replicate(torch.autograd.Function):
    """3x3 convolution with replicated edges on (B, C, H, W), as one (O, 9C) x (9C, HW) product over the
    nine shifted copies. Why: on the CPU, mkldnn's backward for three channels cost ~4x its forward on a Kodak
    frame; this one is two small products and nine in-place slice additions (forward values identical)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        bsz, c, hh, ww = x.shape
        xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
        cols = x.new_empty(bsz, 9, c, hh, ww)
        for i in range(9):
            cols[:, i] = xp[:, :, i // 3 : i // 3 + hh, i % 3 : i % 3 + ww]
        cols = cols.view(bsz, 9 * c, hh * ww)
        wm = w.permute(0, 2, 3, 1).reshape(w.shape[0], 9 * c)  # column (dy, dx, channel), as cols' rows
        ctx.save_for_backward(cols, wm)
        ctx.dims = (c, hh, ww)
        return linear_cf(wm, cols, b).view(bsz, -1, hh, ww)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cols, wm = ctx.saved_tensors
        c, hh, ww = ctx.dims
        bsz = g.shape[0]
        g = g.reshape(bsz, -1, hh * ww)
        gw = torch.matmul(g, cols.transpose(1, 2)).sum(0).view(-1, 3, 3, c).permute(0, 3, 1, 2)
        gb = g.sum((0, 2))
        gc = torch.matmul(wm.t(), g).view(bsz, 9, c, hh, ww)
        gp = g.new_zeros(bsz, c, hh + 2, ww + 2)
        for i in range(9):
            gp[:, :, i // 3 : i // 3 + hh, i % 3 : i % 3 + ww] += gc[:, i]
        # the replicated border's gradient goes to the edge it copies (rows first, then columns: corners too)
        gp[:, :, 1] += gp[:, :, 0]
        gp[:, :, hh] += gp[:, :, hh + 1]
        gp[:, :, :, 1] += gp[:, :, :, 0]
        gp[:, :, :, ww] += gp[:, :, :, ww + 1]
        return gp[:, :, 1 : hh + 1, 1 : ww + 1], gw, gb


def conv3x3_replicate(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w, b), with a cheaper backward."""
    return _Conv3x3Replicate.apply(x, w, b)


def synthesis(cfg: Grid2Config, p: dict[str, torch.Tensor], latents: list[torch.Tensor]) -> torch.Tensor:
    """Dequantised latents -> RGB (B,3,H,W), roughly in [0, 1] (the caller clamps)."""
    up = upsample_all(cfg, p, latents)
    bsz, _, hh, ww = up.shape
    h = up.reshape(bsz, up.shape[1], hh * ww)
    n = len(cfg.hidden) + 1
    for i in range(n):
        h = linear_cf(p[f"syn.w{i}"], h, p[f"syn.b{i}"])
        if i < n - 1:
            h = F.relu(h)
    h = h.view(bsz, 3, hh, ww)
    h = h + conv3x3_replicate(h, p["syn.c1w"], p["syn.c1b"])
    h = h + conv3x3_replicate(F.relu(h), p["syn.c2w"], p["syn.c2b"])
    return h + 0.5


# ---------------------------------------------------------------- the ARM, float (training, refinement)

class _ContextColumns(torch.autograd.Function):
    """The ARM's inputs of every latent of one grid as columns (B, K, h*w): its 16 causal neighbours
    (NEIGHBOURS), then, given the coarser grid, the 3x3 neighbourhood of its co-located coarser latent
    (COARSE); zeros outside. Why a Function: written as a masked convolution with one input channel, the
    backward pass (mkldnn) cost ~3x the forward on a Kodak frame; here it is K in-place slice additions."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, coarse: torch.Tensor | None) -> torch.Tensor:
        bsz, _, h, w = z.shape
        k = len(NEIGHBOURS) + (len(COARSE) if coarse is not None else 0)
        out = z.new_empty(bsz, k, h, w)
        zp = F.pad(z[:, 0], (PAD_L, PAD_R, PAD_T, 0))
        for i, (dy, dx) in enumerate(NEIGHBOURS):
            out[:, i] = zp[:, PAD_T + dy : PAD_T + dy + h, PAD_L + dx : PAD_L + dx + w]
        if coarse is not None:
            # the coarser grid repeated 2x2: fine latent (y, x) sees coarse (y//2 + dy, x//2 + dx) at (y + 2dy, x + 2dx)
            cu = F.pad(coarse[:, 0].repeat_interleave(2, 1).repeat_interleave(2, 2), (2, 2, 2, 2))
            for j, (dy, dx) in enumerate(COARSE):
                out[:, len(NEIGHBOURS) + j] = cu[:, 2 + 2 * dy : 2 + 2 * dy + h, 2 + 2 * dx : 2 + 2 * dx + w]
        ctx.dims = (bsz, h, w, None if coarse is None else tuple(coarse.shape[2:]))
        return out.view(bsz, k, h * w)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        bsz, h, w, cshape = ctx.dims
        g = g.view(bsz, -1, h, w)
        gz = gc = None
        if ctx.needs_input_grad[0]:
            gp = g.new_zeros(bsz, h + PAD_T, w + PAD_L + PAD_R)
            for i, (dy, dx) in enumerate(NEIGHBOURS):
                gp[:, PAD_T + dy : PAD_T + dy + h, PAD_L + dx : PAD_L + dx + w] += g[:, i]
            gz = gp[:, PAD_T:, PAD_L : PAD_L + w][:, None]
        if cshape is not None and ctx.needs_input_grad[1]:
            hc, wc = cshape
            gu = g.new_zeros(bsz, 2 * hc + 4, 2 * wc + 4)
            for j, (dy, dx) in enumerate(COARSE):
                gu[:, 2 + 2 * dy : 2 + 2 * dy + h, 2 + 2 * dx : 2 + 2 * dx + w] += g[:, len(NEIGHBOURS) + j]
            gc = gu[:, 2 : 2 + 2 * hc, 2 : 2 + 2 * wc].reshape(bsz, hc, 2, wc, 2).sum((2, 4))[:, None]
        return gz, gc


def context_columns(z: torch.Tensor, coarse: torch.Tensor | None) -> torch.Tensor:
    """(B, 1, h, w) grid and its coarser grid (B, 1, ceil(h/2), ceil(w/2)) or None -> (B, 16 [+ 9], h*w)."""
    return _ContextColumns.apply(z, coarse)


def arm_float(cfg: Grid2Config, p: dict[str, torch.Tensor], ctx: list[torch.Tensor], level: int,
              lam: torch.Tensor, grad_through_clamp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, log-scale) in symbol units of every latent of one grid, from the context symbols `ctx`
    (finest first, (B,1,h,w)); the float twin of ``arm_fixed``, channels first throughout.

    `grad_through_clamp` (training): the scale's clamp passes its gradient on; the forward value is the
    same either way. A plain clamp gives no gradient to a scale below SCALE_MIN: the shipped grid2-l7's 1/16
    and 1/32 grids sit at raw log-scales of -4 to -6 (the floor is -3.9) at every lambda, so a non-zero
    latent there costs ~30 bits and the analysis leaves them empty (benchmarks/grid2_levels.py). Passing
    the gradient did not bring them back, in a fine-tune or from scratch (README, "Two of the seven grids
    are empty"): the flag is kept for the next try, not as a fix."""
    z = ctx[level]
    coarse = ctx[level + 1] if level + 1 < cfg.levels else None
    cols = context_columns(z, coarse)
    w0 = p["arm.wn"] if coarse is None else torch.cat([p["arm.wn"], p["arm.wc"]], 1)
    bias = p["arm.wl"][None, :] * lambda_feature(lam)[:, None] + p["arm.b0"][level][None]  # (B, H)
    h = F.relu(linear_cf(w0, cols, bias))
    h = F.relu(linear_cf(p["arm.w1"], h, p["arm.b1"]))
    # split, not two slices: the slices' backward would zero-fill a frame-sized gradient each
    mu, ls = linear_cf(p["arm.w2"], h, p["arm.b2"]).view(z.shape[0], 2, *z.shape[2:]).split(1, 1)
    clamp = _ClampPassingGradient.apply if grad_through_clamp else torch.clamp
    return mu, clamp(ls, math.log(SCALE_MIN), math.log(SCALE_MAX))


class _ClampPassingGradient(torch.autograd.Function):
    """clamp forward (bit for bit), identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return g, None, None


def rate_bits(cfg: Grid2Config, p: dict[str, torch.Tensor], values: list[torch.Tensor], ctx: list[torch.Tensor],
              lam: torch.Tensor, grad_through_clamp: bool = False) -> torch.Tensor:
    """Estimated bits (B,) of the latents `values` (symbol units, possibly noisy) given context `ctx`."""
    total = 0
    for l in range(cfg.levels):
        mu, ls = arm_float(cfg, p, ctx, l, lam, grad_through_clamp)
        total = total + laplace_bits(values[l], mu, ls).sum(dim=(1, 2, 3))
    return total


# ---------------------------------------------------------------- the ARM, exact (coding)

@dataclass(frozen=True)
class FixedArm:
    """Integer weights of the coding-time ARM, held as float64 (exact: every value is an integer)."""

    wn: np.ndarray  # (16, H)   neighbour weights, scale 2**(W_BITS + A_BITS) (symbols enter as integers)
    wc: np.ndarray  # (9, H)    coarse weights, scale 2**W_BITS
    wl: np.ndarray  # (H,)
    b0: np.ndarray  # (levels, H) scale 2**(W_BITS + A_BITS)
    w1: np.ndarray  # (H, H)
    b1: np.ndarray
    w2: np.ndarray  # (H, 2)
    b2: np.ndarray

    @classmethod
    def from_params(cls, p: dict[str, torch.Tensor]) -> "FixedArm":
        def w(t: torch.Tensor) -> np.ndarray:
            return np.clip(np.round(t.detach().double().numpy() * 2.0**W_BITS), -W_MAX, W_MAX)

        def b(t: torch.Tensor) -> np.ndarray:
            return np.clip(np.round(t.detach().double().numpy() * 2.0 ** (W_BITS + A_BITS)), -A_MAX * 2.0**W_BITS,
                           A_MAX * 2.0**W_BITS)

        return cls(w(p["arm.wn"]).T * 2.0**A_BITS, w(p["arm.wc"]).T.copy(), w(p["arm.wl"]), b(p["arm.b0"]),
                   w(p["arm.w1"]).T.copy(), b(p["arm.b1"]), w(p["arm.w2"]).T.copy(), b(p["arm.b2"]))

    def bias(self, level: int, lam_q: float) -> np.ndarray:
        """The first layer's constant part for one grid: level bias + lambda term (H,), integers."""
        return self.wl * lam_q + self.b0[level]


def lambda_fixed(lam: float) -> float:
    """The lambda feature as the fixed-point ARM sees it (a multiple of 2**-A_BITS)."""
    return float(np.round(float(lambda_feature(torch.tensor(float(lam), dtype=torch.float64))) * 2.0**A_BITS))


BULK = 4096  # from this many latents on, the head runs in torch (in place); below, numpy has less overhead
_MEAN_MAX = SYMBOL_RANGE * 2**MEAN_BITS
_LS_LO = math.log(SCALE_MIN)
_LS_K = (N_SCALES - 1) / (math.log(SCALE_MAX) - math.log(SCALE_MIN))
_OUT_MUL = np.array([2.0 ** (MEAN_BITS - W_BITS - A_BITS), 2.0 ** -(W_BITS + A_BITS)])
_OUT_SUB, _OUT_K = np.array([0.0, _LS_LO]), np.array([1.0, _LS_K])
_OUT_LO, _OUT_HI = np.array([-_MEAN_MAX, 0.0]), np.array([_MEAN_MAX, N_SCALES - 1])


def arm_fixed(arm: FixedArm, level: int, neigh: np.ndarray, coarse_term: np.ndarray, lam_q: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """Exact ARM on N latents: neigh (N, 16) integer symbols in [-R, R], coarse_term (N, H) the integer
    first-layer term of the coarser grid (``coarse_fixed``), lam_q from ``lambda_fixed``
    -> (mean index on the 1/16 grid, scale index), both int64 (N,)."""
    m, s = arm_head(arm, neigh, coarse_term + arm.bias(level, lam_q))
    return m.astype(np.int64), s.astype(np.int64)


def arm_head(arm: FixedArm, neigh: np.ndarray, pre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ARM after its constant first-layer part `pre` (coarse term + bias): (mean index, scale index)
    as float64 integers.

    Every value is an integer below 2**53 held in float64, so the matrix products are exact whatever
    order BLAS sums in; ReLU, the power-of-two scalings, floor and the clamps are exact too, and both
    implementations (numpy for the decoder's small waves, torch in place for the encoder's one pass)
    apply the same IEEE operations in the same order: they give identical results."""
    if len(neigh) >= BULK:
        return _head_torch(arm, neigh, pre)
    z = np.asarray(neigh, np.float64) @ arm.wn
    z += pre
    h = _np_shift(z)
    z = h @ arm.w1
    z += arm.b1
    h = _np_shift(z)
    o = h @ arm.w2
    o += arm.b2
    # both outputs in one pass over (N, 2), column by column the same IEEE operations as _head_torch
    # (multiplying by 1 and subtracting 0 are exact), so that per-wave calls stay few
    o *= _OUT_MUL
    o -= _OUT_SUB
    o *= _OUT_K
    o += 0.5
    np.floor(o, out=o)
    np.minimum(np.maximum(o, _OUT_LO, out=o), _OUT_HI, out=o)
    return o[:, 0], o[:, 1]


def _np_shift(z: np.ndarray) -> np.ndarray:
    """ReLU, then back from scale 2**(W+A) to 2**A by an exact floor shift, clamped (in place). Scaling by a
    power of two and flooring commute exactly with the ReLU (floor(0) = 0), so the clamps come last."""
    z *= 2.0**-W_BITS
    np.floor(z, out=z)
    np.maximum(z, 0.0, out=z)
    return np.minimum(z, A_MAX, out=z)


def _t_shift(z: torch.Tensor) -> torch.Tensor:
    return z.clamp_(min=0.0).mul_(2.0**-W_BITS).floor_().clamp_(max=A_MAX)


def _head_torch(arm: FixedArm, neigh: np.ndarray, pre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.from_numpy
    z = (t(np.asarray(neigh, np.float64)) @ t(arm.wn)).add_(t(np.asarray(pre, np.float64)))
    h = _t_shift(z)
    h = _t_shift((h @ t(arm.w1)).add_(t(arm.b1)))
    o = (h @ t(arm.w2)).add_(t(arm.b2))
    mean_i = o[:, 0].mul_(2.0 ** (MEAN_BITS - W_BITS - A_BITS)).add_(0.5).floor_().clamp_(-_MEAN_MAX, _MEAN_MAX)
    scale_i = o[:, 1].mul_(2.0 ** -(W_BITS + A_BITS)).sub_(_LS_LO).mul_(_LS_K).add_(0.5).floor_().clamp_(0, N_SCALES - 1)
    return mean_i.numpy(), scale_i.numpy()


def coarse_padded(coarse: np.ndarray) -> np.ndarray:
    """The coarser grid's symbols, clamped, at activation scale 2**A_BITS, with a zero border of one."""
    return np.pad(np.clip(coarse, -SYMBOL_RANGE, SYMBOL_RANGE).astype(np.float64) * 2.0**A_BITS, 1)


def coarse_table(arm: FixedArm, coarse: np.ndarray) -> np.ndarray:
    """Integer first-layer term (ch*cw, H) of each latent of the coarser grid: what the (up to four) finer
    latents above it share."""
    ch, cw = coarse.shape
    cp = coarse_padded(coarse)
    cols = np.stack([cp[1 + dy : 1 + dy + ch, 1 + dx : 1 + dx + cw].reshape(-1) for dy, dx in COARSE], 1)
    return cols @ arm.wc


def coarse_fixed(arm: FixedArm, coarse: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Integer first-layer term (h*w, H) from the coarser grid's symbols (None for the coarsest grid)."""
    h, w = shape
    if coarse is None:
        return np.zeros((h * w, arm.wc.shape[1]))
    per = coarse_table(arm, coarse).reshape(*coarse.shape, -1)
    return per.repeat(2, 0).repeat(2, 1)[:h, :w].reshape(h * w, -1)


_SCALES = np.round(np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), N_SCALES)) * 2.0**24) / 2.0**24


def coder_params(mean_i: np.ndarray, scale_i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) float64 arrays for constriction from the exact indices (dyadic tables: the same
    floats on every machine)."""
    return mean_i * 2.0**-MEAN_BITS, _SCALES[scale_i.astype(np.intp)]


def wave_order(h: int, w: int) -> list[np.ndarray]:
    """Flat indices (y*w + x) of each wave x + WAVE_K*y = t, t = 0, 1, ...; within a wave by y."""
    t = (np.arange(w)[None, :] + WAVE_K * np.arange(h)[:, None]).reshape(-1)
    order = np.argsort(t, kind="stable")
    bounds = np.searchsorted(t[order], np.arange(t.max() + 2))
    return [order[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]


def neighbour_offsets(w: int) -> np.ndarray:
    """Offsets of the neighbours in the flattened padded grid (row length w + PAD_L + PAD_R)."""
    wp = w + PAD_L + PAD_R
    return np.array([dy * wp + dx for dy, dx in NEIGHBOURS], np.int64)


def padded_index(idx: np.ndarray, w: int) -> np.ndarray:
    """Flat grid index -> index in the flattened padded grid."""
    wp = w + PAD_L + PAD_R
    return (idx // w + PAD_T) * wp + idx % w + PAD_L


def all_neighbours(sym: np.ndarray) -> np.ndarray:
    """(h*w, 16) neighbour symbols of every latent of a decoded grid (zeros outside): the encoder's
    one-pass view of what the decoder gathers wave by wave."""
    h, w = sym.shape
    zp = np.pad(sym.astype(np.float64), ((PAD_T, 0), (PAD_L, PAD_R)))
    pidx = padded_index(np.arange(h * w), w)
    return zp.reshape(-1)[pidx[:, None] + neighbour_offsets(w)[None, :]]
