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

import torch

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
