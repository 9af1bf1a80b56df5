"""``SB3Config``: validation names the field and what is allowed; hyperparameters resolve to
the SB3 arguments the zoo means."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.noise import NormalActionNoise

from impala_hybrid import ConfigError
from impala_hybrid.algos.sb3.config import ALGOS, ZOO, ZOO_STANDARD, SB3Config, zoo_preset
from impala_hybrid.algos.sb3.train import load_config, save_config, sb3_kwargs


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"algo": "dqn"}, r"SB3Config.algo = 'dqn' is invalid: must be one of \['a2c', 'ppo'"),
        ({"total_steps": 0}, r"SB3Config.total_steps = 0 is invalid: allowed range is \[1, inf\)"),
        ({"n_envs": 0}, r"SB3Config.n_envs = 0 is invalid: allowed range is \[1, inf\)"),
        ({"seed": -1}, r"SB3Config.seed = -1 is invalid"),
        ({"action_space": "box"}, r"SB3Config.action_space = 'box' is invalid"),
        ({"hyperparams": {"lr": 1e-3}}, r"hyperparams\['lr'\] is invalid for algo 'ppo'"),
        ({"hyperparams": {"noise_std": 0.1}}, r"hyperparams\['noise_std'\] is invalid for algo"),
        ({"hyperparams": {"learning_rate": "lin_x"}}, r"'lin_<number>'"),
        ({"algo": "td3", "hyperparams": {"noise_std": -0.1}}, r"allowed range is \(0, inf\)"),
    ],
)
def test_invalid_fields_name_the_field_and_the_allowed_values(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SB3Config(**changes)


def test_zoo_defaults_are_valid_sb3_arguments_and_overrides_win() -> None:
    for algo in ALGOS:
        assert SB3Config(algo=algo, hyperparams=ZOO[algo]).resolved_hyperparams() == ZOO[algo]
    cfg = SB3Config(algo="ppo", hyperparams={"learning_rate": 3e-4})
    assert cfg.resolved_hyperparams()["learning_rate"] == 3e-4
    assert cfg.resolved_hyperparams()["n_steps"] == 1024 and cfg.num_envs == 4
    assert SB3Config(algo="ppo", base="sb3").resolved_hyperparams() == {}


def test_linear_schedules_and_action_noise_become_sb3_objects() -> None:
    box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    kwargs = sb3_kwargs(SB3Config(algo="td3", hyperparams={"learning_rate": "lin_1e-3"}), box)
    assert kwargs["learning_rate"](1.0) == pytest.approx(1e-3)
    assert kwargs["learning_rate"](0.25) == pytest.approx(2.5e-4)
    noise = kwargs["action_noise"]
    assert isinstance(noise, NormalActionNoise) and "noise_std" not in kwargs
    np.testing.assert_array_equal(noise._sigma, [0.1, 0.1, 0.1])


def test_zoo_presets_copy_the_zoo_entries() -> None:
    cfg = zoo_preset("td3", "Pendulum-v1", seed=2)
    assert (cfg.total_steps, cfg.num_envs, cfg.seed, cfg.base) == (20_000, 1, 2, "sb3")
    assert cfg.resolved_hyperparams()["gamma"] == 0.98
    merged = zoo_preset("td3", "Pendulum-v1", hyperparams={"learning_starts": 1000})
    assert merged.resolved_hyperparams() == {**ZOO_STANDARD[("td3", "Pendulum-v1")]["hyperparams"],
                                             "learning_starts": 1000}  # fmt: skip
    for algo, env in ZOO_STANDARD:
        assert zoo_preset(algo, env).env == env
    assert (
        zoo_preset("a2c", "Pendulum-v1").normalize
        and not zoo_preset("sac", "Pendulum-v1").normalize
    )
    with pytest.raises(ConfigError, match="no zoo preset"):
        zoo_preset("sac", "CartPole-v1")


def test_config_round_trips_through_yaml(tmp_path: object) -> None:
    cfg = dataclasses.replace(zoo_preset("td3", "Pendulum-v1"), env_kwargs={"g": 9.81})
    path = tmp_path / "cfg.yaml"  # type: ignore[operator]
    save_config(cfg, path)
    assert load_config(path) == cfg
