"""Actor-critic losses: hand-computed values, where the gradient goes, masking and reduction."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from impala_hybrid.ops.losses import (
    baseline_loss,
    entropy_loss,
    expected_policy_gradient_loss,
    log_barrier_loss,
    policy_gradient_loss,
)

F64 = torch.float64


def _t(x: list[list[float]] | list[list[list[float]]], grad: bool = False) -> Tensor:
    return torch.tensor(x, dtype=F64, requires_grad=grad)


def test_policy_gradient_loss_hand_computed_and_gradient() -> None:
    log_probs = _t([[-1.0, -2.0], [-0.5, -1.0]], grad=True)
    advantages = _t([[1.0, 2.0], [3.0, -1.0]], grad=True)
    loss = policy_gradient_loss(log_probs, advantages)
    # -(-1*1 - 2*2 - 0.5*3 + 1*1) / 4 = 5.5 / 4
    torch.testing.assert_close(loss, torch.tensor(1.375, dtype=F64))
    loss.backward()
    assert log_probs.grad is not None
    torch.testing.assert_close(log_probs.grad, -advantages.detach() / 4)
    assert advantages.grad is None  # advantages are detached inside


def test_baseline_loss_hand_computed_and_gradient() -> None:
    vs = _t([[1.0, 2.0]], grad=True)
    values = _t([[0.0, 4.0]], grad=True)
    loss = baseline_loss(vs, values)
    torch.testing.assert_close(loss, torch.tensor(0.5 * (1.0 + 4.0) / 2, dtype=F64))
    loss.backward()
    assert values.grad is not None
    torch.testing.assert_close(values.grad, _t([[-0.5, 1.0]]))  # -(vs - V) / n
    assert vs.grad is None  # targets are detached inside


def test_baseline_loss_vector_critic_sums_objectives() -> None:
    vs = _t([[[1.0, 0.0, 2.0]], [[0.0, 0.0, 0.0]]])  # [T=2, B=1, K=3]
    values = torch.zeros_like(vs)
    # per step: 0.5 * (1 + 0 + 4) = 2.5 and 0; mean over (t, b) = 1.25
    torch.testing.assert_close(baseline_loss(vs, values), torch.tensor(1.25, dtype=F64))


def test_entropy_loss_is_negative_mean_entropy() -> None:
    entropy = _t([[1.0, 2.0], [3.0, 6.0]], grad=True)
    loss = entropy_loss(entropy)
    torch.testing.assert_close(loss, torch.tensor(-3.0, dtype=F64))
    loss.backward()
    assert entropy.grad is not None
    torch.testing.assert_close(entropy.grad, torch.full_like(entropy, -0.25))


def test_mask_excludes_invalid_steps() -> None:
    log_probs = _t([[-1.0, -2.0], [-0.5, -1.0]], grad=True)
    advantages = _t([[1.0, 2.0], [3.0, -1.0]])
    mask = torch.tensor([[True, False], [True, True]])
    loss = policy_gradient_loss(log_probs, advantages, mask)
    # -(-1 - 1.5 + 1) / 3 = 0.5
    torch.testing.assert_close(loss, torch.tensor(0.5, dtype=F64))
    loss.backward()
    assert log_probs.grad is not None
    assert log_probs.grad[0, 1] == 0.0
    # Garbage in masked entries does not leak in.
    bad_lp, bad_adv = log_probs.detach().clone().requires_grad_(), advantages.clone()
    bad_adv[0, 1] = float("inf")
    bad_loss = policy_gradient_loss(bad_lp, bad_adv, mask)
    torch.testing.assert_close(bad_loss, loss.detach())
    bad_loss.backward()
    assert bad_lp.grad is not None
    torch.testing.assert_close(bad_lp.grad, log_probs.grad)
    # Float mask == bool mask.
    torch.testing.assert_close(entropy_loss(log_probs, mask.to(F64)), entropy_loss(log_probs, mask))


def test_all_masked_gives_zero_with_zero_gradient() -> None:
    values = _t([[1.0, 2.0]], grad=True)
    mask = torch.zeros(1, 2, dtype=torch.bool)
    loss = baseline_loss(_t([[0.0, 0.0]]), values, mask)
    assert loss.item() == 0.0
    loss.backward()
    assert values.grad is not None
    torch.testing.assert_close(values.grad, torch.zeros_like(values))


@pytest.mark.parametrize("reps", [(1, 3), (4, 1), (2, 5)])
def test_mean_reduction_is_invariant_to_repeating_time_and_batch(reps: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    lp, adv, ent = (torch.randn(3, 2, generator=g, dtype=F64) for _ in range(3))
    vs, v = (torch.randn(3, 2, 4, generator=g, dtype=F64) for _ in range(2))
    torch.testing.assert_close(
        policy_gradient_loss(lp.repeat(*reps), adv.repeat(*reps)), policy_gradient_loss(lp, adv)
    )
    torch.testing.assert_close(entropy_loss(ent.repeat(*reps)), entropy_loss(ent))
    torch.testing.assert_close(
        baseline_loss(vs.repeat(*reps, 1), v.repeat(*reps, 1)), baseline_loss(vs, v)
    )


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="log_probs"):
        policy_gradient_loss(torch.zeros(3, 2), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="vs"):
        baseline_loss(torch.zeros(3, 2, 4), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="mask"):
        entropy_loss(torch.zeros(3, 2), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="time-major"):
        entropy_loss(torch.zeros(3))


def test_clipped_surrogate_stops_where_the_ratio_left_the_clip_range() -> None:
    from impala_hybrid.ops.losses import clipped_surrogate_loss

    log_pi = torch.zeros(1, 4, requires_grad=True)
    log_mu = torch.log(torch.tensor([[1.0, 1.5, 0.5, 1.5]]))  # r = 1, 1/1.5, 2, 1/1.5
    adv = torch.tensor([[1.0, 1.0, 1.0, -1.0]])
    clipped_surrogate_loss(log_pi - log_mu, adv, eps=0.2).backward()
    g = log_pi.grad
    assert g is not None
    # r = 1: the plain policy gradient, -A / N; r = 2/3 < 1 - eps with A > 0: still pushes up
    # (the unclipped term is the min); r = 2 > 1 + eps with A > 0: no push; r = 2/3 with A < 0:
    # below 1 - eps in the direction A favours: no push.
    torch.testing.assert_close(g, torch.tensor([[-0.25, -0.25 / 1.5, 0.0, 0.0]]))
    plain = torch.zeros(1, 4, requires_grad=True)
    from impala_hybrid.ops.losses import policy_gradient_loss

    policy_gradient_loss(plain, adv).backward()
    assert plain.grad is not None and plain.grad[0, 0] == g[0, 0]
    with pytest.raises(ValueError, match="eps"):
        clipped_surrogate_loss(log_pi, adv, eps=0.0)


def test_expected_policy_gradient_is_the_mean_of_the_sampled_gradient() -> None:
    """Slow reference, like the theorem: ``sum_k pi(k) A(k) grad log pi(k)`` with ``A(k) =
    Q(k) - sum_j pi(j) Q(j)``, one autograd call per action; and the loss's gradient vanishes
    when every choice has the same value."""
    torch.manual_seed(0)
    t_len, b, k = 3, 2, 4
    logits = torch.randn(t_len, b, k, requires_grad=True)
    q = torch.randn(t_len, b, k)
    expected_policy_gradient_loss(torch.softmax(logits, -1), q).backward()
    fast = logits.grad
    assert fast is not None
    ref = torch.zeros(t_len, b, k)
    for t in range(t_len):
        for i in range(b):
            x = logits.detach()[t, i].clone().requires_grad_(True)
            pi = torch.softmax(x, -1)
            adv = q[t, i] - (pi.detach() * q[t, i]).sum()
            for a in range(k):
                (g,) = torch.autograd.grad(torch.log_softmax(x, -1)[a], x)
                ref[t, i] += pi[a].detach() * adv[a] * g
    torch.testing.assert_close(fast, -ref / (t_len * b))  # a loss: minus the mean ascent step

    flat = torch.randn(t_len, b, k, requires_grad=True)
    same = torch.full((t_len, b, k), 3.0)
    expected_policy_gradient_loss(torch.softmax(flat, -1), same).backward()
    assert flat.grad is not None and flat.grad.abs().max() < 1e-7


def test_expected_policy_gradient_shapes_and_mask() -> None:
    with pytest.raises(ValueError, match="probs shape"):
        expected_policy_gradient_loss(torch.ones(2, 3, 4) / 4, torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"\[T, B, K\]"):
        expected_policy_gradient_loss(torch.ones(2, 4) / 4, torch.zeros(2, 4))
    probs = torch.softmax(torch.randn(2, 3, 4), -1).requires_grad_(True)
    q = torch.randn(2, 3, 4)
    q[1] = float("nan")  # padding
    mask = torch.tensor([[1, 1, 1], [0, 0, 0]])
    loss = expected_policy_gradient_loss(probs, q, mask)
    loss.backward()
    assert torch.isfinite(loss) and probs.grad is not None and torch.isfinite(probs.grad).all()
    assert probs.grad[1].abs().max() == 0.0


def test_log_barrier_matches_the_kl_from_uniform_and_its_gradient() -> None:
    """Slow reference: ``KL(U || pi) = sum_k (1/K) log((1/K) / pi_k)``, a loop over steps, is the
    loss minus ``log K``; the gradient in the logits is ``(pi - 1/K) / (T B)``; and unlike the
    entropy's, it does not vanish for an action whose probability is ~0."""
    torch.manual_seed(1)
    t_len, b, k = 3, 2, 5
    logits = torch.randn(t_len, b, k, dtype=F64, requires_grad=True)
    loss = log_barrier_loss(torch.log_softmax(logits, -1))
    ref = torch.zeros((), dtype=F64)
    for t in range(t_len):
        for i in range(b):
            pi = torch.softmax(logits.detach()[t, i], -1)
            ref += sum((1.0 / k) * torch.log((1.0 / k) / pi[a]) for a in range(k))
    torch.testing.assert_close(loss - torch.log(torch.tensor(k, dtype=F64)), ref / (t_len * b))
    loss.backward()
    pi = torch.softmax(logits.detach(), -1)
    torch.testing.assert_close(logits.grad, (pi - 1.0 / k) / (t_len * b))

    dropped = torch.tensor([[[0.0, 0.0, -30.0]]], dtype=F64, requires_grad=True)  # pi_2 ~ 5e-14
    log_barrier_loss(torch.log_softmax(dropped, -1)).backward()
    assert dropped.grad is not None and dropped.grad[0, 0, 2].item() == pytest.approx(-1.0 / 3)
    entropy_grad = torch.autograd.grad(
        entropy_loss(-(torch.softmax(dropped, -1) * torch.log_softmax(dropped, -1)).sum(-1)),
        dropped,
    )[0]
    assert abs(entropy_grad[0, 0, 2].item()) < 1e-11  # the entropy bonus no longer sees it


def test_log_barrier_leaves_out_illegal_actions_and_masked_steps() -> None:
    logits = torch.randn(2, 3, 4, requires_grad=True)
    allowed = torch.tensor([True, True, False, True])
    masked = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
    log_probs = torch.log_softmax(masked, -1)
    loss = log_barrier_loss(log_probs, allowed)
    legal = torch.log_softmax(logits[..., [0, 1, 3]], -1)
    torch.testing.assert_close(loss, -legal.mean())  # the barrier of the 3-action choice
    loss.backward()
    assert logits.grad is not None and logits.grad[..., 2].abs().max() == 0.0

    nan = torch.log_softmax(torch.randn(2, 3, 4), -1).requires_grad_(True)
    with torch.no_grad():
        nan[1] = float("nan")  # padding
    step_mask = torch.tensor([[1, 1, 1], [0, 0, 0]])
    loss = log_barrier_loss(nan, mask=step_mask)
    loss.backward()
    assert torch.isfinite(loss) and nan.grad is not None and nan.grad[1].abs().max() == 0.0
    with pytest.raises(ValueError, match=r"\[T, B, K\]"):
        log_barrier_loss(torch.zeros(2, 4))
