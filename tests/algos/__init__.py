"""Helpers shared by the learner tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def fit_alone(head: nn.Module, loss_of: Callable[[], Tensor], steps: int = 100) -> list[float]:
    """Adam on ``head``'s parameters alone, ``steps`` times on ``loss_of()`` (a learner
    loss toward fixed targets); the losses along the way."""
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_of()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
