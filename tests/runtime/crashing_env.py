"""An env factory for the Ray runtime tests: CartPole that raises after ``crash_after`` steps
of one env copy (imported by the Ray actors as ``tests.runtime.crashing_env:make``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym


class _Crash(gym.Wrapper):
    def __init__(self, env: gym.Env, crash_after: int) -> None:
        super().__init__(env)
        self.left = crash_after

    def step(self, action: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("boom: the env crashed")
        return self.env.step(action)


def make(crash_after: int) -> gym.Env:
    return _Crash(gym.make("CartPole-v1"), crash_after)
