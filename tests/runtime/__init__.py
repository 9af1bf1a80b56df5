"""Helpers shared by the runtime tests: a tiny UAV config, the split of a wide unroll."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.runtime.serial import build
from impala_hybrid.types import Batch


def uav(total_steps: int, **algo: object) -> TrainConfig:
    """8 UAV envs of 50-step episodes, T = 8, B = 8, a 32 x 32 network, a record per step."""
    return TrainConfig(
        env="impala_hybrid/UAVNet-v0",
        env_kwargs={"episode_steps": 50},
        num_envs=8,
        total_steps=total_steps,
        log_interval=1,
        model=ModelConfig(hidden=(32, 32)),
        algo=IMPALAConfig(unroll_length=8, batch_size=8, **algo),  # type: ignore[arg-type]
    )


def assert_column_halves(cfg: TrainConfig, first: Batch, second: Batch) -> None:
    """``first`` and ``second`` are the two column halves of the first unroll of 16 envs that
    the serial runtime's actor (same envs, seed and initial weights) produces under ``cfg``."""
    wide = dataclasses.replace(cfg, num_envs=16, algo=dataclasses.replace(cfg.algo, batch_size=16))
    _, _, actor = build(wide)
    reference = actor.unroll()
    for got, cols in ((first, range(8)), (second, range(8, 16))):
        want = reference.columns(torch.tensor(list(cols)))
        assert got.batch_size == 8
        for a, b in zip(got.tensors(), want.tensors(), strict=True):
            assert torch.equal(a, b)


def take_two_batches(run: Any) -> tuple[Batch, Batch]:
    """The first two learner batches of a runtime object (``_take_batch``), then close it."""
    try:
        return run._take_batch(), run._take_batch()
    finally:
        run.close()


def train_with_a_kill(run: Any, kill: Callable[[], None], after: int = 5) -> list[dict[str, float]]:
    """Step ``run`` ``after`` times, ``kill()`` an actor, step to the end, close; the records
    written after the kill."""
    records = []
    try:
        for _ in range(after):
            run.step()
        kill()
        while not run.done:
            record = run.step()
            if record is not None:
                records.append(record)
    finally:
        run.close()
    return records


def assert_weights_close(model: Any, want: Any) -> None:
    """``model``'s parameters and buffers equal ``want``'s (another model) to float tolerance:
    the update of K synchronous learners against one learner's on the whole batch."""
    expected = want.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-4, atol=1e-5, msg=key)
