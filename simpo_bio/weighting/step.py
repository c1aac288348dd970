"""The Stage-I step every domain shares: rewards -> advantages -> weights -> temperature update (paper Sec. 3-4).

One object, :class:`WeightingStep`, is used by the DNA fine-tuning module, the control agents and the bandit
experiment, so the same names (``temperature``, ``auto_temperature``, ``target_kl``, ``temperature_lr``,
``temperature_min``, ``temperature_max``, ``normalize_advantage``, ``leave_one_out``) mean the same thing in each:

1. ``A = group_advantages(r)`` within each group (last dim; paper Example 3.4);
2. ``w = compute_weights(A, scheme, T)`` (paper Eq. 9-11, Appendix E), each group summing to 1;
3. with ``auto_temperature``, one Adam step on ``log T`` of the dual of paper Appendix G, Eq. 30
   (:class:`~simpo_bio.weighting.TemperatureController`): ``T`` rises while ``KL(w || uniform) > target_kl``.

The step owns the temperature (a parameter, saved in its ``state_dict``) and its optimiser (saved in the same ``state_dict`` as
its ``_extra_state``), so each domain saves one object to resume exactly.

Imports: torch and :mod:`simpo_bio.weighting` only.
"""

from __future__ import annotations

import copy
import math
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from simpo_bio.weighting.advantages import group_advantages
from simpo_bio.weighting.functions import WeightScheme, get_scheme
from simpo_bio.weighting.normalize import WeightOutput, compute_weights
from simpo_bio.weighting.temperature import TemperatureController

__all__ = ["StageOneOutput", "WeightingStep"]


class StageOneOutput(NamedTuple):
    """What :meth:`WeightingStep.forward` returns (all detached).

    Attributes:
        advantage: ``[..., N]`` group-relative advantages (unitless with ``normalize_advantage``, else reward units).
        weights: the :class:`~simpo_bio.weighting.WeightOutput` at the temperature in use (``weights.weight``
            ``[..., N]``, each group summing to 1; ``ess``, ``active``, ``negative_mass``, ``tau`` per group).
        temperature: the temperature the weights were computed at (advantage units), before any update.
        weight_kl: mean over groups of ``KL(w || uniform)``, nats (the dual's input; positive part for signed
            schemes).
    """

    advantage: Tensor
    weights: WeightOutput
    temperature: float
    weight_kl: float


class WeightingStep(nn.Module):
    """SiMPO's Stage I as one call (module docstring; ``docs/method.md`` sections 2-4 and 6).

    Args:
        scheme: scheme name (:func:`~simpo_bio.weighting.available_schemes`) or a built
            :class:`~simpo_bio.weighting.WeightScheme`.
        scheme_params: parameters of a named scheme (``{"eta": 1.0}``, ``{"p": 3}``); ignored for a built one.
        temperature: fixed temperature (advantage units); the start value with ``auto_temperature``.
        auto_temperature: tune the temperature by the dual (paper Appendix G) so ``KL(w || uniform) = target_kl``.
        target_kl: target of the dual, nats (reachable only below ``log N``).
        temperature_lr: Adam learning rate on ``log T``.
        temperature_min, temperature_max: clamp of the temperature (advantage units).
        normalize_advantage: divide advantages by the group's std (unitless) instead of keeping reward units.
        leave_one_out: leave-one-out baseline (RLOO) instead of the group mean.
        dual_scheme: the scheme whose weights feed the dual, when it should differ from ``scheme`` (the bandit's
            ``temperature_from: unsigned`` tunes a signed scheme's temperature on its unsigned counterpart);
            ``None`` = ``scheme``.

    Raises:
        ValueError: an unknown scheme or bad scheme parameters, a temperature, target or rate that is not finite
            and > 0, or ``temperature_min > temperature_max``.
    """

    def __init__(
        self,
        scheme: str | WeightScheme,
        scheme_params: dict[str, float] | None = None,
        *,
        temperature: float = 1.0,
        auto_temperature: bool = False,
        target_kl: float = 1.5,
        temperature_lr: float = 3e-2,
        temperature_min: float = 1e-4,
        temperature_max: float = 1e4,
        normalize_advantage: bool = True,
        leave_one_out: bool = False,
        dual_scheme: str | WeightScheme | None = None,
    ) -> None:
        super().__init__()
        if not (math.isfinite(temperature_lr) and temperature_lr > 0):
            raise ValueError(f"temperature_lr must be finite and > 0, got {temperature_lr}")
        self.scheme = scheme if isinstance(scheme, WeightScheme) else get_scheme(scheme, **(scheme_params or {}))
        self.dual_scheme = None if dual_scheme is None else get_scheme(dual_scheme)
        self.auto_temperature = bool(auto_temperature)
        self.normalize_advantage = bool(normalize_advantage)
        self.leave_one_out = bool(leave_one_out)
        self.controller = TemperatureController(self.scheme, temperature=temperature, target_kl=target_kl,
                                                temperature_min=temperature_min, temperature_max=temperature_max)
        self.controller.requires_grad_(self.auto_temperature)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=temperature_lr)

    @property
    def temperature(self) -> Tensor:
        """The current temperature, a detached 0-d tensor (advantage units)."""
        return self.controller.temperature

    def forward(self, reward: Tensor, *, mask: Tensor | None = None, update: bool = True) -> StageOneOutput:
        """Advantages, weights and (with ``auto_temperature`` and ``update``) one dual step.

        Args:
            reward: ``[..., N]`` rewards (or Q values), groups on the last dim; finite on valid entries.
            mask: optional bool ``[..., N]``, True = valid.
            update: take the temperature step (when ``auto_temperature``); ``False`` only computes the weights.

        Returns:
            :class:`StageOneOutput`; ``weights.weight`` has the shape of ``reward``.

        Raises:
            AdvantageError: a non-finite reward on a valid entry (from :func:`~simpo_bio.weighting.group_advantages`).
        """
        advantage = group_advantages(reward, mask=mask, normalize=self.normalize_advantage,
                                     leave_one_out=self.leave_one_out)
        temperature = self.controller.temperature.to(advantage.device)
        out = compute_weights(advantage, self.scheme, temperature, mask=mask)
        kl_weight = out.weight
        if self.dual_scheme is not None:
            kl_weight = compute_weights(advantage, self.dual_scheme, temperature, mask=mask).weight
        weight_kl = float(self.controller.kl(kl_weight, mask))
        if self.auto_temperature and update:
            self.optimizer.zero_grad(set_to_none=True)
            self.controller.loss(kl_weight, mask).backward()
            self.optimizer.step()
        return StageOneOutput(advantage.detach(), out, float(temperature), weight_kl)

    # the optimiser's state travels with the temperature (nn.Module's extra-state hook), so one state_dict
    # resumes the step exactly
    def get_extra_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        # a deep copy: Optimizer.load_state_dict keeps the given moment tensors, which would alias the source's
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
