"""f-divergences and the weightings they induce (paper Table 1).

Regularising policy improvement with ``lambda * D_f(pi || pi_old)`` gives ``pi* = pi_old * w`` with
``w = g((Q - mu) / lambda)``, ``g = max(0, (f')^{-1})`` and ``mu`` the multiplier making ``E_{pi_old}[w] = 1``
(over a group of N samples: ``sum_j w_j = N``). Each entry of :data:`DIVERGENCES` gives the generator ``f``,
its derivative, the clipped inverse ``g`` and the closed-form scheme of :mod:`simpo_bio.weighting.functions`
that produces the same normalised weights, with the temperature that makes them equal:

=====================  ===========================================  ===========================  ==================
divergence             f(x)                                         g(y)                         scheme, temperature
=====================  ===========================================  ===========================  ==================
``kl`` (forward KL)    ``x log x``                                  ``exp(y - 1)``               exp, ``lambda``
``chi2``               ``(x - 1)**2``                               ``relu(1 + y/2)``            linear, ``2 lambda N``
``alpha`` (alpha > 1)  ``(x**a - a x + a - 1) / (a (a - 1))``       ``relu(1 + (a-1) y)**p``     power p, ``N**(1/p) lambda / (a-1)``
=====================  ===========================================  ===========================  ==================

with ``p = 1 / (alpha - 1)`` (alpha 1.5 -> ``square``, alpha 2 -> ``linear``). A reference for the tests and
the docs; training code uses the schemes of :mod:`simpo_bio.weighting.functions`.

Imports: torch only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["DIVERGENCES", "FDivergence", "available_divergences", "get_divergence", "induced_weights"]


@dataclass(frozen=True)
class FDivergence:
    """An f-divergence generator and its induced weighting.

    Attributes:
        name: registry name.
        f: generator ``f(x)``, convex with ``f(1) = 0`` (elementwise on tensors, ``x > 0``).
        f_prime: ``f'(x)``.
        weight_fn: ``g(y) = max(0, (f')^{-1}(y))``, the clipped inverse of ``f'``: the induced ``phi``.
        scheme: name of the closed-form scheme producing the same normalised weights.
        scheme_params: parameters for :func:`simpo_bio.weighting.get_scheme`.
        temperature_fn: ``(lambda, N) -> temperature`` making ``compute_weights`` equal the induced weights.
        params: the divergence's own parameters (e.g. ``alpha``).
    """

    name: str
    f: Callable[[Tensor], Tensor]
    f_prime: Callable[[Tensor], Tensor]
    weight_fn: Callable[[Tensor], Tensor]
    scheme: str
    scheme_params: dict[str, Any]
    temperature_fn: Callable[[float, int], float]
    params: dict[str, Any] = field(default_factory=dict)

    def temperature(self, lam: float, n: int) -> float:
        """Temperature of the equivalent scheme for regularisation strength ``lam`` and group size ``n``."""
        return self.temperature_fn(lam, n)


def _kl() -> FDivergence:
    return FDivergence(
        "kl",
        f=lambda x: torch.xlogy(x, x),
        f_prime=lambda x: torch.log(x) + 1.0,
        weight_fn=lambda y: torch.exp(y - 1.0),
        scheme="exp",
        scheme_params={},
        temperature_fn=lambda lam, n: lam,
    )


def _chi2() -> FDivergence:
    return FDivergence(
        "chi2",
        f=lambda x: (x - 1.0) ** 2,
        f_prime=lambda x: 2.0 * (x - 1.0),
        weight_fn=lambda y: torch.relu(1.0 + 0.5 * y),
        scheme="linear",
        scheme_params={},
        temperature_fn=lambda lam, n: 2.0 * lam * n,
    )


def _alpha(alpha: float = 1.5) -> FDivergence:
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha > 1.0):
        raise ValueError(f"alpha-divergence needs alpha > 1 (finite), got {alpha}")
    a, p = alpha, 1.0 / (alpha - 1.0)
    scheme, scheme_params = ("linear", {}) if p == 1.0 else ("square", {}) if p == 2.0 else ("power", {"p": p})
    return FDivergence(
        "alpha",
        f=lambda x: (x**a - a * x + a - 1.0) / (a * (a - 1.0)),
        f_prime=lambda x: (x ** (a - 1.0) - 1.0) / (a - 1.0),
        weight_fn=lambda y: torch.relu(1.0 + (a - 1.0) * y) ** p,
        scheme=scheme,
        scheme_params=scheme_params,
        temperature_fn=lambda lam, n: n ** (1.0 / p) * lam / (a - 1.0),
        params={"alpha": alpha},
    )


#: Registry: divergence name -> builder taking its keyword parameters (``alpha`` for ``'alpha'``).
DIVERGENCES: dict[str, Callable[..., FDivergence]] = {"kl": _kl, "chi2": _chi2, "alpha": _alpha}


def available_divergences() -> list[str]:
    """Names accepted by :func:`get_divergence`."""
    return list(DIVERGENCES)


def get_divergence(name: str, **params: Any) -> FDivergence:
    """Look up an f-divergence by name (``get_divergence('alpha', alpha=1.5)``).

    Raises:
        ValueError: unknown name or bad parameter.
    """
    if name not in DIVERGENCES:
        raise ValueError(f"unknown f-divergence {name!r}; available: {available_divergences()}")
    try:
        return DIVERGENCES[name](**params)
    except TypeError as err:
        raise ValueError(f"bad parameters for f-divergence {name!r}: {params}") from err


def induced_weights(divergence: FDivergence, q: Tensor, lam: float, *, iters: int = 200) -> Tensor:
    """Stage-I weights from the divergence itself (reference, not fast): ``g((Q - mu)/lam) / N``.

    ``mu`` is found per group by bisection so that ``sum_j g((Q_j - mu) / lam) = N`` (``E_{pi_old} w = 1``);
    the bracket is ``[min Q, max Q]`` because ``g(0) = 1`` for every generator here (``f'(1) = 0``).

    Args:
        divergence: from :func:`get_divergence`.
        q: ``[..., N]`` rewards / critic values (finite).
        lam: regularisation strength ``lambda > 0`` (units of ``q``).
        iters: bisection halvings.

    Returns:
        ``[..., N]`` weights summing to 1 per group (float64).
    """
    q = q.to(torch.float64)
    n = q.shape[-1]
    lo, hi = q.amin(-1, keepdim=True), q.amax(-1, keepdim=True)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        big = divergence.weight_fn((q - mid) / lam).sum(-1, keepdim=True) >= n
        lo, hi = torch.where(big, mid, lo), torch.where(big, hi, mid)
    w = divergence.weight_fn((q - 0.5 * (lo + hi)) / lam)
    return w / w.sum(-1, keepdim=True)
