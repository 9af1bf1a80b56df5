"""Action distributions for discrete, bounded-continuous and hybrid (discrete + continuous) actions.

One interface, :class:`ActionDistribution`, covers every action space the project supports, so
actors and the learner never branch on the action type: actors call :meth:`~ActionDistribution.
sample` and store the action together with :meth:`~ActionDistribution.log_prob_parts`; the
learner rebuilds the distribution from the current network output and calls ``log_prob_parts``
again for the V-trace importance ratios (clipping either the joint ratio, i.e. the product over
parts, or each part's ratio) and :meth:`~ActionDistribution.entropy` for the entropy bonus.
Composition follows Stable-Baselines3 ``distributions.py`` and Sample Factory's
``TupleActionDistribution``: the hybrid distributions hold a :class:`CategoricalDistribution` and a
:class:`BoundedContinuousDistribution` and add their log-probs and entropies.

Shapes: ``[...]`` is the batch shape (``[B]`` on actors, ``[T, B]`` on the learner), ``K`` the
number of discrete actions, ``D`` the number of continuous dimensions, ``C`` the number of parts
(1 for a plain distribution, 2 for a hybrid one: index 0 = discrete, 1 = continuous).

Action representation (the *stored* action, what :meth:`sample` and :meth:`mode` return and what
``log_prob`` takes). Actions are plain data: they never carry autograd history.

* Categorical: ``[...]`` int64 index; ``to_env`` is the identity.
* SquashedGaussian: ``[..., D]`` float, the pre-squash sample ``u``;
  ``to_env(u) = lerp(low, high, (tanh(u) + 1) / 2)``.
* Beta: ``[..., D]`` float ``y`` in ``[0, 1]``; ``to_env(y) = lerp(low, high, y)``.
* HybridFactorized / HybridGated / HybridParameterized: :class:`HybridAction` ``(discrete
  [...] int64, continuous [..., D])``, the continuous part as its kind stores it; ``to_env``
  maps that part.

Storing the pre-squash ``u`` (not the env action) keeps log-probs finite and exact at the box
bounds, where ``atanh`` of a saturated action would be infinite. Mapping the tensors to a
Gymnasium ``Dict``/``Tuple`` action (key names, numpy) is the env adapter's job.

Densities are with respect to the *env* action: the affine map to ``[low, high]`` contributes
``-sum_d log(scale_d)`` to ``log_prob`` and ``+sum_d log(scale_d)`` to ``entropy``. That constant
cancels in importance ratios and has no gradient, but it makes ``log_prob`` a true density on the
box and the entropies comparable with ``log(volume)`` (the uniform distribution's entropy).

Constructors take raw network outputs (logits, mean, log-std, pre-softplus concentrations) as
plain tensors and enforce their own constraints, so a model head needs no knowledge of them;
:func:`param_shapes` says what a head must output and :func:`make_distribution` builds any kind
from a ``{name: tensor}`` mapping.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, Literal, NamedTuple, Self, TypeAlias, TypeVar, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch import distributions as td

__all__ = [
    "BETA_EPS",
    "LOG_STD_MAX",
    "LOG_STD_MIN",
    "ActionDistribution",
    "BetaDistribution",
    "BoundLike",
    "BoundedContinuousDistribution",
    "CategoricalDistribution",
    "ContinuousKind",
    "DistributionKind",
    "HybridAction",
    "HybridFactorizedDistribution",
    "HybridGatedDistribution",
    "HybridParameterizedDistribution",
    "SquashedGaussianDistribution",
    "beta_concentration",
    "beta_mode",
    "make_distribution",
    "owner_matrix",
    "param_shapes",
]

LOG_STD_MIN = -5.0
"""Lower clamp of the Gaussian log-std: std >= 6.7e-3 of the pre-squash range. Narrower policies
give float32 log-densities that swing by hundreds of nats for tiny mean shifts, i.e. V-trace
ratios that are all clipped; this bound is the one CleanRL's SAC uses."""
LOG_STD_MAX = 2.0
"""Upper clamp of the Gaussian log-std (std <= 7.4): beyond it almost all mass of ``tanh(u)`` sits
on the bounds, so a wider Gaussian only makes the policy more bang-bang, not more exploratory."""
BETA_EPS = 1e-6
"""Beta actions are clamped to ``[eps, 1 - eps]`` for ``log_prob``; ``1 - 1e-6`` is still exactly
representable in float32, and ``log(1e-6)`` keeps log-probs moderate at the bounds."""

BoundLike: TypeAlias = float | Sequence[float] | Tensor | np.ndarray
"""Box bounds: a scalar (all dimensions) or one value per continuous dimension (shape ``[D]``)."""


class HybridAction(NamedTuple):
    """Stored action of a hybrid distribution.

    ``discrete``: ``[...]`` int64 index in ``[0, K)``; ``continuous``: ``[..., D]`` float, the
    continuous kind's stored action (pre-squash ``u`` or Beta ``y``). A NamedTuple, so it is a
    pytree for ``torch.utils._pytree``/TorchScript and unpacks as ``k, x = action``.
    """

    discrete: Tensor
    continuous: Tensor


ActionT = TypeVar("ActionT", bound=Tensor | HybridAction)


class ActionDistribution(ABC, Generic[ActionT]):
    """A batch of action distributions with batch shape ``[...]`` and ``num_parts`` components.

    The joint ``log_prob``/``entropy`` are sums over the parts, so subclasses only implement the
    ``*_parts`` methods; per-part values exist because V-trace may clip each component's
    importance ratio separately and the learner may weight each component's entropy separately
    (discrete and continuous entropies live on very different scales).
    """

    num_parts: ClassVar[int]

    @property
    @abstractmethod
    def batch_shape(self) -> torch.Size:
        """The leading shape ``[...]`` shared by every output of this distribution."""

    @abstractmethod
    def sample(self, generator: torch.Generator | None = None) -> ActionT:
        """Draw one stored action per batch element (no autograd history).

        ``generator`` (on the parameters' device) makes sampling reproducible independently of
        the global RNG, e.g. one generator per actor.
        """

    @abstractmethod
    def mode(self) -> ActionT:
        """The deterministic action used for evaluation and deployment (no autograd history)."""

    def choice_mode(self, noise: Tensor) -> ActionT:
        """:meth:`mode` with the discrete choice taken as ``argmax_k (log pi(k) + noise_k)``
        (``noise [..., K]``; no autograd history).

        With standard Gumbel noise this draws the choice from ``pi`` (the Gumbel-max trick),
        with zero noise it is the mode; the continuous parameters stay at their mode (given the
        choice, for a gated head). It is the policy ``TrainConfig.discrete_choice = "sample"``
        evaluates and deploys: where the learned choice stays spread out, its argmax is a
        different policy from the one the learner trained (docs/results.md). A distribution
        without a discrete part ignores ``noise``.
        """
        return self.mode()

    @abstractmethod
    def log_prob_parts(self, action: ActionT) -> Tensor:
        """Per-component log-densities ``[..., C]`` of a stored action."""

    def log_prob(self, action: ActionT) -> Tensor:
        """Joint log-density ``[...]`` of a stored action: the sum of the parts."""
        return self.log_prob_parts(action).sum(-1)

    @abstractmethod
    def entropy_parts(self) -> Tensor:
        """Per-component entropies ``[..., C]`` whose sum is :meth:`entropy`."""

    def entropy(self) -> Tensor:
        """Entropy ``[...]`` of the distribution over env actions."""
        return self.entropy_parts().sum(-1)

    @abstractmethod
    def to_env(self, action: ActionT) -> ActionT:
        """Map a stored action to the action the env takes (same structure, env units)."""


class _SinglePart(ActionDistribution[Tensor]):
    """A distribution with one component: the parts are the joint values with a size-1 axis."""

    num_parts: ClassVar[int] = 1

    @abstractmethod
    def log_prob(self, action: Tensor) -> Tensor:
        """Log-density ``[...]`` of a stored action."""

    def log_prob_parts(self, action: Tensor) -> Tensor:
        return self.log_prob(action).unsqueeze(-1)

    @abstractmethod
    def entropy(self) -> Tensor:
        """Entropy ``[...]``."""

    def entropy_parts(self) -> Tensor:
        return self.entropy().unsqueeze(-1)


# --------------------------------------------------------------------------------------------
# Categorical
# --------------------------------------------------------------------------------------------


class CategoricalDistribution(_SinglePart):
    """Categorical over ``K`` actions from logits ``[..., K]``, with an optional action mask.

    Written on normalised logits (``log_softmax``) rather than wrapping ``td.Categorical``:
    ``log_prob``/``entropy`` are one line each, and ``td.Categorical.sample`` takes no
    ``torch.Generator``. The tests check it against ``td.Categorical``.

    ``mask``: bool, broadcastable to ``[..., K]``, ``True`` = allowed. Masked actions get the
    dtype's most negative finite logit rather than ``-inf``: the probability is still exactly 0
    (never sampled, no entropy contribution), but ``p * log p`` and its gradients stay ``0``
    instead of ``NaN``. At least one action per row must be allowed (not checked, to avoid a
    device sync); a masked action's ``log_prob`` is a huge negative number.
    """

    def __init__(self, logits: Tensor, mask: Tensor | None = None) -> None:
        if logits.dim() < 1:
            raise ValueError(f"logits must have shape [..., K], got {tuple(logits.shape)}")
        if mask is not None:
            if mask.dtype != torch.bool:
                raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
            logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        self.logits = F.log_softmax(logits, dim=-1)  # normalised log-probabilities [..., K]
        self.mask = mask

    @property
    def batch_shape(self) -> torch.Size:
        return self.logits.shape[:-1]

    @property
    def num_actions(self) -> int:
        """``K``."""
        return self.logits.shape[-1]

    @property
    def probs(self) -> Tensor:
        """Probabilities ``[..., K]``."""
        return self.logits.exp()

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """Inverse-CDF sampling: the first ``k`` with ``cdf_k > u * cdf_K``, ``u ~ U[0, 1)``.

        Scaling ``u`` by the row's own total keeps the index in range when the float sum of the
        probabilities is not exactly 1, and a masked (zero-probability) action has an empty
        interval, so it is never drawn. 2.7x cheaper than ``torch.multinomial`` per actor step.
        """
        with torch.no_grad():
            cdf = self.probs.reshape(-1, self.num_actions).cumsum(-1)
            u = torch.rand(
                (cdf.shape[0], 1), generator=generator, dtype=cdf.dtype, device=cdf.device
            )
            idx = torch.searchsorted(cdf, u.mul_(cdf[:, -1:]), right=True)
            return idx.reshape(self.batch_shape)

    def mode(self) -> Tensor:
        return self.logits.detach().argmax(-1)

    def choice_mode(self, noise: Tensor) -> Tensor:
        return (self.logits.detach() + noise).argmax(-1)

    def log_prob(self, action: Tensor) -> Tensor:
        return self.logits.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        return -(self.probs * self.logits).sum(-1)

    def to_env(self, action: Tensor) -> Tensor:
        return action


# --------------------------------------------------------------------------------------------
# Bounded continuous
# --------------------------------------------------------------------------------------------


def _as_bounds(
    low: BoundLike, high: BoundLike, like: Tensor, check: bool = True
) -> tuple[Tensor, Tensor]:
    """Bounds as tensors on ``like``'s dtype/device, shape ``[]`` or ``[D]``, checked.

    Finiteness and ``low < high`` are checked only for CPU tensors and only with ``check``: on
    an accelerator the check would force a device sync on every construction (i.e. every
    step), and on the actors' hot path it costs more than the sampling; a model passes
    ``check=False`` with bounds validated once from the action space (``models.spaces``).
    """
    dim = like.shape[-1]
    lo = torch.as_tensor(low, dtype=like.dtype, device=like.device)
    hi = torch.as_tensor(high, dtype=like.dtype, device=like.device)
    for name, t in (("low", lo), ("high", hi)):
        if t.dim() > 1 or (t.dim() == 1 and t.shape[0] not in (1, dim)):
            raise ValueError(f"{name} must be a scalar or have shape [{dim}], got {tuple(t.shape)}")
    if check and lo.device.type == "cpu":
        if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise ValueError("bounded distributions need finite low/high")
        if not bool((hi > lo).all()):
            raise ValueError("bounded distributions need low < high in every dimension")
    return lo, hi


def beta_concentration(raw: Tensor) -> Tensor:
    """A Beta concentration ``softplus(raw) + 1 > 1`` from a raw head output (Chou et al. 2017;
    :class:`BetaDistribution`); also what ``deploy/export.py``'s traced policy computes."""
    return F.softplus(raw) + 1.0


def beta_mode(alpha: Tensor, beta: Tensor) -> Tensor:
    """The mode ``(alpha - 1) / (alpha + beta - 2)`` of ``Beta(alpha, beta)`` on ``[0, 1]``,
    both concentrations > 1 (interior); 0.5 where both round to exactly 1. Differentiable (the
    warm start's fit), and written with ``torch.where`` only, so it traces and exports."""
    denom = alpha + beta - 2.0
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, (alpha - 1.0) / safe, torch.full_like(denom, 0.5))


def _gather_component(param: Tensor, index: Tensor) -> Tensor:
    """``param[..., index[...], :]``: pick one of ``K`` parameter sets, ``[..., K, D] -> [..., D]``.

    A ``gather``, so the gradient w.r.t. the non-chosen sets is exactly zero by construction.
    """
    idx = index.long()[..., None, None].expand(*index.shape, 1, param.shape[-1])
    return param.gather(-2, idx).squeeze(-2)


class BoundedContinuousDistribution(_SinglePart):
    """Diagonal distribution over the box ``[low, high]^D``; batch ``[...]``, event ``[D]``.

    The base of the continuous kinds, so that the hybrid distributions compose with either.
    """

    low: Tensor
    """``[]`` or ``[D]``."""
    high: Tensor
    """``[]`` or ``[D]``."""

    @property
    @abstractmethod
    def action_dim(self) -> int:
        """``D``."""

    @abstractmethod
    def log_prob_dims(self, action: Tensor) -> Tensor:
        """Per-dimension log-densities ``[..., D]`` (summing to :meth:`log_prob` up to rounding):
        the dimensions are independent, so a parameterised head can count a subset of them."""

    @abstractmethod
    def entropy_dims(self) -> Tensor:
        """Per-dimension entropies ``[..., D]`` (summing to :meth:`entropy` up to rounding)."""

    @abstractmethod
    def mode_with_grad(self) -> Tensor:
        """:meth:`mode` (a stored action ``[..., D]``) with its autograd history: what a fit
        of the deployed action to targets differentiates (``algos/impala/warm_start.py``)."""

    def mode(self) -> Tensor:
        return self.mode_with_grad().detach()

    @abstractmethod
    def select(self, index: Tensor) -> Self:
        """For batch shape ``[..., K]``: the distribution of the ``index[...]``-th parameter set.

        Returns batch shape ``[...]``; used by :class:`HybridGatedDistribution`.
        """

    def _check_select(self, index: Tensor) -> None:
        if len(self.batch_shape) < 1 or index.shape != self.batch_shape[:-1]:
            raise ValueError(
                f"select: index shape {tuple(index.shape)} must be the batch shape "
                f"{tuple(self.batch_shape)} without its last (K) axis"
            )


def _log_sech2(u: Tensor) -> Tensor:
    """``log(1 - tanh(u)^2)`` in the stable form ``2 (log 2 - u - softplus(-2u))``.

    The naive form is ``log(0) = -inf`` once ``tanh`` saturates (|u| > ~9 in float32).
    """
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


# Quadrature for E[log sech^2(u)], u ~ N(mean, std^2) (see _expected_log_sech2).
_GH_NODES = 16  # error < 2e-5 nat for std <= 1 (32 nodes: < 1e-7, at twice the cost)
_GL_NODES = 16
_GL_UPPER = 10.0  # the remainder -2 softplus(-2|u|) is < 5e-9 beyond |u| = 10
_NARROW_MAX_STD = 1.0
_QUADRATURE_CACHE: dict[
    tuple[torch.dtype, torch.device], tuple[Tensor, Tensor, Tensor, Tensor]
] = {}


def _quadrature(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gauss-Hermite and Gauss-Legendre nodes/weights, cached per dtype and device."""
    key = (dtype, device)
    if key not in _QUADRATURE_CACHE:
        gh_x, gh_w = np.polynomial.hermite.hermgauss(_GH_NODES)
        gl_x, gl_w = np.polynomial.legendre.leggauss(_GL_NODES)
        arrays = (
            math.sqrt(2.0) * gh_x,  # E[f(N(m, s^2))] = sum_i w_i / sqrt(pi) f(m + sqrt(2) s x_i)
            gh_w / math.sqrt(math.pi),
            (gl_x + 1.0) * (_GL_UPPER / 2.0),  # [-1, 1] -> [0, _GL_UPPER]
            gl_w * (_GL_UPPER / 2.0),
        )
        gh_nodes, gh_weights, gl_nodes, gl_weights = (
            torch.as_tensor(a, dtype=dtype, device=device) for a in arrays
        )
        _QUADRATURE_CACHE[key] = (gh_nodes, gh_weights, gl_nodes, gl_weights)
    return _QUADRATURE_CACHE[key]


_EXP_ARG_MIN = -80.0
"""Floor on the arguments of ``exp`` in the quadratures: ``exp(-80) = 1.8e-35`` is still a normal
float32, and CPU ``exp`` takes a slow path (about 50x slower) on inputs that underflow."""


class _NarrowExpectedLogSech2(torch.autograd.Function):
    """Gauss-Hermite ``E[log sech^2(u)]``, ``u ~ N(mean, std^2)``, with its gradient from the same
    nodes: ``d/dmean = E[f'(u)]``, ``d/dstd = E[f'(u) x]`` for ``u = mean + std x`` and
    ``f'(u) = -2 tanh(u)``.

    Why a custom function: autograd through the elementwise quadrature kept a dozen ``[..., N]``
    intermediates per call and was a third of a learner step on the UAV model; this is one pass
    with two small matrix products, the exact derivative of the same quadrature (gradcheck-tested).
    ``log sech^2 u = 2 log 2 - 2|u| - 2 log(1 + exp(-2|u|))``; ``log(1 + y)`` instead of
    ``log1p(y)`` (3x slower here) loses at most 6e-8 absolute in float32 when ``y`` is tiny.
    """

    @staticmethod
    def forward(ctx: Any, mean: Tensor, std: Tensor) -> Tensor:
        gh_x, gh_w, _, _ = _quadrature(mean.dtype, mean.device)
        u = torch.addcmul(mean.unsqueeze(-1), std.unsqueeze(-1), gh_x)  # [..., N]
        a = u.abs()
        y = torch.exp(a.mul(-2.0).clamp_(min=_EXP_ARG_MIN))
        value = 2.0 * math.log(2.0) - 2.0 * ((a + torch.log(1.0 + y)) @ gh_w)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            moments = torch.tanh(u) @ torch.stack((gh_w, gh_w * gh_x), dim=1)  # [..., 2]
            ctx.save_for_backward(-2.0 * moments[..., 0], -2.0 * moments[..., 1])
        return value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        d_mean, d_std = ctx.saved_tensors
        return grad * d_mean, grad * d_std


def _wide_expected_log_sech2(mean: Tensor, std: Tensor) -> Tensor:
    """The ``std > 1`` rule of :func:`_expected_log_sech2` (autograd through it)."""
    _, _, gl_x, gl_w = _quadrature(mean.dtype, mean.device)
    m, s = mean.unsqueeze(-1), std.unsqueeze(-1)
    z = mean / std
    e_abs = std * math.sqrt(2.0 / math.pi) * torch.exp(-0.5 * z * z) + mean * torch.erf(
        z / math.sqrt(2.0)
    )
    norm = 1.0 / (s * math.sqrt(2.0 * math.pi))

    def gauss(x: Tensor) -> Tensor:
        return torch.exp((-0.5 * (x / s) ** 2).clamp(min=_EXP_ARG_MIN))

    pdf_folded = norm * (gauss(gl_x - m) + gauss(gl_x + m))
    remainder = (-2.0 * F.softplus(-2.0 * gl_x) * pdf_folded * gl_w).sum(-1)
    return 2.0 * math.log(2.0) - 2.0 * e_abs + remainder


def _expected_log_sech2(mean: Tensor, std: Tensor) -> Tensor:
    """``E[log(1 - tanh(u)^2)]`` for ``u ~ N(mean, std^2)``, elementwise; deterministic, smooth.

    There is no closed form. The integrand is smooth but bends on a scale of 1 around ``u = 0``
    and grows like ``-2|u|``, so one rule does not fit all widths:

    * ``std <= 1``: 16-node Gauss-Hermite on the integrand (error < 2e-5 nat per dimension,
      largest near ``std = 1``; 32 nodes give < 1e-7 at twice the cost, about 0.9 ms of a
      UAV learner step; the UAV preset weighs the entropy by at most 0.05, so there the
      difference changes the loss by less than 1e-5), in :class:`_NarrowExpectedLogSech2`.
    * ``std > 1``: split ``log sech^2 u = 2 log 2 - 2|u| - 2 softplus(-2|u|)``; ``E|u|`` is the
      folded-normal mean (closed form) and the remainder, bounded and negligible past |u| = 10,
      is integrated against the Gaussian density with 16-node Gauss-Legendre on ``[0, 10]``,
      folded at its kink ``u = 0`` (error < 1e-8). Plain Gauss-Hermite would be off by ~0.08 nat
      per dimension at std = e^2.

    The wide rule is evaluated only on the elements that need it (none, for a policy whose
    std stays below 1; the ``any`` is one host sync) and written over the narrow result with an
    out-of-place ``index_put``, so each element's gradient comes from its own rule.
    """
    out = _NarrowExpectedLogSech2.apply(mean, std)
    wide = std > _NARROW_MAX_STD
    if bool(wide.any()):
        idx = wide.nonzero(as_tuple=True)
        out = out.index_put(idx, _wide_expected_log_sech2(mean[idx], std[idx]))
    return out


class SquashedGaussianDistribution(BoundedContinuousDistribution):
    """Diagonal Gaussian squashed by ``tanh`` and rescaled to ``[low, high]``.

    Params: ``mean`` and ``log_std``, both ``[..., D]``; ``log_std`` is clamped to
    ``[log_std_min, log_std_max]`` (default ``[-5, 2]``, see :data:`LOG_STD_MIN`/
    :data:`LOG_STD_MAX`). The clamp is a safety net with zero gradient outside the range, so heads
    should keep ``log_std`` inside it (e.g. a zero-initialised bias).

    Stored action: the pre-squash sample ``u ~ N(mean, std^2)``. Env action:
    ``a = low + (tanh(u) + 1) / 2 * (high - low)`` (``torch.lerp``, so ``|u| >~ 9`` gives exactly
    ``low``/``high`` in float32). Density of ``a`` by change of variables::

        log pi(a) = sum_d [log N(u_d) - log(1 - tanh(u_d)^2) - log((high_d - low_d) / 2)]

    with the stable ``log(1 - tanh^2)`` of :func:`_log_sech2`, finite for any finite ``u``.
    ``torch.distributions.TransformedDistribution`` would take ``a`` and invert it with ``atanh``,
    which is infinite at the bounds, and has no entropy; hence this class.

    Entropy: the exact entropy of ``a``, ``H(N) + sum_d E[log(1 - tanh(u_d)^2)] +
    log((high_d - low_d) / 2)``, with the expectation by deterministic quadrature
    (:func:`_expected_log_sech2`), so it is consistent with ``log_prob`` (``E[-log_prob] =
    entropy``), differentiable and noise-free. The common alternative, the pre-squash Gaussian
    entropy, grows without bound in ``std``, so an entropy bonus pushes ``std`` to its clamp and
    the squashed policy to the bounds (bang-bang); the true entropy is at most ``log(volume)``
    (uniform) and is maximal at ``mean = 0``, ``std ~= 0.86``.

    Mode: ``u = mean``, i.e. ``a = squash(mean)``, the per-dimension median of ``a`` (``tanh`` is
    monotone); the density's own mode is not used because it can sit on the bounds.
    """

    def __init__(
        self,
        mean: Tensor,
        log_std: Tensor,
        low: BoundLike = -1.0,
        high: BoundLike = 1.0,
        *,
        log_std_min: float = LOG_STD_MIN,
        log_std_max: float = LOG_STD_MAX,
        check_bounds: bool = True,
    ) -> None:
        if mean.dim() < 1 or mean.shape != log_std.shape:
            raise ValueError(
                f"mean and log_std must both have shape [..., D], got {tuple(mean.shape)} and "
                f"{tuple(log_std.shape)}"
            )
        if not log_std_min < log_std_max:
            raise ValueError(f"need log_std_min < log_std_max, got {log_std_min}, {log_std_max}")
        self.mean = mean
        self.log_std = log_std.clamp(log_std_min, log_std_max)
        self.std = self.log_std.exp()
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        self.low, self.high = _as_bounds(low, high, mean, check_bounds)
        half_range = torch.broadcast_to((self.high - self.low) / 2.0, (mean.shape[-1],))
        self._log_half_range = torch.log(half_range)  # [D]
        self._log_half_volume = self._log_half_range.sum()

    @property
    def batch_shape(self) -> torch.Size:
        return self.mean.shape[:-1]

    @property
    def action_dim(self) -> int:
        return self.mean.shape[-1]

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            noise = torch.randn(
                self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device
            )
            return self.mean + self.std * noise

    def mode_with_grad(self) -> Tensor:
        return self.mean

    def log_prob(self, action: Tensor) -> Tensor:
        z = (action - self.mean) / self.std
        log_normal = -0.5 * z * z - self.log_std - 0.5 * math.log(2.0 * math.pi)
        return (log_normal - _log_sech2(action)).sum(-1) - self._log_half_volume

    def entropy(self) -> Tensor:
        gaussian = 0.5 + 0.5 * math.log(2.0 * math.pi) + self.log_std
        squash = _expected_log_sech2(self.mean, self.std)
        return (gaussian + squash).sum(-1) + self._log_half_volume

    def log_prob_dims(self, action: Tensor) -> Tensor:
        z = (action - self.mean) / self.std
        log_normal = -0.5 * z * z - self.log_std - 0.5 * math.log(2.0 * math.pi)
        return log_normal - _log_sech2(action) - self._log_half_range

    def entropy_dims(self) -> Tensor:
        gaussian = 0.5 + 0.5 * math.log(2.0 * math.pi) + self.log_std
        return gaussian + _expected_log_sech2(self.mean, self.std) + self._log_half_range

    def to_env(self, action: Tensor) -> Tensor:
        unit = (torch.tanh(action) + 1.0) / 2.0
        return torch.lerp(self.low, self.high, unit).clamp(self.low, self.high)

    def select(self, index: Tensor) -> Self:
        self._check_select(index)
        return type(self)(
            _gather_component(self.mean, index),
            _gather_component(self.log_std, index),
            self.low,
            self.high,
            log_std_min=self.log_std_min,
            log_std_max=self.log_std_max,
        )


class BetaDistribution(BoundedContinuousDistribution):
    """Independent Beta per dimension on ``[0, 1]^D``, rescaled to ``[low, high]``.

    Params: ``raw_alpha``, ``raw_beta`` ``[..., D]`` (any real); the concentrations are
    ``softplus(raw) + 1 > 1`` (Chou et al. 2017). With both > 1 the density is unimodal, bounded
    and zero at the bounds: with a concentration < 1 it is infinite at a bound, so log-probs (and
    V-trace ratios) explode near it and the policy can collapse onto the bound.

    Stored action: ``y`` in ``[0, 1]^D``; env action ``lerp(low, high, y)``. ``log_prob`` clamps
    ``y`` to ``[eps, 1 - eps]`` (default :data:`BETA_EPS`), so it is finite at exactly 0 and 1
    (float32 samples can round onto them). Log-density and exact entropy come from
    ``td.Beta``, shifted by ``-/+ sum_d log(high_d - low_d)`` for the rescaling. Sampling uses the
    same Dirichlet kernel as ``td.Beta`` (``torch._sample_dirichlet``), called directly because
    it accepts a ``torch.Generator``.

    Mode: ``(alpha - 1) / (alpha + beta - 2)``, the true mode (interior because both > 1); 0.5 if
    both concentrations round to exactly 1.
    """

    def __init__(
        self,
        raw_alpha: Tensor,
        raw_beta: Tensor,
        low: BoundLike = -1.0,
        high: BoundLike = 1.0,
        *,
        eps: float = BETA_EPS,
        check_bounds: bool = True,
    ) -> None:
        if raw_alpha.dim() < 1 or raw_alpha.shape != raw_beta.shape:
            raise ValueError(
                f"raw_alpha and raw_beta must both have shape [..., D], got "
                f"{tuple(raw_alpha.shape)} and {tuple(raw_beta.shape)}"
            )
        if not 0.0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        self.raw_alpha = raw_alpha
        self.raw_beta = raw_beta
        self.alpha = beta_concentration(raw_alpha)
        self.beta = beta_concentration(raw_beta)
        self.eps = eps
        self.low, self.high = _as_bounds(low, high, raw_alpha, check_bounds)
        volume = torch.broadcast_to(self.high - self.low, (raw_alpha.shape[-1],))
        self._log_range = torch.log(volume)  # [D]
        self._log_volume = self._log_range.sum()
        self._beta = td.Beta(self.alpha, self.beta, validate_args=False)

    @property
    def batch_shape(self) -> torch.Size:
        return self.alpha.shape[:-1]

    @property
    def action_dim(self) -> int:
        return self.alpha.shape[-1]

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            concentration = torch.stack([self.alpha, self.beta], dim=-1)
            return torch._sample_dirichlet(concentration, generator=generator)[..., 0]

    def mode_with_grad(self) -> Tensor:
        return beta_mode(self.alpha, self.beta)

    def log_prob(self, action: Tensor) -> Tensor:
        y = action.clamp(self.eps, 1.0 - self.eps)
        return self._beta.log_prob(y).sum(-1) - self._log_volume

    def entropy(self) -> Tensor:
        return self._beta.entropy().sum(-1) + self._log_volume

    def log_prob_dims(self, action: Tensor) -> Tensor:
        return self._beta.log_prob(action.clamp(self.eps, 1.0 - self.eps)) - self._log_range

    def entropy_dims(self) -> Tensor:
        return self._beta.entropy() + self._log_range

    def to_env(self, action: Tensor) -> Tensor:
        return torch.lerp(self.low, self.high, action).clamp(self.low, self.high)

    def select(self, index: Tensor) -> Self:
        self._check_select(index)
        return type(self)(
            _gather_component(self.raw_alpha, index),
            _gather_component(self.raw_beta, index),
            self.low,
            self.high,
            eps=self.eps,
        )


# --------------------------------------------------------------------------------------------
# Hybrid
# --------------------------------------------------------------------------------------------


class HybridFactorizedDistribution(ActionDistribution[HybridAction]):
    """Independent discrete and continuous parts: ``pi(k, x) = pi_d(k) pi_c(x)``.

    ``discrete``: batch ``[...]`` over ``K``; ``continuous``: batch ``[...]``, event ``[D]``.
    Parts (index 0 discrete, 1 continuous): ``log pi_d(k)``, ``log pi_c(x)``; entropy
    ``H(d) + H(c)``. Every continuous dimension is always sampled and scored, even those the env
    ignores for the chosen ``k``; use :class:`HybridGatedDistribution` when parameters belong to
    one discrete action.
    """

    num_parts: ClassVar[int] = 2

    def __init__(
        self, discrete: CategoricalDistribution, continuous: BoundedContinuousDistribution
    ) -> None:
        if discrete.batch_shape != continuous.batch_shape:
            raise ValueError(
                f"discrete batch shape {tuple(discrete.batch_shape)} != continuous batch shape "
                f"{tuple(continuous.batch_shape)}"
            )
        self.discrete = discrete
        self.continuous = continuous

    @property
    def batch_shape(self) -> torch.Size:
        return self.discrete.batch_shape

    def sample(self, generator: torch.Generator | None = None) -> HybridAction:
        return HybridAction(self.discrete.sample(generator), self.continuous.sample(generator))

    def mode(self) -> HybridAction:
        return HybridAction(self.discrete.mode(), self.continuous.mode())

    def choice_mode(self, noise: Tensor) -> HybridAction:
        return HybridAction(self.discrete.choice_mode(noise), self.continuous.mode())

    def log_prob_parts(self, action: HybridAction) -> Tensor:
        return torch.stack(
            [self.discrete.log_prob(action.discrete), self.continuous.log_prob(action.continuous)],
            dim=-1,
        )

    def entropy_parts(self) -> Tensor:
        return torch.stack([self.discrete.entropy(), self.continuous.entropy()], dim=-1)

    def to_env(self, action: HybridAction) -> HybridAction:
        return HybridAction(action.discrete, self.continuous.to_env(action.continuous))


class HybridGatedDistribution(ActionDistribution[HybridAction]):
    """Parameterised actions: one continuous parameter set per discrete action.

    ``discrete``: batch ``[...]`` over ``K``; ``continuous``: batch ``[..., K]``, event ``[D]``
    (the head outputs ``[..., K, D]`` parameters). Only the chosen action's set counts::

        log pi(k, x) = log pi_d(k) + log pi_c(x | k)

    computed by gathering the ``k``-th set before scoring, so the other sets get exactly zero
    gradient and never touch the result. Sampling draws ``k`` then ``x`` from set ``k``; the mode
    is ``argmax k`` then set ``k``'s mode. Exact entropy (chain rule)::

        H = H(pi_d) + sum_k pi_d(k) H(pi_c | k)

    with ``H(pi_c | k)`` the continuous kind's entropy. Parts: ``[log pi_d(k), log pi_c(x | k)]``
    and ``[H(pi_d), sum_k pi_d(k) H(pi_c | k)]``.
    """

    num_parts: ClassVar[int] = 2

    def __init__(
        self, discrete: CategoricalDistribution, continuous: BoundedContinuousDistribution
    ) -> None:
        expected = (*discrete.batch_shape, discrete.num_actions)
        if tuple(continuous.batch_shape) != expected:
            raise ValueError(
                f"gated continuous batch shape must be [..., K] = {expected}, got "
                f"{tuple(continuous.batch_shape)}"
            )
        self.discrete = discrete
        self.continuous = continuous

    @property
    def batch_shape(self) -> torch.Size:
        return self.discrete.batch_shape

    def sample(self, generator: torch.Generator | None = None) -> HybridAction:
        k = self.discrete.sample(generator)
        return HybridAction(k, self.continuous.select(k).sample(generator))

    def mode(self) -> HybridAction:
        k = self.discrete.mode()
        return HybridAction(k, self.continuous.select(k).mode())

    def choice_mode(self, noise: Tensor) -> HybridAction:
        k = self.discrete.choice_mode(noise)
        return HybridAction(k, self.continuous.select(k).mode())

    def log_prob_parts(self, action: HybridAction) -> Tensor:
        log_pc = self.continuous.select(action.discrete).log_prob(action.continuous)
        return torch.stack([self.discrete.log_prob(action.discrete), log_pc], dim=-1)

    def entropy_parts(self) -> Tensor:
        h_c = (self.discrete.probs * self.continuous.entropy()).sum(-1)
        return torch.stack([self.discrete.entropy(), h_c], dim=-1)

    def to_env(self, action: HybridAction) -> HybridAction:
        # The bounds are shared by all K sets, so the full distribution maps any set's action.
        return HybridAction(action.discrete, self.continuous.to_env(action.continuous))


def owner_matrix(segments: Sequence[int], device: torch.device | None = None) -> Tensor:
    """``[K, D]`` bool: ``owner[k, d]`` iff dimension ``d`` of the concatenated parameters
    belongs to discrete action ``k`` (``segments[k] = D_k`` consecutive dimensions each)."""
    sizes = torch.tensor(segments, dtype=torch.long, device=device)
    ends = sizes.cumsum(0)[:, None]
    d = torch.arange(int(sizes.sum()), device=device)
    return (d >= ends - sizes[:, None]) & (d < ends)


class HybridParameterizedDistribution(HybridFactorizedDistribution):
    """Parameterised actions where action ``k`` owns its own parameters ``x_k`` (a Box of
    ``D_k`` dimensions, possibly 0), concatenated into ``x = [x_1, ..., x_K]`` of ``D`` dims.

    ``discrete``: batch ``[...]`` over ``K``; ``continuous``: batch ``[...]``, event ``[D]``;
    ``owner``: ``[K, D]`` bool (:func:`owner_matrix`). The env reads only ``x_k`` for the chosen
    ``k``, so only those dimensions count (the others are marginalised out)::

        log pi(k, x) = log pi_d(k) + sum_{d in k} log pi_c,d(x_d)
        H = H(pi_d) + sum_k pi_d(k) sum_{d in k} H(pi_c,d)

    (the chain rule; the dimensions are independent given the observation). Sampling, mode and
    ``to_env`` are the factorised head's: every dimension is drawn (one draw per row, cheap)
    and stored, so the action has a fixed shape, but the unowned ones never touch the
    log-prob, the entropy's gradient through a dimension is weighted by the probability of its
    owner, and a ``D_k = 0`` action contributes ``log pi_c = 0`` (a ratio of 1). Unlike
    :class:`HybridGatedDistribution` there is one parameter set of ``D`` dimensions, not ``K``
    sets of ``D``: action ``k``'s parameters are its own already.
    Parts: ``[log pi_d(k), log pi_c(x_k)]`` and ``[H(pi_d), sum_k pi_d(k) H(pi_c,k)]``.
    """

    def __init__(
        self,
        discrete: CategoricalDistribution,
        continuous: BoundedContinuousDistribution,
        owner: Tensor,
    ) -> None:
        super().__init__(discrete, continuous)
        expected = (discrete.num_actions, continuous.action_dim)
        if owner.dtype != torch.bool or tuple(owner.shape) != expected:
            raise ValueError(
                f"owner must be a bool [K, D] = {expected} tensor, got {owner.dtype} "
                f"{tuple(owner.shape)}"
            )
        self.owner = owner

    def log_prob_parts(self, action: HybridAction) -> Tensor:
        own = self.owner[action.discrete.long()]  # [..., D]
        per_dim = self.continuous.log_prob_dims(action.continuous)
        log_pc = torch.where(own, per_dim, torch.zeros_like(per_dim)).sum(-1)
        return torch.stack([self.discrete.log_prob(action.discrete), log_pc], dim=-1)

    def entropy_parts(self) -> Tensor:
        p_owner = self.discrete.probs @ self.owner.to(self.discrete.probs.dtype)  # [..., D]
        h_c = (p_owner * self.continuous.entropy_dims()).sum(-1)
        return torch.stack([self.discrete.entropy(), h_c], dim=-1)


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------

DistributionKind: TypeAlias = Literal[
    "categorical",
    "squashed_gaussian",
    "beta",
    "hybrid_factorized",
    "hybrid_gated",
    "hybrid_parameterized",
]
ContinuousKind: TypeAlias = Literal["squashed_gaussian", "beta"]

_WITH_LOGITS = ("categorical", "hybrid_factorized", "hybrid_gated", "hybrid_parameterized")
_CONTINUOUS_PARAMS: dict[str, tuple[str, str]] = {
    "squashed_gaussian": ("mean", "log_std"),
    "beta": ("raw_alpha", "raw_beta"),
}


def _check_kinds(kind: str, continuous_kind: str) -> None:
    if kind not in get_args(DistributionKind):
        raise ValueError(
            f"unknown distribution kind {kind!r}; expected one of {get_args(DistributionKind)}"
        )
    if continuous_kind not in _CONTINUOUS_PARAMS:
        raise ValueError(
            f"unknown continuous kind {continuous_kind!r}; "
            f"expected one of {tuple(_CONTINUOUS_PARAMS)}"
        )


def param_shapes(
    kind: DistributionKind,
    *,
    num_actions: int = 0,
    action_dim: int = 0,
    continuous_kind: ContinuousKind = "squashed_gaussian",
) -> dict[str, tuple[int, ...]]:
    """Per-sample shape of each raw parameter a head must output for ``kind`` (without ``[...]``).

    ``continuous_kind`` applies to ``"hybrid_*"``; for the plain continuous kinds ``kind`` itself
    decides. E.g. ``param_shapes("hybrid_gated", num_actions=6, action_dim=6)`` is
    ``{"logits": (6,), "mean": (6, 6), "log_std": (6, 6)}``.
    """
    _check_kinds(kind, continuous_kind)
    shapes: dict[str, tuple[int, ...]] = {}
    if kind in _WITH_LOGITS:
        if num_actions < 1:
            raise ValueError(f"{kind} needs num_actions >= 1, got {num_actions}")
        shapes["logits"] = (num_actions,)
    if kind != "categorical":
        if action_dim < 1:
            raise ValueError(f"{kind} needs action_dim >= 1, got {action_dim}")
        cont = kind if kind in _CONTINUOUS_PARAMS else continuous_kind
        event = (num_actions, action_dim) if kind == "hybrid_gated" else (action_dim,)
        for name in _CONTINUOUS_PARAMS[cont]:
            shapes[name] = event
    return shapes


def make_distribution(
    kind: DistributionKind,
    params: Mapping[str, Tensor],
    *,
    continuous_kind: ContinuousKind = "squashed_gaussian",
    low: BoundLike = -1.0,
    high: BoundLike = 1.0,
    mask: Tensor | None = None,
    owner: Tensor | None = None,
    **continuous_kwargs: Any,
) -> ActionDistribution[Any]:
    """Build a distribution from raw head outputs named as in :func:`param_shapes`.

    ``params`` must hold exactly the names :func:`param_shapes` lists (an extra name is an error,
    so a typo cannot silently fall back to a default). ``low``/``high`` are the Box bounds of the
    continuous part, ``mask`` the optional discrete action mask, ``continuous_kwargs`` go to the
    continuous constructor (``log_std_min``/``log_std_max`` or ``eps``). ``owner`` (``[K, D]``
    bool, :func:`owner_matrix`) is required for ``hybrid_parameterized`` and only allowed there.
    """
    _check_kinds(kind, continuous_kind)
    cont = kind if kind in _CONTINUOUS_PARAMS else continuous_kind
    expected = set(_CONTINUOUS_PARAMS[cont]) if kind != "categorical" else set()
    if kind in _WITH_LOGITS:
        expected.add("logits")
    if set(params) != expected:
        raise ValueError(f"{kind} ({cont}) needs params {sorted(expected)}, got {sorted(params)}")
    if (owner is not None) != (kind == "hybrid_parameterized"):
        raise ValueError(f"owner is required for hybrid_parameterized only, got kind {kind!r}")

    if kind == "categorical":
        return CategoricalDistribution(params["logits"], mask)
    first, second = _CONTINUOUS_PARAMS[cont]
    cls = SquashedGaussianDistribution if cont == "squashed_gaussian" else BetaDistribution
    continuous = cls(params[first], params[second], low, high, **continuous_kwargs)
    if kind in _CONTINUOUS_PARAMS:
        return continuous
    discrete = CategoricalDistribution(params["logits"], mask)
    if kind == "hybrid_factorized":
        return HybridFactorizedDistribution(discrete, continuous)
    if owner is not None:
        return HybridParameterizedDistribution(discrete, continuous, owner)
    return HybridGatedDistribution(discrete, continuous)
