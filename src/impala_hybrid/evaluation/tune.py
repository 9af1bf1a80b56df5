"""Reproducible parameter tuning of the classical heuristics.

For each heuristic, a grid over its parameters (:data:`SEARCH_SPACES`); a grid larger than
``max_candidates`` is replaced by a random subset of that size drawn with a fixed seed, so
the candidate set depends only on ``(grid, max_candidates, seed)``. Every candidate is
evaluated on the same episodes of the ``"train"`` seed split (common random numbers across
candidates, disjoint from the ``"eval"`` seeds results are reported on), and the one with
the highest mean scalarised return wins (ties: the earlier candidate). The paired standard
error of each candidate's gap to the winner comes from the per-episode differences, which
CRN makes small.

``impala-hybrid tune-heuristics`` runs :func:`tune` and prints :func:`tuning_table`; the
winners are the defaults in ``impala_hybrid.envs.heuristics`` (docs/heuristics.md).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from rich.table import Table

from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.envs.heuristics import HEURISTICS, make_heuristic
from impala_hybrid.evaluation.rollout import EvalResult, evaluate

#: Parameter grids per heuristic (heuristics without an entry have nothing to tune).
SEARCH_SPACES: dict[str, dict[str, tuple[float, ...]]] = {
    "maxweight": {"spill": (0.0, 0.25, 0.5, 0.75, 1.0)},
    "threshold": {
        "tau": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
        "q_low": (0.0, 0.05, 0.1, 0.25, 0.5),
        "q_high": (0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
        "u_mid": (0.25, 0.5, 0.75),
        "spill": (0.25, 0.5, 1.0),
    },
    "drift_plus_penalty": {
        "v": (8.0, 16.0, 32.0, 64.0, 128.0, 256.0),
        "w_e": (0.25, 0.5, 1.0, 2.0, 4.0),
        "spill": (0.25, 0.5, 1.0),
    },
    "shortest_expected_delay": {
        "horizon": (0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
        "spill": (0.0, 0.25, 0.5, 1.0),
    },
}


@dataclasses.dataclass
class Candidate:
    """One evaluated parameter setting."""

    params: dict[str, float]
    result: EvalResult
    gap: float = 0.0  # mean return minus the winner's (<= 0)
    gap_se: float = 0.0  # paired standard error of the gap


@dataclasses.dataclass
class TuneResult:
    """All candidates of one heuristic, best first."""

    policy: str
    candidates: list[Candidate]
    grid_size: int

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "grid_size": self.grid_size,
            "best_params": self.best.params,
            "candidates": [
                {
                    "params": c.params,
                    "return": {"mean": c.result.return_mean, "std": c.result.return_std},
                    "gap": c.gap,
                    "gap_se": c.gap_se,
                }
                for c in self.candidates
            ],
        }


def candidate_grid(name: str, max_candidates: int, seed: int = 0) -> tuple[list[dict], int]:
    """The parameter settings to try for heuristic ``name`` and the full grid's size.

    The whole grid if it has at most ``max_candidates`` points, else a random subset of that
    size (NumPy ``default_rng(seed)``, kept in grid order).
    """
    space = SEARCH_SPACES.get(name, {})
    keys = list(space)
    grid = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*space.values())]
    if len(grid) > max_candidates:
        pick = np.random.default_rng(seed).choice(len(grid), size=max_candidates, replace=False)
        grid = [grid[i] for i in sorted(pick.tolist())]
    return grid, math.prod(len(v) for v in space.values())


def tune_heuristic(
    name: str,
    config: UAVNetConfig | None = None,
    *,
    episodes: int = 2,
    num_envs: int = 64,
    seed: int = 0,
    max_candidates: int = 64,
    progress: Callable[[str, int, int], None] | None = None,
) -> TuneResult:
    """Evaluate every candidate of ``name`` on the same training episodes; best first."""
    cfg = config if config is not None else UAVNetConfig()
    grid, size = candidate_grid(name, max_candidates, seed)
    cands = []
    for i, params in enumerate(grid):
        policy = make_heuristic(name, cfg, **params)
        res = evaluate(
            policy, cfg, episodes=episodes, num_envs=num_envs, seed=seed, split="train", name=name
        )
        cands.append(Candidate(params=params, result=res))
        if progress is not None:
            progress(name, i + 1, len(grid))
    # Stable sort: ties keep grid order.
    cands.sort(key=lambda c: -c.result.return_mean)
    best_r = cands[0].result.per_episode["r"]
    for c in cands:
        diff = c.result.per_episode["r"] - best_r
        c.gap = float(diff.mean())
        c.gap_se = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else 0.0
    return TuneResult(policy=name, candidates=cands, grid_size=size)


def tune(
    names: Sequence[str] | None = None,
    config: UAVNetConfig | None = None,
    **kwargs: Any,
) -> dict[str, TuneResult]:
    """:func:`tune_heuristic` for each of ``names`` (default: every heuristic with a grid)."""
    names = list(SEARCH_SPACES) if names is None else list(names)
    for name in names:
        if name not in HEURISTICS:
            raise KeyError(f"unknown heuristic {name!r}; valid names: {', '.join(HEURISTICS)}")
    return {name: tune_heuristic(name, config, **kwargs) for name in names if name in SEARCH_SPACES}


def _fmt_params(params: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in params.items())


def tuning_table(results: dict[str, TuneResult], top: int = 5) -> Table:
    """A rich table: the ``top`` candidates of each heuristic with their paired gaps."""
    table = Table(title="Heuristic tuning (train seeds, CRN across candidates)")
    for col, justify in (
        ("policy", "left"),
        ("rank", "right"),
        ("params", "left"),
        ("return", "right"),
        ("gap to best ± paired SE", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, res in results.items():
        for rank, c in enumerate(res.candidates[:top], start=1):
            r = c.result
            table.add_row(
                name if rank == 1 else "",
                f"{rank}/{len(res.candidates)}",
                _fmt_params(c.params),
                f"{r.return_mean:.1f} ± {r.return_std:.1f}",
                "-" if rank == 1 else f"{c.gap:.1f} ± {c.gap_se:.1f}",
            )
        table.add_section()
    return table
