"""A serial run stopped after some learner steps and resumed from its ``state_dict`` ends
with the same weights as an uninterrupted one."""

from __future__ import annotations

import torch

from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.runtime.serial import SerialRun


def assert_resumes_exactly(cfg: TrainConfig, stop_after: int) -> SerialRun:
    """Run ``cfg`` whole, and again stopped after ``stop_after`` steps and resumed in a fresh
    ``SerialRun``; assert bit-equal final parameters. Returns the uninterrupted run."""
    full = SerialRun(cfg)
    while not full.done:
        full.step()
    part = SerialRun(cfg)
    for _ in range(stop_after):
        part.step()
    resumed = SerialRun(cfg)
    resumed.load_state_dict(part.state_dict())
    while not resumed.done:
        resumed.step()
    for a, b in zip(
        full.learner.model.parameters(), resumed.learner.model.parameters(), strict=True
    ):
        assert torch.equal(a, b)
    return full
