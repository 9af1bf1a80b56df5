"""Learned constraints (issue 12): the env's constraint costs as reward components whose
weights are Lagrange multipliers, learned by the learner (``IMPALAConfig.lagrange``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.envs.config import CONSTRAINT_NAMES, UAVNetConfig
from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.experiments.spec import TrainConfig, constraint_components, reward_setup
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.runtime.serial import build, build_learner, train_serial
from impala_hybrid.types import Batch
from impala_hybrid.validation import ConfigError

UAV = "impala_hybrid/UAVNet-v0"


def config(**algo: object) -> TrainConfig:
    return TrainConfig(
        env=UAV, num_envs=8, total_steps=64 * 8, log_interval=1, critic="vector",
        env_kwargs={"episode_steps": 50}, model=ModelConfig(hidden=(32, 32)),
        algo=IMPALAConfig(unroll_length=8, batch_size=8, lagrange=True, **algo),  # type: ignore[arg-type]
    )  # fmt: skip


def with_slack(batch: Batch, slack: list[float]) -> Batch:
    """``batch`` with every step's constraint slacks (components 6..8) set to ``slack``."""
    rewards = batch.rewards.clone()
    rewards[..., 6:9] = torch.tensor(slack)
    return dataclasses.replace(batch, rewards=rewards)


def test_reward_components_hold_each_constraint_slack() -> None:
    cfg = config(lagrange_init=0.5)
    env = make_vector_env(UAV, 4, {"episode_steps": 50})
    reward_fn, weights = reward_setup(cfg, env)
    limits = np.array(UAVNetConfig().constraint_limits(), np.float32)
    w = np.array(UAVNetConfig().weights, np.float32)
    np.testing.assert_allclose(weights.numpy(), np.concatenate([w, [0.5, 0.5, 0.5], [1.0]]))
    assert constraint_components(cfg, env) == dict(zip(CONSTRAINT_NAMES, (6, 7, 8), strict=True))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    parts = reward_fn(reward, info)
    assert parts.shape == (4, 10)
    np.testing.assert_allclose(parts[:, :6], info["vector_reward"])
    np.testing.assert_allclose(parts[:, 6:9], limits - info["constraint_costs"], rtol=1e-6)
    np.testing.assert_allclose(parts[:, 9], reward - info["vector_reward"] @ w, atol=1e-6)


def test_a_multiplier_rises_while_its_constraint_is_violated_and_falls_when_satisfied() -> None:
    """Power over its limit (slack -0.2), the others within theirs: only the power price
    rises, and the learner's V-trace weights are the prices; once satisfied it falls to 0."""
    cfg = config(lagrange_ki=0.5)
    _, learner, actor = build(cfg)
    batch = actor.unroll(learner.version)
    prices = []
    for _ in range(10):
        m = learner.step(with_slack(batch, [-0.2, 0.1, 0.3]))
        prices.append([m[f"lagrange_{n}"] for n in CONSTRAINT_NAMES])
        assert learner.reward_weights[6:9].tolist() == pytest.approx(prices[-1])
    p = np.array(prices)
    assert (np.diff(p[:, 0]) > 0).all() and p[-1, 0] == pytest.approx(1.0, rel=1e-4)
    assert (p[:, 1:] == 0).all()
    for _ in range(10):
        m = learner.step(with_slack(batch, [0.2, 0.1, 0.3]))
    assert m["lagrange_power"] == 0.0 and m["constraint_excess_power"] < 0.0


def test_multipliers_shape_the_advantages_and_survive_a_checkpoint() -> None:
    cfg = config(lagrange_ki=0.5, lagrange_kp=0.3)
    _, learner, actor = build(cfg)
    batch = with_slack(actor.unroll(learner.version), [-0.4, 0.0, 0.0])
    zero = learner.targets(batch, learner.forward(batch)).advantages.clone()
    for _ in range(3):
        learner.step(batch)
    priced = learner.targets(batch, learner.forward(batch)).advantages
    assert not torch.allclose(zero, priced)  # the slack now enters the scalarised return
    state = learner.state_dict()
    other = build_learner(cfg, make_vector_env(UAV, 1, cfg.env_kwargs))
    assert other.reward_weights[6:9].sum() == 0.0
    other.load_state_dict(state)
    assert torch.equal(other.reward_weights, learner.reward_weights)
    for a, b in zip(other.lagrange_state, learner.lagrange_state, strict=True):  # type: ignore[arg-type]
        assert torch.equal(a, b)


def test_a_lagrangian_run_trains_and_logs_its_prices() -> None:
    result = train_serial(config())
    last = result.history[-1]
    for name in CONSTRAINT_NAMES:
        assert last[f"lagrange_{name}"] >= 0.0 and f"constraint_excess_{name}" in last
    assert result.learner.version == 8


def test_configuration_errors_name_the_field() -> None:
    env = make_vector_env(UAV, 1, {})
    with pytest.raises(ConfigError, match=r"lagrange = true is invalid with TrainConfig\.critic"):
        reward_setup(dataclasses.replace(config(), critic="scalar"), env)
    hinged = make_vector_env(UAV, 1, {"constraint_hinges": True})
    with pytest.raises(ConfigError, match=r"constraint_hinges = true is invalid with"):
        reward_setup(config(), hinged)
    cartpole = dataclasses.replace(config(), env="CartPole-v1", env_kwargs={})
    with pytest.raises(ConfigError, match=r"critic = 'vector' is invalid for env 'CartPole-v1'"):
        build(cartpole)
    with pytest.raises(ConfigError, match=r"lagrange_init = 1.0 is invalid with lagrange_ki = 0"):
        IMPALAConfig(lagrange=True, lagrange_init=1.0, lagrange_ki=0.0)
    with pytest.raises(ConfigError, match=r"IMPALAConfig\.lagrange_ema = 0 is invalid"):
        IMPALAConfig(lagrange_ema=0)
