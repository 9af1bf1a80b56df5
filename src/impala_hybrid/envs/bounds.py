"""Bounds of the six objectives, per step and per episode, derived from a ``UAVNetConfig``.

Why: a hypervolume needs a reference point that every policy's objective vector strictly
dominates (UAV_ENV.md, "Evaluation": "reference point from analytic bounds minus a margin"),
and a normalised objective needs a range. Both must follow the config (a user who changes a
rate changes the bounds), so they are computed here, next to the simulator, from the same
derived constants the kernel uses (``UAVNetConfig.derived()``), and nowhere else.

Every objective is "higher is better" (``core.step_kernel``, step 9). Two kinds of bound:

* **sure**: holds on every sample path, for every step or episode;
* **mean**: holds for the *expected* episode return (so for a mean over many episodes up to
  sampling noise, which the reference point's margin absorbs). Needed where Poisson arrivals
  make a step unbounded: overflow drops and completions grow with the arrivals.

Per step, ``N`` = the config's ``N_ref``, ``E`` = ``E_ref``, ``B`` = ``buffer``, ``T`` =
``episode_steps``, ``P`` = ``4 p_max_l + p_max_h``; ``A`` = expected arrivals in an episode
and ``A_E`` its emergency part (:func:`expected_arrivals`, exact):

=========== ================================ ==================================================
objective   worst (lower)                    best (upper)
=========== ================================ ==================================================
goodput     0, sure (counts)                 step: 5B/N, sure (a task completes from one of 5
                                             queues of at most B); episode: A/N, mean (a task
                                             completes at most once)
latency     step: unbounded (overflow);      0, sure (a sum of non-negative costs, negated)
            episode: -c_max A/N, mean:
            each arriving task is charged
            once, at most ``c_max`` = max of
            the drop penalty and the largest
            latency + excess/(1-alpha) of a
            completion before expiry
emergency   step: unbounded; episode:        step: 5B/E, sure; episode: A_E/E, mean (+1 per
            -A_E/E, mean (-1 at most per     on-time emergency, at most once each)
            emergency: late or dropped)
energy      -(1 + (e_lh (beam + 4 spill) +   -g_min^3, sure (every node runs at g >= g_min;
            e_hc backhaul_good) / (P dt)),   transfers only add energy); with collapse
            sure (g <= 1; per-step link      termination an episode may be one step long, so
            capacities bound the transfers)  the episode bound is -g_min^3
fairness    -(n-1)/n = -0.75, sure (Gini of  0, sure
            n = 4 non-negative values)
stability   step: unbounded (overflow);      0, sure
            episode: -(2.5 T + A/N), mean
            (occupancy <= 1 at 5 nodes;
            each task dropped at most once)
=========== ================================ ==================================================

Episode "sure" bounds are ``T`` times the step bound (a terminated episode is shorter, and
the non-positive objectives only get better with fewer steps; goodput's upper bound only
grows with ``T``). The gymnasium ``reward_space`` of ``envs/vector.py`` and ``envs/env.py``
states these step bounds.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from impala_hybrid.envs.config import N_NODES, N_OBJECTIVES, N_ZONES, UAVNetConfig

SURE, MEAN = "sure", "mean"


class ObjectiveBounds(NamedTuple):
    """Bounds of the six objectives (``OBJECTIVE_NAMES`` order), higher is better.

    ``step_lower``/``step_upper [6]``: every step's reward lies within (``-inf``/``inf`` where
    no sure bound exists). ``lower``/``upper [6]``: bounds on an episode's return;
    ``lower_kind``/``upper_kind``: ``"sure"`` or ``"mean"`` (module docstring).
    """

    step_lower: np.ndarray
    step_upper: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    lower_kind: tuple[str, ...]
    upper_kind: tuple[str, ...]


def expected_arrivals(config: UAVNetConfig) -> tuple[float, float]:
    """Expected (routine, emergency) arrivals over one episode of ``episode_steps`` steps.

    Exact for the kernel's order within a step (regimes first, then arrivals at step ``t``
    with phase ``2 pi t dt / period``) from an all-calm start: each zone's regime is marginally
    the 3-state chain calm -> precursor -> incident -> calm, where a calm zone starts a
    precursor with probability ``1 - (1 - p_onset)(1 - p_aftershock join)`` (the common
    aftershock couples zones but not a zone's marginal law). Emergencies arrive at the
    incident rate only in the incident state.
    """
    c, d = config, config.derived()
    t = np.arange(c.episode_steps, dtype=np.float64)
    phase = 2.0 * math.pi * t * c.dt / c.routine_wave_period
    wave = [np.sin(phase + z * math.pi / 2) for z in range(N_ZONES)]
    routine = sum(
        rate * c.dt * float(np.sum(1.0 + c.routine_wave_amplitude * wave[z]))
        for z, rate in enumerate(c.routine_base_rates)
    )
    p_start = 1.0 - (1.0 - d.p_onset) * (1.0 - d.p_aftershock * c.aftershock_join_prob)
    m = np.array(
        [
            [1.0 - p_start, p_start, 0.0],
            [0.0, 1.0 - d.p_precursor_end, d.p_precursor_end],
            [d.p_incident_end, 0.0, 1.0 - d.p_incident_end],
        ]
    )
    dist = np.array([1.0, 0.0, 0.0])
    p_incident = np.empty(c.episode_steps)
    for step in range(c.episode_steps):
        dist = dist @ m
        p_incident[step] = dist[2]
    rate = c.emergency_rate_calm * (1.0 - p_incident) + c.emergency_rate_incident * p_incident
    emergency = N_ZONES * c.dt * float(rate.sum())
    return float(routine), emergency


def max_task_cost(config: UAVNetConfig) -> float:
    """The most one task can add to the latency objective's cost (seconds, before ``/N_ref``).

    A completed task of class ``c`` at tier ``j`` and age ``a < expiry_steps[c]`` costs
    ``latency + excess / (1 - cvar_alpha)``; a dropped one costs ``drop_penalty``.
    """
    d = config.derived()
    k = 1.0 / (1.0 - config.cvar_alpha)
    worst = config.drop_penalty
    for cls in range(2):
        ages = int(d.expiry_steps[cls])
        cost = d.latency[cls, :, :ages] + k * d.excess[cls, :, :ages]
        worst = max(worst, float(cost.max()))
    return worst


def objective_bounds(config: UAVNetConfig | None = None) -> ObjectiveBounds:
    """Per-step and per-episode bounds of the six objectives (see the module docstring)."""
    c = config if config is not None else UAVNetConfig()
    d = c.derived()
    n_ref, e_ref, steps = d.n_ref, d.e_ref, c.episode_steps
    inf = math.inf
    p_tot_dt = (N_ZONES * c.p_max_l + c.p_max_h) * c.dt
    moved_lh = d.beam_cap + N_ZONES * d.spill_cap
    moved_hc = int(np.max(d.backhaul_cap))
    energy_low = -(1.0 + (c.energy_l_to_h * moved_lh + c.energy_h_to_cloud * moved_hc) / p_tot_dt)
    energy_high = -(c.g_min**3)
    gini_max = (N_ZONES - 1) / N_ZONES
    completions = N_NODES * c.buffer
    step_lower = np.array([0.0, -inf, -inf, energy_low, -gini_max, -inf])
    step_upper = np.array([completions / n_ref, 0.0, completions / e_ref, energy_high, 0.0, 0.0])

    a_routine, a_emergency = expected_arrivals(c)
    arrivals = a_routine + a_emergency
    lower = np.array(
        [
            0.0,
            -max_task_cost(c) * arrivals / n_ref,
            -a_emergency / e_ref,
            steps * energy_low,
            -steps * gini_max,
            -(0.5 * N_NODES * steps + arrivals / n_ref),
        ]
    )
    shortest = 1 if c.collapse_occupancy is not None else steps
    upper = np.array([arrivals / n_ref, 0.0, a_emergency / e_ref, shortest * energy_high, 0, 0])
    assert lower.shape == upper.shape == (N_OBJECTIVES,)
    return ObjectiveBounds(
        step_lower=step_lower,
        step_upper=step_upper,
        lower=lower,
        upper=upper.astype(np.float64),
        lower_kind=(SURE, MEAN, MEAN, SURE, SURE, MEAN),
        upper_kind=(MEAN, SURE, MEAN, SURE, SURE, SURE),
    )
