"""``UAVNetSim``: the batched simulator object both Gymnasium faces are built on.

It owns the config, the packed parameters, the state arrays and preallocated output buffers,
and turns kernel error codes into clear errors. It knows nothing of Gymnasium: autoreset and
info layout belong to the faces (``vector.py``, ``env.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from impala_hybrid.envs import core
from impala_hybrid.envs.config import (
    CLASS_NAMES,
    CONSTRAINT_NAMES,
    N_CONSTRAINTS,
    N_INTENSITY,
    N_OBJECTIVES,
    N_TRANSFER,
    OBJECTIVE_NAMES,
    OBS_DIM,
    UAVNetConfig,
)
from impala_hybrid.envs.stats import latency_cvar, latency_quantiles


class ActionError(ValueError):
    """A malformed or out-of-range action. The message names the field, value and range."""


def parse_actions(action: Any, num_envs: int) -> tuple[np.ndarray, np.ndarray]:
    """A batched action ``{"transfer": [N] int, "intensity": [N, 6] float}`` -> two arrays.

    Also accepts a ``(transfer, intensity)`` pair. Shapes and integrality are checked here;
    ranges are checked by the kernel in the same pass that reads them.
    """
    if isinstance(action, dict):
        missing = {"transfer", "intensity"} - set(action)
        extra = set(action) - {"transfer", "intensity"}
        if missing or extra:
            what = f"is missing {sorted(missing)}" if missing else f"has unknown keys {extra}"
            raise ActionError(
                f"action {what}: expected a dict with keys "
                "'transfer' (int in [0, 5]) and 'intensity' (6 floats in [0, 1])"
            )
        transfer, intensity = action["transfer"], action["intensity"]
    elif isinstance(action, tuple | list) and len(action) == 2:
        transfer, intensity = action
    else:
        raise ActionError(
            f"action must be a dict with keys 'transfer' and 'intensity', got {type(action)!r}"
        )
    tr = np.asarray(transfer)
    it = np.asarray(intensity)
    if tr.shape != (num_envs,):
        tr = tr.reshape(-1) if tr.size == num_envs else tr
        if tr.shape != (num_envs,):
            raise ActionError(
                f"action['transfer'] has shape {np.shape(transfer)}, expected ({num_envs},): "
                "one integer in [0, 5] per environment"
            )
    if it.shape != (num_envs, N_INTENSITY):
        if it.size == num_envs * N_INTENSITY:
            it = it.reshape(num_envs, N_INTENSITY)
        else:
            raise ActionError(
                f"action['intensity'] has shape {np.shape(intensity)}, expected "
                f"({num_envs}, {N_INTENSITY}): six floats in [0, 1] per environment"
            )
    if tr.dtype.kind not in "iu":
        integral = tr.dtype.kind == "f" and np.isfinite(tr) & (tr == np.round(tr))
        if not np.all(integral):
            bad_b = int(np.flatnonzero(~np.asarray(integral) | np.zeros(tr.shape, bool))[0])
            raise ActionError(
                f"action['transfer'][{bad_b}] = {tr[bad_b].item()!r} is invalid: "
                "must be an integer in [0, 5]"
            )
    if it.dtype.kind not in "fiu":
        raise ActionError(f"action['intensity'] has dtype {it.dtype}, expected floats in [0, 1]")
    return tr.astype(np.int64, copy=False), it.astype(np.float64, copy=False)


class UAVNetSim:
    """A batch of ``num_envs`` simulators sharing one config."""

    def __init__(self, config: UAVNetConfig, num_envs: int) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer):
            raise ValueError(f"num_envs = {num_envs!r} is invalid: must be an integer >= 1")
        if num_envs < 1:
            raise ValueError(f"num_envs = {num_envs!r} is invalid: must be an integer >= 1")
        self.config = config
        self.num_envs = int(num_envs)
        self.derived = config.derived()
        self.fp, self.ip, self.tables = core.pack_params(config)
        self.state = core.UAVState.zeros(self.num_envs, config.n_age_bins)
        n = self.num_envs
        self.obs = np.zeros((n, OBS_DIM), np.float32)
        self.reward_vec = np.zeros((n, N_OBJECTIVES), np.float32)
        self.constraint_costs = np.zeros((n, N_CONSTRAINTS), np.float32)
        self.reward = np.zeros(n, np.float32)
        self.terminated = np.zeros(n, np.bool_)
        self.truncated = np.zeros(n, np.bool_)
        self._all = np.ones(n, np.bool_)
        # Cells of the (tier, age) latency histogram in a fixed order, per class.
        self._lat_cells = self.tables[0].reshape(2, -1)

    @property
    def latency_cells(self) -> np.ndarray:
        """``[2, cells]``: the latency (seconds) of each cell of the episode statistics'
        ``latency_hist_<class>`` counts (emergency, routine), for pooled latency CDFs."""
        return self._lat_cells.copy()

    def seed(self, seeds: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Fresh random streams for environments in ``mask`` from integer ``seeds [N]``."""
        core.seed_envs(self.state, self._all if mask is None else mask, seeds)

    def reset(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Start new episodes in ``mask`` (all if None); returns the observation buffer."""
        s = self.state
        core.reset_kernel(
            self._all if mask is None else mask,
            s.q, s.qt, s.istate, s.fstate, s.ep_ret, s.ep_hist, s.ep_flow, s.ep_misc,
            self.fp, self.ip, self.obs,
        )  # fmt: skip
        return self.obs

    def step(
        self, transfer: np.ndarray, intensity: np.ndarray, active: np.ndarray | None = None
    ) -> None:
        """One step for environments in ``active`` (all if None); results in the buffers."""
        code, b, k = core.check_actions(transfer, intensity)
        if code == core.ACT_BAD_TRANSFER:
            raise ActionError(
                f"action['transfer'][{b}] = {transfer[b].item()!r} is out of range: "
                f"must be an integer in [0, {N_TRANSFER - 1}]"
            )
        if code == core.ACT_BAD_INTENSITY:
            raise ActionError(
                f"action['intensity'][{b}, {k}] = {intensity[b, k].item()!r} is out of range: "
                "must be a finite number in [0, 1] (actions are never clipped silently)"
            )
        s = self.state
        core.step_kernel(
            self._all if active is None else active,
            transfer, intensity,
            s.q, s.qt, s.istate, s.fstate, s.rng, s.ep_ret, s.ep_hist, s.ep_flow, s.ep_misc,
            self.fp, self.ip, self.tables,
            self.obs, self.reward_vec, self.constraint_costs, self.reward, self.terminated,
            self.truncated,
        )  # fmt: skip

    def episode_stats(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        """Per-episode statistics of environments in ``mask`` (arrays ``[N]``, valid in mask).

        Call before resetting those environments. Keys: ``r`` (scalarised return), ``l``
        (length), ``objectives [N, 6]`` (per-objective returns, ``OBJECTIVE_NAMES`` order),
        latency ``p50/p95/p99/cvar95`` per class in seconds, completed/on-time/dropped counts,
        control energy and mean power, transfers, hinge penalty, and per constraint
        (``CONSTRAINT_NAMES``) ``cost_NAME`` (the episode's mean per-step cost) and
        ``satisfied_NAME`` (that mean within ``UAVNetConfig.constraint_limits``).
        """
        s = self.state
        n = self.num_envs
        idx = np.flatnonzero(mask)
        out: dict[str, np.ndarray] = {
            "r": np.zeros(n, np.float64),
            "l": np.zeros(n, np.int64),
            "objectives": np.zeros((n, N_OBJECTIVES), np.float64),
        }
        out["r"][idx] = s.ep_ret[idx, N_OBJECTIVES]
        out["l"][idx] = s.istate[idx, core.IS_T]
        out["objectives"][idx] = s.ep_ret[idx, :N_OBJECTIVES]
        for name_i, name in enumerate(OBJECTIVE_NAMES):
            out[f"return_{name}"] = out["objectives"][:, name_i]
        flow = s.ep_flow[idx]
        hist = s.ep_hist[idx]
        alpha = self.config.cvar_alpha
        for c, cname in enumerate(CLASS_NAMES):
            h = hist[:, c].reshape(len(idx), -1)
            qv = latency_quantiles(h, self._lat_cells[c], (0.5, 0.95, 0.99))
            cv = latency_cvar(h, self._lat_cells[c], alpha)
            for key, vals in (
                (f"latency_p50_{cname}", qv[:, 0]),
                (f"latency_p95_{cname}", qv[:, 1]),
                (f"latency_p99_{cname}", qv[:, 2]),
                (f"latency_cvar_{cname}", cv),
                (f"completed_{cname}", flow[:, core.F_COMPLETED, :, c].sum(1)),
                (f"arrived_{cname}", flow[:, core.F_ARRIVED, :, c].sum(1)),
                (f"overflow_{cname}", flow[:, core.F_OVERFLOW, :, c].sum(1)),
                (f"expired_{cname}", flow[:, core.F_EXPIRED, :, c].sum(1)),
                (f"on_time_{cname}", s.ep_misc[idx, core.EM_ON_TIME_E + c]),
            ):
                arr = np.full(n, np.nan) if vals.dtype.kind == "f" else np.zeros(n, vals.dtype)
                arr[idx] = vals
                out[key] = arr
            out[f"dropped_{cname}"] = out[f"overflow_{cname}"] + out[f"expired_{cname}"]
            counts = np.zeros((n, h.shape[1]), np.int64)  # completions per latency cell
            counts[idx] = h
            out[f"latency_hist_{cname}"] = counts
        length_s = np.maximum(out["l"], 1) * self.config.dt
        energy = np.zeros(n)
        energy[idx] = s.ep_misc[idx, core.EM_ENERGY]
        out["energy_j"] = energy
        out["mean_power_w"] = energy / length_s
        hover_w = 4 * self.config.hover_power_l + self.config.hover_power_h
        out["hover_energy_j"] = np.where(mask, hover_w * length_s, 0.0)
        out["transfers_l_to_h"] = np.zeros(n, np.int64)
        out["transfers_l_to_h"][idx] = flow[:, core.F_MOVED_OUT, :4].sum((1, 2))
        out["transfers_h_to_cloud"] = np.zeros(n, np.int64)
        out["transfers_h_to_cloud"][idx] = flow[:, core.F_MOVED_OUT, 4].sum(1)
        out["hinge_penalty"] = np.zeros(n)
        out["hinge_penalty"][idx] = s.ep_misc[idx, core.EM_HINGE]
        limits = self.config.constraint_limits()
        for i, name in enumerate(CONSTRAINT_NAMES):  # the episode's mean per-step cost
            mean = np.full(n, np.nan)
            mean[idx] = s.ep_misc[idx, core.EM_COST + i] / np.maximum(out["l"][idx], 1)
            out[f"cost_{name}"] = mean
            out[f"satisfied_{name}"] = np.where(mask, mean <= limits[i], False)
        return out
