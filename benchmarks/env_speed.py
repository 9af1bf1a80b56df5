"""Simulator speed: env steps/s on one core at several batch sizes, and where the time goes.

Three layers are timed separately so a regression can be located:

* ``kernel``: ``UAVNetSim.step`` (action check + the compiled step), no Gymnasium;
* ``vector env``: ``UAVNetVectorEnv.step`` (action parsing, copies, infos, autoreset);
* ``single env``: ``gymnasium.make(...).unwrapped.step`` at batch 1 (a Python dict per step).

And inside the kernel, the random-number work alone (the same 26 exogenous uniforms and 13
Poisson draws a step makes) is timed, to show how much of a step is sampling.

Actions are a fixed random set per batch (actions cost nothing to make here); episodes run
through their truncation and autoreset, so the figures include episode boundaries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numba as nb
import numpy as np

import impala_hybrid
from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.envs.rng import EXOGENOUS, SERVICE, poisson, uniform
from impala_hybrid.envs.sim import UAVNetSim

BATCHES = (1, 64, 1024, 4096)
TARGET_STEPS_PER_S = 300_000
TARGET_BATCH1_US = 50.0


@dataclass
class EnvSpeed:
    batch: int
    kernel_sps: float
    vector_sps: float
    kernel_us_per_call: float
    vector_us_per_call: float


def _actions(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 6, n).astype(np.int64), rng.random((n, 6))


def _time_calls(call: Callable[[], object], min_seconds: float, min_calls: int) -> float:
    """Seconds per call of ``call()``, measured over at least ``min_seconds``."""
    for _ in range(3):
        call()
    n, elapsed = 0, 0.0
    start = time.perf_counter()
    while elapsed < min_seconds or n < min_calls:
        for _ in range(min_calls):
            call()
        n += min_calls
        elapsed = time.perf_counter() - start
    return elapsed / n


def measure_batch(batch: int, seconds: float) -> EnvSpeed:
    cfg = UAVNetConfig()
    sim = UAVNetSim(cfg, batch)
    sim.seed(np.arange(batch))
    sim.reset()
    tr, it = _actions(batch)

    def kernel_step() -> None:
        sim.step(tr, it)
        if sim.truncated[0]:
            sim.reset()

    calls = max(10, 20_000 // batch)
    k = _time_calls(kernel_step, seconds, calls)
    env = gym.make_vec(impala_hybrid.UAVNET_ID, num_envs=batch, autoreset_mode="SameStep")
    env.reset(seed=0)
    action = {"transfer": tr, "intensity": it.astype(np.float32)}
    v = _time_calls(lambda: env.step(action), seconds, calls)
    return EnvSpeed(batch, batch / k, batch / v, k * 1e6, v * 1e6)


def measure_single_env_us(seconds: float) -> float:
    env = gym.make(impala_hybrid.UAVNET_ID).unwrapped
    env.reset(seed=0)
    action = {"transfer": 1, "intensity": np.full(6, 0.5, np.float32)}
    steps = [0]

    def step() -> None:
        steps[0] += 1
        if steps[0] % 1000 == 0:
            env.reset()
        else:
            env.step(action)

    return _time_calls(step, seconds, 1000) * 1e6


@nb.njit(cache=True)
def _rng_work(rng: np.ndarray, lam: np.ndarray, steps: int) -> int:
    """The draws of ``steps`` env steps: 26 exogenous uniforms, 8 arrival and 5 service
    Poisson draws at typical rates (``lam [13]``)."""
    acc = 0
    for _ in range(steps):
        for _ in range(18):  # 1 aftershock + 16 regime/alert + 1 backhaul
            acc += uniform(rng, 0, EXOGENOUS) < 0.5
        for j in range(8):
            acc += poisson(rng, 0, EXOGENOUS, lam[j])
        for j in range(8, 13):
            acc += poisson(rng, 0, SERVICE, lam[j])
    return acc


def measure_rng_ns_per_step(steps: int = 2_000_000) -> float:
    rng = np.zeros((1, 2), np.uint64)
    rng[0] = (1, 2)
    d = UAVNetConfig().derived()
    lam = np.array(
        [0.2 + 1.2 * d.incident_fraction * 12] * 4 + [2.5, 3.5, 4.5, 5.5] + [10.0] * 4 + [20.0]
    )
    _rng_work(rng, lam, 10)
    start = time.perf_counter()
    _rng_work(rng, lam, steps)
    return (time.perf_counter() - start) / steps * 1e9


def run(quick: bool = False) -> tuple[list[EnvSpeed], float, float]:
    seconds = 0.3 if quick else 2.0
    rows = [measure_batch(b, seconds) for b in BATCHES]
    single_us = measure_single_env_us(seconds)
    rng_ns = measure_rng_ns_per_step(200_000 if quick else 2_000_000)
    return rows, single_us, rng_ns


def report(rows: list[EnvSpeed], single_us: float, rng_ns: float) -> str:
    lines = [
        "| batch | kernel steps/s | vector env steps/s | kernel us/call | vector env us/call |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.batch} | {r.kernel_sps:,.0f} | {r.vector_sps:,.0f} | "
            f"{r.kernel_us_per_call:,.1f} | {r.vector_us_per_call:,.1f} |"
        )
    big = [r for r in rows if r.batch >= 1024]
    best_big = min(r.vector_sps for r in big)
    b1 = next(r for r in rows if r.batch == 1)
    per_step_ns = 1e9 / max(r.kernel_sps for r in big)
    lines += [
        "",
        f"- Target >= {TARGET_STEPS_PER_S:,} env steps/s per core at batch >= 1024 "
        f"(vector env): lowest measured {best_big:,.0f} -> "
        f"**{'met' if best_big >= TARGET_STEPS_PER_S else 'missed'}** "
        f"({best_big / TARGET_STEPS_PER_S:.2f}x target).",
        f"- Target batch-1 step < {TARGET_BATCH1_US:.0f} us: vector env "
        f"{b1.vector_us_per_call:.1f} us, single env (`gymnasium.make`) {single_us:.1f} us, "
        f"kernel {b1.kernel_us_per_call:.1f} us -> "
        f"**{'met' if max(b1.vector_us_per_call, single_us) < TARGET_BATCH1_US else 'missed'}**.",
        f"- Where the time goes at batch >= 1024: {per_step_ns:,.0f} ns per env step in the "
        f"kernel, of which random-number generation (26 uniforms + 13 Poisson draws) is "
        f"{rng_ns:,.0f} ns ({rng_ns / per_step_ns:.0%}); the rest is queue bookkeeping, "
        "rewards and the observation. At batch 1 the kernel is a few microseconds and the "
        "rest is Python: action parsing and validation, output copies and the info dict.",
    ]
    return "\n".join(lines)
