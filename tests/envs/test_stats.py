"""Latency quantiles and CVaR from histograms against a reference that expands the samples."""

from __future__ import annotations

import numpy as np
import pytest

from impala_hybrid.envs.stats import latency_cvar, latency_quantiles


def reference_quantile(samples: np.ndarray, q: float) -> float:
    """min{x : F(x) >= q}, straight from the definition on sorted samples."""
    xs = np.sort(samples)
    n = len(xs)
    for i, x in enumerate(xs):
        if (i + 1) / n >= q - 1e-12:
            return float(x)
    return float(xs[-1])


def reference_cvar(samples: np.ndarray, alpha: float) -> float:
    """Mean of the worst (1 - alpha) probability mass, splitting the atom at the boundary."""
    xs = np.sort(samples)[::-1]
    mass = (1 - alpha) * len(xs)
    total, taken = 0.0, 0.0
    for x in xs:
        w = min(1.0, mass - taken)
        if w <= 0:
            break
        total += w * x
        taken += w
    return total / mass


@pytest.mark.parametrize("seed", range(5))
def test_against_sample_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    latency = rng.random(12) * 3
    hist = rng.integers(0, 6, size=(3, 12))
    qs = (0.5, 0.95, 0.99)
    got = latency_quantiles(hist, latency, qs)
    cvar = latency_cvar(hist, latency, 0.95)
    for n in range(3):
        samples = np.repeat(latency, hist[n])
        for j, q in enumerate(qs):
            assert got[n, j] == pytest.approx(reference_quantile(samples, q))
        assert cvar[n] == pytest.approx(reference_cvar(samples, 0.95))


def test_empty_histogram_gives_nan() -> None:
    out = latency_quantiles(np.zeros((1, 3)), np.array([0.1, 0.2, 0.3]), (0.5,))
    assert np.isnan(out).all()
    assert np.isnan(latency_cvar(np.zeros((1, 3)), np.array([0.1, 0.2, 0.3]), 0.9)).all()


def test_single_atom_and_alpha_zero_is_mean() -> None:
    lat = np.array([0.3, 0.1, 0.2])
    hist = np.array([[0, 4, 0]])
    assert latency_cvar(hist, lat, 0.95)[0] == pytest.approx(0.1)
    hist = np.array([[1, 1, 2]])
    assert latency_cvar(hist, lat, 0.0)[0] == pytest.approx((0.3 + 0.1 + 0.4) / 4)
    with pytest.raises(ValueError, match="alpha"):
        latency_cvar(hist, lat, 1.0)
