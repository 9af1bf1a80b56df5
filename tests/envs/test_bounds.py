"""Objective bounds against the simulator: every reward and return inside its sure bounds, the
mean returns inside the mean bounds, the energy bound attained, arrivals as expected."""

from __future__ import annotations

import numpy as np
import pytest

from impala_hybrid.envs.bounds import SURE, expected_arrivals, max_task_cost, objective_bounds
from impala_hybrid.envs.config import N_INTENSITY, UAVNetConfig
from impala_hybrid.envs.heuristics import make_heuristic
from impala_hybrid.envs.sim import UAVNetSim
from impala_hybrid.evaluation.rollout import run_episodes

TOL = 1e-4  # rewards are float32


def _policies(cfg: UAVNetConfig) -> dict:
    rng = np.random.default_rng(0)

    def random_policy(obs: np.ndarray) -> dict:
        n = obs.shape[0]
        return {"transfer": rng.integers(0, 6, n), "intensity": rng.random((n, N_INTENSITY))}

    def idle(obs: np.ndarray) -> dict:  # slowest speed, no transfers: drops pile up
        n = obs.shape[0]
        return {"transfer": np.zeros(n, np.int64), "intensity": np.zeros((n, N_INTENSITY))}

    def flat_out(obs: np.ndarray) -> dict:  # full speed, full spill, beam every step
        n = obs.shape[0]
        return {"transfer": np.arange(n) % 6, "intensity": np.ones((n, N_INTENSITY))}

    return {
        "random": random_policy,
        "idle": idle,
        "flat_out": flat_out,
        "maxweight": make_heuristic("maxweight", cfg),
    }


@pytest.mark.parametrize("rates", [{}, {"emergency_rate_incident": 400.0, "buffer": 50}])
def test_step_rewards_within_step_bounds(rates: dict) -> None:
    cfg = UAVNetConfig(episode_steps=300, **rates)
    b = objective_bounds(cfg)
    for name, policy in _policies(cfg).items():
        sim = UAVNetSim(cfg, 32)
        sim.seed(np.arange(32))
        obs = sim.reset()
        for _ in range(300):
            a = policy(obs)
            sim.step(np.asarray(a["transfer"], np.int64), np.asarray(a["intensity"], np.float64))
            r = sim.reward_vec
            assert np.all(r >= b.step_lower - TOL), (name, r.min(0), b.step_lower)
            assert np.all(r <= b.step_upper + TOL), (name, r.max(0), b.step_upper)


def test_energy_upper_bound_is_attained_by_the_slowest_speed() -> None:
    cfg = UAVNetConfig(episode_steps=20, g_min=0.3)
    sim = UAVNetSim(cfg, 4)
    sim.seed(np.arange(4))
    sim.reset()
    sim.step(np.zeros(4, np.int64), np.zeros((4, N_INTENSITY)))
    np.testing.assert_allclose(sim.reward_vec[:, 3], objective_bounds(cfg).step_upper[3], 1e-6)


def test_episode_returns_within_episode_bounds() -> None:
    cfg = UAVNetConfig(episode_steps=200)
    b = objective_bounds(cfg)
    for name, policy in _policies(cfg).items():
        per_episode = run_episodes(policy, cfg, episodes=1, num_envs=64, seed=3)
        ret = per_episode["objectives"]
        mean = ret.mean(axis=0)
        for k in range(6):
            if b.lower_kind[k] == SURE:
                assert ret[:, k].min() >= b.lower[k] - TOL * cfg.episode_steps, (name, k)
            else:
                assert mean[k] >= b.lower[k], (name, k)
            if b.upper_kind[k] == SURE:
                assert ret[:, k].max() <= b.upper[k] + TOL * cfg.episode_steps, (name, k)
        assert np.all(b.lower < b.upper)


def test_expected_arrivals_match_the_simulator() -> None:
    """The exact expectation against a Monte-Carlo mean (z-score over 512 episodes)."""
    cfg = UAVNetConfig(episode_steps=150)
    routine, emergency = expected_arrivals(cfg)
    per_episode = run_episodes(_policies(cfg)["idle"], cfg, episodes=2, num_envs=256, seed=0)
    for expected, key in ((routine, "arrived_routine"), (emergency, "arrived_emergency")):
        x = per_episode[key].astype(np.float64)
        z = (x.mean() - expected) / (x.std(ddof=1) / np.sqrt(x.size))
        assert abs(z) < 4.0, (key, x.mean(), expected)


def test_expected_arrivals_by_hand() -> None:
    """No incidents and a wave over whole periods: routine = sum(base) T dt, emergency = calm."""
    cfg = UAVNetConfig(episode_steps=2000, onset_rate=0.0, aftershock_rate=0.0)
    routine, emergency = expected_arrivals(cfg)
    assert routine == pytest.approx(sum(cfg.routine_base_rates) * 2000 * cfg.dt)
    assert emergency == pytest.approx(4 * cfg.emergency_rate_calm * 2000 * cfg.dt)
    # the long-run emergency rate is approached from below from an all-calm start
    long = UAVNetConfig(episode_steps=100_000)
    assert expected_arrivals(long)[1] / 100_000 == pytest.approx(long.derived().e_ref, rel=2e-3)


def test_max_task_cost_by_hand() -> None:
    """Defaults: the worst is an emergency completed via the bad backhaul at age 19 bins."""
    cfg = UAVNetConfig()
    latency = 19.5 * 0.1 + 0.60
    assert max_task_cost(cfg) == pytest.approx(latency + 20 * (latency - 0.5))
    assert max_task_cost(cfg.replace(drop_penalty=100.0)) == 100.0


def test_collapse_termination_relaxes_the_energy_upper_bound() -> None:
    cfg = UAVNetConfig(episode_steps=100)
    assert objective_bounds(cfg).upper[3] == pytest.approx(-100 * cfg.g_min**3)
    collapsing = cfg.replace(collapse_occupancy=0.9)
    assert objective_bounds(collapsing).upper[3] == pytest.approx(-(cfg.g_min**3))


def test_classical_policies_strictly_dominate_the_reference_point() -> None:
    """The hypervolume's reference point (bounds minus a 10% margin) is beaten by every
    classical policy's mean returns, so each adds volume."""
    from impala_hybrid.envs.heuristics import HEURISTICS
    from impala_hybrid.ops.pareto import hypervolume, reference_point

    cfg = UAVNetConfig(episode_steps=200)
    b = objective_bounds(cfg)
    ref = reference_point(b.lower, b.upper, margin=0.1)
    means = np.stack(
        [
            run_episodes(make_heuristic(n, cfg), cfg, episodes=1, num_envs=16, seed=0)[
                "objectives"
            ].mean(axis=0)
            for n in HEURISTICS
        ]
    )
    assert np.all(means > ref)
    for p in means:
        assert hypervolume(p[None, :], ref) > 0.0
