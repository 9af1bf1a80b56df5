"""``evaluate_episodes``: any env's greedy return, length and numeric episode-end info on fixed
seeds, without a bias towards short episodes; ``is_new_best``: ties go to the later one;
``paired_std``: the noise of a comparison on the same episodes."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from impala_hybrid.evaluation.episodes import evaluate_episodes
from impala_hybrid.evaluation.selection import is_new_best, judge, paired_std


class _Coin(gym.Env[np.ndarray, int]):
    """Episodes of a seeded random length; a failure ends after 1 step, a success after 5.
    Info at the end: ``success`` (float), ``tries`` (int), ``label`` (str, skipped)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._win = bool(self.np_random.random() < 0.5)
        self._t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._t += 1
        done = self._t >= (5 if self._win else 1)
        info = {"success": float(self._win), "tries": 3, "label": "x"} if done else {"mid": 1.0}
        return np.zeros(1, np.float32), 1.0, done, False, info


def coin() -> _Coin:
    return _Coin()


def _always_zero(obs: np.ndarray) -> np.ndarray:
    return np.zeros(len(obs), np.int64)


def test_returns_lengths_and_info_per_episode() -> None:
    stats = evaluate_episodes(_always_zero, f"{__name__}:coin", 40, 3, num_envs=4)
    assert stats.returns.shape == stats.lengths.shape == (40,)
    np.testing.assert_array_equal(stats.returns, stats.lengths)  # reward 1 per step
    assert set(stats.info) == {"success", "tries"}  # numeric keys at episode end only
    np.testing.assert_array_equal(stats.info["success"], stats.lengths == 5)
    summary = stats.summary()
    assert summary["info"]["tries"] == 3.0 and summary["episodes"] == 40
    again = evaluate_episodes(_always_zero, f"{__name__}:coin", 40, 3, num_envs=4)
    np.testing.assert_array_equal(again.returns, stats.returns)  # fixed seeds


def test_no_bias_towards_short_episodes() -> None:
    """Counting the first episodes to *finish* made failures (1 step) outnumber successes
    (5 steps): with 8 envs and 8 episodes the success rate came out 0.17 on these seeds, not
    the true 0.5 (this gives 0.48)."""
    rates = [
        evaluate_episodes(_always_zero, f"{__name__}:coin", 8, s, num_envs=8).summary()["info"][
            "success"
        ]
        for s in range(40)
    ]
    assert 0.4 <= float(np.mean(rates)) <= 0.6, np.mean(rates)


def test_splits_use_disjoint_seeds() -> None:
    a = evaluate_episodes(_always_zero, f"{__name__}:coin", 64, 0, num_envs=8, split="eval")
    b = evaluate_episodes(_always_zero, f"{__name__}:coin", 64, 0, num_envs=8, split="validation")
    assert not np.array_equal(a.lengths, b.lengths)
    with pytest.raises(ValueError, match="split"):
        evaluate_episodes(_always_zero, f"{__name__}:coin", 4, 0, num_envs=2, split="test")


def test_best_checkpoint_prefers_the_later_one_on_ties_within_noise() -> None:
    assert is_new_best(0.5, 0.1, 32, None)
    assert is_new_best(1.0, 0.0, 32, 1.0)  # a plateau: the later checkpoint
    assert is_new_best(0.99, 0.2, 32, 1.0)  # within one standard error (0.035)
    assert not is_new_best(0.9, 0.2, 32, 1.0)
    assert not is_new_best(float("nan"), 0.1, 32, 1.0) and not is_new_best(None, 0.1, 32, 1.0)


def test_paired_noise_is_the_spread_of_the_per_episode_differences() -> None:
    peak = [100.0, 0.0, 50.0, 10.0]  # episodes that differ a lot between themselves
    lower = [98.0, -2.0, 48.0, 8.0]  # 2 below on every episode: a sure loss
    assert paired_std(lower, peak) == 0.0
    assert not is_new_best(np.mean(lower), paired_std(lower, peak), 4, np.mean(peak))
    # unpaired, the same evaluation is a tie within noise (std 44.6, standard error 22)
    assert is_new_best(np.mean(lower), float(np.std(lower, ddof=1)), 4, np.mean(peak))
    mixed = [103.0, -3.0, 50.0, 10.0]  # differences 3, -3, 0, 0: mean 0, std sqrt(6)
    assert paired_std(mixed, peak) == pytest.approx(np.sqrt(6.0))
    assert paired_std([1.0], [2.0]) == 0.0
    with pytest.raises(ValueError, match=r"shapes \(3,\) and \(4,\)"):
        paired_std([1.0, 2.0, 3.0], peak)


def test_judge_keeps_the_best_mean_as_the_reference() -> None:
    peak = [100.0, 0.0, 50.0, 10.0]
    assert judge("paired", 40.0, 44.0, 4, None, peak, None) == (True, 40.0, peak)
    # a tie within paired noise replaces the checkpoint but not the reference
    tie = [101.0, -1.0, 50.0, 9.0]  # differences 1, -1, 0, -1: mean -0.25, std 0.96
    assert judge("paired", 39.75, 44.0, 4, 40.0, tie, peak) == (True, 40.0, peak)
    assert judge("paired", 38.0, 44.0, 4, 40.0, [p - 2.0 for p in peak], peak)[0] is False
    assert judge("mean", 38.0, 44.0, 4, 40.0, [p - 2.0 for p in peak], peak)[0] is True
    # without per-episode returns, paired falls back to the unpaired standard error
    assert judge("paired", 38.0, 44.0, 4, 40.0, None, peak) == (True, 40.0, peak)
    # nor are evaluations over other episodes paired (an array is taken as a sequence)
    assert judge("paired", 38.0, 44.0, 3, 40.0, np.array([98.0, -2.0, 48.0]), peak)[0] is True
    assert judge("paired", 38.0, 44.0, 4, 40.0, np.array(peak) - 2.0, peak)[0] is False
    with pytest.raises(ValueError, match="selection = 'max' is invalid"):
        judge("max", 38.0, 44.0, 4, 40.0)
