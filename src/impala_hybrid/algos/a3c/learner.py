"""One A3C update (Mnih et al. 2016, Algorithm S3): a worker's gradient on its own unroll,
applied without a lock to the shared model.

A worker holds a local copy ``theta'`` of the shared parameters ``theta``. Per update::

    theta' <- theta                                  (sync)
    T steps of the worker's envs with theta'         (runtime/a3c.py: the IMPALA Actor)
    d theta = grad_theta' L(unroll)                  (the loss below, in theta')
    clip the global norm of d theta; theta <- optimizer step with d theta

``theta`` and the optimizer's statistics live in shared memory (``model.share_memory()``,
``optim.share_state``); workers read and write them without locking, as Hogwild! does (Recht
et al. 2011): a worker's step may interleave with another's, and its gradient was taken at
weights the others have moved on from since the sync (the ``policy_lag_*`` metrics count
those updates). Nothing travels but gradients, by way of the shared parameters.

The loss is IMPALA's learner's own (its ``forward``, ``targets`` and ``losses`` stages, so
hybrid heads, vector critics, entropy weights and truncation bootstraps are the same code)
on the worker's unroll, with one change: the behaviour log-probabilities are replaced by the
policy's own. The ratios are then exactly 1 and V-trace's targets are Algorithm S3's n-step
bootstrapped returns, ``R = r_i + gamma R`` backwards from ``R = V(s_T)`` (0 after a
terminal state), with advantages ``R - V(s_i)`` (``lam = 1``; ``lam < 1`` gives GAE, as for
IMPALA). Losses are means over the ``T x E`` steps where the paper sums over ``t_max``
steps (``docs/algorithms.md``); ``tests/algos/test_a3c.py`` checks an update against the
paper's equations written out.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from impala_hybrid.algos.a3c.optim import share_state
from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.algos.impala.learner import Forward, Learner, Targets, make_optimizer
from impala_hybrid.models.actor_critic import ActorCritic
from impala_hybrid.types import Batch


class A3CLearner(Learner):
    """A worker's learner: the loss in its local ``model``, the step on the shared one.

    ``shared=None`` makes the shared learner itself: ``model`` moves to shared memory and
    the optimizer's statistics too; it is its own local copy (sync does nothing), so its
    :meth:`step` is one A3C update in this process. Otherwise ``model`` is a worker's local
    copy and ``shared`` the shared learner, whose optimizer it steps (``optimizer_state =
    'shared'``) or an optimizer of its own over the shared parameters (``'per_worker'``).
    ``kwargs`` are :class:`Learner`'s.
    """

    def __init__(
        self,
        model: ActorCritic,
        config: IMPALAConfig,
        *,
        shared: A3CLearner | None = None,
        optimizer_state: str = "shared",
        **kwargs: Any,
    ) -> None:
        if shared is None:
            self.shared_model = model.share_memory()
            optimizer = share_state(make_optimizer(model.parameters(), config))
        else:
            self.shared_model = shared.model
            optimizer = (
                shared.optimizer
                if optimizer_state == "shared"
                else make_optimizer(shared.model.parameters(), config)
            )
        super().__init__(model, config, optimizer=optimizer, **kwargs)
        if shared is not None:  # the schedules' multipliers, as loaded into the shared one
            self.lr_scale, self.entropy_scale = shared.lr_scale, shared.entropy_scale

    def sync(self) -> None:
        """``theta' <- theta``: the local copy takes the shared weights."""
        if self.model is not self.shared_model:
            self.model.load_state_dict(self.shared_model.state_dict())

    def targets(self, b: Batch, fwd: Forward) -> Targets:
        """On-policy targets: V-trace with the policy's own log-probabilities as the
        behaviour's (ratios exactly 1), i.e. n-step bootstrapped returns (module docstring).
        The actor's log-probs came from the same weights, but computed one step at a time;
        taking the forward pass's own makes the ratios 1 to the last bit."""
        own = dataclasses.replace(b, behaviour_logp=fwd.target_logp.detach())
        return super().targets(own, fwd)

    def _optimizer_step(self) -> None:
        """``d theta -> theta``: the local (clipped) gradients become the shared parameters'
        gradients (the same tensors, no copy) and the optimizer steps them, without a lock."""
        shared = list(self.shared_model.parameters())
        for s, p in zip(shared, self.model.parameters(), strict=True):
            s.grad = p.grad
        self.optimizer.step()
        for s in shared:
            s.grad = None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """:meth:`Learner.load_state_dict`, then the optimizer's new state tensors moved to
        shared memory: only before the workers are forked (``runtime/a3c.py`` starts them at
        its first step)."""
        super().load_state_dict(state)
        share_state(self.optimizer)
