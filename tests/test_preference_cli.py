"""A preference-conditioned run from the CLI alone (issue 12's interfaces): train on the
two-objective toy, evaluate it at two preferences with ``eval --weights``, export it with
the weight input described in the sidecar, and run the exported policy at a preference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from impala_hybrid import cli
from impala_hybrid.deploy import load_exported

TRAIN = [
    "--preset", "pendulum", "--set", "env=impala_hybrid/TradeOff-v0", "env_kwargs={}",
    "critic=vector", "preference=dirichlet", "total_steps=40000", "num_envs=32",
    "algo.batch_size=32", "algo.unroll_length=4", "algo.lr=0.003", "algo.lr_final=null",
    "algo.entropy_coef=0.001", "algo.gamma=0.0", "algo.reward_scale=1.0",
    "algo.normalize_advantages=false", "model.hidden=[64,64]", "model.layer_norm=false",
    "model.activation=tanh", "eval_interval=20000", "eval_episodes=8", "log_interval=50",
]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tradeoff"
    assert cli.main(["train", "--out", str(out), *TRAIN]) == 0
    return out


def test_eval_weights_score_each_preference_near_its_optimum(run_dir: Path, tmp_path: Path) -> None:
    """Under w the best return is sqrt(w1^2 + w2^2) (at a* = w1^2 / (w1^2 + w2^2)); the one
    policy gets within 3% of it at both ends of the front."""
    for w in ((0.9, 0.1), (0.1, 0.9)):
        out = tmp_path / f"eval_{w[0]}.json"
        args = ["eval", "--run", str(run_dir), "--weights", f"{w[0]},{w[1]}", "--out", str(out)]
        assert cli.main([*args, "--episodes", "1", "--num-envs", "8"]) == 0
        (result,) = json.loads(out.read_text())["results"].values()
        assert result["env_kwargs"]["weights"] == pytest.approx(list(w))
        assert result["return"]["mean"] >= 0.97 * float(np.hypot(*w)), (w, result["return"])


def test_bad_weights_are_clear_errors(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["eval", "--run", str(run_dir), "--weights", "1,0,0"]) == 2
    assert "preference weights = [1.0, 0.0, 0.0] is invalid: 2 finite" in capsys.readouterr().err
    assert cli.main(["eval", "--run", str(run_dir), "--weights", "a,b"]) == 2
    assert "comma-separated numbers" in capsys.readouterr().err
    assert cli.main(["eval", "--run", str(run_dir), "--weights=-1,2"]) == 2
    assert "numbers >= 0 with a positive sum" in capsys.readouterr().err


def test_export_carries_the_weight_input(run_dir: Path) -> None:
    assert cli.main(["export", "--run", str(run_dir), "--format", "npz"]) == 0
    path = run_dir / "export" / "policy.npz"
    meta = json.loads(path.with_suffix(".npz.json").read_text())
    pref = meta["observation"]["preference"]
    assert meta["observation"]["dims"] == 3 and pref["first_index"] == 1
    assert pref["objectives"] == ["objective_0", "objective_1"]
    policy = load_exported(path)
    for w1, w2 in ((0.9, 0.1), (0.1, 0.9)):
        a = float(np.asarray(policy(np.array([[0.0, w1, w2]], np.float32))).reshape(-1)[0])
        assert a == pytest.approx(w1**2 / (w1**2 + w2**2), abs=0.06)
