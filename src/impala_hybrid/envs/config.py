"""``UAVNetConfig``: every number of the UAV emergency-response simulator, typed and validated.

The defaults are the spec in ``shared/design/UAV_ENV.md``. Rates are per second and turned
into per-step quantities (``*_per_step``, probabilities ``1 - exp(-rate dt)``) by
:meth:`UAVNetConfig.derived`, which also computes the normalisers ``N_ref`` and ``E_ref``
analytically from the stationary distribution of the regime chain exactly as the simulator
steps it, so they stay right when a user changes a rate.

Nodes are indexed 0..3 (the low-altitude UAVs L1..L4, one per zone) and 4 (the high-altitude
UAV H); the cloud completes what reaches it in the same step. Classes: 0 emergency, 1 routine.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np

from impala_hybrid.validation import spec, validate

N_ZONES = 4
N_NODES = 5  # L1..L4, H
N_CLASSES = 2  # emergency, routine
N_TIERS = 4  # completion tier for latency: L, H, cloud (good backhaul), cloud (bad backhaul)
N_OBJECTIVES = 6
OBS_DIM = 29
N_TRANSFER = 6  # 0 none, 1..4 move L_k's emergencies to H, 5 move H's emergencies to cloud
N_INTENSITY = 6  # u for L1..L4, u for H, routine spill intensity nu
MAX_AGE_BINS = 10_000  # bounds memory per env: expiry / dt may not exceed this
OBJECTIVE_NAMES = ("goodput", "latency", "emergency", "energy", "fairness", "stability")
CLASS_NAMES = ("emergency", "routine")
#: The constraints of UAV_ENV.md, each reported per step as its own cost (``info[
#: "constraint_costs"] [N, 3]``) with its limit (``UAVNetConfig.constraint_limits``): control
#: power (computing plus transfer energy per second) over the nodes' summed maximum P_max
#: (limit power_budget / P_max; it can pass 1 with many transfers), the Gini of the tier-1
#: sojourn times, and the fullest buffer's occupancy. The optional hinges charge
#: ``coef * [cost - limit]+``; a Lagrangian learner prices ``cost - limit`` instead.
CONSTRAINT_NAMES = ("power", "fairness", "occupancy")
N_CONSTRAINTS = 3
#: Which observation entries and action components belong to each zone (see the observation
#: and action tables of UAV_ENV.md); ``model.structure = "zones"`` ties weights across them
#: (``models.zones.ZoneStructure`` takes these fields).
ZONE_STRUCTURE: dict[str, tuple[Any, ...]] = {
    "obs_zone": tuple(tuple(range(5 * k, 5 * k + 5)) for k in range(N_ZONES)),
    "obs_shared": tuple(range(5 * N_ZONES, OBS_DIM)),
    "discrete_zone": tuple(1 + k for k in range(N_ZONES)),  # transfer k+1 beams zone k
    "continuous_zone": tuple(range(N_ZONES)),  # intensity[k] is L_k's service speed
}


@dataclasses.dataclass(frozen=True)
class UAVNetConfig:
    """Simulator parameters. Every field is validated on construction (see ``validation``)."""

    # --- time ---
    dt: float = spec(0.1, "step length in seconds", lo=0.0, lo_open=True, hi=1.0)
    episode_steps: int = spec(1000, "steps per episode, ended by truncation", lo=1)
    buffer: int = spec(400, "task buffer per node; overflow is dropped, routine first", lo=1)
    # --- task classes ---
    deadline_emergency: float = spec(0.5, "emergency deadline, seconds", lo=0.0, lo_open=True)
    deadline_routine: float = spec(3.0, "routine deadline, seconds", lo=0.0, lo_open=True)
    expiry_emergency: float = spec(2.0, "emergency tasks are dropped after this age, s", lo=0.0)
    expiry_routine: float = spec(4.0, "routine tasks are dropped after this age, s", lo=0.0)
    # --- arrivals ---
    routine_base_rates: tuple[float, ...] = spec(
        (25.0, 35.0, 45.0, 55.0), "routine arrival base rate per zone, tasks/s", lo=0.0, length=4
    )
    routine_wave_amplitude: float = spec(0.3, "relative amplitude of demand wave", lo=0.0, hi=1.0)
    routine_wave_period: float = spec(100.0, "demand wave period, s", lo=0.0, lo_open=True)
    emergency_rate_calm: float = spec(2.0, "emergency arrivals per zone when calm, /s", lo=0.0)
    emergency_rate_incident: float = spec(120.0, "emergency arrivals during incident, /s", lo=0.0)
    # --- regimes (calm -> precursor -> incident -> calm) and alerts ---
    onset_rate: float = spec(1 / 60, "per-zone precursor onset rate, /s", lo=0.0)
    aftershock_rate: float = spec(1 / 150, "common aftershock rate, /s", lo=0.0)
    aftershock_join_prob: float = spec(0.5, "P(a calm zone joins an aftershock)", lo=0.0, hi=1.0)
    precursor_mean: float = spec(1.5, "mean precursor duration, s", lo=0.0, lo_open=True)
    incident_mean: float = spec(6.0, "mean incident duration, s", lo=0.0, lo_open=True)
    alert_prob: float = spec(0.8, "P(alert observed at precursor onset)", lo=0.0, hi=1.0)
    false_alarm_rate: float = spec(1 / 150, "false alarm rate per calm zone, /s", lo=0.0)
    false_alarm_mean: float = spec(1.5, "mean duration of a false alarm, s", lo=0.0, lo_open=True)
    # --- backhaul (Gilbert-Elliott) ---
    backhaul_good_to_bad: float = spec(1 / 30, "backhaul good -> bad rate, /s", lo=0.0)
    backhaul_bad_to_good: float = spec(1 / 10, "backhaul bad -> good rate, /s", lo=0.0)
    # --- service (DVFS: g = g_min + (1 - g_min) u, mu = mu_max g) ---
    mu_max_l: float = spec(100.0, "max service rate of an L-UAV, tasks/s", lo=0.0, lo_open=True)
    mu_max_h: float = spec(200.0, "max service rate of H, tasks/s", lo=0.0, lo_open=True)
    g_min: float = spec(0.2, "minimum speed fraction", lo=0.0, hi=1.0, hi_open=True)
    # --- links, tasks/s (per-step capacity is rate * dt rounded to the nearest integer) ---
    beam_rate: float = spec(200.0, "emergency beam L -> H, tasks/s", lo=0.0)
    spill_rate: float = spec(30.0, "routine spill per L-UAV to H, tasks/s", lo=0.0)
    backhaul_good_rate: float = spec(150.0, "H -> cloud, good backhaul, tasks/s", lo=0.0)
    backhaul_bad_rate: float = spec(30.0, "H -> cloud, bad backhaul, tasks/s", lo=0.0)
    # --- energy ---
    p_max_l: float = spec(15.0, "max computing power of an L-UAV, W", lo=0.0)
    p_max_h: float = spec(30.0, "max computing power of H, W", lo=0.0)
    energy_l_to_h: float = spec(0.02, "energy per L -> H transfer, J", lo=0.0)
    energy_h_to_cloud: float = spec(0.08, "energy per H -> cloud transfer, J", lo=0.0)
    power_budget: float = spec(25.0, "long-run computing power budget (virtual queue), W", lo=0.0)
    hover_power_l: float = spec(168.5, "hover power per L-UAV (info only), W", lo=0.0)
    hover_power_h: float = spec(350.0, "hover power of H (info only), W", lo=0.0)
    # --- latency tier offsets, s ---
    offset_l: float = spec(0.01, "latency offset for service at an L-UAV, s", lo=0.0)
    offset_h: float = spec(0.04, "latency offset for service at H, s", lo=0.0)
    offset_cloud_good: float = spec(0.15, "latency offset via good backhaul, s", lo=0.0)
    offset_cloud_bad: float = spec(0.60, "latency offset via bad backhaul, s", lo=0.0)
    # --- observation ---
    arrival_ewma: float = spec(0.9, "EWMA factor of the observed arrival rate", lo=0.0, hi=1.0)
    # --- objectives and scalarisation ---
    n_ref: float | None = spec(
        None, "reward normaliser N_ref, tasks/step (null: long-run mean offered load)",
        lo=0.0, lo_open=True,
    )  # fmt: skip
    e_ref: float | None = spec(
        None, "reward normaliser E_ref, emergencies/step (null: long-run mean)",
        lo=0.0, lo_open=True,
    )  # fmt: skip
    cvar_alpha: float = spec(
        0.95, "tail level of the latency CVaR surrogate", lo=0.0, hi=1.0, hi_open=True
    )
    latency_tail: bool = spec(
        True, "the latency objective charges 1/(1 - cvar_alpha) times each task's lateness "
        "past its deadline (the per-task CVaR surrogate); false: latency and drops only",
    )  # fmt: skip
    drop_penalty: float = spec(4.0, "latency charged per dropped task, s", lo=0.0)
    weights: tuple[float, ...] = spec(
        (0.25, 0.25, 0.25, 0.10, 0.075, 0.075),
        "scalarisation weights over the six objectives",
        lo=0.0,
        length=6,
    )
    constraint_hinges: bool = spec(
        False, "subtract the constraint hinge penalties from the scalar reward (spec: optional)"
    )
    hinge_power_coef: float = spec(0.5, "coef of [P_ctrl - budget]+ / P_max hinge", lo=0.0)
    hinge_gini_coef: float = spec(0.5, "coef of [Gini - threshold]+ hinge", lo=0.0)
    hinge_gini_threshold: float = spec(0.2, "Gini threshold of the fairness hinge", lo=0.0)
    hinge_occupancy_coef: float = spec(1.0, "coef of [max occupancy - thr]+ hinge", lo=0.0)
    hinge_occupancy_threshold: float = spec(0.5, "occupancy threshold of the hinge", lo=0.0)
    collapse_occupancy: float | None = spec(
        None, "terminate when any buffer's occupancy reaches this fraction (off if null)",
        lo=0.0, lo_open=True, hi=1.0,
    )  # fmt: skip

    def __post_init__(self) -> None:
        validate(self)
        from impala_hybrid.validation import ConfigError

        for cls, expiry in (("emergency", self.expiry_emergency), ("routine", self.expiry_routine)):
            steps = round(expiry / self.dt)
            if not 1 <= steps <= MAX_AGE_BINS:
                raise ConfigError(
                    f"UAVNetConfig.expiry_{cls} = {expiry!r} is invalid: with dt = {self.dt} it "
                    f"must lie in [dt, {MAX_AGE_BINS} dt] = "
                    f"[{self.dt:g}, {MAX_AGE_BINS * self.dt:g}]"
                )
        if sum(self.weights) <= 0:
            raise ConfigError(
                f"UAVNetConfig.weights = {self.weights!r} is invalid: sum must be > 0"
            )
        d = self.derived()
        for name, value in (("n_ref", d.n_ref), ("e_ref", d.e_ref)):
            if value <= 0.0:
                raise ConfigError(
                    f"UAVNetConfig.{name} = None is invalid here: the arrival rates give a "
                    f"long-run mean of {value:g} per step; set {name} to a positive number"
                )

    @property
    def n_age_bins(self) -> int:
        """Age bins per queue (one step each): enough for the longest-lived class."""
        return max(round(self.expiry_emergency / self.dt), round(self.expiry_routine / self.dt))

    def replace(self, **changes: object) -> UAVNetConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def constraint_limits(self) -> tuple[float, float, float]:
        """The limit of each per-step constraint cost (``CONSTRAINT_NAMES`` order): what the
        hinges subtract before clipping at 0."""
        p_max = 4 * self.p_max_l + self.p_max_h
        return (
            self.power_budget / p_max,
            self.hinge_gini_threshold,
            self.hinge_occupancy_threshold,
        )

    def derived(self) -> Derived:
        """Per-step constants the kernel needs, computed once."""
        return _derive(self)


class Derived(NamedTuple):
    """Per-step quantities derived from a config (all NumPy, fed to the Numba kernel)."""

    p_onset: float
    p_aftershock: float
    p_precursor_end: float
    p_incident_end: float
    p_false_alarm: float
    p_false_alarm_end: float
    p_backhaul_g2b: float
    p_backhaul_b2g: float
    expiry_steps: np.ndarray  # [2] int64: tasks at age bin >= expiry_steps[c] - 1 expire
    beam_cap: int
    spill_cap: int
    backhaul_cap: np.ndarray  # [2] int64: good, bad
    latency: np.ndarray  # [2, 4, n_age_bins] float64: latency of a completion (class, tier, age)
    on_time: np.ndarray  # [2, 4, n_age_bins] float64 in {0, 1}
    excess: np.ndarray  # [2, 4, n_age_bins] float64: (latency - deadline)+
    n_ref: float  # long-run mean offered tasks per step
    e_ref: float  # long-run mean emergency arrivals per step
    incident_fraction: float


def _rate_to_prob(rate: float, dt: float) -> float:
    return 1.0 - math.exp(-rate * dt)


def _derive(c: UAVNetConfig) -> Derived:
    dt = c.dt
    p_onset = _rate_to_prob(c.onset_rate, dt)
    p_after = _rate_to_prob(c.aftershock_rate, dt)
    p_pre_end = _rate_to_prob(1.0 / c.precursor_mean, dt)
    p_inc_end = _rate_to_prob(1.0 / c.incident_mean, dt)
    # Stationary distribution of the per-step 3-state chain as the kernel steps it: a calm zone
    # starts a precursor with its own onset or by joining an aftershock.
    p_start = 1.0 - (1.0 - p_onset) * (1.0 - p_after * c.aftershock_join_prob)
    # Mean sojourns (in steps) of a geometric chain: 1/p. Fractions are proportional to them.
    inv = [1.0 / max(p, 1e-300) for p in (p_start, p_pre_end, p_inc_end)]
    incident_fraction = inv[2] / sum(inv)
    e_rate = c.emergency_rate_calm * (1 - incident_fraction) + (
        c.emergency_rate_incident * incident_fraction
    )
    e_ref_mean = N_ZONES * e_rate * dt
    n_ref_mean = sum(c.routine_base_rates) * dt + e_ref_mean  # the sine wave averages to zero
    n_ref = c.n_ref if c.n_ref is not None else n_ref_mean
    e_ref = c.e_ref if c.e_ref is not None else e_ref_mean

    ages = np.arange(c.n_age_bins, dtype=np.float64)
    offsets = np.array([c.offset_l, c.offset_h, c.offset_cloud_good, c.offset_cloud_bad])
    deadlines = np.array([c.deadline_emergency, c.deadline_routine])
    latency = (ages[None, None, :] + 0.5) * dt + offsets[None, :, None] + np.zeros((2, 1, 1))
    excess = np.maximum(latency - deadlines[:, None, None], 0.0)
    on_time = (latency <= deadlines[:, None, None] + 1e-12).astype(np.float64)
    return Derived(
        p_onset=p_onset,
        p_aftershock=p_after,
        p_precursor_end=p_pre_end,
        p_incident_end=p_inc_end,
        p_false_alarm=_rate_to_prob(c.false_alarm_rate, dt),
        p_false_alarm_end=_rate_to_prob(1.0 / c.false_alarm_mean, dt),
        p_backhaul_g2b=_rate_to_prob(c.backhaul_good_to_bad, dt),
        p_backhaul_b2g=_rate_to_prob(c.backhaul_bad_to_good, dt),
        expiry_steps=np.array(
            [round(c.expiry_emergency / dt), round(c.expiry_routine / dt)], dtype=np.int64
        ),
        beam_cap=round(c.beam_rate * dt),
        spill_cap=round(c.spill_rate * dt),
        backhaul_cap=np.array(
            [round(c.backhaul_good_rate * dt), round(c.backhaul_bad_rate * dt)], dtype=np.int64
        ),
        latency=latency,
        on_time=on_time,
        excess=excess,
        n_ref=n_ref,
        e_ref=e_ref,
        incident_fraction=incident_fraction,
    )
