"""Experiment helpers: presets validate; the multi-seed study trains, evaluates held-out
episodes, and writes its JSON, table and plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from impala_hybrid.experiments.spec import PRESETS
from impala_hybrid.experiments.study import main, paired_interval


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_configs(name: str) -> None:
    cfg = PRESETS[name]()
    assert cfg.total_steps > 0 and cfg.algo.batch_size % cfg.num_envs == 0


def test_paired_interval() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(0.0, 10.0, 400)
    mean, lo, hi = paired_interval(b + 1.0 + rng.normal(0, 0.1, 400), b)
    assert mean == pytest.approx(1.0, abs=0.02) and lo < mean < hi and hi - lo < 0.05
    assert paired_interval(b, b) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="two or more"):
        paired_interval(b[:1], b[:1])


def test_study_tiny(tmp_path: Path) -> None:
    out, runs = tmp_path / "out", tmp_path / "runs"
    args = ["--out", str(out), "--runs", str(runs), "--seeds", "0", "1", "--runtime", "serial",
            "--episodes", "4", "--num-envs", "4", "--set", "env_kwargs.episode_steps=40",
            "total_steps=640", "num_envs=4", "eval_interval=320", "eval_episodes=4",
            "model.hidden=[16]", "algo.unroll_length=8", "algo.batch_size=4"]  # fmt: skip
    assert main(args) == 0
    data = json.loads((out / "study.json").read_text())
    assert data["held_out"]["episodes"] == 4 and data["seeds"] == [0, 1]
    assert set(data["results"]) >= {"threshold", "maxweight", "seed0/best", "seed1/last"}
    summary = data["summary"]
    assert [s["run"] for s in summary["seeds"]] == ["seed0", "seed1"]
    # Best on every objective at once dominates every classical policy's own trade-off.
    assert summary["composite_classical_return"] >= summary["best_classical_return"]
    assert data["curves"]["seed0"][0] == [320, 640]  # validation evaluations over env steps
    assert (out / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "IMPALA-Hybrid seed1 (best.pt)" in (out / "table.md").read_text()
    assert main(args) == 0  # finished runs are not retrained
    assert data["curves"] == json.loads((out / "study.json").read_text())["curves"]


def test_study_rejects_episodes_that_are_not_whole_rounds(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path), "--runs", str(tmp_path), "--episodes", "100"])
    assert e.value.code == 2
    assert "--episodes 100 must be a positive multiple of --num-envs 64" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing trained
