"""A minimal Adam for encode-time fitting.

torch.optim's constructor imports torch._dynamo, which costs ~5 s of start-up on
the 2-core target machine - longer than a fast encode. Fitting only needs plain
Adam on a handful of tensors, so it is written out here with in-place ops and
buffers allocated once (large per-step temporaries page-fault on this machine).
Same update rule as torch.optim.Adam, including per-parameter step counts.
"""

from __future__ import annotations

import torch


class Adam:
    def __init__(self, groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.groups = [dict(g, params=list(g["params"])) for g in groups if list(g["params"])]
        self.b1, self.b2, self.eps = betas[0], betas[1], eps
        self.state = {id(p): {"t": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p), "d": torch.empty_like(p)}
                      for g in self.groups for p in g["params"]}

    def zero_grad(self) -> None:
        for g in self.groups:
            for p in g["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for g in self.groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                s = self.state[id(p)]
                s["t"] += 1
                c1, c2 = 1 - self.b1 ** s["t"], 1 - self.b2 ** s["t"]
                s["m"].lerp_(p.grad, 1 - self.b1)
                s["v"].mul_(self.b2).addcmul_(p.grad, p.grad, value=1 - self.b2)
                torch.sqrt(s["v"], out=s["d"]).div_(c2**0.5).add_(self.eps)
                p.addcdiv_(s["m"], s["d"], value=-g["lr"] / c1)
