"""Smoke runs: each SB3 baseline trains a few hundred steps on the UAV env through the
relaxation, is saved, loaded back, and scored by our evaluation on the CRN episodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from impala_hybrid.algos.sb3 import SB3Config, SB3Policy, load_sb3, train_sb3
from impala_hybrid.algos.sb3.train import (
    CONFIG_FILE,
    MODEL_FILE,
    MONITOR_FILE,
    NORMALIZE_FILE,
    RUN_FILE,
)
from impala_hybrid.envs.heuristics import make_heuristic
from impala_hybrid.evaluation.episodes import evaluate_episodes
from impala_hybrid.evaluation.rollout import evaluate

EPISODE = 50  # steps per UAV episode in these tests
#: Tiny runs: a few updates each (the zoo's learning_starts and n_steps would allow none).
SMOKE = {
    "a2c": {"n_steps": 8},
    "ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
    "sac": {"learning_starts": 100, "batch_size": 64},
    "td3": {"learning_starts": 100, "batch_size": 64},
}


@pytest.mark.parametrize(
    ("algo", "normalize"), [(algo, False) for algo in sorted(SMOKE)] + [("a2c", True)]
)
def test_smoke_train_save_load_and_evaluate_on_the_uav_env(
    algo: str, normalize: bool, tmp_path: Path
) -> None:
    cfg = SB3Config(
        algo=algo, total_steps=400, n_envs=4, env_kwargs={"episode_steps": EPISODE},
        hyperparams=SMOKE[algo], seed=1, normalize=normalize,
    )  # fmt: skip
    run = train_sb3(cfg, out_dir=tmp_path)
    assert run.env_steps >= 400
    for name in (MODEL_FILE, CONFIG_FILE, MONITOR_FILE, RUN_FILE):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / NORMALIZE_FILE).is_file() == normalize
    episodes = (tmp_path / MONITOR_FILE).read_text().splitlines()[2:]  # after two header lines
    assert len(episodes) >= 400 // EPISODE  # VecMonitor logged every finished episode
    assert json.loads((tmp_path / RUN_FILE).read_text())["env_steps"] == run.env_steps

    loaded = load_sb3(tmp_path)
    assert loaded.config == cfg and loaded.policy.relaxation is not None
    if normalize:  # the statistics were learned, then frozen, and came back with the model
        norm, back = run.policy.normalizer, loaded.policy.normalizer
        assert norm is not None and back is not None and not back.training
        assert norm.obs_rms.count > 400 and norm.obs_rms.var.std() > 0
        np.testing.assert_array_equal(back.obs_rms.mean, norm.obs_rms.mean)
    # Our evaluation, on the same CRN episodes as the classical policies.
    scores = [
        evaluate(p, episodes=1, num_envs=4, seed=0, max_steps=EPISODE)
        for p in (run.policy, loaded.policy, make_heuristic("threshold"))
    ]
    trained, reloaded, classical = (s.per_episode for s in scores)
    np.testing.assert_array_equal(trained["r"], reloaded["r"])
    assert np.isfinite(trained["r"]).all() and not np.array_equal(trained["r"], classical["r"])
    # Greedy actions are valid env actions (the env raises on anything out of range).
    action = loaded.policy(np.random.default_rng(0).uniform(0, 1, (5, 29)).astype(np.float32))
    assert action["transfer"].shape == (5,) and action["intensity"].shape == (5, 6)


def test_training_is_reproducible_for_a_seed() -> None:
    cfg = SB3Config(algo="ppo", total_steps=128, n_envs=2, env_kwargs={"episode_steps": EPISODE},
                    hyperparams=SMOKE["ppo"], seed=3)  # fmt: skip
    obs = np.random.default_rng(0).uniform(0, 1, (8, 29)).astype(np.float32)
    a, b = (train_sb3(cfg).policy(obs) for _ in range(2))
    np.testing.assert_array_equal(a["intensity"], b["intensity"])
    np.testing.assert_array_equal(a["transfer"], b["transfer"])


def test_policy_adapter_on_another_env_through_evaluate_episodes() -> None:
    """A parameterised toy (``module:factory``) is evaluated by ``evaluate_episodes``."""
    env = "impala_hybrid.envs.param_toys:reach"
    run = train_sb3(SB3Config(algo="sac", env=env, total_steps=200, hyperparams=SMOKE["sac"]))
    assert isinstance(run.policy, SB3Policy)
    stats = evaluate_episodes(run.policy, env, 16, 0, num_envs=8, split="eval")
    assert stats.returns.shape == (16,) and "success" in stats.info


def test_validation_callback_logs_the_curve_and_keeps_the_best_model(tmp_path: Path) -> None:
    from impala_hybrid.algos.sb3.train import BEST_PREFIX, EVAL_FILE, ValidationCallback

    cfg = SB3Config(algo="a2c", total_steps=480, n_envs=4, env_kwargs={"episode_steps": EPISODE},
                    hyperparams=SMOKE["a2c"], seed=2, normalize=True)  # fmt: skip
    scores = iter([3.0, 5.0, 1.0, 4.0, 2.0, 0.0])  # a scripted validation return per call
    seen: list[SB3Policy] = []

    def evaluate(policy: SB3Policy) -> tuple[float, float, dict]:
        seen.append(policy)
        return next(scores), 0.0, {"calls": len(seen)}

    run = train_sb3(cfg, out_dir=tmp_path, callback=ValidationCallback(evaluate, 128, 4, tmp_path))
    lines = [json.loads(x) for x in (tmp_path / EVAL_FILE).read_text().splitlines()]
    # every 128 env steps (4 envs x 8 steps per update: at 128, 256, 384) and at the end
    assert [x["env_steps"] for x in lines] == [128, 256, 384, 480]
    assert [x["return_mean"] for x in lines] == [3.0, 5.0, 1.0, 4.0]
    walls = [x["wall_s"] for x in lines]
    assert walls == sorted(walls) and walls[-1] <= run.seconds + 1e-3
    # the best evaluation (5.0 at 256 steps) is the saved best model, with its statistics
    best, last = load_sb3(tmp_path, "best"), load_sb3(tmp_path, "last")
    assert (tmp_path / (BEST_PREFIX + NORMALIZE_FILE)).is_file()
    obs = np.random.default_rng(0).uniform(0, 1, (6, 29)).astype(np.float32)
    assert best.policy.normalizer is not None
    assert best.policy.normalizer.obs_rms.count < last.policy.normalizer.obs_rms.count  # type: ignore[union-attr]
    assert not np.array_equal(best.policy(obs)["intensity"], last.policy(obs)["intensity"])
    with pytest.raises(ValueError, match="checkpoint 'first' is invalid"):
        load_sb3(tmp_path, "first")


@pytest.mark.parametrize(("selection", "best_is_last"), [("mean", True), ("paired", False)])
def test_validation_callback_selects_as_the_trainer_does(
    tmp_path: Path, selection: str, best_is_last: bool
) -> None:
    """With each episode's return in the detail, ``paired`` keeps the peak over later
    evaluations that lose on every episode; ``mean`` takes them as ties within noise."""
    from impala_hybrid.algos.sb3.train import ValidationCallback

    cfg = SB3Config(algo="a2c", total_steps=480, n_envs=4, env_kwargs={"episode_steps": EPISODE},
                    hyperparams=SMOKE["a2c"], seed=2, normalize=True)  # fmt: skip
    peak = [100.0, 0.0, 50.0, 10.0]
    script = iter([[90.0, -5.0, 40.0, 5.0], peak, [p - 2.0 for p in peak], [p - 1.0 for p in peak]])

    def evaluate(policy: SB3Policy) -> tuple[float, float, dict]:
        r = next(script)
        return float(np.mean(r)), float(np.std(r, ddof=1)), {"episode_returns": r}

    cb = ValidationCallback(evaluate, 128, 4, tmp_path, selection=selection)
    train_sb3(cfg, out_dir=tmp_path, callback=cb)
    assert cb.best == 40.0 and cb.best_returns == peak
    best, last = load_sb3(tmp_path, "best"), load_sb3(tmp_path, "last")
    counts = [m.policy.normalizer.obs_rms.count for m in (best, last)]  # type: ignore[union-attr]
    assert (counts[0] == counts[1]) is best_is_last, counts  # paired: the 256-step model
    with pytest.raises(ValueError, match="selection = 'best' is invalid"):
        ValidationCallback(evaluate, 128, 4, tmp_path, selection="best")


def test_eval_cli_scores_a_baseline_run_like_any_other(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from impala_hybrid.cli import main

    cfg = SB3Config(algo="ppo", total_steps=128, n_envs=2, env_kwargs={"episode_steps": EPISODE},
                    hyperparams=SMOKE["ppo"], seed=3)  # fmt: skip
    run = train_sb3(cfg, out_dir=tmp_path / "ppo")
    out = tmp_path / "eval.json"
    args = ["eval", "--run", str(tmp_path / "ppo"), "--policy", "threshold", "--episodes", "1",
            "--num-envs", "4", "--set", f"episode_steps={EPISODE}", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    got = json.loads(out.read_text())["results"]["run:ppo"]["return"]["mean"]
    want = evaluate(run.policy, episodes=1, num_envs=4, seed=0, max_steps=EPISODE).return_mean
    assert got == pytest.approx(want)
    # on another env: evaluate_episodes with the run's own env
    pole = SB3Config(algo="a2c", env="CartPole-v1", action_space="native", total_steps=64,
                     base="sb3", n_envs=2, hyperparams={"n_steps": 8})  # fmt: skip
    train_sb3(pole, out_dir=tmp_path / "pole")
    assert main(["eval", "--run", str(tmp_path / "pole"), "--episodes", "1", "--num-envs", "2",
                 "--out", str(out)]) == 0  # fmt: skip
    assert json.loads(out.read_text())["results"]["run:pole"]["env"] == "CartPole-v1"
    capsys.readouterr()
    assert main(["export", "--run", str(tmp_path / "pole")]) == 2
    assert "is a Stable-Baselines3 run" in capsys.readouterr().err
