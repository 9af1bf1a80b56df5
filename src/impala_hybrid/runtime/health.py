"""Warnings for a run that falls off a cliff: the greedy return or the policy's entropy.

Why: a policy can collapse late in training (issue 8: the greedy validation return fell from
407 to -660 while ``best.pt`` hid it), and nothing said so. The trainer feeds every
evaluation and every progress record to a :class:`CliffWatch`, which returns a one-line
warning when

* the greedy return falls below ``best - return_drop * (best - first)``: it lost more than
  ``return_drop`` (default a quarter) of the progress the run had made since its first
  evaluation (a fall relative to the run's own scale: returns have no universal unit), and
  by more than two standard errors of the evaluation (``stderr``), so that a run whose
  progress is within noise (a warm start already at its plateau) does not warn on noise; or
* the entropy falls by more than ``entropy_drop`` nats (default 3) below its highest value
  in the last ``window`` progress records: a fast collapse of the policy's width (the
  issue-8 collapse fell 4.5 nats within 40k env steps), not the slow decline of a policy
  that learns.

Each kind warns once per fall and re-arms when the value recovers, so a collapsed run is
reported without flooding the screen.
"""

from __future__ import annotations

import collections
import dataclasses
import math


@dataclasses.dataclass
class CliffWatch:
    """Detects cliffs in the greedy return and the entropy (see module docstring)."""

    return_drop: float = 0.25
    entropy_drop: float = 3.0
    window: int = 50
    first: float | None = None
    best: float | None = None
    return_warned: bool = False
    entropy_warned: bool = False
    recent: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=50)
    )

    def __post_init__(self) -> None:
        self.recent = collections.deque(self.recent, maxlen=self.window)

    def on_eval(self, steps: int, ret: float | None, stderr: float = 0.0) -> str | None:
        """A warning if the greedy return ``ret`` (at ``steps``; standard error ``stderr``)
        fell off a cliff."""
        if ret is None or not math.isfinite(ret):
            return None
        if self.first is None:
            self.first = self.best = ret
            return None
        assert self.best is not None
        self.best = max(self.best, ret)
        floor = self.best - self.return_drop * (self.best - self.first)
        if self.best > self.first and ret < floor and self.best - ret > 2.0 * stderr:
            if not self.return_warned:
                self.return_warned = True
                return (
                    f"greedy return fell to {ret:.2f} at {steps:,} env steps: it lost more than "
                    f"{self.return_drop:.0%} of the progress since the first evaluation "
                    f"({self.first:.2f} -> best {self.best:.2f}); checkpoints/best.pt keeps "
                    "the best policy"
                )
        else:
            self.return_warned = False
        return None

    def on_record(self, steps: int, entropy: float | None) -> str | None:
        """A warning if the entropy (of a progress record at ``steps``) collapsed."""
        if entropy is None or not math.isfinite(entropy):
            return None
        top = max(self.recent, default=entropy)
        self.recent.append(entropy)
        if entropy < top - self.entropy_drop:
            if not self.entropy_warned:
                self.entropy_warned = True
                return (
                    f"policy entropy fell from {top:.2f} to {entropy:.2f} nats within "
                    f"{len(self.recent)} progress records (at {steps:,} env steps): the policy "
                    "is collapsing; see metrics.jsonl (entropy_*, log_rho_abs_*, grad_norm)"
                )
        elif entropy >= top - self.entropy_drop / 2:
            self.entropy_warned = False
        return None

    def state_dict(self) -> dict[str, object]:
        return {
            "first": self.first,
            "best": self.best,
            "return_warned": self.return_warned,
            "entropy_warned": self.entropy_warned,
            "recent": list(self.recent),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.first = state["first"]  # type: ignore[assignment]
        self.best = state["best"]  # type: ignore[assignment]
        self.return_warned = bool(state["return_warned"])
        self.entropy_warned = bool(state["entropy_warned"])
        self.recent = collections.deque(state["recent"], maxlen=self.window)  # type: ignore[call-overload]
