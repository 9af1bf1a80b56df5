"""The UAV env under RLlib's IMPALA, with settings comparable to our local runtime (optional).

Why: the issue asks to measure the same environment under RLlib's IMPALA with comparable
settings and report the ratio of our local runtime's training throughput to RLlib's. This
script trains RLlib IMPALA on ``impala_hybrid/UAVNet-v0`` for ``--seconds`` after a warm-up
and reports env steps/s sampled and trained, from RLlib's own lifetime counters
(``num_env_steps_sampled_lifetime``, ``num_env_steps_trained_lifetime``); Ray start-up and
the warm-up iterations are excluded.

Setup (a separate venv: ray[rllib] pins gymnasium==1.2.2 while ours has 1.4.0; our env works
under 1.2.2, as the setup script checks)::

    bash benchmarks/setup_rllib.sh
    .venv-rllib/bin/python -m benchmarks.rllib_impala --seconds 60 --json rllib.json

What is the same as ours: the UAV env (scalar reward, its native batched ``UAVNetVectorEnv``,
which RLlib steps through ``gym_env_vectorize_mode="vector_entry_point"``); the Dict hybrid
action space as it is, no wrapper (RLlib's default module handles Dict actions: a categorical
for ``transfer`` times a diagonal Gaussian for ``intensity``); a 29-256-256 ReLU MLP trunk with
LayerNorm before each activation, shared by linear policy and value heads; unroll length
T = 32 (``rollout_fragment_length``); a train batch of B unrolls with B = envs per runner, as
our benchmark's layouts (1 x 64 with B = 64, 2 x 32 with B = 32); gamma 0.99, V-trace with
rho/pg-rho clips 1.0, grad clip 40, value coefficient 0.5, entropy coefficient 0.01, Adam, one
epoch and no replay; one torch thread in every process; Ray limited to 2 CPUs. Everything
else is RLlib's IMPALA default (new API stack, torch).

What differs (``NOTES``, also written to the JSON):

* the learner is in the driver process by default (``--num-learners 0``, like our local
  runtime's learner; RLlib's default is one remote learner actor, ``--num-learners 1``). RLlib
  updates in a learner thread of that process while the main thread polls the env runners in
  a loop that never sleeps, so the driver takes a full core either way;
* RLlib's env runner keeps one Python episode object per env and adds every step to it in a
  Python loop (and turns the env's info dict of arrays into one dict per env), where our
  actor writes unrolls into preallocated arrays;
* the env autoresets in ``NEXT_STEP`` mode, which RLlib expects: the step after an episode
  ends only resets (one uncounted step per 1000-step episode); our actors use ``SAME_STEP``;
* ``intensity`` is a Gaussian that RLlib clips into [0, 1] (ours: tanh-squashed Gaussian);
* RLlib's learning rate (5e-4, ours 3e-4), no advantage normalisation or reward scaling;
* RLlib counts T + 1 trained steps per T-step fragment (the bootstrap step it appends), so
  ``trained_fps`` rescales its counter by T / (T + 1); ``trained_fps_rllib_counter`` is raw;
* ``min_time_s_per_iteration`` is 2 s (default 10 s) so the timed window ends close to
  ``--seconds``; it only groups training steps into reported iterations;
* Ray's workers run at nice 0 (``RAY_worker_niceness=0``) instead of Ray's default 15, as our
  actor processes do: at nice 15 any other work on the machine starves the env runners.

The JSON also records how many cores RLlib's processes and all other work used while timed
(``cores_used_by_rllib``, ``cores_used_by_other_work``): figures taken next to other work
are low and not comparable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: "module:id": every Ray worker imports ``impala_hybrid`` (which registers the id) on make.
ENV_ID = "impala_hybrid:impala_hybrid/UAVNet-v0"
UNROLL_LENGTH = 32
#: Ray's CPUs: one per env runner and one per remote learner (the driver is not counted).
RAY_CPUS = 2
#: layout name -> (env runners, envs per runner). B = envs per runner, as in our benchmark's
#: layouts (2 x 32 with B = 32, 1 x 64 with B = 64): one batch per ``sample()`` call.
LAYOUTS = {"1x64": (1, 64), "2x32": (2, 32)}
NOTES = [
    "learner in the driver process (num_learners=0, as our local runtime's learner) unless "
    "--num-learners 1 (RLlib's default, a remote learner actor); RLlib's driver also polls the "
    "env runners in a loop that never sleeps",
    "RLlib's env runner adds each step to one Python episode object per env; our actor writes "
    "unrolls into preallocated arrays",
    "env autoreset NEXT_STEP (one uncounted reset step per 1000-step episode); our actors "
    "use SAME_STEP",
    "intensity: Gaussian clipped to [0, 1] by RLlib; ours is a tanh-squashed Gaussian",
    "RLlib's lr 5e-4 (ours 3e-4), no advantage normalisation or reward scaling",
    "trained_fps = RLlib's trained counter x T/(T+1): it counts the bootstrap step it appends "
    "to each T-step fragment",
    "min_time_s_per_iteration=2 (default 10): only groups training steps into iterations",
    "Ray workers at nice 0 (RAY_worker_niceness=0; Ray's default is 15), like our processes",
]


def build_config(layout: str, num_learners: int) -> Any:
    """RLlib IMPALA config matching our local runtime's UAV preset (see the module docstring)."""
    from ray.rllib.algorithms.impala import IMPALAConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    runners, envs = LAYOUTS[layout]
    return (
        IMPALAConfig()
        .framework("torch")
        .environment(ENV_ID)
        .env_runners(
            num_env_runners=runners,
            num_envs_per_env_runner=envs,
            gym_env_vectorize_mode="vector_entry_point",
            rollout_fragment_length=UNROLL_LENGTH,
            num_cpus_per_env_runner=1,
        )
        .learners(num_learners=num_learners, num_cpus_per_learner=1, num_gpus_per_learner=0)
        .training(
            train_batch_size_per_learner=envs * UNROLL_LENGTH,
            gamma=0.99,
            vtrace=True,
        )
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=[256, 256],
                fcnet_activation="relu",
                fcnet_use_layernorm=True,
                vf_share_layers=True,
            )
        )
        .reporting(min_time_s_per_iteration=2)
    )


def counters(result: dict[str, Any]) -> tuple[int, int]:
    """(env steps sampled, env steps trained) over the algorithm's lifetime; 0 until the first
    samples arrive. RLlib's trained count includes the one bootstrap step that IMPALA appends
    to each episode chunk (33 counted per 32-step fragment)."""
    from ray.rllib.core import ALL_MODULES
    from ray.rllib.utils.metrics import (
        ENV_RUNNER_RESULTS,
        LEARNER_RESULTS,
        NUM_ENV_STEPS_SAMPLED_LIFETIME,
        NUM_ENV_STEPS_TRAINED_LIFETIME,
    )

    sampled = result.get(ENV_RUNNER_RESULTS, {}).get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)
    learner = result.get(LEARNER_RESULTS, {}).get(ALL_MODULES, {})
    return int(sampled), int(learner.get(NUM_ENV_STEPS_TRAINED_LIFETIME, 0))


def timers(result: dict[str, Any]) -> dict[str, float]:
    """RLlib's own smoothed timers in seconds, to show where the time goes: one ``sample()``
    call (T steps of all envs), one step of all envs, one inference on all envs, one update."""
    from ray.rllib.algorithms.impala.impala_learner import LEARNER_THREAD_UPDATE_TIMER
    from ray.rllib.core import ALL_MODULES
    from ray.rllib.utils.metrics import (
        ENV_RUNNER_RESULTS,
        ENV_STEP_TIMER,
        LEARNER_RESULTS,
        RLMODULE_INFERENCE_TIMER,
        SAMPLE_TIMER,
    )

    runners = result.get(ENV_RUNNER_RESULTS, {})
    learner = result.get(LEARNER_RESULTS, {}).get(ALL_MODULES, {})
    found = {
        "env_runner_sample_call": runners.get(SAMPLE_TIMER),
        "env_step": runners.get(ENV_STEP_TIMER),
        "module_inference": runners.get(RLMODULE_INFERENCE_TIMER),
        "learner_update": learner.get(LEARNER_THREAD_UPDATE_TIMER),
    }
    return {k: round(float(v), 5) for k, v in found.items() if v is not None}


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by (this process and its descendants, i.e. the Ray cluster it
    started; the whole machine), from Linux's /proc: shows how much of the 2 cores RLlib got
    and how much other work took while it was timed."""
    ours, machine = tree_cpu_seconds()
    return sum(ours.values()), machine


def tree_cpu_seconds() -> tuple[dict[int, float], float]:
    """CPU seconds used so far by each live process of this one's tree (pid -> seconds) and
    by the whole machine, from Linux's /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            pid = int(entry.name)
            parent[pid], used[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
    ours: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        ours |= frontier
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - ours
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(cpu[:3]) + sum(cpu[5:7])  # user, nice, system, irq, softirq
    return {pid: used.get(pid, 0) / tick for pid in ours}, busy / tick


def measure(layout: str, num_learners: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    """Train until ``warmup_s`` have passed since the first samples arrived, then time
    ``seconds`` of training (whole iterations)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray runs its workers at nice 15 by default; ours run at 0, so give them equal priority.
    os.environ.setdefault("RAY_worker_niceness", "0")
    cache = os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    ray.init(
        num_cpus=RAY_CPUS,
        include_dashboard=False,
        logging_level=logging.ERROR,
        runtime_env={"env_vars": {"NUMBA_CACHE_DIR": cache, **threads}},
    )
    try:
        algo = build_config(layout, num_learners).build_algo()
        first_samples: float | None = None
        while first_samples is None or time.perf_counter() - first_samples < warmup_s:
            result = algo.train()
            if first_samples is None and counters(result)[0] > 0:
                first_samples = time.perf_counter()
        sampled0, trained0 = counters(result)
        ours0, machine0 = cpu_seconds()
        t0, iterations = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            result = algo.train()
            iterations += 1
        elapsed = time.perf_counter() - t0
        ours1, machine1 = cpu_seconds()
        sampled1, trained1 = counters(result)
        algo.stop()
    finally:
        ray.shutdown()
    return {
        "seconds": round(elapsed, 2),
        "iterations": iterations,
        "env_steps_sampled": sampled1 - sampled0,
        "env_steps_trained": trained1 - trained0,
        "sampled_fps": round((sampled1 - sampled0) / elapsed),
        # Real env steps: RLlib counts T + 1 per T-step fragment (see `counters`).
        "trained_fps": round((trained1 - trained0) * UNROLL_LENGTH / (UNROLL_LENGTH + 1) / elapsed),
        "trained_fps_rllib_counter": round((trained1 - trained0) / elapsed),
        "rllib_timers_s": timers(result),
        # Cores used while timed: by RLlib (driver + Ray processes) and by everything else.
        # With 2 cores, other work above ~0.1 lowers the figures.
        "cores_used_by_rllib": round((ours1 - ours0) / elapsed, 2),
        "cores_used_by_other_work": round((machine1 - machine0 - ours1 + ours0) / elapsed, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="timed training seconds")
    parser.add_argument("--warmup", type=float, default=10.0, help="untimed training seconds")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="1x64")
    parser.add_argument(
        "--num-learners",
        type=int,
        choices=(0, 1),
        default=0,
        help="0: learner in the driver (as ours); 1: a remote learner actor (RLlib's default)",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    runners, envs = LAYOUTS[args.layout]
    if runners + args.num_learners > RAY_CPUS:
        parser.error(f"{args.layout} with --num-learners 1 needs more than {RAY_CPUS} CPUs")
    try:
        import gymnasium
        import ray
        import torch
    except ImportError as e:
        sys.exit(f"{e}: run `bash benchmarks/setup_rllib.sh`, then use .venv-rllib/bin/python")

    torch.set_num_threads(1)
    figures = measure(args.layout, args.num_learners, args.seconds, args.warmup)
    out = {
        "ray": ray.__version__,
        "gymnasium": gymnasium.__version__,
        "torch": torch.__version__,
        "layout": f"{runners} env runner(s) x {envs} envs, num_learners={args.num_learners}",
        "config": {
            "algorithm": "IMPALA (RLlib new API stack, torch)",
            "env": ENV_ID,
            "num_env_runners": runners,
            "num_envs_per_env_runner": envs,
            "rollout_fragment_length": UNROLL_LENGTH,
            "train_batch_size_per_learner": envs * UNROLL_LENGTH,
            "num_learners": args.num_learners,
            "model": "fcnet [256, 256] relu + LayerNorm, shared trunk, linear heads",
            "gamma": 0.99,
            "vtrace": True,
            "ray_num_cpus": RAY_CPUS,
            "torch_threads": 1,
            "warmup_s": args.warmup,
        },
        **figures,
        "notes": NOTES,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"RLlib {ray.__version__} IMPALA, UAV env, {out['layout']}: "
        f"{figures['sampled_fps']:,} env steps/s sampled, {figures['trained_fps']:,} trained "
        f"({figures['seconds']} s timed)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
