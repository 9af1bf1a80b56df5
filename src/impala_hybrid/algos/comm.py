"""What a learner shares with the other learners of a synchronous multi-learner step.

K learners (ranks) each take a shard of the batch; one update must equal the update of one
learner on the combined batch. Most of a step is per sample and needs nothing from the
other shards; what does is every *reduction over the batch* that is not a loss mean:

* the gradient: each rank's loss is a mean over its own ``T * B_k`` samples, so the
  combined-batch gradient is the sample-weighted mean of the ranks' gradients
  (:meth:`Comm.average_gradients`; a plain mean when the shards are equal);
* statistics of the batch: advantage standardisation, PopArt's target moments, the mean
  entropies of the target-entropy adjustment, the observation-normaliser's moments
  (:meth:`Comm.mean`, :meth:`Comm.var`, :meth:`Comm.std`: the moments of the
  concatenated shards);
* decisions: a non-finite loss on any rank skips the step on every rank (:meth:`Comm.all`);
* counts: the env steps that drive the schedules (:meth:`Comm.count`).

:class:`Comm` is the single-process case: every method is the plain torch reduction (so a
learner without peers computes exactly what it did before this module existed), and the
learner calls it at exactly those points. :class:`TorchDistComm` does the same over a
``torch.distributed`` process group (gloo on CPU, NCCL on GPU). What torch.distributed
does for us: the collective all-reduce and broadcast over whichever transport the backend
has, and the rendezvous (``init_process_group``, done by the runtime that starts the
processes). What we write: which quantities are reduced, and how they are combined so
that the result is the combined batch's (counts travel with sums, variances are two-pass
about the global mean, the unbiased variance divides by the global ``n - 1``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

Dims = int | tuple[int, ...] | None


def _count(x: Tensor, dim: Dims) -> int:
    if dim is None:
        return x.numel()
    dims = (dim,) if isinstance(dim, int) else dim
    n = 1
    for d in dims:
        n *= x.shape[d]
    return n


class Comm:
    """One learner alone (world size 1): every reduction is local and exact."""

    rank: int = 0
    world_size: int = 1

    def sum(self, x: Tensor) -> Tensor:
        """Element-wise sum of ``x`` over the ranks."""
        return x

    def all(self, flag: bool) -> bool:
        """True when ``flag`` is true on every rank."""
        return flag

    def mean(self, x: Tensor, dim: Dims = None) -> Tensor:
        """Mean over ``dim`` of the shards concatenated along it (all dims if None)."""
        return x.mean() if dim is None else x.mean(dim)

    def var(self, x: Tensor, dim: Dims = None, *, unbiased: bool = True) -> Tensor:
        """Variance over ``dim`` of the concatenated shards (``torch.var``'s convention)."""
        return x.var(unbiased=unbiased) if dim is None else x.var(dim, unbiased=unbiased)

    def std(self, x: Tensor) -> Tensor:
        """Unbiased standard deviation of all elements of the concatenated shards."""
        return x.std()

    def count(self, n: int) -> int:
        """``n`` summed over the ranks (sample counts)."""
        return n

    def average_gradients(self, params: Iterable[torch.nn.Parameter], weight: int) -> None:
        """Replace each gradient by the ranks' gradients weighted by ``weight`` (this rank's
        sample count): the gradient of the mean loss over the combined batch."""

    def broadcast(self, tensors: Sequence[Tensor]) -> None:
        """Overwrite ``tensors`` in place with rank 0's (same initial weights everywhere)."""


class TorchDistComm(Comm):
    """The same reductions over a ``torch.distributed`` process group.

    The group must be initialised (``torch.distributed.init_process_group``) by whoever
    started the ranks. ``device``: where the collectives' buffers live (``cuda`` for NCCL,
    ``cpu`` for gloo; default from the backend). Every rank must make the same calls in the
    same order, which :class:`~impala_hybrid.algos.impala.learner.Learner` does: its
    control flow depends on the config and on decisions taken through :meth:`all`, never
    on one shard's data alone.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError("TorchDistComm needs torch.distributed.init_process_group first")
        self._dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        if device is None:
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        self.device = torch.device(device)

    def sum(self, x: Tensor) -> Tensor:
        out = x.detach().to(self.device, copy=True)
        self._dist.all_reduce(out)
        return out.to(x.device)

    def all(self, flag: bool) -> bool:
        return bool(self.sum(torch.tensor([float(flag)])).item() == self.world_size)

    def _mean(self, x: Tensor, dim: Dims, keepdim: bool) -> tuple[Tensor, Tensor]:
        """Mean over ``dim`` of the concatenated shards and their element count, from one
        all-reduce of the sums and the count."""
        dims = tuple(range(x.dim())) if dim is None else dim
        s = x.sum(dims, keepdim=keepdim)
        both = self.sum(torch.cat([s.reshape(-1), s.new_tensor([_count(x, dim)])]))
        return both[:-1].reshape(s.shape) / both[-1], both[-1]

    def mean(self, x: Tensor, dim: Dims = None) -> Tensor:
        return self._mean(x, dim, keepdim=False)[0]

    def var(self, x: Tensor, dim: Dims = None, *, unbiased: bool = True) -> Tensor:
        # two-pass, as torch.var: squares about the global mean, divided by the global n - 1
        mu, _ = self._mean(x, dim, keepdim=True)
        ms, n = self._mean((x - mu).square(), dim, keepdim=False)
        return ms * n / (n - 1) if unbiased else ms

    def std(self, x: Tensor) -> Tensor:
        return self.var(x).sqrt()

    def count(self, n: int) -> int:
        return int(self.sum(torch.tensor([n], dtype=torch.int64)).item())

    def average_gradients(self, params: Iterable[torch.nn.Parameter], weight: int) -> None:
        """One all-reduce of every gradient times ``weight``, and of ``weight`` itself.

        Parameters without a gradient are skipped: which ones have one depends on the model
        and the config, the same on every rank, not on a shard's data."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:  # as on every rank
            return
        flat = torch.cat([g.reshape(-1) for g in grads] + [grads[0].new_ones(1)]) * weight
        flat = self.sum(flat)
        flat = flat[:-1] / flat[-1]
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def broadcast(self, tensors: Sequence[Tensor]) -> None:
        for t in tensors:
            buf = t.detach().to(self.device, copy=True)
            self._dist.broadcast(buf, src=0)
            with torch.no_grad():
                t.copy_(buf)
