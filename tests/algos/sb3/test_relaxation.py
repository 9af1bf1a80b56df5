"""The hybrid-to-Box relaxation: the mapping itself, and the single-env Gymnasium wrapper."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

from impala_hybrid.algos.sb3.relaxation import Relaxation, RelaxationError, RelaxedActionWrapper
from impala_hybrid.envs.env import UAVNetEnv
from impala_hybrid.envs.param_toys import GoalEnv, ReachEnv
from impala_hybrid.envs.vector import make_spaces

UAV = Relaxation.of(make_spaces()[1])  # Dict(transfer: Discrete(6), intensity: Box(0, 1, (6,)))
PARAM = Relaxation.of(ReachEnv().action_space)  # Discrete(3); Box(-1,1,(2,)), Box(0,4,(1,)), ()


def test_relaxed_space_is_params_then_one_slot_per_choice() -> None:
    assert UAV.space == gym.spaces.Box(-1.0, 1.0, (6 + 6,), np.float32)
    assert PARAM.space.shape == (2 + 1 + 0 + 3,)
    assert (UAV.num_continuous, UAV.num_discrete) == (6, 6)


def test_discrete_choice_is_the_argmax_of_its_slice() -> None:
    a = np.zeros((3, 12), np.float32)
    a[0, 6 + 4] = 0.5
    a[1, 6:] = [-1, -0.9, -0.2, -0.8, -1, -0.3]
    a[2, :6] = 1.0  # large parameters must not leak into the choice
    a[2, 6 + 5] = -0.1
    a[2, 6:11] = -0.5
    action = UAV.decode(a)
    assert action["transfer"].tolist() == [4, 2, 5]
    assert action["transfer"].dtype == np.int64


def test_ties_go_to_the_lowest_index() -> None:
    a = np.zeros((2, 12), np.float32)
    a[1, 6:] = [-1, 0.5, 0.5, -1, 0.5, -1]
    assert UAV.decode(a)["transfer"].tolist() == [0, 1]


def test_continuous_part_rescales_to_the_env_bounds() -> None:
    a = np.zeros((3, 12), np.float32)
    a[0, :6] = -1.0
    a[1, :6] = 1.0
    a[2, :6] = [-0.5, 0.0, 0.5, 0.25, -0.25, 0.9]
    x = UAV.decode(a)["intensity"]
    assert x.dtype == np.float32 and x.shape == (3, 6)
    np.testing.assert_array_equal(x[0], 0.0)
    np.testing.assert_array_equal(x[1], 1.0)
    np.testing.assert_allclose(x[2], [0.25, 0.5, 0.75, 0.625, 0.375, 0.95], rtol=1e-6)


def test_parameterised_space_splits_each_actions_own_box_with_its_bounds() -> None:
    a = np.array([[-1.0, 1.0, 0.5, -1.0, 0.9, 0.0]], np.float32)  # x: point, dial; s: choices
    k, params = PARAM.decode(a)
    assert k.tolist() == [1]
    np.testing.assert_allclose(params[0], [[-1.0, 1.0]])  # Box(-1, 1): identity
    np.testing.assert_allclose(params[1], [[3.0]])  # Box(0, 4): 0.5 -> 3
    assert params[2].shape == (1, 0)


def test_plain_spaces_relax_too() -> None:
    disc = Relaxation.of(gym.spaces.Discrete(3))
    assert disc.space.shape == (3,)
    assert disc.decode(np.array([[0.1, 0.3, -0.2]])).tolist() == [1]
    box = Relaxation.of(gym.spaces.Box(-2.0, 2.0, (1,), np.float32))
    np.testing.assert_allclose(box.decode(np.array([[0.5], [-1.0]])), [[1.0], [-2.0]])


@pytest.mark.parametrize(
    ("value", "shape"), [(1.01, (1, 12)), (np.nan, (1, 12)), (-1.5, (1, 12)), (0.0, (1, 11))]
)
def test_out_of_range_or_misshapen_relaxed_actions_raise(value: float, shape: tuple) -> None:
    a = np.zeros(shape, np.float32)
    a[0, 0] = value
    with pytest.raises(RelaxationError, match=r"relaxed action"):
        UAV.decode(a)


def test_gym_wrapper_passes_sb3s_env_checker_and_steps_like_the_env() -> None:
    wrapped = RelaxedActionWrapper(UAVNetEnv(episode_steps=20))
    check_env(wrapped, warn=True, skip_render_check=True)
    env = UAVNetEnv(episode_steps=20)
    obs_w, _ = wrapped.reset(seed=7)
    obs_e, _ = env.reset(seed=7)
    np.testing.assert_array_equal(obs_w, obs_e)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(-1, 1, 12).astype(np.float32)
        decoded = UAV.decode(a[None])
        single = {"transfer": decoded["transfer"][0], "intensity": decoded["intensity"][0]}
        out_w, out_e = wrapped.step(a), env.step(single)
        np.testing.assert_array_equal(out_w[0], out_e[0])
        assert out_w[1:4] == out_e[1:4]
    assert out_w[3]  # the episode was truncated at 20 steps


@pytest.mark.parametrize("make", [ReachEnv, GoalEnv])
def test_gym_wrapper_on_parameterised_toys(make: type[gym.Env]) -> None:
    wrapped = RelaxedActionWrapper(make())
    check_env(wrapped, warn=True, skip_render_check=True)
    # The right action with exact parameters through the wrapper: Reach pays 1 at the target.
    reach = RelaxedActionWrapper(ReachEnv())
    obs, _ = reach.reset(seed=3)
    k = int(np.argmax(obs[:3]))
    a = np.full(6, -1.0, np.float32)
    a[:2] = obs[3:5]  # point target, already in [-1, 1]
    a[2] = obs[5] * 2.0 - 1.0  # dial target / 4 in [0, 1] -> [-1, 1]
    a[3 + k] = 1.0
    _, reward, terminated, _, info = reach.step(a)
    assert terminated and info["success"] == 1.0 and reward == pytest.approx(1.0, abs=1e-6)
