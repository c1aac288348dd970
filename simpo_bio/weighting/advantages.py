"""Group-relative advantages ``(r - mean_group) / (std_group + eps)`` (paper Example 3.4; GRPO, wd1).

A *group* is the last dim: the N samples drawn from the old policy for one state / prompt / generation batch.
The advantages are what :func:`simpo_bio.weighting.compute_weights` turns into weights (``docs/method.md``,
section 5).

Imports: torch and :mod:`simpo_bio.weighting.validation`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from simpo_bio.weighting.validation import check_advantage

__all__ = ["group_advantages"]


def group_advantages(
    reward: Tensor,
    *,
    mask: Tensor | None = None,
    normalize: bool = True,
    leave_one_out: bool = False,
    eps: float = 1e-8,
) -> Tensor:
    """Advantages relative to the other samples of the same group.

    ``A_i = r_i - b_i`` with baseline ``b_i`` the group mean (default) or, with ``leave_one_out``, the mean of
    the *other* valid samples (RLOO; ``A_i = n/(n-1) (r_i - mean)``, 0 for a group of one). With ``normalize``
    the result is divided by ``std_group + eps`` (population std, ``correction = 0``, of the valid rewards).
    A group whose valid rewards are all equal gets exactly 0 (no 0/0, no rounding noise).

    Args:
        reward: ``[..., N]`` float rewards (any units); finite on valid entries.
        mask: optional bool ``[..., N]`` (broadcastable), True = valid; masked entries return 0 and may hold
            anything (even NaN).
        normalize: divide by the group's standard deviation (unitless output) or not (reward units).
        leave_one_out: use the leave-one-out baseline instead of the group mean.
        eps: added to the std, in reward units.

    Returns:
        ``[..., N]`` advantages, same dtype as ``reward`` (float).

    Raises:
        AdvantageError: (a ``ValueError``) a non-finite reward on a valid entry (names group and position), or
            a group with no valid sample.
        ValueError: a 0-d input or a non-bool mask.
    """
    reward = torch.as_tensor(reward)
    if reward.dim() == 0:
        raise ValueError("reward must have at least one dim (the group dim is the last one)")
    if not reward.is_floating_point():
        reward = reward.to(torch.get_default_dtype())
    if mask is not None:
        mask = torch.as_tensor(mask, device=reward.device).expand(reward.shape)
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    check_advantage(reward, mask, what="reward")
    r = reward if mask is None else reward.masked_fill(~mask, 0.0)
    if mask is None:
        n = torch.full(r.shape[:-1] + (1,), r.shape[-1], dtype=r.dtype, device=r.device)
        hi, lo = r.amax(-1, keepdim=True), r.amin(-1, keepdim=True)
    else:
        n = mask.sum(-1, keepdim=True).to(r.dtype)
        hi = reward.masked_fill(~mask, -torch.inf).amax(-1, keepdim=True)
        lo = reward.masked_fill(~mask, torch.inf).amin(-1, keepdim=True)
    mean = r.sum(-1, keepdim=True) / n
    deviation = r - mean
    if mask is not None:
        deviation = deviation.masked_fill(~mask, 0.0)
    advantage = deviation
    if leave_one_out:
        advantage = deviation * (n / torch.clamp_min(n - 1.0, 1.0)) * (n > 1)
    if normalize:
        std = torch.sqrt(deviation.square().sum(-1, keepdim=True) / n)
        advantage = advantage / (std + eps)
    return torch.where(hi > lo, advantage, torch.zeros_like(advantage))
