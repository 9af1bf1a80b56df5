"""Light inference: the deterministic policy in plain NumPy, and loading deployed artifacts.

Why this exists. The first user needs a decision in well under a millisecond at batch 1 (one
drone controller, one observation; target p99 <= 50 us on one core). The UAV network is tiny
(29-256-256, ~75k weights): its two matrix-vector products take ~5 us. PyTorch eager spends
the rest on dispatch: each op passes the dispatcher, autograd bookkeeping and a tensor
allocation (~3 us each here), and one :class:`~impala_hybrid.evaluation.policy.TorchPolicy`
decision runs ~70 top-level ATen ops (trunk, heads, the distribution objects' bound checks,
``mode``, ``to_env``, conversions). Measured on one core of the 2-core dev VM (``make bench``,
section ``inference`` of ``docs/benchmarks.md``, end to end from a NumPy observation to the
env action dict), p50 / p99: torch eager ~200 / 430-620 us, TorchScript ~50 / 120-170 us,
ONNX Runtime ~23 / 50-75 us, this module ~15 / 25-40 us (tails vary with load on the VM).
:class:`NumpyPolicy` does the same computation in ~15 NumPy calls of well under a microsecond
of overhead each, because everything that can be decided once is decided at construction:

* weights are copied into contiguous float32 arrays, transposed to ``[in, out]``, with the bias
  appended as a last row and a constant 1 appended to every layer input, so a linear layer is
  one ``np.dot`` into a preallocated buffer (at batch 1 on 1-D rows: BLAS gemv, not gemm);
* a LayerNorm's mean subtraction is folded into the preceding linear layer (``y - mean(y) =
  (W - mean_rows(W)) x + (b - mean(b))``); with ReLU, a LayerNorm scale ``gamma > 0`` is folded
  into the next layer (``relu(gamma n + beta) = gamma relu(n + beta / gamma)``), so at batch 1
  a LayerNorm + ReLU is one ``np.dot`` for the variance, a Python scalar and three array ops;
* the LSTM's four gate products are one ``np.dot`` on ``[x, h, 1]``; the sigmoid gates are
  written as ``0.5 tanh(x / 2) + 0.5`` with the ``1/2`` folded into their weights, so all gates
  take one ``np.tanh``; the new ``h`` is written straight into the next step's input buffer;
* the head keeps only the parameters the deterministic action reads (no log-std, no value);
  the squash to ``[low, high]`` is ``mid + half * tanh(u)``, and its clamp is skipped where
  monotone rounding proves it cannot bind;
* buffers are allocated once per batch size; a call allocates only its returned action arrays
  (fresh arrays, so a caller may keep them across calls).

A policy whose spec samples the discrete choice (``discrete_choice = "sample"``) adds Gumbel
noise from its seeded generator to the logits before the argmax (:func:`gumbel_noise`, a few
array ops: ~8 us more per decision at batch 1, ``docs/benchmarks.md``), which is
:meth:`ActionDistribution.choice_mode` with the same noise.
The action equals ``model.distribution(params).mode()`` mapped by ``to_env``: the discrete index
exactly (barring logits tied to float32 rounding), the continuous part within 1e-5;
``tests/deploy`` checks every action kind, with and without an LSTM core.

This module imports no torch at import time: :func:`load_policy` reads the deployable
artifacts that need no training code (``npz`` with NumPy only, ``onnx`` with onnxruntime) and
hands TorchScript artifacts to :mod:`impala_hybrid.deploy.export`. Every artifact comes with a
JSON sidecar (``<artifact>.json``, :class:`PolicySpec` plus the artifact's SHA-256), so a loaded
policy builds the env's action structure without the training code's objects, and nothing is
ever unpickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from impala_hybrid.models.actor_critic import ActorCritic

__all__ = [
    "SIDECAR_FORMAT",
    "SIDECAR_VERSION",
    "ArtifactError",
    "DeployedPolicy",
    "NumpyPolicy",
    "OnnxPolicy",
    "PolicySpec",
    "UnsupportedModelError",
    "file_sha256",
    "gumbel_noise",
    "load_policy",
    "read_sidecar",
    "sidecar_path",
]

SIDECAR_FORMAT = "impala_hybrid.deployed_policy"
"""The ``format`` field of every sidecar; anything else is a foreign file."""
SIDECAR_VERSION = 1
"""Schema version of the sidecar; a newer one is refused rather than misread."""

# The kinds of models.distributions.DistributionKind, spelled out: this module imports no torch.
HYBRID_KINDS = ("hybrid_factorized", "hybrid_gated", "hybrid_parameterized")
KINDS = ("categorical", "squashed_gaussian", "beta", *HYBRID_KINDS)
CONTINUOUS_PARAMS = {"squashed_gaussian": ("mean", "log_std"), "beta": ("raw_alpha", "raw_beta")}
ACTIVATIONS = ("relu", "tanh", "silu", "elu")
CONTAINERS = ("none", "dict", "tuple")

_F32 = np.float32
_ZERO = np.float32(0.0)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_TWO = np.float32(2.0)


_OPTIONAL = ("segments", "param_container", "param_keys", "obs_norm_clip", "discrete_choice")
"""Sidecar fields written only where set, so sidecars of policies without them are unchanged
and sidecars written before they existed still load."""
OBS_NORM_EPS = 1e-8  # as models.normalization.OBS_NORM_EPS (this module imports no torch)
DISCRETE_CHOICES = ("mode", "sample")


def gumbel_noise(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Standard Gumbel noise ``[n, k]`` float32 from ``rng``: ``-log(-log(u))`` with ``u``
    uniform in ``(0, 1)``. ``argmax_k (log pi(k) + noise_k)`` is then a draw from ``pi`` (the
    Gumbel-max trick): how a policy with ``discrete_choice = "sample"`` takes its discrete
    choice, the same in training-side evaluation (``TorchPolicy``) and in every deployed
    format, so one seed gives one sequence of actions everywhere."""
    u = rng.random((n, k))
    np.maximum(u, np.finfo(np.float64).tiny, out=u)  # random() is in [0, 1)
    return (-np.log(-np.log(u))).astype(_F32)


class ArtifactError(ValueError):
    """A deployed artifact that is missing, corrupt, foreign or of an unknown schema."""


class UnsupportedModelError(ValueError):
    """A model this deployment path cannot reproduce exactly (says what is supported)."""


# --------------------------------------------------------------------------------------------
# What a deployed policy is: architecture + action space, as plain JSON
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """Everything needed to run a deployed policy and build the env action, JSON-serialisable.

    Mirrors :class:`~impala_hybrid.models.spaces.ActionSpec` (action side) and
    :class:`~impala_hybrid.models.actor_critic.ModelConfig` (network side) without importing
    them, so a deployment host needs neither the training code's classes nor torch.
    """

    obs_dim: int
    kind: str
    continuous_kind: str
    num_actions: int  # K of the discrete part (0 if none)
    action_dim: int  # D of the continuous part (0 if none)
    low: tuple[float, ...] | None  # [D] bounds of the continuous part
    high: tuple[float, ...] | None
    container: str  # "none", "dict" or "tuple"
    keys: tuple[str | int, str | int] | None  # (discrete key, continuous key)
    hidden: tuple[int, ...]
    layer_norm: bool
    layer_norm_eps: float
    activation: str
    lstm_size: int
    model_config: dict[str, Any] = dataclasses.field(default_factory=dict)  # for reference
    # Parameterised spaces (``Tuple(Discrete(K), Tuple(Box_1..Box_K))``): the sizes D_k of the
    # concatenated continuous part, and the inner container and keys it is split back into.
    segments: tuple[int, ...] | None = None
    param_container: str | None = None  # "tuple" or "dict"
    param_keys: tuple[str | int, ...] | None = None
    # Observation normalisation (ModelConfig.obs_norm): the clip of the normalised
    # observations; None without. The statistics are weights (obs_norm.mean, obs_norm.var).
    obs_norm_clip: float | None = None
    # How the discrete choice is taken: "mode" (argmax of the logits) or "sample" (argmax of
    # the logits plus Gumbel noise: a draw from the policy; the graph then takes the noise
    # as its input ``gumbel [N, K]``). Written to the sidecar only for "sample".
    discrete_choice: str | None = None

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ArtifactError("invalid policy spec: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        p: list[str] = []
        if self.kind not in KINDS:
            p.append(f"kind {self.kind!r} is not one of {KINDS}")
        if self.continuous_kind not in CONTINUOUS_PARAMS:
            p.append(
                f"continuous_kind {self.continuous_kind!r} is not one of {tuple(CONTINUOUS_PARAMS)}"
            )
        if self.obs_dim < 1:
            p.append(f"obs_dim = {self.obs_dim} must be >= 1")
        if self.has_discrete and self.num_actions < 1:
            p.append(f"{self.kind} needs num_actions >= 1, got {self.num_actions}")
        if self.has_continuous:
            if self.action_dim < 1:
                p.append(f"{self.kind} needs action_dim >= 1, got {self.action_dim}")
            if self.low is None or self.high is None:
                p.append(f"{self.kind} needs low/high bounds")
            else:
                lo, hi = np.asarray(self.low), np.asarray(self.high)
                if lo.shape != (self.action_dim,) or hi.shape != (self.action_dim,):
                    p.append(f"low/high must have {self.action_dim} entries")
                elif not (np.isfinite(lo).all() and np.isfinite(hi).all() and (hi > lo).all()):
                    p.append("low/high must be finite with low < high")
        if self.container not in CONTAINERS:
            p.append(f"container {self.container!r} is not one of {CONTAINERS}")
        hybrid = self.kind.startswith("hybrid")
        if hybrid != (self.container in ("dict", "tuple")):
            p.append(f"kind {self.kind} does not fit container {self.container!r}")
        if hybrid:
            if self.keys is None or len(self.keys) != 2:
                p.append("a hybrid action needs keys (discrete key, continuous key)")
            elif self.container == "tuple" and set(self.keys) != {0, 1}:
                p.append(f"tuple keys must be (0, 1) or (1, 0), got {self.keys}")
        if self.kind == "hybrid_parameterized" and self.segments is None:
            p.append("kind hybrid_parameterized needs segments")
        if self.segments is not None:
            if not self.kind.startswith("hybrid") or self.kind == "hybrid_gated":
                p.append(f"segments do not fit kind {self.kind}")
            if len(self.segments) != self.num_actions or any(d < 0 for d in self.segments):
                p.append(f"segments {self.segments} must be {self.num_actions} sizes >= 0")
            if sum(self.segments) != self.action_dim:
                p.append(f"segments {self.segments} must sum to action_dim = {self.action_dim}")
            if self.param_container not in ("tuple", "dict"):
                p.append(f"param_container {self.param_container!r} is not 'tuple' or 'dict'")
            if self.param_keys is None or len(self.param_keys) != len(self.segments):
                p.append("param_keys must name one entry per segment")
        if self.discrete_choice is not None:
            if self.discrete_choice not in DISCRETE_CHOICES:
                p.append(
                    f"discrete_choice {self.discrete_choice!r} is not one of {DISCRETE_CHOICES}"
                )
            elif self.discrete_choice == "sample" and not self.has_discrete:
                p.append(f"discrete_choice 'sample' needs a discrete part; kind is {self.kind}")
        if self.obs_norm_clip is not None and not self.obs_norm_clip > 0:
            p.append(f"obs_norm_clip = {self.obs_norm_clip} must be > 0")
        if not self.hidden or any(h < 1 for h in self.hidden):
            p.append(f"hidden = {self.hidden} must be non-empty positive widths")
        if self.activation not in ACTIVATIONS:
            p.append(f"activation {self.activation!r} is not one of {ACTIVATIONS}")
        if self.lstm_size < 0:
            p.append(f"lstm_size = {self.lstm_size} must be >= 0")
        if not self.layer_norm_eps > 0:
            p.append(f"layer_norm_eps = {self.layer_norm_eps} must be > 0")
        return p

    @property
    def has_discrete(self) -> bool:
        return self.kind == "categorical" or self.kind.startswith("hybrid")

    @property
    def has_continuous(self) -> bool:
        return self.kind != "categorical"

    @property
    def recurrent(self) -> bool:
        return self.lstm_size > 0

    @property
    def samples_choice(self) -> bool:
        """Whether the discrete choice is drawn (``discrete_choice = "sample"``)."""
        return self.discrete_choice == "sample"

    @property
    def core_width(self) -> int:
        """Width of the features the heads read: the LSTM's, else the last trunk layer's."""
        return self.lstm_size if self.recurrent else self.hidden[-1]

    def param_layout(self) -> list[tuple[str, tuple[int, ...]]]:
        """The policy head's raw parameters in output order (as ``param_shapes`` lists them)."""
        layout: list[tuple[str, tuple[int, ...]]] = []
        if self.has_discrete:
            layout.append(("logits", (self.num_actions,)))
        if self.has_continuous:
            cont = self.kind if self.kind in CONTINUOUS_PARAMS else self.continuous_kind
            event = (
                (self.num_actions, self.action_dim)
                if self.kind == "hybrid_gated"
                else (self.action_dim,)
            )
            layout += [(name, event) for name in CONTINUOUS_PARAMS[cont]]
        return layout

    @property
    def input_names(self) -> list[str]:
        """Inputs of an exported graph: ``obs`` (+ the Gumbel noise ``gumbel [N, K]`` of a
        sampled choice) (+ the LSTM state ``h``, ``c``)."""
        names = ["obs", "gumbel"] if self.samples_choice else ["obs"]
        return names + (["h", "c"] if self.recurrent else [])

    @property
    def output_names(self) -> list[str]:
        """Outputs of an exported graph, in order: ``discrete`` and/or ``continuous`` (env
        units), then the next LSTM state ``h_out``, ``c_out``."""
        names = ["discrete"] if self.has_discrete else []
        names += ["continuous"] if self.has_continuous else []
        return names + (["h_out", "c_out"] if self.recurrent else [])

    @property
    def bounded_kind(self) -> str:
        """The continuous part's distribution (``squashed_gaussian`` or ``beta``)."""
        return self.kind if self.kind in CONTINUOUS_PARAMS else self.continuous_kind

    def env_action(self, discrete: np.ndarray | None, continuous: np.ndarray | None) -> Any:
        """The batched env action from the discrete index ``[N]`` and continuous part
        ``[N, D]`` (env units): what :meth:`ActionSpec.to_env` returns for the same action."""
        if self.container == "none":
            return discrete if self.kind == "categorical" else continuous
        assert self.keys is not None
        params: Any = continuous
        if self.segments is not None and continuous is not None:
            assert self.param_keys is not None
            ends = np.cumsum(self.segments)
            split = np.split(continuous, ends[:-1], axis=-1)
            params = (
                dict(zip(self.param_keys, split, strict=True))
                if self.param_container == "dict"
                else tuple(split)
            )
        if self.container == "dict":
            return {self.keys[0]: discrete, self.keys[1]: params}
        parts: list[Any] = [None, None]
        parts[int(self.keys[0])], parts[int(self.keys[1])] = discrete, params
        return tuple(parts)

    def unbatch(self, action: Any) -> Any:
        """Row 0 of a batched env action from :meth:`env_action` (what one observation gets):
        the discrete index as a NumPy integer, the continuous part as ``[D]`` (each action's
        own parameters as ``[D_k]`` for a parameterised space)."""
        if isinstance(action, dict):
            return {k: self.unbatch(v) for k, v in action.items()}
        if isinstance(action, tuple):
            return tuple(self.unbatch(v) for v in action)
        return action[0]

    def to_json(self) -> dict[str, Any]:
        """The sidecar's ``policy`` entry; the parameterised-space fields only where set, so
        other policies' sidecars are unchanged."""
        data = dataclasses.asdict(self)
        for name in _OPTIONAL:
            if data[name] is None:
                del data[name]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicySpec:
        """Parse and check a sidecar's ``policy`` entry (problems: :class:`ArtifactError`)."""
        if not isinstance(data, Mapping):
            raise ArtifactError(f"policy spec must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(data) - {"model_config", *_OPTIONAL})
        if missing:
            raise ArtifactError(f"policy spec lacks field(s) {missing}")
        try:
            keys = data["keys"]
            return cls(
                obs_dim=_as_int(data["obs_dim"]),
                kind=str(data["kind"]),
                continuous_kind=str(data["continuous_kind"]),
                num_actions=_as_int(data["num_actions"]),
                action_dim=_as_int(data["action_dim"]),
                low=None if data["low"] is None else tuple(float(v) for v in data["low"]),
                high=None if data["high"] is None else tuple(float(v) for v in data["high"]),
                container=str(data["container"]),
                keys=None if keys is None else (_as_key(keys[0]), _as_key(keys[1])),
                hidden=tuple(_as_int(h) for h in data["hidden"]),
                layer_norm=bool(data["layer_norm"]),
                layer_norm_eps=float(data["layer_norm_eps"]),
                activation=str(data["activation"]),
                lstm_size=_as_int(data["lstm_size"]),
                model_config=dict(data.get("model_config") or {}),
                # absent in sidecars written before parameterised spaces existed
                segments=_opt_tuple(data.get("segments"), _as_int),
                param_container=(
                    None if data.get("param_container") is None else str(data["param_container"])
                ),
                param_keys=_opt_tuple(data.get("param_keys"), _as_key),
                obs_norm_clip=(
                    None if data.get("obs_norm_clip") is None else float(data["obs_norm_clip"])
                ),
                discrete_choice=(
                    None if data.get("discrete_choice") is None else str(data["discrete_choice"])
                ),
            )
        except (TypeError, ValueError, IndexError, KeyError) as e:
            if isinstance(e, ArtifactError):
                raise
            raise ArtifactError(f"malformed policy spec: {e}") from e

    @classmethod
    def from_model(cls, model: ActorCritic, discrete_choice: str = "mode") -> PolicySpec:
        """The spec of an ``ActorCritic``, after checking that its layers are the ones this
        module reproduces (a modified network would otherwise deploy silently wrong);
        ``discrete_choice``: ``"mode"`` or ``"sample"`` (see the field)."""
        import torch
        from torch import nn

        from impala_hybrid.models.actor_critic import ACTIVATIONS as TORCH_ACTIVATIONS
        from impala_hybrid.models.zones import dense_copy

        model = dense_copy(model)  # a zone-tied network as the dense layers it computes
        cfg = model.config
        action = model.action
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                raise UnsupportedModelError(
                    f"deployment needs float32 weights, {name} is {t.dtype}; call model.float()"
                )
        expected: list[type[nn.Module]] = []
        for _ in cfg.hidden:
            expected += [nn.Linear, *([nn.LayerNorm] if cfg.layer_norm else [])]
            expected.append(TORCH_ACTIVATIONS[cfg.activation])
        got = [type(m) for m in model.trunk]
        if got != expected:
            raise UnsupportedModelError(
                f"trunk layers {[t.__name__ for t in got]} differ from what ModelConfig describes "
                f"({[t.__name__ for t in expected]}); only the stock ActorCritic trunk is supported"
            )
        eps = 1e-5
        for m in model.trunk:
            if isinstance(m, nn.LayerNorm):
                if not (m.elementwise_affine and m.bias is not None):
                    raise UnsupportedModelError("LayerNorm without affine weight and bias")
                eps = float(m.eps)
            if isinstance(m, nn.ELU) and m.alpha != 1.0:
                raise UnsupportedModelError(f"ELU alpha must be 1.0, got {m.alpha}")
        if model.lstm is not None and (model.lstm.bias_ih is None or model.lstm.bias_hh is None):
            raise UnsupportedModelError("LSTMCell without biases")
        keys = action.keys
        all_keys = (*(keys or ()), *(action.param_keys or ()))
        if not all(isinstance(k, str | int) and not isinstance(k, bool) for k in all_keys):
            raise UnsupportedModelError(
                f"action keys must be str (Dict) or int (Tuple) to be saved as JSON, got {all_keys}"
            )
        spec = cls(
            obs_dim=int(model.obs_dim),
            kind=str(action.kind),
            continuous_kind=str(action.continuous_kind),
            num_actions=int(action.num_actions),
            action_dim=int(action.action_dim),
            low=None if action.low is None else tuple(float(v) for v in action.low),
            high=None if action.high is None else tuple(float(v) for v in action.high),
            container=str(action.container),
            keys=None if keys is None else (keys[0], keys[1]),
            hidden=tuple(int(h) for h in cfg.hidden),
            layer_norm=bool(cfg.layer_norm),
            layer_norm_eps=eps,
            activation=str(cfg.activation),
            lstm_size=int(cfg.lstm_size),
            model_config=json.loads(json.dumps(dataclasses.asdict(cfg))),
            segments=action.segments,
            param_container=action.param_container,
            param_keys=action.param_keys,
            obs_norm_clip=None if model.obs_norm is None else float(model.obs_norm.clip),
            discrete_choice=None if discrete_choice == "mode" else discrete_choice,
        )
        layout = {name: shape for name, shape in spec.param_layout()}
        if layout != {k: tuple(v) for k, v in model.shapes.items()}:
            raise UnsupportedModelError(
                f"policy head layout {model.shapes} differs from the expected {layout}"
            )
        return spec


def _as_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ArtifactError(f"expected an integer, got {v!r}")
    return v


def _opt_tuple(v: Any, item: Callable[[Any], Any]) -> Any:
    """``None`` stays ``None``; a JSON list becomes a tuple of checked items."""
    if v is None:
        return None
    if not isinstance(v, list | tuple):
        raise ArtifactError(f"expected a list, got {v!r}")
    return tuple(item(x) for x in v)


def _as_key(v: Any) -> str | int:
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise ArtifactError(f"action keys must be strings or integers, got {v!r}")
    return v


# --------------------------------------------------------------------------------------------
# Deployed policies: the TorchPolicy interface over any runtime
# --------------------------------------------------------------------------------------------


def _as_obs(obs: Any, obs_dim: int) -> tuple[np.ndarray, bool]:
    """``(x [N, obs_dim], single)``: a batch ``obs [N, ...]`` as is (no copy when already
    float32), or one observation ``[obs_dim]`` as a batch of one with ``single`` True.

    Why a 1-D array is one observation: a controller deciding for one drone holds exactly
    that, and reading it as ``obs_dim`` observations of one feature each (as before) failed
    with a message about "1 features" that pointed nowhere near the cause.
    """
    x = obs if type(obs) is np.ndarray else np.asarray(obs)
    if x.ndim == 1:
        if x.shape[0] != obs_dim:
            raise ValueError(
                f"one observation has {x.shape[0]} features, the policy expects {obs_dim} "
                f"(pass one observation as [{obs_dim}] or a batch as [N, {obs_dim}])"
            )
        return x.reshape(1, obs_dim), True
    if x.ndim == 0:
        raise ValueError(
            f"observation is a scalar; pass one observation as [{obs_dim}] or a batch as "
            f"[N, {obs_dim}]"
        )
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1)
    if x.shape[1] != obs_dim:
        raise ValueError(
            f"observations have {x.shape[1]} features, the policy expects {obs_dim} "
            f"(pass one observation as [{obs_dim}] or a batch as [N, {obs_dim}])"
        )
    return x, False


def _check_done(done: Any, n: int) -> np.ndarray:
    done = np.asarray(done, bool)
    if n == 1 and done.shape == ():  # after a single observation: one flag
        done = done.reshape(1)
    if n > 0 and done.shape != (n,):
        raise ValueError(f"done must have shape ({n},) like the last batch, got {done.shape}")
    return done


class DeployedPolicy(ABC):
    """Callable policy ``obs [N, obs_dim] -> batched env action`` with
    :class:`~impala_hybrid.evaluation.policy.TorchPolicy`'s interface (``reset``,
    ``observe_done``), deterministic: a policy whose spec samples the discrete choice
    (``discrete_choice = "sample"``) draws it with its own generator (:meth:`reseed`; seed 0
    unless told), so one seed gives one sequence of actions. One observation ``[obs_dim]``
    gets one action (no batch axis: a discrete index, a ``[D]`` array, or a dict/tuple of
    those); it runs as a batch of one. Recurrent policies keep their LSTM state between
    calls; a new batch size starts every row from a fresh state, as ``TorchPolicy`` does."""

    spec: PolicySpec
    rng: np.random.Generator | None = None  # the sampled choice's generator (made on first use)

    def reseed(self, seed: int) -> None:
        """Restart the generator of a sampled discrete choice at ``seed``."""
        self.rng = np.random.default_rng(seed)

    def _gumbel(self, n: int) -> np.ndarray:
        """Gumbel noise ``[n, K]`` for a sampled choice (:func:`gumbel_noise`)."""
        if self.rng is None:
            self.reseed(0)
        assert self.rng is not None
        return gumbel_noise(self.rng, n, self.spec.num_actions)

    @abstractmethod
    def reset(self, num_envs: int) -> None:
        """Fresh (zero) recurrent state for ``num_envs`` rows."""

    @abstractmethod
    def observe_done(self, done: np.ndarray) -> None:
        """Mark environments whose next observation starts a new episode (state reset)."""

    @abstractmethod
    def __call__(self, obs: np.ndarray) -> Any:
        """The deterministic env action for a batch of observations."""


class _StatefulRuntimePolicy(DeployedPolicy):
    """Shared state handling for runtimes that take the LSTM state as inputs and outputs."""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec
        self.h: np.ndarray | None = None
        self.c: np.ndarray | None = None
        self._n = -1

    def reset(self, num_envs: int) -> None:
        self._n = num_envs
        if self.spec.recurrent:
            self.h = np.zeros((num_envs, self.spec.lstm_size), _F32)
            self.c = np.zeros((num_envs, self.spec.lstm_size), _F32)

    def observe_done(self, done: np.ndarray) -> None:
        done = _check_done(done, self._n)
        if self.h is not None and self.c is not None and done.any():
            self.h[done] = 0.0
            self.c[done] = 0.0

    @abstractmethod
    def _run(self, obs: np.ndarray) -> list[np.ndarray]:
        """Runtime outputs in sidecar order: [discrete], [continuous], [h, c]."""

    def __call__(self, obs: np.ndarray) -> Any:
        x, single = _as_obs(obs, self.spec.obs_dim)
        if single:
            return self.spec.unbatch(self(x))
        if x.dtype != _F32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, _F32)
        if x.shape[0] != self._n:
            self.reset(x.shape[0])
        outs = self._run(x)
        i = 0
        discrete = continuous = None
        if self.spec.has_discrete:
            discrete = np.asarray(outs[0], np.int64)
            i = 1
        if self.spec.has_continuous:
            continuous = np.asarray(outs[i], _F32)
            i += 1
        if self.spec.recurrent:
            self.h, self.c = np.asarray(outs[i], _F32), np.asarray(outs[i + 1], _F32)
        return self.spec.env_action(discrete, continuous)


class OnnxPolicy(_StatefulRuntimePolicy):
    """An exported ONNX policy on ONNX Runtime's CPU provider.

    ``threads`` sets intra-op parallelism (default 1: at batch 1 threads only add handoff
    latency, and the deployment target is a one-core budget).
    """

    def __init__(self, path: str | Path, spec: PolicySpec, *, threads: int = 1) -> None:
        import onnxruntime as ort

        super().__init__(spec)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ArtifactError(f"{path}: ONNX Runtime cannot load it: {e}") from e
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != spec.input_names or outputs != spec.output_names:
            raise ArtifactError(
                f"{path}: graph inputs {inputs} / outputs {outputs} do not match the sidecar's "
                f"policy ({spec.input_names} / {spec.output_names})"
            )
        self._output_names = outputs

    def _run(self, obs: np.ndarray) -> list[np.ndarray]:
        feed = {"obs": obs, "h": self.h, "c": self.c} if self.spec.recurrent else {"obs": obs}
        if self.spec.samples_choice:
            feed["gumbel"] = self._gumbel(obs.shape[0])
        return self.session.run(self._output_names, feed)


# --------------------------------------------------------------------------------------------
# The NumPy forward pass
# --------------------------------------------------------------------------------------------


def _relu(y: np.ndarray, dst: np.ndarray, tmp: np.ndarray) -> None:
    np.maximum(y, _ZERO, out=dst)


def _tanh(y: np.ndarray, dst: np.ndarray, tmp: np.ndarray) -> None:
    np.tanh(y, out=dst)


def _silu(y: np.ndarray, dst: np.ndarray, tmp: np.ndarray) -> None:
    # x * sigmoid(x) with sigmoid(x) = 0.5 tanh(x / 2) + 0.5 (no overflow for any x)
    np.multiply(y, _HALF, out=tmp)
    np.tanh(tmp, out=tmp)
    np.multiply(tmp, _HALF, out=tmp)
    np.add(tmp, _HALF, out=tmp)
    np.multiply(y, tmp, out=dst)


def _elu(y: np.ndarray, dst: np.ndarray, tmp: np.ndarray) -> None:
    # x > 0 ? x : expm1(x)  ==  max(x, 0) + expm1(min(x, 0))
    np.minimum(y, _ZERO, out=tmp)
    np.expm1(tmp, out=tmp)
    np.maximum(y, _ZERO, out=dst)
    np.add(dst, tmp, out=dst)


_ACTIVATION_FNS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], None]] = {
    "relu": _relu,
    "tanh": _tanh,
    "silu": _silu,
    "elu": _elu,
}


@dataclasses.dataclass
class _Layer:
    """One trunk layer: ``[in + 1, out]`` float32 weight (bias as last row, LayerNorm centring
    folded in), and the LayerNorm affine still to apply (``gamma`` ``None`` once folded)."""

    weight: np.ndarray
    layer_norm: bool
    gamma: np.ndarray | None
    beta: np.ndarray | None


class _Buffers:
    """Everything one forward pass at batch size ``n`` writes into, allocated once.

    Layer ``i`` reads ``inputs[i]`` (``[n, in + 1]``, last column 1), writes its pre-activation
    into ``pre[i]`` and its activation into a view of the next input buffer. With an LSTM, the
    last layer writes into the first part of ``z = [x, h, 1]``; the cell writes the new ``h``
    into ``z`` itself, where the next step's gates and this step's head both read it.
    ``plan`` holds each layer's arrays as one tuple, so the forward loop does no lookups.
    """

    def __init__(self, n: int, policy: NumpyPolicy) -> None:
        spec = policy.spec
        self.n = n
        widths = [spec.obs_dim, *spec.hidden]
        inputs: list[np.ndarray] = []
        for i, w in enumerate(widths):
            extra = spec.lstm_size if (i == len(widths) - 1 and spec.recurrent) else 0
            buf = np.zeros((n, w + extra + 1), _F32)
            buf[:, -1] = 1.0
            inputs.append(buf)
        self.obs = inputs[0][:, : spec.obs_dim]
        self.plan: list[tuple[Any, ...]] = []

        def mm(a: np.ndarray) -> np.ndarray:
            """At batch 1 the products take 1-D rows: NumPy then calls BLAS gemv, not gemm."""
            return a[0] if n == 1 else a

        for i, (w, layer) in enumerate(zip(spec.hidden, policy._layers, strict=True)):
            pre = np.zeros((n, w), _F32)
            self.plan.append(
                (
                    mm(inputs[i]),
                    layer.weight,
                    mm(pre),
                    1.0 / w,
                    layer.layer_norm,
                    layer.gamma,
                    layer.beta,
                    mm(inputs[i + 1][:, :w]),  # the activation's destination
                    mm(np.zeros((n, w), _F32)),  # scratch for multi-op activations
                    np.zeros((n, 1), _F32),  # batch > 1: per-row variance
                )
            )
        last, width, hsz = inputs[-1], spec.hidden[-1], spec.lstm_size
        self.head_in = mm(last[:, width:] if spec.recurrent else last)  # [h, 1] or [x, 1]
        if spec.recurrent:
            self.z = mm(last)
            self.h = last[:, width : width + hsz]
            self.c = np.zeros((n, hsz), _F32)
            g = np.zeros((n, 4 * hsz), _F32)
            self.gates = mm(g)
            self.sig = g[:, : 3 * hsz]  # i, f, o (reordered), then the cell candidate
            self.gi, self.gf, self.go = g[:, :hsz], g[:, hsz : 2 * hsz], g[:, 2 * hsz : 3 * hsz]
            self.gg = g[:, 3 * hsz :]
            self.cell_tmp = np.zeros((n, hsz), _F32)
        p = np.zeros((n, policy._head_weight.shape[1]), _F32)
        self.params = mm(p)
        k, d = spec.num_actions, spec.action_dim
        self.logits = p[:, :k]
        self.views: dict[str, np.ndarray] = {}
        for name, off in policy._offsets.items():
            if name == "logits":
                continue
            if spec.kind == "hybrid_gated":
                self.views[name] = p[:, off : off + k * d].reshape(n, k, d)
            else:
                self.views[name] = p[:, off : off + d]
        self.rows = np.arange(n)


class NumpyPolicy(DeployedPolicy):
    """The deterministic policy of an ``ActorCritic`` in NumPy (see the module docstring).

    Build it with :meth:`from_model` (a live model) or :meth:`from_state` (weights by their
    ``state_dict`` names plus a :class:`PolicySpec`, e.g. from an ``npz`` artifact). Thread
    safety: one instance holds one set of buffers; use one instance per thread.
    """

    def __init__(
        self,
        spec: PolicySpec,
        layers: list[_Layer],
        lstm_weight: np.ndarray | None,
        head_weight: np.ndarray,
        head_offsets: dict[str, int],
        obs_norm: tuple[np.ndarray, np.ndarray, float] | None = None,
    ) -> None:
        self.spec = spec
        self._obs_norm = obs_norm  # (mean, 1 / sqrt(var + eps)) float32 [obs_dim], clip
        self._layers = layers
        self._lstm_weight = lstm_weight
        self._head_weight = head_weight
        self._offsets = head_offsets
        self._obs_dim = spec.obs_dim
        self._act = _ACTIVATION_FNS[spec.activation]
        self._eps = float(spec.layer_norm_eps)
        self._buffers: dict[int, _Buffers] = {}
        self._b: _Buffers | None = None
        self._clamp = True
        if spec.has_continuous:
            assert spec.low is not None and spec.high is not None
            low = np.asarray(spec.low, _F32)
            high = np.asarray(spec.high, _F32)
            self._low, self._high = low, high
            self._span = high - low  # as torch.lerp computes it, in float32
            self._mid = ((low.astype(np.float64) + high) / 2).astype(_F32)
            self._half = ((high.astype(np.float64) - low) / 2).astype(_F32)
            # mid + half * t with |t| <= 1 stays in [low, high] by monotone rounding whenever
            # mid +- half does: then the clamp cannot change anything and is skipped.
            inside = bool(
                np.all(self._mid + self._half <= high) and np.all(self._mid - self._half >= low)
            )
            self._clamp = spec.bounded_kind == "beta" or not inside

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def from_model(cls, model: ActorCritic, discrete_choice: str = "mode") -> NumpyPolicy:
        """Copy a model's weights (the model is not referenced afterwards);
        ``discrete_choice`` as in :class:`PolicySpec`."""
        from impala_hybrid.models.zones import dense_copy

        model = dense_copy(model)  # a zone-tied network as the dense layers it computes
        spec = PolicySpec.from_model(model, discrete_choice)
        state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        return cls.from_state(state, spec)

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], spec: PolicySpec | Mapping[str, Any]
    ) -> NumpyPolicy:
        """From weights named as in ``ActorCritic.state_dict()`` (arrays or tensors; the value
        head and anything else unneeded is ignored) and a spec (or its JSON dict).

        Weights are rearranged in float64 and rounded to float32 once: LayerNorm centring is
        folded into the preceding layer; with ReLU, a LayerNorm scale ``gamma > 0`` is folded
        into the next layer's input rows (``relu(gamma n + beta) = gamma relu(n + beta /
        gamma)``), saving one array op per layer; LSTM gates are reordered to i, f, o, g with
        the sigmoid gates' weights halved; the head keeps only what the mode reads.
        """
        if not isinstance(spec, PolicySpec):
            spec = PolicySpec.from_json(spec)
        arrays = {k: np.asarray(v, np.float64) for k, v in state.items()}

        def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
            if name not in arrays:
                raise ArtifactError(f"weights lack {name!r}")
            if arrays[name].shape != shape:
                raise ArtifactError(
                    f"weight {name!r} has shape {arrays[name].shape}, the spec needs {shape}"
                )
            return arrays[name]

        stride = 3 if spec.layer_norm else 2
        trunk: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
        width = spec.obs_dim
        for i, h in enumerate(spec.hidden):
            w = get(f"trunk.{i * stride}.weight", (h, width))
            b = get(f"trunk.{i * stride}.bias", (h,))
            gamma = beta = None
            if spec.layer_norm:  # y - mean(y) = (W - mean_rows(W)) x + (b - mean(b))
                w = w - w.mean(axis=0, keepdims=True)
                b = b - b.mean()
                gamma = get(f"trunk.{i * stride + 1}.weight", (h,))
                beta = get(f"trunk.{i * stride + 1}.bias", (h,))
            trunk.append((_augment(w, b), gamma, beta))
            width = h
        lstm_weight = None
        if spec.recurrent:
            hsz = spec.lstm_size
            w_ih = get("lstm.weight_ih", (4 * hsz, width))
            w_hh = get("lstm.weight_hh", (4 * hsz, hsz))
            bias = get("lstm.bias_ih", (4 * hsz,)) + get("lstm.bias_hh", (4 * hsz,))
            full = np.concatenate([w_ih.T, w_hh.T, bias[None]], axis=0)  # [in + H + 1, 4H]
            i_, f_, g_, o_ = (full[:, j * hsz : (j + 1) * hsz] for j in range(4))
            # sigmoid(x) = 0.5 tanh(x / 2) + 0.5: halve the i, f, o columns (exact).
            lstm_weight = np.concatenate([0.5 * i_, 0.5 * f_, 0.5 * o_, g_], axis=1)
            width = hsz
        layout = spec.param_layout()
        total = sum(int(np.prod(s)) for _, s in layout)
        w_p = get("policy.weight", (total, width))
        b_p = get("policy.bias", (total,))
        keep = ("logits", "mean", "raw_alpha", "raw_beta")  # log_std does not enter the mode
        rows: list[np.ndarray] = []
        offsets: dict[str, int] = {}
        start = kept = 0
        for name, shape in layout:
            size = int(np.prod(shape))
            if name in keep:
                rows.append(np.arange(start, start + size))
                offsets[name] = kept
                kept += size
            start += size
        sel = np.concatenate(rows)
        head = _augment(w_p[sel], b_p[sel])
        obs_norm = None
        if spec.obs_norm_clip is not None:
            var = get("obs_norm.var", (spec.obs_dim,)).astype(_F32)
            obs_norm = (
                get("obs_norm.mean", (spec.obs_dim,)).astype(_F32),
                (_ONE / np.sqrt(var + _F32(OBS_NORM_EPS))).astype(_F32),
                spec.obs_norm_clip,
            )

        layers: list[_Layer] = []
        for i, (w, gamma, beta) in enumerate(trunk):
            if (
                gamma is not None
                and beta is not None
                and spec.activation == "relu"
                and bool(np.all(gamma > 0.0))
            ):
                following = trunk[i + 1][0] if i + 1 < len(trunk) else lstm_weight
                if following is None:
                    following = head
                following[: gamma.shape[0]] *= gamma[:, None]
                beta, gamma = beta / gamma, None
            layers.append(
                _Layer(
                    np.ascontiguousarray(w, _F32),
                    spec.layer_norm,
                    None if gamma is None else gamma.astype(_F32),
                    None if beta is None else beta.astype(_F32),
                )
            )
        return cls(
            spec,
            layers,
            None if lstm_weight is None else np.ascontiguousarray(lstm_weight, _F32),
            np.ascontiguousarray(head, _F32),
            offsets,
            obs_norm,
        )

    # ---- state -----------------------------------------------------------------------------

    def reset(self, num_envs: int) -> None:
        b = self._buffers.get(num_envs)
        if b is None:
            b = self._buffers[num_envs] = _Buffers(num_envs, self)
        self._b = b
        if self.spec.recurrent:
            b.h[...] = 0.0
            b.c[...] = 0.0

    def observe_done(self, done: np.ndarray) -> None:
        b = self._b
        if b is None or not self.spec.recurrent:
            return
        done = _check_done(done, b.n)
        if done.any():
            b.h[done] = 0.0
            b.c[done] = 0.0

    @property
    def state(self) -> tuple[np.ndarray, ...]:
        """Copies of the LSTM state ``(h, c)``, each ``[N, H]``; ``()`` without a core."""
        if self._b is None or not self.spec.recurrent:
            return ()
        return (self._b.h.copy(), self._b.c.copy())

    # ---- forward ---------------------------------------------------------------------------

    def __call__(self, obs: np.ndarray) -> Any:
        if type(obs) is not np.ndarray or obs.ndim != 2 or obs.shape[1] != self._obs_dim:
            obs, single = _as_obs(obs, self._obs_dim)
            if single:
                return self.spec.unbatch(self(obs))
        b = self._b
        if b is None or b.n != obs.shape[0]:
            self.reset(obs.shape[0])
            b = self._b
            assert b is not None
        np.copyto(b.obs, obs, casting="unsafe")
        if self._obs_norm is not None:  # frozen statistics: RunningObsNorm.forward
            mean, scale, clip = self._obs_norm
            np.subtract(b.obs, mean, out=b.obs)
            np.multiply(b.obs, scale, out=b.obs)
            np.clip(b.obs, -clip, clip, out=b.obs)
        act, eps, single = self._act, self._eps, b.n == 1
        for inp, weight, pre, inv_w, ln, gamma, beta, dst, tmp, var in b.plan:
            np.dot(inp, weight, out=pre)
            if ln:
                if single:  # centred already: var = mean(pre^2); pre is 1-D
                    np.multiply(
                        pre, 1.0 / math.sqrt(float(np.dot(pre, pre)) * inv_w + eps), out=pre
                    )
                else:
                    np.einsum("ij,ij->i", pre, pre, out=var[:, 0])
                    np.multiply(var, inv_w, out=var)
                    np.add(var, eps, out=var)
                    np.sqrt(var, out=var)
                    np.divide(pre, var, out=pre)
                if gamma is not None:
                    np.multiply(pre, gamma, out=pre)
                np.add(pre, beta, out=pre)
            act(pre, dst, tmp)
        if self._lstm_weight is not None:
            self._lstm_step(b)
        np.dot(b.head_in, self._head_weight, out=b.params)
        return self._action(b)

    def _lstm_step(self, b: _Buffers) -> None:
        assert self._lstm_weight is not None
        g = np.dot(b.z, self._lstm_weight, out=b.gates)
        np.tanh(g, out=g)
        np.multiply(b.sig, _HALF, out=b.sig)
        np.add(b.sig, _HALF, out=b.sig)
        np.multiply(b.gf, b.c, out=b.c)  # c = f * c + i * g
        np.multiply(b.gi, b.gg, out=b.cell_tmp)
        np.add(b.c, b.cell_tmp, out=b.c)
        np.tanh(b.c, out=b.cell_tmp)  # h = o * tanh(c), straight into z
        np.multiply(b.go, b.cell_tmp, out=b.h)

    def _action(self, b: _Buffers) -> Any:
        spec = self.spec
        discrete = None
        if spec.samples_choice:
            discrete = (b.logits + self._gumbel(b.n)).argmax(axis=1)
        elif spec.has_discrete:
            discrete = b.logits.argmax(axis=1)
        if spec.kind == "categorical":
            return spec.env_action(discrete, None)
        if spec.bounded_kind == "squashed_gaussian":
            # lerp(low, high, (tanh(u) + 1) / 2) = mid + half * tanh(u); fresh output array
            if spec.kind == "hybrid_gated":
                cont = b.views["mean"][b.rows, discrete]
                np.tanh(cont, out=cont)
            else:
                cont = np.tanh(b.views["mean"])
            np.multiply(cont, self._half, out=cont)
            np.add(cont, self._mid, out=cont)
        else:
            cont = self._beta_mode(
                self._chosen(b, "raw_alpha", discrete), self._chosen(b, "raw_beta", discrete)
            )
        if self._clamp:
            np.maximum(cont, self._low, out=cont)
            np.minimum(cont, self._high, out=cont)
        return spec.env_action(discrete, cont)

    def _chosen(self, b: _Buffers, name: str, discrete: np.ndarray | None) -> np.ndarray:
        """A fresh ``[N, D]`` copy of one continuous parameter (the chosen set when gated)."""
        if self.spec.kind == "hybrid_gated":
            return b.views[name][b.rows, discrete]
        return b.views[name].copy()

    def _beta_mode(self, ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
        """``BetaDistribution.mode`` then ``to_env``'s lerp, in torch's float32 op order."""
        alpha = np.logaddexp(ra, _ZERO, out=ra)  # softplus
        np.add(alpha, _ONE, out=alpha)
        beta = np.logaddexp(rb, _ZERO, out=rb)
        np.add(beta, _ONE, out=beta)
        denom = alpha + beta
        np.subtract(denom, _TWO, out=denom)
        np.subtract(alpha, _ONE, out=alpha)
        y = np.full_like(alpha, _HALF)
        np.divide(alpha, denom, out=y, where=denom > 0)
        # torch.lerp(low, high, w): low + w * span for w < 0.5, else high - span * (1 - w)
        lo_part = self._low + y * self._span
        hi_part = self._high - self._span * (_ONE - y)
        return np.where(y < _HALF, lo_part, hi_part)


def _augment(w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[out, in]`` weight and ``[out]`` bias -> ``[in + 1, out]`` (bias as the last row)."""
    return np.concatenate([w.T, b[None]], axis=0)


# --------------------------------------------------------------------------------------------
# Artifacts on disk
# --------------------------------------------------------------------------------------------


def sidecar_path(artifact: str | Path) -> Path:
    """Where an artifact's JSON sidecar lives: ``<artifact>.json``."""
    p = Path(artifact)
    return p.with_name(p.name + ".json")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_sidecar(artifact: str | Path) -> dict[str, Any]:
    """The checked sidecar of ``artifact``: right format and version, the artifact's hash
    matches (a truncated or swapped file is refused), ``policy`` parses as a :class:`PolicySpec`.
    """
    artifact = Path(artifact)
    side = sidecar_path(artifact)
    if not artifact.is_file():
        raise ArtifactError(f"{artifact}: no such artifact file")
    if not side.is_file():
        raise ArtifactError(
            f"{artifact}: no sidecar {side.name}; only artifacts written by "
            "impala_hybrid.deploy.export_model can be loaded"
        )
    try:
        meta = json.loads(side.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{side}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise ArtifactError(
            f"{side}: not an impala_hybrid policy sidecar (format != {SIDECAR_FORMAT!r})"
        )
    if meta.get("version") != SIDECAR_VERSION:
        raise ArtifactError(
            f"{side}: sidecar version {meta.get('version')!r} is not supported "
            f"(this code reads version {SIDECAR_VERSION})"
        )
    art = meta.get("artifact")
    if not isinstance(art, dict) or not isinstance(art.get("sha256"), str):
        raise ArtifactError(f"{side}: lacks the artifact entry (format, file, sha256)")
    if art.get("file") != artifact.name:
        raise ArtifactError(f"{side}: describes {art.get('file')!r}, not {artifact.name!r}")
    digest = file_sha256(artifact)
    if digest != art["sha256"]:
        raise ArtifactError(
            f"{artifact}: SHA-256 {digest[:12]}... does not match the sidecar's "
            f"{art['sha256'][:12]}...; the file is corrupt or was replaced"
        )
    meta["policy"] = PolicySpec.from_json(meta.get("policy"))  # type: ignore[arg-type]
    return meta


def load_policy(path: str | Path, *, threads: int = 1, seed: int = 0) -> DeployedPolicy:
    """Load any exported artifact as a :class:`DeployedPolicy` (see module docstring).

    ``npz`` needs NumPy only, ``onnx`` onnxruntime; ``torchscript`` needs torch (imported here
    only for that format). ``threads``: intra-op threads of ONNX Runtime and TorchScript
    (default 1: at small batches more threads only add handoff latency, and on a busy
    machine they wait for each other). Deploy ``npz`` or ``onnx``: TorchScript is several
    times slower per decision (see ``TorchScriptPolicy``). ``seed``: the generator of a
    sampled discrete choice (``PolicySpec.discrete_choice``; unused otherwise).
    """
    meta = read_sidecar(path)
    spec: PolicySpec = meta["policy"]
    fmt = meta["artifact"].get("format")
    policy: DeployedPolicy
    if fmt == "npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                state = {k: data[k] for k in data.files}
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{path}: cannot read the npz weights: {e}") from e
        policy = NumpyPolicy.from_state(state, spec)
    elif fmt == "onnx":
        policy = OnnxPolicy(path, spec, threads=threads)
    elif fmt == "torchscript":
        from impala_hybrid.deploy.export import TorchScriptPolicy

        policy = TorchScriptPolicy(path, spec, threads=threads)
    else:
        raise ArtifactError(f"{sidecar_path(path)}: unknown artifact format {fmt!r}")
    policy.reseed(seed)
    return policy
