"""The actor-critic network: MLP trunk with LayerNorm, optional LSTM core, policy and value heads.

Shapes: every call is time-major ``[T, B, ...]``; actors call with ``T = 1``. Without a
recurrent core the time axis is folded into the batch (the paper's §3.1 "folding time into the
batch dimension"), so the learner runs one large matrix product per layer. With an LSTM the
trunk is still folded and only the core loops over time, resetting its state wherever
``first[t]`` marks an episode start, so an unroll that crosses an episode boundary never
leaks memory from one episode into the next.

Heads: the policy head outputs the raw parameters ``models.distributions.param_shapes`` asks
for (logits, mean/log-std or Beta concentrations, ``K`` parameter sets for the gated head); the
value head outputs ``K_v`` values: one for a scalar critic, one per objective for a vector
critic (V-trace per objective, advantages scalarised after). An optional action-advantage
head outputs ``a(x, k)`` for each of the ``K`` discrete choices, from which the learner forms
``Q(x, k) = w . V(x) + a(x, k)`` (a dueling split, Wang et al. 2016) for its expected discrete
policy gradient (``IMPALAConfig.discrete_pg = "expected"``). It starts near zero (the policy
head's small gain), so no choice looks better than another before anything is learned: a head
that starts with arbitrary ``O(1)`` values pushes the policy consistently toward arbitrary
choices from the first update. Actors, evaluation and exported policies never read it.

With ``ModelConfig.value_trunk = "separate"`` the value head reads a trunk of its own (the
same widths), trained by the value loss alone, so the policy gradient and the value
regression do not compete for one set of features; callers that read only the policy
(actors, evaluation: ``forward(..., with_values=False)``) skip it, and exported policies
never contain it.

An optional action critic (``IMPALAConfig.continuous_pg``: reparameterized or qprop) outputs
``c(f, k, a)``, the advantage of the continuous action ``a`` (squashed to ``(-1, 1)``) taken
with the discrete choice ``k`` (one-hot), from the trunk's features ``f``, *detached*: one
hidden layer of the trunk's width. The learner forms ``Q(x, k, a) = w . V(x) + c(f, k, a)``
and moves the continuous part of the policy along ``dQ / da`` (the deterministic / SAC-style
policy gradient, Silver et al. 2014, Haarnoja et al. 2018), or uses it as Q-Prop's control
variate (Gu et al. 2017). Its features are detached so that
neither its regression nor the policy's ascent of it reshapes the trunk the policy and values
share: it reads the state as they represent it. Learner-only, like the action-advantage head.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impala_hybrid.models.distributions import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    ActionDistribution,
    make_distribution,
    owner_matrix,
    param_shapes,
)
from impala_hybrid.models.normalization import RunningObsNorm
from impala_hybrid.models.spaces import ActionSpec
from impala_hybrid.models.zones import (
    Layout,
    TiedLayerNorm,
    TiedLinear,
    ZoneStructure,
    head_layout,
    hidden_layout,
    obs_layout,
)
from impala_hybrid.validation import ConfigError, spec, validate

_LOG_STD_MID = (LOG_STD_MAX + LOG_STD_MIN) / 2.0
_LOG_STD_HALF = (LOG_STD_MAX - LOG_STD_MIN) / 2.0


def bounded_log_std(raw: Tensor) -> Tensor:
    """``mid + half tanh((raw - mid) / half)``: the log-std kept inside ``[LOG_STD_MIN,
    LOG_STD_MAX]`` (``mid``, ``half``: that range's centre and half-width).

    Why not the distribution's clamp alone: a clamp has zero gradient outside its range, so
    once one large update pushed a head's raw log-std below the floor, no gradient (the
    entropy bonus's included) could bring it back, and the policy stayed at the narrowest
    width while log-prob gradients grew like ``1 / std^2`` (issue 8's late collapse). The tanh
    map reaches the bounds only asymptotically and has a gradient everywhere. Its slope is 1
    at the centre of the range (0.92 at the default initial -0.5), so inside the range the
    optimiser moves the log-std as fast as an unbounded head would; CleanRL's SAC map,
    ``min + (tanh(raw) + 1) span / 2``, has slope 3.5 there, and made the std collapse early.
    """
    return _LOG_STD_MID + _LOG_STD_HALF * torch.tanh((raw - _LOG_STD_MID) / _LOG_STD_HALF)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX), as
    PyTorch's own dispatch sees it. Without it bf16 matrix products are emulated: measured on
    the UAV preset's learner, 0.59x float32's speed with AVX-512 alone and 0.17x with AVX2
    (oneDNN limited by ``ONEDNN_MAX_CPU_ISA``), against 1.19x (median; 0.99-1.46x across
    measurements) with AVX512-BF16 (docs/results.md, "A bfloat16 trunk")."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_trunk_dtype(name: str) -> str:
    """``ModelConfig.trunk_dtype`` on this machine: ``"auto"`` becomes ``"bfloat16"`` where
    the CPU has native bf16, else ``"float32"``. Decided by the CPU even for a GPU learner:
    actors run on CPUs, and a learner that followed its GPU instead would compute other
    log-probs than its actors. (Ray actors on other machines decide for their own CPU.)"""
    if name == "auto":
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    return name


def raw_log_std(log_std: float) -> float:
    """The raw head output that :func:`bounded_log_std` maps to ``log_std`` (inside the range)."""
    return _LOG_STD_MID + _LOG_STD_HALF * math.atanh((log_std - _LOG_STD_MID) / _LOG_STD_HALF)


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU, "elu": nn.ELU}
#: Activations applied in place: their backward reads their own output, and their input (a
#: LayerNorm or Linear output) is not needed by the layer before, so autograd allows it. It
#: saves one ``[T * B, H]`` tensor per layer, about 6% of a learner step on the UAV model.
#: SiLU's backward needs its input, and Tanh has no in-place module.
INPLACE_ACTIVATIONS = ("relu", "elu")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Network architecture. Defaults: the UAV model of the design notes (29-256-256)."""

    hidden: tuple[int, ...] = spec((256, 256), "trunk layer widths", lo=1)
    layer_norm: bool = spec(True, "LayerNorm after each trunk layer (before the activation)")
    activation: str = spec("relu", "trunk activation", choices=tuple(ACTIVATIONS))
    lstm_size: int = spec(0, "LSTM core width; 0 disables the recurrent core", lo=0)
    continuous_kind: str = spec(
        "squashed_gaussian",
        "bounded continuous distribution",
        choices=("squashed_gaussian", "beta"),
    )
    hybrid_mode: str = spec(
        "factorized", "hybrid head: factorized or gated", choices=("factorized", "gated")
    )
    init_log_std: float = spec(
        -0.5, "initial log-std of Gaussian heads", lo=-5.0, hi=2.0, lo_open=True, hi_open=True
    )
    log_std_bound: str = spec(
        "tanh",
        "how the Gaussian log-std is kept in [LOG_STD_MIN, LOG_STD_MAX]: a tanh map (gradient "
        "everywhere) or a hard clamp (zero gradient outside the range)",
        choices=("tanh", "clamp"),
    )
    policy_init_scale: float = spec(0.01, "orthogonal gain of the policy output layer", lo=0.0)
    structure: str = spec(
        "mlp",
        "mlp: dense layers; zones: weights tied across the env's interchangeable zones "
        "(models/zones.py; the env must declare its zone_structure)",
        choices=("mlp", "zones"),
    )
    zone_width: int = spec(
        48, "structure = zones: units per zone in each hidden layer (the rest are global)", lo=1
    )
    obs_norm: bool = spec(
        False, "normalise observations with running mean/std (models/normalization.py); the "
        "statistics are saved in checkpoints and frozen into exported artifacts",
    )  # fmt: skip
    obs_norm_clip: float = spec(
        10.0, "clip normalised observations to [-x, x] (with obs_norm)", lo=0.0, lo_open=True
    )
    trunk_dtype: str = spec(
        "float32",
        "dtype of the trunk's matrix products: bfloat16 runs the trunk under torch.autocast "
        "(weights, heads, distributions and losses stay float32), fast only on CPUs with "
        "native bf16 (AVX512-BF16 or AMX) and on GPUs; auto: bfloat16 where this machine's "
        "CPU has it, else float32",
        choices=("float32", "bfloat16", "auto"),
    )
    value_trunk: str = spec(
        "shared",
        "shared: the value head reads the policy's trunk (the paper's network); separate: the "
        "values get their own trunk of the same widths, so the value loss and the policy "
        "gradient do not compete for one set of features (Stable-Baselines3's "
        "share_features_extractor = False); the learner computes both, actors and exported "
        "policies only the policy's",
        choices=("shared", "separate"),
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.value_trunk == "separate" and (self.structure == "zones" or self.lstm_size > 0):
            raise ConfigError(
                "ModelConfig.value_trunk = 'separate' is invalid with "
                + ("structure = 'zones'" if self.structure == "zones" else "lstm_size > 0")
                + ": a separate value trunk is a plain MLP without a recurrent core "
                "(use value_trunk = 'shared', or structure = 'mlp' and lstm_size = 0)"
            )
        if self.structure == "zones" and self.lstm_size > 0:
            raise ConfigError(
                f"ModelConfig.lstm_size = {self.lstm_size} is invalid with structure = 'zones': "
                "the zone-tied network has no recurrent core yet (use 0)"
            )


class CoreOutput(NamedTuple):
    """What one forward pass returns."""

    params: dict[str, Tensor]  # raw distribution parameters [T, B, ...]
    values: Tensor  # [T, B, K_v]
    core_state: tuple[Tensor, ...]  # state after the last step, ([B, H], [B, H]) or ()
    core_outputs: Tensor | None  # [T, B, H] per-step states h_t (for bootstrap values)
    cell_states: Tensor | None  # [T, B, H] per-step c_t
    action_advantages: Tensor | None = None  # [T, B, K] a(x, k) of the discrete choices
    features: Tensor | None = None  # [T, B, H] what the heads read (with an action critic)


def _init_linear(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _build_trunk(
    obs_dim: int, config: ModelConfig, tied: ZoneStructure | None
) -> tuple[nn.Sequential, int, Layout | None]:
    """The trunk's layers (``config.hidden``, LayerNorm, activation), its output width and,
    zone-tied, its output layout."""
    layers: list[nn.Module] = []
    width = obs_dim
    act = ACTIVATIONS[config.activation]
    layout = obs_layout(tied) if tied is not None else None
    for i, h in enumerate(config.hidden):
        if tied is not None and layout is not None:
            nxt = hidden_layout(h, tied.zones, config.zone_width, f"ModelConfig.hidden[{i}]")
            layers.append(TiedLinear(layout, nxt, math.sqrt(2), zone_bias=i == 0))
            if config.layer_norm:
                layers.append(TiedLayerNorm(nxt))
            layout = nxt
        else:
            layers.append(_init_linear(nn.Linear(width, h), math.sqrt(2)))
            if config.layer_norm:
                layers.append(nn.LayerNorm(h))
        layers.append(act(inplace=True) if config.activation in INPLACE_ACTIVATIONS else act())
        width = h
    return nn.Sequential(*layers), width, layout


class ActorCritic(nn.Module):
    """Policy and value function over flat observations (see module docstring)."""

    action_low: Tensor  # [D] continuous bounds (buffers, follow the module's device)
    action_high: Tensor
    action_owner: Tensor | None  # [K, D] bool: which action owns which parameter (or None)

    def __init__(
        self,
        obs_dim: int,
        action: ActionSpec,
        config: ModelConfig,
        num_values: int = 1,
        zones: ZoneStructure | None = None,
        action_advantages: bool = False,
        action_critic: bool = False,
    ) -> None:
        super().__init__()
        if num_values < 1:
            raise ValueError(f"num_values = {num_values} is invalid: must be >= 1")
        if action_advantages and action.num_actions < 1:
            raise ConfigError(
                "an action-advantage head (IMPALAConfig.discrete_pg = 'expected') needs a discrete "
                f"choice; this env's actions are {action.kind!r}"
            )
        if config.structure == "zones" and zones is None:
            raise ConfigError(
                "model.structure = 'zones' needs an env that declares its zone_structure "
                "(the UAV env does); use model.structure = 'mlp' for this env"
            )
        tied = zones if config.structure == "zones" else None
        self.config = config
        #: ``config.trunk_dtype`` resolved on the machine that built the model: copies
        #: (actors', the shared weights) keep it, so one run computes in one precision
        self.trunk_dtype = resolve_trunk_dtype(config.trunk_dtype)
        self.action = action
        self.obs_dim = obs_dim
        self.num_values = num_values
        self.obs_norm = RunningObsNorm(obs_dim, config.obs_norm_clip) if config.obs_norm else None
        self.trunk, width, layout = _build_trunk(obs_dim, config, tied)
        #: the values' own trunk (``ModelConfig.value_trunk = 'separate'``), or None: the
        #: value head reads the policy's features
        self.value_trunk: nn.Sequential | None = None
        if config.value_trunk == "separate":
            self.value_trunk, _, _ = _build_trunk(obs_dim, config, None)
        self.lstm: nn.LSTMCell | None = None
        if config.lstm_size > 0:
            self.lstm = nn.LSTMCell(width, config.lstm_size)
            width = config.lstm_size
        self.shapes = param_shapes(
            action.kind,
            num_actions=action.num_actions,
            action_dim=action.action_dim,
            continuous_kind=action.continuous_kind,
        )
        self._sizes = {k: int(np.prod(s)) for k, s in self.shapes.items()}
        self.policy: nn.Linear | TiedLinear
        self.value: nn.Linear | TiedLinear
        if tied is not None and layout is not None:
            if action.kind != "hybrid_factorized":
                raise ConfigError(
                    f"model.structure = 'zones' supports the factorised hybrid head, not "
                    f"{action.kind!r} (set model.hybrid_mode = 'factorized')"
                )
            out = head_layout(tied, list(self._sizes.items()), discrete=("logits",))
            self.policy = TiedLinear(layout, out, config.policy_init_scale)
            self.value = TiedLinear(layout, Layout.blocks(tied.zones, 0, num_values), 1.0)
        else:
            self.policy = _init_linear(
                nn.Linear(width, sum(self._sizes.values())), config.policy_init_scale
            )
            self.value = _init_linear(nn.Linear(width, num_values), 1.0)
        self.action_advantage: nn.Linear | None = None
        if action_advantages:
            if tied is not None:
                raise ConfigError(
                    "IMPALAConfig.discrete_pg = 'expected' is not available with model.structure "
                    "= 'zones' (use model.structure = 'mlp')"
                )
            self.action_advantage = _init_linear(
                nn.Linear(width, action.num_actions), config.policy_init_scale
            )
        self.action_critic: nn.Sequential | None = None
        if action_critic:
            if action.kind not in ("squashed_gaussian", "hybrid_factorized") or (
                action.continuous_kind != "squashed_gaussian"
            ):
                raise ConfigError(
                    "an action critic (IMPALAConfig.continuous_pg reparameterized or qprop) needs "
                    "continuous or factorised hybrid actions with model.continuous_kind = "
                    f"'squashed_gaussian' and model.hybrid_mode = 'factorized'; this model's "
                    f"actions are {action.kind!r} ({action.continuous_kind!r})"
                )
            n_in = width + action.num_actions + action.action_dim
            self.action_critic = nn.Sequential(
                _init_linear(nn.Linear(n_in, width), math.sqrt(2)),
                nn.ReLU(),
                _init_linear(nn.Linear(width, 1), config.policy_init_scale),
            )
        if "log_std" in self.shapes:  # start from a moderate exploration noise
            offset = 0
            raw_init = config.init_log_std
            if config.log_std_bound == "tanh":  # the raw value that maps to init_log_std
                raw_init = raw_log_std(raw_init)
            for name, size in self._sizes.items():
                if name == "log_std":
                    if isinstance(self.policy, TiedLinear):
                        self.policy.fill_bias(range(offset, offset + size), raw_init)
                    else:
                        with torch.no_grad():
                            self.policy.bias[offset : offset + size] = raw_init
                offset += size
        low = torch.as_tensor(action.low if action.low is not None else [-1.0], dtype=torch.float32)
        high = torch.as_tensor(
            action.high if action.high is not None else [1.0], dtype=torch.float32
        )
        # Bounds are validated once by models.spaces.action_spec; re-checking them in every
        # distribution construction cost more than sampling on the actors' hot path.
        self._continuous_kwargs: dict[str, Any] = (
            {"check_bounds": False} if action.action_dim > 0 else {}
        )
        self.register_buffer("action_low", low, persistent=False)
        self.register_buffer("action_high", high, persistent=False)
        owner = None
        if action.kind == "hybrid_parameterized":
            assert action.segments is not None
            owner = owner_matrix(action.segments)
        self.register_buffer("action_owner", owner, persistent=False)

    @property
    def recurrent(self) -> bool:
        return self.lstm is not None

    @contextlib.contextmanager
    def full_precision(self) -> Iterator[None]:
        """Compute in float32 inside the block, whatever ``trunk_dtype`` says: how trained
        policies are evaluated (``evaluation.policy.TorchPolicy``), the precision exported
        artifacts compute in, so the policy a run selects its checkpoints with is the one it
        deploys."""
        saved = self.trunk_dtype
        self.trunk_dtype = "float32"
        try:
            yield
        finally:
            self.trunk_dtype = saved

    def initial_state(
        self, batch_size: int, device: torch.device | None = None
    ) -> tuple[Tensor, ...]:
        if self.lstm is None:
            return ()
        z = torch.zeros(batch_size, self.lstm.hidden_size, device=device)
        return (z, z.clone())

    def _normalize(self, obs: Tensor) -> Tensor:
        return obs.float() if self.obs_norm is None else self.obs_norm(obs)

    def _features(self, obs: Tensor, trunk: nn.Module | None = None) -> Tensor:
        """Trunk features ``[N, H]`` (float32) of observations ``[N, obs_dim]`` (the policy's
        trunk, or ``trunk``: the separate value trunk).

        With bfloat16 (``ModelConfig.trunk_dtype``, resolved in ``__init__``) the trunk's
        matrix products, LayerNorms and activations run in bfloat16 (float32 accumulation;
        float32 master weights, so the optimiser's small updates are not rounded away) and
        only the features are cast back. Actors and learner share this path, and a row's
        result does not depend on how many rows are in the call, so the log-ratio of an
        action under the same weights stays exactly 0 (measured on trained UAV policies; a
        bf16 learner against float32 actors would see mean |log rho| 0.002, max 0.03). The
        heads stay float32: a small share of the work, and the means and log-stds they
        output set log-probs whose gradients scale like ``1 / std^2``. Evaluation and
        exported policies compute in float32 from the same weights (:meth:`full_precision`):
        bf16 is a training-throughput choice, and the policy that is scored is the one that
        is deployed.
        """
        x = self._normalize(obs)
        net = self.trunk if trunk is None else trunk
        if self.trunk_dtype == "float32":
            return net(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return net(x).float()

    def _values(self, obs: Tensor, x: Tensor) -> Tensor:
        """Values ``[N, K_v]`` of observations ``[N, obs_dim]`` whose policy features are
        ``x`` ``[N, H]`` (read by the value head unless the values have their own trunk)."""
        if self.value_trunk is None:
            return self.value(x)
        return self.value(self._features(obs, self.value_trunk))

    def _heads(self, x: Tensor) -> dict[str, Tensor]:
        lead = x.shape[:-1]
        flat = self.policy(x)
        params: dict[str, Tensor] = {}
        offset = 0
        for name, size in self._sizes.items():
            params[name] = flat[..., offset : offset + size].reshape(*lead, *self.shapes[name])
            offset += size
        if "log_std" in params and self.config.log_std_bound == "tanh":
            params["log_std"] = bounded_log_std(params["log_std"])
        return params

    def forward(
        self,
        obs: Tensor,
        first: Tensor,
        core_state: tuple[Tensor, ...] = (),
        return_core_states: bool = False,
        with_values: bool = True,
    ) -> CoreOutput:
        """Parameters and values for ``obs [T, B, obs_dim]``; ``first [T, B]`` marks starts.
        ``with_values=False`` (actors, evaluation): the caller reads only the policy, so a
        separate value trunk is not run and ``values`` are zeros."""
        t_len, b = obs.shape[:2]
        flat_obs = obs.reshape(t_len * b, -1)
        x = self._features(flat_obs)
        hs: Tensor | None = None
        cs: Tensor | None = None
        state = core_state
        if self.lstm is not None:
            x = x.reshape(t_len, b, -1)
            if not state:
                state = self.initial_state(b, obs.device)
            h, c = state
            outs, cells = [], []
            keep = (~first.bool()).float().unsqueeze(-1)  # [T, B, 1]
            for t in range(t_len):
                h, c = self.lstm(x[t], (h * keep[t], c * keep[t]))
                outs.append(h)
                cells.append(c)
            hs = torch.stack(outs)
            cs = torch.stack(cells)
            x = hs.reshape(t_len * b, -1)
            state = (h, c)
        params = self._heads(x)
        params = {k: v.reshape(t_len, b, *v.shape[1:]) for k, v in params.items()}
        if with_values or self.value_trunk is None:
            values = self._values(flat_obs, x)
        else:
            values = x.new_zeros(t_len * b, self.num_values)
        head = self.action_advantage
        q = None if head is None else head(x).reshape(t_len, b, -1)
        return CoreOutput(
            params,
            values.reshape(t_len, b, -1),
            state,
            hs if return_core_states else None,
            cs if return_core_states else None,
            q,
            None if self.action_critic is None else x.reshape(t_len, b, -1),
        )

    def critic_advantage(
        self, features: Tensor, discrete: Tensor | None, squashed: Tensor, *, frozen: bool = False
    ) -> Tensor:
        """The action critic's ``c(f, k, a)`` ``[...]`` of features ``[..., H]`` (detached
        here), discrete choices ``[...]`` (int; None without a discrete part) and continuous
        actions squashed to ``(-1, 1)`` ``[..., D]``. ``frozen``: the critic's parameters are
        constants of the result (the policy ascends the critic without moving it), while the
        gradient still flows into ``squashed``."""
        head = self.action_critic
        if head is None:
            raise ConfigError("this model has no action critic (IMPALAConfig.continuous_pg)")
        parts = [features.detach()]
        if discrete is not None:
            parts.append(F.one_hot(discrete.long(), self.action.num_actions).to(squashed.dtype))
        inp = torch.cat([*parts, squashed], dim=-1)
        if not frozen:
            return head(inp)[..., 0]
        params = {name: p.detach() for name, p in head.named_parameters()}
        return torch.func.functional_call(head, params, (inp,))[..., 0]

    def values_after(self, obs: Tensor, core_state: tuple[Tensor, ...]) -> Tensor:
        """Values ``[N, K_v]`` of observations ``[N, obs_dim]`` that continue an episode from
        ``core_state`` (rows ``[N, H]``): the bootstrap values of truncated episodes."""
        if self.value_trunk is not None:  # no recurrent core (ModelConfig.__post_init__)
            return self.value(self._features(obs, self.value_trunk))
        x = self._features(obs)
        if self.lstm is not None:
            x, _ = self.lstm(x, core_state)
        return self.value(x)

    def distribution(self, params: dict[str, Tensor]) -> ActionDistribution[Any]:
        return make_distribution(
            self.action.kind,
            params,
            continuous_kind=self.action.continuous_kind,
            low=self.action_low,
            high=self.action_high,
            owner=self.action_owner,
            **self._continuous_kwargs,
        )
