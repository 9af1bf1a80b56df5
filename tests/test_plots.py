"""Each report figure writes a non-empty PNG from small real arrays; bad input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from impala_hybrid.envs.config import CLASS_NAMES, N_INTENSITY, UAVNetConfig
from impala_hybrid.envs.sim import UAVNetSim
from impala_hybrid.evaluation.aggregate import aggregate, probability_of_improvement
from impala_hybrid.experiments import plots
from impala_hybrid.validation import ConfigError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path, min_px: int = 200) -> None:
    import matplotlib.image

    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.shape[0] >= min_px and image.shape[1] >= min_px
    assert image[..., :3].std() > 0.01  # something was drawn


def _runs(rng: np.random.Generator, n: int, offset: float) -> list:
    out = []
    for _ in range(n):
        steps = np.arange(0, 10_000, 1_000)
        seconds = np.cumsum(rng.uniform(0.5, 1.5, steps.size))
        values = offset + np.log1p(steps / 1000) + rng.normal(0, 0.2, steps.size)
        out.append((steps, seconds, values))
    return out


def test_learning_curves(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    runs = {"A": _runs(rng, 3, 0.0), "B": _runs(rng, 4, 0.5)}
    by_steps = {a: [(s, v) for s, _, v in r] for a, r in runs.items()}
    by_seconds = {a: [(t, v) for _, t, v in r] for a, r in runs.items()}
    out = plots.plot_learning_curves(by_steps, tmp_path / "steps.png", baselines={"MW": 2.0})
    _check_png(out)
    out = plots.plot_learning_curves(
        by_seconds, tmp_path / "sub" / "seconds.png", x_label="seconds", band="bootstrap",
        points=12, reps=100,
    )  # fmt: skip
    assert out == tmp_path / "sub" / "seconds.png"
    _check_png(out)


def test_objective_bars_and_interval_estimates(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    returns = {"A": rng.normal(size=(4, 6)), "B": rng.normal(1.0, size=(4, 6))}
    per_objective = {
        a: [aggregate({a: x[:, k : k + 1]}, metrics=("iqm",), reps=100)[a]["iqm"] for k in range(6)]
        for a, x in returns.items()
    }
    _check_png(plots.plot_objective_bars(per_objective, tmp_path / "bars.png"))
    table = aggregate(returns, reps=100)
    _check_png(plots.plot_interval_estimates(table, tmp_path / "iqm.png"))
    poi = probability_of_improvement(returns, reps=100)
    _check_png(plots.plot_probability_of_improvement(poi, tmp_path / "poi.png"), min_px=100)


def test_pareto_projections(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    points = {"A": rng.normal(size=(8, 6)), "B": rng.normal(0.3, size=(5, 6))}
    _check_png(plots.plot_pareto_projections(points, tmp_path / "pareto.png"))
    three = {"A": rng.normal(size=(8, 3))}
    out = plots.plot_pareto_projections(three, tmp_path / "p3.png", objective_names="xyz")
    _check_png(out)


def test_latency_cdfs_from_simulator_histograms(tmp_path: Path) -> None:
    cfg = UAVNetConfig(episode_steps=60)
    latencies = {}
    for name, speed in (("slow", 0.0), ("fast", 1.0)):
        sim = UAVNetSim(cfg, 8)
        sim.seed(np.arange(8))
        sim.reset()
        for _ in range(60):
            sim.step(np.zeros(8, np.int64), np.full((8, N_INTENSITY), speed))
        hist = sim.state.ep_hist.sum(axis=0)  # [class, tier, age]
        cells = cfg.derived().latency
        latencies[name] = {
            c: (cells[k].ravel(), hist[k].ravel()) for k, c in enumerate(CLASS_NAMES)
        }
    deadlines = {"emergency": cfg.deadline_emergency, "routine": cfg.deadline_routine}
    _check_png(plots.plot_latency_cdfs(latencies, tmp_path / "lat.png", deadlines=deadlines))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: plots.plot_learning_curves({}, p), "runs is invalid"),
        (lambda p: plots.plot_learning_curves({"A": []}, p), r"runs\['A'\]"),
        (lambda p: plots.plot_learning_curves({"A": [(np.arange(3), np.ones(3))]}, p / "x.pdf"),
         r"\.png"),
        (lambda p: plots.plot_objective_bars({"A": []}, p), "one interval per objective"),
        (lambda p: plots.plot_pareto_projections({"A": np.ones((2, 5))}, p), r"\[n, 6\]"),
        (lambda p: plots.plot_latency_cdfs({"A": {"e": (np.ones(3), np.ones(2))}}, p),
         "values"),
        (lambda p: plots.plot_interval_estimates({"A": {}}, p, metrics=["iqm"]), "lacks"),
        (lambda p: plots.plot_interval_estimates({"A": {}}, p), "at least one metric"),
    ],
)  # fmt: skip
def test_bad_input(tmp_path: Path, call, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call(tmp_path / "f.png" if "pdf" not in match else tmp_path)
