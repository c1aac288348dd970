"""Tests of simpo_bio.diffusion.flow: the path and loss, the Euler sampler, and the geometry of signed weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from simpo_bio.diffusion.flow import (
    FlowPolicy,
    VelocityMLP,
    bound_actions,
    flow_matching_loss,
    integrate_flow,
    per_sample_flow_matching_loss,
    sample_actions,
    time_grid,
)

torch.set_num_threads(1)


class DeltaVelocity(nn.Module):
    """Exact marginal velocity of the linear path when all data sit at one point ``a0``: ``(a0 - x) / (1 - t)``."""

    def __init__(self, a0: torch.Tensor, bias: float = 0.0) -> None:
        super().__init__()
        self.a0, self.bias, self.action_dim = a0, bias, a0.shape[-1]

    def forward(self, x, t, state=None):
        return (self.a0 - x) / (1.0 - t[:, None]) + self.bias


def test_loss_zero_for_true_velocity_and_positive_otherwise():
    a0 = torch.tensor([0.3, -1.2], dtype=torch.float64)
    action = a0.expand(256, 2).clone()
    gen = torch.Generator().manual_seed(0)
    exact = per_sample_flow_matching_loss(DeltaVelocity(a0), action, generator=gen)
    assert exact.shape == (256,)
    assert exact.max().item() < 1e-12
    gen = torch.Generator().manual_seed(0)
    off = per_sample_flow_matching_loss(DeltaVelocity(a0, bias=0.1), action, generator=gen)
    # a constant offset b adds exactly ||b||^2 to every sample's loss
    torch.testing.assert_close(off, torch.full_like(off, 2 * 0.1**2))
    zero_net = lambda x, t, s: torch.zeros_like(x)  # noqa: E731
    assert flow_matching_loss(zero_net, action).item() > 0.5


def test_loss_matches_hand_computation_and_weighting():
    net = VelocityMLP(3, state_dim=2, hidden=16, depth=2)
    action, state = torch.randn(5, 3), torch.randn(5, 2)
    t, noise = torch.rand(5), torch.randn(5, 3)
    per = per_sample_flow_matching_loss(net, action, state, t=t, noise=noise)
    expected = (net(t[:, None] * action + (1 - t[:, None]) * noise, t, state) - (action - noise)).pow(2).sum(-1)
    torch.testing.assert_close(per, expected)
    w = torch.tensor([0.5, -0.2, 0.3, 0.3, 0.1])
    torch.testing.assert_close(flow_matching_loss(net, action, state, weight=w, t=t, noise=noise), (w * per).sum())
    torch.testing.assert_close(flow_matching_loss(net, action, state, t=t, noise=noise), per.mean())
    with pytest.raises(ValueError, match="weight"):
        flow_matching_loss(net, action, state, weight=torch.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        flow_matching_loss(net, action, state, weight=torch.tensor([1.0, float("nan"), 0, 0, 0]))


def test_velocity_mlp_shapes_and_errors():
    net = VelocityMLP(2, state_dim=3, hidden=8, depth=1, activation="silu", layer_norm=True)
    assert net(torch.randn(4, 2), torch.rand(4), torch.randn(4, 3)).shape == (4, 2)
    assert net(torch.randn(4, 2), torch.tensor(0.5), torch.randn(4, 3)).shape == (4, 2)
    with pytest.raises(ValueError, match="state"):
        net(torch.randn(4, 2), torch.rand(4))
    with pytest.raises(ValueError, match="action_t"):
        net(torch.randn(4, 5), torch.rand(4), torch.randn(4, 3))
    with pytest.raises(ValueError, match="activation"):
        VelocityMLP(2, activation="swish2")
    with pytest.raises(ValueError):
        VelocityMLP(0)


def test_sampler_shapes_bounds_determinism():
    torch.manual_seed(0)
    net = VelocityMLP(2, state_dim=3, hidden=16, depth=2)
    with torch.no_grad():  # a large output scale so that clipping matters
        net.net[-1].weight.mul_(50)
    state = torch.randn(4, 3)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a1 = sample_actions(net, state, 6, num_steps=5, low=-1.0, high=1.0, generator=g1)
    a2 = sample_actions(net, state, 6, num_steps=5, low=-1.0, high=1.0, generator=g2)
    assert a1.shape == (4, 6, 2)
    assert torch.equal(a1, a2)
    assert a1.abs().max() <= 1.0 and (a1.abs() == 1.0).any()
    g3 = torch.Generator().manual_seed(8)
    assert not torch.equal(a1, sample_actions(net, state, 6, num_steps=5, low=-1.0, high=1.0, generator=g3))
    low, high = torch.tensor([-0.5, 0.0]), torch.tensor([0.5, 2.0])
    a_tanh = sample_actions(net, state, 6, num_steps=5, low=low, high=high, bound="tanh")
    assert (a_tanh >= low).all() and (a_tanh <= high).all()
    uncond = VelocityMLP(1, hidden=8, depth=1)
    out = sample_actions(uncond, None, 10, num_steps=3, noise_scale=0.5)
    assert out.shape == (10, 1) and not out.requires_grad
    with pytest.raises(ValueError):
        sample_actions(uncond, None, 0)
    with pytest.raises(ValueError, match="mode"):
        bound_actions(out, -1, 1, mode="squash")
    with pytest.raises(ValueError, match="low < high"):
        bound_actions(out, 1.0, -1.0)


def test_euler_sampler_integrates_the_exact_flow():
    """With the exact velocity of a point mass, Euler integration lands on the point (rows independent of noise)."""
    a0 = torch.tensor([0.25, -0.75])
    out = sample_actions(DeltaVelocity(a0), None, 32, num_steps=4)
    torch.testing.assert_close(out, a0.expand(32, 2), atol=1e-5, rtol=0)


def test_time_grids():
    for sched in ("uniform", "cosine"):
        g = time_grid(7, sched, dtype=torch.float64)
        assert g.shape == (8,) and g[0] == 0 and g[-1] == 1 and bool((g.diff() > 0).all())
    torch.testing.assert_close(time_grid(4), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    cos = time_grid(10, "cosine").diff()
    assert cos[0] < cos[-1]  # cosine: fine steps near the noise end t = 0
    with pytest.raises(ValueError, match="num_steps"):
        time_grid(0)
    with pytest.raises(ValueError, match="schedule"):
        time_grid(5, "linear")


def _hand_euler(net, x, state, grid, scale=0.0, step_noise=()):
    """Reference Euler loop through the network's plain forward, one call per step with per-row inputs."""
    rows = x.shape[0]
    flat_state = None if state is None else state.repeat_interleave(rows // state.shape[0], dim=0)
    for k in range(len(grid) - 1):
        dt = grid[k + 1] - grid[k]
        x = x + dt * net(x, torch.full((rows,), grid[k]), flat_state)
        if k < len(grid) - 2 and scale > 0:
            x = x + scale * math.sqrt(dt) * step_noise[k]
    return x


@pytest.mark.parametrize("state_dim,layer_norm", [(3, False), (0, True)])
def test_cosine_grid_sampler_matches_hand_computed_euler(state_dim, layer_norm):
    """sample_actions(schedule="cosine") = Euler on t_k = 1 - cos(pi k / 2K), the network called row by row."""
    torch.manual_seed(0)
    net = VelocityMLP(2, state_dim=state_dim, hidden=16, depth=2, layer_norm=layer_norm)
    state, batch = (torch.randn(5, 3), 5) if state_dim else (None, 1)
    steps, n = 6, 4
    grid = [1.0 - math.cos(math.pi * k / (2 * steps)) for k in range(steps + 1)]
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(batch * n, 2, generator=gen)
    with torch.no_grad():
        ref = _hand_euler(net, x0, state, grid).clamp(-1.0, 1.0)
    out = sample_actions(net, state, n, num_steps=steps, schedule="cosine", low=-1.0, high=1.0,
                         generator=torch.Generator().manual_seed(1))  # fmt: skip
    torch.testing.assert_close(out.reshape(-1, 2), ref)
    # the same grid given explicitly, and the generic (unfactored) path of a plain callable, agree
    explicit = sample_actions(net, state, n, times=torch.tensor(grid), low=-1.0, high=1.0,
                              generator=torch.Generator().manual_seed(1))  # fmt: skip
    torch.testing.assert_close(explicit, out)
    plain = sample_actions(lambda a, t, s: net(a, t, s), state, n, num_steps=steps, schedule="cosine", low=-1.0,
                           high=1.0, action_dim=2, generator=torch.Generator().manual_seed(1))  # fmt: skip
    torch.testing.assert_close(plain, out)
    # with exploration noise: initial noise first, then one draw per step in order, scaled by sqrt(dt_k)
    gen = torch.Generator().manual_seed(2)
    x0 = torch.randn(batch * n, 2, generator=gen)
    z = [torch.randn(batch * n, 2, generator=gen) for _ in range(steps - 1)]
    with torch.no_grad():
        ref = _hand_euler(net, x0, state, grid, 0.3, z)
    noisy = sample_actions(net, state, n, num_steps=steps, schedule="cosine", noise_scale=0.3,
                           generator=torch.Generator().manual_seed(2))  # fmt: skip
    torch.testing.assert_close(noisy.reshape(-1, 2), ref)


def test_sampler_rejects_bad_grids_and_states():
    net = VelocityMLP(2, state_dim=3, hidden=8, depth=1)
    state = torch.randn(2, 3)
    for bad in (torch.tensor([0.0, 0.5, 0.5, 1.0]), torch.tensor([0.0, 1.2]), torch.tensor([0.3]), torch.ones(2, 2)):
        with pytest.raises(ValueError, match="times"):
            sample_actions(net, state, 2, times=bad)
    with pytest.raises(ValueError, match="schedule"):
        sample_actions(net, state, 2, schedule="quadratic")
    with pytest.raises(ValueError, match="state"):
        sample_actions(net, None, 2)
    with pytest.raises(ValueError, match="low < high"):
        sample_actions(net, state, 2, low=torch.tensor([0.0, 1.0]), high=torch.tensor([1.0, 0.5]))


def test_integrate_flow_compiles_without_graph_breaks():
    """The Euler core (bounds included) is one graph for torch.compile: no host syncs, no data-dependent branches."""
    net = VelocityMLP(2, state_dim=3, hidden=8, depth=1)
    state, noise, grid = torch.randn(2, 3), torch.randn(6, 2), time_grid(3, "cosine")
    for low, high in ((-1.0, 1.0), (torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.5]))):
        explanation = torch._dynamo.explain(integrate_flow)(net, noise, grid, state, low=low, high=high)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1


def _pretrained_gaussian_policy(seed: int) -> FlowPolicy:
    """A 1-D flow policy fitted to N(0, 0.3^2)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    policy = FlowPolicy(VelocityMLP(1, hidden=32, depth=2), num_steps=8, low=None, high=None)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(300):
        data = 0.3 * torch.randn(256, 1, generator=gen)
        loss = policy.loss(data, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return policy


def _mean_after_update(policy: FlowPolicy, points: list[float], weights: list[float], steps: int = 30) -> float:
    """Mean of the policy after ``steps`` Adam steps on the weighted loss (a copy; the input policy is untouched)."""
    import copy

    policy = copy.deepcopy(policy)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    reps = 128
    action = torch.tensor(points).repeat_interleave(reps)[:, None]
    weight = torch.tensor(weights).repeat_interleave(reps) / reps
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        loss = policy.loss(action, weight=weight, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _policy_mean(policy)


def _policy_mean(policy: FlowPolicy) -> float:
    return policy.sample(None, 4096, generator=torch.Generator().manual_seed(3)).mean().item()


def test_signed_weights_attract_and_repel():
    """Paper Sec. 3.4: positive weights pull the policy toward their samples, a negative weight pushes it away."""
    policy = _pretrained_gaussian_policy(0)
    base = _policy_mean(policy)
    assert abs(base) < 0.1
    # all-positive weights, most of the mass on +0.5: the mean moves right
    toward = _mean_after_update(policy, [-0.5, 0.5], [0.1, 0.9])
    assert toward > base + 0.05
    # mirror image: the mean moves left
    assert _mean_after_update(policy, [-0.5, 0.5], [0.9, 0.1]) < base - 0.05
    # the sample at +0.5 gets a negative weight, the total mass (at 0) stays positive: the mean moves left (away)
    away = _mean_after_update(policy, [0.0, 0.5], [1.5, -0.5])
    assert away < base - 0.05
    # ... and the same update without the negative term (weight 0 at +0.5) moves the mean much less
    neutral = _mean_after_update(policy, [0.0, 0.5], [1.0, 0.0])
    assert away < neutral - 0.03


def test_repel_margin_bounds_negative_terms_only():
    from simpo_bio.diffusion.flow import flow_matching_loss

    a_dim = 3
    action = torch.zeros(4, a_dim)
    t, noise = torch.full((4,), 0.5), torch.zeros(4, a_dim)
    weight = torch.tensor([0.5, 1.0, -0.25, -0.25])
    for scale in (1.0, 1e3, 1e6):  # a velocity field pushed ever further from every target
        net = lambda a_t, tt, s, c=scale: torch.full_like(a_t, c)  # noqa: E731
        unbounded = flow_matching_loss(net, action, weight=weight, t=t, noise=noise)
        capped = flow_matching_loss(net, action, weight=weight, t=t, noise=noise, repel_margin=2.0)
        per = a_dim * scale**2  # every sample's squared error
        assert unbounded.item() == pytest.approx(per * weight.sum().item(), rel=1e-5)
        # positive terms as before, negative ones capped at margin * A
        assert capped.item() == pytest.approx(1.5 * per - 0.5 * min(per, 2.0 * a_dim), rel=1e-5)
    # within the margin the two losses (and their optimum) agree
    net = lambda a_t, tt, s: torch.full_like(a_t, 0.1)  # noqa: E731
    assert flow_matching_loss(net, action, weight=weight, t=t, noise=noise, repel_margin=2.0).item() == (
        pytest.approx(flow_matching_loss(net, action, weight=weight, t=t, noise=noise).item())
    )
    with pytest.raises(ValueError, match="repel_margin"):
        flow_matching_loss(net, action, weight=weight, repel_margin=0.0)


def test_repel_margin_stops_the_gradient_of_far_negative_samples():
    from simpo_bio.diffusion.flow import flow_matching_loss

    bias = torch.tensor([10.0], requires_grad=True)
    net = lambda a_t, tt, s: a_t * 0 + bias  # noqa: E731
    action, t, noise = torch.zeros(2, 1), torch.full((2,), 0.5), torch.zeros(2, 1)
    loss = flow_matching_loss(net, action, weight=torch.tensor([1.5, -0.5]), t=t, noise=noise, repel_margin=4.0)
    loss.backward()
    # only the positive sample pulls (d/db 1.5 (b - 0)^2 = 3 b); the negative one is beyond 4 and pushes no more
    assert bias.grad.item() == pytest.approx(3 * 10.0)
