"""Tests of simpo_bio.diffusion.flow: the path and loss, the Euler sampler, and the geometry of signed weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from simpo_bio.diffusion.flow import (
    FlowPolicy,
    VelocityMLP,
    bound_actions,
    flow_matching_loss,
    per_sample_flow_matching_loss,
    sample_actions,
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
    """SPEC 3.4: positive weights pull the policy toward their samples, a negative weight pushes it away."""
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
