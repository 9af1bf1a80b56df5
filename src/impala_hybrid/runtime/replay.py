"""Experience replay of whole unrolls (IMPALA paper, section 5.2.2 and Table 2).

A bounded FIFO of unrolls (columns of ``[T, B]`` batches, kept whole so V-trace still runs
over time-ordered sequences, with the behaviour log-probs and LSTM start states the actor
recorded). Each learner batch of ``B`` fresh unrolls gets ``k`` replayed ones appended, with
``k / (B + k) = proportion``: the proportion of every batch that comes from replay. V-trace's
clipped importance weights correct for the replayed unrolls' older behaviour policies, which
is why the paper found it robust to replay where one-step importance sampling was not.

It lives with the runtimes, not in ``Learner.step``: it only moves data.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

from impala_hybrid.types import Batch


class UnrollReplay:
    """Bounded FIFO of unrolls mixed into each batch (see module docstring)."""

    def __init__(self, proportion: float, capacity: int, seed: int) -> None:
        if not 0.0 <= proportion < 1.0:
            raise ValueError(f"proportion = {proportion!r} is invalid: allowed range is [0, 1)")
        if capacity < 1:
            raise ValueError(f"capacity = {capacity!r} is invalid: must be >= 1")
        self.proportion = proportion
        self.capacity = capacity
        self.generator = torch.Generator().manual_seed(seed)
        self._store: deque[Batch] = deque()  # one unroll ([T, 1]) each, oldest first
        self._pending: list[list[torch.Tensor]] | None = None  # restored, not yet rebuilt

    def __len__(self) -> int:
        return len(self._store) if self._pending is None else len(self._pending)

    def num_replayed(self, batch_size: int) -> int:
        """``k`` with ``k / (batch_size + k)`` as close as possible to the proportion."""
        return round(self.proportion * batch_size / (1.0 - self.proportion))

    def mix(self, fresh: Batch) -> Batch:
        """``fresh`` plus replayed unrolls drawn uniformly from those stored before it; then
        ``fresh``'s unrolls are stored (evicting the oldest beyond capacity)."""
        if self._pending is not None:
            self._rebuild(fresh)
        k = min(self.num_replayed(fresh.batch_size), len(self._store))
        out = fresh
        if k > 0:
            picks = torch.randint(len(self._store), (k,), generator=self.generator).tolist()
            out = Batch.concat([fresh, *(self._store[i] for i in picks)])
        for b in range(fresh.batch_size):
            self._store.append(fresh.columns(torch.tensor([b])).clone())
            if len(self._store) > self.capacity:
                self._store.popleft()
        return out

    def state_dict(self) -> dict[str, Any]:
        """The stored unrolls and the sampler state (for exact resume)."""
        unrolls = self._pending if self._pending is not None else [u.tensors() for u in self._store]
        return {"unrolls": unrolls, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`. The unrolls are rebuilt at the next :meth:`mix`,
        whose fresh batch gives the layout (hybrid actions, LSTM state)."""
        self._store.clear()
        self._pending = [list(t) for t in state["unrolls"]]
        self.generator.set_state(state["generator"])

    def _rebuild(self, template: Batch) -> None:
        assert self._pending is not None
        for tensors in self._pending:
            unroll = template.columns(torch.tensor([0])).clone()
            for dst, src in zip(unroll.tensors(), tensors, strict=True):
                dst.copy_(src)
            self._store.append(unroll)
        self._pending = None
