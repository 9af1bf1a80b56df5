"""The Ray runtime: actors as Ray actors on any node of a cluster; the learner in the driver,
or in Ray actors that take a GPU when the cluster has one.

What Ray does for us: starts the actor processes on whichever node has the CPUs
(``RayConfig.actor_cpus`` each) or GPUs, moves unrolls and weights through its object store,
reports a dead actor as an error on its pending calls, and joins an existing cluster
(``RayConfig.address``). What we write: the wiring below, backpressure, the weights version
each call carries, re-creating dead actors, and the overhead measurement. The algorithm code
is the local runtime's: :class:`~impala_hybrid.algos.impala.actor.Actor` in each Ray actor,
:class:`~impala_hybrid.algos.impala.learner.Learner` in the driver or in learner actors;
this module only moves data. Ray is an optional dependency (``pip install
'impala-hybrid[ray]'``), imported when a run starts, never at import time.

Wiring (one Ray actor per ``a = 0..A-1``; everything the processes exchange)::

    driver (learner, RayRun)                        Ray actor a (RolloutWorker)
    ------------------------                        ---------------------------
    ray.put(state_dict) once per weights version    (object store, read by every node)
    worker.rollout.remote([weights_ref], version,   ---->  fetches the weights only when
        submitted_at)   (a call: one unroll)               version moved, runs one unroll of
                                                           its E envs: Actor.unroll(version)
    ray.wait / ray.get on the pending calls         <----  (Batch [T, E], episode returns,
                                                           timings), by object reference
    split each unroll into E / W pieces [T, W] (W = min(E, B), as locally) -> ready list;
    drop pieces older than max_policy_lag -> take B / W pieces -> Batch.concat ->
    Learner.step -> for each consumed piece's actor: submit its next call with the new
    weights (ray.put of the new version on the first such call).

    backpressure: each actor has at most ``unrolls_in_flight`` unrolls queued, running or
    waiting in the ready list; its next call is submitted when one of them is trained on
    (or dropped). Calls are queued on the actor (it runs them one after the other), so with
    2 or more in flight it starts its next unroll while the learner takes the last one.

    failures: a call whose actor died (killed, its node lost, an exception in the env)
    raises a ``RayError`` when its result is read; the driver kills what is left of that
    actor and creates a new one with a new seed (up to ``max_restarts`` in all, then the
    run fails, as locally). Unrolls of the old incarnation already received are still
    trained on; its other calls are forgotten. Training goes on.

    shutdown: ``ray.kill`` each actor; ``ray.shutdown`` if this run started Ray itself
    (``address = null``), never when it joined a cluster or found Ray initialised.

Synchronous multi-learner (``RayConfig.learners = K > 1``), shown with the learners placed
in the driver (below): the driver's learner is rank 0 of a gloo process group; ranks
``1..K-1`` are Ray actors (:class:`LearnerWorker`, one ``learner_cpus`` each), each holding
a :class:`Learner` of the same config with a
:class:`~impala_hybrid.algos.comm.TorchDistComm`::

    driver: Batch [T, B] -> K column shards (B / K unrolls each, the first ones to rank 0)
    peer.step.remote(shard k, its env steps)  ---->  LearnerWorker k: Learner.step
    Learner.step(shard 0) in the driver       <--->  gradient, statistics and skip decision
                                                     all-reduced (algos/comm.py)
    ray.get(the peers' calls)                 <----  done (their weights equal rank 0's)

Every rank makes the update one learner would make on the whole batch (tested in
``tests/algos/test_multi_learner.py``), so the weights the actors get are rank 0's, and the
trainer reads, checkpoints and evaluates ``run.learner`` as with one learner; a resumed
run's learner state is sent to the peers. The rendezvous is a TCP store on rank 0's node
(``tcp://NODE_IP:free port``). A learner actor that dies ends the run with an error
naming it (the driver's all-reduce fails as soon as gloo sees the connection closed, at the
latest after ``GROUP_TIMEOUT``); ``--resume`` continues from the last checkpoint.

Where the learners run (``RayConfig.learner_placement``, :func:`learner_layout`):

* ``driver``: rank 0 is a :class:`Learner` in the driver process, as above. The trainer
  (evaluation, checkpoints, signals, progress; ``experiments/trainer.py``) reads ``run.learner``
  between steps with no network hop, on the driver's CPU threads (``torch_threads``).
* ``actor``: every rank is a :class:`LearnerWorker` Ray actor with ``learner_cpus`` and
  ``learner_gpus`` each, so Ray puts the learners on the nodes that have the GPUs and the
  driver may run anywhere. ``run.learner`` is then a :class:`RemoteLearner`: ``step`` sends
  each rank its shard, ``model`` is a CPU copy refreshed from rank 0 when the trainer reads
  it, and the actors' weights go from rank 0's actor to the object store without passing
  through the driver (the rollout calls carry the reference of a ``numpy_weights`` call on
  it, which Ray runs after the step already sent). Checkpoints hold rank 0's state on the
  CPU, the same under either placement. When every rank holds a GPU torch can
  use, the ranks train on ``cuda`` and all-reduce with NCCL; otherwise gloo.
* ``auto`` (default): ``actor`` with one GPU per learner when the cluster has that many
  GPUs, else ``driver`` (no GPU: the driver's learner saves a hop per step).

Every learner actor reports its device and node at start; one that holds a GPU that torch
cannot use (a CPU-only torch build) is reported and trains on the CPU.

Why calls, not a queue actor: a call per unroll lets Ray carry the data by reference and
report failures per call, and its cost is measured: every record has ``ray_overhead_frac``,
the share of a call's time that is not the unroll itself (the wait between the call being
runnable and starting, i.e. scheduling, argument and previous-result transfer; the weights
fetch on the actor; submitting, reading the result and ``ray.put`` in the driver). Larger
``envs_per_actor`` (or ``unroll_length``) makes it smaller. Timestamps of the submitting
driver and the actor are compared (``time.time``), so across nodes the clock offset enters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import time
from collections.abc import Callable
from typing import Any, cast

import torch
from rich.console import Console

from impala_hybrid.algos.impala.actor import Actor
from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.models.actor_critic import ActorCritic
from impala_hybrid.runtime.allocator import keep_freed_memory
from impala_hybrid.runtime.config import RayConfig, TrainConfig, reward_setup
from impala_hybrid.runtime.learners import (
    LearnerWorker,
    free_port,
    join_learners,
    load_numpy_weights,
    make_learner,
    numpy_weights,
    shards,
)
from impala_hybrid.runtime.local import actor_seed, unroll_layout
from impala_hybrid.runtime.loop import AsyncRun
from impala_hybrid.runtime.progress import LearnerView
from impala_hybrid.runtime.serial import (
    TrainResult,
    build_model,
    make_env,
    run_to_completion,
)
from impala_hybrid.types import Batch
from impala_hybrid.validation import ConfigError

INSTALL_HINT = "the ray runtime needs Ray: pip install 'impala-hybrid[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


class RolloutWorker:
    """One actor's state on its node: a vector env, the actor-side policy and its weights.

    Made a Ray actor by :class:`RayRun` (``ray.remote(RolloutWorker)``), so this module needs
    no Ray at import time; it is also a plain object for tests.
    """

    def __init__(self, cfg: TrainConfig, seed: int) -> None:
        torch.set_num_threads(1)
        keep_freed_memory()
        self.env = make_env(cfg, cfg.ray.envs_per_actor, seed=seed)
        reward_fn, weights = reward_setup(cfg, self.env)
        self.model = build_model(cfg, self.env, len(weights))
        self.actor = Actor(
            self.env, self.model, cfg.algo.unroll_length, seed=seed, reward_fn=reward_fn,
            num_rewards=len(weights), desync_steps=cfg.desync_episodes,
        )  # fmt: skip
        self.version = -1  # of the weights held; the first call always loads them
        self._last_end = time.time()  # construction is not a call's overhead

    def rollout(
        self, weights: list[Any], version: int, submitted_at: float
    ) -> tuple[Batch, list[float], dict[str, float]]:
        """One unroll with weights ``version`` (``weights[0]``: its object reference, in a
        list so that Ray does not fetch it for calls that already hold that version).

        Returns the unroll, the episode returns completed in it, and timings: ``delay_s``
        (from when this call could have started, the later of its submission and the end of
        the previous call, to its start), ``fetch_s`` (getting and loading new weights) and
        ``work_s`` (the unroll).
        """
        start = time.time()
        delay = max(0.0, start - max(submitted_at, self._last_end))
        t0 = time.perf_counter()
        if version != self.version:
            arrays = weights[0]
            if not isinstance(arrays, dict):  # an object reference (a plain dict in tests)
                arrays = import_ray().get(arrays)
            load_numpy_weights(self.model, arrays)
            self.version = version
        t1 = time.perf_counter()
        unroll = self.actor.unroll(self.version)
        returns, _ = self.actor.drain_episodes()
        t2 = time.perf_counter()
        self._last_end = time.time()
        return unroll, returns, {"delay_s": delay, "fetch_s": t1 - t0, "work_s": t2 - t1}


def learner_layout(rc: RayConfig, resources: dict[str, float]) -> tuple[str, int, float]:
    """Where the learners run on a cluster with ``resources`` (``ray.cluster_resources()``):
    ``(placement, learner actors, GPUs each)``.

    ``auto`` puts every rank in a Ray actor with a GPU of its own when the cluster has a GPU
    for each (Ray places each actor on a node with a free GPU and sets its
    ``CUDA_VISIBLE_DEVICES``), and otherwise keeps rank 0 in the driver on its CPU, where the
    trainer reads it without a network hop. An explicit ``learner_gpus`` is taken as given
    (checked against the cluster by :meth:`RayRun._check_resources`).
    """
    gpus = float(resources.get("GPU", 0.0))
    placement = rc.learner_placement
    if placement == "auto":
        placement = "actor" if gpus >= rc.learners else "driver"
    actors = rc.learners if placement == "actor" else rc.learners - 1
    if rc.learner_gpus is not None:
        return placement, actors, rc.learner_gpus
    return placement, actors, 1.0 if placement == "actor" and gpus >= actors else 0.0


class RemoteLearner:
    """The driver's handle on learners that all run in Ray actors (``learner_placement =
    actor``, e.g. on GPU nodes): what the runtime loop and the trainer read of a
    :class:`Learner`, and nothing else.

    ``step`` sends each rank its column shard (:func:`shards`) and returns rank 0's metrics;
    ``version`` and ``samples`` come back with it. ``model`` is a CPU copy in the driver,
    refreshed from rank 0 when the trainer reads it (evaluation) and the version has moved;
    the actors' weights go from rank 0's actor to the object store without passing through
    the driver (:meth:`weights_ref`). ``state_dict``/``load_state_dict`` read rank 0 / write
    every rank, on the CPU, so checkpoints are the same as with the learner in the driver.
    """

    def __init__(self, ray: Any, cfg: TrainConfig, ranks: list[Any], get: Callable) -> None:
        """``get(calls)``: ``ray.get`` that turns a dead learner actor into a clear error."""
        self.ray = ray
        self.cfg = cfg
        self.ranks = ranks
        self._get = get
        self.version = 0
        self.samples = 0
        self._model: ActorCritic | None = None
        self._model_version = -1

    def step(self, batch: Batch, env_steps: int | None = None) -> dict[str, float]:
        steps = batch.unroll_length * batch.batch_size if env_steps is None else env_steps
        parts = shards(batch.batch_size, steps, len(self.ranks))
        calls = [
            rank.step.remote(batch.columns(cols), n)
            for rank, (cols, n) in zip(self.ranks, parts, strict=True)
        ]
        metrics, self.version, self.samples = self._get(calls)[0]
        return cast(dict[str, float], metrics)

    def weights_ref(self) -> Any:
        """An object reference to rank 0's weights as NumPy arrays (a call on its actor:
        it runs after every step already sent, so it holds the current version)."""
        return self.ranks[0].numpy_weights.remote()

    @property
    def model(self) -> ActorCritic:
        if self._model is None:
            probe = make_env(self.cfg, 1)
            self._model = build_model(self.cfg, probe, len(reward_setup(self.cfg, probe)[1]))
            probe.close()
        if self._model_version != self.version:
            arrays = self._get([self.ranks[0].numpy_weights.remote()])[0]
            load_numpy_weights(self._model, arrays)
            self._model_version = self.version
        return self._model

    def state_dict(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._get([self.ranks[0].state_dict.remote()])[0])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ref = self.ray.put(state)
        done = self._get([rank.load_state_dict.remote(ref) for rank in self.ranks])
        self.version, self.samples = done[0]

    def to_local(self) -> Learner:
        """A learner in this process holding rank 0's state (what a finished run returns,
        once its actors are gone)."""
        learner = make_learner(self.cfg, warm=False)
        learner.load_state_dict(self.state_dict())
        return learner


@dataclasses.dataclass
class _Piece:
    """``W`` env columns of one unroll, waiting in the driver to be trained on."""

    batch: Batch
    actor: int
    incarnation: int


@dataclasses.dataclass
class _Costs:
    """Where the time of the rollout calls went (see the module docstring)."""

    calls: int = 0
    work_s: float = 0.0  # unrolls, in the actors
    actor_s: float = 0.0  # start delays and weights fetches, in the actors
    driver_s: float = 0.0  # submit, get and put, in the driver
    puts: int = 0  # weights versions broadcast

    def overhead_frac(self) -> float:
        moved = self.actor_s + self.driver_s
        return moved / (moved + self.work_s) if self.calls else math.nan

    def per_call_ms(self) -> float:
        return 1e3 * (self.actor_s + self.driver_s) / self.calls if self.calls else math.nan


class RayRun(AsyncRun):
    """The Ray runtime as an object: one learner step per :meth:`step` (see module doc;
    the step, its record and the checkpoint state are :class:`~.loop.AsyncRun`'s)."""

    name = "ray"

    def __init__(self, cfg: TrainConfig, report: Callable[[str], None] | None = None) -> None:
        """``report(message)`` is told of every actor re-creation and, at :meth:`close`, of
        the measured Ray overhead (default: a line on stderr)."""
        self.cfg = cfg
        self.report = report if report is not None else Console(stderr=True).print
        rc = cfg.ray
        n_env = rc.envs_per_actor
        self.width, self.parts, self.per_batch = unroll_layout(
            "RayConfig", n_env, cfg.algo.batch_size
        )
        per_batch_unrolls = -(-self.per_batch // self.parts)
        self.in_flight = rc.unrolls_in_flight or max(2, -(-2 * per_batch_unrolls // rc.num_actors))
        if self.in_flight * rc.num_actors < per_batch_unrolls:
            raise ConfigError(
                f"RayConfig.unrolls_in_flight = {self.in_flight} is invalid: a batch needs "
                f"{per_batch_unrolls} unrolls of {n_env} envs and {rc.num_actors} actors may "
                f"hold {self.in_flight} each"
            )
        if rc.learners > cfg.algo.batch_size:
            raise ConfigError(
                f"RayConfig.learners = {rc.learners} is invalid: each learner takes at least "
                f"one unroll of the batch; allowed range [1, IMPALAConfig.batch_size = "
                f"{cfg.algo.batch_size}]"
            )
        self.peers: list[Any] = []  # learner actors beside the driver's: ranks 1..learners-1
        self.learner_actors: list[Any] = []  # every learner actor (peers, or all the ranks)
        self._group = False  # whether this run initialised the learners' process group
        self.ray = import_ray()
        self._owns_ray = not self.ray.is_initialized()
        if self._owns_ray:  # a new instance has no use for a dashboard; a cluster has its own
            kwargs = {"include_dashboard": False} if rc.address is None else {}
            self.ray.init(address=rc.address, **kwargs)
        try:
            resources = {k: float(v) for k, v in self.ray.cluster_resources().items()}
            self.placement, n_learner_actors, self.learner_gpus = learner_layout(rc, resources)
            self._check_resources(resources, n_learner_actors)
            self.learner: LearnerView = self._start_learners(n_learner_actors)
            self._remote = self.ray.remote(RolloutWorker)
            self.workers: list[Any] = [None] * rc.num_actors
            self.incarnation = [0] * rc.num_actors
            self.restarts = [0] * rc.num_actors
            self.held = [0] * rc.num_actors  # pieces in flight or ready, per actor
            self.pending: dict[Any, tuple[int, int]] = {}  # call -> (actor, incarnation)
            self.ready: list[_Piece] = []  # received pieces, oldest first
            self._weights: tuple[int, Any] | None = None  # (version, object reference)
            self.min_version = 0  # pieces of older weights are dropped (see load_state_dict)
            self.costs = _Costs()
            self._init_loop()
            for a in range(rc.num_actors):
                self._start(a)
        except BaseException:
            self._stop()
            raise

    def _check_resources(self, resources: dict[str, float], learner_actors: int) -> None:
        """Fail now, not by waiting forever, when the cluster cannot place the actors."""
        rc = self.cfg.ray
        cpus = resources.get("CPU", 0.0)
        need = rc.num_actors * rc.actor_cpus + learner_actors * rc.learner_cpus
        if need > cpus + 1e-9:
            what = (
                f"RayConfig.num_actors * actor_cpus = {rc.num_actors} * {rc.actor_cpus:g} = "
                f"{rc.num_actors * rc.actor_cpus:g} CPUs"
            )
            fields = "num_actors or actor_cpus"
            if learner_actors:
                count = "learners" if self.placement == "actor" else "(learners - 1)"
                what += (
                    f" plus {count} * learner_cpus = {learner_actors} * {rc.learner_cpus:g} "
                    f"(learner_placement = {self.placement!r})"
                )
                fields = "num_actors, actor_cpus, learners or learner_cpus"
            raise ConfigError(
                f"{what} is invalid: the Ray cluster has {cpus:g}; lower {fields} (a fraction "
                "packs several actors on a core)"
            )
        gpus = resources.get("GPU", 0.0)
        if learner_actors * self.learner_gpus > gpus + 1e-9:
            raise ConfigError(
                f"RayConfig.learner_gpus = {self.learner_gpus:g} is invalid for "
                f"{learner_actors} learner actors: the Ray cluster has {gpus:g} GPUs; allowed "
                f"range [0, {gpus / max(learner_actors, 1):g}] (null: 1 when there is one "
                "for every learner)"
            )

    def _start_learners(self, n_actors: int) -> Learner | RemoteLearner:
        """Start the learner actors (if any) and the process group; the learner the loop
        steps: the driver's own (``driver`` placement) or a handle on the actors."""
        rc = self.cfg.ray
        if n_actors == 0:  # one learner, in the driver
            return make_learner(self.cfg)
        opts = {"num_cpus": rc.learner_cpus, "num_gpus": self.learner_gpus, "max_restarts": 0}
        remote = self.ray.remote(LearnerWorker).options(**opts)
        first = 0 if self.placement == "actor" else 1
        self.learner_actors = [
            remote.remote(self.cfg, r, rc.learners) for r in range(first, rc.learners)
        ]
        found = self._get_peers([a.describe.remote() for a in self.learner_actors])
        self._report_devices(found)
        on_gpu = self.placement == "actor" and all(f["device"] == "cuda" for f in found)
        backend = "nccl" if on_gpu else "gloo"
        if self.placement == "actor":
            init = found[0]["rendezvous"] if rc.learners > 1 else None
            calls = [a.start.remote(init, backend) for a in self.learner_actors]
            self._group = False  # the group lives in the actors
            remote_learner = RemoteLearner(self.ray, self.cfg, self.learner_actors, self._get_peers)
            remote_learner.version, remote_learner.samples = self._get_peers(calls)[0]
            return remote_learner
        init = f"tcp://{self.ray.util.get_node_ip_address()}:{free_port()}"
        self.peers = self.learner_actors
        calls = [a.start.remote(init, backend) for a in self.peers]
        comm = join_learners(init, 0, rc.learners, backend)
        self._group = True
        learner = make_learner(self.cfg, comm)
        self._get_peers(calls)
        return learner

    def _report_devices(self, found: list[dict[str, Any]]) -> None:
        """Say where the learner actors train, and when a GPU they hold goes unused."""
        devices = sorted({f"{f['device']} on {f['node']}" for f in found})
        self.report(
            f"ray: {len(found)} learner actor(s) ({self.placement} placement, "
            f"{self.learner_gpus:g} GPU each): {', '.join(devices)}"
        )
        idle = [f for f in found if f["gpu_ids"] and f["device"] != "cuda"]
        if idle:
            self.report(
                f"ray: {len(idle)} learner actor(s) hold GPU {idle[0]['gpu_ids']} but train on "
                "the CPU: torch there sees no CUDA device (a CPU-only torch build?)"
            )

    # --- actors ---

    def _start(self, a: int) -> None:
        """(Re-)create actor ``a`` and fill its in-flight calls."""
        seed = actor_seed(self.cfg, a, self.restarts[a])
        # max_restarts=0: we re-create it ourselves, with a new seed (see the module doc)
        opts = {"num_cpus": self.cfg.ray.actor_cpus, "max_restarts": 0}
        self.workers[a] = self._remote.options(**opts).remote(self.cfg, seed)
        self.held[a] = 0
        self._fill(a)

    def _restart(self, a: int, error: BaseException) -> None:
        error = getattr(error, "cause", None) or error  # a RayTaskError's own exception
        if self.restarts[a] >= self.cfg.ray.max_restarts:
            raise RuntimeError(
                f"actor {a} died {self.restarts[a] + 1} times (last: {_first_line(error)})"
            ) from error
        self.ray.kill(self.workers[a])  # in case only its call failed
        self.restarts[a] += 1
        self.incarnation[a] += 1
        self._start(a)
        self.report(
            f"actor {a} died ({type(error).__name__}: {_first_line(error)}); re-created it "
            f"(restart {self.restarts[a]} of ray.max_restarts = {self.cfg.ray.max_restarts})"
        )

    def _weights_ref(self) -> tuple[int, Any]:
        """The current weights in the object store: ``ray.put`` once per version."""
        version = self.learner.version
        if self._weights is None or self._weights[0] != version:
            if isinstance(self.learner, RemoteLearner):  # rank 0's actor puts them
                self._weights = (version, self.learner.weights_ref())
            else:
                self._weights = (version, self.ray.put(numpy_weights(self.learner.model)))
            self.costs.puts += 1
        return self._weights

    def _submit(self, a: int) -> None:
        t0 = time.perf_counter()
        version, ref = self._weights_ref()
        call = self.workers[a].rollout.remote([ref], version, time.time())
        self.pending[call] = (a, self.incarnation[a])
        self.held[a] += self.parts
        self.costs.driver_s += time.perf_counter() - t0

    def _release(self, pieces: list[_Piece]) -> None:
        """Pieces trained on or dropped: their actors may run more (:meth:`_top_up`)."""
        for p in pieces:
            if p.incarnation == self.incarnation[p.actor]:
                self.held[p.actor] -= 1

    def _top_up(self) -> None:
        """Send each actor calls until it holds ``unrolls_in_flight`` unrolls again."""
        for a in range(len(self.workers)):
            self._fill(a)

    def _fill(self, a: int) -> None:
        while self.held[a] + self.parts <= self.in_flight * self.parts:
            self._submit(a)

    # --- the learner's side ---

    def _receive(self, timeout: float) -> None:
        """Read every finished call (waiting up to ``timeout`` s for the first)."""
        if not self.pending:
            return
        calls = list(self.pending)
        done, _ = self.ray.wait(calls, num_returns=1, timeout=timeout)
        if done:
            done, _ = self.ray.wait(calls, num_returns=len(calls), timeout=0)
        for call in done:
            a, incarnation = self.pending.pop(call)
            t0 = time.perf_counter()
            try:
                unroll, returns, timing = self.ray.get(call)
            except self.ray.exceptions.RayError as e:
                if incarnation == self.incarnation[a]:
                    self._restart(a, e)
                continue
            self.costs.driver_s += time.perf_counter() - t0
            self.costs.calls += 1
            self.costs.work_s += timing["work_s"]
            self.costs.actor_s += timing["delay_s"] + timing["fetch_s"]
            self._new_returns.extend(returns)
            if self.parts == 1:
                self.ready.append(_Piece(unroll, a, incarnation))
            else:
                for j in range(self.parts):
                    cols = torch.arange(j * self.width, (j + 1) * self.width)
                    self.ready.append(_Piece(unroll.columns(cols), a, incarnation))

    def _drop_stale(self) -> None:
        """Drop ready pieces older than ``max_policy_lag`` updates (counted in
        ``dropped_unrolls``), and those of the weights the run had before it loaded a
        checkpoint (calls sent before :meth:`load_state_dict`: not this run's policy)."""
        max_lag = self.cfg.ray.max_policy_lag
        keep: list[_Piece] = []
        stale: list[_Piece] = []
        for p in self.ready:
            version = int(p.batch.policy_version[0])
            too_old = max_lag is not None and self.learner.version - version > max_lag
            pre_resume = version < self.min_version
            (stale if too_old or pre_resume else keep).append(p)
            self.dropped += int(too_old and not pre_resume)
        self.ready = keep
        self._release(stale)
        self._top_up()

    def _take_batch(self) -> Batch:
        t0 = time.perf_counter()
        self._drop_stale()
        while len(self.ready) < self.per_batch:
            self._receive(timeout=1.0)
            self._drop_stale()
        self.learner_wait += time.perf_counter() - t0
        pieces, self.ready = self.ready[: self.per_batch], self.ready[self.per_batch :]
        self._release(pieces)  # their actors' next calls go out after the step (new weights)
        return pieces[0].batch if len(pieces) == 1 else Batch.concat([p.batch for p in pieces])

    def _after_update(self) -> None:
        self._top_up()  # calls for the pieces just trained on, with the new weights

    def _learn(self, batch: Batch, env_steps: int) -> dict[str, float]:
        """One synchronous step of every learner on its shard; rank 0's metrics."""
        if not self.peers:  # one learner here, or every rank behind the RemoteLearner
            return self.learner.step(batch, env_steps=env_steps)
        parts = shards(batch.batch_size, env_steps, len(self.peers) + 1)
        calls = [
            peer.step.remote(batch.columns(cols), n)
            for peer, (cols, n) in zip(self.peers, parts[1:], strict=True)
        ]
        cols, n = parts[0]
        try:
            metrics = self.learner.step(batch.columns(cols), env_steps=n)
        except RuntimeError:  # e.g. gloo's "connection closed by peer": say which failed
            self._get_peers(calls)
            raise
        self._get_peers(calls)
        return metrics

    def _get_peers(self, calls: list[Any]) -> list[Any]:
        """``ray.get(calls)`` on learner actors; a dead one is a clear error."""
        try:
            return cast(list[Any], self.ray.get(calls))
        except self.ray.exceptions.RayError as e:
            error = getattr(e, "cause", None) or e
            raise RuntimeError(
                f"a learner actor failed ({type(error).__name__}: {_first_line(error)}); the "
                "synchronous step cannot go on without it (--resume continues the run)"
            ) from e

    def _after_load(self) -> None:
        self.min_version = self.learner.version
        if self.peers:  # every rank continues from the checkpoint
            state = self.ray.put(self.learner.state_dict())
            self._get_peers([peer.load_state_dict.remote(state) for peer in self.peers])

    def _extra_metrics(self) -> dict[str, float]:
        return {
            "ray_overhead_frac": self.costs.overhead_frac(),
            "ray_call_overhead_ms": self.costs.per_call_ms(),
            "ray_weight_puts": float(self.costs.puts),
        }

    def close(self) -> None:
        """Stop every actor; a learner that ran in actors is brought into this process
        first (``run.learner`` of a finished run holds the final weights, as locally)."""
        remote = getattr(self, "learner", None)
        if isinstance(remote, RemoteLearner):
            with contextlib.suppress(RuntimeError):  # a dead learner actor: nothing to bring
                self.learner = remote.to_local()
        c = self.costs
        if c.calls:
            self.report(
                f"ray: {c.calls} rollout calls of {self.cfg.ray.envs_per_actor} envs x "
                f"{self.cfg.algo.unroll_length} steps; overhead {c.per_call_ms():.1f} ms a call, "
                f"{100 * c.overhead_frac():.1f}% of its time; {c.puts} weights versions put"
            )
        self._stop()

    def _stop(self) -> None:
        """Kill the actors and learner actors, leave the learners' process group, and shut
        Ray down if this run started it."""
        for worker in [*getattr(self, "workers", []), *self.learner_actors]:
            if worker is not None:
                self.ray.kill(worker)
        self.pending = {}
        self.peers = []
        self.learner_actors = []
        if self._group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._group = False
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()


def train_ray(
    cfg: TrainConfig, callback: Callable[[dict[str, float], Learner], None] | None = None
) -> TrainResult:
    """Train with ``cfg.ray.num_actors`` Ray actors feeding the learner in this process (and
    its ``cfg.ray.learners - 1`` synchronous peers)."""
    return run_to_completion(RayRun, cfg, callback)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
