"""Reweighted Score Matching (RSM) agents: DPMD and SDAC (Ma, Chen, Wang, Li, Dai, ICML 2025; ``docs/method.md``).

A diffusion policy ``pi_theta(a | s)`` is a noise-prediction network ``eps_theta(a_k, k / T, s)`` on a discrete
variance-preserving (VP) forward process of ``T = num_steps`` levels (DDPM, Ho et al. 2020):

    q(a_k | a_0) = N(sqrt(abar_k) a_0, (1 - abar_k) I),   abar_k = prod_{j <= k} (1 - beta_j),   k = 1..T

RSM trains it by *reweighted* denoising score matching: the plain DSM loss ``E ||eps_theta(a_k, k, s) - eps||^2``
fits the score of the distribution its clean samples come from; multiplying each term by a weight ``g`` fits the
score of a *reweighted* distribution, the target policy, without ever sampling from that target (the paper's
central result: the minimiser of the reweighted loss is the target's noisy score). Two choices of weight:

* **DPMD** (policy mirror descent): target ``pi_new ∝ pi_old exp(Q / lambda)``, ``pi_old`` the behaviour policy.
  Clean candidates ``a^j ~ pi_old(. | s)`` (``N = group_size`` per state: the current policy's DDPM samples plus
  N(0, ``exploration_noise``^2), clipped), weights
  ``w_j = softmax_j(Q(s, a^j) / lambda)`` (the ``exp`` scheme of :mod:`simpo_bio.weighting` on the group), loss
  ``sum_s sum_j w_sj || eps_theta(a_k^sj, k, s) - eps^sj ||^2 / B`` with ``a_k^sj = sqrt(abar_k) a^j +
  sqrt(1 - abar_k) eps^sj``, ``k ~ U{1..T}``.
* **SDAC** (soft / max-entropy policy): target ``pi* ∝ exp(Q / lambda)``. The weight is the
  target density itself, which is available only through ``Q``; the trick is *reverse sampling*: for a noised
  action ``a_k`` (replay actions noised by the forward process), clean candidates are drawn from the posterior of
  the forward kernel under a flat prior on the action box,

      q~(a_0 | a_k) ∝ q(a_k | a_0) 1[a_0 in [-1, 1]^A]  =  N(a_k / sqrt(abar_k), (1 - abar_k) / abar_k I) on the box,

  i.e. ``a_0^j = (a_k - sqrt(1 - abar_k) eps^j) / sqrt(abar_k)`` with ``eps^j`` a truncated standard normal
  (:func:`reverse_samples`), and ``eps^j`` is exactly the noise that maps ``a_0^j`` to ``a_k``. With
  ``w_j = softmax_j(Q(s, a_0^j) / lambda)`` over the ``K = group_size`` candidates,
  ``sum_j w_j eps^j`` is a self-normalised estimate of ``E_{pi*}[eps | a_k]`` and the loss is
  ``mean_s || eps_theta(a_k, k, s) - sum_j w_sj eps^sj ||^2`` -- the same gradient as
  ``sum_j w_j || eps_theta - eps^j ||^2`` (they differ by a constant). One update: a batch of ``B`` noised replay
  actions, ``K`` reverse samples each, ONE critic call on ``[B K]`` rows, ONE denoiser forward/backward on ``[B]``
  rows; nothing loops over samples in Python.

Both share the harness of :class:`simpo_bio.control.agent.SiMPOAgent`: the double-Q critic and its TD target (next
action one policy sample), the replay buffer, checkpoints and ``act``: collection = best of ``collect_candidates``
policy samples by ``min(Q_1, Q_2)`` plus Gaussian noise of std ``exploration_noise``; evaluation = best of
``eval_candidates`` (paper: action selection by the highest Q among sampled candidates). ``lambda`` is the
``temperature`` of :class:`simpo_bio.weighting.WeightingStep` (Q units; fixed, or tuned by its KL dual with
``auto_temperature``). Choices the paper leaves open are listed in ``docs/method.md`` ("RSM: DPMD and SDAC as
implemented"). The equations are written out in full rather than cited by number: the paper's equation and section
numbers could not be checked against its text when this was written (only a summary of it was at hand).

Imports: torch, :mod:`simpo_bio.control.agent`, :mod:`simpo_bio.diffusion.flow` (the MLP and its time embedding),
:mod:`simpo_bio.weighting`.
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from simpo_bio.control.agent import (
    AgentConfig,
    DoubleQCritic,
    critic_step,
    critic_target,
    first_layer_work,
    forward_no_grad,
    make_adam,
    row_chunk,
)
from simpo_bio.diffusion.flow import VelocityMLP, timestep_embedding
from simpo_bio.weighting import WeightingStep

__all__ = ["NOISE_SCHEDULES", "DPMDAgent", "RSMAgent", "SDACAgent", "ddpm_sample", "noise_schedule",
           "reverse_samples"]  # fmt: skip

#: Variance-preserving forward-process schedules: ``cosine`` (Nichol & Dhariwal 2021; both public RSM implementations
#: use it) and ``linear`` (the discretised VP SDE with a linear ``beta(t) = beta_min + t (beta_max - beta_min)``,
#: ``beta_min = 0.1``, ``beta_max = 20``, Song et al. 2021).
NOISE_SCHEDULES = ("cosine", "linear")


def noise_schedule(
    num_steps: int, kind: str = "cosine", *, beta_min: float = 0.1, beta_max: float = 20.0
) -> Tensor:
    """``abar [T + 1]`` (float64) of the discrete forward process, ``abar[0] = 1`` (clean) down to ``abar[T]``.

    ``linear``: ``abar_k = exp(-beta_min t_k - (beta_max - beta_min) t_k^2 / 2)`` with ``t_k = k / T`` (the VP SDE's
    ``exp(-int_0^t beta)`` at the grid points; ``abar_T = 4.3e-5``). ``cosine``:
    ``abar_k = cos^2((t_k + s) / (1 + s) pi / 2) / cos^2(s / (1 + s) pi / 2)``, ``s = 0.008``, each step's
    ``beta_k = 1 - abar_k / abar_{k-1}`` clipped to 0.999.

    Raises:
        ValueError: ``num_steps < 1`` or an unknown ``kind``.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"noise_schedule: num_steps must be an integer >= 1, got {num_steps!r}")
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    if kind == "linear":
        return torch.exp(-beta_min * t - 0.5 * (beta_max - beta_min) * t**2)
    if kind == "cosine":
        s = 0.008
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        beta = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
        return torch.cat([abar.new_ones(1), torch.cumprod(1 - beta, 0)])
    raise ValueError(f"noise_schedule: kind must be one of {list(NOISE_SCHEDULES)}, got {kind!r}")


def reverse_samples(
    noised: Tensor, abar: Tensor, num_samples: int, *, low: float | None = -1.0, high: float | None = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Draw clean candidates from the forward kernel's posterior under a flat prior (SDAC's reverse sampling).

    ``q~(a_0 | a_k) ∝ q(a_k | a_0)`` restricted to ``[low, high]^A``: ``a_0 = (a_k - sqrt(1 - abar) eps) /
    sqrt(abar)`` with ``eps`` a standard normal truncated to the interval that keeps ``a_0`` in the box, i.e.
    ``a_0 ~ N(a_k / sqrt(abar), (1 - abar) / abar)`` truncated to the box (each dimension independently).
    Without a box (``low = high = None``) the Gaussian itself. The truncated normal is drawn by inverting its CDF
    in float64 on the side of the interval nearer zero (so that far-tail intervals keep their precision); an
    interval whose probability still underflows gets the clipped value of a plain normal draw.

    Args:
        noised: ``[B, A]`` noised actions ``a_k``.
        abar: ``[B]`` (or ``[B, 1]``) ``abar_k`` of each row, in ``(0, 1]``.
        num_samples: ``K`` candidates per row.
        low, high: the action box (both or neither).
        generator: optional torch generator.

    Returns:
        ``(a0 [B, K, A], eps [B, K, A])``: the candidates and the noise that maps each to ``a_k``
        (``a_k = sqrt(abar) a0 + sqrt(1 - abar) eps``), in the dtype of ``noised``.

    Raises:
        ValueError: ``num_samples < 1``, ``abar`` outside ``(0, 1]``, only one of ``low``/``high``, or
            ``low >= high``.
    """
    if num_samples < 1:
        raise ValueError(f"reverse_samples: num_samples must be >= 1, got {num_samples}")
    if (low is None) != (high is None) or (low is not None and not low < high):
        raise ValueError(f"reverse_samples: need low < high (or both None), got low={low}, high={high}")
    b, a = noised.shape
    abar = abar.reshape(b, 1, 1).to(torch.float64)
    if not bool(((abar > 0) & (abar <= 1)).all()):
        raise ValueError("reverse_samples: abar must lie in (0, 1]")
    x = noised.to(torch.float64).unsqueeze(1)  # [B, 1, A]
    sig, mu = (1 - abar).sqrt(), abar.sqrt()
    shape = (b, num_samples, a)
    if low is None:
        eps = torch.randn(shape, generator=generator, dtype=torch.float64, device=noised.device)
    else:
        # a0 >= low <=> eps <= (x - mu low) / sig ; a0 <= high <=> eps >= (x - mu high) / sig
        # the bounds and their CDF values depend on the row only: computed on [B, 1, A], broadcast over the K draws
        lo = (x - mu * high) / sig.clamp_min(1e-12)
        hi = (x - mu * low) / sig.clamp_min(1e-12)
        flip = lo > 0  # both bounds in the upper tail: draw -eps on [-hi, -lo] instead
        lo_, hi_ = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)
        c_lo, c_hi = torch.special.ndtr(lo_), torch.special.ndtr(hi_)
        u = torch.rand(shape, generator=generator, dtype=torch.float64, device=noised.device)
        eps = torch.special.ndtri(u.mul_(c_hi - c_lo).add_(c_lo))
        eps = torch.where(flip, -eps, eps)
        bad = ~torch.isfinite(eps) | (c_hi - c_lo <= 0)
        if bool(bad.any()):
            plain = torch.randn(shape, generator=generator, dtype=torch.float64, device=noised.device)
            eps = torch.where(bad, plain, eps)
        eps = torch.minimum(torch.maximum(eps, lo), hi)
    a0 = (x - sig * eps) / mu
    if low is not None:
        a0 = a0.clamp(low, high)
    return a0.to(noised.dtype), eps.to(noised.dtype)


def ddpm_sample(
    eps_net: VelocityMLP, state: Tensor, num_samples: int, abar: Tensor, *, generator: torch.Generator | None = None,
) -> Tensor:  # fmt: skip
    """Ancestral DDPM sampling of the policy (Ho et al. 2020, Eq. 6-7): ``state [B, S] -> actions [B, N, A]``.

    ``a_T ~ N(0, I)``; for ``k = T..1``: ``a0_hat = clip((a_k - sqrt(1 - abar_k) eps_theta) / sqrt(abar_k), -1, 1)``,
    ``a_{k-1} = c1_k a0_hat + c2_k a_k + sigma_k z`` with the posterior mean coefficients
    ``c1 = sqrt(abar_{k-1}) beta_k / (1 - abar_k)``, ``c2 = sqrt(alpha_k) (1 - abar_{k-1}) / (1 - abar_k)`` and
    ``sigma_k^2 = beta_k (1 - abar_{k-1}) / (1 - abar_k)`` (no noise at the last step). All ``B N`` rows go through
    each step together; the first linear layer is split by input as in
    :func:`simpo_bio.diffusion.flow.integrate_flow` (state part once per state, time part once per step).

    Args:
        eps_net: the noise predictor (a :class:`~simpo_bio.diffusion.flow.VelocityMLP` read as
            ``eps_theta(a_k, k / T, s)``).
        state: ``[B, S]``. num_samples: ``N`` per state. abar: ``[T + 1]`` from :func:`noise_schedule`.

    Returns:
        ``[B, N, A]`` actions in ``[-1, 1]``.
    """
    steps = abar.shape[0] - 1
    dtype, device = state.dtype, state.device
    b, rows, a_dim = state.shape[0], state.shape[0] * num_samples, eps_net.action_dim
    ab = abar.to(device, torch.float64)
    alpha = ab[1:] / ab[:-1]  # [T]
    beta = 1 - alpha
    # per-step coefficients as Python numbers (rounded to the sampler's dtype first, as a 0-d tensor of that dtype
    # would be): no tensor indexing per step
    c0 = (1 / ab[1:].sqrt()).to(dtype).tolist()
    c0e = ((1 - ab[1:]).sqrt() / ab[1:].sqrt()).to(dtype).tolist()
    c1 = (ab[:-1].sqrt() * beta / (1 - ab[1:])).to(dtype).tolist()
    c2 = (alpha.sqrt() * (1 - ab[:-1]) / (1 - ab[1:])).to(dtype).tolist()
    sd = (beta * (1 - ab[:-1]) / (1 - ab[1:])).clamp_min(0).sqrt().to(dtype).tolist()
    x_all = torch.randn(rows, a_dim, generator=generator, dtype=dtype, device=device)
    z = torch.randn(max(steps - 1, 0), rows, a_dim, generator=generator, dtype=dtype, device=device)
    first = eps_net.net[0]
    hidden = first.weight.shape[0]
    w_a, w_t, w_s = first.weight.split([eps_net.action_dim, eps_net.time_embed_dim, eps_net.state_dim], dim=1)
    w_a_t = w_a.t()
    t_grid = torch.arange(1, steps + 1, device=device, dtype=dtype) / steps
    h_time = (eps_net.time_mlp(timestep_embedding(t_grid, eps_net.time_embed_dim)) @ w_t.t()).unsqueeze(1)
    h_cond = torch.addmm(first.bias, state, w_s.t()).unsqueeze(1)  # [B, 1, H]
    rest = list(eps_net.net)[1:]
    if torch.is_grad_enabled():  # a differentiable call (not used by the agents): plain out-of-place ops
        x = x_all
        for k in range(steps - 1, -1, -1):  # level k + 1 -> k
            h = (x @ w_a_t).view(b, num_samples, hidden) + (h_cond + h_time[k])
            eps = nn.Sequential(*rest)(h.view(rows, hidden))
            a0 = (c0[k] * x - c0e[k] * eps).clamp(-1.0, 1.0)
            x = c1[k] * a0 + c2[k] * x
            if k > 0:
                x = x + sd[k] * z[k - 1]
        return x.clamp(-1.0, 1.0).view(b, num_samples, a_dim)
    # no autograd: blocks of whole states (about ROW_CHUNK rows on CPU, all rows elsewhere) through all T steps,
    # in-place updates; rows are independent, so this is the loop above up to float rounding (tested)
    out = torch.empty_like(x_all)
    per = max(1, row_chunk(state, rows) // num_samples)  # states per block
    work = first_layer_work(per * num_samples, hidden, x_all)  # reused by every block and step
    w_a_t = w_a_t.contiguous()
    for i in range(0, b, per):
        j = min(b, i + per)
        r0, r1 = i * num_samples, j * num_samples
        x = x_all[r0:r1]
        for k in range(steps - 1, -1, -1):  # level k + 1 -> k
            h = torch.mm(x, w_a_t, out=work[0][: r1 - r0])
            h.view(j - i, num_samples, hidden).add_(h_cond[i:j] + h_time[k])
            eps = forward_no_grad(rest, h, work)
            a0 = (x * c0[k]).sub_(eps, alpha=c0e[k]).clamp_(-1.0, 1.0)
            x = a0.mul_(c1[k]).add_(x, alpha=c2[k])
            if k > 0:
                x.add_(z[k - 1, r0:r1], alpha=sd[k])
        out[r0:r1] = x
    return out.clamp_(-1.0, 1.0).view(b, num_samples, a_dim)

class RSMAgent(nn.Module):
    """What DPMD and SDAC share: diffusion policy, double-Q critic, TD update, acting, checkpoints.

    Subclasses implement :meth:`policy_loss` (``batch -> (loss, logs)``). Same interface as
    :class:`simpo_bio.control.agent.SiMPOAgent` (``update``, ``act``, ``best_of``, ``sample``, ``training_state``,
    ``load_training_state``, ``compile``, ``num_updates``, ``timings``), so the training loop runs either.

    Args:
        state_dim, action_dim: ``S`` and ``A`` (actions in ``[-1, 1]^A``).
        config: :class:`~simpo_bio.control.agent.AgentConfig` (``algorithm`` ``sdac`` or ``dpmd``).
        total_updates: length of the run in updates (policy learning-rate annealing).

    Raises:
        ValueError: an invalid config (:meth:`AgentConfig.validate`).
    """

    algorithm = "rsm"

    def __init__(
        self, state_dim: int, action_dim: int, config: AgentConfig | None = None, total_updates: int = 1
    ):
        super().__init__()
        cfg = config or AgentConfig(algorithm=self.algorithm, scheme="exp")
        cfg.validate()
        self.config = cfg
        self.state_dim, self.action_dim = state_dim, action_dim
        self.policy = VelocityMLP(action_dim, state_dim=state_dim, hidden=cfg.hidden, depth=cfg.depth,
                                  activation=cfg.activation)  # fmt: skip
        self.critic = DoubleQCritic(state_dim, action_dim, cfg.hidden, cfg.depth, cfg.activation)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.weighting = WeightingStep(
            cfg.scheme, cfg.scheme_params, temperature=cfg.temperature, auto_temperature=cfg.auto_temperature,
            target_kl=cfg.target_kl, temperature_lr=cfg.temperature_lr, temperature_min=cfg.temperature_min,
            temperature_max=cfg.temperature_max, normalize_advantage=cfg.normalize_advantage,
        )  # fmt: skip
        self.register_buffer("abar", noise_schedule(cfg.num_steps, cfg.noise_schedule), persistent=False)
        self.critic_opt = make_adam(self.critic.parameters(), cfg.critic_lr)
        self.policy_opt = make_adam(self.policy.parameters(), cfg.policy_lr)
        final = cfg.policy_lr_final / cfg.policy_lr
        horizon = max(1, int(total_updates))
        self.policy_sched = torch.optim.lr_scheduler.LambdaLR(
            self.policy_opt, lambda i: 1.0 + (final - 1.0) * min(1.0, i / horizon)
        )
        self.num_updates = 0
        self.timings: dict[str, float] = defaultdict(float)
        self._sample = ddpm_sample

    def compile(self, **kwargs: Any) -> RSMAgent:
        """``torch.compile`` the DDPM sampler and the critics (kwargs go to ``torch.compile``)."""
        self._sample = torch.compile(ddpm_sample, **kwargs)
        for name in ("critic", "critic_target"):
            getattr(self, name).compile(**kwargs)
        return self

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def sample(self, state: Tensor, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """``num_samples`` DDPM policy samples per state: ``state [B, S] -> [B, num_samples, A]`` in ``[-1, 1]``."""
        return self._sample(self.policy, state, num_samples, self.abar.to(state.dtype), generator=generator)

    @torch.no_grad()
    def best_of(self, state: Tensor, num_candidates: int, generator: torch.Generator | None = None) -> Tensor:
        """Best of ``num_candidates`` policy samples by ``min(Q_1, Q_2)``: ``state [B, S] -> action [B, A]``."""
        cand = self.sample(state, num_candidates, generator)
        if num_candidates == 1:
            return cand[:, 0]
        s = state.unsqueeze(1).expand(-1, num_candidates, -1)
        idx = self.critic.min_q(s, cand).argmax(dim=1)
        return cand[torch.arange(cand.shape[0], device=cand.device), idx]

    @torch.no_grad()
    def act(self, state: Tensor, *, explore: bool, generator: torch.Generator | None = None) -> Tensor:
        """Env action ``[B, A]``: best-of-``collect_candidates`` + N(0, ``exploration_noise``^2), clipped
        (``explore``), or best-of-``eval_candidates`` without noise."""
        cfg = self.config
        if not explore:
            return self.best_of(state, cfg.eval_candidates, generator)
        return self.behaviour_noise(self.best_of(state, cfg.collect_candidates, generator), generator)

    def behaviour_noise(self, action: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``clip(action + sigma z, -1, 1)``, ``z ~ N(0, I)``, ``sigma = exploration_noise`` (any shape ``[..., A]``;
        unchanged when ``sigma = 0``): the collection noise, also DPMD's candidates (:meth:`DPMDAgent.candidates`)."""
        sigma = self.config.exploration_noise
        if sigma <= 0:
            return action
        noise = torch.randn(action.shape, generator=generator, device=action.device, dtype=action.dtype)
        return (action + sigma * noise).clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ learning
    def critic_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """TD loss ``sum_k mean (Q_k(s, a) - y)^2``, ``y = r + gamma (1 - done) min_k Q'_k(s', a')``, ``a' ~ pi(s')``."""
        with torch.no_grad():
            next_action = self.sample(batch["next_state"], 1)[:, 0]
            nq1, nq2 = self.critic_target(batch["next_state"], next_action)
            y = critic_target(batch["reward"], batch["done"], nq1, nq2, self.config.gamma)
        q1, q2 = self.critic(batch["state"], batch["action"])
        loss = (q1 - y).pow(2).mean() + (q2 - y).pow(2).mean()
        return loss, {"q_mean": q1.detach().mean(), "td_target_mean": y.mean()}

    def noised(
        self, clean: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Forward process at a uniform level: ``clean [M, A] -> (a_k, eps, k / T [M], abar_k [M])``,
        ``k ~ U{1..T}``, ``a_k = sqrt(abar_k) clean + sqrt(1 - abar_k) eps``."""
        steps = self.abar.shape[0] - 1
        m = clean.shape[0]
        k = torch.randint(1, steps + 1, (m,), generator=generator, device=clean.device)
        ab = self.abar.to(clean.dtype)[k]
        eps = torch.randn(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
        a_k = ab.sqrt().unsqueeze(-1) * clean + (1 - ab).sqrt().unsqueeze(-1) * eps
        return a_k, eps, k.to(clean.dtype) / steps, ab

    def policy_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:  # pragma: no cover
        raise NotImplementedError

    def candidate_q(self, state: Tensor, cand: Tensor) -> Tensor:
        """``min(Q_1, Q_2)`` of ``K`` candidates per state, ``[B, S], [B, K, A] -> [B, K]``, in one critic call
        (:meth:`~simpo_bio.control.agent.DoubleQCritic.min_q_grouped`: the state part of the first layer once per
        state); a critic without that method is called on the expanded states."""
        grouped = getattr(self.critic, "min_q_grouped", None)
        if grouped is not None:
            return grouped(state, cand)
        return self.critic.min_q(state.unsqueeze(1).expand(-1, cand.shape[1], -1), cand)

    def _check_q(self, q: Tensor, what: str) -> None:
        if not torch.isfinite(q).all():
            raise FloatingPointError(f"{self.algorithm.upper()} update {self.num_updates}: the critic returned "
                                     f"non-finite Q values for the {what} (training diverged); lower the learning "
                                     "rates or set agent.grad_clip")  # fmt: skip

    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """One update: critic (TD, Polyak target), then every ``policy_delay`` updates the RSM policy step.

        Args:
            batch: ``state [B, S]``, ``action [B, A]``, ``reward [B]``, ``next_state [B, S]``, ``done [B]``.

        Returns:
            Scalars: ``critic_loss``, ``q_mean``, ``td_target_mean`` and on policy updates ``policy_loss``,
            ``temperature``, ``weight_kl``, ``weight_ess``, ``policy_lr``.

        Raises:
            FloatingPointError: non-finite Q values for the candidates.
        """
        cfg = self.config
        logs = critic_step(self, batch)
        if self.num_updates % cfg.policy_delay == 0:
            t1 = time.perf_counter()
            p_loss, p_logs = self.policy_loss(batch)
            self.policy_opt.zero_grad(set_to_none=True)
            p_loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
            policy_lr = self.policy_opt.param_groups[0]["lr"]
            self.policy_opt.step()
            self.policy_sched.step()
            self.timings["policy_step"] += time.perf_counter() - t1
            logs.update(policy_loss=p_loss.item(), policy_lr=policy_lr, temperature=float(self.weighting.temperature),
                        **p_logs)  # fmt: skip
        self.num_updates += 1
        return logs

    def _weights(self, q: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Group weights ``[B, K]`` (``exp``: softmax of ``Q / lambda``) and one dual step (``auto_temperature``)."""
        out = self.weighting(q, update=True)
        w = out.weights
        return w.weight, {"weight_kl": out.weight_kl, "weight_ess": float(w.ess.mean()),
                          "weight_active": float(w.active.float().mean()),
                          "particle_q_std": float(q.std(dim=1).mean())}  # fmt: skip

    # ------------------------------------------------------------------ checkpoints
    def training_state(self) -> dict[str, Any]:
        """Networks (with the temperature and its Adam), optimisers, LR schedule, update count, config."""
        return {"model": self.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "policy_opt": self.policy_opt.state_dict(), "policy_sched": self.policy_sched.state_dict(),
                "num_updates": self.num_updates, "config": asdict(self.config)}  # fmt: skip

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`training_state`."""
        self.load_state_dict(state["model"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.policy_opt.load_state_dict(state["policy_opt"])
        self.policy_sched.load_state_dict(state["policy_sched"])
        self.num_updates = int(state["num_updates"])


class SDACAgent(RSMAgent):
    """Soft Diffusion Actor-Critic: RSM toward ``exp(Q / lambda)`` by reverse sampling.

    Policy step on a batch (module docstring): ``a = batch["action"] [B, A]`` (replay actions), ``k ~ U{1..T}``,
    ``a_k = sqrt(abar_k) a + sqrt(1 - abar_k) eps``; ``K = group_size`` reverse samples ``a_0^j`` with their noises
    ``eps^j`` (:func:`reverse_samples`, ``[B, K, A]``); ``Q_j = min(Q_1, Q_2)(s, a_0^j)`` in one critic call on
    ``[B K]`` rows; ``w = softmax_j(Q_j / lambda)`` (:class:`~simpo_bio.weighting.WeightingStep`, ``exp``);
    loss ``mean_s || eps_theta(a_k, k / T, s) - sum_j w_j eps^j ||^2 / A`` (squared noise units per action
    dimension).
    """

    algorithm = "sdac"

    def policy_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        t0 = time.perf_counter()
        state, action = batch["state"], batch["action"]
        k = self.config.group_size
        with torch.no_grad():
            a_k, _, t, ab = self.noised(action)
            cand, eps = reverse_samples(a_k, ab, k)  # [B, K, A] each
            t1 = time.perf_counter()
            q = self.candidate_q(state, cand)  # [B, K], one critic call
            self._check_q(q, "reverse samples")
        w, logs = self._weights(q)
        target = torch.einsum("bk,bka->ba", w, eps)
        t2 = time.perf_counter()
        pred = self.policy(a_k, t, state)
        loss = (pred - target).pow(2).mean()
        self.timings["reverse_sampling"] += t1 - t0
        self.timings["candidate_q_and_weights"] += t2 - t1
        return loss, logs


class DPMDAgent(RSMAgent):
    """Diffusion Policy Mirror Descent: RSM toward ``pi_old exp(Q / lambda)``.

    Policy step on a batch: ``N = group_size`` candidates per state, ``a^j = clip(x^j + sigma z^j, -1, 1)`` with
    ``x^j ~ pi_old(. | s)`` (:func:`ddpm_sample`, no gradient), ``z^j ~ N(0, I)``, ``sigma = exploration_noise``
    (:meth:`candidates`, ``[B, N, A]``), ``Q_j = min(Q_1, Q_2)(s, a^j)`` in one critic call,
    ``w = softmax_j(Q_j / lambda)`` (:class:`~simpo_bio.weighting.WeightingStep`, ``exp``); each candidate noised at its own level ``k``; loss
    ``sum_s sum_j w_sj || eps_theta(a_k^sj, k / T, s) - eps^sj ||^2 / (B A)`` (weights sum to 1 per state).
    """

    algorithm = "dpmd"

    def candidates(self, state: Tensor, num: int) -> Tensor:
        """The ``N = num`` candidates per state the weights choose between: ``state [B, S] -> [B, N, A]``, the
        behaviour policy's actions ``clip(x + sigma z, -1, 1)`` with ``x`` a policy sample (:meth:`sample`, no
        gradient), ``z ~ N(0, I)`` and ``sigma = exploration_noise`` (``sigma = 0``: plain policy samples, whose
        Q spread collapsed on HalfCheetah; bench/results/control-rsm.md, fifth grid)."""
        return self.behaviour_noise(self.sample(state, num))

    def policy_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        t0 = time.perf_counter()
        state = batch["state"]
        b, n = state.shape[0], self.config.group_size
        states = state.unsqueeze(1).expand(-1, n, -1)
        with torch.no_grad():
            cand = self.candidates(state, n)  # [B, N, A]
            t1 = time.perf_counter()
            q = self.candidate_q(state, cand)
            self._check_q(q, "policy's candidates")
        w, logs = self._weights(q)
        t2 = time.perf_counter()
        a_k, eps, t, _ = self.noised(cand.reshape(b * n, self.action_dim))
        pred = self.policy(a_k, t, states.reshape(b * n, self.state_dim))
        per = (pred - eps).pow(2).mean(-1)  # [B N]
        loss = (w.reshape(-1) * per).sum() / b
        self.timings["particle_sampling"] += t1 - t0
        self.timings["particle_q_and_weights"] += t2 - t1
        return loss, logs
