"""Progress records shared by the runtimes: learner metrics averaged over a log interval.

One record every ``log_interval`` learner steps (and at the last one): the mean of each
learner metric over the interval, the env steps so far, the episodes completed in the whole
run and the mean return of those completed in the interval. Its state is part of a
checkpoint so a resumed run writes the same records as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from impala_hybrid.models.actor_critic import ActorCritic
    from impala_hybrid.runtime.config import TrainConfig
    from impala_hybrid.types import Batch


class LearnerView(Protocol):
    """What a runtime's loop and the trainer read of a learner: a
    :class:`~impala_hybrid.algos.impala.learner.Learner` in this process, or the driver's
    handle on learners in Ray actors (:class:`~impala_hybrid.runtime.ray.RemoteLearner`)."""

    version: int  # successful updates so far
    samples: int  # env steps consumed

    @property
    def model(self) -> ActorCritic:
        """The current weights, in this process (evaluation reads them)."""
        ...

    def step(self, batch: Batch, env_steps: int | None = None) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Budget:
    """``env_steps`` and ``done`` of every runtime: the learner's samples against the budget."""

    cfg: TrainConfig
    learner: LearnerView

    @property
    def env_steps(self) -> int:
        return self.learner.samples

    @property
    def done(self) -> bool:
        return self.learner.samples >= self.cfg.total_steps


class Progress:
    """Accumulates learner metrics and episode returns between records."""

    def __init__(self, log_interval: int) -> None:
        self.log_interval = log_interval
        self.episodes = 0  # completed in the whole run (survives resume)
        self._window: list[float] = []
        self._sums: dict[str, float] = {}
        self._count = 0

    def add(self, metrics: dict[str, float], episode_returns: Iterable[float]) -> None:
        for k, v in metrics.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1
        returns = list(episode_returns)
        self.episodes += len(returns)
        self._window.extend(returns)

    def record(self, env_steps: int, last: bool) -> dict[str, float] | None:
        """The record if one is due (every ``log_interval`` adds, or ``last``), else None."""
        if self._count == 0 or (self._count < self.log_interval and not last):
            return None
        record = {k: v / self._count for k, v in self._sums.items()}
        record["env_steps"] = float(env_steps)
        record["episodes"] = float(self.episodes)
        record["episode_return"] = float(np.mean(self._window)) if self._window else float("nan")
        self._sums, self._count, self._window = {}, 0, []
        return record

    def state_dict(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes,
            "window": list(self._window),
            "sums": dict(self._sums),
            "count": self._count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.episodes = int(state["episodes"])
        self._window = [float(x) for x in state["window"]]
        self._sums = {str(k): float(v) for k, v in state["sums"].items()}
        self._count = int(state["count"])
