"""Hard-concrete (L0) gates, Louizos, Welling & Kingma (ICLR 2018).

Each entry of a file's update delta has a gate z in [0, 1]. During fitting the
gate is a stretched, clamped binary-concrete sample, so exact zeros happen with
non-zero probability and the expected number of open gates is differentiable in
the gate logits log_alpha. At encode time the deterministic gate decides which
entries are sent; its open probability, from the meta-learned initial logits, is
the prior the arithmetic coder uses for the mask.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mscncodec._lazy import torch  # the update coder reads only the gate constants

if TYPE_CHECKING:  # a type only: coding imports no model class
    from mscncodec.coding.update import UpdateModel

BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1
_L0_SHIFT = BETA * math.log(-GAMMA / ZETA)


def sample_gate(log_alpha: torch.Tensor) -> torch.Tensor:
    """A reparameterised hard-concrete sample (differentiable in log_alpha)."""
    u = torch.rand_like(log_alpha).clamp_(1e-6, 1.0 - 1e-6)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def deterministic_gate(log_alpha: torch.Tensor) -> torch.Tensor:
    """The test-time gate: exactly 0 for log_alpha below about -2.4, exactly 1 well above."""
    return (torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def prob_open(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z != 0): the expected-L0 contribution of each gate."""
    return torch.sigmoid(log_alpha - _L0_SHIFT)


def closed_threshold() -> float:
    """log_alpha at which the deterministic gate closes exactly."""
    return math.log(-GAMMA / ZETA)  # sigmoid(x)*(zeta-gamma)+gamma = 0


def gate_shift_for(model: UpdateModel, open_per_group: float, margin: float = 1.0) -> float:
    """A shift of all initial gate logits so at least open_per_group gates start open (deterministically).

    A model is meta-trained at one L0 weight, i.e. one natural rate, and its gate
    prior is sharp: a few entries far above the closing threshold, the rest far
    below. To aim at a higher rate the encoder lifts the prior until the
    open_per_group-th entry sits `margin` above the threshold, and lets fitting
    (distortion + L0) decide which of them stay open. Never shifts down.
    """
    if not model.gated:
        return 0.0
    la = torch.cat([v.detach().reshape(-1) for v in model.log_alpha.values()])
    k = int(min(max(open_per_group, 1), la.numel()))
    kth = float(torch.topk(la, k).values[-1])
    return max(0.0, closed_threshold() + margin - kth)
