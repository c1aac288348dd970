"""Sort-free exact threshold solvers (active-set iterations) used by :func:`simpo_bio.weighting.threshold_exact`.

They solve the same equation as the sort-based closed forms of :mod:`simpo_bio.weighting.thresholds` (paper
Appendix E, Eq. 22-29, and its signed generalisation, paper Eq. 11) on the shifted advantages ``d = x - max x``
(``d <= 0``), with a handful of elementwise passes instead of a sort: on CPU a sort of many short rows costs far
more. Every accepted threshold is exact -- its active set is verified -- and groups that do not settle within
:data:`ACTIVE_SET_MAX_ITER` steps are reported as not converged (the caller re-solves them by sorting).

Public here: :func:`threshold_active_set` and the constants; everything else is private to this file.

Imports: torch and :mod:`simpo_bio.weighting.group_ops`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from simpo_bio.weighting.group_ops import group_count

__all__ = ["ACTIVE_SET_MAX_ITER", "COMPACT_MIN_GROUP", "threshold_active_set"]

#: Steps of the active-set solver before the remaining groups fall back to the sort solver.
ACTIVE_SET_MAX_ITER = 50
#: Groups at least this long are compacted to their possibly-active samples before the active-set iteration.
COMPACT_MIN_GROUP = 1024


def threshold_active_set(
    d: Tensor, mask: Tensor | None, n: Tensor, p: float, eta: float
) -> tuple[Tensor, Tensor]:
    """Exact threshold ``t`` with ``sum_i max(sign(u_i)|u_i|**p, -eta) = 1``, ``u_i = d_i - t``, without sorting.

    ``linear``, ``square`` and ``linear_neg`` use :func:`_threshold_active_set` (long unsigned groups first
    dropping the samples that cannot be active), ``square_neg`` uses :func:`_square_neg_active_set`.

    Args:
        d: ``[..., N]`` temperature-scaled advantages shifted so that each group's valid maximum is 0.
        mask: optional ``[..., N]`` bool, True = valid sample (at least one per group).
        n: ``[..., 1]`` number of valid samples per group (``d``'s dtype).
        p: 1 or 2.
        eta: negative floor ``>= 0`` in units of ``d``.

    Returns:
        ``(t [..., 1], converged [..., 1] bool)``; ``t`` is exact where ``converged`` (in units of ``d``).
    """
    if p == 2.0 and eta > 0.0:
        return _square_neg_active_set(d, mask, n, p, eta)
    return _threshold_active_set(*_compact(d, mask, n, eta), n, p, eta)


def _compact(d: Tensor, mask: Tensor | None, n: Tensor, eta: float) -> tuple[Tensor, Tensor | None]:
    """Drop samples that cannot be active (long groups only): returns ``(d', mask')`` for the active-set solver.

    Unsigned ``linear``/``square``: the top sample alone has mass 1 at ``t = -1`` (``d`` has max 0), so the
    root is ``>= -1`` and only samples with ``d > -1`` can be active. When those are few (at most a quarter of
    a long group) the iteration runs on the top-``K`` samples of each group instead of all ``N``; the final
    weights are still computed on every sample.
    """
    n_total = d.shape[-1]
    if eta > 0.0 or n_total < COMPACT_MIN_GROUP:
        return d, mask
    dm = d if mask is None else d.masked_fill(~mask, -math.inf)
    k_max = int(torch.sign(torch.clamp_min(dm + 1.0, 0.0)).sum(-1).max())  # max #{d > -1} over groups
    if 4 * k_max > n_total:
        return d, mask
    keep = dm > -1.0
    lead = d.shape[:-1]
    if lead.numel() == 1:
        return dm[keep].reshape(*lead, k_max), None
    # scatter each group's kept samples to the front of a [..., k_max] buffer (-inf = padding), no sort
    slot = torch.cumsum(keep, dim=-1) - 1
    index = keep.nonzero(as_tuple=True)
    top = torch.full((*lead, k_max), -math.inf, dtype=d.dtype, device=d.device)
    top[(*index[:-1], slot[keep])] = dm[keep]
    return top, torch.isfinite(top)




class _Rows:
    """Bookkeeping for the iterative solvers: groups leave the working set once they are solved.

    The solvers work on ``[G, N]`` rows. When at most 3/4 of the current rows are still open, the results of
    all working rows are written out and every per-row tensor is cut down to the open rows, so the later
    iterations (which only a few groups need) cost in proportion to those groups. Only index ops (no boolean
    indexing, which is slow on CPU).
    """

    def __init__(self, t: Tensor) -> None:
        self.acc = torch.zeros_like(t)  # accepted value per working row
        self.acc_done = torch.zeros(t.shape, dtype=torch.bool, device=t.device)
        self.rows: Tensor | None = None  # indices of the working rows into the full batch (None = all)
        self.out = self.acc
        self.done = self.acc_done

    def finish(self, value: Tensor, ok: Tensor) -> Tensor:
        """Accept ``value`` for the working rows flagged ``ok`` ([g, 1] each); returns the (sticky) done flags."""
        self.acc = torch.where(ok, value, self.acc)
        self.acc_done = self.acc_done | ok
        return self.acc_done

    @staticmethod
    def cut_worthwhile(n_open: int, open_: Tensor) -> bool:
        """At most 3/4 of the working rows are open (a cut costs about one pass over the kept rows)."""
        return 4 * n_open <= 3 * open_.shape[0]

    def _write_out(self) -> None:
        if self.rows is None:
            self.out, self.done = self.acc, self.acc_done
        else:
            self.out.index_copy_(0, self.rows, self.acc)
            self.done.index_copy_(0, self.rows, self.acc_done)

    def cut(self, open_: Tensor, *state: Tensor) -> list[Tensor]:
        """Keep only the open working rows; returns ``state`` cut down to them."""
        self._write_out()
        keep = open_.reshape(-1).nonzero().reshape(-1)
        self.rows = keep if self.rows is None else self.rows.index_select(0, keep)
        self.acc, self.acc_done = self.acc.index_select(0, keep), self.acc_done.index_select(0, keep)
        return [s.index_select(0, keep) for s in state]

    def result(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(t, converged)`` over the full batch; unsolved rows keep their last iterate ``t``."""
        self.acc = torch.where(self.acc_done, self.acc, t)
        self._write_out()
        return self.out, self.done


def _flat(d: Tensor, mask: Tensor | None, n: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``[G, N]`` view of ``d`` with masked entries at ``-inf``, ``n`` as ``[G, 1]``, and a ``[N, 1]`` ones column.

    Row sums are taken as ``rows @ ones`` (a matrix-vector product): on CPU that is cheaper than ``sum(-1)``
    over short rows.
    """
    dm = d if mask is None else d.masked_fill(~mask, -math.inf)
    n_total = d.shape[-1]
    ones = torch.ones(n_total, 1, dtype=d.dtype, device=d.device)
    return dm.reshape(-1, n_total), n.reshape(-1, 1), ones


def _threshold_active_set(
    d: Tensor, mask: Tensor | None, n: Tensor, p: float, eta: float
) -> tuple[Tensor, Tensor]:
    """Sort-free exact threshold by active-set iteration, for ``linear``, ``square`` and ``linear_neg``.

    ``d <= 0`` with group max 0. Returns ``(t [..., 1], converged [..., 1] bool)``; a converged group's ``t``
    is exact: its active set ``{d > t}`` is verified to be the one the closed form was computed on. Solved
    groups leave the working set (see :class:`_Rows`).

    * p = 1 (target mass ``B = 1 + n eta``, via ``max(u, -eta) = relu(u + eta) - eta``): Michelot's
      iteration ``t <- (sum_{d > t} d - B) / #{d > t}`` from a lower bound. ``t`` rises monotonically and
      stops, exactly, once the active set is stable (at most N steps, a handful in practice).
    * p = 2: Newton steps on the convex ``f(t) = sum relu(d - t)**2`` from the lower bound ``t = -1`` (so the
      iterates rise monotonically to the root), and at every step the closed form of paper Eq. 28 on the
      current active set, accepted as soon as it reproduces that active set.
    """
    lead = d.shape[:-1]
    dm, n2, ones = _flat(d, mask, n)
    n_total = d.shape[-1]
    tiny = torch.finfo(d.dtype).tiny
    if p == 1.0:
        target = 1.0 + n2 * eta
        d0 = dm if mask is None else torch.nan_to_num(dm, neginf=0.0)
        # (sum_S d - B) / |S| bounds the root from below for any subset S (here: all, and the top sample)
        n_here = group_count(d, mask).reshape(-1, 1)  # valid samples in the (possibly compacted) rows
        t = torch.maximum(-target, (d0 @ ones - target) / n_here)
        k_prev = torch.full_like(t, -1.0)
        rows = _Rows(t)
        for _ in range(ACTIVE_SET_MAX_ITER):
            u = torch.sub(dm, t).clamp_min_(0.0)  # relu(d - t); its support is the active set
            s = u @ ones
            k = u.sign_() @ ones  # counts via sign(): much cheaper than a bool mask on CPU
            open_ = k != k_prev
            # (sum_active d - target) / k; once the set is stable this is the exact root, and stays so
            t = torch.addcdiv(t, s - target, k)
            n_open = int(open_.sum())
            if n_open == 0:
                break
            if rows.cut_worthwhile(n_open, open_):
                rows.finish(t, ~open_)
                dm, target, t, k, open_ = rows.cut(open_, dm, target, t, k, open_)
            k_prev = k
        rows.finish(t, ~open_)  # the stable rows are solved; any others (out of steps) go to the fallback
        t_all, done = rows.result(t)
        return (t_all + eta).reshape(*lead, 1), done.reshape(*lead, 1)

    t = torch.full_like(n2, -1.0)  # the top sample alone has mass 1 there: a lower bound
    rows = _Rows(t)
    for _ in range(ACTIVE_SET_MAX_ITER):
        u = torch.sub(dm, t).clamp_min_(0.0)
        s1 = u @ ones
        s2 = (u * u) @ ones
        k = u.sign_() @ ones
        mean = s1 / k  # mean of d - t over the active set
        m2 = torch.clamp_min(s2 - s1 * mean, 0.0)  # squared deviations of the active set (u is O(1): no cancellation)
        closed = t + mean - torch.sqrt(torch.clamp_min((1.0 - m2) / k, 0.0))  # Eq. 28 on this active set
        # #{d > closed} from sum(sign(d - closed)) = #{>} - #{<} (masked -inf entries count as below)
        k_closed = 0.5 * (torch.sign(dm - closed) @ ones + n_total)
        open_ = ~rows.finish(closed, (m2 <= 1.0) & (k_closed == k))
        n_open = int(open_.sum())
        if n_open == 0:
            break
        t = t + torch.clamp_min(s2 - 1.0, 0.0) / torch.clamp_min(2.0 * s1, tiny)  # Newton, from below
        if rows.cut_worthwhile(n_open, open_):
            dm, t = rows.cut(open_, dm, t)
    t_all, done = rows.result(t)
    return t_all.reshape(*lead, 1), done.reshape(*lead, 1)


def _square_neg_active_set(
    d: Tensor, mask: Tensor | None, n: Tensor, p: float, eta: float
) -> tuple[Tensor, Tensor]:
    """Sort-free exact threshold for ``square_neg``: safeguarded piecewise-quadratic steps, verified exactly.

    ``f(t) = sum_i max(sign(u_i) u_i**2, -eta)``, ``u = d - t``, ``c = sqrt(eta)``, is decreasing but not convex.
    One pass at ``t`` gives ``f(t)`` and which piece every sample is on (positive / negative / floored), as
    counts; on those pieces ``f(t + s) = f(t) - 2 B s + a s**2`` (``B = sum_unfloored |u|``, ``a = #pos - #neg``),
    whose decreasing root ``t*`` is the next point when it lies inside the bracket ``[lo, hi]``
    (``f(lo) >= 1 > f(hi)``), else the bracket's midpoint. When the pass at such a ``t*`` finds the same pieces
    as at ``t`` (same counts: the positive and unfloored sets are nested upper sets), that quadratic *is* ``f``
    on ``[t, t*]`` and ``t*`` is the exact root. Returns ``(t [..., 1], converged [..., 1])``.
    """
    del p
    lead = d.shape[:-1]
    c = math.sqrt(eta)
    dm, n2, ones = _flat(d, mask, n)
    n_total = d.shape[-1]
    # f(t) - 1 = sum(v |v|) + shift: masked samples (-inf) sit on the floor, so add their eta back
    shift = -1.0 if mask is None else eta * (n_total - n2) - 1.0
    d_min = (dm if mask is None else torch.nan_to_num(dm, neginf=math.inf)).amin(-1, keepdim=True)
    lo = d_min - 1.0  # every valid term is >= 1 there
    hi = torch.zeros_like(lo)  # f(0) <= 0 < 1 because the group max is 0
    # a start inside the bracket (any such point works); near the root for standardised groups
    t = torch.clamp_min(lo, -1.0 - c)
    # pieces (#unfloored, #pos - #neg - #floored) at the point the current t was solved from (NaN: none)
    prev_act = torch.full_like(lo, math.nan)
    prev_sign = torch.full_like(lo, math.nan)
    rows = _Rows(t)
    for _ in range(ACTIVE_SET_MAX_ITER):
        v = torch.sub(dm, t).clamp_min_(-c)  # max(u, -c): the floored samples sit at -c
        av = v.abs()
        excess = ((v * av) @ ones).add_(shift)  # f(t) - 1, f(t) = sum of max(sign(u) u**2, -eta)
        n_act = torch.sign(v + c) @ ones  # unfloored samples
        sum_sign = v.sign_() @ ones  # #pos - #neg - #floored
        ok = (n_act == prev_act) & (sum_sign == prev_sign)  # same (#unfloored, #pos) as where t came from
        open_ = ~rows.finish(t, ok)
        n_open = int(open_.sum())
        if n_open == 0:
            break
        b = torch.add(av @ ones, n_act, alpha=c).sub_(c * n_total)  # sum_unfloored |u| (-f'(t) / 2)
        a = torch.sub(sum_sign, n_act).add_(n_total)  # #pos - #neg
        above = excess >= 0.0  # t lies inside [lo, hi]: it replaces one end
        lo = torch.where(above, t, lo)
        hi = torch.where(above, hi, t)
        # a s**2 - 2 b s + excess = 0, the root where f decreases, in a cancellation-free form
        root = torch.addcmul(b * b, a, excess, value=-1.0).clamp_min_(0.0).sqrt_()
        cand = torch.addcdiv(t, excess, root.add_(b))
        # inclusive: in float32 the root can round onto a bracket end; False for NaN/inf candidates
        inside = (cand >= lo) & (cand <= hi)
        t = torch.where(inside, cand, torch.lerp(lo, hi, 0.5))
        prev_act = torch.where(inside, n_act, math.nan)
        prev_sign = sum_sign
        if rows.cut_worthwhile(n_open, open_):
            per_row_shift = [shift] if isinstance(shift, Tensor) else []
            dm, t, prev_act, prev_sign, lo, hi, *per_row_shift = rows.cut(
                open_, dm, t, prev_act, prev_sign, lo, hi, *per_row_shift
            )
            if per_row_shift:
                shift = per_row_shift[0]
    t_all, done = rows.result(t)
    return t_all.reshape(*lead, 1), done.reshape(*lead, 1)
