"""Learner samples/s of the UAV preset's model on a device, against the batch size.

What a GPU learner (``ray.learner_placement = actor`` on a GPU node) must be sized against:
``Learner.step`` on one resident batch of T = 32 unrolls, B = 32 .. 1024 wide, on ``--device``
(``cpu`` or ``cuda``), with the preset's options; the batch is moved to the device once, so
this is the learner alone (no actors, no transport). On CUDA every timed interval ends with
``torch.cuda.synchronize()``::

    python -m benchmarks.learner_device --device cpu --threads 1 --batch 32 128 512
    python -m benchmarks.learner_device --device cuda --batch 32 128 512 1024 2048
    python -m benchmarks.learner_device --batch 32 --set algo.continuous_pg=qprop \
        model.continuous_kind=squashed_gaussian  # an action critic needs the Gaussian

Prints one line per batch size: samples/s, ms per step, and the device's peak memory.
``--set`` takes the training CLI's overrides on the preset (e.g. a learner option's cost).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.experiments.config_io import load_config
from impala_hybrid.runtime.serial import build


def learner_rate(
    batch_size: int, device: str, seconds: float, overrides: list[str] | None = None
) -> tuple[float, float, float]:
    """(samples/s, ms per step, peak device memory in MiB) of the preset's learner, with
    the training CLI's ``--set`` ``overrides``."""
    base = load_config(preset="uav_hybrid", overrides=overrides or ())
    cfg = dataclasses.replace(
        base, num_envs=batch_size, algo=dataclasses.replace(base.algo, batch_size=batch_size)
    )
    _, cpu_learner, actor = build(cfg)
    batch = actor.unroll().to(device)
    learner = Learner(
        cpu_learner.model, cfg.algo, total_samples=cfg.total_steps,
        reward_weights=cpu_learner.reward_weights, device=device,
    )  # fmt: skip
    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for _ in range(3):  # warm-up (allocator, kernels)
        learner.step(batch)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    sync()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        learner.step(batch)
        steps += 1
        if steps % 10 == 0:
            sync()
    sync()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    samples = steps * batch.unroll_length * batch.batch_size
    return samples / elapsed, 1e3 * elapsed / steps, peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--batch", type=int, nargs="+", default=[32, 128, 512], help="B values")
    p.add_argument("--seconds", type=float, default=5.0, help="per batch size")
    p.add_argument("--set", nargs="*", default=[], help="config overrides (as the CLI's)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device {args.device} ({name}), torch {torch.__version__}, {args.threads} threads")
    if args.set:
        print("--set " + " ".join(args.set))
    for b in args.batch:
        rate, ms, peak = learner_rate(b, args.device, args.seconds, args.set)
        print(f"B = {b:5d}: {rate:12,.0f} samples/s  {ms:8.2f} ms/step  peak {peak:8.1f} MiB")


if __name__ == "__main__":
    main()
