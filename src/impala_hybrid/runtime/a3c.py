"""The A3C runtime: worker processes that each act, learn and update one shared model.

Wiring (Mnih et al. 2016, Algorithm S3, with processes for threads). Everything the
processes share or exchange::

    main process (A3CRun)                           worker w = 0..W-1 (forked, daemon)
    ---------------------                           ----------------------------------
    shared learner (algos/a3c/learner.py):   <--->  E envs seeded from (seed, w), an Actor
      parameters theta and the optimizer's          on its local copy theta'; per grant:
      statistics in shared memory                   theta' <- theta, T steps of its envs,
                                                    A3CLearner.step (grads -> theta, no lock)
    counts [W, 2] (updates, env steps)       <----  its own row, after each update
    pipe w: main -> worker: True (one update)  -->  waits for a grant between updates
                            None (stop)
            worker -> main: ("update", metrics,  <- after each update, or ("error",
                            episode returns)        traceback) if it fails, then exits

    step(): about a3c.updates_per_step * W grants, at most one outstanding per worker: each
    worker gets one, and the next as soon as it reports, until the grants or the env-step
    budget run out; step() returns when every granted update has reported.

    failures: a worker that dies shows up as EOF on its pipe, a failed send or a dead
    process; the run ends with an error naming it (workers are not restarted; --resume
    continues from checkpoints/last.pt).

    shutdown: None on every pipe, join with a timeout, terminate what is left; also on an
    error in the main process (the trainer closes its runtime however a run ends).

Why grants rather than free-running workers: the trainer logs, evaluates the greedy policy
and writes checkpoints between steps. Workers that kept training meanwhile would change the
weights under an evaluation (a score of a moving policy, and a ``best.pt`` holding other
weights than the ones scored) and train in time that ``eval.jsonl``'s ``wall_s`` (time
inside steps) does not count. With grants the weights are fixed outside ``step()``; inside
it the workers run fully asynchronously. The price is that a step ends with the workers
waiting for the slowest one's last update, a small fraction of ``updates_per_step``
updates. Grants travel on pipes, not through a shared lock, for ``local.py``'s reason: a
process killed while holding a lock never releases it.

Budget: a grant is given only while the env steps done and granted stay below
``total_steps``, so a run ends exactly at the first multiple of ``T * E`` (one update's env
steps) at or past it, and ``env_steps`` is the sum of the workers' counts. A resumed run
restarts the workers and their envs, seeded anew (:func:`worker_seed`; ``exact_resume`` is
False; no run with two workers is
reproducible anyway, their updates interleave by timing). With one worker a run is
reproducible: its seed is the run's, as for actor 0 of the local runtime.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np
import torch

from impala_hybrid.algos.a3c.learner import A3CLearner
from impala_hybrid.algos.impala.actor import Actor
from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.runtime.allocator import keep_freed_memory
from impala_hybrid.runtime.config import TrainConfig, reward_setup
from impala_hybrid.runtime.local import actor_seed, stop_processes
from impala_hybrid.runtime.progress import Budget, Progress
from impala_hybrid.runtime.serial import TrainResult, build_learner, make_env, run_to_completion

#: Seconds between liveness checks while waiting for the workers' reports.
CHECK_S = 1.0


def build_a3c_learner(cfg: TrainConfig, env: Any, shared: A3CLearner | None = None) -> A3CLearner:
    """The shared learner (``shared=None``: warm-started if configured) or a worker's
    learner on ``shared``, for ``env``'s spaces (``runtime.serial.build_learner``)."""
    learner = build_learner(
        cfg, env, warm=shared is None, kind=A3CLearner, shared=shared,
        optimizer_state=cfg.a3c.optimizer_state,
    )  # fmt: skip
    assert isinstance(learner, A3CLearner)
    return learner


def worker_seed(cfg: TrainConfig, w: int, env_steps: int = 0) -> int:
    """The seed of worker ``w``'s envs and sampling: :func:`~.local.actor_seed` in a new run
    (worker 0's is the run's seed), and in a run resumed at ``env_steps`` one drawn from both,
    as ``Actor.load_state_dict`` restarts envs, so the resumed run plays new episodes."""
    seed = actor_seed(cfg, w)
    if env_steps == 0:
        return seed
    return int(np.random.SeedSequence([seed, env_steps]).generate_state(1, np.uint32)[0])


def _worker_main(
    w: int, cfg: TrainConfig, shared: A3CLearner, counts: torch.Tensor, base: tuple[int, int],
    conn: Connection,
) -> None:  # fmt: skip
    """Worker ``w``: one update per grant (module docstring) until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process owns Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)
    env = None

    def global_counts() -> tuple[int, int]:  # (env steps, updates) of all workers
        return base[0] + int(counts[:, 1].sum()), base[1] + int(counts[:, 0].sum())

    try:
        seed = worker_seed(cfg, w, base[0])
        env = make_env(cfg, cfg.a3c.envs_per_worker, seed=seed)
        reward_fn, weights = reward_setup(cfg, env)
        learner = build_a3c_learner(cfg, env, shared)
        actor = Actor(
            env, learner.model, cfg.algo.unroll_length, seed=seed, reward_fn=reward_fn,
            num_rewards=len(weights), desync_steps=cfg.desync_episodes,
        )  # fmt: skip
        while conn.recv():
            version = global_counts()[1]
            learner.sync()
            batch = actor.unroll(version)
            # The global counts drive the schedules (lr, entropy) and the lag metric: how
            # many updates the others applied since this worker's sync.
            learner.samples, learner.version = global_counts()
            metrics = learner.step(batch)
            counts[w, 0] += 1 - int(metrics["skipped"])
            counts[w, 1] += batch.unroll_length * batch.batch_size
            returns, _ = actor.drain_episodes()
            conn.send(("update", metrics, returns))
    except (EOFError, BrokenPipeError):
        return  # the main process is gone
    except Exception:
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.send(("error", traceback.format_exc()))
        sys.exit(1)
    finally:
        if env is not None:
            env.close()


class A3CRun(Budget):
    """A3C as a runtime object for the trainer (``experiments/trainer.py``): the workers make
    about ``a3c.updates_per_step`` updates each per :meth:`step` (module docstring).

    ``learner`` is the shared learner: its ``model`` is the shared model (evaluation and
    checkpoints read it), ``samples`` and ``version`` the workers' totals after each step.
    """

    name = "a3c"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self._ctx = mp.get_context("fork")
        keep_freed_memory()  # here and in the forked workers
        torch.manual_seed(cfg.seed)
        probe = make_env(cfg, 1, seed=cfg.seed)
        try:
            self.learner = build_a3c_learner(cfg, probe)
        finally:
            probe.close()
        workers = cfg.a3c.workers
        self.counts = torch.zeros(workers, 2, dtype=torch.int64).share_memory_()
        self.per_update = cfg.algo.unroll_length * cfg.a3c.envs_per_worker
        self.procs: list[Any] = []
        self.conns: list[Connection] = []
        self.returns: list[float] = []  # episode returns completed in this session
        self.progress = Progress(cfg.log_interval)
        self._base = (0, 0)  # env steps and updates before the workers started (resume)
        self._granted = 0  # grants given since the workers started
        self._grants_left = 0
        self._step_time = 0.0

    @property
    def exact_resume(self) -> bool:
        return False

    @property
    def worker_updates(self) -> list[int]:
        """Updates each worker applied in this session."""
        return [int(n) for n in self.counts[:, 0]]

    def _start(self) -> None:
        self._base = (self.learner.samples, self.learner.version)
        for w in range(self.cfg.a3c.workers):
            mine, theirs = self._ctx.Pipe(duplex=True)
            args = (w, self.cfg, self.learner, self.counts, self._base, theirs)
            proc = self._ctx.Process(
                target=_worker_main, args=args, daemon=True, name=f"a3c-worker-{w}"
            )
            proc.start()
            theirs.close()  # the child holds its end; EOF here now means the child is gone
            self.procs.append(proc)
            self.conns.append(mine)

    def _failure(self, w: int, detail: str | None = None) -> RuntimeError:
        proc = self.procs[w]
        proc.join(1.0)
        code = proc.exitcode
        how = f"exit code {code}"
        if code is not None and code < 0:
            how += f", {signal.Signals(-code).name}"
        return RuntimeError(
            f"A3C worker {w} died ({how}); the run stops (workers are not restarted; "
            "--resume continues from checkpoints/last.pt)" + (f":\n{detail}" if detail else "")
        )

    def _grant(self, w: int, pending: set[int]) -> None:
        """Let worker ``w`` make one more update, if the step's grants and the run's env-step
        budget allow it."""
        committed = self._base[0] + self._granted * self.per_update
        if self._grants_left <= 0 or committed >= self.cfg.total_steps:
            return
        try:
            self.conns[w].send(True)
        except (BrokenPipeError, OSError):
            raise self._failure(w) from None
        pending.add(w)
        self._grants_left -= 1
        self._granted += 1

    def step(self) -> dict[str, float] | None:
        """About ``updates_per_step`` updates per worker; the progress record when one is
        due (every ``log_interval`` steps and at the last), else None."""
        t0 = time.perf_counter()
        if not self.procs:
            self._start()
        self._grants_left = self.cfg.a3c.updates_per_step * len(self.procs)
        pending: set[int] = set()
        for w in range(len(self.procs)):
            self._grant(w, pending)
        while pending:
            ready = wait([self.conns[w] for w in pending], timeout=CHECK_S)
            if not ready:
                for w in pending:
                    if not self.procs[w].is_alive():
                        raise self._failure(w)
            for conn in ready:
                w = self.conns.index(conn)  # type: ignore[arg-type]
                try:
                    message = self.conns[w].recv()
                except (EOFError, OSError):
                    raise self._failure(w) from None
                if message[0] == "error":
                    raise self._failure(w, message[1])
                _, metrics, returns = message
                pending.discard(w)
                self.progress.add(metrics, returns)
                self.returns.extend(returns)
                self._grant(w, pending)
        base_steps, base_updates = self._base
        self.learner.samples = base_steps + int(self.counts[:, 1].sum())
        self.learner.version = base_updates + int(self.counts[:, 0].sum())
        self._step_time += time.perf_counter() - t0
        record = self.progress.record(self.learner.samples, last=self.done)
        if record is not None:  # env steps per second of stepping in this session
            record["fps"] = (self.learner.samples - base_steps) / max(self._step_time, 1e-9)
        return record

    def state_dict(self) -> dict[str, Any]:
        """The shared learner (model, optimizer statistics, counters) and the progress
        accumulators; the workers' envs are not saved (they restart on resume)."""
        return {"learner": self.learner.state_dict(), "loop": self.progress.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.procs:
            raise RuntimeError("A3CRun.load_state_dict: only before the first step")
        self.learner.load_state_dict(state["learner"])
        self.progress.load_state_dict(state["loop"])

    def close(self) -> None:
        stop_processes(self.procs, self.conns)


def train_a3c(
    cfg: TrainConfig, callback: Callable[[dict[str, float], Learner], None] | None = None
) -> TrainResult:
    """Train A3C with ``cfg.a3c.workers`` worker processes until ``cfg.total_steps``."""
    return run_to_completion(A3CRun, cfg, callback)
