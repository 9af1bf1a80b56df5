"""Make a ``SAME_STEP`` vector env from a Gymnasium id or a ``module:factory`` import path.

* A registered id with a native vector entry point that supports ``SAME_STEP`` autoreset
  (``impala_hybrid/UAVNet-v0``) gets its batched implementation.
* Any other registered id (``CartPole-v1``, ``module:Env-v0``) is vectorised with
  Gymnasium's ``SyncVectorEnv``.
* ``package.module:factory`` names a callable ``factory(**env_kwargs) -> gymnasium.Env``,
  called once per env copy (in every actor process); ``SyncVectorEnv`` vectorises it. The
  working directory is put on ``sys.path`` (last, so it shadows nothing installed) before the
  import, so ``my_env:make`` finds ``./my_env.py`` whether the CLI runs as ``impala-hybrid``
  (whose ``sys.path`` lacks it) or ``python -m impala_hybrid.cli`` (whose has it).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv

import impala_hybrid  # noqa: F401  (registers our envs)


class EnvSpecError(ValueError):
    """An env id or factory path that cannot be resolved."""


def _factory(path: str) -> Any | None:
    """The callable ``module:attr`` names, or None if ``attr`` is not a module attribute."""
    module_name, _, attr = path.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise EnvSpecError(
            f"env {path!r}: cannot import module {module_name!r} ({e}); run from the "
            f"directory that holds {module_name.replace('.', '/')}.py or add it to PYTHONPATH"
        ) from e
    obj = getattr(module, attr, None)
    if obj is None:
        return None
    if not callable(obj):
        raise EnvSpecError(f"env {path!r}: {attr!r} is not callable")
    return obj


def make_vector_env(
    env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None
) -> VectorEnv:
    """A vector env of ``num_envs`` copies autoresetting in ``SAME_STEP`` mode."""
    kwargs = dict(env_kwargs or {})
    if num_envs < 1:
        raise EnvSpecError(f"num_envs = {num_envs} is invalid: must be >= 1")
    factory = _factory(env_id) if ":" in env_id else None
    if factory is not None:
        return gym.vector.SyncVectorEnv(
            [lambda: factory(**kwargs) for _ in range(num_envs)],
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as e:
        if ":" in env_id:  # module imported, attribute missing, and no such registered id
            module_name, _, attr = env_id.partition(":")
            raise EnvSpecError(
                f"env {env_id!r}: module {module_name!r} has no attribute {attr!r} (a "
                "factory(**env_kwargs) -> gymnasium.Env), nor is it a registered Gymnasium id"
            ) from e
        raise EnvSpecError(f"env {env_id!r} is not a registered Gymnasium id ({e})") from e
    env: VectorEnv | None = None
    if spec.vector_entry_point is not None:
        try:
            env = gym.make_vec(
                env_id, num_envs=num_envs, autoreset_mode=AutoresetMode.SAME_STEP, **kwargs
            )
        except TypeError:  # a native vector env without SAME_STEP (e.g. CartPole's)
            env = None
        if env is not None and env.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            env.close()
            env = None
    if env is None:
        env = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            **kwargs,
        )
    if env.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
        raise EnvSpecError(f"env {env_id!r}: its vector env does not autoreset in SAME_STEP mode")
    return env
