"""Optimizer statistics in shared memory, so that every A3C worker steps with the same ones.

Mnih et al. (2016), section 4 ("Optimization") and the supplementary optimization details:
RMSProp whose moving average of squared gradients is shared by all threads and updated
without locks was more robust than RMSProp with statistics per thread. Here the
optimizer is torch's own Adam or RMSProp (``algos.impala.learner.make_optimizer``) with its
state made shareable: torch creates that state lazily, at the first step, in whichever
process takes it, where no other process would see it. :func:`share_state` creates it up
front and moves it to shared memory before the workers are forked; every later step updates
it in place (``exp_avg.lerp_``, ``step += 1``, ...), so the workers' steps all reach it.
"""

from __future__ import annotations

import torch


def share_state(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """``optimizer`` with the state of every parameter created and in shared memory.

    Missing state is created by one step with zero gradients, then zeroed: Adam and RMSProp
    (without weight decay, which ``make_optimizer`` never sets) do not move a parameter on a
    zero gradient, and zeroed statistics (step count included) are a fresh optimizer's, so
    the first real step is the one a fresh optimizer would take (tested). State already there
    (loaded from a checkpoint: ``Optimizer.load_state_dict`` makes new tensors) is only moved
    to shared memory, which must happen before the workers are forked.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    missing = [p for p in params if not optimizer.state.get(p)]
    if missing:
        grads = [p.grad for p in params]
        new = {id(p) for p in missing}
        for p in params:
            p.grad = torch.zeros_like(p) if id(p) in new else None
        optimizer.step()
        for p, grad in zip(params, grads, strict=True):
            p.grad = grad
        for p in missing:
            for value in optimizer.state[p].values():
                if isinstance(value, torch.Tensor):
                    value.zero_()
    for p in params:
        for value in optimizer.state[p].values():
            if isinstance(value, torch.Tensor):
                value.share_memory_()
    return optimizer
