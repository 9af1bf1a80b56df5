"""Synchronous multi-learner training: two CPU learners (gloo) on the halves of a batch make
the update one learner makes on the whole batch, and a step skipped on one rank is skipped
on both.

One pair of processes runs every case (spawning costs more than the cases), each rank
writes what it ended with, and the test process compares with one learner of its own.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from impala_hybrid.algos.comm import Comm, TorchDistComm
from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.runtime.learners import free_port
from impala_hybrid.runtime.serial import build
from impala_hybrid.types import Batch

UAV = "impala_hybrid/UAVNet-v0"
STEPS = 3


def _cfg(algo: IMPALAConfig, **kw: Any) -> TrainConfig:
    model = kw.pop("model", ModelConfig(hidden=(16,)))
    return TrainConfig(env=UAV, num_envs=algo.batch_size, total_steps=4 * algo.unroll_length *
                       algo.batch_size, model=model, algo=algo, **kw)  # fmt: skip


# Each case: a config, and the columns of the batch each of the two ranks takes.
CASES: dict[str, tuple[TrainConfig, list[list[int]]]] = {
    # the UAV preset's choices: standardised advantages, the clipped surrogate; a gradient
    # clip that binds, a learning-rate schedule on the global sample count, an adaptive
    # entropy weight, running observation statistics
    "clipped_normalized": (
        _cfg(
            IMPALAConfig(
                unroll_length=8,
                batch_size=4,
                normalize_advantages=True,
                pg_clip_eps=0.2,
                max_grad_norm=0.5,
                lr=3e-3,
                lr_final=0.0,
                target_entropy_continuous=-1.0,
            ),
            model=ModelConfig(hidden=(16,), obs_norm=True),
        ),
        [[0, 1], [2, 3]],
    ),
    # IMPALA's rho-weighted gradient, PopArt on a vector critic, unequal shards (3 and 1), a
    # critic warm-up of 2 steps of the combined batch (on one shard's count: 4 or 8 steps)
    "popart_vector_unequal": (
        _cfg(
            IMPALAConfig(
                unroll_length=8, batch_size=4, popart=True, lr=3e-3, critic_warmup_steps=64
            ),
            critic="vector",
        ),
        [[0, 2, 3], [1]],
    ),
}


def _batch(cfg: TrainConfig) -> Batch:
    _, learner, actor = build(cfg)
    return actor.unroll(learner.version)


def _learner(cfg: TrainConfig, comm: Comm) -> Learner:
    """The learner ``build`` makes (seeded by ``cfg.seed``), on the ranks' ``comm``; rank
    1's weights are perturbed first, so equal weights afterwards come from the broadcast."""
    _, learner, _ = build(cfg)
    if comm.rank == 1:
        with torch.no_grad():
            for p in learner.model.parameters():
                p.add_(torch.randn_like(p))
    return Learner(learner.model, cfg.algo, total_samples=cfg.total_steps,
                   reward_weights=learner.reward_weights, comm=comm)  # fmt: skip


def _final_state(learner: Any, metrics: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "params": [p.detach().clone() for p in learner.model.state_dict().values()],
        "samples": learner.samples,
        "version": learner.version,
        "skipped": learner.skipped,
        "popart": (learner.popart_mu.clone(), learner.popart_nu.clone()),
        "entropy_log_coefs": learner.entropy_log_coefs.clone(),
        "lr": [m["lr"] for m in metrics],
        "grad_norm": [m["grad_norm"] for m in metrics],
    }


def _rank(rank: int, port: int, out: str, batches: dict[str, Batch]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)  # fmt: skip
    comm = TorchDistComm()
    results: dict[str, Any] = {}
    # the collectives on their own: moments of the concatenated shards
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5 + 3 * rank, 4, generator=g) * (1 + rank)
    results["moments"] = (x, comm.mean(x, 0), comm.var(x, 0), comm.var(x, unbiased=False),
                          comm.std(x), comm.count(x.shape[0]), comm.all(rank == 0))  # fmt: skip
    for name, (cfg, shards) in CASES.items():
        learner = _learner(cfg, comm)
        shard = batches[name].columns(torch.tensor(shards[rank]))
        metrics = [learner.step(shard) for _ in range(STEPS)]
        results[name] = _final_state(learner, metrics)
    # a non-finite reward on rank 1 only: both ranks skip, then both step again
    cfg, shards = CASES["clipped_normalized"]
    learner = _learner(cfg, comm)
    shard = batches["clipped_normalized"].columns(torch.tensor(shards[rank]))
    before = [p.detach().clone() for p in learner.model.parameters()]
    bad = dataclasses.replace(shard, rewards=shard.rewards.clone())
    if rank == 1:
        bad.rewards[2, 0] = math.nan
    skipped = learner.step(bad)
    unchanged = all(
        torch.equal(p, q) for p, q in zip(before, learner.model.parameters(), strict=True)
    )
    skip = {"skipped": skipped["skipped"], "total": learner.skipped, "version": learner.version,
            "unchanged": unchanged, "samples": learner.samples}  # fmt: skip
    learner.step(shard)
    skip["version_after"] = learner.version
    skip["params_after"] = [p.detach().clone() for p in learner.model.parameters()]
    results["skip"] = skip
    torch.save(results, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def _run_pair(tmp_path: Path, batches: dict[str, Batch]) -> list[dict[str, Any]]:
    mp.spawn(_rank, args=(free_port(), str(tmp_path), batches), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]


def _single(cfg: TrainConfig, batch: Batch) -> dict[str, Any]:
    _, learner, _ = build(cfg)
    metrics = [learner.step(batch) for _ in range(STEPS)]
    return _final_state(learner, metrics)


def test_two_learners_on_halves_equal_one_learner_on_the_batch(tmp_path: Path) -> None:
    batches = {name: _batch(cfg) for name, (cfg, _) in CASES.items()}
    ranks = _run_pair(tmp_path, batches)

    x0, x1 = ranks[0]["moments"][0], ranks[1]["moments"][0]
    x = torch.cat([x0, x1])
    for r in ranks:
        _, mean, var, pvar, std, n, all_flag = r["moments"]
        torch.testing.assert_close(mean, x.mean(0))
        torch.testing.assert_close(var, x.var(0))
        torch.testing.assert_close(pvar, x.var(unbiased=False))
        torch.testing.assert_close(std, x.std())
        assert n == x.shape[0] and all_flag is False  # rank 1 said False

    for name, (cfg, _) in CASES.items():
        want = _single(cfg, batches[name])
        assert want["version"] == STEPS and want["skipped"] == 0
        # the schedule moved on the combined batch's count (lr falls by 1/4 of its start per
        # step in the first case; counting one shard's samples would give 1/8)
        for r in ranks:
            got = r[name]
            assert (got["samples"], got["version"], got["skipped"]) == (
                want["samples"], want["version"], 0), name  # fmt: skip
            assert got["lr"] == want["lr"], name
            torch.testing.assert_close(got["grad_norm"], want["grad_norm"], rtol=1e-4, atol=1e-6)
            for p, q in zip(got["params"], want["params"], strict=True):
                torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
            torch.testing.assert_close(got["popart"], want["popart"], rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(got["entropy_log_coefs"], want["entropy_log_coefs"])
        # the two ranks hold the very same weights (the same averaged gradient, clipped alike)
        for p, q in zip(ranks[0][name]["params"], ranks[1][name]["params"], strict=True):
            assert torch.equal(p, q), name

    # a NaN on rank 1 only: the step is skipped on both ranks, and both go on together
    for r in ranks:
        s = r["skip"]
        assert s["skipped"] == 1.0 and s["total"] == 1 and s["version"] == 0 and s["unchanged"]
        assert s["samples"] == 32 and s["version_after"] == 1  # the skipped step's 2 x 16 samples
    for p, q in zip(ranks[0]["skip"]["params_after"], ranks[1]["skip"]["params_after"],
                    strict=True):  # fmt: skip
        assert torch.equal(p, q)


def test_single_process_comm_is_the_plain_reduction() -> None:
    """The default ``Comm`` is exactly torch's reductions: one learner is unchanged."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=g)
    c = Comm()
    assert torch.equal(c.mean(x, 0), x.mean(0)) and torch.equal(c.std(x), x.std())
    assert torch.equal(c.var(x, 0, unbiased=False), x.var(0, unbiased=False))
    assert c.count(7) == 7 and c.all(False) is False
    grads = [torch.nn.Parameter(torch.ones(2))]
    grads[0].grad = torch.full((2,), 3.0)
    c.average_gradients(grads, weight=5)
    assert torch.equal(grads[0].grad, torch.full((2,), 3.0))
