# ruff: noqa: E402  (the imports below need SB3; require() first says which extra has it)
"""Stable-Baselines3 baselines (A2C, PPO, SAC, TD3) on our envs, evaluated by our code.

``relaxation.py`` (hybrid action -> one Box), ``vec_env.py`` (our vector env as an SB3
``VecEnv``), ``config.py`` (``SB3Config`` and the RL Zoo hyperparameters), ``train.py``
(``train_sb3``, ``load_sb3``), ``policy.py`` (``SB3Policy`` for our evaluation).

Stable-Baselines3 is the optional ``baselines`` extra (in ``dev``, so ``make setup`` has it);
without it, importing this package says which extra to install.
"""

from impala_hybrid.extras import require

require("stable_baselines3", extra="baselines")

from impala_hybrid.algos.sb3.config import SB3Config, zoo_preset
from impala_hybrid.algos.sb3.policy import SB3Policy
from impala_hybrid.algos.sb3.relaxation import Relaxation, RelaxationError, RelaxedActionWrapper
from impala_hybrid.algos.sb3.train import SB3Run, load_sb3, train_sb3
from impala_hybrid.algos.sb3.vec_env import RelaxedVecEnv

__all__ = [
    "Relaxation",
    "RelaxationError",
    "RelaxedActionWrapper",
    "RelaxedVecEnv",
    "SB3Config",
    "SB3Policy",
    "SB3Run",
    "load_sb3",
    "train_sb3",
    "zoo_preset",
]
