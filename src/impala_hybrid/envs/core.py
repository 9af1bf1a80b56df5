"""The simulator as a batched transition over state arrays ``[B, ...]``, compiled with Numba.

Design for speed (the issue's target is >= 300k env steps/s per core at batch >= 1024; a
straightforward NumPy version of the spec ran at 25-43k):

* **One compiled pass per step.** NumPy needs dozens of array passes per step (one per
  arithmetic op over ``[B, 5, 2, 40]``); here each environment's whole step runs in one loop
  body with its state in cache. The loop over environments is inside the compiled kernel, so
  there is no Python loop over environments.
* **Ring-indexed age bins.** Queues are counts per (node, class, age bin). Aging would shift
  40 bins every step; instead each environment has a ``head`` slot holding age 0 and aging is
  ``head += 1``. Age ``a`` lives in slot ``(head - a) mod n_age_bins``. Since every task ages
  in lockstep, one head serves all nodes and a transfer keeps its slot (and so its age).
* **Running totals** per (node, class) so no step sums 40 bins; oldest-first service walks
  only the bins it empties.
* **Packed parameters**: floats in one ``float64`` vector and ints in one ``int64`` vector
  with named indices, so a kernel call dispatches a dozen arrays, not forty scalars.

"Pure" here means all state lives in the arrays passed in (:class:`UAVState`); the kernel
updates them in place to avoid allocating per step. Autoreset, truncation bookkeeping and
episode statistics summaries live in the Gymnasium faces (``vector.py``); the kernel only
accumulates the raw counters the summaries need (they are only known inside a step).

Order within a step (UAV_ENV.md, "Per-step dynamics" 8): regimes and backhaul; arrivals into
age bin 0 (overflow drops routine first: arriving emergencies evict the newest queued routine
tasks); H -> cloud moves (emergency transfer, then routine spill, sharing the backhaul) before
L -> H moves, so a task climbs at most one tier per step; service (emergency first, oldest
first); expiry; aging; energy; rewards; observation. The cloud completes what reaches it in
the same step, so nothing is ever in transit between steps.
"""

from __future__ import annotations

import dataclasses
import math

import numba as nb
import numpy as np

from impala_hybrid.envs.config import (
    N_CLASSES,
    N_CONSTRAINTS,
    N_NODES,
    N_OBJECTIVES,
    N_ZONES,
    UAVNetConfig,
)
from impala_hybrid.envs.rng import EXOGENOUS, N_STREAMS, SERVICE, poisson, stream_states, uniform

H = 4  # node index of the high-altitude UAV
CLOUD = 5  # node index of the cloud in the flow counters
E, R = 0, 1  # task classes
TIER_L, TIER_H, TIER_CLOUD_GOOD, TIER_CLOUD_BAD = 0, 1, 2, 3

# --- float parameter vector -------------------------------------------------------------
(
    FP_DT, FP_BUFFER, FP_AMP, FP_PERIOD, FP_E_CALM, FP_E_INC, FP_P_ONSET, FP_P_AFTER, FP_JOIN,
    FP_P_PRE_END, FP_P_INC_END, FP_ALERT, FP_P_FA, FP_P_FA_END, FP_P_G2B, FP_P_B2G, FP_MU_L,
    FP_MU_H, FP_G_MIN, FP_P_L, FP_P_H, FP_E_LH, FP_E_HC, FP_BUDGET, FP_EWMA, FP_CVAR_K,
    FP_DROP_PEN, FP_N_REF, FP_E_REF, FP_HC_POWER, FP_HC_GINI, FP_HC_GINI_THR, FP_HC_OCC,
    FP_HC_OCC_THR, FP_COLLAPSE, FP_DEADLINE_E,
) = range(36)  # fmt: skip
FP_BASE = 36  # four routine base rates
FP_BASE_END = FP_W = FP_BASE + N_ZONES  # six scalarisation weights
FP_SIZE = FP_W + N_OBJECTIVES

# --- int parameter vector ---------------------------------------------------------------
IP_NB, IP_T, IP_BEAM, IP_SPILL, IP_BH_GOOD, IP_BH_BAD, IP_EXP_E, IP_EXP_R, IP_HINGES = range(9)
IP_SIZE = 9

# --- per-env int state ------------------------------------------------------------------
IS_HEAD, IS_T, IS_BACKHAUL, IS_REGIME, IS_ALERT = 0, 1, 2, 3, 3 + N_ZONES
IS_SIZE = IS_ALERT + N_ZONES
CALM, PRECURSOR, INCIDENT = 0, 1, 2
NO_ALERT, TRUE_ALERT, FALSE_ALARM = 0, 1, 2

# --- per-env float state ----------------------------------------------------------------
FS_Y, FS_EWMA, FS_G = 0, 1, 1 + N_ZONES
FS_CONG = FS_G + N_NODES  # tier-1 arrivals / capacity, H inflow / capacity (last step)
FS_SIZE = FS_CONG + 2

# --- episode flow counters [B, kind, node (6 incl. cloud), class] ---------------------
F_ARRIVED, F_MOVED_IN, F_MOVED_OUT, F_COMPLETED, F_OVERFLOW, F_EXPIRED = range(6)
F_KINDS = 6

# --- episode misc accumulators [B, ...] ------------------------------------------------
EM_ENERGY, EM_ON_TIME_E, EM_ON_TIME_R, EM_HINGE = 0, 1, 2, 3
EM_COST = 4  # episode sums of the N_CONSTRAINTS per-step constraint costs
EM_SIZE = EM_COST + N_CONSTRAINTS

Y_SCALE = 25.0  # J, observation tanh(Y / 25 J)

# --- action validation error codes ------------------------------------------------------
ACT_OK, ACT_BAD_TRANSFER, ACT_BAD_INTENSITY = 0, 1, 2


def pack_params(cfg: UAVNetConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Config -> (float params, int params, tables [3, 2, 4, NB]: latency, on_time, excess)."""
    d = cfg.derived()
    fp = np.zeros(FP_SIZE, np.float64)
    fp[FP_DT] = cfg.dt
    fp[FP_BUFFER] = cfg.buffer
    fp[FP_AMP] = cfg.routine_wave_amplitude
    fp[FP_PERIOD] = cfg.routine_wave_period
    fp[FP_E_CALM] = cfg.emergency_rate_calm
    fp[FP_E_INC] = cfg.emergency_rate_incident
    fp[FP_P_ONSET] = d.p_onset
    fp[FP_P_AFTER] = d.p_aftershock
    fp[FP_JOIN] = cfg.aftershock_join_prob
    fp[FP_P_PRE_END] = d.p_precursor_end
    fp[FP_P_INC_END] = d.p_incident_end
    fp[FP_ALERT] = cfg.alert_prob
    fp[FP_P_FA] = d.p_false_alarm
    fp[FP_P_FA_END] = d.p_false_alarm_end
    fp[FP_P_G2B] = d.p_backhaul_g2b
    fp[FP_P_B2G] = d.p_backhaul_b2g
    fp[FP_MU_L] = cfg.mu_max_l
    fp[FP_MU_H] = cfg.mu_max_h
    fp[FP_G_MIN] = cfg.g_min
    fp[FP_P_L] = cfg.p_max_l
    fp[FP_P_H] = cfg.p_max_h
    fp[FP_E_LH] = cfg.energy_l_to_h
    fp[FP_E_HC] = cfg.energy_h_to_cloud
    fp[FP_BUDGET] = cfg.power_budget
    fp[FP_EWMA] = cfg.arrival_ewma
    fp[FP_CVAR_K] = 1.0 / (1.0 - cfg.cvar_alpha) if cfg.latency_tail else 0.0
    fp[FP_DROP_PEN] = cfg.drop_penalty
    fp[FP_N_REF] = d.n_ref
    fp[FP_E_REF] = d.e_ref
    fp[FP_HC_POWER] = cfg.hinge_power_coef
    fp[FP_HC_GINI] = cfg.hinge_gini_coef
    fp[FP_HC_GINI_THR] = cfg.hinge_gini_threshold
    fp[FP_HC_OCC] = cfg.hinge_occupancy_coef
    fp[FP_HC_OCC_THR] = cfg.hinge_occupancy_threshold
    fp[FP_COLLAPSE] = -1.0 if cfg.collapse_occupancy is None else cfg.collapse_occupancy
    fp[FP_DEADLINE_E] = cfg.deadline_emergency
    fp[FP_BASE:FP_BASE_END] = cfg.routine_base_rates
    fp[FP_W : FP_W + N_OBJECTIVES] = cfg.weights
    ip = np.zeros(IP_SIZE, np.int64)
    ip[IP_NB] = cfg.n_age_bins
    ip[IP_T] = cfg.episode_steps
    ip[IP_BEAM] = d.beam_cap
    ip[IP_SPILL] = d.spill_cap
    ip[IP_BH_GOOD], ip[IP_BH_BAD] = d.backhaul_cap
    ip[IP_EXP_E], ip[IP_EXP_R] = d.expiry_steps
    ip[IP_HINGES] = int(cfg.constraint_hinges)
    tables = np.ascontiguousarray(np.stack([d.latency, d.on_time, d.excess]))
    return fp, ip, tables


@dataclasses.dataclass
class UAVState:
    """All simulator state for a batch of ``B`` environments (arrays updated in place).

    Shapes: ``q [B, 5, 2, NB] int32`` queue counts ring-indexed by age (see module doc),
    ``qt [B, 5, 2] int32`` their totals, ``istate [B, IS_SIZE] int64`` (head, t, backhaul,
    regime[4], alert[4]), ``fstate [B, FS_SIZE] float64`` (virtual energy queue Y, arrival
    EWMA[4], last speeds g[5], congestion[2]), ``rng [B, 2] uint64`` (exogenous, service
    streams), and the episode accumulators ``ep_ret [B, 7]`` (six objectives + scalar),
    ``ep_hist [B, 2, 4, NB] int64`` (completions by class, tier, age), ``ep_flow [B, 6, 6, 2]
    int64`` (flow kind, node incl. cloud, class), ``ep_misc [B, EM_SIZE]``.
    """

    q: np.ndarray
    qt: np.ndarray
    istate: np.ndarray
    fstate: np.ndarray
    rng: np.ndarray
    ep_ret: np.ndarray
    ep_hist: np.ndarray
    ep_flow: np.ndarray
    ep_misc: np.ndarray

    @classmethod
    def zeros(cls, num_envs: int, n_age_bins: int) -> UAVState:
        b, nb_ = num_envs, n_age_bins
        return cls(
            q=np.zeros((b, N_NODES, N_CLASSES, nb_), np.int32),
            qt=np.zeros((b, N_NODES, N_CLASSES), np.int32),
            istate=np.zeros((b, IS_SIZE), np.int64),
            fstate=np.zeros((b, FS_SIZE), np.float64),
            rng=np.zeros((b, N_STREAMS), np.uint64),
            ep_ret=np.zeros((b, N_OBJECTIVES + 1), np.float64),
            ep_hist=np.zeros((b, N_CLASSES, 4, nb_), np.int64),
            ep_flow=np.zeros((b, F_KINDS, N_NODES + 1, N_CLASSES), np.int64),
            ep_misc=np.zeros((b, EM_SIZE), np.float64),
        )

    @property
    def num_envs(self) -> int:
        return int(self.q.shape[0])

    # Read-only views for tests, heuristics and debugging.
    @property
    def t(self) -> np.ndarray:
        return self.istate[:, IS_T]

    @property
    def backhaul(self) -> np.ndarray:
        """0 good, 1 bad."""
        return self.istate[:, IS_BACKHAUL]

    @property
    def regime(self) -> np.ndarray:
        """[B, 4]: 0 calm, 1 precursor, 2 incident."""
        return self.istate[:, IS_REGIME : IS_REGIME + N_ZONES]

    @property
    def alert(self) -> np.ndarray:
        """[B, 4]: 0 none, 1 true alert, 2 false alarm."""
        return self.istate[:, IS_ALERT : IS_ALERT + N_ZONES]

    @property
    def energy_queue(self) -> np.ndarray:
        return self.fstate[:, FS_Y]

    def queue_by_age(self) -> np.ndarray:
        """``[B, 5, 2, NB]`` counts with the last axis in age order (a copy)."""
        nb_ = self.q.shape[-1]
        head = self.istate[:, IS_HEAD]
        idx = (head[:, None] - np.arange(nb_)[None, :]) % nb_  # [B, NB] slot of age a
        return np.take_along_axis(self.q, idx[:, None, None, :], axis=3)

    def copy(self) -> UAVState:
        return UAVState(*(getattr(self, f.name).copy() for f in dataclasses.fields(self)))


def seed_envs(state: UAVState, mask: np.ndarray, seeds: np.ndarray) -> None:
    """Give environments ``mask`` fresh random streams from their integer ``seeds``."""
    for b in np.flatnonzero(mask):
        state.rng[b] = stream_states(int(seeds[b]))


@nb.njit(inline="always", cache=True)
def _slot(head: int, a: int, nb_: int) -> int:
    """Ring slot of age ``a`` (``(head - a) mod nb_`` without an integer division)."""
    s = head - a
    return s + nb_ if s < 0 else s


@nb.njit(cache=True)
def _gini4(x0: float, x1: float, x2: float, x3: float) -> float:
    """Gini coefficient of four non-negative values: sum|xi - xj| / (2 n sum x)."""
    s = x0 + x1 + x2 + x3
    if s <= 0.0:
        return 0.0
    d = (
        abs(x0 - x1) + abs(x0 - x2) + abs(x0 - x3) + abs(x1 - x2) + abs(x1 - x3) + abs(x2 - x3)
    ) * 2.0
    return d / (2.0 * 4.0 * s)


@nb.njit(cache=True)
def _sojourn_gini(qt: np.ndarray, fstate: np.ndarray, b: int, fp: np.ndarray) -> float:
    """Gini of tier-1 expected sojourn times (Q_i + 1) / mu_i at the current speeds."""
    mu = fp[FP_MU_L]
    return _gini4(
        (qt[b, 0, E] + qt[b, 0, R] + 1.0) / (mu * fstate[b, FS_G]),
        (qt[b, 1, E] + qt[b, 1, R] + 1.0) / (mu * fstate[b, FS_G + 1]),
        (qt[b, 2, E] + qt[b, 2, R] + 1.0) / (mu * fstate[b, FS_G + 2]),
        (qt[b, 3, E] + qt[b, 3, R] + 1.0) / (mu * fstate[b, FS_G + 3]),
    )


@nb.njit(cache=True)
def _oldest_age(
    q: np.ndarray, b: int, n: int, c: int, top: int, head: int, nb_: int, total: int
) -> int:
    """Age (in bins) of the oldest task of class c at node n (ages <= ``top``), or -1."""
    if total == 0:
        return -1
    for a in range(top, -1, -1):
        if q[b, n, c, _slot(head, a, nb_)] > 0:
            return a
    return -1


@nb.njit(cache=True)
def _write_obs(
    b: int,
    q: np.ndarray,
    qt: np.ndarray,
    istate: np.ndarray,
    fstate: np.ndarray,
    fp: np.ndarray,
    ip: np.ndarray,
    obs: np.ndarray,
) -> None:
    """The 29 observation values in [0, 1] (UAV_ENV.md, Observation)."""
    nb_ = ip[IP_NB]
    head = istate[b, IS_HEAD]
    dt = fp[FP_DT]
    log_buf = math.log1p(fp[FP_BUFFER])
    age_scale = 1.0 / (fp[FP_DEADLINE_E] / dt)  # bins -> multiples of the emergency deadline
    for n in range(N_NODES):
        base = 5 * n if n < 4 else 20
        obs[b, base] = math.log1p(qt[b, n, E]) / log_buf
        obs[b, base + 1] = math.log1p(qt[b, n, R]) / log_buf
        a = _oldest_age(q, b, n, E, ip[IP_EXP_E] - 1, head, nb_, qt[b, n, E])
        obs[b, base + 2] = min(max(a, 0) * age_scale, 2.0) / 2.0
        if n < 4:
            obs[b, base + 3] = min(fstate[b, FS_EWMA + n] / fp[FP_MU_L], 2.0) / 2.0
            obs[b, base + 4] = 1.0 if istate[b, IS_ALERT + n] != NO_ALERT else 0.0
    bh_good = ip[IP_BH_GOOD]
    bh = ip[IP_BH_BAD] if istate[b, IS_BACKHAUL] == 1 else bh_good
    obs[b, 23] = bh / bh_good if bh_good > 0 else 0.0
    obs[b, 24] = min(fstate[b, FS_CONG], 2.0) / 2.0
    obs[b, 25] = min(fstate[b, FS_CONG + 1], 2.0) / 2.0
    obs[b, 26] = _sojourn_gini(qt, fstate, b, fp)
    obs[b, 27] = math.tanh(fstate[b, FS_Y] / Y_SCALE)
    obs[b, 28] = istate[b, IS_T] / ip[IP_T]


@nb.njit(cache=True)
def _move_oldest(
    q: np.ndarray,
    qt: np.ndarray,
    b: int,
    src: int,
    dst: int,
    c: int,
    count: int,
    top: int,
    head: int,
    nb_: int,
) -> None:
    """Move the ``count`` oldest class-c tasks (ages <= ``top``) from node src to node dst,
    keeping their ages."""
    left = count
    for a in range(top, -1, -1):
        if left == 0:
            break
        s = _slot(head, a, nb_)
        take = min(left, q[b, src, c, s])
        if take > 0:
            q[b, src, c, s] -= take
            q[b, dst, c, s] += take
            left -= take
    qt[b, src, c] -= count
    qt[b, dst, c] += count


@nb.njit(cache=True)
def _complete_oldest(
    q: np.ndarray,
    qt: np.ndarray,
    b: int,
    n: int,
    c: int,
    count: int,
    tier: int,
    top: int,
    head: int,
    nb_: int,
    tables: np.ndarray,
    ep_hist: np.ndarray,
    acc: np.ndarray,
) -> None:
    """Complete the ``count`` oldest class-c tasks at node n at latency tier ``tier``.

    ``acc[c]`` accumulates [sum latency, sum excess over deadline, on-time count, count].
    """
    left = count
    for a in range(top, -1, -1):
        if left == 0:
            break
        s = _slot(head, a, nb_)
        take = min(left, q[b, n, c, s])
        if take > 0:
            q[b, n, c, s] -= take
            left -= take
            ep_hist[b, c, tier, a] += take
            acc[c, 0] += take * tables[0, c, tier, a]
            acc[c, 1] += take * tables[2, c, tier, a]
            acc[c, 2] += take * tables[1, c, tier, a]
    acc[c, 3] += count
    qt[b, n, c] -= count


@nb.njit(cache=True)
def _evict_newest(q: np.ndarray, qt: np.ndarray, b: int, n: int, c: int, count: int,
                  head: int, nb_: int) -> None:  # fmt: skip
    """Drop the ``count`` newest class-c tasks at node n (tail drop on overflow)."""
    left = count
    for a in range(nb_):
        if left == 0:
            break
        s = _slot(head, a, nb_)
        take = min(left, q[b, n, c, s])
        q[b, n, c, s] -= take
        left -= take
    qt[b, n, c] -= count


@nb.njit(cache=True)
def check_actions(transfer: np.ndarray, intensity: np.ndarray) -> tuple[int, int, int]:
    """(code, env index, component) of the first invalid action, or (ACT_OK, -1, -1)."""
    for b in range(transfer.shape[0]):
        if transfer[b] < 0 or transfer[b] > 5:
            return ACT_BAD_TRANSFER, b, 0
        for k in range(intensity.shape[1]):
            x = intensity[b, k]
            if not (x >= 0.0 and x <= 1.0):  # also catches NaN
                return ACT_BAD_INTENSITY, b, k
    return ACT_OK, -1, -1


@nb.njit(cache=True)
def reset_kernel(
    mask: np.ndarray,
    q: np.ndarray,
    qt: np.ndarray,
    istate: np.ndarray,
    fstate: np.ndarray,
    ep_ret: np.ndarray,
    ep_hist: np.ndarray,
    ep_flow: np.ndarray,
    ep_misc: np.ndarray,
    fp: np.ndarray,
    ip: np.ndarray,
    obs: np.ndarray,
) -> None:
    """Empty queues, calm regimes, good backhaul, t = 0 for environments in ``mask``.

    Random streams are not touched: a new episode continues its environment's streams, so a
    run is one reproducible sequence from its seed (reseeding is ``seed_envs``).
    """
    for b in range(mask.shape[0]):
        if not mask[b]:
            continue
        q[b] = 0
        qt[b] = 0
        istate[b] = 0
        fstate[b] = 0.0
        for n in range(N_NODES):
            fstate[b, FS_G + n] = 1.0  # observation speeds before the first action: full
        ep_ret[b] = 0.0
        ep_hist[b] = 0
        ep_flow[b] = 0
        ep_misc[b] = 0.0
        _write_obs(b, q, qt, istate, fstate, fp, ip, obs)


@nb.njit(cache=True)
def step_kernel(
    active: np.ndarray,
    transfer: np.ndarray,
    intensity: np.ndarray,
    q: np.ndarray,
    qt: np.ndarray,
    istate: np.ndarray,
    fstate: np.ndarray,
    rng: np.ndarray,
    ep_ret: np.ndarray,
    ep_hist: np.ndarray,
    ep_flow: np.ndarray,
    ep_misc: np.ndarray,
    fp: np.ndarray,
    ip: np.ndarray,
    tables: np.ndarray,
    obs: np.ndarray,
    rew_vec: np.ndarray,
    cost: np.ndarray,
    rew: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
) -> None:
    """Advance every environment with ``active[b]`` by one step (see module doc for order).

    Inputs: ``transfer [B] int``, ``intensity [B, 6] float`` (validated by ``check_actions``).
    Outputs written: ``obs [B, 29] float32``, ``rew_vec [B, 6] float32``, ``cost [B, 3]
    float32`` (the constraint costs, ``CONSTRAINT_NAMES`` order), ``rew [B] float32``
    (scalarised, with hinges if enabled), ``terminated [B]``, ``truncated [B]`` bool.
    """
    nb_ = ip[IP_NB]
    top_e = ip[IP_EXP_E] - 1  # no task of a class is ever older than its expiry - 1
    top_r = ip[IP_EXP_R] - 1
    dt = fp[FP_DT]
    buf = int(fp[FP_BUFFER])
    acc = np.zeros((2, 4))  # per class: latency sum, excess sum, on-time count, completions
    g = np.empty(N_NODES)
    r = np.empty(N_OBJECTIVES)
    for b in range(active.shape[0]):
        if not active[b]:
            continue
        head = istate[b, IS_HEAD]
        t = istate[b, IS_T]
        acc[:] = 0.0

        # 1. Regimes, alerts, backhaul: fixed number of exogenous uniforms per step.
        aftershock = uniform(rng, b, EXOGENOUS) < fp[FP_P_AFTER]
        for z in range(N_ZONES):
            u1 = uniform(rng, b, EXOGENOUS)
            u2 = uniform(rng, b, EXOGENOUS)
            u3 = uniform(rng, b, EXOGENOUS)
            u4 = uniform(rng, b, EXOGENOUS)
            reg = istate[b, IS_REGIME + z]
            al = istate[b, IS_ALERT + z]
            if reg == CALM:
                if u1 < fp[FP_P_ONSET] or (aftershock and u2 < fp[FP_JOIN]):
                    reg = PRECURSOR
                    if u3 < fp[FP_ALERT]:
                        al = TRUE_ALERT
            elif reg == PRECURSOR:
                if u1 < fp[FP_P_PRE_END]:
                    reg = INCIDENT
            elif u1 < fp[FP_P_INC_END]:
                reg = CALM
                if al == TRUE_ALERT:
                    al = NO_ALERT
            if al == FALSE_ALARM:
                if u4 < fp[FP_P_FA_END]:
                    al = NO_ALERT
            elif al == NO_ALERT and reg == CALM and u4 < fp[FP_P_FA]:
                al = FALSE_ALARM
            istate[b, IS_REGIME + z] = reg
            istate[b, IS_ALERT + z] = al
        u_bh = uniform(rng, b, EXOGENOUS)
        bad = istate[b, IS_BACKHAUL]
        if bad == 0 and u_bh < fp[FP_P_G2B]:
            bad = 1
        elif bad == 1 and u_bh < fp[FP_P_B2G]:
            bad = 0
        istate[b, IS_BACKHAUL] = bad
        bh_cap = ip[IP_BH_BAD] if bad == 1 else ip[IP_BH_GOOD]
        cloud_tier = TIER_CLOUD_BAD if bad == 1 else TIER_CLOUD_GOOD

        # 2. Arrivals into age bin 0 (slot ``head``); overflow drops routine first.
        phase = 2.0 * math.pi * t * dt / fp[FP_PERIOD]
        tier1_arrivals = 0
        drop_e = 0  # this step's overflow + expiry, per class
        drop_r = 0
        for z in range(N_ZONES):
            reg = istate[b, IS_REGIME + z]
            lam_e = (fp[FP_E_INC] if reg == INCIDENT else fp[FP_E_CALM]) * dt
            lam_r = fp[FP_BASE + z] * (1.0 + fp[FP_AMP] * math.sin(phase + z * 0.5 * math.pi)) * dt
            a_e = poisson(rng, b, EXOGENOUS, lam_e)
            a_r = poisson(rng, b, EXOGENOUS, lam_r)
            ep_flow[b, F_ARRIVED, z, E] += a_e
            ep_flow[b, F_ARRIVED, z, R] += a_r
            free = buf - qt[b, z, E] - qt[b, z, R]
            evicted = 0
            if a_e > free:  # emergencies push out the newest queued routine tasks
                evicted = min(a_e - free, qt[b, z, R])
                if evicted > 0:
                    _evict_newest(q, qt, b, z, R, evicted, head, nb_)
                    free += evicted
            adm_e = min(a_e, free)
            adm_r = min(a_r, free - adm_e)
            ov_e = a_e - adm_e
            ov_r = a_r - adm_r + evicted
            drop_e += ov_e
            drop_r += ov_r
            ep_flow[b, F_OVERFLOW, z, E] += ov_e
            ep_flow[b, F_OVERFLOW, z, R] += ov_r
            q[b, z, E, head] += adm_e
            q[b, z, R, head] += adm_r
            qt[b, z, E] += adm_e
            qt[b, z, R] += adm_r
            tier1_arrivals += a_e + a_r
            rate = (a_e + a_r) / dt
            ew = fp[FP_EWMA]
            fstate[b, FS_EWMA + z] = ew * fstate[b, FS_EWMA + z] + (1.0 - ew) * rate

        # 3. Speeds from the action, then moves: H -> cloud first, then L -> H.
        for n in range(N_NODES):
            g[n] = fp[FP_G_MIN] + (1.0 - fp[FP_G_MIN]) * intensity[b, n]
            fstate[b, FS_G + n] = g[n]
        nu = intensity[b, 5]
        act = transfer[b]
        moved_lh = 0
        moved_hc = 0
        bh_left = bh_cap
        if act == 5:
            m = min(bh_left, qt[b, H, E])
            if m > 0:
                _complete_oldest(
                    q, qt, b, H, E, m, cloud_tier, top_e, head, nb_, tables, ep_hist, acc
                )
                ep_flow[b, F_MOVED_OUT, H, E] += m
                ep_flow[b, F_MOVED_IN, CLOUD, E] += m
                ep_flow[b, F_COMPLETED, CLOUD, E] += m
                bh_left -= m
                moved_hc += m
        cap_h = fp[FP_MU_H] * g[H] * dt
        excess_h = qt[b, H, E] + qt[b, H, R] - cap_h
        if excess_h > 0.0:
            m = min(math.floor(nu * excess_h), qt[b, H, R], bh_left)
            if m > 0:
                _complete_oldest(
                    q, qt, b, H, R, m, cloud_tier, top_r, head, nb_, tables, ep_hist, acc
                )
                ep_flow[b, F_MOVED_OUT, H, R] += m
                ep_flow[b, F_MOVED_IN, CLOUD, R] += m
                ep_flow[b, F_COMPLETED, CLOUD, R] += m
                moved_hc += m
        free_h = buf - qt[b, H, E] - qt[b, H, R]
        if 1 <= act <= 4:
            k = act - 1
            m = min(ip[IP_BEAM], qt[b, k, E], free_h)
            if m > 0:
                _move_oldest(q, qt, b, k, H, E, m, top_e, head, nb_)
                ep_flow[b, F_MOVED_OUT, k, E] += m
                ep_flow[b, F_MOVED_IN, H, E] += m
                free_h -= m
                moved_lh += m
        for z in range(N_ZONES):
            excess = qt[b, z, E] + qt[b, z, R] - fp[FP_MU_L] * g[z] * dt
            if excess > 0.0:
                m = min(math.floor(nu * excess), qt[b, z, R], ip[IP_SPILL], free_h)
                if m > 0:
                    _move_oldest(q, qt, b, z, H, R, m, top_r, head, nb_)
                    ep_flow[b, F_MOVED_OUT, z, R] += m
                    ep_flow[b, F_MOVED_IN, H, R] += m
                    free_h -= m
                    moved_lh += m

        # 4. Service: Poisson(mu dt) completions, emergency first, oldest first.
        for n in range(N_NODES):
            mu = fp[FP_MU_H] if n == H else fp[FP_MU_L]
            cap = poisson(rng, b, SERVICE, mu * g[n] * dt)
            tier = TIER_H if n == H else TIER_L
            for c in range(N_CLASSES):
                if cap == 0:
                    break
                m = min(cap, qt[b, n, c])
                if m > 0:
                    top = top_e if c == E else top_r
                    _complete_oldest(q, qt, b, n, c, m, tier, top, head, nb_, tables, ep_hist, acc)
                    ep_flow[b, F_COMPLETED, n, c] += m
                    cap -= m

        # 5. Expiry: tasks of age expiry_steps - 1 would be too old after aging.
        for c in range(N_CLASSES):
            s = _slot(head, ip[IP_EXP_E + c] - 1, nb_)
            for n in range(N_NODES):
                x = q[b, n, c, s]
                if x > 0:
                    q[b, n, c, s] = 0
                    qt[b, n, c] -= x
                    ep_flow[b, F_EXPIRED, n, c] += x
                    if c == E:
                        drop_e += x
                    else:
                        drop_r += x

        # 6. Aging: the slot after head held age NB-1, empty after expiry.
        head = head + 1 if head + 1 < nb_ else 0
        istate[b, IS_HEAD] = head
        t += 1
        istate[b, IS_T] = t

        # 7. Energy: P_max g^3 dt per node plus per-transfer energy; virtual queue Y.
        p_tot = 4.0 * fp[FP_P_L] + fp[FP_P_H]
        energy = (moved_lh * fp[FP_E_LH]) + (moved_hc * fp[FP_E_HC])
        for n in range(N_NODES):
            pmax = fp[FP_P_H] if n == H else fp[FP_P_L]
            energy += pmax * g[n] * g[n] * g[n] * dt
        fstate[b, FS_Y] = max(fstate[b, FS_Y] + energy - fp[FP_BUDGET] * dt, 0.0)

        # 8. Congestion observations for the next decision.
        cap1 = 0.0
        for z in range(N_ZONES):
            cap1 += fp[FP_MU_L] * g[z] * dt
        fstate[b, FS_CONG] = tier1_arrivals / cap1
        fstate[b, FS_CONG + 1] = (moved_lh / cap_h) if cap_h > 0.0 else 0.0

        # 9. Rewards (UAV_ENV.md, "Six objectives"), higher is better.
        n_ref = fp[FP_N_REF]
        drops = drop_e + drop_r
        r[0] = (acc[E, 2] + acc[R, 2]) / n_ref
        lat = acc[E, 0] + acc[R, 0]
        exc = acc[E, 1] + acc[R, 1]
        r[1] = -(lat + fp[FP_CVAR_K] * exc + fp[FP_DROP_PEN] * drops) / n_ref
        late_e = acc[E, 3] - acc[E, 2]
        r[2] = (acc[E, 2] - late_e - drop_e) / fp[FP_E_REF]
        r[3] = -energy / (p_tot * dt)
        gini = _sojourn_gini(qt, fstate, b, fp)
        r[4] = -gini
        occ_sq = 0.0
        max_occ = 0.0
        for n in range(N_NODES):
            occ = (qt[b, n, E] + qt[b, n, R]) / buf
            occ_sq += occ * occ
            max_occ = max(max_occ, occ)
        r[5] = -(0.5 * occ_sq + drops / n_ref)
        scalar = 0.0
        for k in range(N_OBJECTIVES):
            scalar += fp[FP_W + k] * r[k]
            rew_vec[b, k] = r[k]
            ep_ret[b, k] += r[k]
        c_power = energy / dt / p_tot  # the constraint costs (CONSTRAINT_NAMES)
        cost[b, 0] = c_power
        cost[b, 1] = gini
        cost[b, 2] = max_occ
        ep_misc[b, EM_COST] += c_power
        ep_misc[b, EM_COST + 1] += gini
        ep_misc[b, EM_COST + 2] += max_occ
        hinge = 0.0
        if ip[IP_HINGES] == 1:
            hinge = (
                fp[FP_HC_POWER] * max(c_power - fp[FP_BUDGET] / p_tot, 0.0)
                + fp[FP_HC_GINI] * max(gini - fp[FP_HC_GINI_THR], 0.0)
                + fp[FP_HC_OCC] * max(max_occ - fp[FP_HC_OCC_THR], 0.0)
            )
        rew[b] = scalar - hinge
        ep_ret[b, N_OBJECTIVES] += scalar - hinge
        ep_misc[b, EM_ENERGY] += energy
        ep_misc[b, EM_ON_TIME_E] += acc[E, 2]
        ep_misc[b, EM_ON_TIME_R] += acc[R, 2]
        ep_misc[b, EM_HINGE] += hinge

        # 10. Episode end and the next observation.
        collapse = fp[FP_COLLAPSE]
        terminated[b] = collapse > 0.0 and max_occ >= collapse
        truncated[b] = t >= ip[IP_T]
        _write_obs(b, q, qt, istate, fstate, fp, ip, obs)
