"""Public entry point of the weighting: advantages -> per-group weights that sum to one (SiMPO Stage I).

:func:`compute_weights` is what every domain calls (DNA, control, bandit); it validates its inputs and
dispatches to the scheme's normaliser (paper Sec. 4, Appendix E): :func:`softmax_normalize` (``exp``),
:func:`wd1_normalize` (``wd1``) or the threshold solvers of :mod:`simpo_bio.weighting.thresholds` (the power
family, signed or not). The diagnostics :func:`kl_to_uniform` (what the temperature dual of paper Appendix G
tracks) and :func:`weight_diagnostics` follow.

Shapes: ``advantage`` is ``[..., N]``; the group is the last dim, every leading index is one group (one state,
one prompt, one generation batch). All solvers are vectorised over groups (no Python loop over groups).

Convention (documented once, used everywhere; derivation in ``docs/method.md``, section 4). For every threshold
scheme the solver works on the temperature-scaled advantage ``x = advantage / temperature`` with target mass
``beta = 1``:

    sum_i max(phi(x_i - tau), -eta) = 1,      phi(u) = sign(u) |u|**p      (paper Eq. 11)

Because ``sum_i phi(a_i / T - tau) = 1``  <=>  ``sum_i phi(a_i - T tau) = T**p`` for the power family, this is
exactly the paper's target-mass formulation on raw advantages with ``beta = temperature**p`` (the raw weights are
then divided by ``beta``); conversely a target mass ``beta`` is the temperature ``beta**(1/p)``. A larger
temperature gives flatter weights for every scheme. The signed floor ``eta`` is in the units of ``x``; the
solved weights already sum to one, so no normalised weight is below ``-eta``.

Imports: torch and the modules of :mod:`simpo_bio.weighting` (``functions``, ``group_ops``, ``thresholds``,
``validation``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from simpo_bio.weighting.functions import WeightScheme, get_scheme
from simpo_bio.weighting.group_ops import finish_weights, group_count
from simpo_bio.weighting.thresholds import threshold_bisect, threshold_exact
from simpo_bio.weighting.validation import check_advantage

__all__ = [
    "WeightOutput",
    "compute_weights",
    "kl_to_uniform",
    "softmax_normalize",
    "weight_diagnostics",
    "wd1_normalize",
]


class WeightOutput(NamedTuple):
    """Result of :func:`compute_weights` (all tensors detached).

    Attributes:
        weight: ``[..., N]`` per-sample weights; each group sums to 1; masked entries are exactly 0.
        tau: ``[...]`` the group's threshold in units of ``x = advantage / temperature`` (for ``exp`` and
            ``wd1`` the log-normaliser ``logsumexp(x)``).
        active: ``[...]`` (long) number of non-zero weights in the group.
        negative_mass: ``[...]`` sum of ``|w|`` over the negative weights (0 for unsigned schemes).
        ess: ``[...]`` effective sample size ``(sum |w|)**2 / sum w**2`` (Kish; equals ``1 / sum w**2`` for
            non-negative weights), between 1 and the group size.
    """

    weight: Tensor
    tau: Tensor
    active: Tensor
    negative_mass: Tensor
    ess: Tensor


def compute_weights(
    advantage: Tensor,
    scheme: str | WeightScheme,
    temperature: float | Tensor = 1.0,
    *,
    mask: Tensor | None = None,
    **scheme_params: float,
) -> WeightOutput:
    """Per-sample weights from advantages, one group per leading index (SiMPO Stage I, paper Eq. 9 and Eq. 11).

    ``x = advantage / temperature``; the scheme's normaliser then returns weights that sum to 1 over the last
    dim (target mass ``beta = 1`` on ``x``, i.e. ``beta = temperature**p`` on raw advantages; see the module
    docstring; per-scheme weights and normalisers: paper Table 1 and Appendix E, ``docs/method.md``). A larger
    temperature gives flatter weights for every scheme. Weights are detached: they are the fixed targets of
    Stage II (weighted ELBO / flow matching, paper Eq. 7).

    Args:
        advantage: ``[..., N]`` float (any real units; usually group-standardised, see
            :func:`simpo_bio.weighting.group_advantages`). At least 1-D.
        scheme: a name from :func:`simpo_bio.weighting.available_schemes` or a :class:`WeightScheme`.
        temperature: ``> 0``; a float, a 0-d tensor, or a ``[...]`` tensor (one temperature per group).
        mask: optional bool ``[..., N]`` (broadcastable), True = valid sample. Masked entries get weight 0 and
            may hold anything (even NaN). Every group needs at least one valid sample.
        **scheme_params: passed to :func:`get_scheme` when ``scheme`` is a name (``p=...``, ``eta=...``).

    Returns:
        :class:`WeightOutput` ``(weight, tau, active, negative_mass, ess)``.

    Raises:
        AdvantageError: (a ``ValueError``) a non-finite advantage on a valid entry (the message names the group
            and position), a group with no valid sample, or ``advantage / temperature`` overflowing.
        ValueError: unknown scheme or bad parameters; a 0-d or empty ``advantage``; a non-bool ``mask``; a
            non-positive or non-finite temperature.
    """
    sch = get_scheme(scheme, **scheme_params)
    advantage = torch.as_tensor(advantage)
    if advantage.dim() == 0:
        raise ValueError("advantage must have at least one dim (the group dim is the last one)")
    if advantage.shape[-1] == 0 or advantage.numel() == 0:
        raise ValueError(f"advantage has an empty group dim or no groups (shape {tuple(advantage.shape)})")
    if not advantage.is_floating_point():
        advantage = advantage.to(torch.get_default_dtype())
    out_dtype = advantage.dtype
    if out_dtype not in (torch.float32, torch.float64):
        advantage = advantage.float()
    advantage = advantage.detach()
    if mask is not None:
        mask = torch.as_tensor(mask, device=advantage.device)
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
        mask = mask.expand(advantage.shape)
    check_advantage(advantage, mask)

    temp = torch.as_tensor(temperature, dtype=advantage.dtype, device=advantage.device).detach()
    if not bool(torch.isfinite(temp).all()) or bool((temp <= 0).any()):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    if temp.dim() > 0:
        temp = temp.unsqueeze(-1)

    with torch.no_grad():
        x = advantage / temp
        if mask is not None:
            x = x.masked_fill(~mask, 0.0)
        check_advantage(x, mask, what="advantage / temperature")
        if sch.family == "softmax":
            weight, tau = softmax_normalize(x, mask)
        elif sch.family == "wd1":
            weight, tau = wd1_normalize(x, sch.eta, mask)
        elif sch.p in (1.0, 2.0):
            weight, tau = threshold_exact(x, sch.p, sch.eta, mask)
        else:
            weight, tau = threshold_bisect(x, sch.p, sch.eta, mask)
        active, negative_mass, ess = weight_diagnostics(weight, mask)
    if out_dtype != weight.dtype:
        weight, tau = weight.to(out_dtype), tau.to(out_dtype)
        negative_mass, ess = negative_mass.to(out_dtype), ess.to(out_dtype)
    return WeightOutput(weight, tau, active, negative_mass, ess)


# ----------------------------------------------------------------------------------------------------------
# normalisers of the exp and wd1 schemes


def softmax_normalize(x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Softmax over the group (``exp`` scheme, forward-KL regularisation, paper Table 1; DPMD / AWR).

    Args:
        x: ``[..., N]`` temperature-scaled advantages, finite on valid entries.
        mask: optional ``[..., N]`` bool, True = valid sample.

    Returns:
        ``(weight [..., N], tau [...])`` with ``weight = exp(x - tau)`` and ``tau = logsumexp(x)`` (units of
        ``x``); masked entries get weight 0.
    """
    if mask is not None:
        x = x.masked_fill(~mask, -math.inf)
    tau = torch.logsumexp(x, dim=-1, keepdim=True)
    weight = finish_weights(torch.exp(x - tau), mask)
    return weight, tau.squeeze(-1)


def wd1_normalize(x: Tensor, eta: float = 0.5, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """wd1 weights with a positive total mass (Tang et al. 2025, arXiv:2507.08838; SiMPO Example 3.4).

    wd1 maximises ``sum_i [softmax(x)_i - softmax(-x)_i] log pi(y_i)``: a softmax over the group pulls
    towards good samples and a softmax of the negated advantage pushes away from bad ones. Those weights sum to
    exactly 0 -- the paper's Case II (unbounded loss, paper section 3.4), which this library rules out: every
    scheme's weights sum to 1 per group (``docs/method.md``). Our normalisation rule keeps the
    wd1 shape and fixes the mass: the negative softmax is scaled by ``eta`` in ``[0, 1)`` and the result is
    divided by ``1 - eta``::

        w_i = (softmax(x)_i - eta * softmax(-x)_i) / (1 - eta)          sum_i w_i = 1,  w_i >= -eta / (1 - eta)

    ``eta -> 1`` recovers wd1's direction (with a diverging scale); ``eta = 0`` is the ``exp`` scheme. The
    weights are increasing in ``x`` within a group, so Theorem 3.5 (policy improvement) applies.

    Args:
        x: ``[..., N]`` temperature-scaled advantages (wd1's ``psi * A`` with ``psi = 1 / temperature``).
        eta: weight of the negative softmax, ``0 <= eta < 1``.
        mask: optional ``[..., N]`` bool, True = valid sample.

    Returns:
        ``(weight [..., N], tau [...])`` with ``tau = logsumexp(x)`` (the positive part's log-normaliser).

    Raises:
        ValueError: ``eta`` outside ``[0, 1)``.
    """
    if not 0.0 <= eta < 1.0:
        raise ValueError(f"wd1 needs 0 <= eta < 1 so that the total mass stays positive, got {eta}")
    pos, tau = softmax_normalize(x, mask)
    if eta == 0.0:
        return pos, tau
    neg, _ = softmax_normalize(-x, mask)
    weight = finish_weights((pos - eta * neg) / (1.0 - eta), mask, signed=True)
    return weight, tau


# ----------------------------------------------------------------------------------------------------------
# diagnostics


def kl_to_uniform(weight: Tensor, mask: Tensor | None = None) -> Tensor:
    """KL divergence of a group's weights to the uniform distribution over its valid samples (paper Appendix G).

    Signed weights are not a distribution, so the KL is taken on the *positive part*, renormalised:
    ``q = relu(w) / sum relu(w)`` and ``KL = log n - H(q)`` in nats, between 0 and ``log n``. For non-negative
    weights this is exactly the usual ``KL(w || uniform)``; for signed weights it measures how concentrated the
    attracting part of the measure is (the repelling part is bounded by the floor ``eta``). We chose it over
    ``|w|`` normalised because it stays monotone in the temperature for the signed threshold schemes (with
    ``|w|`` the floor makes the KL *rise* with temperature at small temperatures, and the dual of the
    temperature controller would have an unstable branch); both properties are tested.

    Args:
        weight: ``[..., N]`` weights (any sign, at least one positive per group); masked entries are ignored.
        mask: optional ``[..., N]`` bool, True = valid.

    Returns:
        ``[...]`` KL in nats.
    """
    a = torch.clamp_min(weight, 0.0)
    if mask is not None:
        a = a.masked_fill(~mask, 0.0)
    q = a / torch.clamp_min(a.sum(-1, keepdim=True), torch.finfo(a.dtype).tiny)
    neg_entropy = torch.xlogy(q, q).sum(-1)
    return torch.log(group_count(weight, mask).squeeze(-1)) + neg_entropy


def weight_diagnostics(weight: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Diagnostics of ``[..., N]`` weights (masked entries ignored): ``(active, negative_mass, ess)``, each ``[...]``.

    ``active`` (long): number of non-zero weights; ``negative_mass``: sum of ``|w|`` over negative weights;
    ``ess``: Kish effective sample size ``(sum |w|)**2 / sum w**2``. See :class:`WeightOutput`.
    """
    if mask is not None:
        weight = weight.masked_fill(~mask, 0.0)
    active = torch.sign(weight.abs()).sum(-1).long()
    negative_mass = torch.clamp_min(-weight, 0.0).sum(-1)
    abs_sum = weight.abs().sum(-1)
    ess = abs_sum * abs_sum / torch.clamp_min((weight * weight).sum(-1), torch.finfo(weight.dtype).tiny)
    return active, negative_mass, ess
