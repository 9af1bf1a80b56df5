"""From a Gymnasium space to a distribution kind, and from stored actions back to env actions.

Supported action spaces, so any Gymnasium env trains without code changes:

* ``Discrete(K)`` -> categorical;
* ``Box(low, high, (D,))`` with finite bounds -> squashed Gaussian (default) or Beta;
* ``Dict``/``Tuple`` of exactly one ``Discrete(K)`` and one 1-D ``Box(D)`` -> hybrid,
  factorized (``log pi = log pi_d + log pi_c``) or gated (the continuous parameters are
  conditioned on, and counted only for, the chosen discrete action).

Observations: any ``Box`` (flattened to a vector). Anything else gets an error that says what
is supported, at construction time, not inside a training step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from impala_hybrid.models.distributions import DistributionKind, HybridAction

ContinuousKind = Literal["squashed_gaussian", "beta"]
HybridMode = Literal["factorized", "gated"]


class SpaceError(ValueError):
    """An observation or action space this project cannot handle."""


@dataclasses.dataclass(frozen=True)
class ActionSpec:
    """What the policy head must produce and how its actions map to the env's."""

    kind: DistributionKind
    num_actions: int  # K of the discrete part (0 if none)
    action_dim: int  # D of the continuous part (0 if none)
    low: np.ndarray | None  # [D] bounds of the continuous part
    high: np.ndarray | None
    container: Literal["none", "dict", "tuple"]
    keys: tuple[Any, Any] | None  # (discrete key, continuous key) for dict/tuple spaces
    continuous_kind: ContinuousKind

    @property
    def num_parts(self) -> int:
        return 2 if self.kind.startswith("hybrid") else 1

    def to_env(self, env_action: torch.Tensor | HybridAction) -> Any:
        """A batched env action (numpy) from ``distribution.to_env(stored)`` tensors."""
        if isinstance(env_action, HybridAction):
            d = env_action.discrete.detach().cpu().numpy()
            c = env_action.continuous.detach().cpu().numpy().astype(np.float32)
            assert self.keys is not None
            if self.container == "dict":
                return {self.keys[0]: d, self.keys[1]: c}
            parts: list[Any] = [None, None]
            parts[self.keys[0]], parts[self.keys[1]] = d, c
            return tuple(parts)
        a = env_action.detach().cpu().numpy()
        return a.astype(np.float32) if a.dtype.kind == "f" else a


def _box_bounds(space: gym.spaces.Box, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(space.shape) != 1:
        raise SpaceError(f"{where}: Box actions must be 1-D, got shape {space.shape}")
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    if (np.isfinite(low) & np.isfinite(high)).all() and not (high > low).all():
        raise SpaceError(
            f"{where}: Box action bounds need low < high in every dimension "
            f"(got low={low.tolist()}, high={high.tolist()})"
        )
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise SpaceError(
            f"{where}: Box action bounds must be finite for a bounded policy "
            f"(got low={low.tolist()}, high={high.tolist()}); wrap the env with "
            "gymnasium.wrappers.RescaleAction or ClipAction to give it bounds"
        )
    return low, high


def action_spec(
    space: gym.Space[Any],
    continuous_kind: ContinuousKind = "squashed_gaussian",
    hybrid_mode: HybridMode = "factorized",
) -> ActionSpec:
    """The :class:`ActionSpec` for a single-env action space (see module docstring)."""
    if isinstance(space, gym.spaces.Discrete):
        if int(space.start) != 0:
            raise SpaceError(f"Discrete action spaces must start at 0, got start={space.start}")
        return ActionSpec("categorical", int(space.n), 0, None, None, "none", None, continuous_kind)
    if isinstance(space, gym.spaces.Box):
        low, high = _box_bounds(space, "action space")
        return ActionSpec(
            continuous_kind, 0, low.shape[0], low, high, "none", None, continuous_kind
        )
    if isinstance(space, gym.spaces.Dict | gym.spaces.Tuple):
        items = (
            list(space.spaces.items())
            if isinstance(space, gym.spaces.Dict)
            else list(enumerate(space.spaces))
        )
        disc = [(k, s) for k, s in items if isinstance(s, gym.spaces.Discrete)]
        box = [(k, s) for k, s in items if isinstance(s, gym.spaces.Box)]
        if len(items) != 2 or len(disc) != 1 or len(box) != 1:
            raise SpaceError(
                f"hybrid action spaces must hold exactly one Discrete and one Box, got {space}"
            )
        (dk, ds), (ck, cs) = disc[0], box[0]
        if int(ds.start) != 0:
            raise SpaceError(f"Discrete action spaces must start at 0, got start={ds.start}")
        low, high = _box_bounds(cs, f"action space [{ck!r}]")
        kind: DistributionKind = "hybrid_gated" if hybrid_mode == "gated" else "hybrid_factorized"
        container: Literal["dict", "tuple"] = (
            "dict" if isinstance(space, gym.spaces.Dict) else "tuple"
        )
        return ActionSpec(
            kind, int(ds.n), low.shape[0], low, high, container, (dk, ck), continuous_kind
        )
    raise SpaceError(
        f"unsupported action space {space}: use Discrete, a 1-D Box with finite bounds, or a "
        "Dict/Tuple of one Discrete and one Box"
    )


def obs_dim(space: gym.Space[Any]) -> int:
    """Size of the flattened observation vector (Box observations only)."""
    if not isinstance(space, gym.spaces.Box):
        raise SpaceError(
            f"unsupported observation space {space}: only Box observations are supported "
            "(wrap others with gymnasium.wrappers.FlattenObservation)"
        )
    return int(np.prod(space.shape))
