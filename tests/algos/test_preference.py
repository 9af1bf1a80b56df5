"""Preference-conditioned IMPALA (issue 12): per-episode objective weights as observation
entries (envs/preference.py), each step scalarised with its own episode's weights."""

from __future__ import annotations

import dataclasses
import types

import gymnasium as gym
import numpy as np
import pytest
import torch

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.envs.preference import PreferenceVectorEnv
from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.experiments.trainer import run_policy
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.runtime.serial import build, make_env, train_serial
from impala_hybrid.validation import ConfigError

UAV = "impala_hybrid/UAVNet-v0"
TOY = "impala_hybrid/TradeOff-v0"


def uav(**kw: object) -> TrainConfig:
    base = TrainConfig(
        env=UAV, num_envs=8, total_steps=512, critic="vector", preference="dirichlet",
        env_kwargs={"episode_steps": 5}, model=ModelConfig(hidden=(32, 32)),
        algo=IMPALAConfig(unroll_length=8, batch_size=8),
    )  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_weights_are_drawn_per_episode_and_appended_to_every_observation() -> None:
    env = PreferenceVectorEnv(make_vector_env(UAV, 4, {"episode_steps": 3}), seed=1)
    assert env.single_observation_space.shape == (29 + 6,)
    obs, _ = env.reset(seed=0)
    w0 = obs[:, 29:].copy()
    np.testing.assert_allclose(w0.sum(1), 1.0, rtol=1e-5)
    assert len({tuple(row) for row in w0}) == 4  # each env its own draw
    action = {"transfer": np.zeros(4, np.int64), "intensity": np.full((4, 6), 0.5, np.float32)}
    for t in range(3):
        obs, _, _, trunc, info = env.step(action)
        np.testing.assert_array_equal(info["preference"], w0)  # the step's own weights
        if t < 2:
            np.testing.assert_array_equal(obs[:, 29:], w0)  # constant within the episode
    assert trunc.all()
    np.testing.assert_array_equal(info["final_obs"][:, 29:], w0)  # last obs: its own w
    assert not np.isclose(obs[:, 29:], w0).all(axis=1).any()  # the next episodes: new w
    w1 = obs[:, 29:].copy()
    obs, _ = env.reset(options={"reset_mask": np.array([True, False, False, False])})
    assert not np.allclose(obs[0, 29:], w1[0]) and np.array_equal(obs[1:, 29:], w1[1:])


class _Countdown(gym.Env):
    """Episodes of ``length`` steps; the observation is the steps left."""

    observation_space = gym.spaces.Box(0.0, 10.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int) -> None:
        self.length = self.left = length

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        super().reset(seed=seed)
        self.left = self.length
        return np.array([self.left], np.float32), {}

    def step(self, action: int) -> tuple:
        self.left -= 1
        return np.array([self.left], np.float32), 0.0, self.left == 0, False, {}


def test_a_sync_vector_env_gets_each_finished_episode_its_own_weights() -> None:
    """Gymnasium's SyncVectorEnv gives ``final_obs`` as an object array with None where no
    episode ended; the wrapper makes it dense, each row with its own episode's ``w``."""
    envs = gym.vector.SyncVectorEnv(
        [lambda: _Countdown(1), lambda: _Countdown(3)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    envs.config = types.SimpleNamespace(weights=(0.5, 0.5))  # type: ignore[attr-defined]
    env = PreferenceVectorEnv(envs, seed=3)
    obs, _ = env.reset(seed=0)
    w0 = obs[:, 1:].copy()
    obs, _, term, _, info = env.step(np.zeros(2, np.int64))
    assert term.tolist() == [True, False]
    assert info["final_obs"].shape == (2, 3) and info["final_obs"].dtype == np.float32
    np.testing.assert_array_equal(info["final_obs"][0], [0.0, *w0[0]])  # its last obs, its w
    assert info["final_obs"][1, 0] == 0.0  # no episode ended there: a placeholder row
    assert not np.allclose(obs[0, 1:], w0[0])  # env 0's next episode: a new draw
    np.testing.assert_array_equal(obs[1], [2.0, *w0[1]])  # env 1 goes on with its w


def test_fixed_weights_and_errors() -> None:
    env = PreferenceVectorEnv(make_vector_env(TOY, 2, {}), fixed=[3.0, 1.0])
    obs, _ = env.reset()
    np.testing.assert_allclose(obs[:, 1:], [[0.75, 0.25]] * 2)
    with pytest.raises(ConfigError, match=r"preference weights = \[1.0\] is invalid: 2 finite"):
        PreferenceVectorEnv(make_vector_env(TOY, 2, {}), fixed=[1.0])
    with pytest.raises(ConfigError, match=r"needs a multi-objective env"):
        PreferenceVectorEnv(make_vector_env("CartPole-v1", 2, {}))
    with pytest.raises(ConfigError, match=r"preference = 'dirichlet' is invalid with critic"):
        uav(critic="scalar")
    with pytest.raises(ConfigError, match=r"preference_alpha = 0 is invalid"):
        uav(preference_alpha=0)
    with pytest.raises(ConfigError, match=r"preference weights are for a run trained with"):
        make_env(dataclasses.replace(uav(), preference="none"), 1, preference=[1, 0, 0, 0, 0, 0])


def test_each_column_is_scalarised_with_its_own_weights() -> None:
    """The advantages and the Q target of a preference-conditioned learner equal, column by
    column, those of a learner whose fixed reward weights are that column's ``w``: V-trace
    runs on the value components and each step is scalarised with its episode's ``w``."""
    cfg = uav(algo=IMPALAConfig(unroll_length=8, batch_size=8, normalize_advantages=False))
    _, learner, actor = build(cfg)
    assert learner.preference_dims == 6 and learner.model.obs_dim == 35
    batch = actor.unroll()
    fwd = learner.forward(batch)
    tg = learner.targets(batch, fwd)
    w = learner.step_weights(batch)
    assert w.shape == (8, 8, 7)
    torch.testing.assert_close(w[..., :6], batch.obs[:8, :, 29:])
    assert (w[..., 6] == 1.0).all()  # the remainder component keeps its weight
    assert len({tuple(w[0, b, :6].tolist()) for b in range(8)}) == 8
    for col in range(8):
        for t in range(8):
            learner.preference_dims = 0  # a learner with fixed weights: this step's w
            learner.reward_weights = w[t, col].clone()
            want = learner.targets(batch, fwd)
            torch.testing.assert_close(tg.advantages[t, col], want.advantages[t, col])
            torch.testing.assert_close(tg.q_scalar[t, col], want.q_scalar[t, col])
            learner.preference_dims = 6


def test_one_run_learns_the_best_action_for_every_preference() -> None:
    """TradeOff-v0: reward (sqrt(a), sqrt(1 - a)), so under w the best action is
    a* = w1^2 / (w1^2 + w2^2). One preference-conditioned run (40k steps, seed 0, ~5 s)
    acts near a* at three different w; its actions at (0.9, 0.1) and (0.1, 0.9) differ."""
    cfg = TrainConfig(
        env=TOY, num_envs=32, total_steps=40_000, critic="vector", preference="dirichlet",
        model=ModelConfig(hidden=(64, 64), layer_norm=False, activation="tanh"),
        algo=IMPALAConfig(unroll_length=4, batch_size=32, lr=3e-3, entropy_coef=1e-3, gamma=0.0),
    )  # fmt: skip
    model = train_serial(cfg).learner.model.eval()
    acts = {}
    for w1, w2 in [(0.9, 0.1), (0.5, 0.5), (0.1, 0.9)]:
        policy = run_policy(cfg, model, (w1, w2))
        acts[w1] = float(np.asarray(policy(np.zeros((1, 1), np.float32))).reshape(-1)[0])
        assert acts[w1] == pytest.approx(w1**2 / (w1**2 + w2**2), abs=0.06), (w1, acts)
    assert acts[0.9] - acts[0.1] > 0.8


def test_draws_can_centre_on_the_env_weights() -> None:
    """``preference_center = env``: the Dirichlet's mean is the env's own scalarisation."""
    cfg = uav(preference_center="env", preference_alpha=50.0)
    env = make_env(cfg, 512, seed=3)
    obs, _ = env.reset(seed=3)
    w0 = np.array(env.config.weights) / sum(env.config.weights)
    np.testing.assert_allclose(obs[:, 29:].mean(0), w0, atol=0.01)
    spread = np.abs(obs[:, 29:] - w0).max()
    uniform = make_env(uav(), 512, seed=3).reset(seed=3)[0][:, 29:]
    assert spread < np.abs(uniform - w0).max()  # concentrated around w0
    with pytest.raises(ConfigError, match=r"every objective needs a positive weight"):
        PreferenceVectorEnv(make_vector_env(TOY, 2, {"weights": (1.0, 0.0)}), center=(1, 0))
