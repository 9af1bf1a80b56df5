"""What Ray's object store carries per env step, and how fast, on this machine.

The Ray runtime moves every unroll from an actor to the driver (a call's result) and, with
``learner_placement = actor``, on to the learner actor; this measures that path alone, with
a real unroll of the UAV preset (``RolloutWorker``, T = 32, ``--envs`` wide) returned over
and over by one Ray actor, ``--in-flight`` calls outstanding, and read with ``ray.get`` in
the driver (no learning, no env stepping in the timed part)::

    python -m benchmarks.ray_transport --envs 32 128 --seconds 5

Prints the unroll's size (bytes per env step, pickled as Ray stores it), the calls/s and
MB/s the driver reads, and the env steps/s that is the transport's ceiling for one driver.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import time
from typing import Any

import ray

from impala_hybrid.experiments.spec import PRESETS, RayConfig
from impala_hybrid.runtime.ray import RolloutWorker
from impala_hybrid.types import Batch


class Source:
    """One unroll, returned by every call (so the call is transport only)."""

    def __init__(self, envs: int) -> None:
        cfg = PRESETS["uav_hybrid"]()
        cfg = dataclasses.replace(cfg, ray=RayConfig(num_actors=1, envs_per_actor=envs))
        worker = RolloutWorker(cfg, seed=0)
        arrays = {k: v.numpy() for k, v in worker.model.state_dict().items()}
        self.unroll, _, _ = worker.rollout([arrays], 0, time.time())

    def get(self) -> Batch:
        return self.unroll


def measure(envs: int, seconds: float, in_flight: int) -> dict[str, float]:
    source: Any = ray.remote(Source).options(num_cpus=1).remote(envs)
    unroll = ray.get(source.get.remote())
    size = len(pickle.dumps(unroll, protocol=5))
    steps = unroll.unroll_length * unroll.batch_size
    pending = [source.get.remote() for _ in range(in_flight)]
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        ray.get(pending.pop(0))
        pending.append(source.get.remote())
        calls += 1
    elapsed = time.perf_counter() - start
    ray.get(pending)
    ray.kill(source)
    return {
        "bytes_per_step": size / steps,
        "calls_per_s": calls / elapsed,
        "mb_per_s": calls * size / elapsed / 1e6,
        "steps_per_s": calls * steps / elapsed,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", type=int, nargs="+", default=[32, 128], help="unroll widths")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--in-flight", type=int, default=2, help="calls outstanding")
    args = p.parse_args()
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        for envs in args.envs:
            m = measure(envs, args.seconds, args.in_flight)
            print(
                f"T = 32 x {envs:4d} envs: {m['bytes_per_step']:6.0f} B/step, "
                f"{m['calls_per_s']:8.1f} calls/s, {m['mb_per_s']:8.1f} MB/s, "
                f"{m['steps_per_s']:12,.0f} env steps/s"
            )
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
