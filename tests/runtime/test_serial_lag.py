"""``TrainConfig.serial_lag``: the serial runtime's actor acts with the weights of k learner
steps ago (deterministic off-policy data for V-trace's clipping ablations)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.experiments.trainer import start_run
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.runtime.serial import SerialRun
from impala_hybrid.validation import ConfigError
from tests.runtime.resume import assert_resumes_exactly


def _cfg(lag: int, steps: int = 8) -> TrainConfig:
    algo = IMPALAConfig(unroll_length=8, batch_size=4, rho_bar=1.0, c_bar=1.0)
    return TrainConfig(env="impala_hybrid/UAVNet-v0", env_kwargs={"episode_steps": 30},
                       num_envs=4, total_steps=8 * 4 * steps, log_interval=1, serial_lag=lag,
                       model=ModelConfig(hidden=(16,)), algo=algo)  # fmt: skip


def test_the_actor_acts_with_the_weights_of_k_steps_ago() -> None:
    lag = 3
    run = SerialRun(_cfg(lag))
    assert run.actor.model is not run.learner.model
    history = [{k: v.clone() for k, v in run.learner.model.state_dict().items()}]
    for n in range(6):
        record = run.step()
        history.append({k: v.clone() for k, v in run.learner.model.state_dict().items()})
        assert record is not None
        # the unroll of step n was played with the weights after max(0, n - lag) updates
        assert record["policy_lag_mean"] == pytest.approx(min(n, lag))
        acted = run.actor.model.state_dict()
        for k, v in history[max(0, n - lag)].items():
            assert torch.equal(acted[k], v), (n, k)


def test_without_lag_the_ratios_are_one_and_with_it_they_are_not() -> None:
    def log_rho(lag: int) -> float:
        run = SerialRun(_cfg(lag))
        records = [run.step() for _ in range(6)]
        return max(r["log_rho_abs"] for r in records if r is not None)

    on_policy, lagged = log_rho(0), log_rho(2)
    assert on_policy < 1e-5  # the learner's own model: ratios 1 up to float rounding
    assert lagged > 100 * max(on_policy, 1e-6), (on_policy, lagged)


def test_a_lagged_run_resumes_exactly() -> None:
    assert_resumes_exactly(_cfg(2), stop_after=4)  # the snapshots are in the checkpoint


def test_lag_is_refused_where_it_would_be_ignored(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"serial_lag = 2 is invalid with runtime 'local'"):
        start_run(_cfg(2), tmp_path / "run", runtime="local")
    with pytest.raises(ConfigError, match=r"TrainConfig\.serial_lag = -1"):
        _cfg(-1)
