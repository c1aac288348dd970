"""Automatic temperature tuning by the MPO-style dual (paper Appendix G, Eq. 30; ``docs/method.md``, section 6).

For ``exp`` the dual ``g(lambda) = lambda eps + lambda mean_s log mean_j exp(Q_sj / lambda)`` has
``dg / dlambda = eps - KL(w || uniform)``. We use the same fixed point for every scheme: the controller holds
``log_temperature`` and its loss has gradient ``target_kl - KL(w || uniform)`` with respect to it, so gradient
descent raises the temperature (flatter weights) while the weights are more peaked than the target, and lowers
it otherwise. For the power schemes the temperature is the ``p``-th root of the target mass (``beta = T**p``,
see :mod:`simpo_bio.weighting.normalize`), so tuning ``log T`` is tuning ``log beta / p``. For signed schemes the
KL is taken on the positive part of ``w``, renormalised (:func:`simpo_bio.weighting.kl_to_uniform`), which
keeps it monotone in the temperature.

Imports: torch and :mod:`simpo_bio.weighting` (``functions``, ``normalize``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from simpo_bio.weighting.functions import WeightScheme, get_scheme
from simpo_bio.weighting.normalize import WeightOutput, compute_weights, kl_to_uniform

__all__ = ["TemperatureController"]


class TemperatureController(nn.Module):
    """Learns the weighting temperature so that ``KL(w || uniform)`` tracks ``target_kl`` (paper Appendix G).

    Usage (one optimizer of its own, e.g. ``Adam(controller.parameters(), lr=1e-2)``)::

        out = compute_weights(advantage, controller.scheme, controller.temperature)
        controller.loss(out.weight).backward(); temp_optimizer.step(); temp_optimizer.zero_grad()

    Args:
        scheme: scheme name or :class:`WeightScheme` whose temperature is tuned.
        temperature: starting temperature, ``> 0`` (units of the advantage); read the current one from the
            :attr:`temperature` property.
        target_kl: target ``KL(w || uniform)`` in nats, ``> 0``; must be below ``log N`` (N = group size) to be
            reachable (paper default 1.5 for N = 32, where ``log 32 = 3.47``).
        temperature_min, temperature_max: the temperature is clamped to this range.

    Raises:
        ValueError: non-positive / non-finite temperatures or target, or ``min > max``.
    """

    def __init__(
        self,
        scheme: str | WeightScheme,
        temperature: float = 1.0,
        target_kl: float = 1.5,
        temperature_min: float = 1e-4,
        temperature_max: float = 1e4,
    ) -> None:
        super().__init__()
        for name, value in (("temperature", temperature), ("target_kl", target_kl),
                            ("temperature_min", temperature_min), ("temperature_max", temperature_max)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value}")
        if temperature_min > temperature_max:
            raise ValueError(f"temperature_min {temperature_min} > temperature_max {temperature_max}")
        self.scheme = get_scheme(scheme)
        self.target_kl = float(target_kl)
        self.log_min, self.log_max = math.log(temperature_min), math.log(temperature_max)
        init = min(max(math.log(temperature), self.log_min), self.log_max)
        self.log_temperature = nn.Parameter(torch.tensor(init, dtype=torch.float32))

    @property
    def temperature(self) -> Tensor:
        """Current temperature: a detached 0-d tensor, ``> 0``, clamped to ``[min, max]_temperature``."""
        return self.log_temperature.detach().clamp(self.log_min, self.log_max).exp()

    def weights(self, advantage: Tensor, *, mask: Tensor | None = None) -> WeightOutput:
        """:func:`compute_weights` with this controller's scheme and current temperature."""
        return compute_weights(advantage, self.scheme, self.temperature.to(advantage.device), mask=mask)

    def kl(self, weight: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean over groups of ``KL(relu(w) / sum relu(w) || uniform)`` in nats (0-d, detached)."""
        return kl_to_uniform(weight.detach(), mask).mean()

    def loss(self, weight: Tensor, mask: Tensor | None = None) -> Tensor:
        """Dual loss (paper Appendix G, Eq. 30), a scalar whose gradient w.r.t. ``log_temperature`` is
        ``target_kl - KL(w || uniform)``.

        Args:
            weight: ``[..., N]`` weights computed at the current temperature (detached inside).
            mask: optional bool ``[..., N]``, True = valid.

        Returns:
            0-d tensor (its value is ``log T * (target_kl - KL)``; only its gradient is meaningful).
        """
        gap = self.target_kl - self.kl(weight, mask).to(self.log_temperature.device, torch.float32)
        return self.log_temperature * gap
