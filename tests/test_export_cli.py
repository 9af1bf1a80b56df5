"""``impala-hybrid export --run``: a trained run's policy, exported and reloaded, acts the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from impala_hybrid import cli
from impala_hybrid.deploy import load_exported
from impala_hybrid.evaluation.policy import TorchPolicy
from impala_hybrid.experiments.trainer import load_run_model

TINY = [
    "--set", "total_steps=256", "--set", "num_envs=4", "--set", "algo.batch_size=4",
    "--set", "algo.unroll_length=8", "--set", "model.hidden=[16]",
    "--set", "env_kwargs.episode_steps=40", "--set", "eval_interval=0",
    "--set", "eval_episodes=4",
]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "uav"
    assert cli.main(["train", "--preset", "uav_hybrid", "--out", str(out), *TINY]) == 0
    return out


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "npz"])
def test_export_matches_the_trained_policy(run_dir: Path, fmt: str) -> None:
    assert cli.main(["export", "--run", str(run_dir), "--format", fmt]) == 0
    artifact = next((run_dir / "export").glob(f"policy.{ {'torchscript': 'pt'}.get(fmt, fmt) }"))
    deployed = load_exported(artifact)
    cfg, model = load_run_model(run_dir)
    obs = np.random.default_rng(0).random((5, 29)).astype(np.float32)
    want = TorchPolicy(model, discrete_choice=cfg.discrete_choice)(obs)
    got = deployed(obs)
    np.testing.assert_array_equal(got["transfer"], want["transfer"])
    np.testing.assert_allclose(got["intensity"], want["intensity"], atol=1e-5)
    # one observation [29] (a controller's view of one drone) gets one action, no batch axis
    want = TorchPolicy(model, discrete_choice=cfg.discrete_choice)(obs[3:4])
    deployed.reseed(0)  # a sampled choice's draws start again, as for the fresh TorchPolicy
    one = deployed(obs[3])
    assert np.shape(one["transfer"]) == () and one["transfer"] == want["transfer"][0]
    assert one["intensity"].shape == (6,)
    np.testing.assert_allclose(one["intensity"], want["intensity"][0], atol=1e-5)
    deployed.observe_done(True)  # after one observation, one done flag


@pytest.fixture(scope="module")
def sampled_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "uav_sampled"
    sets = ["--set", "discrete_choice=sample"]
    assert cli.main(["train", "--preset", "uav_hybrid", "--out", str(out), *TINY, *sets]) == 0
    return out


@pytest.mark.parametrize("fmt", ["onnx", "npz"])
def test_export_of_a_sampled_choice_run_draws_as_its_evaluation_did(
    sampled_run_dir: Path, fmt: str
) -> None:
    """``discrete_choice = sample``: the run's evaluations (``run_policy``) and its exported
    artifact (loaded at the same seed) take the same actions, transfers drawn, not argmax."""
    from impala_hybrid.experiments.trainer import run_policy

    out = sampled_run_dir / "export" / f"policy.{fmt}"
    assert (
        cli.main(["export", "--run", str(sampled_run_dir), "--format", fmt, "--out", str(out)]) == 0
    )
    cfg, model = load_run_model(sampled_run_dir)
    assert cfg.discrete_choice == "sample"
    evaluated, deployed = run_policy(cfg, model), load_exported(out, seed=0)
    obs = np.random.default_rng(1).random((64, 29)).astype(np.float32)
    for _ in range(3):
        want, got = evaluated(obs), deployed(obs)
        np.testing.assert_array_equal(got["transfer"], want["transfer"])
        np.testing.assert_allclose(got["intensity"], want["intensity"], atol=1e-5)
    greedy = TorchPolicy(model)(obs)["transfer"]
    assert not np.array_equal(want["transfer"], greedy)


def test_export_help_says_which_format_to_deploy(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Which to deploy: npz" in text and "torchscript needs torch" in text


def test_export_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", "--run", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_eval_includes_a_trained_run(run_dir: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "eval.json"
    argv = ["eval", "--policy", "local_only", "--run", str(run_dir), "--episodes", "1",
            "--num-envs", "4", "--set", "episode_steps=40", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"local_only", "run:uav"}
    assert results["run:uav"]["episodes"] == 4


def test_the_readme_deployment_example_runs(run_dir: Path) -> None:
    """README "Deployment": one observation gets one action, a batch a batch."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = readme.split("## Deployment")[1].split("```python\n")[1].split("```")[0]
    assert cli.main(["export", "--run", str(run_dir), "--format", "npz"]) == 0
    namespace: dict = {}
    exec(code.replace("runs/uav", str(run_dir)), namespace)
    assert np.shape(namespace["action"]["transfer"]) == ()
    assert namespace["action"]["intensity"].shape == (6,)
    assert namespace["actions"]["intensity"].shape == (8, 6)


def test_eval_discrete_choice_overrides_the_runs_own(sampled_run_dir: Path, tmp_path: Path) -> None:
    """``eval --discrete-choice mode`` scores a sampled-choice run at its argmax: the same
    numbers as ``run_policy`` with the config's choice replaced, and different ones from the
    run's own (drawn) choice."""
    import dataclasses
    import json

    from impala_hybrid.envs.config import UAVNetConfig
    from impala_hybrid.evaluation.rollout import evaluate
    from impala_hybrid.experiments.trainer import run_policy

    def score(*extra: str) -> float:
        out = tmp_path / "eval.json"
        argv = ["eval", "--policy", "local_only", "--run", str(sampled_run_dir),
                "--episodes", "1", "--num-envs", "8", "--set", "episode_steps=60",
                "--out", str(out), *extra]  # fmt: skip
        assert cli.main(argv) == 0
        return json.loads(out.read_text())["results"]["run:uav_sampled"]["return"]["mean"]

    cfg, model = load_run_model(sampled_run_dir)
    mode_cfg = dataclasses.replace(cfg, discrete_choice="mode")
    want = evaluate(
        run_policy(mode_cfg, model.eval()), UAVNetConfig(episode_steps=60), episodes=1,
        num_envs=8, seed=0,
    ).return_mean  # fmt: skip
    assert score("--discrete-choice", "mode") == pytest.approx(want, rel=1e-9)
    assert score() != pytest.approx(want, rel=1e-6)
    assert score("--discrete-choice", "sample") == score()
