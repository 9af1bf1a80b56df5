"""The Pareto study's machinery (experiments/pareto_study.py) on a tiny budget: equal env
steps per set, every policy set evaluated on the same episodes, real HV and EU numbers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.experiments import pareto_study
from impala_hybrid.experiments.study import train_seeds
from tests.runtime import uav


def test_weight_set_and_equal_budgets() -> None:
    w0 = np.array(UAVNetConfig().weights)
    w = pareto_study.study_weights(w0)
    assert w.shape == (7, 6)
    np.testing.assert_allclose(w.sum(1), 1.0)
    np.testing.assert_allclose(w[0], w0 / w0.sum())
    assert all(w[1 + i, i] > w[0, i] for i in range(6))  # each leans toward one objective
    runs = pareto_study.study_configs(uav(7000), 7000)
    assert runs["conditioned"].preference == "dirichlet" and runs["conditioned"].algo.popart
    fixed = [c for name, c in runs.items() if name.startswith("fixed_")]
    assert sum(c.total_steps for c in fixed) == runs["conditioned"].total_steps == 7000
    assert [tuple(c.env_kwargs["weights"]) for c in fixed] == [tuple(x) for x in w.tolist()]


def test_a_tiny_study_reports_hypervolume_and_expected_utility(tmp_path: Path) -> None:
    base = dataclasses.replace(uav(7 * 64), eval_interval=0, eval_episodes=2)
    for name, cfg in pareto_study.study_configs(base, 7 * 64).items():
        train_seeds(cfg, [0], tmp_path / name, "serial")
    result = pareto_study.evaluate_sets(tmp_path, base, episodes=1, num_envs=2, seed=0)
    sets = result["sets"]
    sizes = [len(sets[k]["points"]) for k in ("conditioned", "fixed sweep", "classical")]
    assert sizes == [7, 7, 5]
    for s in sets.values():
        assert s["hypervolume"] > 0.0 and np.isfinite(s["expected_utility"])
    # a policy's point does not depend on the weights it is scored with; EU is the best
    # scalarised return per weight, averaged: at least any one point's mean score
    w = np.array(result["weights"])
    pts = np.array(sets["classical"]["points"])
    assert sets["classical"]["expected_utility"] == pytest.approx((w @ pts.T).max(1).mean())
    table = pareto_study.markdown(result, 7 * 64)
    assert "| fixed sweep | 7 |" in table and "1.000x" in table
