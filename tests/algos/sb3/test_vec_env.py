"""``RelaxedVecEnv``: SB3's VecEnv API over our vector envs, stepping exactly like the env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecMonitor

from impala_hybrid.algos.sb3.vec_env import RelaxedVecEnv
from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.envs.vector import UAVNetVectorEnv

N, STEPS = 4, 25  # episodes of 25 steps, so 60 steps cross two episode ends


def uav(**kw: object) -> UAVNetVectorEnv:
    return UAVNetVectorEnv(N, autoreset_mode="SameStep", episode_steps=STEPS, **kw)


def test_steps_equal_the_env_stepped_with_the_decoded_action_on_the_same_seed() -> None:
    venv = RelaxedVecEnv(uav())
    env = uav()
    venv.seed(11)
    obs_w = venv.reset()
    obs_e, _ = env.reset(seed=11)
    np.testing.assert_array_equal(obs_w, obs_e)
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(60):
        a = rng.uniform(-1, 1, (N, 12)).astype(np.float32)
        obs_w, rew_w, done_w, infos = venv.step(a)
        obs_e, rew_e, term, trunc, info_e = env.step(venv.relaxation.decode(a))
        np.testing.assert_array_equal(obs_w, obs_e)
        np.testing.assert_array_equal(rew_w, rew_e)
        assert rew_w.dtype == np.float32
        np.testing.assert_array_equal(done_w, term | trunc)
        for i in np.flatnonzero(done_w):
            np.testing.assert_array_equal(infos[i]["terminal_observation"], info_e["final_obs"][i])
            assert infos[i]["TimeLimit.truncated"] == (trunc[i] and not term[i])
            ends += 1
        assert all(not infos[i] for i in np.flatnonzero(~done_w))
    assert ends == 2 * N


def test_vec_monitor_episode_return_is_the_envs_scalarised_return() -> None:
    """What SB3 logs as an episode's return is the env's own scalarised return: the reward
    IMPALA learns from (``reward_setup`` with a scalar critic), summed over the episode."""
    venv = VecMonitor(RelaxedVecEnv(uav()))
    env = uav()
    venv.seed(3)
    venv.reset()
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(STEPS):
        a = rng.uniform(-1, 1, (N, 12)).astype(np.float32)
        _, _, dones, infos = venv.step(a)
        _, _, _, _, info_e = env.step(venv.venv.relaxation.decode(a))  # type: ignore[attr-defined]
    assert dones.all()
    r_monitor = np.array([info["episode"]["r"] for info in infos])
    np.testing.assert_allclose(r_monitor, info_e["episode"]["r"], rtol=1e-5)
    assert [info["episode"]["l"] for info in infos] == [STEPS] * N


def test_seed_makes_resets_reproducible_and_is_consumed() -> None:
    venv = RelaxedVecEnv(uav())
    assert venv.seed(5) == [5, 6, 7, 8]
    first = venv.reset()
    assert venv._seeds == [None] * N  # used once, as SB3's own VecEnvs do
    venv.seed(5)
    np.testing.assert_array_equal(venv.reset(), first)


def test_api_calls_act_on_the_batch() -> None:
    venv = RelaxedVecEnv(uav())
    assert venv.get_attr("render_mode") == [None] * N
    assert venv.get_attr("num_envs", indices=[1, 2]) == [N, N]
    assert venv.has_attr("config") and not venv.has_attr("no_such_attribute")
    assert venv.env_is_wrapped(Monitor) == [False] * N
    venv.set_attr("copy", True)
    venv.reset()
    states = venv.env_method("get_state")
    assert len(states) == N and states[0] is states[-1]
    with pytest.raises(ValueError, match="all its 4 envs"):
        venv.env_method("get_state", indices=[0])
    with pytest.raises(ValueError, match="all its 4 envs"):
        venv.set_attr("copy", True, indices=2)
    venv.step_async(np.zeros((N, 12), np.float32))
    assert venv.step_wait()[0].shape == (N, 29)
    with pytest.raises(RuntimeError, match="step_async"):
        venv.step_wait()
    venv.close()


def test_vector_env_of_copies_is_asked_per_copy() -> None:
    venv = RelaxedVecEnv(make_vector_env("impala_hybrid.envs.param_toys:goal", 3))
    assert venv.action_space.shape == (1 + 1 + 0 + 3,)
    assert venv.get_attr("max_steps") == [10, 10, 10]
    assert venv.env_is_wrapped(gym.wrappers.OrderEnforcing) == [False] * 3
    assert venv.env_method("_obs", indices=[2, 1, 0])[0].shape == (4,)


def test_native_action_space_passes_actions_through() -> None:
    venv = RelaxedVecEnv(make_vector_env("CartPole-v1", 2), relax=False)
    assert venv.relaxation is None and venv.action_space == gym.spaces.Discrete(2)
    venv.seed(0)
    venv.reset()
    for _ in range(300):  # a constant push ends episodes within ~10 steps
        _, _, dones, infos = venv.step(np.array([1, 1]))
        if dones.any():
            break
    i = int(np.flatnonzero(dones)[0])
    assert infos[i]["terminal_observation"].shape == (4,)
    assert infos[i]["TimeLimit.truncated"] is False


def test_refuses_other_autoreset_modes_and_vector_rewards() -> None:
    with pytest.raises(ValueError, match="SAME_STEP"):
        RelaxedVecEnv(UAVNetVectorEnv(2))
    venv = RelaxedVecEnv(uav(reward_mode="vector"))
    venv.reset()
    with pytest.raises(ValueError, match="scalar reward"):
        venv.step(np.zeros((N, 12), np.float32))
