"""The pipeline benchmark's report: verdicts follow the numbers, RLlib's row is optional."""

from __future__ import annotations

from typing import Any

import pytest
from benchmarks import pipeline

from impala_hybrid.validation import ConfigError


def _results(fps: float, rllib: dict[str, Any] | None) -> dict[str, Any]:
    layouts = [
        {"cfg": pipeline.bench_config(*k), "actor": 120e3, "learner": 110e3, "fps": fps,
         "learner_wait_frac": 0.0, "policy_lag_mean": 2.0}
        for k in pipeline.LAYOUTS
    ]  # fmt: skip
    return {"layouts": layouts, "rllib": rllib}


RLLIB = {
    "ray": "2.60.0", "gymnasium": "1.2.2", "torch": "2.13.0", "seconds": 60.0,
    "layout": "1 env runner(s) x 64 envs, num_learners=0", "trained_fps": 5000,
    "rllib_timers_s": {"env_runner_sample_call": 0.5, "env_step": 0.0005,
                       "module_inference": 0.0014, "learner_update": 0.04},
    "cores_used_by_rllib": 1.9, "cores_used_by_other_work": 0.0, "notes": ["a", "b"],
}  # fmt: skip


def test_report_verdicts_and_ratio() -> None:
    met = pipeline.report(_results(104e3, RLLIB))
    assert "**met** (1.04x)" in met and "efficiency 0.95, target 0.8 **met**" in met
    assert "91% of its shared-core bound" in met  # 1 actor + learner on 2 cores: 114.8k
    assert "(2 actor(s) x 32 envs, B = 32, 104,000 env steps/s): **1.00x**" in met
    assert "| 104,000 | **20.8x** |" in met
    missed = pipeline.report(_results(60e3, None))
    assert "**missed** (0.60x)" in missed and "target 0.8 **missed**" in missed
    assert "setup_rllib.sh" in missed
    failed = pipeline.report(_results(60e3, {"error": "TimeoutExpired: too slow"}))
    assert "the run failed (TimeoutExpired: too slow)" in failed


def test_scaling_summary_leaves_start_up_out_and_reports_ratios() -> None:
    from benchmarks import scaling

    # 100 steps/s while starting (the first quarter), 1000 steps/s after
    metrics = [
        {"env_steps": s, "wall_s": w, "fps": 1.0, "fps_runtime": s / w, "policy_lag_mean": lag,
         "learner_wait_frac": 0.5}
        for s, w, lag in ((100, 1.0, 9.0), (300, 2.0, 1.0), (1300, 3.0, 2.0), (2300, 4.0, 4.0))
    ]  # fmt: skip
    local = scaling.summarise(metrics, steps=1200)
    assert local["fps"] == 1000.0 and local["lag"] == 3.0 and local["fps_run"] == 575.0
    ray = {**local, "fps": 500.0, "overhead": 0.25, "call_ms": 4.0, "other_cores": 0.0}
    table = scaling.report([("a", {**local, "other_cores": 0.5}), ("b", ray)])
    assert "| `a` | 1,000 | 1.00x | 575 | 3.0 | 50% | - | 0.50 cores |" in table
    assert "| `b` | 500 | 0.50x | 575 | 3.0 | 50% | 25% (4.0 ms) | 0.00 cores |" in table


def test_learner_device_benchmark_runs_on_the_cpu() -> None:
    """The script prepared for a GPU session runs here on the CPU: a rate, a step time."""
    from benchmarks.learner_device import learner_rate

    rate, ms, peak = learner_rate(4, "cpu", seconds=0.2)
    assert rate > 0.0 and ms > 0.0 and peak != peak  # no device memory on the CPU (NaN)
    # --set overrides reach the learner's config: a learner option (an action critic needs
    # the squashed Gaussian, not the preset's Beta), and a clear error
    gauss = "model.continuous_kind=squashed_gaussian"
    rate, _, _ = learner_rate(4, "cpu", 0.2, [gauss, "algo.continuous_pg=qprop"])
    assert rate > 0.0
    with pytest.raises(ConfigError, match="continuous_pg"):
        learner_rate(4, "cpu", 0.2, ["algo.continuous_pg=deterministic"])
