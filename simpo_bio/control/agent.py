"""SiMPO actor-critic with a flow-matching policy (paper Sec. 3-4 and Sec. 5.2; ``docs/method.md``).

One update on a batch of ``B`` transitions ``(s, a, r, s', done)``:

1. **Critic** (double Q, TD3/SAC style): ``y = r + gamma (1 - done) min_k Q'_k(s', a')`` with ``a' ~ pi(. | s')``
   drawn by the flow ODE and ``Q'`` the target networks; loss ``sum_k mean (Q_k(s, a) - y)^2``; then a soft
   (Polyak) update ``theta' <- (1 - polyak) theta' + polyak theta`` (:func:`critic_target`, :func:`soft_update`).
2. **Stage I** (target measure by reweighting, paper Eq. 9 and Eq. 11): for every state draw a *group* of
   ``N = group_size`` actions from the current policy (:func:`simpo_bio.diffusion.flow.sample_actions` on the
   ``time_schedule`` grid, one batched forward per ODE step for all ``B x N`` particles) -- score them with
   ``min(Q_1, Q_2)``, turn scores into group-relative advantages (``Q - mean_group Q`` in Q units by default,
   ``normalize_advantage`` standardises each group instead) and weights by the scheme's name
   (:func:`simpo_bio.weighting.compute_weights`; weights sum to 1 per state, signed schemes may be negative).
3. **Stage II** (projection, paper Eq. 7): reweighted flow matching
   ``sum_s sum_j w_sj || v(a_t, t, s) - (a_sj - eps) ||^2 / B``
   (:func:`simpo_bio.diffusion.flow.flow_matching_loss`).
4. **Temperature** (paper Appendix G): one Adam step of the temperature dual so that ``KL(w || uniform)`` tracks
   ``target_kl``. Steps 2 (advantages, weights) and 4 are the shared Stage-I step
   :class:`simpo_bio.weighting.WeightingStep` (the temperature and its optimiser live in its ``state_dict``).

Exploration and action selection (documented choices; the paper leaves them to its JAX code):

* *collection*: draw ``collect_candidates`` actions from the policy (default 1, i.e. a plain policy sample --
  the flow ODE from Gaussian noise is itself stochastic), keep the best by ``min(Q_1, Q_2)`` when more than one,
  then add Gaussian noise of std ``exploration_noise`` (in the ``[-1, 1]`` action box) and clip;
* *evaluation*: best-of-``eval_candidates`` by ``min(Q_1, Q_2)``, no added noise.

The policy learning rate is annealed linearly from ``policy_lr`` to ``policy_lr_final`` over the run
(paper Appendix F: 3e-4 -> 3e-5); the critic keeps ``critic_lr``.

Imports: torch, :mod:`simpo_bio.diffusion.flow` and :mod:`simpo_bio.weighting` (no MuJoCo, no I/O).
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from simpo_bio.diffusion.flow import (
    ACTIVATIONS,
    VelocityMLP,
    flow_matching_loss,
    integrate_flow,
    sample_actions,
    time_grid,
)
from simpo_bio.weighting import WeightingStep, get_scheme


@dataclass
class AgentConfig:
    """Hyper-parameters of the control agents (defaults = SiMPO's paper MuJoCo table, Appendix F.1).

    Attributes:
        algorithm: ``simpo`` (:class:`SiMPOAgent`, flow-matching policy), ``sdac`` or ``dpmd`` (the RSM agents of
            :mod:`simpo_bio.control.rsm`, DDPM noise-prediction policies; they need ``scheme: exp``). Fields marked
            *SiMPO only* are ignored by the RSM agents.
        scheme: weighting scheme by name (registry of :mod:`simpo_bio.weighting`), e.g. ``linear_neg``.
        scheme_params: extra parameters of the scheme, e.g. ``{"eta": 1.0}`` or ``{"p": 3}``.
        group_size: ``N``, the group whose weights sum to 1: actions drawn per state (SiMPO Stage I, DPMD's
            candidates from the current policy) or, for SDAC, the ``K`` reverse samples per noised replay action.
        num_steps: sampler steps: Euler steps of SiMPO's flow ODE, or the ``T`` levels of the RSM agents' DDPM
            forward process (both papers: 20).
        time_schedule: *SiMPO only*: spacing of the ODE time grid, ``"cosine"`` (paper) or ``"uniform"``.
        noise_schedule: *RSM only*: the forward process's ``abar_k`` (:func:`simpo_bio.control.rsm.noise_schedule`,
            ``cosine`` or ``linear``; both variance preserving).
        hidden, depth, activation: width, number of hidden layers and activation of policy and critic MLPs.
        gamma: discount. polyak: soft target-update rate of the critic (per update).
        critic_lr, policy_lr, policy_lr_final: Adam learning rates; the policy's is annealed linearly.
        temperature: initial temperature (Q units, or unitless with ``normalize_advantage``).
        target_kl, temperature_lr, auto_temperature: paper Appendix G dual (``eps`` is ``target_kl``, nats).
        temperature_min, temperature_max: clamp of the temperature (advantage units). The floor matters: when
            many particles of a group tie (e.g. all clipped to the same action bound) the KL cannot reach the
            target at any temperature and the dual would drive it to zero.
        normalize_advantage: standardise Q within each group before weighting (paper Example 3.4). Off by
            default: the advantage is then ``Q - mean_group Q`` in Q units and the temperature (in Q units too) is the global
            lambda of Appendix G. Standardising every group rescales a spread of 0.01 (critic noise between
            near-identical particles) to unit variance; on InvertedPendulum that kept the policy at ~100 return
            while raw Q reached 1000 (bench/results/control.md, Control).
        exploration_noise: std of Gaussian noise added to collected actions (``[-1, 1]`` action units).
        particle_noise: *SiMPO only*: std of Gaussian noise added to the N particles of Stage I before they are scored and fitted
            (``[-1, 1]`` action units; 0 = the plain form). The group then comes from the policy smoothed by this
            noise, so each update can move the policy by about this much beyond its own support; without it a
            policy that has concentrated improves only within its (small) spread.
        collect_candidates, eval_candidates: best-of-K by Q at collection / evaluation.
        policy_delay: update the policy every ``policy_delay`` critic updates.
        grad_clip: max global grad norm for policy and critic (``None``: no clipping).
        repel_ratio: *SiMPO only*: cap of a negative-weight particle's squared flow-matching error, as a multiple of the action
            dimension (unitless: squared velocity error per action dimension; passed as ``repel_margin`` to
            :func:`simpo_bio.diffusion.flow.flow_matching_loss`; ``None``: the unbounded loss; not the DNA module's
            ``repel_margin``, which is in nats per base). Without it a
            signed scheme's policy loss can run to -inf (HalfCheetah, ``linear_neg`` eta 1, seed 1: policy loss
            -4e9 after 3k updates, then NaN Q values; bench/results/control.md, Control). No effect on schemes whose
            weights are never negative.
    """

    algorithm: str = "simpo"
    scheme: str = "linear_neg"
    scheme_params: dict[str, float] = field(default_factory=dict)
    group_size: int = 32
    num_steps: int = 20
    time_schedule: str = "cosine"
    noise_schedule: str = "cosine"
    hidden: int = 256
    depth: int = 3
    activation: str = "mish"
    gamma: float = 0.99
    polyak: float = 0.005
    critic_lr: float = 3e-4
    policy_lr: float = 3e-4
    policy_lr_final: float = 3e-5
    temperature: float = 1.0
    target_kl: float = 1.5
    temperature_lr: float = 3e-2
    temperature_min: float = 1e-2
    temperature_max: float = 1e2
    auto_temperature: bool = True
    normalize_advantage: bool = False
    exploration_noise: float = 0.1
    particle_noise: float = 0.0
    collect_candidates: int = 1
    eval_candidates: int = 16
    policy_delay: int = 1
    grad_clip: float | None = None
    repel_ratio: float | None = 4.0

    def validate(self) -> None:
        """Check every field before anything is built.

        Raises:
            ValueError: one line naming the first invalid field (``agent.<name>``) and its value: an unknown scheme,
                activation or time schedule, bad scheme parameters, a size below 1, a rate or temperature <= 0.
        """
        from simpo_bio.diffusion.flow import TIME_SCHEDULES

        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"agent.algorithm must be one of {list(ALGORITHMS)}, got {self.algorithm!r}")
        if self.algorithm != "simpo" and self.scheme != "exp":
            raise ValueError(f"agent.scheme must be 'exp' for agent.algorithm {self.algorithm!r} (RSM's targets are "
                             f"exp(Q / temperature)), got {self.scheme!r}")
        if self.noise_schedule not in ("cosine", "linear"):
            raise ValueError(f"agent.noise_schedule must be 'cosine' or 'linear', got {self.noise_schedule!r}")
        try:
            get_scheme(self.scheme, **(self.scheme_params or {}))
        except (TypeError, ValueError) as err:
            raise ValueError(f"agent.scheme {self.scheme!r} with scheme_params {self.scheme_params}: {err}") from None
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"agent.activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.time_schedule not in TIME_SCHEDULES:
            raise ValueError(f"agent.time_schedule must be one of {list(TIME_SCHEDULES)}, got {self.time_schedule!r}")
        for name, low in (("group_size", 2), ("num_steps", 1), ("hidden", 1), ("depth", 1), ("collect_candidates", 1),
                          ("eval_candidates", 1), ("policy_delay", 1)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"agent.{name} must be an integer >= {low}, got {value!r}")
        positive = ("critic_lr", "policy_lr", "policy_lr_final", "temperature", "target_kl", "temperature_lr",
                    "temperature_min", "temperature_max")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"agent.{name} must be a finite number > 0, got {value!r}")
        if self.temperature_min > self.temperature_max:
            raise ValueError(
                f"agent.temperature_min ({self.temperature_min}) must be <= temperature_max ({self.temperature_max})"
            )
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"agent.gamma must be in [0, 1], got {self.gamma!r}")
        if not 0.0 < self.polyak <= 1.0:
            raise ValueError(f"agent.polyak must be in (0, 1], got {self.polyak!r}")
        for name in ("exploration_noise", "particle_noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"agent.{name} must be a finite number >= 0, got {value!r}")
        for name in ("grad_clip", "repel_ratio"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"agent.{name} must be > 0 or null, got {value!r}")


#: ``agent.algorithm`` -> (module, class) of the agent it builds (:func:`make_agent`).
ALGORITHMS = {"simpo": ("simpo_bio.control.agent", "SiMPOAgent"), "sdac": ("simpo_bio.control.rsm", "SDACAgent"),
              "dpmd": ("simpo_bio.control.rsm", "DPMDAgent")}  # fmt: skip


def make_agent(state_dim: int, action_dim: int, config: AgentConfig, total_updates: int = 1) -> nn.Module:
    """The agent ``config.algorithm`` names (:data:`ALGORITHMS`), built for ``S = state_dim``, ``A = action_dim``.

    Raises:
        ValueError: an invalid config (:meth:`AgentConfig.validate`).
    """
    import importlib

    config.validate()
    module, name = ALGORITHMS[config.algorithm]
    return getattr(importlib.import_module(module), name)(state_dim, action_dim, config, total_updates=total_updates)


#: Rows per block in the no-gradient batched paths on CPU (candidate scoring, the samplers): 1,024 rows x 256
#: units are 1 MiB of float32 activations, which stay in cache, while a whole ``[B K]`` batch (8,192 rows at
#: ``B = 256``, ``K = 32``) spills every intermediate to memory and pays a fresh allocation per op. Measured on
#: the 2-core CPU: scoring 8,192 candidates 62 -> 32 ms (bench/results/control-rsm.md, "Update speed"). On other
#: devices the whole batch goes in one call (:func:`row_chunk`).
ROW_CHUNK = 1024


def row_chunk(x: Tensor, rows: int) -> int:
    """Rows per block for ``x``'s device: :data:`ROW_CHUNK` on CPU, ``rows`` (one block) elsewhere."""
    return ROW_CHUNK if x.device.type == "cpu" else max(1, rows)


def make_adam(params, lr: float) -> torch.optim.Optimizer:
    """``torch.optim.Adam(params, lr)`` with the fused kernel where this torch has it (CPU since torch 2.4, CUDA).

    The same update rule as the default for-loop Adam (equal parameters up to float rounding, tested); one kernel
    per parameter instead of about ten ops: 1.31 -> 0.35 ms per step for a 2 x 256 double-Q critic on one CPU
    thread. Falls back to the default implementation where ``fused=True`` is refused.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover - older torch / unsupported device
        return torch.optim.Adam(params, lr=lr)


def activation_(act: nn.Module, h: Tensor) -> Tensor:
    """``act(h)``, in place on ``h`` for the activations that have an in-place form (ReLU, Mish, SiLU, tanh).

    Only for tensors no autograd graph needs (the no-gradient forwards below); any other module is called as is.
    """
    kind = type(act)
    if kind is nn.ReLU:
        return h.relu_()
    if kind is nn.Mish:
        return nn.functional.mish(h, inplace=True)
    if kind is nn.SiLU:
        return nn.functional.silu(h, inplace=True)
    if kind is nn.Tanh:
        return h.tanh_()
    return act(h)


def forward_no_grad(layers, h: Tensor, work: list[Tensor] | None = None) -> Tensor:
    """``nn.Sequential(*layers)(h)`` for a 2-D ``h`` without autograd: each ``nn.Linear`` as one ``addmm`` (what
    ``F.linear`` calls for 2-D inputs), activations in place (:func:`activation_`). Same numbers as the module
    call; ``h`` itself may be overwritten.

    ``work``: optional preallocated 2-D buffers (``[>= rows, width]``); a linear layer whose output width matches a
    buffer not holding its input writes into it (``addmm(..., out=)``) instead of allocating. On CPU a fresh
    megabyte-sized tensor per layer costs about as much as its matrix product (page faults); blocks that reuse
    two buffers do not pay it.
    """
    for layer in layers:
        if type(layer) is nn.Linear:
            dst = None
            for buf in work or ():
                if buf.shape[1] == layer.out_features and buf.shape[0] >= h.shape[0] and buf.data_ptr() != h.data_ptr():
                    dst = buf[: h.shape[0]]
                    break
            if layer.bias is None:
                h = torch.mm(h, layer.weight.t(), out=dst) if dst is not None else h @ layer.weight.t()
            elif dst is not None:
                h = torch.addmm(layer.bias, h, layer.weight.t(), out=dst)
            else:
                h = torch.addmm(layer.bias, h, layer.weight.t())
        else:
            h = activation_(layer, h)
    return h


def first_layer_work(rows: int, hidden: int, like: Tensor) -> list[Tensor]:
    """Two ``[rows, hidden]`` buffers for a blocked no-gradient MLP forward (:func:`forward_no_grad`)."""
    return [like.new_empty(rows, hidden), like.new_empty(rows, hidden)]


def chunked_integrate(integrate):
    """Wrap a flow integrator (:func:`simpo_bio.diffusion.flow.integrate_flow` or its compiled form) so that it
    runs on blocks of about :data:`ROW_CHUNK` rows on CPU, whole states at a time (the ``N`` rows of one state
    stay together). Rows are independent in the Euler steps, so the result is the same as one call up to float
    rounding (tested); the random draws are made before, by the caller."""

    def run(velocity_net, noise: Tensor, times: Tensor, state: Tensor | None = None, *,
            step_noise: Tensor | None = None, **kwargs: Any) -> Tensor:  # fmt: skip
        rows = noise.shape[0]
        chunk = row_chunk(noise, rows)
        if rows <= chunk:
            return integrate(velocity_net, noise, times, state, step_noise=step_noise, **kwargs)
        per_state = rows // state.shape[0] if state is not None else 1
        states_per = max(1, chunk // per_state)
        total = state.shape[0] if state is not None else rows
        outs = []
        for i in range(0, total, states_per):
            j = min(total, i + states_per)
            r0, r1 = i * per_state, j * per_state
            outs.append(integrate(
                velocity_net, noise[r0:r1], times, None if state is None else state[i:j],
                step_noise=None if step_noise is None else step_noise[:, r0:r1], **kwargs,
            ))  # fmt: skip
        return torch.cat(outs)

    return run


def mlp(
    in_dim: int, out_dim: int, hidden: int = 256, depth: int = 3, activation: str = "mish"
) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden`` with ``activation``, then a linear head.

    Raises:
        ValueError: unknown activation or ``depth < 1``.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), ACTIVATIONS[activation]()]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class DoubleQCritic(nn.Module):
    """Two independent Q networks ``Q_k(s, a)``, ``k = 1, 2`` (clipped double Q, Fujimoto et al. 2018).

    ``forward(state [..., S], action [..., A]) -> (q1 [...], q2 [...])``.
    """

    def __init__(
        self, state_dim: int, action_dim: int, hidden: int = 256, depth: int = 3, activation: str = "mish"
    ):
        super().__init__()
        self.q1 = mlp(state_dim + action_dim, 1, hidden, depth, activation)
        self.q2 = mlp(state_dim + action_dim, 1, hidden, depth, activation)

    def forward(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([state, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def min_q(self, state: Tensor, action: Tensor) -> Tensor:
        """``min(Q_1, Q_2)`` with shape ``[...]``."""
        q1, q2 = self(state, action)
        return torch.minimum(q1, q2)

    def min_q_grouped(self, state: Tensor, action: Tensor) -> Tensor:
        """``min(Q_1, Q_2)`` of ``K`` actions per state: ``state [B, S]``, ``action [B, K, A]`` -> ``[B, K]``.

        The same numbers as ``min_q(state.unsqueeze(1).expand(-1, K, -1), action)`` up to float rounding, with the
        first layer split by input: its state part ``W_s s + b`` is computed once per state, not once per action
        (for Humanoid, ``S = 376``, that part is most of the layer's cost). Without autograd (the candidate
        scoring of SDAC, DPMD and SiMPO runs under ``torch.no_grad``) the ``B K`` rows go through both networks in
        blocks of :data:`ROW_CHUNK` rows on CPU with in-place activations (:func:`forward_no_grad`); with autograd
        on, one differentiable call on all rows.
        """
        b, k, a_dim = action.shape
        if torch.is_grad_enabled():
            qs = []
            for net in (self.q1, self.q2):
                first = net[0]
                w_s, w_a = first.weight.split([state.shape[-1], a_dim], dim=1)
                h = action @ w_a.t() + torch.addmm(first.bias, state, w_s.t()).unsqueeze(1)
                qs.append(net[1:](h).squeeze(-1))
            return torch.minimum(qs[0], qs[1])
        nets = []
        for net in (self.q1, self.q2):
            first = net[0]
            w_s, w_a = first.weight.split([state.shape[-1], a_dim], dim=1)
            nets.append((torch.addmm(first.bias, state, w_s.t()), w_a.t().contiguous(), list(net)[1:]))
        out = action.new_empty(2, b, k)
        per = max(1, row_chunk(action, b * k) // k)  # states per block
        work = first_layer_work(per * k, nets[0][1].shape[1], action)  # reused by every block and both networks
        for i in range(0, b, per):
            j = min(b, i + per)
            rows = (j - i) * k
            flat = action[i:j].reshape(rows, a_dim)
            for n, (h_state, w_a_t, rest) in enumerate(nets):
                h = torch.mm(flat, w_a_t, out=work[0][:rows])
                h.view(j - i, k, -1).add_(h_state[i:j].unsqueeze(1))
                out[n, i:j] = forward_no_grad(rest, h, work).view(j - i, k)
        return torch.minimum(out[0], out[1])

def critic_target(reward: Tensor, done: Tensor, next_q1: Tensor, next_q2: Tensor, gamma: float) -> Tensor:
    """Clipped double-Q TD target ``y = r + gamma (1 - done) min(Q'_1, Q'_2)``, shapes ``[B]``.

    ``done`` is 1 only on a true termination (a time-limit truncation bootstraps, it is not stored as done).

    Raises:
        ValueError: ``gamma`` outside ``[0, 1]`` or mismatched shapes.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if not (reward.shape == done.shape == next_q1.shape == next_q2.shape):
        raise ValueError(
            f"shape mismatch: reward {tuple(reward.shape)}, done {tuple(done.shape)}, "
            f"q1 {tuple(next_q1.shape)}, q2 {tuple(next_q2.shape)}"
        )
    return reward + gamma * (1.0 - done) * torch.minimum(next_q1, next_q2)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, polyak: float) -> None:
    """``theta_target <- (1 - polyak) theta_target + polyak theta_source`` in place (``polyak`` in ``[0, 1]``)."""
    tp = list(target.parameters())
    sp = list(source.parameters())
    torch._foreach_lerp_(tp, sp, polyak)


def critic_step(agent, batch: dict[str, Tensor]) -> dict[str, float]:
    """One TD step of an agent's double-Q critic, shared by every control agent (SiMPO, SDAC, DPMD): its
    ``critic_loss(batch)``, Adam, gradient-norm clipping (``config.grad_clip``; ``None`` = none) and the Polyak
    update of the target critic (``config.polyak``); the seconds go to ``agent.timings["critic"]``.

    Returns:
        ``critic_loss`` and the loss's own scalars (``q_mean``, ``td_target_mean``, ...), as floats.
    """
    cfg = agent.config
    t0 = time.perf_counter()
    c_loss, c_info = agent.critic_loss(batch)
    agent.critic_opt.zero_grad(set_to_none=True)
    c_loss.backward()
    if cfg.grad_clip is not None:
        nn.utils.clip_grad_norm_(agent.critic.parameters(), cfg.grad_clip)
    agent.critic_opt.step()
    soft_update(agent.critic_target, agent.critic, cfg.polyak)
    agent.timings["critic"] += time.perf_counter() - t0
    return {"critic_loss": c_loss.item(), **{k: v.item() for k, v in c_info.items()}}


class SiMPOAgent(nn.Module):
    """Flow-matching policy + double Q critic trained by SiMPO (see the module docstring for the update).

    Args:
        state_dim: observation size ``S``. action_dim: action size ``A`` (actions live in ``[-1, 1]^A``).
        config: :class:`AgentConfig`.
        total_updates: length of the run in gradient updates (for the policy learning-rate annealing).

    Raises:
        ValueError: unknown scheme name or bad scheme parameters (from the weighting registry), or
            ``repel_ratio <= 0``.
    """

    def __init__(
        self, state_dim: int, action_dim: int, config: AgentConfig | None = None, total_updates: int = 1
    ):
        super().__init__()
        cfg = config or AgentConfig()
        self.config = cfg
        self.state_dim, self.action_dim = state_dim, action_dim
        if cfg.repel_ratio is not None and not cfg.repel_ratio > 0:
            raise ValueError(f"repel_ratio must be > 0 or None, got {cfg.repel_ratio}")
        self.scheme = get_scheme(cfg.scheme, **cfg.scheme_params)
        self.policy = VelocityMLP(
            action_dim, state_dim=state_dim, hidden=cfg.hidden, depth=cfg.depth, activation=cfg.activation
        )
        self.critic = DoubleQCritic(state_dim, action_dim, cfg.hidden, cfg.depth, cfg.activation)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.weighting = WeightingStep(
            self.scheme, temperature=cfg.temperature, auto_temperature=cfg.auto_temperature, target_kl=cfg.target_kl,
            temperature_lr=cfg.temperature_lr, temperature_min=cfg.temperature_min,
            temperature_max=cfg.temperature_max, normalize_advantage=cfg.normalize_advantage,
        )
        self.register_buffer("times", time_grid(cfg.num_steps, cfg.time_schedule), persistent=False)
        self.critic_opt = make_adam(self.critic.parameters(), cfg.critic_lr)
        self.policy_opt = make_adam(self.policy.parameters(), cfg.policy_lr)
        final = cfg.policy_lr_final / cfg.policy_lr
        horizon = max(1, int(total_updates))
        self.policy_sched = torch.optim.lr_scheduler.LambdaLR(
            self.policy_opt, lambda i: 1.0 + (final - 1.0) * min(1.0, i / horizon)
        )
        self.num_updates = 0
        self.timings: dict[str, float] = defaultdict(float)
        self._integrate = chunked_integrate(integrate_flow)

    def compile(self, **kwargs: Any) -> SiMPOAgent:
        """``torch.compile`` the sampler's Euler core, the policy and both critics (kwargs go to ``torch.compile``).

        The sampler's core is :func:`simpo_bio.diffusion.flow.integrate_flow` (random draws and input checks stay
        outside it, in :func:`~simpo_bio.diffusion.flow.sample_actions`).

        Measured in bench/control.py (``speed --compile``): see bench/results/control.md before turning it on.
        """
        self._integrate = chunked_integrate(torch.compile(integrate_flow, **kwargs))
        for name in ("policy", "critic", "critic_target"):
            getattr(self, name).compile(**kwargs)
        return self

    # ------------------------------------------------------------------ acting
    def sample(self, state: Tensor, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``num_samples`` actions per state from the flow policy: ``state [B, S] -> [B, num_samples, A]``.

        Euler integration of the flow ODE on the ``time_schedule`` grid of ``num_steps`` steps, actions clipped
        to ``[-1, 1]`` (:func:`simpo_bio.diffusion.flow.sample_actions`). All ``B x num_samples`` particles go
        through the ODE together (one network call per step).
        """
        return sample_actions(
            self.policy, state, num_samples, times=self.times, low=-1.0, high=1.0, bound="clip",
            generator=generator, integrate=self._integrate,
        )

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
        """Action for env interaction, ``state [B, S] -> action [B, A]`` in ``[-1, 1]``.

        ``explore=True``: best-of-``collect_candidates`` + Gaussian noise of std ``exploration_noise``;
        ``explore=False``: best-of-``eval_candidates``, no noise.
        """
        cfg = self.config
        if not explore:
            return self.best_of(state, cfg.eval_candidates, generator)
        action = self.best_of(state, cfg.collect_candidates, generator)
        if cfg.exploration_noise > 0:
            noise = torch.randn(action.shape, generator=generator, device=action.device, dtype=action.dtype)
            action = (action + cfg.exploration_noise * noise).clamp(-1.0, 1.0)
        return action

    # ------------------------------------------------------------------ learning
    def critic_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """TD loss of both Q networks on a batch (keys ``state, action, reward, next_state, done``; ``[B, .]``).

        Returns:
            ``(loss, info)``: the 0-d loss ``sum_k mean (Q_k(s, a) - y)^2`` (squared reward units) and the 0-d
            detached ``q_mean`` and ``td_target_mean``.
        """
        with torch.no_grad():
            next_action = self.sample(batch["next_state"], 1)[:, 0]
            nq1, nq2 = self.critic_target(batch["next_state"], next_action)
            y = critic_target(batch["reward"], batch["done"], nq1, nq2, self.config.gamma)
        q1, q2 = self.critic(batch["state"], batch["action"])
        loss = (q1 - y).pow(2).mean() + (q2 - y).pow(2).mean()
        return loss, {"q_mean": q1.detach().mean(), "td_target_mean": y.mean()}

    def particle_weights(self, state: Tensor, *, update_temperature: bool = False) -> dict[str, Any]:
        """Stage I for a batch of states ``[B, S]`` (paper Eq. 9 and Eq. 11; ``N = group_size``).

        ``update_temperature``: also take the dual step of :class:`~simpo_bio.weighting.WeightingStep` (when
        ``auto_temperature``); :meth:`update` does, a bare call only computes the weights.

        Returns:
            ``particles [B, N, A]`` (in ``[-1, 1]``), ``q [B, N]`` (``min(Q_1, Q_2)``), ``advantage [B, N]`` and
            ``weights``: the :class:`~simpo_bio.weighting.WeightOutput` (``weight [B, N]`` sums to 1 per state).

        Raises:
            FloatingPointError: the critic returned non-finite Q values (training diverged).
        """
        cfg = self.config
        n = cfg.group_size
        t0 = time.perf_counter()
        with torch.no_grad():
            particles = self.sample(state, n)
            if cfg.particle_noise > 0:
                particles = (particles + cfg.particle_noise * torch.randn_like(particles)).clamp(-1.0, 1.0)
            t1 = time.perf_counter()
            q = self.critic.min_q_grouped(state, particles)
        if not torch.isfinite(q).all():
            raise FloatingPointError(
                f"SiMPO update {self.num_updates}: the critic returned non-finite Q values for the policy's "
                "particles (training diverged); for signed schemes set agent.repel_ratio, lower eta, or set "
                "agent.grad_clip"
            )
        stage1 = self.weighting(q, update=update_temperature)
        t2 = time.perf_counter()
        self.timings["particle_sampling"] += t1 - t0
        self.timings["particle_q_and_weights"] += t2 - t1
        return {"particles": particles, "q": q, "advantage": stage1.advantage, "weights": stage1.weights,
                "weight_kl": stage1.weight_kl}

    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """One SiMPO update (critic, then policy and temperature every ``policy_delay`` updates).

        Stage I weights (paper Eq. 9, Eq. 11), Stage II weighted flow matching (paper Eq. 7), one step of the
        temperature dual (paper Appendix G, Eq. 30) when ``auto_temperature``.

        Args:
            batch: ``state [B, S]``, ``action [B, A]``, ``reward [B]``, ``next_state [B, S]``, ``done [B]``
                (float tensors; ``done`` = true termination).

        Returns:
            Scalars: ``critic_loss``, ``policy_loss``, ``temperature``, ``weight_kl``, ``weight_ess``, ``weight_active``,
            ``negative_mass``, ``q_mean``, ``policy_lr`` (policy terms only on policy updates).

        Raises:
            FloatingPointError: non-finite Q values for the policy's particles (see :meth:`particle_weights`).
        """
        cfg = self.config
        logs = critic_step(self, batch)

        if self.num_updates % cfg.policy_delay == 0:
            state = batch["state"]
            stage1 = self.particle_weights(state, update_temperature=True)
            w = stage1["weights"]
            t1 = time.perf_counter()
            b, n = w.weight.shape
            particles = stage1["particles"].reshape(b * n, self.action_dim)
            states = state.unsqueeze(1).expand(-1, n, -1).reshape(b * n, self.state_dim)
            # weights sum to 1 per state; dividing by B makes the loss a mean over states (docs/method.md, sec. 7)
            p_loss = flow_matching_loss(
                self.policy, particles, states, weight=w.weight.reshape(-1) / b, repel_margin=cfg.repel_ratio
            )
            self.policy_opt.zero_grad(set_to_none=True)
            p_loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
            policy_lr = self.policy_opt.param_groups[0]["lr"]  # the rate this update used
            self.policy_opt.step()
            self.policy_sched.step()
            self.timings["policy_loss"] += time.perf_counter() - t1
            logs.update(
                policy_loss=p_loss.item(),
                temperature=float(self.weighting.temperature),
                weight_kl=stage1["weight_kl"],
                weight_ess=float(w.ess.mean()),
                weight_active=float(w.active.float().mean()),
                negative_mass=float(w.negative_mass.mean()),
                particle_q_std=float(stage1["q"].std(dim=1).mean()),
                policy_lr=policy_lr,
            )
        self.num_updates += 1
        return logs

    # ------------------------------------------------------------------ checkpoints
    def training_state(self) -> dict[str, Any]:
        """Everything needed to resume: networks, optimisers, LR schedule, update count, config."""
        return {
            "model": self.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "policy_opt": self.policy_opt.state_dict(),
            "policy_sched": self.policy_sched.state_dict(),
            "num_updates": self.num_updates,
            "config": asdict(self.config),
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`training_state` (the agent must have been built with the same dimensions)."""
        self.load_state_dict(state["model"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.policy_opt.load_state_dict(state["policy_opt"])
        self.policy_sched.load_state_dict(state["policy_sched"])
        self.num_updates = int(state["num_updates"])
