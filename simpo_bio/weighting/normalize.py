"""Per-group normalisers: advantages -> weights that sum to one over each group (SPEC 3, paper Appendix E).

Shapes: ``advantage`` is ``[..., N]``; the group is the last dim, every leading index is one group (one state,
one prompt, one generation batch). All solvers are vectorised over groups (no Python loop over groups).

Convention (documented once, used everywhere). For every threshold scheme the solver works on the
temperature-scaled advantage ``x = advantage / temperature`` with target mass ``beta = 1``:

    sum_i max(phi(x_i - tau), -eta) = 1,      phi(u) = sign(u) |u|**p.

Because ``sum_i phi(a_i / T - tau) = 1``  <=>  ``sum_i phi(a_i - T tau) = T**p`` for the power family, this is
exactly the paper's target-mass formulation on raw advantages with ``beta = temperature**p`` (the raw weights are
then divided by ``beta``); conversely a target mass ``beta`` is the temperature ``beta**(1/p)``. A larger
temperature gives flatter weights for every scheme. The signed floor ``eta`` is in the units of ``x``; the
solved weights already sum to one, so no normalised weight is below ``-eta``.

Solvers:

* :func:`softmax_normalize` -- ``exp``.
* :func:`threshold_exact` -- ``linear``/``square``/``linear_neg``/``square_neg``, exact. Sort-based closed forms
  (SPEC 3; sparsemax and 1.5-entmax up to scale: ``linear(x) == sparsemax(x)``, ``square(x) == entmax15(2 x)``;
  ``linear_neg`` reduces to the linear solver on ``x + eta`` with mass ``1 + n eta``; ``square_neg`` uses the
  sorted breakpoints ``x_i`` and ``x_i + sqrt(eta)`` and one quadratic on the bracketing interval), or sort-free
  active-set iterations that are exact on termination (the default for large CPU inputs).
* :func:`threshold_bisect` -- any ``p > 0``, signed or not; the reference solver in the tests.
* :func:`wd1_normalize` -- ``wd1``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from simpo_bio.weighting.functions import WeightScheme, get_scheme

__all__ = [
    "WeightOutput",
    "compute_weights",
    "kl_to_uniform",
    "softmax_normalize",
    "threshold_bisect",
    "threshold_exact",
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


# ----------------------------------------------------------------------------------------------------------
# helpers


def _masked_extremes(x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-group max and min over valid entries, ``[..., 1]`` each."""
    if mask is None:
        return x.amax(-1, keepdim=True), x.amin(-1, keepdim=True)
    hi = x.masked_fill(~mask, -math.inf).amax(-1, keepdim=True)
    lo = x.masked_fill(~mask, math.inf).amin(-1, keepdim=True)
    return hi, lo


def _count(x: Tensor, mask: Tensor | None) -> Tensor:
    """Number of valid entries per group, ``[..., 1]`` in x's dtype."""
    if mask is None:
        return torch.full(x.shape[:-1] + (1,), x.shape[-1], dtype=x.dtype, device=x.device)
    return mask.sum(-1, keepdim=True).to(x.dtype)


def _finish(weight: Tensor, mask: Tensor | None, signed: bool = False) -> Tensor:
    """Zero masked entries and remove the solver's last rounding error so that each group sums to one.

    Unsigned weights are divided by their sum. Signed weights keep their negative entries exactly (so the floor
    ``-eta`` is never crossed by the correction) and only the positive part is rescaled, by
    ``(1 + negative mass) / positive mass`` -- a factor within a few ulps of one.
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


def _signed_power(u: Tensor, p: float, eta: float) -> Tensor:
    """``max(sign(u) |u|**p, -eta)`` (``relu(u)**p`` when ``eta == 0``)."""
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


# ----------------------------------------------------------------------------------------------------------
# solvers


def softmax_normalize(x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Softmax over the group (``exp`` scheme, forward-KL regularisation; SPEC 2-3, DPMD / AWR).

    Args:
        x: ``[..., N]`` temperature-scaled advantages, finite on valid entries.
        mask: optional ``[..., N]`` bool, True = valid sample.

    Returns:
        ``(weight [..., N], tau [...])`` with ``weight = exp(x - tau)`` and ``tau = logsumexp(x)``.
    """
    if mask is not None:
        x = x.masked_fill(~mask, -math.inf)
    tau = torch.logsumexp(x, dim=-1, keepdim=True)
    weight = _finish(torch.exp(x - tau), mask)
    return weight, tau.squeeze(-1)


def wd1_normalize(x: Tensor, eta: float = 0.5, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """wd1 weights with a positive total mass (Tang et al. 2025, arXiv:2507.08838; SiMPO Example 3.4).

    wd1 maximises ``sum_i [softmax(x)_i - softmax(-x)_i] log pi(y_i)``: a softmax over the group pulls
    towards good samples and a softmax of the negated advantage pushes away from bad ones. Those weights sum to
    exactly 0 -- the paper's Case II (unbounded loss), which SPEC 3 forbids. Our normalisation rule keeps the
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
    weight = _finish((pos - eta * neg) / (1.0 - eta), mask, signed=True)
    return weight, tau


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

    ``method='active_set'`` -- sort-free: Michelot's iteration (p 1)
    or monotone Newton steps with the closed form accepted once it reproduces its own active set (p 2); a
    handful of elementwise passes, exact at termination, with the sort solver as fallback for any group not
    settled after 50 steps; for ``square_neg`` a safeguarded piecewise-quadratic iteration, exact once two
    consecutive points see the same pieces. Solved groups leave the working set, so the last steps (which few
    groups need) are cheap. ``method='auto'`` (default) uses the active-set solvers for CPU tensors of at least
    ``AUTO_ACTIVE_SET_MIN_NUMEL`` elements (a CPU sort of many short rows costs far more than a few elementwise
    passes) and the sort solvers otherwise (GPU: fast sort, no per-step host sync; tiny inputs: fewer ops).

    Args:
        x: ``[..., N]`` temperature-scaled advantages, finite on valid entries.
        p: 1 or 2.
        eta: negative floor ``>= 0`` in units of ``x``.
        mask: optional ``[..., N]`` bool, True = valid sample; every group needs one valid sample.
        method: ``'auto'``, ``'sort'`` or ``'active_set'`` (all exact; they differ only in speed).

    Returns:
        ``(weight [..., N], tau [...])``; weights sum to 1 per group, masked entries are 0, ``weight >= -eta``.

    Raises:
        ValueError: ``p`` not 1 or 2, ``eta < 0`` or an unknown ``method``.
    """
    if p not in (1.0, 2.0):
        raise ValueError(f"threshold_exact handles p = 1 or 2 only, got p={p}; use threshold_bisect")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    hi = x.amax(-1, keepdim=True) if mask is None else x.masked_fill(~mask, -math.inf).amax(-1, keepdim=True)
    d = x - hi  # shift invariance: work relative to the group max (<= 0), keeps float32 accurate
    n = _count(x, mask)
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
        if p == 2.0 and eta > 0.0:
            t, converged = _square_neg_active_set(d, mask, n, p, eta)
        else:
            t, converged = _threshold_active_set(*_compact(d, mask, n, eta), n, p, eta)
        if not bool(converged.all()):  # rare (ties at rounding level, adversarial spacing): sort those groups
            rows = (~converged.squeeze(-1)).nonzero(as_tuple=True)
            t = t.clone()
            t[rows] = _threshold_sort(d[rows], None if mask is None else mask[rows], n[rows], p, eta)
    weight = _finish(_signed_power(d - t, p, eta), mask, signed=eta > 0.0)
    return weight, (t + hi).squeeze(-1)


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


#: Steps of the active-set solver before the remaining groups fall back to the sort solver.
ACTIVE_SET_MAX_ITER = 50
#: ``method='auto'`` uses the active-set solver on CPU tensors with at least this many elements, else sort.
AUTO_ACTIVE_SET_MIN_NUMEL = 16384


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


#: Groups at least this long are compacted to their possibly-active samples before the active-set iteration.
COMPACT_MIN_GROUP = 1024


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
        n_here = _count(d, mask).reshape(-1, 1)  # valid samples in the (possibly compacted) rows
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
        ``(weight [..., N], tau [...])``.

    Raises:
        ValueError: ``p <= 0`` or ``eta < 0``.
    """
    if not p > 0:
        raise ValueError(f"p must be > 0, got {p}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    hi_x, lo_x = _masked_extremes(x, mask)
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
        g = _signed_power(d - mid, p, eta)
        if mask is not None:
            g = g.masked_fill(~mask, 0.0)
        big = g.sum(-1, keepdim=True) >= 1.0
        lo = torch.where(big, mid, lo)
        hi = torch.where(big, hi, mid)
    t = 0.5 * (lo + hi)
    weight = _finish(_signed_power(d - t, p, eta), mask, signed=eta > 0)
    return weight, (t + hi_x).squeeze(-1)


# ----------------------------------------------------------------------------------------------------------
# diagnostics


def kl_to_uniform(weight: Tensor, mask: Tensor | None = None) -> Tensor:
    """KL divergence of a group's weights to the uniform distribution over its valid samples (SPEC 4).

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
    return torch.log(_count(weight, mask).squeeze(-1)) + neg_entropy


def weight_diagnostics(weight: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(active, negative_mass, ess)`` of ``[..., N]`` weights, each ``[...]`` (see :class:`WeightOutput`)."""
    if mask is not None:
        weight = weight.masked_fill(~mask, 0.0)
    active = torch.sign(weight.abs()).sum(-1).long()
    negative_mass = torch.clamp_min(-weight, 0.0).sum(-1)
    abs_sum = weight.abs().sum(-1)
    ess = abs_sum * abs_sum / torch.clamp_min((weight * weight).sum(-1), torch.finfo(weight.dtype).tiny)
    return active, negative_mass, ess


# ----------------------------------------------------------------------------------------------------------
# the entry point


def _group_name(index: list[int]) -> str:
    return "(" + ", ".join(str(i) for i in index) + ")" if index else "()"


def _check_advantage(advantage: Tensor, mask: Tensor | None, what: str = "advantage") -> None:
    probe = advantage if mask is None else advantage.masked_fill(~mask, 0.0)
    if not bool(torch.isfinite(probe.abs().amax())):  # one reduction; locate the culprit only on failure
        bad = ~torch.isfinite(probe)
        first = bad.nonzero()[0].tolist()
        value = advantage[tuple(first)].item()
        raise ValueError(
            f"{what} has a non-finite value ({value}) in group {_group_name(first[:-1])} at position "
            f"{first[-1]} (shape {tuple(advantage.shape)}); fix the rewards or mask that sample out"
        )
    if mask is not None:
        empty = ~mask.any(-1)
        if bool(empty.any()):
            first = empty.nonzero()[0].tolist()
            raise ValueError(f"group {_group_name(first)} has no valid sample (its mask is all False)")


def compute_weights(
    advantage: Tensor,
    scheme: str | WeightScheme,
    temperature: float | Tensor = 1.0,
    *,
    mask: Tensor | None = None,
    **scheme_params: float,
) -> WeightOutput:
    """Per-sample weights from advantages, one group per leading index (SiMPO Stage I, SPEC 2-3).

    ``x = advantage / temperature``; the scheme's normaliser then returns weights that sum to 1 over the last
    dim (target mass ``beta = 1`` on ``x``, i.e. ``beta = temperature**p`` on raw advantages; see the module
    docstring). A larger temperature gives flatter weights for every scheme. Weights are detached: they are
    the fixed targets of Stage II (weighted ELBO / flow matching).

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
        ValueError: unknown scheme or bad parameters; a non-finite advantage on a valid entry (the message
            names the group and position); a group with no valid sample; a non-positive or non-finite
            temperature; ``advantage / temperature`` overflowing.
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
    _check_advantage(advantage, mask)

    temp = torch.as_tensor(temperature, dtype=advantage.dtype, device=advantage.device).detach()
    if not bool(torch.isfinite(temp).all()) or bool((temp <= 0).any()):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    if temp.dim() > 0:
        temp = temp.unsqueeze(-1)

    with torch.no_grad():
        x = advantage / temp
        if mask is not None:
            x = x.masked_fill(~mask, 0.0)
        _check_advantage(x, mask, what="advantage / temperature")
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
