"""Continuous flow matching for policies: path, per-sample (signed-)weighted loss, Euler ODE sampler.

The probability path is the linear (rectified-flow / conditional OT) path (``docs/method.md``, section 7)::

    a_t = t * a + (1 - t) * eps,      eps ~ N(0, I),  t ~ U[0, 1)
    target velocity  u_t = a - eps     (d a_t / d t)

so ``t = 0`` is pure noise and ``t = 1`` is the action. Training minimises the conditional flow-matching loss
``|| v_theta(a_t, t, s) - (a - eps) ||^2`` per sample; SiMPO's Stage II (paper Eq. 7) multiplies each sample's
term by a detached weight ``w_j`` which may be negative (signed measures, paper Sec. 3.3-3.4): a negative weight
turns the term into a repelling force that pushes the velocity field away from that sample.

Sampling integrates ``d a / d t = v_theta(a, t, s)`` from ``t = 0`` to ``t = 1`` with the explicit Euler method
on a uniform or cosine time grid (or any given grid); all ``B x N`` particles (B states, N samples per state) go
through the network in one forward per ODE step. :func:`sample_actions` validates and draws the random numbers;
:func:`integrate_flow` is its deterministic, ``torch.compile``-friendly core. The velocity network
(:class:`VelocityMLP`) lives in :mod:`simpo_bio.diffusion.velocity` and is re-exported here.

Shared by :mod:`simpo_bio.bandit` and :mod:`simpo_bio.control`. Imports: torch and
:mod:`simpo_bio.diffusion.velocity` only (no Lightning).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from simpo_bio.diffusion.velocity import ACTIVATIONS, VelocityFn, VelocityMLP, timestep_embedding

__all__ = [
    "ACTIVATIONS",
    "BOUND_MODES",
    "FlowPolicy",
    "TIME_SCHEDULES",
    "VelocityFn",
    "VelocityMLP",
    "bound_actions",
    "flow_matching_loss",
    "integrate_flow",
    "per_sample_flow_matching_loss",
    "sample_actions",
    "time_grid",
    "timestep_embedding",
]

#: Modes of :func:`bound_actions`.
BOUND_MODES = ("clip", "tanh", "none")
#: Time grids of :func:`time_grid`.
TIME_SCHEDULES = ("uniform", "cosine")


def per_sample_flow_matching_loss(
    velocity_net: VelocityFn,
    action: Tensor,
    state: Tensor | None = None,
    *,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Conditional flow-matching loss of each sample on the linear path (paper Eq. 7, unweighted terms).

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
    repel_margin: float | None = None,
) -> Tensor:
    """(Signed-)weighted flow-matching loss, SiMPO Stage II for continuous actions (paper Eq. 7).

    ``L = sum_j w_j * l_j`` when ``weight`` is given (``l_j`` from :func:`per_sample_flow_matching_loss`), and the
    plain mean ``mean_j l_j`` otherwise. Weights are treated as constants (detached). With the weights of one
    group summing to 1 (as :func:`simpo_bio.weighting.compute_weights` returns them), the weighted sum has the
    scale of a per-sample mean; for ``G`` groups flattened into ``B = G * N`` rows, pass ``weight / G`` to keep it.
    Negative weights are allowed and repel the velocity field from their samples (paper Sec. 3.4); the loss is
    then unbounded below if a region's total weight is negative (the paper's Case II, Sec. 3.4), and a network
    can drive it to -inf by pushing its velocity ever further from the negative samples.

    ``repel_margin`` bounds that repulsion (our rule, not the paper's): for a sample with a negative weight the
    term is ``min(l_j, repel_margin * A)``, so the push stops once the predicted velocity is ``sqrt(repel_margin)``
    per action dimension (root mean square) away from that sample's target. Positive-weight terms are unchanged,
    and where the weighted-average optimum (Case I) lies within the margin the optimum is unchanged too; the loss
    is bounded below by ``repel_margin * A * sum(negative weights)``.

    Args:
        velocity_net: callable ``(a_t [B, A], t [B], state [B, S] | None) -> [B, A]``.
        action: ``[B, A]`` actions to fit.
        state: ``[B, S]`` or ``None``.
        weight: ``[B]`` per-sample weights (any sign) or ``None``.
        generator: torch generator for the path noise and times.
        t, noise: optional fixed ``[B]`` times and ``[B, A]`` source noise.
        repel_margin: cap of a negative-weight sample's squared error per action dimension (``None``: no cap).

    Returns:
        Scalar loss.

    Raises:
        ValueError: ``weight`` not of shape ``[B]`` or contains non-finite values; ``repel_margin <= 0``; shape
            errors of the per-sample loss.
    """
    if repel_margin is not None and not repel_margin > 0:
        raise ValueError(f"flow matching: repel_margin must be > 0 (or None), got {repel_margin}")
    per_sample = per_sample_flow_matching_loss(velocity_net, action, state, t=t, noise=noise, generator=generator)
    if weight is None:
        return per_sample.mean()
    if weight.shape != per_sample.shape:
        raise ValueError(f"flow matching: weight must be [{per_sample.shape[0]}], got {tuple(weight.shape)}")
    weight = weight.detach().to(per_sample.dtype)
    if not torch.isfinite(weight).all():
        raise ValueError("flow matching: weight contains NaN or inf")
    if repel_margin is not None:
        cap = repel_margin * action.shape[-1]
        per_sample = torch.where(weight < 0, per_sample.clamp(max=cap), per_sample)
    return (weight * per_sample).sum()


def _check_bounds(low: Tensor | float | None, high: Tensor | float | None, mode: str) -> bool:
    """Validate a bound specification once (eagerly); returns whether bounding applies at all.

    Raises:
        ValueError: unknown ``mode``, only one bound given, or ``low >= high`` somewhere.
    """
    if mode not in BOUND_MODES:
        raise ValueError(f"bound_actions: unknown mode {mode!r}; choose from {BOUND_MODES}")
    if mode == "none" or (low is None and high is None):
        return False
    if low is None or high is None:
        raise ValueError("bound_actions: give both low and high (or neither)")
    if isinstance(low, Tensor) or isinstance(high, Tensor):
        ok = bool((torch.as_tensor(low) < torch.as_tensor(high)).all())
    else:
        ok = float(low) < float(high)
    if not ok:
        raise ValueError(f"bound_actions: need low < high, got low={low}, high={high}")
    return True


def _apply_bounds(action: Tensor, low: Tensor | float | None, high: Tensor | float | None, mode: str) -> Tensor:
    """The arithmetic of :func:`bound_actions` without its checks (no host sync: safe inside ``torch.compile``)."""
    if mode == "none" or low is None or high is None:
        return action
    if isinstance(low, Tensor) or isinstance(high, Tensor):
        low = torch.as_tensor(low, dtype=action.dtype, device=action.device)
        high = torch.as_tensor(high, dtype=action.dtype, device=action.device)
        if mode == "clip":
            return torch.maximum(torch.minimum(action, high), low)
    elif mode == "clip":
        return action.clamp(float(low), float(high))
    return low + (high - low) * (torch.tanh(action) + 1.0) / 2.0


def bound_actions(action: Tensor, low: Tensor | float | None, high: Tensor | float | None, mode: str = "clip") -> Tensor:
    """Map ODE outputs into the action box ``[low, high]``.

    The bounds are validated here (one host sync when they are tensors); :func:`integrate_flow` applies the same
    map without the check so that it can be compiled.

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
    if not _check_bounds(low, high, mode):
        return action
    return _apply_bounds(action, low, high, mode)


def time_grid(
    num_steps: int,
    schedule: str = "uniform",
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Time points ``0 = t_0 < t_1 < ... < t_K = 1`` of the Euler sampler, shape ``[K + 1]``.

    ``"uniform"``: ``t_k = k / K``. ``"cosine"``: ``t_k = 1 - cos(pi k / (2 K))`` -- small steps near the noise
    end ``t = 0`` where the velocity field of a multi-modal policy changes fastest and large ones near the data;
    the flow analogue of the cosine schedule the paper's control experiments use (Appendix F, 20 steps).

    Args:
        num_steps: ``K``, the number of Euler steps (``>= 1``).
        schedule: one of :data:`TIME_SCHEDULES`.
        device, dtype: of the result (default CPU / the default float dtype); computed in float64 first.

    Raises:
        ValueError: ``num_steps < 1`` or an unknown schedule.
    """
    if num_steps < 1:
        raise ValueError(f"time_grid: num_steps must be >= 1, got {num_steps}")
    if schedule not in TIME_SCHEDULES:
        raise ValueError(f"time_grid: unknown schedule {schedule!r}; choose from {TIME_SCHEDULES}")
    k = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    grid = k if schedule == "uniform" else 1.0 - torch.cos(0.5 * math.pi * k)
    grid[-1] = 1.0  # exact end point (cos(pi / 2) is 6e-17 in float64)
    return grid.to(device=device, dtype=dtype or torch.get_default_dtype())


def _factored_first_layer(velocity_net: object) -> bool:
    """Whether :func:`integrate_flow` may split the first linear layer of ``velocity_net`` (a plain VelocityMLP)."""
    return (
        isinstance(velocity_net, VelocityMLP)
        and type(velocity_net).forward is VelocityMLP.forward
        and isinstance(velocity_net.net[0], nn.Linear)
    )


def integrate_flow(
    velocity_net: VelocityFn,
    noise: Tensor,
    times: Tensor,
    state: Tensor | None = None,
    *,
    step_noise: Tensor | None = None,
    noise_scale: float = 0.0,
    low: Tensor | float | None = None,
    high: Tensor | float | None = None,
    bound: str = "clip",
) -> Tensor:
    """The deterministic core of :func:`sample_actions`: Euler steps of ``da/dt = v(a, t, s)`` on a time grid.

    ``x_{k+1} = x_k + (t_{k+1} - t_k) v(x_k, t_k, s)`` from ``x_0 = noise``, plus
    ``noise_scale * sqrt(t_{k+1} - t_k) * step_noise[k]`` after every step but the last when ``step_noise`` is
    given, then the bound map of :func:`bound_actions`. It draws no random numbers and makes no data-dependent
    Python decisions (bounds are *not* validated here -- :func:`sample_actions` does that once), so
    ``torch.compile(integrate_flow)`` traces it whole.

    For a :class:`VelocityMLP` the first linear layer ``W [a; e(t); s] + b`` is split by input: the state part
    ``W_s s + b`` is computed once per state (not per particle) and the time part ``W_e e(t_k)`` once per grid
    point (not per row), so a step costs one ``[M, A] x [A, H]`` product plus the hidden layers; the result is the
    same as calling the network (up to float rounding, tested). Other velocity callables get one plain call per step.

    Args:
        velocity_net: ``(a [M, A], t [M], state [M, S] | None) -> [M, A]``.
        noise: ``[M, A]`` starting points ``x_0`` (``M = B N`` rows; the ``N`` rows of one state adjacent).
        times: ``[K + 1]`` increasing flow times, e.g. :func:`time_grid`; same dtype/device as ``noise``.
        state: ``[B, S]`` with ``B`` dividing ``M``, or ``None`` (unconditional).
        step_noise: ``[K - 1, M, A]`` standard-normal exploration noise, or ``None``.
        noise_scale: its scale (action units per sqrt unit flow time).
        low, high, bound: the action box and bound mode (see :func:`bound_actions`), already validated.

    Returns:
        ``[M, A]`` actions.

    Raises:
        ValueError: for a :class:`VelocityMLP`, a ``state`` that does not match its ``state_dim``.
    """
    rows = noise.shape[0]
    num_steps = times.shape[0] - 1
    dts = times.diff()
    x = noise
    if _factored_first_layer(velocity_net):
        net: VelocityMLP = velocity_net  # type: ignore[assignment]
        first: nn.Linear = net.net[0]  # type: ignore[assignment]
        hidden = first.weight.shape[0]
        w_a, w_t, w_s = first.weight.split([net.action_dim, net.time_embed_dim, net.state_dim], dim=1)
        h_time = net.time_mlp(timestep_embedding(times[:-1], net.time_embed_dim)) @ w_t.t()  # [K, H]
        if (state is None) != (net.state_dim == 0) or (state is not None and state.shape[-1] != net.state_dim):
            got = None if state is None else tuple(state.shape)
            raise ValueError(f"integrate_flow: the network needs state [B, {net.state_dim}], got {got}")
        if state is not None:
            batch = state.shape[0]
            h_cond = torch.addmm(first.bias, state.to(noise.dtype), w_s.t()).unsqueeze(1)  # [B, 1, H]
        else:
            batch = 1
            h_cond = first.bias.view(1, 1, hidden)
        h_time = h_time.unsqueeze(1)  # [K, 1, H]: broadcast over the N particles of a state
        rest = net.net[1:]
        for k in range(num_steps):
            h = (x @ w_a.t()).view(batch, rows // batch, hidden) + (h_cond + h_time[k])
            x = x + dts[k] * rest(h.view(rows, hidden))
            if step_noise is not None and k < num_steps - 1:
                x = x + noise_scale * dts[k].sqrt() * step_noise[k]
    else:
        flat_state = None
        if state is not None:
            flat_state = state.to(noise.dtype).repeat_interleave(rows // state.shape[0], dim=0)  # [M, S]
        for k in range(num_steps):
            x = x + dts[k] * velocity_net(x, times[k].expand(rows), flat_state)
            if step_noise is not None and k < num_steps - 1:
                x = x + noise_scale * dts[k].sqrt() * step_noise[k]
    return _apply_bounds(x, low, high, bound)


@torch.no_grad()
def sample_actions(
    velocity_net: VelocityFn,
    state: Tensor | None,
    num_samples: int,
    *,
    num_steps: int = 20,
    schedule: str = "uniform",
    times: Tensor | None = None,
    noise_scale: float = 0.0,
    low: Tensor | float | None = None,
    high: Tensor | float | None = None,
    bound: str = "clip",
    action_dim: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    integrate: Callable[..., Tensor] | None = None,
) -> Tensor:
    """Draw actions by Euler integration of ``da/dt = v(a, t, s)`` from ``t = 0`` (noise) to ``t = 1``.

    All ``B x N`` particles share one network call per step, so the cost is ``num_steps`` forwards of a batch of
    ``B * N`` rows (cheaper for a :class:`VelocityMLP`, see :func:`integrate_flow`). Optional exploration noise
    adds ``noise_scale * sqrt(dt_k) * z`` after every step but the last (an SDE-like perturbation of the ODE; 0
    gives the deterministic flow map, a function of the initial noise only). This function validates the inputs,
    draws all random numbers (initial noise first, then the per-step noise in step order) and hands the rest to
    ``integrate`` (default :func:`integrate_flow`; pass ``torch.compile(integrate_flow)`` for a compiled sampler).

    Args:
        velocity_net: callable ``(a [M, A], t [M], state [M, S] | None) -> [M, A]``; if ``action_dim`` is not
            given, ``velocity_net.action_dim`` is used.
        state: ``[B, S]`` states, or ``None`` for an unconditional policy.
        num_samples: ``N`` actions per state (or in total when ``state`` is ``None``).
        num_steps: Euler steps ``K`` (``>= 1``) of the ``schedule`` grid.
        schedule: ``"uniform"`` or ``"cosine"`` time grid (:func:`time_grid`).
        times: explicit ``[K + 1]`` grid, strictly increasing within ``[0, 1]``; overrides ``num_steps`` and
            ``schedule``.
        noise_scale: exploration noise (action units per sqrt unit flow time); ``0`` disables it.
        low, high: action bounds (see :func:`bound_actions`); ``None`` leaves actions unbounded.
        bound: ``"clip"``, ``"tanh"`` or ``"none"``.
        action_dim: ``A``; defaults to ``velocity_net.action_dim``.
        generator: torch generator for the initial noise and exploration noise (same seed, same actions).
        device, dtype: of the output when ``state`` is ``None`` (default: the network's parameters').
        integrate: the Euler core, called as :func:`integrate_flow` (default: that function).

    Returns:
        ``[B, N, A]`` actions when ``state`` is given, ``[N, A]`` otherwise.

    Raises:
        ValueError: ``num_samples < 1``, ``num_steps < 1``, unknown schedule, a bad ``times`` grid,
            ``noise_scale < 0``, unknown ``action_dim``, bad bounds, ``state`` not 2-D.
    """
    if num_samples < 1 or num_steps < 1:
        raise ValueError(f"sample_actions: need num_samples >= 1 and num_steps >= 1, got {num_samples}, {num_steps}")
    if noise_scale < 0:
        raise ValueError(f"sample_actions: noise_scale must be >= 0, got {noise_scale}")
    _check_bounds(low, high, bound)
    if action_dim is None:
        action_dim = getattr(velocity_net, "action_dim", None)
        if action_dim is None:
            raise ValueError("sample_actions: pass action_dim (the velocity network has no .action_dim)")
    if device is None or dtype is None:
        param = next(velocity_net.parameters(), None) if isinstance(velocity_net, nn.Module) else None
        ref = state if state is not None else param
        device = device or (ref.device if ref is not None else "cpu")
        dtype = dtype or (ref.dtype if ref is not None and ref.is_floating_point() else torch.get_default_dtype())
    if times is None:
        times = time_grid(num_steps, schedule, device=device, dtype=dtype)
    else:
        if times.dim() != 1 or times.shape[0] < 2:
            raise ValueError(f"sample_actions: times must be [K + 1] with K >= 1, got {tuple(times.shape)}")
        if not bool(((times[1:] > times[:-1]).all() & (times[0] >= 0) & (times[-1] <= 1)).item()):
            raise ValueError(f"sample_actions: times must increase strictly within [0, 1], got {times.tolist()}")
        times = times.to(device=device, dtype=dtype)
    if state is not None:
        if state.dim() != 2:
            raise ValueError(f"sample_actions: state must be [B, S], got {tuple(state.shape)}")
        batch = state.shape[0]
        state = state.to(dtype)
    else:
        batch = 1
    rows = batch * num_samples
    x0 = torch.randn(rows, action_dim, generator=generator, device=device, dtype=dtype)
    step_noise = None
    if noise_scale > 0 and times.shape[0] > 2:
        draws = [torch.randn(rows, action_dim, generator=generator, device=device, dtype=dtype)
                 for _ in range(times.shape[0] - 2)]  # fmt: skip
        step_noise = torch.stack(draws)
    x = (integrate or integrate_flow)(
        velocity_net, x0, times, state, step_noise=step_noise, noise_scale=noise_scale, low=low, high=high,
        bound=bound,
    )
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
        schedule: time grid of the sampler, ``"uniform"`` or ``"cosine"`` (see :func:`time_grid`).

    Raises:
        ValueError: unknown bound mode or schedule.
    """

    def __init__(
        self,
        velocity: nn.Module,
        *,
        num_steps: int = 20,
        low: Tensor | float | None = -1.0,
        high: Tensor | float | None = 1.0,
        bound: str = "clip",
        schedule: str = "uniform",
    ) -> None:
        super().__init__()
        if bound not in BOUND_MODES:
            raise ValueError(f"FlowPolicy: unknown bound mode {bound!r}; choose from {BOUND_MODES}")
        if schedule not in TIME_SCHEDULES:
            raise ValueError(f"FlowPolicy: unknown schedule {schedule!r}; choose from {TIME_SCHEDULES}")
        self.schedule = schedule
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
        """0-d (signed-)weighted flow-matching loss of ``action [B, A]`` (paper Eq. 7), ``weight [B]`` or ``None``.

        See :func:`flow_matching_loss` (no ``repel_margin`` here); raises its ``ValueError`` on bad shapes.
        """
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
        """Actions ``[B, N, A]`` (``[N, A]`` when ``state`` is None) in the action box; see :func:`sample_actions`."""
        return sample_actions(
            self.velocity, state, num_samples, num_steps=num_steps or self.num_steps, schedule=self.schedule,
            noise_scale=noise_scale, low=self.low, high=self.high, bound=self.bound, generator=generator,
        )
