"""Learner ranks of a synchronous multi-learner step, shared by the local and Ray runtimes.

K learners each step on a column shard of every batch (:func:`shards`) and all-reduce what
must be global (``algos/comm.py``); rank 0's weights are the run's. This module holds what
does not depend on how the ranks' processes are started: building a rank's learner on its
device (:func:`make_learner`), joining the process group (:func:`join_learners`), and
:class:`LearnerWorker`, one rank outside the driver, which the Ray runtime makes a Ray actor
and the local runtime runs in a forked process (:func:`serve_learner`).
"""

from __future__ import annotations

import socket
import warnings
from collections.abc import Sequence
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any, cast

import torch

from impala_hybrid.algos.comm import TorchDistComm
from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.runtime.allocator import keep_freed_memory
from impala_hybrid.runtime.config import TrainConfig
from impala_hybrid.runtime.serial import build_learner, make_env
from impala_hybrid.types import Batch

GROUP_TIMEOUT = timedelta(minutes=5)
"""How long a learner waits for the others at the rendezvous or in a collective."""


def make_learner(
    cfg: TrainConfig,
    comm: TorchDistComm | None = None,
    device: torch.device | str = "cpu",
    *,
    warm: bool = True,
) -> Learner:
    """The learner of ``cfg`` on ``device`` (its model seeded by ``cfg.seed``, warm-started
    if configured), with ``comm``'s peers. Ranks >= 1 skip the warm start: rank 0's weights
    overwrite theirs (``Learner``'s broadcast); so does a learner about to load a state
    (``warm = False``)."""
    torch.manual_seed(cfg.seed)
    probe = make_env(cfg, 1, seed=cfg.seed)
    learner = build_learner(cfg, probe, comm=comm, device=device, warm=warm)
    probe.close()
    return learner


def join_learners(
    init_method: str, rank: int, world_size: int, backend: str = "gloo"
) -> TorchDistComm:
    """Join the learners' process group (blocks until all ``world_size`` have): ``gloo``
    when any rank is on a CPU, ``nccl`` when every rank holds a GPU."""
    import torch.distributed as dist

    dist.init_process_group(
        backend, init_method=init_method, rank=rank, world_size=world_size, timeout=GROUP_TIMEOUT
    )
    return TorchDistComm()


def free_port() -> int:
    """A TCP port free on this node now (for the learners' rendezvous)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def shards(batch_size: int, env_steps: int, k: int) -> list[tuple[torch.Tensor, int]]:
    """The ``k`` learners' column shards of a batch of ``batch_size`` unrolls (in order,
    sizes differing by at most one, rank 0 the first) and the env steps each counts."""
    cols = torch.arange(batch_size).tensor_split(k)
    steps = [env_steps * len(c) // batch_size for c in cols]
    steps[0] += env_steps - sum(steps)
    return list(zip(cols, steps, strict=True))


def _to_cpu(x: Any) -> Any:
    """``x`` (a learner's state: nested dicts and lists of tensors) with every tensor on the
    CPU, so that it travels to and is saved by a driver without a GPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_to_cpu(v) for v in x)
    return x


def numpy_weights(model: torch.nn.Module) -> dict[str, Any]:
    """The model's parameters and buffers as CPU NumPy arrays: what the actors load. Ray
    reads NumPy arrays back from its object store without a copy, which more than halved
    the actors' weights fetch on this machine (docs/scaling.md)."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def load_numpy_weights(model: torch.nn.Module, arrays: dict[str, Any]) -> None:
    """Load :func:`numpy_weights` into ``model``. The arrays may be read-only views of
    Ray's object store: ``load_state_dict`` copies them, so torch's "not writable" warning
    does not apply."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})


class LearnerWorker:
    """One learner rank in a Ray actor: rank >= 1 beside the driver's learner, or any rank
    when every learner is an actor (``RayConfig.learner_placement``).

    Made a Ray actor by :class:`RayRun`; two phases, because the rendezvous address is the
    node of rank 0, known only once Ray has placed it: :meth:`describe` (device, node, and
    for rank 0 a free port there), then :meth:`start` (join the group, build the learner).
    A learner that holds a GPU (``ray.get_gpu_ids()``; Ray has set ``CUDA_VISIBLE_DEVICES``
    to it) trains on ``cuda`` when torch can use it, else on the CPU (reported by the
    driver)."""

    def __init__(
        self, cfg: TrainConfig, rank: int, world_size: int, gpu_ids: Sequence[str] | None = None
    ) -> None:
        torch.set_num_threads(cfg.torch_threads)
        keep_freed_memory()
        self.cfg = cfg
        self.rank = rank
        self.world_size = world_size
        if gpu_ids is None:  # in a Ray actor: the GPUs Ray gave it
            from impala_hybrid.runtime.ray import import_ray

            gpu_ids = [str(i) for i in import_ray().get_gpu_ids()]
        self.gpu_ids = list(gpu_ids)
        cuda = bool(self.gpu_ids) and torch.cuda.is_available()
        self.device = torch.device("cuda" if cuda else "cpu")
        self.learner: Learner | None = None

    def describe(self) -> dict[str, Any]:
        from impala_hybrid.runtime.ray import import_ray

        node = import_ray().util.get_node_ip_address()
        return {
            "device": str(self.device),
            "gpu_ids": self.gpu_ids,
            "cuda": torch.cuda.is_available(),
            "node": node,
            "rendezvous": f"tcp://{node}:{free_port()}" if self.rank == 0 else None,
        }

    def start(self, init_method: str | None, backend: str = "gloo") -> tuple[int, int]:
        """Join the group at ``init_method`` (None: one learner) and build the learner;
        returns its ``(version, samples)``."""
        world = self.world_size
        comm = join_learners(init_method, self.rank, world, backend) if init_method else None
        self.learner = make_learner(self.cfg, comm, self.device)
        return self.learner.version, self.learner.samples

    def _learner(self) -> Learner:
        if self.learner is None:
            raise RuntimeError("LearnerWorker.start has not run")
        return self.learner

    def step(self, shard: Batch, env_steps: int) -> tuple[dict[str, float], int, int]:
        """One update on ``shard``: the metrics, and the learner's version and samples."""
        learner = self._learner()
        metrics = learner.step(shard, env_steps=env_steps)
        return metrics, learner.version, learner.samples

    def state_dict(self) -> dict[str, Any]:
        return cast(dict[str, Any], _to_cpu(self._learner().state_dict()))

    def load_state_dict(self, state: dict[str, Any]) -> tuple[int, int]:
        learner = self._learner()
        learner.load_state_dict(state)
        return learner.version, learner.samples

    def numpy_weights(self) -> dict[str, Any]:
        return numpy_weights(self._learner().model)

    def weights(self) -> list[torch.Tensor]:
        """The model's parameters and buffers (to check that the ranks agree)."""
        return [t.detach().cpu().clone() for t in self._learner().model.state_dict().values()]


def serve_learner(cfg: TrainConfig, rank: int, init_method: str, conn: Connection) -> None:
    """One learner rank in a local (forked) process: join the group, then serve the main
    process's requests over ``conn`` until ``None``: ``("step", shard, env_steps)`` and
    ``("load", state)``, each answered with the learner's ``(version, samples)``, and
    ``("weights",)``, answered with its parameters and buffers."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process owns Ctrl-C
    worker = LearnerWorker(cfg, rank, cfg.local.learners, gpu_ids=[])
    worker.start(init_method, "gloo")
    learner = worker._learner()
    try:
        while (msg := conn.recv()) is not None:
            if msg[0] == "weights":
                conn.send(worker.weights())
                continue
            if msg[0] == "step":
                worker.step(msg[1], msg[2])
            else:
                worker.load_state_dict(msg[1])
            conn.send((learner.version, learner.samples))
    except EOFError:  # the main process is gone
        pass
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
