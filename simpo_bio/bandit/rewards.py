"""Reward functions of the paper's 1-D bandit (SiMPO Sec. 5.1) and the initial policy of each.

Rewards on the action interval ``[-1, 1]`` are sums of Gaussian bumps
``r(a) = sum_k h_k exp(-(a - c_k)^2 / (2 s_k^2))`` (the paper gives only plots, so these are our choices):

==============  =========================================  ===================================  =================
name            bumps (center c, height h, width s)        policy initialisation                optimum
==============  =========================================  ===================================  =================
``two_optima``  global (+0.4, 1.0, 0.25), local (-0.4,      N(-0.4, 0.15^2): on the local        a* = +0.4000,
                0.7, 0.15); r(-0.4) = 0.706                 optimum                              r* = 1.0000
``broad``       global (+0.5, 1.0, 0.25), second (-0.5,     N(0, 0.35^2): between the optima     a* = +0.4997,
                0.8, 0.25); r(-0.5) = 0.800                                                      r* = 1.0003
``sharp``       global (+0.5, 1.0, 0.05), second (-0.5,     N(0, 0.35^2): between the optima     a* = +0.5000,
                0.8, 0.05); r(-0.5) = 0.800                                                      r* = 1.0000
==============  =========================================  ===================================  =================

``a*`` and ``r*`` are computed on a grid of 200,001 points (:meth:`RewardFunction.optimum`). A run "ends at the
global optimum" (``at_global``) when more than half of the final policy's samples lie in the global optimum's basin
(the side of the reward valley between the two bumps that holds the global bump) AND its final regret is below
half the gap between the optima, ``(r* - r_local) / 2`` (0.147 on ``two_optima``, 0.100 on ``broad``/``sharp``).
The regret condition was added after the first run, where policies pushed against the action bound at ``a = +1``
(regret 0.94) counted as "in the global basin".

Imports: torch only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["REWARDS", "RewardFunction", "get_reward"]


@dataclass(frozen=True)
class RewardFunction:
    """A 1-D reward ``r(a) = sum_k h_k exp(-(a - c_k)^2 / (2 s_k^2))`` on ``[low, high]`` with its initial policy.

    Attributes:
        name: registry name.
        bumps: ``((c, h, s), ...)``; the first bump is the global optimum.
        init_mean, init_std: the initial policy is ``N(init_mean, init_std^2)`` clipped to the interval.
        low, high: action interval.
        description: one line for plots and help.
    """

    name: str
    bumps: tuple[tuple[float, float, float], ...]
    init_mean: float
    init_std: float
    low: float = -1.0
    high: float = 1.0
    description: str = ""

    def __call__(self, action: Tensor) -> Tensor:
        """Reward of ``action`` (``[...]`` or ``[..., 1]``, action units) -> same shape without a trailing 1."""
        if action.dim() > 0 and action.shape[-1] == 1:
            action = action[..., 0]
        out = torch.zeros_like(action)
        for c, h, s in self.bumps:
            out = out + h * torch.exp(-((action - c) ** 2) / (2.0 * s * s))
        return out

    def grid(self, num: int = 200_001) -> Tensor:
        """``[num]`` float64 grid over ``[low, high]``."""
        return torch.linspace(self.low, self.high, num, dtype=torch.float64)

    def optimum(self) -> tuple[float, float]:
        """``(a*, r*)``: argmax and max of the reward on a 200,001-point grid (error < 1e-5 action units)."""
        grid = self.grid()
        values = self(grid)
        i = int(values.argmax())
        return float(grid[i]), float(values[i])

    def basin_boundary(self) -> float:
        """Action of the reward minimum between the first (global) and second bump: the basins' border."""
        (c0, _, _), (c1, _, _) = self.bumps[0], self.bumps[1]
        lo, hi = min(c0, c1), max(c0, c1)
        grid = torch.linspace(lo, hi, 20_001, dtype=torch.float64)
        return float(grid[int(self(grid).argmin())])

    def local_optimum(self) -> tuple[float, float]:
        """``(a, r)``: argmax and max of the reward on the second bump's side of the valley (the other optimum)."""
        grid = self.grid()
        values = self(grid).masked_fill(self.in_global_basin(grid), -math.inf)
        i = int(values.argmax())
        return float(grid[i]), float(values[i])

    def escape_regret(self) -> float:
        """Regret threshold of "ended at the global optimum": half the gap ``(r* - r_local) / 2``."""
        return (self.optimum()[1] - self.local_optimum()[1]) / 2.0

    def in_global_basin(self, action: Tensor) -> Tensor:
        """Boolean mask, same shape as ``action`` (without trailing 1): on the global bump's side of the valley."""
        if action.dim() > 0 and action.shape[-1] == 1:
            action = action[..., 0]
        border = self.basin_boundary()
        return action > border if self.bumps[0][0] > border else action < border

    def sample_init(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """``[num, 1]`` draws of the initial policy ``N(init_mean, init_std^2)`` clipped to ``[low, high]``."""
        x = self.init_mean + self.init_std * torch.randn(num, 1, generator=generator)
        return x.clamp(self.low, self.high)


REWARDS: dict[str, RewardFunction] = {
    "two_optima": RewardFunction(
        "two_optima",
        bumps=((0.4, 1.0, 0.25), (-0.4, 0.7, 0.15)),
        init_mean=-0.4,
        init_std=0.15,
        description="global optimum at +0.4 (broad), local at -0.4; policy starts on the local one",
    ),
    "broad": RewardFunction(
        "broad",
        bumps=((0.5, 1.0, 0.25), (-0.5, 0.8, 0.25)),
        init_mean=0.0,
        init_std=0.35,
        description="two broad optima (width 0.25) at +0.5 (global) and -0.5; policy starts between them",
    ),
    "sharp": RewardFunction(
        "sharp",
        bumps=((0.5, 1.0, 0.05), (-0.5, 0.8, 0.05)),
        init_mean=0.0,
        init_std=0.35,
        description="two sharp optima (width 0.05) at +0.5 (global) and -0.5; policy starts between them",
    ),
}


def get_reward(name: str) -> RewardFunction:
    """The reward function called ``name``.

    Raises:
        ValueError: unknown name (the message lists the available ones).
    """
    if name not in REWARDS:
        raise ValueError(f"unknown bandit reward {name!r}; available: {sorted(REWARDS)}")
    return REWARDS[name]
