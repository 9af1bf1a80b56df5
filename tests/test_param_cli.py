"""A custom parameterised-action env (``module:factory``) is trained, evaluated with its
success rate and exported from the CLI alone (issue 13's "done when")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from impala_hybrid import cli
from impala_hybrid.deploy import load_exported
from impala_hybrid.evaluation.policy import TorchPolicy
from impala_hybrid.experiments.trainer import load_run_model
from tests.deploy import assert_actions_match

ENV = "impala_hybrid.envs.param_toys:goal"
TINY = [
    "--preset", "param_choice", "--set", f"env={ENV}", "total_steps=1024", "num_envs=8",
    "algo.batch_size=8", "algo.unroll_length=8", "model.hidden=[16]", "eval_interval=512",
    "eval_episodes=8", "checkpoint_interval=512",
]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "goal"
    assert cli.main(["train", "--out", str(out), *TINY]) == 0
    return out


def test_training_evaluations_log_the_success_rate(run_dir: Path) -> None:
    evals = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert [e["env_steps"] for e in evals] == [512, 1024]
    for e in evals:
        assert 0.0 <= e["info"]["success"] <= 1.0 and e["length_mean"] >= 1.0


def test_eval_run_reports_success_on_any_env(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "eval.json"
    args = ["eval", "--run", str(run_dir), "--episodes", "2", "--num-envs", "4", "--out", str(out)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "success" in printed and ENV in printed
    result = json.loads(out.read_text())["results"][f"run:{run_dir.name}"]
    assert result["episodes"] == 8 and result["env"] == ENV
    assert set(result["info"]) == {"success"} and result["length"]["mean"] >= 1.0
    assert cli.main([*args[:-2], "--set", "episode_steps=3"]) == 2  # UAV overrides: refused


@pytest.mark.parametrize("fmt", ["npz", "onnx"])
def test_export_of_a_parameterized_policy(run_dir: Path, fmt: str) -> None:
    assert cli.main(["export", "--run", str(run_dir), "--format", fmt]) == 0
    deployed = load_exported(run_dir / "export" / f"policy.{fmt}")
    _, model = load_run_model(run_dir)
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 4)).astype(np.float32)
    want = TorchPolicy(model.eval())(obs)
    got = deployed(obs)
    assert_actions_match(got, want)
    assert [p.shape for p in got[1]] == [(5, 1), (5, 1), (5, 0)]  # each action's own Box
