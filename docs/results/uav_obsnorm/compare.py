"""Regenerates compare.png and compare_late.png (from the repository root):
``python docs/results/uav_obsnorm/compare.py``. The UAV preset's validation curves on raw
observations (docs/results/uav/, 5 seeds) against normalised ones (this folder, 5 seeds)."""

import json

import numpy as np

from impala_hybrid.experiments.plots import plot_learning_curves


def runs(path: str, start: float = 0.0) -> tuple[list, dict]:
    with open(path) as f:
        d = json.load(f)
    out = []
    for x, y in d["curves"].values():
        x, y = np.array(x), np.array(y)
        out.append((x[x >= start] / 1e6, y[x >= start]))
    return out, d["validation_baselines"]


for start, name in ((0.0, "compare.png"), (2e6, "compare_late.png")):
    raw, base = runs("docs/results/uav/study.json", start)
    norm, _ = runs("docs/results/uav_obsnorm/study.json", start)
    plot_learning_curves(
        {"raw observations (uav/)": raw, "normalised (uav_obsnorm/)": norm},
        f"docs/results/uav_obsnorm/{name}",
        x_label="env steps (millions)",
        y_label="validation return",
        center="median",
        band="iqr",
        baselines={
            f"threshold {base['threshold']:.0f}": base["threshold"],
            f"shortest expected delay {base['shortest_expected_delay']:.0f}": base[
                "shortest_expected_delay"
            ],
        },
        title="UAV preset, 5 seeds each: median, 25-75th percentile band",
    )
