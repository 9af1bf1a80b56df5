"""Learning tests: a threshold on a step budget with fixed seeds (never wall-clock).

Each trains a preset from ``experiments.spec`` with the serial runtime and evaluates the greedy
policy (the distribution's mode, what one deploys) on 16 fixed evaluation episodes.
"""

from __future__ import annotations

import dataclasses

import pytest

from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.evaluation.policy import evaluate_returns
from impala_hybrid.evaluation.rollout import evaluate
from impala_hybrid.experiments.spec import cartpole, param_choice, pendulum, uav_hybrid
from impala_hybrid.experiments.trainer import run_policy
from impala_hybrid.runtime.serial import train_serial

EVAL_SEED = 1000


def test_cartpole_solved_within_300k_steps() -> None:
    cfg = cartpole()
    assert cfg.total_steps == 300_000 and cfg.seed == 0
    result = train_serial(cfg)
    returns = evaluate_returns(result.model, cfg.env, 16, seed=EVAL_SEED)
    assert returns.mean() >= 475.0, returns


def test_pendulum_within_1m_steps() -> None:
    """The continuous-action learning test kept in CI (about a minute on the AMD hosts, 25 s
    on the Intel one).

    The threshold holds on every host this has run on, not on one host's trajectory: the
    same seed trains to a different policy where the CPU's float32 kernels differ (AVX2 and
    AVX-512 sum in different orders). Seed 0 passed -300 on the AMD hosts; on the Intel
    Xeon (AVX-512, session 18) it scores -343.4, several of its 16 episodes at -650 to -900,
    where seeds 1-5 score -205.2 to -248.2 (the test's budget and episodes, `--set seed=N`).
    Untrained (1,024 env steps) the policy scores -1180 on these episodes.
    """
    cfg = pendulum()
    assert cfg.total_steps == 1_000_000 and cfg.seed == 0
    result = train_serial(cfg)
    returns = evaluate_returns(result.model, cfg.env, 16, seed=EVAL_SEED)
    assert returns.mean() >= -400.0, returns


def test_gated_hybrid_head_solves_param_choice() -> None:
    """Only the chosen discrete action's parameter matters; the gated head learns each one."""
    cfg = param_choice()
    assert cfg.model.hybrid_mode == "gated" and cfg.total_steps == 100_000
    result = train_serial(cfg)
    returns = evaluate_returns(result.model, cfg.env, 256, seed=EVAL_SEED)
    assert returns.mean() >= 0.9, returns.mean()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cartpole_other_seeds(seed: int) -> None:
    cfg = dataclasses.replace(cartpole(), seed=seed)
    result = train_serial(cfg)
    assert evaluate_returns(result.model, cfg.env, 16, seed=EVAL_SEED).mean() >= 475.0


def _uav_return(seed: int, steps: int) -> tuple[float, float]:
    """The UAV preset's learner trained serially (deterministic) for ``steps``; the return
    and emergency drops of its deployed policy (``run_policy``: the transfer drawn, as the
    preset's ``discrete_choice`` says) on the 32 validation episodes the trainer selects on.

    At B = 32, one unroll of the preset's 32 envs a learner step, as the thresholds below were
    calibrated: the preset's B = 64 is its local layout's slot width (128 envs in 64-column
    slots); serially it would take two unrolls a step and halve the updates per env step.

    With the trunk in float32 whatever the CPU, so that which CPU the CI machine has does not
    decide the result: the preset's ``trunk_dtype = auto`` is bfloat16 on CPUs with native
    bf16, and by 3M env steps the beam over one zone is learned or half learned by a hair,
    so one seed in three tips the other way when the numerics change. Measured on the Intel
    Xeon host (AMX, session 18), seeds 0/1/2: float32 379.5/381.9/374.9, no emergency
    drops; bfloat16 382.1/275.8/375.2, seed 1 with 142 drops an episode (the beam half
    learned). At the headline's budget (16M env steps, local runtime) the bfloat16 runs learn
    as the float32 ones (docs/results.md)."""
    base = uav_hybrid()
    cfg = dataclasses.replace(
        base,
        total_steps=steps,
        seed=seed,
        algo=dataclasses.replace(base.algo, batch_size=32),
        model=dataclasses.replace(base.model, trunk_dtype="float32"),
    )
    result = train_serial(cfg)
    r = evaluate(
        run_policy(cfg, result.model.eval()), UAVNetConfig(), episodes=1, num_envs=32, seed=0,
        split="validation",
    )  # fmt: skip
    return r.return_mean, r.metrics["dropped_emergency"]


def test_uav_learning_regression_3m_steps() -> None:
    """CI-sized learning regression on the main task (about 2.5 minutes on the AMD hosts,
    75 s on the Intel one).

    Serial runtime (the local runtime is asynchronous, so not reproducible), seed 1, 3M
    steps, the preset's deployed policy (its transfer drawn, its Beta intensities at their
    mode; the entropy weights annealed from 0.05/0.01 to 0.01/0.002 over the 3M steps): 368.2
    on these episodes with no emergency task dropped (float32 trunk, AVX2-only AMD host;
    381.9 on the Intel Xeon host; local-only -732, MaxWeight 350, threshold 404). The
    squashed-Gaussian head the preset had before (``model.continuous_kind =
    "squashed_gaussian"``) fails this: 146.8 with 714 emergency drops per episode on the
    same code and AMD host, the beam over one zone not learned by 3M steps. Seed 1 is the
    CI seed for that reason; on seeds 0 and 2 (the slow tests below) the Beta head reaches
    304.2 (112 drops: the beam half learned) and 387.5 (none) on the AMD host, the Gaussian
    391.2 and 378.8 (when last measured, bfloat16 trunk). (The serial runtime has no
    actors, so the preset's layout and policy lag play no part here; the full result, 8
    seeds, local runtime, B = 64, 16M env steps, held out, is docs/results.md's headline.)
    """
    ret, drops = _uav_return(1, 3_000_000)
    assert ret >= 345.0, ret
    assert drops <= 1.0, drops


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "threshold"), [(0, 280.0), (2, 360.0)])
def test_uav_learning_other_seeds(seed: int, threshold: float) -> None:
    """The same budget on seeds 0 and 2 (make test-slow), thresholds about 25 below what
    each reached with the Beta head when written (304.2 and 387.5, AMD host; 379.5 and 374.9
    on the Intel one): a regression guard, not a quality bar. Serially seed 0 had half
    learned the beam by 3M steps on the AMD host (112 emergency drops per episode) where the
    squashed Gaussian had learned it (391.2, none); with the local
    runtime all 8 headline seeds drop none (docs/results.md). Before the Beta head these
    tests ran seeds 1 and 2 on the squashed Gaussian: 145.7 and 378.8 in their last
    version (bfloat16 trunk), 135.8 and -52.9 with the constant entropy weights before."""
    ret, _ = _uav_return(seed, 3_000_000)
    assert ret >= threshold, ret
