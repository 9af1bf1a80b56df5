"""The learner's side of the runtimes whose actors run elsewhere (``local``, ``ray``).

Both take a batch from their actors, train on it, let the actors see the new weights, and
report the same progress record and checkpoint state; only how unrolls and weights travel
differs (shared memory and pipes, or Ray's object store). That shared part is
:class:`AsyncRun`; a runtime fills in :meth:`AsyncRun._take_batch`, :meth:`~AsyncRun._receive`
and the two hooks, so a change to the step, the record or the checkpoint is made once.
"""

from __future__ import annotations

import time
from typing import Any

from impala_hybrid.runtime.config import TrainConfig
from impala_hybrid.runtime.progress import Budget, LearnerView, Progress
from impala_hybrid.runtime.serial import make_replay
from impala_hybrid.types import Batch


class AsyncRun(Budget):
    """One learner step per :meth:`step`, fed by actors in other processes.

    Resume restores the learner, the optimizer and the progress counters; actors restart
    with fresh environments, so a resumed run is not bit-identical to an uninterrupted one
    (no asynchronous run is).
    """

    cfg: TrainConfig
    learner: LearnerView
    restarts: list[int]  # actor restarts, per actor

    def _init_loop(self) -> None:
        """The loop's accumulators (after ``cfg`` and ``learner`` are set)."""
        self.returns: list[float] = []  # episode returns completed in this process
        self.progress = Progress(self.cfg.log_interval)
        self.replay = make_replay(self.cfg)
        self.dropped = 0  # unrolls dropped as stale
        self.learner_wait = 0.0
        self._new_returns: list[float] = []
        self._start_time = time.perf_counter()
        self._start_samples = 0

    # --- what a runtime provides ---

    def _take_batch(self) -> Batch:
        """Wait for the actors' unrolls and return one learner batch."""
        raise NotImplementedError

    def _receive(self, timeout: float) -> None:
        """Collect finished unrolls (and their episode returns into ``_new_returns``)."""
        raise NotImplementedError

    def _after_update(self) -> None:
        """Make the learner's new weights available to the actors."""
        raise NotImplementedError

    def _after_load(self) -> None:
        """The learner was restored from a checkpoint (default: publish as after a step)."""
        self._after_update()

    def _learn(self, batch: Batch, env_steps: int) -> dict[str, float]:
        """One update on ``batch`` (default: the one learner; several: each on a shard)."""
        return self.learner.step(batch, env_steps=env_steps)

    def _extra_metrics(self) -> dict[str, float]:
        """The runtime's own fields of a progress record."""
        return {}

    # --- shared ---

    @property
    def exact_resume(self) -> bool:
        return False

    def step(self) -> dict[str, float] | None:
        """One learner step; the progress record when one is due, else None."""
        batch = self._take_batch()
        fresh = batch.unroll_length * batch.batch_size
        if self.replay is not None:
            batch = self.replay.mix(batch)
        metrics = self._learn(batch, fresh)
        self._after_update()
        self._receive(0.0)  # pick up returns reported meanwhile
        new_returns, self._new_returns = self._new_returns, []
        self.returns.extend(new_returns)
        self.progress.add(metrics, new_returns)
        record = self.progress.record(self.learner.samples, last=self.done)
        if record is not None:
            elapsed = time.perf_counter() - self._start_time
            record.update(
                fps=(self.learner.samples - self._start_samples) / elapsed,
                learner_wait_frac=self.learner_wait / elapsed,
                dropped_unrolls=float(self.dropped),
                actor_restarts=float(sum(self.restarts)),
                **self._extra_metrics(),
            )
        return record

    def state_dict(self) -> dict[str, Any]:
        return {
            "learner": self.learner.state_dict(),
            "loop": self.progress.state_dict(),
            "counters": {"dropped": self.dropped, "restarts": list(self.restarts)},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["learner"])
        self.progress.load_state_dict(state["loop"])
        self.dropped = int(state["counters"]["dropped"])
        self._after_load()
        self._start_samples = self.learner.samples
        self._start_time = time.perf_counter()
