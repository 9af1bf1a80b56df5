"""``SB3Policy``: a trained Stable-Baselines3 model as a policy our evaluation code runs.

Our evaluation (``evaluation/rollout.py`` ``evaluate`` on the UAV env, with common random
numbers; ``evaluation/episodes.py`` ``evaluate_episodes`` on any other env) calls a policy as
``obs [N, ...] -> batched env action``, the interface of the classical policies in
``envs/heuristics.py`` and of ``evaluation.policy.TorchPolicy``. This adapter gives an SB3
model that interface, so a baseline is scored on the same held-out episodes by the same code
as every other row, never by SB3's ``evaluate_policy``: SB3 picks the greedy action
(``model.predict(deterministic=True)``: the Gaussian's mean, squashed for SAC, the actor's
output for TD3), and the relaxation decodes it for the whole batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from impala_hybrid.algos.sb3.relaxation import Relaxation
from impala_hybrid.threads import torch_threads


class SB3Policy:
    """Callable ``obs [N, ...] -> batched env action`` over an SB3 model (greedy by default).

    ``relaxation``: the one the model was trained through (None: the model acts in the env's
    own space). ``normalizer``: the ``VecNormalize`` it was trained behind (its observation
    statistics, frozen, scale what the model sees). Runs on ``threads`` torch threads (see
    :mod:`impala_hybrid.threads`).
    """

    def __init__(
        self,
        model: BaseAlgorithm,
        relaxation: Relaxation | None,
        *,
        normalizer: VecNormalize | None = None,
        deterministic: bool = True,
        threads: int = 1,
        name: str = "sb3",
    ) -> None:
        self.model = model
        self.relaxation = relaxation
        self.normalizer = normalizer
        self.deterministic = deterministic
        self.threads = threads
        self.name = name

    def __call__(self, obs: np.ndarray) -> Any:
        x: Any = np.asarray(obs, np.float32)
        if self.normalizer is not None:
            x = self.normalizer.normalize_obs(x)
        with torch_threads(self.threads):
            action, _ = self.model.predict(x, deterministic=self.deterministic)
        return self.relaxation.decode(action) if self.relaxation is not None else action
