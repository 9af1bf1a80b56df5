"""Synchronous multi-learner cost on this machine: the learner side alone, 1 vs 2 learners.

* **learner samples/s, 1 learner**: ``Learner.step`` on one resident batch of the UAV
  preset (T = 32, B = 32), no actors (``benchmarks.pipeline.learner_ceiling``);
* **learner samples/s, 2 learners**: two processes joined by gloo (``algos/comm.py``), each
  stepping on its half of the same batch; samples of the whole batch per second;
* **all-reduce**: one gloo all-reduce of a buffer the size of the model's gradient between
  the two processes (what ``Comm.average_gradients`` sends each step).

Each process has one torch thread (the preset's ``torch_threads``)::

    python -m benchmarks.multi_learner --seconds 10
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks.pipeline import learner_ceiling
from impala_hybrid.algos.comm import TorchDistComm
from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.experiments.spec import PRESETS, TrainConfig
from impala_hybrid.runtime.learners import free_port
from impala_hybrid.runtime.serial import build


def _rank(rank: int, port: int, cfg: TrainConfig, seconds: float, out: Any) -> None:
    torch.set_num_threads(cfg.torch_threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    _, single, actor = build(cfg)
    batch = actor.unroll()  # the same batch on both ranks (same seed): each takes its half
    learner = Learner(single.model, cfg.algo, total_samples=cfg.total_steps,
                      reward_weights=single.reward_weights, comm=TorchDistComm())  # fmt: skip
    half = batch.batch_size // 2
    shard = batch.columns(torch.arange(rank * half, (rank + 1) * half))
    learner.step(shard)
    steps, start = 0, time.perf_counter()
    while True:  # the ranks must make the same number of steps: rank 0 decides when to stop
        go = torch.tensor([float(rank != 0 or time.perf_counter() - start < seconds)])
        dist.broadcast(go, src=0)
        if not go.item():
            break
        learner.step(shard)
        steps += 1
    rate = steps * batch.unroll_length * batch.batch_size / (time.perf_counter() - start)
    flat = torch.randn(sum(p.numel() for p in learner.model.parameters()) + 1)
    for _ in range(20):
        dist.all_reduce(flat)
    t0, n = time.perf_counter(), 200
    for _ in range(n):
        dist.all_reduce(flat)
    if rank == 0:
        out.put((rate, (time.perf_counter() - t0) / n, flat.numel() - 1))
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    args = p.parse_args()
    cfg = PRESETS["uav_hybrid"]()
    cfg = TrainConfig(**{**cfg.__dict__, "num_envs": cfg.algo.batch_size})
    one = learner_ceiling(cfg, args.seconds)
    out = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_rank, args=(free_port(), cfg, args.seconds, out), nprocs=2)
    two, allreduce_s, params = out.get()
    print(f"learner samples/s (T = {cfg.algo.unroll_length}, B = {cfg.algo.batch_size}): "
          f"1 learner {one:,.0f}; 2 learners {two:,.0f} ({two / one:.2f}x); all-reduce of "
          f"{params:,} float32 gradients ({4e-6 * params:.2f} MB): "
          f"{1e3 * allreduce_s:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
