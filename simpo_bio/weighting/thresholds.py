"""Threshold solvers of the power family: find ``tau`` with ``sum_i max(sign(u_i)|u_i|**p, -eta) = 1``.

``u_i = x_i - tau`` with ``x = advantage / temperature`` (the convention of
:mod:`simpo_bio.weighting.normalize`); the weights are then ``max(sign(u)|u|**p, -eta)`` and sum to one over each
group (the last dim). This is the per-group normaliser of the ``linear``, ``square``, ``power``, ``linear_neg``
and ``square_neg`` schemes (paper Eq. 9, Eq. 11; closed forms in paper Appendix E, Eq. 22-29; the weights and
normalisers per scheme are summarised in ``docs/method.md``).

* :func:`threshold_exact` -- ``p`` in {1, 2}, exact. Sort-based closed forms (sparsemax and 1.5-entmax up to
  scale: ``linear(x) == sparsemax(x)``, ``square(x) == entmax15(2 x)``; ``linear_neg`` reduces to the linear
  solver on ``x + eta`` with mass ``1 + n eta``; ``square_neg`` uses the sorted breakpoints ``x_i`` and
  ``x_i + sqrt(eta)`` and one quadratic on the bracketing interval), or the sort-free active-set iterations of
  :mod:`simpo_bio.weighting.active_set` that are exact on termination (the default for large CPU inputs).
* :func:`threshold_bisect` -- any ``p > 0``, signed or not; the reference solver in the tests.

Imports: torch, :mod:`simpo_bio.weighting.group_ops`, :mod:`simpo_bio.weighting.active_set`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from simpo_bio.weighting.active_set import threshold_active_set
from simpo_bio.weighting.group_ops import finish_weights, group_count, masked_extremes, signed_power

__all__ = ["AUTO_ACTIVE_SET_MIN_NUMEL", "threshold_bisect", "threshold_exact"]

#: ``method='auto'`` uses the active-set solver on CPU tensors with at least this many elements, else sort.
AUTO_ACTIVE_SET_MIN_NUMEL = 16384


def threshold_exact(
    x: Tensor, p: float, eta: float = 0.0, mask: Tensor | None = None, *, method: str = "auto"
) -> tuple[Tensor, Tensor]:
    """Exact solver of ``sum_i max(sign(u_i)|u_i|**p, -eta) = 1``, ``u_i = x_i - tau`` (p in {1, 2}).

    Paper Appendix E (Eq. 22-29) for ``eta = 0``; its signed generalisation (paper Eq. 11) for ``eta > 0``.
    Vectorised over groups (no Python loop over groups). Two exact algorithms, same answer:

    ``method='sort'`` -- one sort of N values per group, cumulative sums, a gather, an elementwise pass:

    * ``p = 1``: sparsemax-style closed form ``tau = mean_k - 1/k`` on the top-k active set. With ``eta > 0``
      the identity ``max(u, -eta) = relu(u + eta) - eta`` reduces it exactly to the same solver with target
      mass ``1 + n eta`` (``n`` = number of valid samples).
    * ``p = 2``: 1.5-entmax-style closed form ``tau = mean_k - sqrt((1 - M2_k)/k)`` (``M2_k`` = sum of squared
      deviations of the top k). With ``eta > 0`` the sum is a piecewise quadratic in tau with breakpoints
      ``x_i`` (sign change) and ``x_i + sqrt(eta)`` (floor); all breakpoints are evaluated at once with
      cumulative sums and ``searchsorted``, and the quadratic on the bracketing interval is solved in a
      cancellation-free form.

    ``method='active_set'`` -- sort-free (:mod:`simpo_bio.weighting.active_set`): Michelot's iteration
    (p 1) or monotone Newton steps with the closed form accepted once it reproduces its own active set (p 2); a
    handful of elementwise passes, exact at termination, with the sort solver as fallback for any group not
    settled after ``ACTIVE_SET_MAX_ITER`` (50) steps; for ``square_neg`` a safeguarded piecewise-quadratic
    iteration, exact once two consecutive points see the same pieces. Solved groups leave the working set, so
    the last steps (which few groups need) are cheap.

    ``method='auto'`` (default) uses the active-set solvers for CPU tensors of at least
    ``AUTO_ACTIVE_SET_MIN_NUMEL`` elements (a CPU sort of many short rows costs far more than a few elementwise
    passes) and the sort solvers otherwise (GPU: fast sort, no per-step host sync; tiny inputs: fewer ops).

    Args:
        x: ``[..., N]`` temperature-scaled advantages, finite on valid entries.
        p: 1 or 2.
        eta: negative floor ``>= 0`` in units of ``x``.
        mask: optional ``[..., N]`` bool, True = valid sample; every group needs one valid sample.
        method: ``'auto'``, ``'sort'`` or ``'active_set'`` (all exact; they differ only in speed).

    Returns:
        ``(weight [..., N], tau [...])``; weights sum to 1 per group, masked entries are 0, ``weight >= -eta``;
        ``tau`` in units of ``x``.

    Raises:
        ValueError: ``p`` not 1 or 2, ``eta < 0`` or an unknown ``method``.
    """
    if p not in (1.0, 2.0):
        raise ValueError(f"threshold_exact handles p = 1 or 2 only, got p={p}; use threshold_bisect")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    hi = x.amax(-1, keepdim=True) if mask is None else x.masked_fill(~mask, -math.inf).amax(-1, keepdim=True)
    d = x - hi  # shift invariance: work relative to the group max (<= 0), keeps float32 accurate
    n = group_count(x, mask)
    if method not in ("auto", "sort", "active_set"):
        raise ValueError(f"method must be 'auto', 'sort' or 'active_set', got {method!r}")
    if method == "auto":
        # A CPU sort of many short rows is slow next to a few elementwise passes; on accelerators (fast sort,
        # no host sync wanted) and for tiny inputs (per-op overhead dominates) the sort solver wins.
        big = x.numel() >= AUTO_ACTIVE_SET_MIN_NUMEL
        method = "active_set" if (x.device.type == "cpu" and big) else "sort"
    if method == "sort":
        t = _threshold_sort(d, mask, n, p, eta)
    else:
        t, converged = threshold_active_set(d, mask, n, p, eta)
        if not bool(converged.all()):  # rare (ties at rounding level, adversarial spacing): sort those groups
            rows = (~converged.squeeze(-1)).nonzero(as_tuple=True)
            t = t.clone()
            t[rows] = _threshold_sort(d[rows], None if mask is None else mask[rows], n[rows], p, eta)
    weight = finish_weights(signed_power(d - t, p, eta), mask, signed=eta > 0.0)
    return weight, (t + hi).squeeze(-1)


def threshold_bisect(
    x: Tensor,
    p: float,
    eta: float = 0.0,
    mask: Tensor | None = None,
    *,
    tol: float | None = None,
    max_iter: int = 200,
) -> tuple[Tensor, Tensor]:
    """Bisection solver of ``sum_i max(sign(u_i)|u_i|**p, -eta) = 1``, ``u_i = x_i - tau``, for any ``p > 0``.

    The general ``power(p)`` normaliser and the reference the exact solvers are tested against. The bracket
    ``[min x - 1, max x]`` always contains the root (every term is >= 1 at the lower end, <= 0 at the upper
    end); the number of halvings is fixed up front from the widest group so the loop has no host syncs.

    Args:
        x: ``[..., N]`` temperature-scaled advantages, finite on valid entries.
        p: exponent ``> 0``.
        eta: negative floor ``>= 0`` (0 = unsigned ``relu(u)**p``).
        mask: optional ``[..., N]`` bool, True = valid sample.
        tol: absolute tolerance on tau (default: 4 machine epsilons times the widest bracket).
        max_iter: cap on the number of halvings.

    Returns:
        ``(weight [..., N], tau [...])``; weights sum to 1 per group, masked entries are 0; ``tau`` in units of
        ``x``.

    Raises:
        ValueError: ``p <= 0`` or ``eta < 0``.
    """
    if not p > 0:
        raise ValueError(f"p must be > 0, got {p}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    hi_x, lo_x = masked_extremes(x, mask)
    d = x - hi_x
    if mask is not None:
        d = d.masked_fill(~mask, 0.0)
    lo = lo_x - hi_x - 1.0
    hi = torch.zeros_like(lo)
    width = float((hi - lo).max())
    if tol is None:
        tol = 4.0 * torch.finfo(x.dtype).eps * width
    n_iter = min(max_iter, max(1, math.ceil(math.log2(max(width / tol, 1.0)))))
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        g = signed_power(d - mid, p, eta)
        if mask is not None:
            g = g.masked_fill(~mask, 0.0)
        big = g.sum(-1, keepdim=True) >= 1.0
        lo = torch.where(big, mid, lo)
        hi = torch.where(big, hi, mid)
    t = 0.5 * (lo + hi)
    weight = finish_weights(signed_power(d - t, p, eta), mask, signed=eta > 0)
    return weight, (t + hi_x).squeeze(-1)


# ----------------------------------------------------------------------------------------------------------
# sort-based closed forms (private)


def _threshold_sort(d: Tensor, mask: Tensor | None, n: Tensor, p: float, eta: float) -> Tensor:
    """Sort-based exact threshold ``[..., 1]`` for ``d <= 0`` (group max 0); see :func:`threshold_exact`."""
    if p == 2.0 and eta > 0.0:
        return _square_neg_threshold(d, mask, eta, n)
    ds = d if mask is None else d.masked_fill(~mask, -math.inf)
    ds = torch.sort(ds, dim=-1, descending=True).values
    valid_sorted = None
    if mask is not None:
        valid_sorted = torch.arange(d.shape[-1], device=d.device) < n
        ds = ds.masked_fill(~valid_sorted, 0.0)
    if p == 1.0 and eta > 0.0:
        # max(u, -eta) = relu(u + eta) - eta: the linear solver with target mass 1 + n eta
        return _linear_threshold_sorted(ds, valid_sorted, 1.0 + n * eta, 1.0) + eta
    return _linear_threshold_sorted(ds, valid_sorted, torch.ones_like(n), p)


def _linear_threshold_sorted(d: Tensor, valid: Tensor | None, target: Tensor, p: float) -> Tensor:
    """Threshold ``t`` with ``sum_i relu(d_i - t)**p = target`` for ``d`` sorted descending (p in {1, 2}).

    ``d`` is ``[..., N]`` sorted descending with invalid entries (``valid`` False, a suffix) already set to 0;
    ``target`` is ``[..., 1]``. Returns ``t`` ``[..., 1]`` (closed forms of paper Appendix E, Eq. 24/28).
    """
    n_total = d.shape[-1]
    k = torch.arange(1, n_total + 1, device=d.device, dtype=d.dtype)
    s1 = torch.cumsum(d, dim=-1)
    if p == 1.0:
        boundary = s1 - k * d  # sum_{i<=k} (d_i - d_k): excess mass at the boundary (Eq. 25)
    else:
        s2 = torch.cumsum(d * d, dim=-1)
        boundary = s2 - d * (2.0 * s1 - k * d)  # sum_{i<=k} (d_i - d_k)**2 (Eq. 29)
    cond = boundary < target
    if valid is not None:
        cond = cond & valid
    k_star = cond.sum(-1, keepdim=True).clamp_min(1)
    kf = k_star.to(d.dtype)
    s1_k = s1.gather(-1, k_star - 1)
    mean = s1_k / kf
    if p == 1.0:
        return mean - target / kf  # Eq. 24
    s2_k = s2.gather(-1, k_star - 1)
    m2 = torch.clamp_min(s2_k - s1_k * mean, 0.0)  # sum of squared deviations of the top k from their mean
    return mean - torch.sqrt(torch.clamp_min((target - m2) / kf, 0.0))  # Eq. 28, the smaller root


def _square_neg_threshold(d: Tensor, mask: Tensor | None, eta: float, n: Tensor) -> Tensor:
    """Exact ``t`` with ``sum_i max(sign(u)u**2, -eta) = 1``, ``u = d_i - t`` (``d <= 0``); returns ``[..., 1]``."""
    c = math.sqrt(eta)
    n_total = d.shape[-1]
    dm = d if mask is None else d.masked_fill(~mask, -math.inf)
    asc = torch.sort(dm, dim=-1).values  # ascending, invalid (-inf) first
    desc = asc.flip(-1)
    desc0 = desc if mask is None else torch.nan_to_num(desc, neginf=0.0)
    zero = torch.zeros_like(desc0[..., :1])
    s1 = torch.cat([zero, torch.cumsum(desc0, -1)], -1)  # s1[m] = sum of the m largest
    s2 = torch.cat([zero, torch.cumsum(desc0 * desc0, -1)], -1)
    # all 2N breakpoints, descending; invalid ones (-inf) at the tail
    bps = torch.sort(torch.cat([desc, desc + c], -1), dim=-1, descending=True).values
    bps_f = bps if mask is None else torch.nan_to_num(bps, neginf=0.0)
    n_pos = n_total - torch.searchsorted(asc, bps_f.contiguous(), right=True)  # #{d_i > t}
    n_act = n_total - torch.searchsorted(asc, (bps_f - c).contiguous(), right=True)  # #{d_i > t - c}
    s1p, s2p = s1.gather(-1, n_pos), s2.gather(-1, n_pos)
    s1a, s2a = s1.gather(-1, n_act), s2.gather(-1, n_act)
    npf, naf = n_pos.to(d.dtype), n_act.to(d.dtype)
    t = bps_f
    pos_part = s2p - 2.0 * t * s1p + npf * t * t
    neg_part = (s2a - s2p) - 2.0 * t * (s1a - s1p) + (naf - npf) * t * t
    f = pos_part - neg_part - eta * (n - naf)  # f(t) at every breakpoint; decreasing along the (ascending) list
    below = f < 1.0
    if mask is not None:
        below = below & (torch.arange(2 * n_total, device=d.device) < 2 * n)
    j = below.sum(-1, keepdim=True)  # index of the first breakpoint with f >= 1
    last = (2 * n).long() - 1 if mask is not None else torch.full_like(j, 2 * n_total - 1)
    under_all = j > last  # the root lies below every breakpoint: all samples positive
    t0 = bps_f.gather(-1, torch.minimum(j, last))
    t_up = bps_f.gather(-1, torch.clamp_min(j - 1, 0))  # f(t_up) < 1 <= f(t0): the root is in [t0, t_up)
    # which piece each sample is on inside the interval: decided at its midpoint, never at a breakpoint
    # (a sample sitting on its own kink at t0 would be misclassified by rounding)
    u_mid = d - 0.5 * (t0 + t_up)
    is_pos = (u_mid > 0) | under_all
    is_act = (u_mid > -c) | under_all
    if mask is not None:
        is_pos, is_act = is_pos & mask, is_act & mask
    # On the interval f(t) = sum_P (d - t)**2 - sum_{A\P} (d - t)**2 - eta (n - |A|). Every active sample lies
    # within sqrt(1 + eta n) of the root, so expanding around their mean m is free of cancellation (expanding
    # around a far breakpoint is not, in float32).
    act = is_act.to(d.dtype)
    sign = torch.where(is_pos, 1.0, -1.0).to(d.dtype) * act  # +1 positive piece, -1 negative piece, 0 clipped
    n_act = act.sum(-1, keepdim=True)
    m = torch.where(is_act, d, 0.0).sum(-1, keepdim=True) / n_act
    v = torch.where(is_act, d - m, 0.0)
    a = sign.sum(-1, keepdim=True)
    b = (sign * v).sum(-1, keepdim=True)
    excess = (sign * v * v).sum(-1, keepdim=True) - eta * (n - n_act) - 1.0
    # a s**2 - 2 b s + excess = 0; the root where f is decreasing (a s < b), in a cancellation-free form
    root = torch.sqrt(torch.clamp_min(b * b - a * excess, 0.0))
    denom = b + root
    tiny = torch.finfo(d.dtype).tiny
    denom = torch.where(denom.abs() < tiny, torch.full_like(denom, tiny), denom)
    return m + excess / denom
