"""The SIREN family's encoder, for any modality: fit (Meta-SGD inner loop from the shipped theta0,
then Adam), choose what to send, quantise, refine the sent entries, pack.

Rate control aims at the real file size. After fitting, every update entry has a
value and a *score* (its gate logit for gated models, its magnitude relative to
the layer's spread for provisional ones). For a relative quantisation step s the
encoder bisects a score threshold tau so the packed file is as large as possible
without exceeding the target, tries a few s and keeps the lowest distortion, then
runs quantisation-aware steps on the chosen entries and re-packs (raising tau
again if those steps made the file grow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mscncodec._runtime import progress_bar
from mscncodec.coding.quantize import MAX_SYMBOL, quantise, step_index, step_size, ste_round
from mscncodec.coding.sparsity import gate_shift_for
from mscncodec.coding.update import dequantise_all, pack_update
from mscncodec.container import bitstream
from mscncodec.families.siren import network as siren
from mscncodec.families.siren.fit import LossFn, fit, mse_per_group
from mscncodec.families.siren.model import Model
from mscncodec.optim import Adam


EFFORT = {  # fitting steps before the rate cut, relative quantisation steps tried, masked QAT steps after it
    "fast": (40, (0.5,), 40),
    "default": (100, (0.35, 0.7), 60),
    "max": (400, (0.25, 0.5, 1.0), 200),
}


_NEVER = -1e8  # score of an entry that must never be sent (closed gate)


_DENSE_LOG2_STEP = 8.0  # dense updates search relative steps in 2**[-8, 8]; the coarsest one is the floor


@dataclass
class _Trial:
    size: int
    symbols: dict[str, np.ndarray]
    steps: dict[str, int]
    sections: list[tuple[str, bytes]]


class _Packer:
    """Quantise + pack for a given (tau, s); the rate of a trial is the real stream length."""

    def __init__(self, model: Model, header: dict, values: dict[str, torch.Tensor], scores: dict[str, torch.Tensor],
                 base: dict[str, float]):
        self.model, self.header, self.values, self.scores, self.base = model, header, values, scores, base

    def steps_for(self, s: float) -> dict[str, int]:
        return {k: step_index(s * b) for k, b in self.base.items()}

    def trial(self, tau: float, s: float, values: dict[str, torch.Tensor] | None = None,
              steps: dict[str, int] | None = None) -> _Trial:
        """Before refinement (values=None) every selected entry is sent (at least +-1 step);
        after it, entries the refinement drove to zero are dropped."""
        min_one = values is None and self.model.sparsity != "dense"  # dense: the step size decides
        values = values or self.values
        steps = steps or self.steps_for(s)
        sym = {k: quantise(v, (self.scores[k] > tau).float(), steps[k], min_one=min_one)
               for k, v in values.items()}
        secs = pack_update(self.model, sym, steps)
        size = len(bitstream.pack(self.header, secs))
        return _Trial(size, sym, steps, secs)

    def fit_rate(self, target_bytes: int, s: float, values=None, steps=None, iters: int = 13) -> _Trial | None:
        """Largest trial with size <= target (bisection on tau); None if even 'nothing sent' is too big."""
        live = torch.cat([v[v > _NEVER].reshape(-1) for v in self.scores.values()])
        if live.numel() == 0:
            live = torch.zeros(1)
        lo, hi = float(live.min()) - 1.0, float(live.max()) + 1.0
        best = self.trial(hi, s, values, steps)
        if best.size > target_bytes:
            return None
        t = self.trial(lo, s, values, steps)
        if t.size <= target_bytes:
            return t
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            t = self.trial(mid, s, values, steps)
            if t.size <= target_bytes:
                hi, best = mid, t
            else:
                lo = mid
        return best


    def fit_rate_dense(self, target_bytes: int, iters: int = 14) -> _Trial | None:
        """Dense update (every entry sent unless it rounds to zero): bisect the step size instead."""
        lo, hi = -_DENSE_LOG2_STEP, _DENSE_LOG2_STEP  # log2 of the relative step
        # no finer than the step at which the largest value still fits the alphabet (with room for
        # refinement to grow it): a clipped symbol is a wrong value, not a coarse one
        need = max(float(v.abs().max()) / (self.base[k] * MAX_SYMBOL) for k, v in self.values.items())
        lo = min(max(lo, np.log2(max(need, 1e-30)) + 0.5), hi)
        best = self.trial(_NEVER, 2.0**hi)
        if best.size > target_bytes:
            return None
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            t = self.trial(_NEVER, 2.0**mid)
            if t.size <= target_bytes:
                hi, best = mid, t
            else:
                lo = mid
        return best


def _distortion(model: Model, coords, target, trial: _Trial, loss_fn: LossFn = mse_per_group) -> float:
    delta = dequantise_all(trial.symbols, trial.steps)
    with torch.no_grad():
        pred = siren.forward(model.cfg, model.theta, delta, coords, target.shape[0]).clamp(-1, 1)
    return float(loss_fn(pred, target).mean())


QAT_LR = 3e-3


def _qat(model: Model, coords, target, trial: _Trial, steps: int, lr: float | None = None,
         progress: bool = False, loss_fn: LossFn = mse_per_group) -> dict[str, torch.Tensor]:
    """Quantisation-aware steps on the sent entries only (mask fixed, rounding with a straight-through gradient)."""
    masks = {k: torch.from_numpy(s != 0).float() for k, s in trial.symbols.items()}
    vals = {k: v.clone().requires_grad_(True) for k, v in dequantise_all(trial.symbols, trial.steps).items()}
    if steps <= 0:
        return {k: v.detach() for k, v in vals.items()}
    opt = Adam([{"params": list(vals.values()), "lr": lr or QAT_LR}])
    for _ in progress_bar(range(steps), desc="refine sent entries", progress=progress, leave=False, unit="step"):
        opt.zero_grad()
        eff = {k: masks[k] * ste_round(v, step_size(trial.steps[k])) for k, v in vals.items()}
        pred = siren.forward(model.cfg, model.theta, eff, coords, target.shape[0])
        loss_fn(pred, target).sum().backward()
        opt.step()
    return {k: (v * masks[k]).detach() for k, v in vals.items()}


def fit_and_pack(m: Model, coords: torch.Tensor, target: torch.Tensor, header: dict, *, lam: float,
                 open_per_group: float, target_bytes: int | None, quality: int | None, effort: str,
                 steps: int | None, from_scratch: bool, progress: bool,
                 effort_table: dict[str, tuple[int, tuple[float, ...], int]] | None = None,
                 qat_lr: float | None = None, loss_fn: LossFn = mse_per_group,
                 fit_lr: float = 1e-3) -> tuple[_Trial | None, int]:
    """The SIREN family's encoder for any modality: fit (inner loop + Adam), choose what to send, quantise,
    refine the sent entries, pack. `target_bytes`: the largest stream at or under it (the rate is the real
    stream length, header included); else `quality` sets the quantisation step. Returns (final trial,
    0), or (None, smallest possible size) when the target cannot be reached. `effort_table`: the
    modality's (fitting steps, relative quantisation steps, refinement steps) per effort, default EFFORT;
    `qat_lr` the refinement's learning rate (default QAT_LR); `loss_fn` the distortion per group (default
    the plain MSE; fit.weighted_mse for a per-sample weight); `fit_lr` Adam's step on the update after the
    inner loop."""
    n_steps, rel_steps, qat_steps = (effort_table or EFFORT)[effort]
    if steps is not None:
        n_steps = steps
    shift = gate_shift_for(m, open_per_group)
    state = fit(m, coords, target, steps=n_steps, lam=lam, from_scratch=from_scratch, gate_shift=shift,
                progress=progress, loss_fn=loss_fn, lr=fit_lr)
    with torch.no_grad():
        values = {k: v.detach() for k, v in state.effective(m, stochastic=False).items()}
        if m.gated:
            open_ = {k: v != 0 for k, v in values.items()}
        else:
            open_ = {k: torch.ones_like(v, dtype=torch.bool) for k, v in values.items()}
        base = {}
        for k, v in values.items():
            sel = v[open_[k]]
            base[k] = float(sel.pow(2).mean().sqrt()) if sel.numel() else 1e-3
            base[k] = max(base[k], 1e-4)  # a tiny step would let refinement run values off the alphabet
        if m.gated:  # gate logit; never send a closed gate
            scores = {k: torch.where(open_[k], state.log_alpha[k].detach(), torch.full_like(v, 2 * _NEVER))
                      for k, v in values.items()}
        else:
            scores = {k: v.abs() / base[k] for k, v in values.items()}
    packer = _Packer(m, header, values, scores, base)
    if target_bytes is not None:
        best, best_d = None, np.inf
        candidates = list(rel_steps if m.sparsity != "dense" else rel_steps[:1])
        while candidates:
            s = candidates.pop(0)
            t = packer.fit_rate_dense(target_bytes) if m.sparsity == "dense" else packer.fit_rate(target_bytes, s)
            if t is None:
                continue
            d = _distortion(m, coords, target, t, loss_fn)
            if d < best_d:
                best, best_d = t, d
            # every candidate entry is sent and the file is still short of the target:
            # spend the remaining bits on finer quantisation instead
            if not candidates and m.sparsity != "dense" and t.size < 0.95 * target_bytes and s > min(rel_steps) / 8:
                candidates.append(s / 2)
        if best is None:
            floor = packer.trial(_NEVER, 2.0**_DENSE_LOG2_STEP).size if m.sparsity == "dense" else packer.trial(np.inf, rel_steps[0]).size
            return None, floor
        refined = _qat(m, coords, target, best, qat_steps, lr=qat_lr, progress=progress, loss_fn=loss_fn)
        if m.sparsity == "dense":
            final = packer.trial(_NEVER, 1.0, values=refined, steps=best.steps)
            final = final if final.size <= target_bytes else best
        else:
            final = packer.fit_rate(target_bytes, 1.0, values=refined, steps=best.steps) or best
    else:
        q = 50 if quality is None else quality
        s = 0.5 * 2.0 ** ((50 - q) / 20)
        tau = _NEVER if m.sparsity != "magnitude" else 0.0
        first = packer.trial(tau, s)
        refined = _qat(m, coords, target, first, qat_steps, lr=qat_lr, progress=progress, loss_fn=loss_fn)
        final = packer.trial(tau, s, values=refined, steps=first.steps)
    return final, 0


BITS_PER_ENTRY = 8.0  # typical cost of one sent entry (mask + value), to size the gate prior


OPEN_HEADROOM = 4.0  # start with more open gates than the target needs; fitting closes the useless ones
