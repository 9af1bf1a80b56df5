"""The local runtime: actor processes, shared-memory rollout slots, slot indices over pipes.

Wiring (TorchBeast MonoBeast's ``create_buffers``/``act``/``get_batch``; Sample Factory's
``connect_components`` for the one-function view). Everything the processes exchange::

    main process (learner)                          actor process a = 0..A-1
    ----------------------                          ------------------------
    slots[0..S-1]: Batch [T, W] in shared    <----  writes an unroll of its E envs into E/W
      memory, S/A slots owned by each actor         of ITS slots (W = min(E, B) columns each)
    pipe a (one duplex pipe per actor):
      learner -> actor: a freed slot index  ---->   waits for E/W free slots (backpressure:
                        or None (stop)              at most S/A slots in flight per actor)
      actor -> learner: (slots, episode     <----   after each unroll
                        returns, wait time)
    shared_model + seq + version (weights)  ---->   pulled before an unroll when seq moved
                                                    (a seqlock: retried if torn)

    learner loop: wait on all pipes (multiprocessing.connection.wait, with a timeout) until
    k = B / W filled slots are ready, dropping unrolls older than
    max_policy_lag (their slot goes straight back) -> copy the k slots into one [T, B] batch
    -> send each slot index back to its owner -> Learner.step -> publish weights (seq odd,
    copy, version, seq even).

    failures: an actor that dies shows up as EOF on its pipe (or a dead process at a
    liveness check every actor_check_s); it is restarted with a new pipe, and its slots that
    the learner is not holding become the new incarnation's free slots. Training goes on.

    shutdown: None on every pipe (each actor exits at its next wait), join with a timeout,
    terminate what is left; also on an exception or KeyboardInterrupt in the learner.

Why pipes and a seqlock, not shared queues and a lock: a process killed while holding a
cross-process lock never releases it, and ``multiprocessing.Queue.get`` holds the queue's
reader lock while it blocks, which is exactly where an idle actor waits. One pipe per actor
has one reader and one writer per end, so no lock is shared and a killed actor cannot stall
anyone; its pipe reports EOF instead.

Slot width: an actor steps all its ``E = envs_per_actor`` envs with one inference call per
step (larger ``E`` amortises the per-call cost: on this machine 64 envs give ~77k steps/s per
actor process, 128 give ~113k), while the learner's batch ``B = algo.batch_size`` is a learning
choice. So a slot holds ``W = min(E, B)`` env columns: with ``E <= B`` a batch is ``B / E``
whole unrolls (``B`` a multiple of ``E``); with ``E > B`` one unroll fills ``E / B`` slots, each a
batch on its own (``E`` a multiple of ``B``), trained on in turn.

Processes are started with ``fork`` (Linux): slots and the shared model are inherited,
nothing is pickled per unroll, only slot indices and episode returns travel through pipes.
Actors run their env batch and CPU inference single-threaded; the learner uses
``cfg.torch_threads`` threads. Every sample is trained on once unless replay is on
(``algo.replay_proportion``, see ``runtime/replay.py``).
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing as mp
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

import torch
from rich.console import Console

from impala_hybrid.algos.comm import TorchDistComm
from impala_hybrid.algos.impala.actor import Actor
from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.models.actor_critic import ActorCritic
from impala_hybrid.runtime.allocator import keep_freed_memory
from impala_hybrid.runtime.config import TrainConfig, reward_setup
from impala_hybrid.runtime.learners import free_port, join_learners, serve_learner, shards
from impala_hybrid.runtime.loop import AsyncRun
from impala_hybrid.runtime.serial import (
    TrainResult,
    build_learner,
    make_env,
    run_to_completion,
)
from impala_hybrid.types import Batch
from impala_hybrid.validation import ConfigError


def actor_seed(cfg: TrainConfig, actor_id: int, restart: int = 0) -> int:
    """The seed of an actor's envs and sampling (A3C's workers use it too): actor 0's first
    incarnation uses the run seed (so one actor reproduces serial)."""
    return cfg.seed + 7919 * actor_id + 104_729 * restart


def unroll_layout(section: str, n_env: int, batch_size: int) -> tuple[int, int, int]:
    """``(width, parts, per_batch)`` of actors stepping ``n_env`` envs for batches of
    ``batch_size`` (see the module docstring): env columns per slot, slots one unroll fills,
    slots one batch takes. ``section`` names the config in the error (``LocalConfig``)."""
    if max(n_env, batch_size) % min(n_env, batch_size) != 0:
        raise ConfigError(
            f"{section}.envs_per_actor = {n_env} is invalid: with algo.batch_size = "
            f"{batch_size} one must be a multiple of the other (a batch is whole unrolls, "
            "or an unroll is whole batches)"
        )
    width = min(n_env, batch_size)
    return width, n_env // width, batch_size // width


class _Weights:
    """Shared weights with a seqlock: the learner never waits, a reader retries if torn."""

    def __init__(self, model: ActorCritic, ctx: Any) -> None:
        self.model = copy.deepcopy(model).share_memory()
        self.seq = ctx.Value("q", 0, lock=False)  # odd while the learner writes
        self.version = ctx.Value("q", 0, lock=False)

    def publish(self, model: ActorCritic, version: int) -> None:
        self.seq.value += 1
        _publish(model, self.model)
        self.version.value = version
        self.seq.value += 1

    def pull(self, into: ActorCritic, seen_seq: int) -> tuple[int, int] | None:
        """Copy newer weights into ``into``: (seq, version), or None if nothing new."""
        if self.seq.value == seen_seq:
            return None
        while True:
            seq = self.seq.value
            if seq & 1:
                time.sleep(0)
                continue
            into.load_state_dict(self.model.state_dict())
            version = self.version.value
            if self.seq.value == seq:
                return seq, version


def _actor_main(
    actor_id: int,
    seed: int,
    cfg: TrainConfig,
    slots: list[Batch],
    free: list[int],
    conn: Connection,
    weights: _Weights,
) -> None:
    """One actor process: fill one of its free slots with an unroll, report it, repeat."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the learner owns Ctrl-C and shuts us down
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)
    env = make_env(cfg, cfg.local.envs_per_actor, seed=seed)
    reward_fn, reward_weights = reward_setup(cfg, env)
    model = copy.deepcopy(weights.model)
    seen, version = weights.pull(model, -1) or (-1, 0)
    actor = Actor(
        env, model, cfg.algo.unroll_length, seed=seed, reward_fn=reward_fn,
        num_rewards=len(reward_weights), desync_steps=cfg.desync_episodes,
    )  # fmt: skip
    free = list(free)
    width = slots[0].batch_size
    parts = cfg.local.envs_per_actor // width  # slots one unroll fills
    columns = [torch.arange(j * width, (j + 1) * width) for j in range(parts)]
    try:
        while True:
            t0 = time.perf_counter()
            while len(free) < parts or conn.poll():
                msg = conn.recv()
                if msg is None:
                    return
                free.append(msg)
            wait_s = time.perf_counter() - t0
            idxs, free = free[:parts], free[parts:]
            pulled = weights.pull(model, seen)
            if pulled is not None:
                seen, version = pulled
            unroll = actor.unroll(version)
            if parts == 1:
                slots[idxs[0]].copy_(unroll)
            else:
                for idx, cols in zip(idxs, columns, strict=True):
                    slots[idx].copy_(unroll.columns(cols))
            returns, _ = actor.drain_episodes()
            conn.send((idxs, returns, wait_s))
    except (EOFError, BrokenPipeError):
        return  # the learner is gone
    finally:
        env.close()


class LocalRun(AsyncRun):
    """The local runtime as an object: one learner step per :meth:`step` (see module doc;
    the step, its record and the checkpoint state are :class:`~.loop.AsyncRun`'s)."""

    name = "local"

    def __init__(self, cfg: TrainConfig, report: Callable[[str], None] | None = None) -> None:
        """``report(message)`` is told of every actor restart (default: a line on stderr), so
        a crashing env is seen on screen while training goes on, not only in metrics."""
        self.cfg = cfg
        self.report = report if report is not None else Console(stderr=True).print
        local = cfg.local
        n_env = local.envs_per_actor
        width, parts, self.per_batch = unroll_layout("LocalConfig", n_env, cfg.algo.batch_size)
        per_actor = local.slots_per_actor or max(
            2 * parts, -(-2 * self.per_batch // local.num_actors)
        )
        if per_actor < parts:
            raise ConfigError(
                f"LocalConfig.slots_per_actor = {per_actor} is invalid: one unroll of "
                f"{n_env} envs fills {parts} slots of {width} envs, so each actor needs >= {parts}"
            )
        if per_actor * local.num_actors < self.per_batch:
            raise ConfigError(
                f"LocalConfig.slots_per_actor = {per_actor} is invalid: a batch needs "
                f"{self.per_batch} slots and {local.num_actors} actors hold {per_actor} each"
            )
        if local.learners > cfg.algo.batch_size:
            raise ConfigError(
                f"LocalConfig.learners = {local.learners} is invalid: each learner takes at "
                f"least one unroll of the batch; allowed range [1, IMPALAConfig.batch_size = "
                f"{cfg.algo.batch_size}]"
            )
        self._ctx = mp.get_context("fork")
        keep_freed_memory()  # here and in the forked actors
        # Synchronous peers first: forked before this process joins the process group.
        self.peers: list[tuple[Any, Connection]] = []
        self._group = False  # whether this run initialised the learners' process group
        comm = self._start_learners() if local.learners > 1 else None
        try:
            torch.manual_seed(cfg.seed)
            # Model, learner and a one-step template unroll (to size the slots) in this process.
            probe = make_env(cfg, n_env, seed=cfg.seed)
            reward_fn, reward_weights = reward_setup(cfg, probe)
            self.learner = build_learner(cfg, probe, comm=comm)
            model = self.learner.model
            self.weights = _Weights(model, self._ctx)
            template = Actor(
                probe, copy.deepcopy(model), 1, seed=cfg.seed, reward_fn=reward_fn,
                num_rewards=len(reward_weights),
            ).unroll()  # fmt: skip
            probe.close()
            template = template.columns(torch.arange(width))
            t_len = cfg.algo.unroll_length
            self.slots = [_empty_slot(template, t_len) for _ in range(per_actor * local.num_actors)]
            self.owned = [
                list(range(a * per_actor, (a + 1) * per_actor)) for a in range(local.num_actors)
            ]
            self.ready: list[int] = []  # filled slots the learner holds, oldest first
            self.returning: set[int] = set()  # slots being handed back, not yet sent (_hand_back)
            self.restarts = [0] * local.num_actors
            self.procs: list[Any] = [None] * local.num_actors
            self.conns: list[Connection] = [None] * local.num_actors  # type: ignore[list-item]
            self.actor_wait = 0.0
            self.actor_unrolls = 0
            self._init_loop()
            self._last_check = time.perf_counter()
            for a in range(local.num_actors):
                self._start(a, self.owned[a])
        except BaseException:  # leave no learner process or process group behind
            self._stop_learners()
            raise

    def _start_learners(self) -> TorchDistComm:
        """Fork ranks ``1..learners-1`` (:func:`~.learners.serve_learner`) and join their
        gloo group as rank 0 (a TCP store on this host)."""
        init = f"tcp://127.0.0.1:{free_port()}"
        for rank in range(1, self.cfg.local.learners):
            mine, theirs = self._ctx.Pipe(duplex=True)
            proc = self._ctx.Process(
                target=serve_learner, args=(self.cfg, rank, init, theirs), daemon=True,
                name=f"learner-{rank}",
            )  # fmt: skip
            proc.start()
            theirs.close()
            self.peers.append((proc, mine))
        comm = join_learners(init, 0, self.cfg.local.learners)
        self._group = True
        return comm

    def _peer_failed(self, rank: int) -> RuntimeError:
        proc = self.peers[rank - 1][0]
        proc.join(1.0)
        return RuntimeError(
            f"learner process {rank} failed (exit code {proc.exitcode}); the synchronous "
            "step cannot go on without it (--resume continues the run)"
        )

    def _send(self, messages: list[Any]) -> None:
        """One message to each peer; a dead peer is an error that names it."""
        for rank, ((_, conn), msg) in enumerate(zip(self.peers, messages, strict=True), 1):
            try:
                conn.send(msg)
            except (BrokenPipeError, OSError):
                raise self._peer_failed(rank) from None

    def _gather(self) -> list[Any]:
        """Every peer's answer; a dead peer is an error that names it (a synchronous step
        cannot go on without it)."""
        answers = []
        for rank, (_, conn) in enumerate(self.peers, start=1):
            try:
                answers.append(conn.recv())
            except (EOFError, OSError):
                raise self._peer_failed(rank) from None
        return answers

    def peer_weights(self) -> list[list[torch.Tensor]]:
        """Every peer's parameters and buffers (to check that the ranks agree)."""
        self._send([("weights",)] * len(self.peers))
        return self._gather()

    def _learn(self, batch: Batch, env_steps: int) -> dict[str, float]:
        """One synchronous step of every learner on its shard; rank 0's metrics."""
        if not self.peers:
            return self.learner.step(batch, env_steps=env_steps)
        parts = shards(batch.batch_size, env_steps, len(self.peers) + 1)
        self._send([("step", batch.columns(cols), n) for cols, n in parts[1:]])
        cols, n = parts[0]
        try:
            metrics = self.learner.step(batch.columns(cols), env_steps=n)
        except RuntimeError:  # e.g. gloo's "connection closed by peer": say which failed
            self._gather()
            raise
        self._gather()
        return metrics

    def _after_load(self) -> None:
        if self.peers:  # every rank continues from the checkpoint
            state = self.learner.state_dict()
            self._send([("load", state)] * len(self.peers))
            self._gather()
        super()._after_load()

    def _start(self, a: int, free: list[int]) -> None:
        mine, theirs = self._ctx.Pipe(duplex=True)
        seed = actor_seed(self.cfg, a, self.restarts[a])
        args = (a, seed, self.cfg, self.slots, free, theirs, self.weights)
        proc = self._ctx.Process(target=_actor_main, args=args, daemon=True, name=f"actor-{a}")
        proc.start()
        theirs.close()  # the child holds its end; EOF here now means the child is gone
        self.procs[a], self.conns[a] = proc, mine

    def _restart(self, a: int) -> None:
        proc = self.procs[a]
        if proc.is_alive():
            proc.kill()
        proc.join(1.0)
        if self.restarts[a] >= self.cfg.local.max_restarts:
            raise RuntimeError(
                f"actor {a} died {self.restarts[a] + 1} times (exit {proc.exitcode})"
            )
        self.conns[a].close()
        self.restarts[a] += 1
        # Full slots the learner still holds, and those it is about to send back (to the
        # new pipe), are not free yet: giving them now would issue them twice.
        held = set(self.ready) | self.returning
        self._start(a, [i for i in self.owned[a] if i not in held])
        self.report(
            f"actor {a} died (exit code {proc.exitcode}); restarted it (restart "
            f"{self.restarts[a]} of local.max_restarts = {self.cfg.local.max_restarts})"
        )

    def revive_dead(self) -> None:
        for a, proc in enumerate(self.procs):
            if not proc.is_alive():
                self._restart(a)

    def _hand_back(self, idxs: list[int]) -> None:
        """Send slots the learner no longer holds (already out of ``ready``) to their owners.

        A send can find its actor dead and restart it (:meth:`_restart`); the new
        incarnation then starts with that slot and any other of its slots not in ``ready``
        or still in ``returning``, and the rest of ``idxs`` reach it over its new pipe: each
        slot is issued exactly once, never twice (an actor overwriting a slot it was handed
        again) and never not at all (a slot lost for the rest of the run).
        """
        self.returning.update(idxs)
        for idx in idxs:
            self.returning.discard(idx)
            a = idx // len(self.owned[0])
            try:
                self.conns[a].send(idx)
            except (BrokenPipeError, OSError):
                self._restart(a)  # the new incarnation gets the slot as free

    def _receive(self, timeout: float) -> None:
        """Collect finished unrolls from whichever actors have reported."""
        for ready in wait(list(self.conns), timeout=timeout):
            a = self.conns.index(ready)  # type: ignore[arg-type]
            conn = self.conns[a]
            try:
                idxs, returns, wait_s = conn.recv()
            except (EOFError, OSError):
                self._restart(a)
                continue
            self._new_returns.extend(returns)
            self.actor_wait += wait_s
            self.actor_unrolls += 1
            self.ready.extend(idxs)

    def _drop_stale(self) -> None:
        """Free ready unrolls older than ``max_policy_lag`` updates (checked when a batch is
        taken, since an unroll may wait in ``ready`` while the learner moves on)."""
        max_lag = self.cfg.local.max_policy_lag
        if max_lag is None:
            return
        keep: list[int] = []
        stale: list[int] = []
        for idx in self.ready:
            lag = self.learner.version - int(self.slots[idx].policy_version[0])
            (stale if lag > max_lag else keep).append(idx)
        self.ready = keep  # before handing back, so a restart there sees the stale ones freed
        self.dropped += len(stale)
        self._hand_back(stale)

    def _take_batch(self) -> Batch:
        """Wait for enough filled slots, copy them into one batch, hand the slots back."""
        t0 = time.perf_counter()
        self._drop_stale()
        while len(self.ready) < self.per_batch:
            self._receive(self.cfg.local.actor_check_s)
            self._drop_stale()
            if time.perf_counter() - self._last_check >= self.cfg.local.actor_check_s:
                self.revive_dead()  # found even while the other actors keep us busy
                self._last_check = time.perf_counter()
        self.learner_wait += time.perf_counter() - t0
        idxs, self.ready = self.ready[: self.per_batch], self.ready[self.per_batch :]
        batch = Batch.concat([self.slots[i] for i in idxs])  # copies out of the slots
        self._hand_back(idxs)
        return batch

    def _after_update(self) -> None:
        self.weights.publish(self.learner.model, self.learner.version)

    def _extra_metrics(self) -> dict[str, float]:
        return {"actor_wait_mean_s": self.actor_wait / max(self.actor_unrolls, 1)}

    def close(self) -> None:
        stop_processes(self.procs, self.conns)
        self._stop_learners()

    def _stop_learners(self) -> None:
        """End the peer learner processes and leave their process group."""
        for proc, conn in self.peers:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)
            proc.join(5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            conn.close()
        self.peers = []
        if self._group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._group = False


def stop_processes(procs: list[Any], conns: list[Connection], timeout: float = 5.0) -> None:
    """Stop processes that wait for messages on pipes (``conns[i]`` is ``procs[i]``'s): None
    on every pipe (each exits at its next wait), join within ``timeout`` seconds in all,
    terminate what is left, close the pipes."""
    for conn in conns:
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.send(None)
    deadline = time.perf_counter() + timeout
    for proc in procs:
        proc.join(max(0.0, deadline - time.perf_counter()))
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)
    for conn in conns:
        conn.close()


def train_local(
    cfg: TrainConfig, callback: Callable[[dict[str, float], Learner], None] | None = None
) -> TrainResult:
    """Train with ``cfg.local.num_actors`` actor processes feeding one learner."""
    return run_to_completion(LocalRun, cfg, callback)


def _empty_slot(template: Batch, t_len: int) -> Batch:
    """A zeroed slot in shared memory shaped like ``template`` but with ``t_len`` steps."""

    def like(x: torch.Tensor, steps: int | None) -> torch.Tensor:
        shape = (steps, *x.shape[1:]) if steps is not None else tuple(x.shape)
        return torch.zeros(shape, dtype=x.dtype)

    acts = template.actions
    actions: Any
    if isinstance(acts, torch.Tensor):
        actions = like(acts, t_len)
    else:
        actions = type(acts)(like(acts.discrete, t_len), like(acts.continuous, t_len))
    return Batch(
        obs=like(template.obs, t_len + 1),
        first=like(template.first, t_len + 1),
        actions=actions,
        behaviour_logp=like(template.behaviour_logp, t_len),
        rewards=like(template.rewards, t_len),
        terminated=like(template.terminated, t_len),
        truncated=like(template.truncated, t_len),
        final_obs=like(template.final_obs, t_len),
        core_state=tuple(like(s, None) for s in template.core_state),
        policy_version=like(template.policy_version, None),
    ).share_memory_()


@torch.no_grad()
def _publish(model: ActorCritic, shared: ActorCritic) -> None:
    for dst, src in zip(shared.state_dict().values(), model.state_dict().values(), strict=True):
        dst.copy_(src)
