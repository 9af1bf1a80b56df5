"""IMPALA-discrete (algos/discretised.py): the documented action table, and a run that
trains on it and is evaluated on the env's own actions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from impala_hybrid.algos.discretised import ActionTable, DiscretisedVectorEnv
from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.evaluation.rollout import evaluate
from impala_hybrid.experiments.trainer import run_policy
from impala_hybrid.runtime.serial import make_env, train_serial
from impala_hybrid.validation import ConfigError
from tests.runtime import uav

UAV = "impala_hybrid/UAVNet-v0"


def test_the_table_pairs_each_choice_with_one_shared_level() -> None:
    env = make_vector_env(UAV, 2, {})
    table = ActionTable(env.single_action_space, 4)
    assert table.size == 24
    action = table.decode([0, 23, 9])
    np.testing.assert_array_equal(action["transfer"], [0, 5, 2])
    np.testing.assert_allclose(action["intensity"][0], [0.25] * 6)
    np.testing.assert_allclose(action["intensity"][1], [1.0] * 6)
    np.testing.assert_allclose(action["intensity"][2], [0.5] * 6)  # 9 = 2 * 4 + 1
    with pytest.raises(ValueError, match=r"out of range \[0, 24\)"):
        table.decode([24])
    with pytest.raises(ConfigError, match=r"discrete_levels = 1 is invalid"):
        ActionTable(env.single_action_space, 1)
    with pytest.raises(ConfigError, match=r"discretises hybrid .* actions only"):
        ActionTable(make_vector_env("CartPole-v1", 1, {}).single_action_space, 3)


def test_the_wrapper_steps_the_env_with_the_decoded_action() -> None:
    a = DiscretisedVectorEnv(make_vector_env(UAV, 3, {"episode_steps": 20}), 3)
    b = make_vector_env(UAV, 3, {"episode_steps": 20})
    assert a.single_action_space.n == 18 and a.config == b.config  # type: ignore[attr-defined]
    obs_a, _ = a.reset(seed=4)
    obs_b, _ = b.reset(seed=4)
    for idx in ([0, 5, 17], [3, 3, 3]):
        obs_a, r_a, *_ = a.step(np.array(idx))
        obs_b, r_b, *_ = b.step(a.table.decode(idx))
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(r_a, r_b)


def test_impala_discrete_trains_and_is_evaluated_on_the_env_actions() -> None:
    cfg = dataclasses.replace(uav(total_steps=256), discrete_levels=3)
    env = make_env(cfg, 1)
    assert env.single_action_space.n == 18
    learner = train_serial(cfg).learner
    assert learner.model.action.num_actions == 18 and learner.version == 4
    policy = run_policy(cfg, learner.model.eval())
    res = evaluate(policy, UAVNetConfig(episode_steps=50), episodes=1, num_envs=2, seed=0)
    assert np.isfinite(res.return_mean)
    with pytest.raises(ConfigError, match=r"discrete_levels = 1 is invalid"):
        dataclasses.replace(cfg, discrete_levels=1)
