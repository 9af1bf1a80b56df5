"""Classical policies for the UAV network, acting on observations only.

Each policy is a callable ``policy(obs [N, 29]) -> {"transfer": int64 [N], "intensity":
float32 [N, 6]}``: the same interface a learned policy has, so one evaluation harness
(``impala_hybrid.evaluation.rollout``) serves both. Everything is vectorised NumPy over the
batch; the constants a policy needs (buffer, service rates, powers, link rates, dt) come from
the :class:`UAVNetConfig` given to its constructor, and the state is decoded from the
observation exactly as ``core._write_obs`` encodes it (:func:`decode`).

Policies (UAV_ENV.md, "Classical policies to beat"):

* ``local_only``: every UAV at full speed, no transfers, no spill. The floor.
* ``maxweight``: full speed; the beam serves the link with the largest backlog difference
  times link rate (Tassiulas and Ephremides 1992, "Stability properties of constrained
  queueing systems and scheduling policies for maximum throughput in multihop radio
  networks", IEEE TAC 37(12)).
* ``threshold``: transfer when the oldest emergency task is older than ``tau`` deadlines;
  speed by queue thresholds.
* ``drift_plus_penalty``: per-step minimisation of the Lyapunov drift plus ``V`` times the
  energy penalty (Neely 2010, "Stochastic Network Optimization with Application to
  Communication and Queueing Systems", Morgan & Claypool, ch. 3-4): DVFS speed
  ``g* = clip(sqrt(Q_w mu_max / (3 (V + Y) P_max)), g_min, 1)`` and back-pressure transfers
  that pay a per-task transmit-energy price.
* ``shortest_expected_delay``: emergencies go where their expected delay is smallest; speed
  proportional to the queue.

Defaults are the tuned values (``impala-hybrid tune-heuristics``, see docs/heuristics.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np

from impala_hybrid.envs.config import N_INTENSITY, N_ZONES, OBS_DIM, UAVNetConfig

H = 4  # node index of the high-altitude UAV
TRANSFER_NONE, TRANSFER_TO_CLOUD = 0, 5
Y_SCALE = 25.0  # J: the observation carries tanh(Y / 25 J)
_Q_E = np.array([0, 5, 10, 15, 20])  # observation index of each node's log-scaled Q_E
_Q_R = _Q_E + 1
_AGE_E = _Q_E + 2
_RATE = np.array([3, 8, 13, 18])
_ALERT = _RATE + 1
_BACKHAUL, _Y, _TIME = 23, 27, 28


class Policy(Protocol):
    """What the evaluation harness calls: a batch of observations to a batch of actions."""

    def __call__(self, obs: np.ndarray) -> dict[str, np.ndarray]: ...


class Decoded(NamedTuple):
    """State recovered from a batch of observations (all float64, per second where a rate)."""

    q_e: np.ndarray  # [N, 5] emergency backlog of L1..L4, H (tasks)
    q_r: np.ndarray  # [N, 5] routine backlog
    age_e: np.ndarray  # [N, 5] oldest emergency task's age, s (0 if none; max 2 deadlines)
    arrival_rate: np.ndarray  # [N, 4] smoothed tier-1 arrival rate per zone, tasks/s
    alert: np.ndarray  # [N, 4] alert flag in {0, 1}
    backhaul_rate: np.ndarray  # [N] current H -> cloud rate, tasks/s
    y: np.ndarray  # [N] virtual energy queue, J
    phase: np.ndarray  # [N] t / T


def decode(obs: np.ndarray, config: UAVNetConfig) -> Decoded:
    """Invert the observation encoding of ``core._write_obs`` (UAV_ENV.md, Observation).

    Queues: ``Q = round(expm1(x log1p(buffer)))`` (exact for float32 observations);
    ``Y = 25 atanh(min(x, 1 - 1e-7))`` (saturates near 210 J); ages and rates undo their
    ``min(., 2) / 2`` scaling, so they saturate at 2 deadlines and ``2 mu_max_l``; ages are
    whole steps (the simulator's age bin times dt).
    """
    x = np.asarray(obs, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != OBS_DIM:
        raise ValueError(f"obs has shape {np.shape(obs)}, expected (N, {OBS_DIM})")
    log_buf = math.log1p(config.buffer)
    return Decoded(
        q_e=np.rint(np.expm1(x[:, _Q_E] * log_buf)),
        q_r=np.rint(np.expm1(x[:, _Q_R] * log_buf)),
        age_e=np.rint(x[:, _AGE_E] * (2.0 * config.deadline_emergency / config.dt)) * config.dt,
        arrival_rate=x[:, _RATE] * (2.0 * config.mu_max_l),
        alert=x[:, _ALERT],
        backhaul_rate=x[:, _BACKHAUL] * config.backhaul_good_rate,
        y=Y_SCALE * np.arctanh(np.minimum(x[:, _Y], 1.0 - 1e-7)),
        phase=x[:, _TIME],
    )


def speed_to_intensity(g: np.ndarray, config: UAVNetConfig) -> np.ndarray:
    """Invert ``g = g_min + (1 - g_min) u``, clipped to [0, 1]."""
    return np.clip((g - config.g_min) / (1.0 - config.g_min), 0.0, 1.0)


def make_action(transfer: np.ndarray, u_nodes: np.ndarray, spill: float) -> dict[str, np.ndarray]:
    """Pack ``transfer [N]``, node intensities ``u [N, 5]`` and a spill ``nu`` into an action."""
    n = transfer.shape[0]
    intensity = np.empty((n, N_INTENSITY), np.float32)
    intensity[:, :5] = np.clip(u_nodes, 0.0, 1.0)
    intensity[:, 5] = spill
    return {"transfer": transfer.astype(np.int64, copy=False), "intensity": intensity}


def _argmax_positive(weights: np.ndarray) -> np.ndarray:
    """``[N, 5]`` weights of transfers 1..5 -> the transfer with the largest positive weight,
    or 0 (none) where no weight is positive. Ties go to the lowest index."""
    best = np.argmax(weights, axis=1)
    top = np.take_along_axis(weights, best[:, None], axis=1)[:, 0]
    return np.where(top > 0.0, best + 1, TRANSFER_NONE)


@dataclasses.dataclass(frozen=True)
class Heuristic:
    """Base class: the config and the constants policies read from it."""

    config: UAVNetConfig = dataclasses.field(default_factory=UAVNetConfig)

    name: ClassVar[str] = "heuristic"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name == "config":
                continue
            value = getattr(self, f.name)
            lo, hi = f.metadata.get("range", (-math.inf, math.inf))
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{self.name}.{f.name} = {value!r} is invalid: must be a number")
            if not lo <= value <= hi:
                raise ValueError(
                    f"{self.name}.{f.name} = {value!r} is invalid: allowed range is [{lo}, {hi}]"
                )

    def params(self) -> dict[str, float]:
        """The tunable parameters and their values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)[1:]}

    @property
    def mu_max(self) -> np.ndarray:
        """[5] maximum service rate per node, tasks/s."""
        c = self.config
        return np.array([c.mu_max_l] * N_ZONES + [c.mu_max_h])

    @property
    def p_max(self) -> np.ndarray:
        """[5] maximum computing power per node, W."""
        c = self.config
        return np.array([c.p_max_l] * N_ZONES + [c.p_max_h])

    def __call__(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


def _param(default: float, lo: float, hi: float) -> Any:
    return dataclasses.field(default=default, metadata={"range": (lo, hi)})


@dataclasses.dataclass(frozen=True)
class LocalOnly(Heuristic):
    """Every UAV at full speed, no transfers, no routine spill: the floor."""

    name: ClassVar[str] = "local_only"

    def __call__(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        n = np.shape(obs)[0]
        return make_action(np.zeros(n, np.int64), np.ones((n, 5)), 0.0)


@dataclasses.dataclass(frozen=True)
class MaxWeight(Heuristic):
    """MaxWeight scheduling of the single relay beam (Tassiulas and Ephremides 1992).

    All UAVs at full speed. Link L_k -> H has weight ``(Q_E(L_k) - Q_E(H)) * beam_rate``; link
    H -> cloud has ``Q_E(H) * backhaul_rate`` (the cloud has no queue; the rate is the one
    observed this step). The beam goes to the largest positive weight. ``spill`` is the routine
    spill intensity nu.
    """

    spill: float = _param(1.0, 0.0, 1.0)

    name: ClassVar[str] = "maxweight"

    def __call__(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        d = decode(obs, self.config)
        w = np.empty((d.q_e.shape[0], 5))
        w[:, :4] = (d.q_e[:, :4] - d.q_e[:, H : H + 1]) * self.config.beam_rate
        w[:, 4] = d.q_e[:, H] * d.backhaul_rate
        return make_action(_argmax_positive(w), np.ones((w.shape[0], 5)), self.spill)


@dataclasses.dataclass(frozen=True)
class Threshold(Heuristic):
    """Age-threshold transfers and queue-threshold speeds.

    Transfer: among the nodes whose oldest emergency task is at least ``tau`` emergency
    deadlines old (L_k -> H, or H -> cloud while the backhaul is good), pick the oldest (ties: the
    largest emergency backlog). Speed of node n with backlog ``Q = Q_E + Q_R``: intensity 0
    below ``q_low`` steps of full-speed service (``Q < q_low * mu_max dt``), 1 at or above
    ``q_high``, ``u_mid`` in between. ``spill`` is the routine spill intensity nu.
    """

    tau: float = _param(0.0, 0.0, 2.0)
    q_low: float = _param(0.0, 0.0, 40.0)
    q_high: float = _param(0.5, 0.0, 40.0)
    u_mid: float = _param(0.5, 0.0, 1.0)
    spill: float = _param(0.5, 0.0, 1.0)

    name: ClassVar[str] = "threshold"

    def __call__(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        c = self.config
        d = decode(obs, c)
        over = (d.age_e >= self.tau * c.deadline_emergency - 1e-9) & (d.q_e > 0)
        over[:, H] &= d.backhaul_rate >= c.backhaul_good_rate  # cloud only on a good backhaul
        # Oldest first; backlog (< buffer + 1) breaks ties inside one age bin.
        score = np.where(over, d.age_e * (c.buffer + 1) / c.dt + d.q_e + 1.0, 0.0)
        transfer = _argmax_positive(score)
        step_cap = self.mu_max * c.dt
        q = d.q_e + d.q_r
        u = np.where(q >= self.q_low * step_cap, self.u_mid, 0.0)
        u = np.where(q >= self.q_high * step_cap, 1.0, u)
        return make_action(transfer, u, self.spill)


@dataclasses.dataclass(frozen=True)
class DriftPlusPenalty(Heuristic):
    """Lyapunov drift-plus-penalty control (Neely 2010) with a virtual energy queue Y.

    Each step minimises ``(V + Y) * energy - sum_n Q_w,n * service_n`` over the action, where
    ``Q_w = w_e Q_E + Q_R``. Per node this is ``(V + Y) P_max g^3 - Q_w mu_max g``, minimised
    at ``g* = clip(sqrt(Q_w mu_max / (3 (V + Y) P_max)), g_min, 1)``. Transfers by
    back-pressure: link L_k -> H has weight ``m (w_e (Q_E(L_k) - Q_E(H)) - (V + Y) e_LH)`` and
    H -> cloud ``m (w_e Q_E(H) - (V + Y) e_HC)``, with ``m`` the tasks the link would carry
    this step and ``e`` the transmit energy per task; the largest positive weight wins.
    ``spill`` is the routine spill intensity nu.
    """

    v: float = _param(64.0, 0.0, 1e6)
    w_e: float = _param(0.5, 0.0, 1e3)
    spill: float = _param(0.25, 0.0, 1.0)

    name: ClassVar[str] = "drift_plus_penalty"

    def __call__(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        c = self.config
        d = decode(obs, c)
        price = np.maximum(self.v + d.y, 1e-9)  # [N]
        q_w = self.w_e * d.q_e + d.q_r
        g = np.sqrt(q_w * self.mu_max / (3.0 * price[:, None] * self.p_max))
        u = speed_to_intensity(np.clip(g, c.g_min, 1.0), c)
        beam_cap = round(c.beam_rate * c.dt)
        bh_cap = np.rint(d.backhaul_rate * c.dt)
        w = np.empty((d.q_e.shape[0], 5))
        moved = np.minimum(d.q_e[:, :4], beam_cap)
        diff = self.w_e * (d.q_e[:, :4] - d.q_e[:, H : H + 1])
        w[:, :4] = moved * (diff - price[:, None] * c.energy_l_to_h)
        w[:, 4] = np.minimum(d.q_e[:, H], bh_cap) * (
            self.w_e * d.q_e[:, H] - price * c.energy_h_to_cloud
        )
        return make_action(_argmax_positive(w), u, self.spill)


@dataclasses.dataclass(frozen=True)
class ShortestExpectedDelay(Heuristic):
    """Shortest expected delay routing of emergencies, speed proportional to the queue.

    Speed: ``g = clip((Q + 1) / (horizon * mu_max dt), g_min, 1)`` with ``Q = Q_E + Q_R``, so
    that a new arrival expects ``(Q + 1) / (mu_max g) = horizon`` steps of sojourn at every
    unsaturated node (equal sojourns also keep the fairness objective's Gini low). Routing: an
    emergency at the back of L_k's emergency queue expects ``(Q_E(L_k) + 1) / mu_max_l``
    locally and ``(Q_E(H) + m + 1) / mu_max_h + offset_h`` at H after a beam move of ``m``
    tasks; one at H expects ``(Q_E(H) + 1) / mu_max_h + offset_h`` there and the current
    cloud offset (good or bad backhaul) in the cloud. The move with the largest positive delay
    saving is made. ``spill`` is the routine spill intensity nu.
    """

    horizon: float = _param(0.75, 0.1, 100.0)
    spill: float = _param(0.5, 0.0, 1.0)

    name: ClassVar[str] = "shortest_expected_delay"

    def __call__(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        c = self.config
        d = decode(obs, c)
        q = d.q_e + d.q_r
        g = np.clip((q + 1.0) / (self.horizon * self.mu_max * c.dt), c.g_min, 1.0)
        u = speed_to_intensity(g, c)
        moved = np.minimum(d.q_e[:, :4], round(c.beam_rate * c.dt))
        local = (d.q_e[:, :4] + 1.0) / c.mu_max_l
        at_h = (d.q_e[:, H : H + 1] + moved + 1.0) / c.mu_max_h + c.offset_h
        saving = np.empty((q.shape[0], 5))
        saving[:, :4] = np.where(moved > 0, local - at_h, 0.0)
        bad = d.backhaul_rate < c.backhaul_good_rate
        cloud = np.where(bad, c.offset_cloud_bad, c.offset_cloud_good)
        stay_h = (d.q_e[:, H] + 1.0) / c.mu_max_h + c.offset_h
        saving[:, 4] = np.where(d.q_e[:, H] > 0, stay_h - cloud, 0.0)
        return make_action(_argmax_positive(saving), u, self.spill)


HEURISTICS: dict[str, Callable[..., Heuristic]] = {
    cls.name: cls
    for cls in (LocalOnly, MaxWeight, Threshold, DriftPlusPenalty, ShortestExpectedDelay)
}


def make_heuristic(name: str, config: UAVNetConfig | None = None, **params: float) -> Heuristic:
    """Build the heuristic ``name`` for ``config`` (default config if None).

    Raises:
        KeyError: unknown name (the message lists the valid ones).
        ValueError: unknown or out-of-range parameter (the message lists the valid ones).
    """
    if name not in HEURISTICS:
        raise KeyError(f"unknown heuristic {name!r}; valid names: {', '.join(HEURISTICS)}")
    cls = HEURISTICS[name]
    valid = [f.name for f in dataclasses.fields(cls)[1:]]  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for heuristic {name!r}; valid: {valid or 'none'}"
        )
    return cls(config=config if config is not None else UAVNetConfig(), **params)
