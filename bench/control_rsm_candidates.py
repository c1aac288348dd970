"""Bench-local DPMD candidates of ``bench/control_rsm.py`` (fifth grid, ``bench/results/control-rsm.md``).

They live here, not in :mod:`simpo_bio.control`, until a grid says they earn a place there; importing this module
registers each under its own ``agent.algorithm`` name in :data:`simpo_bio.control.agent.ALGORITHMS`, so the harness
(:func:`simpo_bio.control.train.train`: envs, critic, replay, checkpoints, resume) runs them unchanged.

* ``dpmd_noised`` (:class:`NoisedDPMDAgent`): DPMD whose ``N`` candidates are the policy's DDPM samples plus
  Gaussian noise of std ``exploration_noise``, clipped to the action box, i.e. samples of the *behaviour* policy
  that collects the replay data (``collect_candidates`` 1). The plain DPMD's candidates collapsed in the third and
  fourth grids: their ``Q`` spread fell to 0.005-0.007, so the softmax had nothing to choose between. Both public
  RSM implementations perturb the action DPMD trains on with Gaussian noise or train it on the behaviour policy's
  actions; this tests that choice on our harness.

Imports: torch, :mod:`simpo_bio.control`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from simpo_bio.control.agent import ALGORITHMS
from simpo_bio.control.rsm import DPMDAgent


class NoisedDPMDAgent(DPMDAgent):
    """DPMD toward ``pi_beh exp(Q / lambda)``, ``pi_beh = clip(pi_old + N(0, sigma^2 I))``, ``sigma =
    exploration_noise``.

    Policy step on a batch ``state [B, S]``: ``N = group_size`` candidates ``a^j = clip(x^j + sigma z^j, -1, 1)``
    with ``x^j ~ pi_old(. | s)`` (DDPM, no gradient) and ``z^j ~ N(0, I)``, ``[B, N, A]``; then as
    :class:`~simpo_bio.control.rsm.DPMDAgent`: ``w = softmax_j(min Q(s, a^j) / lambda)`` and the weighted
    denoising loss on the candidates (:meth:`DPMDAgent.policy_loss`). ``sigma = 0`` is the plain DPMD.
    """

    algorithm = "dpmd_noised"

    def candidates(self, state: Tensor, num: int) -> Tensor:
        """``state [B, S] -> [B, num, A]``: policy samples plus N(0, ``exploration_noise``^2), clipped to [-1, 1]."""
        cand = self.sample(state, num)
        sigma = self.config.exploration_noise
        if sigma > 0:
            cand = (cand + sigma * torch.randn_like(cand)).clamp(-1.0, 1.0)
        return cand


ALGORITHMS.setdefault(NoisedDPMDAgent.algorithm, (__name__, "NoisedDPMDAgent"))
