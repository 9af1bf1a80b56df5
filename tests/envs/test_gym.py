"""The Gymnasium faces: registration, check_env, the native vector env and its autoreset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import impala_hybrid
from impala_hybrid.envs.bounds import objective_bounds
from impala_hybrid.envs.vector import UAVNetVectorEnv

ID = impala_hybrid.UAVNET_ID


def full_speed(n: int, transfer: int = 0) -> dict[str, np.ndarray]:
    return {"transfer": np.full(n, transfer), "intensity": np.ones((n, 6), np.float32)}


def test_single_env_passes_gymnasium_checker() -> None:
    env = gym.make(ID)
    check_env(env.unwrapped, skip_render_check=True)


def test_make_vec_is_native_batched() -> None:
    env = gym.make_vec(ID, num_envs=7)
    assert isinstance(env, UAVNetVectorEnv)
    assert env.num_envs == 7
    assert env.single_observation_space.shape == (29,)
    assert env.observation_space.shape == (7, 29)
    assert isinstance(env.single_action_space, gym.spaces.Dict)
    assert env.reward_space.shape == (6,)
    bounds = objective_bounds(env.config)  # the sure per-step bounds, config-dependent
    np.testing.assert_array_equal(env.reward_space.low, bounds.step_lower.astype(np.float32))
    np.testing.assert_array_equal(env.reward_space.high, bounds.step_upper.astype(np.float32))
    obs, info = env.reset(seed=0)
    assert obs.shape == (7, 29) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    obs, rew, term, trunc, info = env.step(env.action_space.sample())
    assert rew.shape == (7,) and term.shape == (7,) and trunc.shape == (7,)
    assert info["vector_reward"].shape == (7, 6)


def test_config_overrides_through_make() -> None:
    env = gym.make_vec(ID, num_envs=2, episode_steps=3, dt=0.05)
    assert env.unwrapped.config.episode_steps == 3  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="unknown UAVNetConfig field"):
        gym.make_vec(ID, num_envs=2, episode_stepz=3)


def test_single_env_matches_vector_env_zero() -> None:
    single = gym.make(ID).unwrapped
    vec = gym.make_vec(ID, num_envs=3)
    o1, _ = single.reset(seed=42)
    o2, _ = vec.reset(seed=42)
    np.testing.assert_array_equal(o1, o2[0])
    rng = np.random.default_rng(0)
    for _ in range(50):
        tr = int(rng.integers(0, 6))
        it = rng.random(6).astype(np.float32)
        o1, r1, *_ = single.step({"transfer": tr, "intensity": it})
        o2, r2, *_ = vec.step({"transfer": np.full(3, tr), "intensity": np.tile(it, (3, 1))})
        np.testing.assert_array_equal(o1, o2[0])
        assert r1 == r2[0]


def test_next_step_autoreset() -> None:
    env = gym.make_vec(ID, num_envs=2, episode_steps=4)
    env.reset(seed=1)
    for _ in range(3):
        _, _, _, trunc, info = env.step(full_speed(2))
        assert not trunc.any() and "episode" not in info
    obs, _, term, trunc, info = env.step(full_speed(2))
    assert trunc.all() and not term.any()
    assert obs[:, 28] == pytest.approx(1.0)  # the final observation of the episode
    assert info["_episode"].all() and (info["episode"]["l"] == 4).all()
    obs, rew, term, trunc, info = env.step(full_speed(2))  # the reset step
    assert (rew == 0).all() and not trunc.any() and not term.any()
    assert (obs[:, 28] == 0).all() and (obs[:, :23] == 0).all()
    obs, *_ = env.step(full_speed(2))
    assert obs[:, 28] == pytest.approx(0.25)


def test_same_step_autoreset_keeps_final_observation() -> None:
    env = gym.make_vec(ID, num_envs=3, episode_steps=4, autoreset_mode="SameStep")
    env.reset(seed=1)
    for _ in range(3):
        env.step(full_speed(3, transfer=1))
    obs, _, _, trunc, info = env.step(full_speed(3, transfer=1))
    assert trunc.all()
    assert info["_final_obs"].all()
    final = info["final_obs"]
    assert final[:, 28] == pytest.approx(1.0)
    assert (obs[:, 28] == 0).all()  # already the next episode's first observation
    assert info["episode"]["r"].shape == (3,)
    obs, *_ = env.step(full_speed(3))
    assert obs[:, 28] == pytest.approx(0.25)


def test_episode_statistics() -> None:
    env = gym.make_vec(ID, num_envs=4, episode_steps=200, autoreset_mode="SameStep")
    env.reset(seed=3)
    total = np.zeros(4)
    vec_total = np.zeros((4, 6))
    for _ in range(200):
        _, rew, _, _, info = env.step(full_speed(4, transfer=1))
        total += rew
        vec_total += info["vector_reward"]
    ep = info["episode"]
    np.testing.assert_allclose(ep["r"], total, rtol=1e-4)
    np.testing.assert_allclose(ep["objectives"], vec_total, rtol=1e-4, atol=1e-3)
    for cls in ("emergency", "routine"):
        p50, p95, p99 = (ep[f"latency_p{q}_{cls}"] for q in (50, 95, 99))
        assert (p50 <= p95).all() and (p95 <= p99).all()
        assert (ep[f"latency_cvar_{cls}"] >= p95 - 1e-9).all()
        assert (ep[f"completed_{cls}"] > 0).all()
    assert (ep["energy_j"] > 0).all()
    assert ep["mean_power_w"] == pytest.approx(90.0, rel=0.01)  # full speed ~ 90 W + transfers
    assert (ep["transfers_l_to_h"] > 0).all()


def test_vector_reward_mode() -> None:
    env = gym.make_vec(ID, num_envs=2, reward_mode="vector")
    env.reset(seed=0)
    _, rew, *_ = env.step(full_speed(2))
    assert rew.shape == (2, 6)
    with pytest.raises(ValueError, match="reward_mode"):
        gym.make_vec(ID, num_envs=2, reward_mode="sum")


def test_reset_with_seed_reproduces() -> None:
    env = gym.make_vec(ID, num_envs=2)
    out = []
    for _ in range(2):
        env.reset(seed=5)
        for _ in range(20):
            obs, *_ = env.step(full_speed(2, transfer=2))
        out.append(obs)
    np.testing.assert_array_equal(out[0], out[1])


def test_partial_reset_mask() -> None:
    env = gym.make_vec(ID, num_envs=3)
    env.reset(seed=0)
    for _ in range(5):
        env.step(full_speed(3))
    obs, _ = env.reset(options={"reset_mask": np.array([True, False, False])})
    assert obs[0, 28] == 0.0 and obs[1, 28] > 0.0


def test_single_env_requires_reset_after_end() -> None:
    env = gym.make(ID, episode_steps=2).unwrapped
    env.reset(seed=0)
    a = {"transfer": 0, "intensity": np.ones(6, np.float32)}
    env.step(a)
    _, _, _, trunc, info = env.step(a)
    assert trunc and "episode" in info
    with pytest.raises(RuntimeError, match="reset"):
        env.step(a)
