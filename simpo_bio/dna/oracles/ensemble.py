"""A conservative reward from an ensemble of oracles: ``mean - k * std`` over members.

An oracle extrapolates outside the sequences it was trained on; members trained with other seeds disagree most
there, so penalising their spread steers fine-tuning away from out-of-distribution designs (a lower confidence
bound; the pessimism of offline model-based optimisation, e.g. Trabucco et al. 2021). The evaluation oracle must
stay independent of every member (trained on the other half of the data).

Imports: torch and :mod:`simpo_bio.dna.oracles.oracle`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from simpo_bio.dna.oracles.oracle import RewardOracle

__all__ = ["EnsembleOracle"]


class EnsembleOracle(RewardOracle):
    """``reward = mean_m r_m(x) - std_coef * std_m r_m(x)`` over ``M >= 2`` member oracles.

    Args:
        members: frozen oracles with the same ``seq_len`` (e.g. :func:`simpo_bio.dna.oracles.oracle.load_oracle` of
            checkpoints trained by ``configs/dna/oracle.yaml`` with other seeds).
        std_coef: ``k >= 0``; the population standard deviation over members (``unbiased=False``) is used.

    Attributes:
        last_std: ``[B]`` member spread of the last batch (a diagnostic).

    Raises:
        ValueError: fewer than 2 members, members with different ``seq_len``, or a negative / non-finite ``k``.
    """

    def __init__(self, members: Sequence[RewardOracle], std_coef: float = 1.0):
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 member oracles, got {len(members)}")
        lengths = {int(m.seq_len) for m in members}
        if len(lengths) != 1:
            raise ValueError(f"ensemble members disagree on seq_len: {sorted(lengths)}")
        if not (std_coef >= 0 and math.isfinite(std_coef)):
            raise ValueError(f"std_coef must be finite and >= 0, got {std_coef}")
        super().__init__(seq_len=lengths.pop(), batch_size=min(int(m.batch_size) for m in members))
        self.members = torch.nn.ModuleList(members)
        self.std_coef = float(std_coef)
        self.last_std: torch.Tensor | None = None
        self.freeze()

    def member_rewards(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[M, B]`` rewards of every member (tokens ``[B, L]`` on the oracle's device)."""
        return torch.stack([m.reward(tokens).float() for m in self.members])

    def reward(self, tokens: torch.Tensor) -> torch.Tensor:
        r = self.member_rewards(tokens)
        std = r.std(0, unbiased=False)
        self.last_std = std.detach()
        return r.mean(0) - self.std_coef * std
