"""Evaluation rollouts: fixed seeds, determinism, common random numbers, aggregation; tuning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from impala_hybrid.envs.config import OBJECTIVE_NAMES, UAVNetConfig
from impala_hybrid.envs.heuristics import make_heuristic
from impala_hybrid.evaluation.rollout import episode_seeds, evaluate
from impala_hybrid.evaluation.tune import candidate_grid, tune_heuristic, tuning_table

CFG = UAVNetConfig(episode_steps=200)


def run(name: str, seed: int = 0, episodes: int = 1, num_envs: int = 8, **kw):
    return evaluate(
        make_heuristic(name, CFG), CFG, episodes=episodes, num_envs=num_envs, seed=seed, **kw
    )


def test_identical_seeds_give_identical_results() -> None:
    a, b = run("threshold", seed=5), run("threshold", seed=5)
    assert a.to_dict(per_episode=True) == b.to_dict(per_episode=True)
    for key, val in a.per_episode.items():
        np.testing.assert_array_equal(val, b.per_episode[key], err_msg=key)
    c = run("threshold", seed=6)
    assert not np.array_equal(a.per_episode["r"], c.per_episode["r"])


def test_episode_set_does_not_depend_on_batching() -> None:
    a = run("maxweight", episodes=2, num_envs=4)
    b = run("maxweight", episodes=1, num_envs=8)
    for key, val in a.per_episode.items():
        np.testing.assert_array_equal(val, b.per_episode[key], err_msg=key)


def test_common_random_numbers_across_policies() -> None:
    lo, mw = run("local_only"), run("maxweight")
    for key in ("arrived_emergency", "arrived_routine"):
        np.testing.assert_array_equal(lo.per_episode[key], mw.per_episode[key])
    assert lo.per_episode["arrived_emergency"].sum() > 0
    assert not np.array_equal(lo.per_episode["r"], mw.per_episode["r"])


def test_episode_seeds_are_prefix_stable_and_splits_disjoint() -> None:
    s = episode_seeds(0, 64)
    np.testing.assert_array_equal(episode_seeds(0, 16), s[:16])
    assert s.dtype == np.int64 and np.all(s >= 0) and np.unique(s).size == 64
    assert not set(s.tolist()) & set(episode_seeds(0, 64, "train").tolist())
    assert not set(s.tolist()) & set(episode_seeds(1, 64).tolist())
    with pytest.raises(ValueError, match="split"):
        episode_seeds(0, 4, "test")


def test_result_fields_and_json() -> None:
    r = run("drift_plus_penalty", episodes=2, num_envs=3)
    assert r.episodes == 6 and r.episode_steps == 200 and r.policy == "drift_plus_penalty"
    np.testing.assert_array_equal(r.per_episode["l"], 200)
    assert r.return_mean == pytest.approx(r.per_episode["r"].mean())
    assert r.return_std == pytest.approx(r.per_episode["r"].std(ddof=1))
    d = json.loads(json.dumps(r.to_dict(per_episode=True), allow_nan=False))
    assert set(d["return"]) == {"mean", "std"}
    assert list(d["objectives"]) == list(OBJECTIVE_NAMES)
    for cls in ("emergency", "routine"):
        assert set(d["latency"][cls]) == {"p50", "p95", "p99", "cvar"}
        assert d["latency"][cls]["p50"] <= d["latency"][cls]["p95"] <= d["latency"][cls]["p99"]
    for key in ("dropped_emergency", "dropped_routine", "energy_j", "transfers_l_to_h"):
        assert key in d["metrics"]
    assert len(d["per_episode"]["return"]) == 6
    # The objectives' weighted sum minus the hinges is the scalarised return.
    obj = r.per_episode["objectives"] @ np.array(CFG.weights) - r.per_episode["hinge_penalty"]
    np.testing.assert_allclose(obj, r.per_episode["r"], rtol=1e-9, atol=1e-6)


def test_max_steps_override_and_plain_callable_policy() -> None:
    calls = []

    class Recurrent:
        def reset(self, num_envs: int) -> None:
            calls.append(num_envs)

        def __call__(self, obs: np.ndarray) -> dict:
            n = obs.shape[0]  # a torch policy would wrap its network the same way
            return {"transfer": np.zeros(n, int), "intensity": np.ones((n, 6)) * 0.5}

    r = evaluate(Recurrent(), episodes=3, num_envs=2, max_steps=20, name="half")
    assert r.policy == "half" and r.episode_steps == 20 and calls == [2, 2, 2]
    np.testing.assert_array_equal(r.per_episode["l"], 20)


def test_early_termination_records_the_first_end() -> None:
    cfg = CFG.replace(collapse_occupancy=0.1)
    r = evaluate(make_heuristic("local_only", cfg), cfg, episodes=1, num_envs=16, seed=0)
    lengths = r.per_episode["l"]
    assert lengths.min() < 200 and lengths.max() <= 200  # some episodes collapse early


def test_candidate_grid_is_reproducible() -> None:
    grid, size = candidate_grid("threshold", 10, seed=3)
    assert size == 6 * 5 * 6 * 3 * 3 and len(grid) == 10
    assert grid == candidate_grid("threshold", 10, seed=3)[0]
    full, size = candidate_grid("maxweight", 100)
    assert len(full) == size == 5
    assert candidate_grid("local_only", 10) == ([{}], 1)


def test_tune_ranks_candidates_on_training_seeds() -> None:
    res = tune_heuristic("maxweight", CFG, episodes=1, num_envs=4, seed=0, max_candidates=2)
    means = [c.result.return_mean for c in res.candidates]
    assert means == sorted(means, reverse=True) and res.best.gap == 0.0
    assert all(c.result.split == "train" for c in res.candidates)
    assert res.to_dict()["best_params"] == res.best.params
    assert tuning_table({"maxweight": res}).row_count == 2


def test_seed_splits_are_disjoint() -> None:
    """Checkpoint selection (validation), tuning (train) and reporting (eval) never share
    an episode seed, so no reported number was used to choose what is reported."""
    from impala_hybrid.evaluation.rollout import SPLITS, episode_seeds

    seeds = {split: set(episode_seeds(0, 256, split).tolist()) for split in SPLITS}
    assert set(SPLITS) == {"eval", "train", "validation"}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not seeds[a] & seeds[b], (a, b)


def test_non_finite_results_are_written_as_null_like_the_run_logs() -> None:
    """A diverged evaluation (+-inf return) must still serialise as strict JSON, with the same
    rule the trainer's eval.jsonl uses (every non-finite float is null)."""
    import dataclasses

    from impala_hybrid.experiments.trainer import _json_line

    r = dataclasses.replace(run("local_only", num_envs=2), return_mean=np.inf)
    r.objectives["latency"] = {"mean": -np.inf, "std": np.nan}
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["return"]["mean"] is None and d["objectives"]["latency"] == {"mean": None, "std": None}
    assert json.loads(_json_line({"a": [np.inf, -np.inf, np.nan, np.float32(1.5)]})) == {
        "a": [None, None, None, 1.5]
    }
