"""The in-house Adam must follow torch.optim.Adam step for step (it only exists to skip a slow import)."""

import torch

from mscncodec.optim import Adam


def test_adam_matches_torch_adam_including_param_groups_and_missing_grads():
    torch.manual_seed(0)
    a, b = torch.randn(7, 3, requires_grad=True), torch.randn(5, requires_grad=True)
    ra, rb = a.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
    ours = Adam([{"params": [a], "lr": 0.05}, {"params": [b], "lr": 0.2}])
    ref = torch.optim.Adam([{"params": [ra], "lr": 0.05}, {"params": [rb], "lr": 0.2}])
    for step in range(30):
        ours.zero_grad()
        ref.zero_grad()
        use_b = step % 3 != 0  # b gets no gradient on some steps: both must skip it
        ((a**2).sum() + ((b - 1) ** 2).sum() * use_b).backward()
        ((ra**2).sum() + ((rb - 1) ** 2).sum() * use_b).backward()
        if not use_b:
            b.grad = None
            rb.grad = None
        ours.step()
        ref.step()
    assert torch.allclose(a, ra, atol=1e-6)
    assert torch.allclose(b, rb, atol=1e-6)
    assert not torch.allclose(a, torch.zeros_like(a))  # it actually moved
