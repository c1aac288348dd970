"""Continuous flow matching for policies: path, per-sample (signed-)weighted loss, Euler ODE sampler.

The probability path is the linear (rectified-flow / conditional OT) path of SPEC section 5::

    a_t = t * a + (1 - t) * eps,      eps ~ N(0, I),  t ~ U[0, 1)
    target velocity  u_t = a - eps     (d a_t / d t)

so ``t = 0`` is pure noise and ``t = 1`` is the action. Training minimises the conditional flow-matching loss
``|| v_theta(a_t, t, s) - (a - eps) ||^2`` per sample; SiMPO's Stage II (SPEC 5, paper Eq. 7) multiplies each
sample's term by a detached weight ``w_j`` which may be negative (signed measures, paper section 3.4): a negative
weight turns the term into a repelling force that pushes the velocity field away from that sample.

Sampling integrates ``d a / d t = v_theta(a, t, s)`` from ``t = 0`` to ``t = 1`` with the explicit Euler method;
all ``B x N`` particles (B states, N samples per state) go through the network in one forward per ODE step.

Everything here is plain torch (no Lightning); it is shared by :mod:`simpo_bio.bandit` and the control submodule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "ACTIVATIONS",
    "FlowPolicy",
    "VelocityMLP",
    "bound_actions",
    "flow_matching_loss",
    "per_sample_flow_matching_loss",
    "sample_actions",
    "timestep_embedding",
]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "mish": nn.Mish,
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}

BOUND_MODES = ("clip", "tanh", "none")


def timestep_embedding(t: Tensor, dim: int, *, max_period: float = 10_000.0, scale: float = 1000.0) -> Tensor:
    """Sinusoidal embedding of flow time.

    Args:
        t: ``[B]`` flow times in ``[0, 1]``.
        dim: embedding size (even or odd; an odd size is zero-padded by one column).
        max_period: longest period of the sinusoids (in units of ``scale * t``).
        scale: ``t`` is multiplied by ``scale`` first so that ``[0, 1]`` spans many periods of the fast features.

    Returns:
        ``[B, dim]`` tensor ``[cos(scale t f_k), sin(scale t f_k)]`` with geometric frequencies
        ``f_k = max_period ** (-k / half)``.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=t.dtype) / max(half, 1))
    args = scale * t[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class VelocityMLP(nn.Module):
    """MLP velocity field ``v_theta(a_t, t, s) -> R^A`` with a sinusoidal time embedding.

    The input of the MLP is ``[a_t, time_mlp(emb(t)), s]`` (``s`` only when ``state_dim > 0``). The paper's control
    networks are 3 hidden layers of 256 units with Mish (Appendix F, table of hyper-parameters): the defaults.

    Args:
        action_dim: ``A``, size of an action.
        state_dim: ``S``, size of the conditioning state; ``0`` for an unconditional (bandit) policy.
        hidden: width of each hidden layer.
        depth: number of hidden layers (``>= 1``).
        time_embed_dim: size of the sinusoidal time embedding (then mapped by a 2-layer MLP of the same size).
        activation: one of :data:`ACTIVATIONS` (``"mish"`` by default).
        layer_norm: add a LayerNorm after each hidden linear layer.

    Raises:
        ValueError: non-positive sizes or an unknown activation name.
    """

    def __init__(
        self,
        action_dim: int,
        state_dim: int = 0,
        hidden: int = 256,
        depth: int = 3,
        time_embed_dim: int = 32,
        activation: str = "mish",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if action_dim < 1 or state_dim < 0 or hidden < 1 or depth < 1 or time_embed_dim < 2:
            raise ValueError(
                f"VelocityMLP: need action_dim >= 1, state_dim >= 0, hidden >= 1, depth >= 1, time_embed_dim >= 2; "
                f"got action_dim={action_dim}, state_dim={state_dim}, hidden={hidden}, depth={depth}, "
                f"time_embed_dim={time_embed_dim}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"VelocityMLP: unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        act = ACTIVATIONS[activation]
        self.action_dim = action_dim
        self.state_dim = state_dim
        self.time_embed_dim = time_embed_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(time_embed_dim, time_embed_dim), act(), nn.Linear(time_embed_dim, time_embed_dim)
        )
        layers: list[nn.Module] = []
        width = action_dim + time_embed_dim + state_dim
        for _ in range(depth):
            layers.append(nn.Linear(width, hidden))
            if layer_norm:
                layers.append(nn.LayerNorm(hidden))
            layers.append(act())
            width = hidden
        layers.append(nn.Linear(width, action_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, action_t: Tensor, t: Tensor, state: Tensor | None = None) -> Tensor:
        """Velocity at the point ``action_t`` of the path.

        Args:
            action_t: ``[B, A]`` point on the path.
            t: ``[B]`` (or ``[B, 1]`` or a scalar) flow time in ``[0, 1]``.
            state: ``[B, S]`` conditioning state; required iff ``state_dim > 0``.

        Returns:
            ``[B, A]`` velocity (action units per unit flow time).

        Raises:
            ValueError: wrong shapes or a missing / unexpected state.
        """
        if action_t.dim() != 2 or action_t.shape[-1] != self.action_dim:
            raise ValueError(f"VelocityMLP: action_t must be [B, {self.action_dim}], got {tuple(action_t.shape)}")
        batch = action_t.shape[0]
        t = torch.as_tensor(t, dtype=action_t.dtype, device=action_t.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.shape[0] != batch:
            raise ValueError(f"VelocityMLP: t must have {batch} entries, got {t.shape[0]}")
        parts = [action_t, self.time_mlp(timestep_embedding(t, self.time_embed_dim))]
        if self.state_dim > 0:
            if state is None or state.shape != (batch, self.state_dim):
                got = None if state is None else tuple(state.shape)
                raise ValueError(f"VelocityMLP: state must be [{batch}, {self.state_dim}], got {got}")
            parts.append(state.to(action_t.dtype))
        elif state is not None and state.numel() > 0:
            raise ValueError("VelocityMLP: got a state but the network was built with state_dim=0")
        return self.net(torch.cat(parts, dim=-1))


VelocityFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


def per_sample_flow_matching_loss(
    velocity_net: VelocityFn,
    action: Tensor,
    state: Tensor | None = None,
    *,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Conditional flow-matching loss of each sample on the linear path (SPEC 5).

    ``l_j = || v(a_t^j, t_j, s_j) - (a^j - eps_j) ||^2`` (summed over action dims), with
    ``a_t = t a + (1 - t) eps``, ``t ~ U[0, 1)`` and ``eps ~ N(0, I)`` drawn here unless given.

    Args:
        velocity_net: callable ``(a_t [B, A], t [B], state [B, S] | None) -> [B, A]``, e.g. :class:`VelocityMLP`.
        action: ``[B, A]`` clean actions (the samples being fitted).
        state: ``[B, S]`` conditioning states or ``None``.
        t: optional ``[B]`` flow times (for tests / variance reduction); drawn uniformly otherwise.
        noise: optional ``[B, A]`` source noise ``eps``; standard normal otherwise.
        generator: torch generator for ``t`` and ``eps`` (reproducible losses).

    Returns:
        ``[B]`` per-sample loss, in squared action units per unit flow time.

    Raises:
        ValueError: ``action`` not 2-D, or ``t`` / ``noise`` / ``state`` of the wrong shape.
    """
    if action.dim() != 2:
        raise ValueError(f"flow matching: action must be [B, A], got {tuple(action.shape)}")
    batch = action.shape[0]
    if state is not None and state.shape[0] != batch:
        raise ValueError(f"flow matching: state has {state.shape[0]} rows but action has {batch}")
    if t is None:
        t = torch.rand(batch, generator=generator, device=action.device, dtype=action.dtype)
    elif t.shape != (batch,):
        raise ValueError(f"flow matching: t must be [{batch}], got {tuple(t.shape)}")
    if noise is None:
        noise = torch.randn(action.shape, generator=generator, device=action.device, dtype=action.dtype)
    elif noise.shape != action.shape:
        raise ValueError(f"flow matching: noise must be {tuple(action.shape)}, got {tuple(noise.shape)}")
    action_t = t[:, None] * action + (1.0 - t[:, None]) * noise
    target = action - noise
    return (velocity_net(action_t, t, state) - target).pow(2).sum(dim=-1)


def flow_matching_loss(
    velocity_net: VelocityFn,
    action: Tensor,
    state: Tensor | None = None,
    *,
    weight: Tensor | None = None,
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """(Signed-)weighted flow-matching loss, SiMPO Stage II for continuous actions (SPEC 5, paper Eq. 7).

    ``L = sum_j w_j * l_j`` when ``weight`` is given (``l_j`` from :func:`per_sample_flow_matching_loss`), and the
    plain mean ``mean_j l_j`` otherwise. Weights are treated as constants (detached). With the weights of one
    group summing to 1 (as :func:`simpo_bio.weighting.compute_weights` returns them), the weighted sum has the
    scale of a per-sample mean; for ``G`` groups flattened into ``B = G * N`` rows, pass ``weight / G`` to keep it.
    Negative weights are allowed and repel the velocity field from their samples (paper section 3.4); the loss is
    then unbounded below if a region's total weight is negative, so keep each group's total mass positive.

    Args:
        velocity_net: callable ``(a_t [B, A], t [B], state [B, S] | None) -> [B, A]``.
        action: ``[B, A]`` actions to fit.
        state: ``[B, S]`` or ``None``.
        weight: ``[B]`` per-sample weights (any sign) or ``None``.
        generator: torch generator for the path noise and times.
        t, noise: optional fixed ``[B]`` times and ``[B, A]`` source noise.

    Returns:
        Scalar loss.

    Raises:
        ValueError: ``weight`` not of shape ``[B]`` or contains non-finite values; shape errors of the per-sample loss.
    """
    per_sample = per_sample_flow_matching_loss(velocity_net, action, state, t=t, noise=noise, generator=generator)
    if weight is None:
        return per_sample.mean()
    if weight.shape != per_sample.shape:
        raise ValueError(f"flow matching: weight must be [{per_sample.shape[0]}], got {tuple(weight.shape)}")
    weight = weight.detach().to(per_sample.dtype)
    if not torch.isfinite(weight).all():
        raise ValueError("flow matching: weight contains NaN or inf")
    return (weight * per_sample).sum()


def bound_actions(action: Tensor, low: Tensor | float | None, high: Tensor | float | None, mode: str = "clip") -> Tensor:
    """Map ODE outputs into the action box ``[low, high]``.

    Args:
        action: ``[..., A]`` raw actions.
        low, high: bounds, scalars or broadcastable ``[A]`` tensors; ``None`` on both means unbounded.
        mode: ``"clip"`` (clamp; train on the clipped actions), ``"tanh"`` (``low + (high - low)(tanh(x)+1)/2``;
            the policy then lives in the pre-squash space, so train it on ``atanh`` of the rescaled actions), or
            ``"none"``.

    Returns:
        ``[..., A]`` bounded actions.

    Raises:
        ValueError: unknown ``mode``, only one bound given, or ``low >= high``.
    """
    if mode not in BOUND_MODES:
        raise ValueError(f"bound_actions: unknown mode {mode!r}; choose from {BOUND_MODES}")
    if mode == "none" or (low is None and high is None):
        return action
    if low is None or high is None:
        raise ValueError("bound_actions: give both low and high (or neither)")
    low_t = torch.as_tensor(low, dtype=action.dtype, device=action.device)
    high_t = torch.as_tensor(high, dtype=action.dtype, device=action.device)
    if not bool((low_t < high_t).all()):
        raise ValueError(f"bound_actions: need low < high, got low={low}, high={high}")
    if mode == "clip":
        return torch.maximum(torch.minimum(action, high_t), low_t)
    return low_t + (high_t - low_t) * (torch.tanh(action) + 1.0) / 2.0


@torch.no_grad()
def sample_actions(
    velocity_net: VelocityFn,
    state: Tensor | None,
    num_samples: int,
    *,
    num_steps: int = 20,
    noise_scale: float = 0.0,
    low: Tensor | float | None = None,
    high: Tensor | float | None = None,
    bound: str = "clip",
    action_dim: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Draw actions by Euler integration of ``da/dt = v(a, t, s)`` from ``t = 0`` (noise) to ``t = 1``.

    All ``B x N`` particles share one network call per step, so the cost is ``num_steps`` forwards of a batch of
    ``B * N`` rows. Optional exploration noise adds ``noise_scale * sqrt(dt) * z`` at every step (an SDE-like
    perturbation of the ODE; 0 gives the deterministic flow map, a function of the initial noise only).

    Args:
        velocity_net: callable ``(a [M, A], t [M], state [M, S] | None) -> [M, A]``; if ``action_dim`` is not
            given, ``velocity_net.action_dim`` is used.
        state: ``[B, S]`` states, or ``None`` for an unconditional policy.
        num_samples: ``N`` actions per state (or in total when ``state`` is ``None``).
        num_steps: Euler steps (``>= 1``).
        noise_scale: exploration noise (action units per sqrt unit flow time); ``0`` disables it.
        low, high: action bounds (see :func:`bound_actions`); ``None`` leaves actions unbounded.
        bound: ``"clip"``, ``"tanh"`` or ``"none"``.
        action_dim: ``A``; defaults to ``velocity_net.action_dim``.
        generator: torch generator for the initial noise and exploration noise (same seed, same actions).
        device, dtype: of the output when ``state`` is ``None`` (default: the network's parameters').

    Returns:
        ``[B, N, A]`` actions when ``state`` is given, ``[N, A]`` otherwise.

    Raises:
        ValueError: ``num_samples < 1``, ``num_steps < 1``, ``noise_scale < 0``, unknown ``action_dim``, bad bounds.
    """
    if num_samples < 1 or num_steps < 1:
        raise ValueError(f"sample_actions: need num_samples >= 1 and num_steps >= 1, got {num_samples}, {num_steps}")
    if noise_scale < 0:
        raise ValueError(f"sample_actions: noise_scale must be >= 0, got {noise_scale}")
    if action_dim is None:
        action_dim = getattr(velocity_net, "action_dim", None)
        if action_dim is None:
            raise ValueError("sample_actions: pass action_dim (the velocity network has no .action_dim)")
    if device is None or dtype is None:
        param = next(velocity_net.parameters(), None) if isinstance(velocity_net, nn.Module) else None
        ref = state if state is not None else param
        device = device or (ref.device if ref is not None else "cpu")
        dtype = dtype or (ref.dtype if ref is not None and ref.is_floating_point() else torch.get_default_dtype())
    if state is not None:
        if state.dim() != 2:
            raise ValueError(f"sample_actions: state must be [B, S], got {tuple(state.shape)}")
        batch = state.shape[0]
        flat_state = state.to(dtype).repeat_interleave(num_samples, dim=0)  # [B*N, S], rows of a state adjacent
    else:
        batch, flat_state = 1, None
    rows = batch * num_samples
    x = torch.randn(rows, action_dim, generator=generator, device=device, dtype=dtype)
    dt = 1.0 / num_steps
    for k in range(num_steps):
        t = torch.full((rows,), k * dt, device=device, dtype=dtype)
        x = x + dt * velocity_net(x, t, flat_state)
        if noise_scale > 0 and k < num_steps - 1:
            x = x + noise_scale * math.sqrt(dt) * torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
    x = bound_actions(x, low, high, bound)
    if state is None:
        return x
    return x.reshape(batch, num_samples, action_dim)


class FlowPolicy(nn.Module):
    """A flow-matching policy: a velocity network plus its sampler settings and action box.

    Args:
        velocity: the velocity network (e.g. :class:`VelocityMLP`); must expose ``action_dim``.
        num_steps: Euler steps used by :meth:`sample`.
        low, high: action bounds (scalars or ``[A]``), or ``None`` for unbounded actions.
        bound: ``"clip"`` / ``"tanh"`` / ``"none"`` (see :func:`bound_actions`).
    """

    def __init__(
        self,
        velocity: nn.Module,
        *,
        num_steps: int = 20,
        low: Tensor | float | None = -1.0,
        high: Tensor | float | None = 1.0,
        bound: str = "clip",
    ) -> None:
        super().__init__()
        if bound not in BOUND_MODES:
            raise ValueError(f"FlowPolicy: unknown bound mode {bound!r}; choose from {BOUND_MODES}")
        self.velocity = velocity
        self.action_dim = velocity.action_dim
        self.num_steps = num_steps
        self.low, self.high, self.bound = low, high, bound

    def forward(self, action_t: Tensor, t: Tensor, state: Tensor | None = None) -> Tensor:
        """Velocity ``[B, A]`` (delegates to the velocity network)."""
        return self.velocity(action_t, t, state)

    def loss(
        self,
        action: Tensor,
        state: Tensor | None = None,
        *,
        weight: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Scalar (signed-)weighted flow-matching loss; see :func:`flow_matching_loss`."""
        return flow_matching_loss(self.velocity, action, state, weight=weight, generator=generator)

    def sample(
        self,
        state: Tensor | None,
        num_samples: int,
        *,
        noise_scale: float = 0.0,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Actions ``[B, N, A]`` (``[N, A]`` without state); see :func:`sample_actions`."""
        return sample_actions(
            self.velocity,
            state,
            num_samples,
            num_steps=num_steps or self.num_steps,
            noise_scale=noise_scale,
            low=self.low,
            high=self.high,
            bound=self.bound,
            generator=generator,
        )
