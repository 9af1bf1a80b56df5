"""Experiment helpers: presets validate, the UAV learning curve has its structure."""

from __future__ import annotations

import dataclasses

import pytest

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.experiments.curve import learning_curve, markdown
from impala_hybrid.experiments.spec import PRESETS, uav_hybrid
from impala_hybrid.models.actor_critic import ModelConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_configs(name: str) -> None:
    cfg = PRESETS[name]()
    assert cfg.total_steps > 0 and cfg.algo.batch_size % cfg.num_envs == 0


def test_learning_curve_tiny_run() -> None:
    cfg = dataclasses.replace(
        uav_hybrid(),
        env_kwargs={"episode_steps": 40},
        num_envs=4,
        total_steps=640,
        log_interval=1,
        model=ModelConfig(hidden=(16,)),
        algo=IMPALAConfig(unroll_length=8, batch_size=4),
    )
    result = learning_curve(cfg, eval_every=320, eval_envs=4)
    steps = [p["env_steps"] for p in result["curve"]]
    assert steps == [32.0, 352.0]  # first record, then every 320 env steps
    assert set(result["baselines"]) == {"local_only", "maxweight"}
    table = markdown(result)
    assert "maxweight (reference)" in table and "| 352 |" in table
