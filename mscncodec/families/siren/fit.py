"""Fitting: the inner loop shared by meta-training and encoding.

One *group* (patch, shape, field) = one SIREN theta0 + delta_g. The inner loop is
Meta-SGD (Li et al. 2017): a few gradient steps on delta (and on the per-entry gate
logits) with meta-learned per-entry learning rates, the loss being distortion plus
an L0 penalty on the hard-concrete gates, so each group's update is sparse
*inside* the loop (MSCN, Schwarz & Teh 2022). Encoding runs exactly that loop from
the shipped model and then continues with Adam for a few more steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from mscncodec._runtime import progress_bar
from mscncodec.families.siren import network as siren
from mscncodec.families.siren.model import Model
from mscncodec.optim import Adam
from mscncodec.coding.sparsity import deterministic_gate, prob_open, sample_gate

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse_per_group(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).pow(2).mean(dim=tuple(range(1, pred.dim())))


def weighted_mse(weight: torch.Tensor) -> LossFn:
    """The squared error weighted per sample (weight broadcastable to the target, mean 1 per group:
    e.g. the area a point of a lat-lon grid stands for; 0 where a value is missing)."""
    return lambda pred, target: ((pred - target).pow(2) * weight).mean(dim=tuple(range(1, pred.dim())))


@dataclass
class FitState:
    """Per-group update and gate logits, both with a leading group axis."""

    delta: dict[str, torch.Tensor]
    log_alpha: dict[str, torch.Tensor]

    def effective(self, model: Model, stochastic: bool) -> dict[str, torch.Tensor]:
        """delta as the network sees it: gated (sampled or deterministic) or plain."""
        if not model.gated:
            return dict(self.delta)
        gate = sample_gate if stochastic else deterministic_gate
        return {k: gate(self.log_alpha[k]) * d for k, d in self.delta.items()}

    def expected_open(self, model: Model) -> torch.Tensor:
        """E[#open gates] per group, shape (G,)."""
        g = next(iter(self.delta.values())).shape[0]
        if not model.gated:
            return torch.zeros(g)
        return sum(prob_open(la).reshape(g, -1).sum(1) for la in self.log_alpha.values())


def initial_state(model: Model, n_groups: int, differentiable: bool = False, gate_shift: float = 0.0) -> FitState:
    """delta = 0; gate logits = the meta-learned ones (+ gate_shift, to aim at another rate)."""
    shapes = model.cfg.update_shapes()
    delta = {k: torch.zeros(n_groups, *s, requires_grad=True) for k, s in shapes.items()}
    if differentiable:  # keep the graph to the meta-learned logits
        la = {k: model.log_alpha[k].expand(n_groups, *s) + gate_shift for k, s in shapes.items()}
    else:
        la = {k: (model.log_alpha[k].detach() + gate_shift).expand(n_groups, *s).clone().requires_grad_(True)
              for k, s in shapes.items()}
    return FitState(delta, la)




def group_loss(
    model: Model, state: FitState, coords: torch.Tensor, target: torch.Tensor, lam: float,
    stochastic: bool = True, loss_fn: LossFn = mse_per_group,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(distortion + lam * E[open] / samples-per-group) per group, and the distortion alone."""
    g, n = target.shape[0], target.shape[1]
    pred = siren.forward(model.cfg, model.theta, state.effective(model, stochastic), coords, g)
    dist = loss_fn(pred, target)
    return dist + lam * state.expected_open(model) / n, dist


def inner_loop(
    model: Model,
    coords: torch.Tensor,
    target: torch.Tensor,
    *,
    steps: int | None = None,
    lam: float | None = None,
    create_graph: bool = False,
    state: FitState | None = None,
    gate_shift: float = 0.0,
    loss_fn: LossFn = mse_per_group,
) -> FitState:
    """Meta-SGD steps on every group at once. Differentiable through when create_graph."""
    steps = model.inner_steps if steps is None else steps
    lam = model.lam if lam is None else lam
    state = state or initial_state(model, target.shape[0], differentiable=create_graph, gate_shift=gate_shift)
    keys = list(state.delta)
    for _ in range(steps):
        loss, _ = group_loss(model, state, coords, target, lam, loss_fn=loss_fn)
        inputs = [state.delta[k] for k in keys] + ([state.log_alpha[k] for k in keys] if model.gated else [])
        grads = torch.autograd.grad(loss.sum(), inputs, create_graph=create_graph)
        new_d = {k: state.delta[k] - model.lr_delta[k] * g for k, g in zip(keys, grads[: len(keys)])}
        if model.gated:
            new_a = {k: state.log_alpha[k] - model.lr_alpha[k] * g for k, g in zip(keys, grads[len(keys):])}
        else:
            new_a = state.log_alpha
        if not create_graph:
            new_d = {k: v.detach().requires_grad_(True) for k, v in new_d.items()}
            new_a = {k: v.detach().requires_grad_(True) for k, v in new_a.items()}
        state = FitState(new_d, new_a)
    return state


def refine(
    model: Model,
    coords: torch.Tensor,
    target: torch.Tensor,
    state: FitState,
    *,
    steps: int,
    lam: float,
    lr: float = 1e-3,
    lr_alpha: float = 3e-2,
    progress: bool = False,
    desc: str = "fit",
    loss_fn: LossFn = mse_per_group,
) -> FitState:
    """Adam on (delta, gate logits) with the same loss as the inner loop."""
    if steps <= 0:
        return state
    params = [{"params": list(state.delta.values()), "lr": lr}]
    if model.gated:
        params.append({"params": list(state.log_alpha.values()), "lr": lr_alpha})
    opt = Adam(params)
    bar = progress_bar(range(steps), desc=desc, progress=progress, leave=False, unit="step")
    for _ in bar:
        opt.zero_grad()
        loss, dist = group_loss(model, state, coords, target, lam, loss_fn=loss_fn)
        loss.sum().backward()
        opt.step()
    return state


def fit(
    model: Model,
    coords: torch.Tensor,
    target: torch.Tensor,
    *,
    steps: int,
    lam: float,
    from_scratch: bool = False,
    gate_shift: float = 0.0,
    progress: bool = False,
    loss_fn: LossFn = mse_per_group,
    lr: float = 1e-3,
) -> FitState:
    """Encode-time fitting: the model's inner loop, then `steps` Adam steps.

    from_scratch skips the meta-learned inner loop (the COIN-style baseline uses a
    provisional model whose theta0 is a plain SIREN init).
    """
    state = None if from_scratch else inner_loop(model, coords, target, lam=lam, gate_shift=gate_shift, loss_fn=loss_fn)
    state = state or initial_state(model, target.shape[0], gate_shift=gate_shift)
    return refine(model, coords, target, state, steps=steps, lam=lam, progress=progress, loss_fn=loss_fn, lr=lr)
