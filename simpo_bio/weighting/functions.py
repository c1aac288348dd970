"""Weight functions ``phi`` and the one registry of weighting schemes (paper Table 1, Eq. 9 and Eq. 11).

A *scheme* turns the temperature-scaled advantage ``x = advantage / temperature`` of every sample of a group
into a weight. It is the pair (elementwise ``phi``, per-group normaliser); the normalisers live in
:mod:`simpo_bio.weighting.normalize` and :mod:`simpo_bio.weighting.thresholds` (weights and normalisers per
scheme: ``docs/method.md``). Every domain (DNA, control, bandit) selects a scheme by name from
:data:`SCHEMES`, so ``--model.scheme square_neg`` means the same thing everywhere.

Schemes (``x`` is dimensionless; ``tau`` the per-group threshold, ``eta >= 0`` the negative floor):

============  ====================================================  =========  ================================
name          weight before the final division by the group sum      signed     normaliser
============  ====================================================  =========  ================================
exp           ``exp(x - tau)``                                       no         softmax (forward KL)
linear        ``relu(x - tau)``                                      no         exact sort (chi-square)
square        ``relu(x - tau)**2``                                   no         exact sort (alpha = 1.5)
power         ``relu(x - tau)**p``, any ``p > 0``                    no         bisection (exact for p 1, 2)
linear_neg    ``max(x - tau, -eta)``                                 eta > 0    exact sort (paper Eq. 11)
square_neg    ``max(sign(u) u**2, -eta)``, ``u = x - tau``           eta > 0    exact sort (paper Eq. 11)
wd1           ``(softmax(x) - eta softmax(-x)) / (1 - eta)``         eta > 0    two softmaxes (Tang et al. 2025)
============  ====================================================  =========  ================================

Imports: torch only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["SCHEMES", "WeightScheme", "available_schemes", "get_scheme"]


@dataclass(frozen=True)
class WeightScheme:
    """A named weighting scheme: elementwise ``phi`` plus the parameters its normaliser needs.

    Build one with :func:`get_scheme` (validates the parameters) rather than directly.

    Attributes:
        name: registry name, one of :func:`available_schemes`.
        signed: True when the scheme can return negative weights (``eta > 0`` for ``linear_neg``,
            ``square_neg`` and ``wd1``).
        p: exponent of the power family (1 for ``linear``/``linear_neg``, 2 for ``square``/``square_neg``,
            the user's ``p`` for ``power``; ``nan`` for ``exp`` and ``wd1``).
        eta: negative floor (paper Eq. 11) in units of ``x = advantage / temperature``; for ``wd1`` the
            weight of the negative softmax, ``0 <= eta < 1``. ``0`` for the unsigned schemes.
        params: the keyword parameters the scheme was built with (for logging / configs).
    """

    name: str
    signed: bool
    p: float = float("nan")
    eta: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        """``'softmax'`` (exp), ``'wd1'`` or ``'threshold'`` (the power family, signed or not)."""
        if self.name == "exp":
            return "softmax"
        if self.name == "wd1":
            return "wd1"
        return "threshold"

    def phi(self, x: Tensor) -> Tensor:
        """Elementwise, monotonically increasing weight function (paper Eq. 9, Eq. 11), before normalisation.

        Args:
            x: ``[...]`` any shape; for threshold schemes pass ``x - tau``.

        Returns:
            Tensor of the same shape: ``exp(x)``; ``relu(x)**p``; ``max(sign(x)|x|**p, -eta)`` for the
            signed power schemes; ``exp(x) - eta * exp(-x)`` for ``wd1`` (wd1 normalises its positive and
            negative parts by separate group sums, see :func:`simpo_bio.weighting.normalize.wd1_normalize`).
        """
        if self.name == "exp":
            return torch.exp(x)
        if self.name == "wd1":
            return torch.exp(x) - self.eta * torch.exp(-x)
        if self.signed:
            signed_power = torch.sign(x) * x.abs().pow(self.p)
            return torch.clamp_min(signed_power, -self.eta)
        return torch.relu(x).pow(self.p)


def _no_params(name: str, params: dict[str, Any]) -> None:
    if params:
        raise ValueError(f"scheme {name!r} takes no parameters, got {sorted(params)}")


def _eta(name: str, params: dict[str, Any], default: float, upper: float = math.inf) -> float:
    extra = set(params) - {"eta"}
    if extra:
        raise ValueError(f"scheme {name!r} accepts only 'eta', got unexpected {sorted(extra)}")
    eta = float(params.get("eta", default))
    if not (math.isfinite(eta) and 0.0 <= eta < upper):
        bound = "[0, 1)" if upper == 1.0 else "[0, inf)"
        raise ValueError(f"scheme {name!r}: eta must be finite and in {bound}, got {eta}")
    return eta


def _build_exp(**params: Any) -> WeightScheme:
    _no_params("exp", params)
    return WeightScheme("exp", signed=False)


def _build_linear(**params: Any) -> WeightScheme:
    _no_params("linear", params)
    return WeightScheme("linear", signed=False, p=1.0)


def _build_square(**params: Any) -> WeightScheme:
    _no_params("square", params)
    return WeightScheme("square", signed=False, p=2.0)


def _build_power(**params: Any) -> WeightScheme:
    extra = set(params) - {"p"}
    if extra:
        raise ValueError(f"scheme 'power' accepts only 'p', got unexpected {sorted(extra)}")
    p = float(params.get("p", 2.0))
    if not (math.isfinite(p) and p > 0):
        raise ValueError(f"scheme 'power': p must be finite and > 0, got {p}")
    return WeightScheme("power", signed=False, p=p, params={"p": p})


def _build_linear_neg(**params: Any) -> WeightScheme:
    eta = _eta("linear_neg", params, default=1.0)
    return WeightScheme("linear_neg", signed=eta > 0, p=1.0, eta=eta, params={"eta": eta})


def _build_square_neg(**params: Any) -> WeightScheme:
    eta = _eta("square_neg", params, default=1.0)
    return WeightScheme("square_neg", signed=eta > 0, p=2.0, eta=eta, params={"eta": eta})


def _build_wd1(**params: Any) -> WeightScheme:
    eta = _eta("wd1", params, default=0.5, upper=1.0)
    return WeightScheme("wd1", signed=eta > 0, eta=eta, params={"eta": eta})


#: The registry: scheme name -> builder taking the scheme's keyword parameters.
SCHEMES = {
    "exp": _build_exp,
    "linear": _build_linear,
    "square": _build_square,
    "power": _build_power,
    "linear_neg": _build_linear_neg,
    "square_neg": _build_square_neg,
    "wd1": _build_wd1,
}


def available_schemes() -> list[str]:
    """Names accepted by :func:`get_scheme` (and ``--model.scheme`` in every config), in registry order."""
    return list(SCHEMES)


def get_scheme(name: str | WeightScheme, **params: Any) -> WeightScheme:
    """Look up a weighting scheme by name and validate its parameters.

    Args:
        name: one of :func:`available_schemes`; a :class:`WeightScheme` is returned unchanged (then no
            ``params`` may be given).
        **params: ``p`` (``power``, > 0, default 2); ``eta`` (``linear_neg``/``square_neg``: >= 0, default
            1.0, in units of ``advantage / temperature``; ``wd1``: in [0, 1), default 0.5).

    Returns:
        The :class:`WeightScheme`.

    Raises:
        ValueError: unknown name, unknown parameter or parameter out of range.
    """
    if isinstance(name, WeightScheme):
        if params:
            raise ValueError(f"got a WeightScheme ({name.name!r}) together with parameters {sorted(params)}")
        return name
    if name not in SCHEMES:
        raise ValueError(f"unknown weighting scheme {name!r}; available: {available_schemes()}")
    return SCHEMES[name](**params)
