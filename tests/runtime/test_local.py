"""The local multi-process runtime: same first update as serial, recovery, backpressure."""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import numpy as np
import pytest
import torch

from impala_hybrid.experiments.spec import LocalConfig, TrainConfig
from impala_hybrid.runtime.local import LocalRun, train_local
from impala_hybrid.runtime.serial import train_serial
from impala_hybrid.validation import ConfigError
from tests.runtime import (
    assert_column_halves,
    assert_weights_close,
    take_two_batches,
    train_with_a_kill,
    uav,
)


def with_local(cfg: TrainConfig, **local: object) -> TrainConfig:
    return dataclasses.replace(cfg, local=LocalConfig(**local))  # type: ignore[arg-type]


def test_first_update_matches_serial_runtime() -> None:
    """One actor with the serial runtime's envs and seed produces the same first batch, so
    the learner's first update (every metric) is identical."""
    cfg = uav(total_steps=64)
    serial = train_serial(cfg).history[0]
    local = train_local(with_local(cfg, num_actors=1, envs_per_actor=8)).history[0]
    for key, value in serial.items():
        if key in ("episode_return",):
            continue
        assert local[key] == value, key


def test_two_local_learners_make_the_update_of_one_on_the_whole_batch() -> None:
    """``local.learners = 2``: this process and a forked learner each step on half of every
    batch (gloo all-reduce). The first update is the serial runtime's (one learner on the
    same, whole, first batch) to float tolerance, the peer holds the very same weights, and
    a loaded state reaches it."""
    cfg = uav(total_steps=64)
    serial = train_serial(cfg).learner
    run = LocalRun(with_local(cfg, num_actors=1, envs_per_actor=8, learners=2))
    try:
        run.step()
        assert run.learner.version == 1 and run.learner.samples == 64
        assert_weights_close(run.learner.model, serial.model)
        (peer,) = run.peer_weights()
        for a, b in zip(peer, run.learner.model.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        other = train_serial(dataclasses.replace(cfg, seed=1)).learner
        state = run.state_dict()
        state["learner"] = other.state_dict()
        run.load_state_dict(state)
        (peer,) = run.peer_weights()
        for a, b in zip(peer, other.model.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        run.step()
        assert run.learner.version == 2
    finally:
        run.close()
    assert not torch.distributed.is_initialized()  # the group was left at close
    assert run.peers == []


def test_a_config_error_after_the_learners_started_leaves_nothing_behind() -> None:
    """An error raised while building the learners (here: Lagrange multipliers with a scalar
    critic) ends the peer processes and the process group, so the next run can start."""
    bad = uav(total_steps=64, lagrange=True)
    run_cfg = with_local(bad, num_actors=1, envs_per_actor=8, learners=2)
    with pytest.raises(ConfigError, match=r"lagrange = true is invalid with TrainConfig\.critic"):
        LocalRun(run_cfg)
    assert not torch.distributed.is_initialized()


def test_a_dead_local_learner_ends_the_run_saying_so() -> None:
    cfg = with_local(uav(total_steps=64 * 10), num_actors=1, envs_per_actor=8, learners=2)
    run = LocalRun(cfg)
    try:
        run.step()
        proc, _ = run.peers[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(5.0)
        with pytest.raises(RuntimeError, match=r"learner process 1 failed .*--resume"):
            run.step()
    finally:
        run.close()


def test_unroll_wider_than_batch_fills_consecutive_batches() -> None:
    """One actor stepping 16 envs with B = 8: its first unroll is split into two slots, and
    the learner's first two batches are exactly its two column halves (same envs, seed and
    initial weights as the serial runtime's actor)."""
    cfg = with_local(uav(total_steps=8 * 8 * 4), num_actors=1, envs_per_actor=16)
    assert_column_halves(cfg, *take_two_batches(LocalRun(cfg)))


def test_unroll_wider_than_batch_trains() -> None:
    cfg = with_local(uav(total_steps=8 * 8 * 12), num_actors=1, envs_per_actor=32)
    result = train_local(cfg)
    assert result.learner.version == 12
    assert max(r["policy_lag_max"] for r in result.history) >= 1.0  # later slots of an unroll
    assert result.history[-1]["skipped_total"] == 0


def test_killed_actor_is_restarted_and_training_goes_on() -> None:
    cfg = with_local(uav(total_steps=8 * 8 * 30), num_actors=2, envs_per_actor=4,
                     actor_check_s=0.05)  # fmt: skip
    reports: list[str] = []
    run = LocalRun(cfg, report=reports.append)
    records = train_with_a_kill(run, lambda: os.kill(run.procs[0].pid, signal.SIGKILL))
    assert run.learner.samples >= cfg.total_steps
    assert records[-1]["actor_restarts"] >= 1
    assert run.procs[0].is_alive() is False or run.restarts[0] >= 1
    assert run.learner.version == 30  # every one of the 30 updates ran and applied
    assert any(r.startswith("actor 0 died (exit code -9); restarted it") for r in reports)


def _one_actor_with_all_slots_ready(kill: bool = True, **local: object) -> LocalRun:
    """One actor of 4 envs, B = 8 (2 slots a batch, 4 slots): wait until it has filled all
    4 slots (all with policy version 0), then (``kill``) kill it, so the next slot handed
    back finds a dead pipe."""
    run = LocalRun(with_local(uav(total_steps=8 * 8 * 4), num_actors=1, envs_per_actor=4,
                              **local))  # fmt: skip
    deadline = time.monotonic() + 60
    while len(run.ready) < 4 and time.monotonic() < deadline:
        run._receive(0.5)
    assert sorted(run.ready) == [0, 1, 2, 3]
    if kill:
        os.kill(run.procs[0].pid, signal.SIGKILL)
        run.procs[0].join(10)
    return run


def _collect_until_quiet(run: LocalRun, quiet_s: float = 1.5) -> list[int]:
    """Every slot the (restarted) actor reports until it has nothing left to fill."""
    seen = len(run.ready)
    deadline = time.monotonic() + quiet_s
    while time.monotonic() < deadline:
        run._receive(0.1)
        if len(run.ready) != seen:
            seen, deadline = len(run.ready), time.monotonic() + quiet_s
    return list(run.ready)


def test_restart_while_handing_back_a_batch_issues_each_slot_once() -> None:
    """The batch's first slot finds the actor dead: the restarted actor must get the
    batch's second slot once (over its pipe), not also in its initial free list, or it fills
    that slot twice (and may overwrite it while the learner copies it)."""
    run = _one_actor_with_all_slots_ready()
    try:
        run._take_batch()  # takes slots 0, 1; handing back 0 restarts the actor
        assert run.restarts[0] == 1
        ready = _collect_until_quiet(run)
    finally:
        run.close()
    assert sorted(ready) == [0, 1, 2, 3], ready


def test_restart_while_dropping_stale_unrolls_loses_no_slot() -> None:
    """All 4 ready unrolls are stale and the first one's hand-back restarts the actor:
    every slot must come back filled (before, the first stayed lost: with one actor and a
    batch of 2 slots, losing 3 hangs the learner)."""
    run = _one_actor_with_all_slots_ready(max_policy_lag=0)
    try:
        run.learner.version += 1  # every filled slot is now one update too old
        run._drop_stale()
        assert run.restarts[0] == 1 and run.dropped == 4
        ready = _collect_until_quiet(run)
    finally:
        run.close()
    assert sorted(ready) == [0, 1, 2, 3], ready


def test_max_policy_lag_drops_stale_unrolls() -> None:
    """Four version-0 unrolls ready, the first step trains on two: the other two are one
    update old at the second step and must be dropped (and reported), not trained on."""
    run = _one_actor_with_all_slots_ready(kill=False, max_policy_lag=0)
    try:
        records = [run.step(), run.step()]
    finally:
        run.close()
    assert all(r is not None and r["policy_lag_max"] == 0.0 for r in records)
    assert records[0]["dropped_unrolls"] == 0.0  # type: ignore[index]
    assert records[1]["dropped_unrolls"] == run.dropped >= 2  # type: ignore[index]


def test_metrics_report_pipeline() -> None:
    cfg = with_local(uav(total_steps=8 * 8 * 10), num_actors=2, envs_per_actor=4)
    result = train_local(cfg)
    last = result.history[-1]
    for key in ("fps", "learner_wait_frac", "actor_wait_mean_s", "policy_lag_mean"):
        assert np.isfinite(last[key]), key
    assert result.learner.version == 10


def test_bad_layout_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="envs_per_actor"):
        train_local(with_local(uav(64), envs_per_actor=3))
    with pytest.raises(ConfigError, match="num_actors"):
        LocalConfig(num_actors=0)
    with pytest.raises(ConfigError, match="slots_per_actor"):
        train_local(with_local(uav(64), envs_per_actor=2, num_actors=1, slots_per_actor=2))
    with pytest.raises(ConfigError, match="envs_per_actor = 12"):
        train_local(with_local(uav(64), envs_per_actor=12))  # neither divides the other
    with pytest.raises(ConfigError, match=r"slots_per_actor = 1 .* fills 2 slots"):
        train_local(with_local(uav(64), envs_per_actor=16, num_actors=1, slots_per_actor=1))
    with pytest.raises(ConfigError, match=r"LocalConfig\.learners = 9 is invalid: .* \[1, "):
        LocalRun(with_local(uav(64), learners=9))  # B = 8 unrolls


def test_local_runtime_learns_cartpole() -> None:
    from impala_hybrid.evaluation.policy import evaluate_returns
    from impala_hybrid.experiments.spec import cartpole

    cfg = with_local(cartpole(), num_actors=2, envs_per_actor=16)
    result = train_local(cfg)
    returns = evaluate_returns(result.model, cfg.env, 16, seed=1000)
    assert returns.mean() >= 400.0, returns
