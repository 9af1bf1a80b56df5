"""Slow, obviously-correct references for V-trace and n-step / lambda returns.

Written like the paper's equations, with explicit loops over batch element ``b``, start step ``s``
and summation index ``t``, in float64 NumPy. No recursion, no vectorisation over time: these are
what the fast torch code in ``impala_hybrid.ops`` is tested against.

Conventions (same as ``impala_hybrid.ops.returns``): ``discounts[t] = gamma * (1 - terminated[t])``
replaces ``gamma`` of step ``t``; the value after step ``t`` is ``final_values[t]`` if
``truncated[t]``, else ``values[t + 1]`` (``bootstrap_value`` after the last step); an episode
segment ends at a truncation, so sums starting at ``s`` stop there.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def _f64(x: ArrayLike) -> Array:
    return np.asarray(x, dtype=np.float64)


def _prepare(
    rewards: ArrayLike,
    discounts: ArrayLike,
    values: ArrayLike | None,
    truncated: ArrayLike | None,
    final_values: ArrayLike | None,
) -> tuple[Array, Array, Array, NDArray[np.bool_], Array]:
    """float64 ``(r, d, v, truncated, final)``; ``[T, B]`` discounts broadcast over ``K``."""
    r = _f64(rewards)
    d = _f64(discounts)
    d = np.broadcast_to(d.reshape(d.shape + (1,) * (r.ndim - d.ndim)), r.shape)
    v = np.zeros_like(r) if values is None else _f64(values)
    trunc = np.zeros(r.shape[:2], dtype=bool) if truncated is None else np.asarray(truncated, bool)
    fin = np.zeros_like(r) if final_values is None else _f64(final_values)
    return r, d, v, trunc, fin


def value_after_step(
    t: int,
    b: int,
    values: Array,
    bootstrap_value: Array,
    truncated: NDArray[np.bool_],
    final_values: Array,
) -> Array:
    """``V(x_{t+1})`` of the same episode for batch element ``b``."""
    if truncated[t, b]:
        return final_values[t, b]
    if t + 1 < values.shape[0]:
        return values[t + 1, b]
    return bootstrap_value[b]


def segment_end(t: int, b: int, truncated: NDArray[np.bool_]) -> int:
    """Last step index of the episode segment containing ``t`` inside the unroll."""
    seq_len = truncated.shape[0]
    for u in range(t, seq_len):
        if truncated[u, b]:
            return u
    return seq_len - 1


def clip_ratios_reference(
    log_rhos: ArrayLike,
    *,
    rho_bar: float,
    c_bar: float,
    pg_rho_bar: float,
    ratio_mode: str = "joint",
) -> tuple[Array, Array, Array]:
    """``(clipped_rhos, cs, clipped_pg_rhos)`` ``[T, B]``; ``cs`` without the ``lam`` factor.

    ``log_rhos`` is ``[T, B]`` or ``[T, B, C]``. Joint: ``min(bar, prod_k r_k)``;
    per-component: ``prod_k min(bar, r_k)``.
    """
    lr = _f64(log_rhos)
    if lr.ndim == 2:
        lr = lr[..., None]
    seq_len, batch, n_comp = lr.shape
    out = np.zeros((3, seq_len, batch))
    for t in range(seq_len):
        for b in range(batch):
            factors = [np.exp(lr[t, b, k]) for k in range(n_comp)]
            for j, bar in enumerate((rho_bar, c_bar, pg_rho_bar)):
                if ratio_mode == "joint":
                    out[j, t, b] = min(bar, float(np.prod(factors)))
                elif ratio_mode == "per_component":
                    out[j, t, b] = float(np.prod([min(bar, f) for f in factors]))
                else:
                    raise ValueError(ratio_mode)
    return out[0], out[1], out[2]


def vtrace_reference(
    log_rhos: ArrayLike,
    discounts: ArrayLike,
    rewards: ArrayLike,
    values: ArrayLike,
    bootstrap_value: ArrayLike,
    *,
    truncated: ArrayLike | None = None,
    final_values: ArrayLike | None = None,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
    pg_rho_bar: float | None = None,
    lam: float = 1.0,
    ratio_mode: str = "joint",
) -> tuple[Array, Array]:
    """``(vs, pg_advantages)`` by IMPALA eq. 1 as a double sum, per batch element.

    ``v_s = V(x_s) + sum_{t=s}^{end} (prod_{i=s}^{t-1} gamma_i c_i) delta_t V``,
    ``delta_t V = rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t))``, ``c_i = lam * min(c_bar, .)``,
    where ``end`` is the end of the episode segment (truncation) or of the unroll.

    ``pg_s = rho^pg_s (r_s + gamma_s q_{s+1} - V(x_s))`` with
    ``q_{s+1} = lam v_{s+1} + (1 - lam) V(x_{s+1})`` inside the segment and ``V(x_{s+1})``
    (final value / bootstrap) at its end.
    """
    r, d, v, trunc, fin = _prepare(rewards, discounts, values, truncated, final_values)
    boot = _f64(bootstrap_value)
    rhos, cs, pg_rhos = clip_ratios_reference(
        log_rhos,
        rho_bar=rho_bar,
        c_bar=c_bar,
        pg_rho_bar=rho_bar if pg_rho_bar is None else pg_rho_bar,
        ratio_mode=ratio_mode,
    )
    cs = lam * cs
    seq_len, batch = r.shape[:2]
    vs = np.zeros_like(r)
    for b in range(batch):
        for s in range(seq_len):
            v_s = np.copy(v[s, b])
            for t in range(s, segment_end(s, b, trunc) + 1):
                weight = np.ones_like(v_s)
                for i in range(s, t):  # prod_{i=s}^{t-1} gamma_i c_i
                    weight = weight * d[i, b] * cs[i, b]
                v_next = value_after_step(t, b, v, boot, trunc, fin)
                delta = rhos[t, b] * (r[t, b] + d[t, b] * v_next - v[t, b])
                v_s = v_s + weight * delta
            vs[s, b] = v_s

    pg = np.zeros_like(r)
    for b in range(batch):
        for s in range(seq_len):
            v_next = value_after_step(s, b, v, boot, trunc, fin)
            if s == segment_end(s, b, trunc):
                q_next = v_next
            else:
                q_next = lam * vs[s + 1, b] + (1.0 - lam) * v_next
            pg[s, b] = pg_rhos[s, b] * (r[s, b] + d[s, b] * q_next - v[s, b])
    return vs, pg


def n_step_return_reference(
    rewards: ArrayLike,
    discounts: ArrayLike,
    values: ArrayLike,
    bootstrap_value: ArrayLike,
    n: int,
    *,
    truncated: ArrayLike | None = None,
    final_values: ArrayLike | None = None,
) -> Array:
    """n-step return with per-step discounts, cut at the end of the episode segment.

    ``G^(n)_s = sum_{i<k} (prod_{j<i} gamma_{s+j}) r_{s+i} + (prod_{j<k} gamma_{s+j}) V_after``,
    ``k = min(n, steps left in the segment)``, ``V_after`` the value after step ``s + k - 1``.
    """
    r, d, v, trunc, fin = _prepare(rewards, discounts, values, truncated, final_values)
    boot = _f64(bootstrap_value)
    seq_len, batch = r.shape[:2]
    out = np.zeros_like(r)
    for b in range(batch):
        for s in range(seq_len):
            k = min(n, segment_end(s, b, trunc) - s + 1)
            g = np.zeros_like(r[s, b])
            scale = np.ones_like(r[s, b])
            for i in range(k):
                g = g + scale * r[s + i, b]
                scale = scale * d[s + i, b]
            out[s, b] = g + scale * value_after_step(s + k - 1, b, v, boot, trunc, fin)
    return out


def lambda_return_reference(
    rewards: ArrayLike,
    discounts: ArrayLike,
    values: ArrayLike,
    bootstrap_value: ArrayLike,
    lam: float,
    *,
    truncated: ArrayLike | None = None,
    final_values: ArrayLike | None = None,
) -> Array:
    """Forward view: ``G^lam_s = (1 - lam) sum_{n=1}^{H-1} lam^{n-1} G^(n)_s + lam^{H-1} G^(H)_s``,
    ``H`` = steps from ``s`` to the end of its segment (Sutton & Barto eq. 12.3, truncated)."""
    r = _f64(rewards)
    trunc = np.zeros(r.shape[:2], dtype=bool) if truncated is None else np.asarray(truncated, bool)
    seq_len, batch = r.shape[:2]
    g_n = [
        n_step_return_reference(
            rewards,
            discounts,
            values,
            bootstrap_value,
            n,
            truncated=truncated,
            final_values=final_values,
        )
        for n in range(1, seq_len + 1)
    ]
    out = np.zeros_like(r)
    for b in range(batch):
        for s in range(seq_len):
            horizon = segment_end(s, b, trunc) - s + 1
            g = lam ** (horizon - 1) * g_n[horizon - 1][s, b]
            for n in range(1, horizon):
                g = g + (1.0 - lam) * lam ** (n - 1) * g_n[n - 1][s, b]
            out[s, b] = g
    return out
