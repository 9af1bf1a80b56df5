"""``IMPALAConfig``: every knob of the IMPALA learner, typed and validated.

Defaults follow the paper's Table G.1 where it applies (RMSProp with epsilon 0.01 and decay
0.99, global-norm gradient clipping at 40, baseline cost 0.5, rho_bar = c_bar = 1) and are
otherwise sized for small control problems on a CPU.
"""

from __future__ import annotations

import dataclasses

from impala_hybrid.validation import ConfigError, spec, validate


@dataclasses.dataclass(frozen=True)
class IMPALAConfig:
    """Learner hyper-parameters (see module docstring)."""

    unroll_length: int = spec(32, "steps per unroll (T)", lo=1)
    batch_size: int = spec(32, "unrolls per learner step (B)", lo=1)
    gamma: float = spec(0.99, "discount", lo=0.0, hi=1.0)
    lam: float = spec(1.0, "V-trace lambda (traces c_t = lam min(c_bar, rho_t))", lo=0.0, hi=1.0)
    rho_bar: float = spec(1.0, "clip of the importance weight in the TD term", lo=0.0, lo_open=True)
    c_bar: float = spec(
        1.0, "clip of the trace coefficients; must be <= rho_bar", lo=0.0, lo_open=True
    )
    pg_rho_bar: float | None = spec(
        None, "clip of the importance weight in the policy gradient; null: rho_bar",
        lo=0.0, lo_open=True,
    )  # fmt: skip
    pg_clip_eps: float | None = spec(
        None, "PPO-style clipped surrogate against the behaviour policy (APPO) with this "
        "clip range instead of IMPALA's rho-weighted policy gradient; null: IMPALA's",
        lo=0.0, hi=1.0, lo_open=True, hi_open=True,
    )  # fmt: skip
    ratio_mode: str = spec(
        "joint", "hybrid ratios: clip the joint product or each component",
        choices=("joint", "per_component"),
    )  # fmt: skip
    discrete_pg: str = spec(
        "sampled", "policy gradient of the discrete choice: sampled (the taken action's "
        "advantage, as in the paper) or expected (every choice weighted by its probability and "
        "its advantage Q(x, k) - sum_j pi(j) Q(x, j) from a learned action-advantage head; "
        "ops.losses.expected_policy_gradient_loss)",
        choices=("sampled", "expected"),
    )  # fmt: skip
    continuous_pg: str = spec(
        "sampled", "policy gradient of the continuous part: sampled (the score function, "
        "A_s grad log pi(a_s), as in the paper), reparameterized (the gradient of a learned "
        "critic Q(x, k, a) = w . V(x) + c(x, k, a) through a = tanh(mean + std eps), as in "
        "SAC; c regresses to the one-step target r_s + gamma V(x_{s+1})) or qprop (the score "
        "function with that critic's first-order Taylor expansion as control variate and its "
        "analytic gradient added back, Gu et al. 2017); the last two need squashed-Gaussian "
        "continuous or factorised hybrid actions",
        choices=("sampled", "reparameterized", "qprop"),
    )  # fmt: skip
    critic_target: str = spec(
        "one_step", "continuous_pg reparameterized or qprop: what the action critic regresses "
        "to: one_step, r_s + gamma V(x_{s+1}) (SAC's), or vtrace, V-trace's q_s = r_s + gamma "
        "v_{s+1} (the rest of the unroll's rewards too)",
        choices=("one_step", "vtrace"),
    )  # fmt: skip
    qprop_adaptive: bool = spec(
        True, "continuous_pg = qprop: weight the control variate and its analytic term by "
        "eta = cov(A, cv) / var(cv) per batch, clipped to [0, 1] (the variance-minimising "
        "weight; 0 where the critic does not explain the advantages, leaving the score "
        "function); false: eta = 1 (plain Q-Prop)",
    )  # fmt: skip
    baseline_coef: float = spec(
        0.5, "weight of the value loss (and of the action-value losses with discrete_pg = "
        "expected or continuous_pg = reparameterized or qprop)", lo=0.0,
    )  # fmt: skip
    entropy_coef: float = spec(0.01, "entropy bonus weight at the start", lo=0.0)
    entropy_coef_discrete: float | None = spec(
        None, "hybrid actions: entropy weight of the discrete part (null: entropy_coef); "
        "follows entropy_coef's schedule in proportion", lo=0.0,
    )  # fmt: skip
    entropy_coef_continuous: float | None = spec(
        None, "hybrid actions: entropy weight of the continuous part (null: entropy_coef)",
        lo=0.0,
    )  # fmt: skip
    entropy_moves_means: bool = spec(
        True, "Gaussian continuous parts: the entropy bonus's gradient reaches the means too; "
        "for the squashed Gaussian its log-Jacobian term pulls every mean toward the centre of "
        "its range, hardest near the bounds (docs/results.md: it drags a server that should "
        "run at full speed down to half); false: the bonus moves only the log-stds, so it sets "
        "how widely the policy explores, not where it acts (no effect on Beta heads, which "
        "have no mean parameter)",
    )  # fmt: skip
    log_barrier_coef: float = spec(
        0.0, "weight of the log-barrier regulariser of the discrete choice, -mean_k log pi(k|x) "
        "(ops.losses.log_barrier_loss): unlike the entropy bonus it still pushes back an "
        "action whose probability is near 0; 0 disables it", lo=0.0,
    )  # fmt: skip
    target_entropy_discrete: float | None = spec(
        None, "hybrid actions: adapt the discrete part's entropy weight (starting from its "
        "coefficient above) so that its mean entropy tracks this target in nats, at most "
        "log K (SAC's automatic temperature, per component); null: a fixed weight",
    )  # fmt: skip
    target_entropy_continuous: float | None = spec(
        None, "hybrid actions: the same for the continuous part (nats; may be negative)"
    )
    target_entropy_lr: float = spec(
        0.01, "step size of the log entropy weights toward their targets, per learner step",
        lo=0.0, lo_open=True,
    )  # fmt: skip
    entropy_coef_final: float | None = spec(
        None, "entropy weight at the end (linear schedule); null keeps it constant", lo=0.0
    )
    critic_warmup_steps: int = spec(
        0, "env steps at the start during which only the value losses train (the policy "
        "stays as initialised, e.g. warm-started, until its critic knows it)", lo=0,
    )  # fmt: skip
    optimizer: str = spec("adam", "optimizer", choices=("adam", "rmsprop"))
    lr: float = spec(6e-4, "learning rate at the start", lo=0.0, lo_open=True)
    lr_final: float | None = spec(
        None, "learning rate at the end (linear schedule); null keeps it constant", lo=0.0
    )
    adam_eps: float = spec(1e-5, "Adam epsilon", lo=0.0, lo_open=True)
    rmsprop_eps: float = spec(0.01, "RMSProp epsilon (paper: 0.01)", lo=0.0, lo_open=True)
    rmsprop_alpha: float = spec(0.99, "RMSProp decay (paper: 0.99)", lo=0.0, hi=1.0)
    max_grad_norm: float = spec(40.0, "global gradient-norm clip (paper: 40)", lo=0.0, lo_open=True)
    reward_scale: float = spec(
        1.0, "rewards are multiplied by this before learning", lo=0.0, lo_open=True
    )
    reward_clip: float | None = spec(
        None, "clip scaled rewards to [-x, x] (the paper clips Atari rewards to 1)",
        lo=0.0, lo_open=True,
    )  # fmt: skip
    normalize_advantages: bool = spec(
        False, "standardise the advantages q_s - V(x_s) per batch, before the rho^pg weighting"
    )
    popart: bool = spec(
        False, "PopArt: learn values normalised by running target statistics (per objective)"
    )
    popart_beta: float = spec(
        1e-2, "PopArt statistics step size (per learner step)", lo=0.0, hi=1.0, lo_open=True
    )
    replay_proportion: float = spec(
        0.0, "fraction of each learner batch replayed from past unrolls (0 disables replay)",
        lo=0.0, hi=1.0, hi_open=True,
    )  # fmt: skip
    replay_capacity: int = spec(1024, "unrolls kept for replay (oldest evicted first)", lo=1)
    lagrange: bool = spec(
        False, "price the env's constraint costs (info['constraint_costs'], e.g. UAVNet) with "
        "learned Lagrange multipliers (PID Lagrangian, ops/lagrange.py) instead of fixed "
        "hinges; needs critic = 'vector'",
    )  # fmt: skip
    lagrange_ki: float = spec(
        0.05, "integral gain: each multiplier grows by this times its batch's mean violation "
        "(cost - limit) per learner step (Tessler et al. 2019's multiplier learning rate)",
        lo=0.0,
    )  # fmt: skip
    lagrange_kp: float = spec(0.0, "proportional gain (Stooke et al. 2020)", lo=0.0)
    lagrange_kd: float = spec(0.0, "derivative gain on the rising cost (Stooke et al.)", lo=0.0)
    lagrange_ema: float = spec(
        0.1, "weight of the newest batch in the P and D terms' moving averages",
        lo=0.0, hi=1.0, lo_open=True,
    )  # fmt: skip
    lagrange_init: float = spec(0.0, "the multipliers at the start", lo=0.0)
    lagrange_max: float = spec(100.0, "cap on each multiplier", lo=0.0, lo_open=True)

    def __post_init__(self) -> None:
        validate(self)
        if self.lagrange and self.lagrange_init > 0.0 and self.lagrange_ki == 0.0:
            raise ConfigError(
                f"IMPALAConfig.lagrange_init = {self.lagrange_init!r} is invalid with "
                "lagrange_ki = 0: the multipliers live in the integral term; set "
                "lagrange_ki > 0 or lagrange_init = 0"
            )
        if self.c_bar > self.rho_bar:
            raise ConfigError(
                f"IMPALAConfig.c_bar = {self.c_bar!r} is invalid: V-trace needs "
                f"rho_bar >= c_bar (rho_bar = {self.rho_bar!r})"
            )
