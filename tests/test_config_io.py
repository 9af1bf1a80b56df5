"""YAML <-> TrainConfig: shipped configs match the presets, dumps load back equal, every
unknown key or bad value is an error that names it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.experiments.config_io import (
    config_from_dict,
    dump_config,
    load_config,
    parse_set,
    save_config,
)
from impala_hybrid.experiments.spec import PRESETS, TrainConfig
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.validation import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shipped_configs_match_presets(name: str) -> None:
    assert load_config(CONFIGS / f"{name}.yaml") == PRESETS[name]()


def test_dump_loads_back_equal(tmp_path: Path) -> None:
    cfg = dataclasses.replace(
        PRESETS["uav_hybrid"](),
        env_kwargs={"episode_steps": 200, "buffer": 300},
        critic="vector",
        model=ModelConfig(hidden=(64, 32), lstm_size=8, init_log_std=-1.25),
        algo=IMPALAConfig(lr=1e-5, lr_final=None, entropy_coef_final=0.0, reward_clip=2.5),
    )
    path = save_config(cfg, tmp_path / "c.yaml")
    assert load_config(path) == cfg
    text = path.read_text()
    assert "lr: 1.0e-05  # learning rate at the start" in text
    assert "preset" not in yaml.safe_load(text)


def test_preset_key_and_layering(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("preset: cartpole\ntotal_steps: 2e5\nalgo: {lr: 1e-3}\nmodel: {hidden: [32]}\n")
    cfg = load_config(path, overrides=["algo.gamma=0.9", "seed=3"])
    base = PRESETS["cartpole"]()
    assert cfg.total_steps == 200_000 and isinstance(cfg.total_steps, int)
    assert cfg.algo.lr == 1e-3 and cfg.algo.gamma == 0.9 and cfg.seed == 3
    assert cfg.algo.unroll_length == base.algo.unroll_length  # sections merge, not replace
    assert cfg.model.hidden == (32,) and cfg.model.activation == "tanh"
    assert load_config(preset="pendulum") == PRESETS["pendulum"]()


def test_parse_set_values() -> None:
    sets = parse_set(
        [
            "algo.lr=1e-3",
            "model.hidden=[64,64]",
            "env_kwargs.episode_steps=200",
            "total_steps=1000",
            "algo.lr_final=null",
            "model.layer_norm=false",
        ]
    )
    assert sets == {
        "algo": {"lr": 0.001, "lr_final": None},
        "model": {"hidden": [64, 64], "layer_norm": False},
        "env_kwargs": {"episode_steps": 200},
        "total_steps": 1000,
    }
    cfg = config_from_dict(sets, base=PRESETS["uav_hybrid"](), source="--set")
    assert cfg.model.hidden == (64, 64) and cfg.env_kwargs == {"episode_steps": 200}


@pytest.mark.parametrize(
    ("items", "needles"),
    [
        (["algo.lrr=1"], ["--set algo.lrr=1", "'algo.lrr'", "did you mean algo.lr"]),
        (["totl_steps=1"], ["'totl_steps'", "total_steps"]),
        (["optim.lr=1"], ["'optim'"]),
        (["seed.x=1"], ["TrainConfig.seed has no sub-fields"]),
        (["algo.lr"], ["field=value"]),
        (["algo.lr=[1"], ["cannot parse", "'algo.lr'"]),
        (["algo=3"], ["TrainConfig.algo = 3", "mapping"]),
    ],
)
def test_bad_set_items(items: list[str], needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_set(items)
    for needle in needles:
        assert needle in str(info.value)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("total_stepz: 5\n", ["c.yaml: unknown TrainConfig field 'total_stepz'", "total_steps"]),
        ("model:\n  hiden: [8]\n", ["'model.hiden'", "model.hidden"]),
        ("algo:\n  gamma: 2\n", ["IMPALAConfig.gamma = 2", "[0, 1]"]),
        ("algo:\n  lr: fast\n", ["IMPALAConfig.lr = 'fast'", "number"]),
        ("model: {hidden: [0]}\n", ["ModelConfig.hidden[0] = 0"]),
        ("num_envs: 5\n", ["TrainConfig.num_envs = 5", "multiple"]),
        ("env_kwargs: {episode_step: 5}\n", ["'env_kwargs.episode_step'", "episode_steps"]),
        ("env_kwargs: {dt: -1}\n", ["UAVNetConfig.dt = -1"]),
        ("critic: both\n", ["TrainConfig.critic = 'both'"]),
        ("preset: nope\n", ["unknown preset 'nope'", "cartpole"]),
        ("- a\n- b\n", ["expected a mapping"]),
        ("algo: {lr: [1\n", ["not valid YAML"]),
    ],
)
def test_bad_files(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    for needle in needles:
        assert needle in str(info.value)


def test_overrides_apply_together_and_name_their_source() -> None:
    # Each alone would break batch_size % num_envs; applied as one layer they are valid.
    cfg = load_config(preset="cartpole", overrides=["num_envs=3", "algo.batch_size=6"])
    assert (cfg.num_envs, cfg.algo.batch_size) == (3, 6)
    with pytest.raises(ConfigError, match=r"^--set: IMPALAConfig.gamma = 3"):
        load_config(preset="cartpole", overrides=["algo.gamma=3"])


def test_dump_is_plain_yaml() -> None:
    data = yaml.safe_load(dump_config(TrainConfig()))
    assert data["model"]["hidden"] == [256, 256] and data["algo"]["lr_final"] is None


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_files_are_the_presets(name: str) -> None:
    """``configs/NAME.yaml`` is the preset fully resolved, so a new or changed default shows
    up there; ``make configs`` regenerates them."""
    path = Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml"
    assert load_config(path) == PRESETS[name]()
    assert path.read_text() == dump_config(PRESETS[name]())
