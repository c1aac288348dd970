"""Elementwise and per-group tensor helpers shared by the normalisers and the threshold solvers.

Shapes ``[..., N]``: the group is the last dim; an optional bool ``mask`` of the same shape marks the valid
samples. These are building blocks (no input checks): :func:`simpo_bio.weighting.compute_weights` is the entry
point that validates its inputs.

Imports: torch only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["finish_weights", "group_count", "masked_extremes", "signed_power"]


def group_count(x: Tensor, mask: Tensor | None) -> Tensor:
    """Number of valid entries per group.

    Args:
        x: ``[..., N]`` tensor (only its shape, dtype and device are used).
        mask: optional ``[..., N]`` bool, True = valid.

    Returns:
        ``[..., 1]`` counts in ``x``'s dtype.
    """
    if mask is None:
        return torch.full(x.shape[:-1] + (1,), x.shape[-1], dtype=x.dtype, device=x.device)
    return mask.sum(-1, keepdim=True).to(x.dtype)


def masked_extremes(x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-group max and min over the valid entries of ``x [..., N]``: ``(max [..., 1], min [..., 1])``."""
    if mask is None:
        return x.amax(-1, keepdim=True), x.amin(-1, keepdim=True)
    hi = x.masked_fill(~mask, -math.inf).amax(-1, keepdim=True)
    lo = x.masked_fill(~mask, math.inf).amin(-1, keepdim=True)
    return hi, lo


def finish_weights(weight: Tensor, mask: Tensor | None, signed: bool = False) -> Tensor:
    """Zero masked entries and remove a solver's last rounding error so that each group sums to one.

    Unsigned weights are divided by their sum. Signed weights keep their negative entries exactly (so the floor
    ``-eta`` of paper Eq. 11 is never crossed by the correction) and only the positive part is rescaled, by
    ``(1 + negative mass) / positive mass`` -- a factor within a few ulps of one.

    Args:
        weight: ``[..., N]`` weights whose groups already sum to one up to rounding (at least one positive entry
            per group).
        mask: optional ``[..., N]`` bool, True = valid; masked entries become exactly 0.
        signed: whether ``weight`` may hold negative entries.

    Returns:
        ``[..., N]`` weights, each group summing to one.
    """
    if mask is not None:
        weight = weight.masked_fill(~mask, 0.0)
    if not signed:
        return weight / weight.sum(-1, keepdim=True)
    pos = torch.clamp_min(weight, 0.0)
    pos_mass = pos.sum(-1, keepdim=True)
    neg_mass = pos_mass - weight.sum(-1, keepdim=True)
    # pos * scale + neg, with the negative entries passed through untouched
    return torch.addcmul(weight, pos, (1.0 + neg_mass) / pos_mass - 1.0)


def signed_power(u: Tensor, p: float, eta: float) -> Tensor:
    """The power-family weight function before normalisation (paper Eq. 9 and Eq. 11), elementwise.

    Args:
        u: any shape, ``x - tau`` in units of ``advantage / temperature``.
        p: exponent ``> 0`` (1 and 2 take fast paths).
        eta: negative floor ``>= 0``.

    Returns:
        Same shape as ``u``: ``max(sign(u) |u|**p, -eta)``, i.e. ``relu(u)**p`` when ``eta == 0``.
    """
    if eta == 0.0:
        r = torch.relu(u)
        if p == 1.0:
            return r
        return r * r if p == 2.0 else r.pow(p)  # r * r: one cheap pass (pow is several times slower on CPU)
    if p == 1.0:
        return torch.clamp_min(u, -eta)
    if p == 2.0:
        return torch.clamp_min(u * u.abs(), -eta)
    return torch.clamp_min(torch.sign(u) * u.abs().pow(p), -eta)
