"""From a Gymnasium space to a distribution kind, and from stored actions back to env actions.

Supported action spaces, so any Gymnasium env trains without code changes:

* ``Discrete(K)`` -> categorical;
* ``Box(low, high, (D,))`` with finite bounds -> squashed Gaussian (default) or Beta;
* ``Dict``/``Tuple`` of exactly one ``Discrete(K)`` and one 1-D ``Box(D)`` -> hybrid,
  factorized (``log pi = log pi_d + log pi_c``) or gated (the continuous parameters are
  conditioned on, and counted only for, the chosen discrete action);
* the standard *parameterised* space (Masson et al. 2016; gym-platform, gym-goal,
  gym-hybrid), ``Tuple(Discrete(K), Tuple(Box_1, ..., Box_K))`` or its ``Dict`` equivalent
  (an outer ``Dict`` of one ``Discrete`` and one ``Tuple``/``Dict`` of ``K`` Boxes): action
  ``k`` owns exactly ``Box_k`` (1-D, any size including 0, its own bounds). The ``K`` boxes are
  concatenated into one continuous vector of ``D = sum_k D_k`` dimensions (action ``k``'s
  parameters are ``x[off_k : off_k + D_k]``, :attr:`ActionSpec.segments`), which the env
  adapter splits back. Gated mode gives kind ``hybrid_parameterized``: only the chosen
  action's own dimensions count in log-prob, entropy and V-trace ratios. Factorized mode
  samples and counts all ``D`` dimensions (one joint Gaussian/Beta over every action's
  parameters), as for a single Box. With an inner ``Dict``, action ``k`` owns the ``k``-th
  entry in the space's own order (Gymnasium sorts a plain ``dict``'s keys).

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
    segments: tuple[int, ...] | None = None  # [K] parameter sizes D_k (parameterised spaces)
    param_container: Literal["tuple", "dict"] | None = None  # the inner container of the Boxes
    param_keys: tuple[Any, ...] | None = None  # [K] keys of the inner container

    @property
    def num_parts(self) -> int:
        return 2 if self.kind.startswith("hybrid") else 1

    @property
    def parameterized(self) -> bool:
        """Whether each discrete action owns its own parameter Box (see module docstring)."""
        return self.segments is not None

    def split_params(self, continuous: np.ndarray) -> Any:
        """``[N, D]`` concatenated parameters -> the inner Tuple/Dict of ``[N, D_k]`` arrays."""
        assert self.segments is not None and self.param_keys is not None
        parts = np.split(continuous, np.cumsum(self.segments)[:-1], axis=-1)
        if self.param_container == "dict":
            return dict(zip(self.param_keys, parts, strict=True))
        return tuple(parts)

    def to_env(self, env_action: torch.Tensor | HybridAction) -> Any:
        """A batched env action (numpy) from ``distribution.to_env(stored)`` tensors."""
        if isinstance(env_action, HybridAction):
            d = env_action.discrete.detach().cpu().numpy()
            x = env_action.continuous.detach().cpu().numpy().astype(np.float32)
            c = x if self.segments is None else self.split_params(x)
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
        items = _items(space)
        disc = [(k, s) for k, s in items if isinstance(s, gym.spaces.Discrete)]
        box = [(k, s) for k, s in items if isinstance(s, gym.spaces.Box)]
        nested = [(k, s) for k, s in items if isinstance(s, gym.spaces.Dict | gym.spaces.Tuple)]
        if len(items) != 2 or len(disc) != 1 or len(box) + len(nested) != 1:
            raise SpaceError(
                "hybrid action spaces must hold exactly one Discrete and one Box, or one "
                "Discrete(K) and one Tuple/Dict of K Boxes (a parameterised space: action k "
                f"owns Box k), got {space}"
            )
        (dk, ds) = disc[0]
        if int(ds.start) != 0:
            raise SpaceError(f"Discrete action spaces must start at 0, got start={ds.start}")
        container: Literal["dict", "tuple"] = (
            "dict" if isinstance(space, gym.spaces.Dict) else "tuple"
        )
        if nested:
            return _parameterized_spec(
                int(ds.n), dk, nested[0], container, continuous_kind, hybrid_mode
            )
        ck, cs = box[0]
        low, high = _box_bounds(cs, f"action space [{ck!r}]")
        kind: DistributionKind = "hybrid_gated" if hybrid_mode == "gated" else "hybrid_factorized"
        return ActionSpec(
            kind, int(ds.n), low.shape[0], low, high, container, (dk, ck), continuous_kind
        )
    raise SpaceError(
        f"unsupported action space {space}: use Discrete, a 1-D Box with finite bounds, or a "
        "Dict/Tuple of one Discrete and one Box, or Tuple(Discrete(K), Tuple(Box_1, ..., Box_K))"
    )


def _items(space: gym.spaces.Dict | gym.spaces.Tuple) -> list[tuple[Any, gym.Space[Any]]]:
    """``(key, subspace)`` pairs: names for a Dict, indices for a Tuple, in the space's order."""
    if isinstance(space, gym.spaces.Dict):
        return list(space.spaces.items())
    return list(enumerate(space.spaces))


def _parameterized_spec(
    num_actions: int,
    discrete_key: Any,
    params: tuple[Any, gym.spaces.Dict | gym.spaces.Tuple],
    container: Literal["dict", "tuple"],
    continuous_kind: ContinuousKind,
    hybrid_mode: HybridMode,
) -> ActionSpec:
    """The spec of a parameterised space: ``K`` Boxes, one per discrete action, concatenated."""
    pk, ps = params
    boxes = _items(ps)
    if len(boxes) != num_actions:
        raise SpaceError(
            f"action space [{pk!r}]: a parameterised space needs one Box per discrete action "
            f"(Discrete({num_actions}) -> {num_actions} Boxes), got {len(boxes)} entries"
        )
    lows, highs, sizes = [], [], []
    for key, box in boxes:
        if not isinstance(box, gym.spaces.Box):
            raise SpaceError(
                f"action space [{pk!r}][{key!r}]: parameters must be a 1-D Box (shape (0,) for "
                f"an action without parameters), got {box}"
            )
        low, high = _box_bounds(box, f"action space [{pk!r}][{key!r}]")
        lows.append(low)
        highs.append(high)
        sizes.append(int(low.shape[0]))
    if sum(sizes) == 0:
        raise SpaceError(
            f"action space [{pk!r}]: no discrete action has parameters; use Discrete({num_actions})"
        )
    kind: DistributionKind = (
        "hybrid_parameterized" if hybrid_mode == "gated" else "hybrid_factorized"
    )
    return ActionSpec(
        kind,
        num_actions,
        sum(sizes),
        np.concatenate(lows),
        np.concatenate(highs),
        container,
        (discrete_key, pk),
        continuous_kind,
        segments=tuple(sizes),
        param_container="dict" if isinstance(ps, gym.spaces.Dict) else "tuple",
        param_keys=tuple(k for k, _ in boxes),
    )


def obs_dim(space: gym.Space[Any]) -> int:
    """Size of the flattened observation vector (Box observations only)."""
    if not isinstance(space, gym.spaces.Box):
        raise SpaceError(
            f"unsupported observation space {space}: only Box observations are supported "
            "(wrap others with gymnasium.wrappers.FlattenObservation)"
        )
    return int(np.prod(space.shape))
