"""Per-environment, per-purpose random streams for the Numba kernel (SplitMix64).

Why hand-written: Numba's ``np.random`` keeps one global Mersenne Twister per thread, so two
environments in a batch, or exogenous events and service noise, would share one stream. For
common random numbers (two policies on one seed see identical arrivals, incidents, alerts and
backhaul states) every environment needs its own *exogenous* stream whose draws never depend
on actions, and a separate *service* stream for the action-dependent service noise. SplitMix64
(Steele, Lea and Flood 2014) is one ``uint64`` of state per stream, passes BigCrush, is trivial
to seed from (seed, stream) and to checkpoint, and costs a few nanoseconds per draw.

Poisson variates: inversion by sequential search for ``lam < 30`` (one uniform per draw, so
the exogenous stream consumes a fixed number of uniforms per step), and Hormann's PTRS
transformed rejection (Hormann 1993, "The transformed rejection method for generating Poisson
random variables") above, where inversion would cost O(lam).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

EXOGENOUS = 0  # regimes, alerts, backhaul, arrivals: independent of actions
SERVICE = 1  # service completions: depend on the chosen speeds
N_STREAMS = 2

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO53_INV = 1.0 / 9007199254740992.0
_MASK64 = (1 << 64) - 1


def _mix64_py(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_states(seed: int, n_streams: int = N_STREAMS) -> np.ndarray:
    """Initial states ``[n_streams] uint64`` for one environment seeded with ``seed``.

    Different seeds and different streams give unrelated states (two rounds of mixing).
    """
    base = _mix64_py(seed & _MASK64)
    return np.array([_mix64_py(base ^ _mix64_py(s + 1)) for s in range(n_streams)], np.uint64)


@nb.njit(inline="always", cache=True)
def uniform(rng: np.ndarray, b: int, s: int) -> float:
    """Next uniform in [0, 1) from stream ``s`` of environment ``b`` (advances the state)."""
    st = rng[b, s] + _GAMMA
    rng[b, s] = st
    z = (st ^ (st >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return float(z >> _S11) * _TWO53_INV


@nb.njit(cache=True)
def poisson(rng: np.ndarray, b: int, s: int, lam: float) -> int:
    """A Poisson(``lam``) variate from stream ``s`` of environment ``b``."""
    if lam < 30.0:
        u = uniform(rng, b, s)  # always exactly one uniform, even for lam == 0
        if lam <= 0.0:
            return 0
        p = math.exp(-lam)
        cdf = p
        k = 0
        # The cap guards against u within rounding of 1 where the float CDF stalls below it.
        while u > cdf and k < 200:
            k += 1
            p *= lam / k
            cdf += p
        return k
    # PTRS (Hormann 1993), valid for lam >= 10.
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b_ = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b_
    inv_alpha = 1.1239 + 1.1328 / (b_ - 3.4)
    vr = 0.9277 - 3.6224 / (b_ - 2.0)
    while True:
        u = uniform(rng, b, s) - 0.5
        v = uniform(rng, b, s)
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b_) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return int(k)
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b_) <= (
            -lam + k * loglam - math.lgamma(k + 1.0)
        ):
            return int(k)
