"""Replay of whole unrolls: proportion, FIFO capacity, exact copies, budget, learning, resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.evaluation.policy import evaluate_returns
from impala_hybrid.experiments.spec import TrainConfig, cartpole
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.runtime.replay import UnrollReplay
from impala_hybrid.runtime.serial import build, train_serial
from tests.runtime.resume import assert_resumes_exactly


def _unrolls(n: int = 3) -> list:
    cfg = TrainConfig(env="CartPole-v1", num_envs=4, total_steps=64, model=ModelConfig(hidden=(8,)),
                      algo=IMPALAConfig(unroll_length=4, batch_size=4))  # fmt: skip
    _, _, actor = build(cfg)
    return [actor.unroll(i) for i in range(n)]


def test_mix_proportion_capacity_and_exact_copies() -> None:
    first, second, third = _unrolls()
    replay = UnrollReplay(proportion=0.5, capacity=6, seed=0)
    assert replay.num_replayed(4) == 4  # 4 / (4 + 4) = 0.5
    out = replay.mix(first)
    assert out.batch_size == 4 and len(replay) == 4  # nothing stored before: fresh only
    out = replay.mix(second)
    assert out.batch_size == 8 and len(replay) == 6  # FIFO: the two oldest evicted
    # Every replayed column is an exact copy of one of the first batch's unrolls.
    for b in range(4, 8):
        col = out.columns(torch.tensor([b]))
        assert any(torch.equal(col.obs, first.columns(torch.tensor([j])).obs) for j in range(4))
    assert (out.policy_version[4:] == 0).all() and (out.policy_version[:4] == 1).all()
    out = replay.mix(third)
    assert out.batch_size == 8
    with pytest.raises(ValueError, match="proportion"):
        UnrollReplay(proportion=1.0, capacity=4, seed=0)


def test_replay_counts_only_fresh_env_steps_and_resumes_exactly() -> None:
    algo = IMPALAConfig(unroll_length=8, batch_size=4, replay_proportion=0.5, replay_capacity=16)
    cfg = TrainConfig(env="impala_hybrid/UAVNet-v0", env_kwargs={"episode_steps": 30},
                      num_envs=4, total_steps=8 * 4 * 6, log_interval=1,
                      model=ModelConfig(hidden=(16,)), algo=algo)  # fmt: skip
    full = assert_resumes_exactly(cfg, stop_after=3)
    assert full.learner.version == 6  # 6 updates for 6 fresh batches, replay included


def test_cartpole_learns_with_half_replay() -> None:
    base = cartpole()
    cfg = dataclasses.replace(base, algo=dataclasses.replace(base.algo, replay_proportion=0.5))
    result = train_serial(cfg)
    returns = evaluate_returns(result.model, cfg.env, 16, seed=1000)
    assert np.mean(returns) >= 475.0, returns
