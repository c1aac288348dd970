"""Tests of simpo_bio.bandit.rewards: formulas, optima, basins and the initial policies."""

from __future__ import annotations

import math

import pytest
import torch

from simpo_bio.bandit import REWARDS, get_reward


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_reward_optimum_and_basins(name):
    reward = get_reward(name)
    a_star, r_star = reward.optimum()
    global_center = reward.bumps[0][0]
    assert abs(a_star - global_center) < 0.01
    probe = torch.rand(20_000, dtype=torch.float64) * (reward.high - reward.low) + reward.low
    assert reward(probe).max().item() <= r_star + 1e-12
    # the formula, evaluated by hand at the second bump's centre
    c1 = reward.bumps[1][0]
    by_hand = sum(h * math.exp(-((c1 - c) ** 2) / (2 * s * s)) for c, h, s in reward.bumps)
    assert reward(torch.tensor([[c1]], dtype=torch.float64)).item() == pytest.approx(by_hand)
    assert by_hand < r_star - 0.1  # the second optimum is strictly worse
    inside = reward.in_global_basin(torch.tensor([global_center, c1]))
    assert inside.tolist() == [True, False]
    a_local, r_local = reward.local_optimum()
    assert abs(a_local - c1) < 0.01 and by_hand <= r_local < by_hand + 1e-3
    assert reward.escape_regret() == pytest.approx((r_star - r_local) / 2)
    init = reward.sample_init(4096, torch.Generator().manual_seed(0))
    assert init.shape == (4096, 1) and init.min() >= reward.low and init.max() <= reward.high
    assert init.mean().item() == pytest.approx(reward.init_mean, abs=0.03)


def test_two_optima_starts_on_the_local_optimum():
    reward = get_reward("two_optima")
    init = reward.sample_init(4096, torch.Generator().manual_seed(0))
    # P(N(-0.4, 0.15^2) > valley at -0.09) = 1.9%: a few samples start across the valley
    assert reward.in_global_basin(init).float().mean() < 0.04
    valley = reward(torch.tensor([reward.basin_boundary()]))
    assert valley.item() < reward(torch.tensor([-0.4])).item() - 0.3
    assert reward(init).mean().item() < reward.optimum()[1] - 0.3  # initial regret > 0.3
