"""simpo_bio.weighting: rewards -> per-sample weights, shared by every domain (SiMPO Stage I, paper Eq. 9-11).

Pure torch (no Lightning, no I/O); imports nothing of ``simpo_bio`` outside this package. Shapes ``[..., N]``:
the group is the last dim. The objective, the weights per scheme and their normalisers and the temperature dual
are written out in ``docs/method.md``.

Layout (public API first): ``normalize`` (:func:`compute_weights`, :class:`WeightOutput`, the ``exp`` / ``wd1``
normalisers, diagnostics), ``functions`` (the scheme registry), ``advantages``, ``temperature``, ``step`` (:class:`WeightingStep`, the Stage-I step every domain
shares: rewards -> advantages -> weights -> temperature update), ``thresholds``
(power-family threshold solvers; ``active_set`` holds their sort-free variants), ``divergences`` (reference),
``validation`` (input checks, :class:`AdvantageError`), ``group_ops`` (shared tensor helpers).

>>> import torch, simpo_bio.weighting as sw
>>> adv = sw.group_advantages(torch.randn(4096, 32))          # [groups, N], standardised per group
>>> out = sw.compute_weights(adv, "square_neg", temperature=0.5, eta=0.2)
>>> out.weight.sum(-1)                                         # ones; out.tau, out.active, out.ess per group
"""

from simpo_bio.weighting.advantages import group_advantages
from simpo_bio.weighting.divergences import (
    DIVERGENCES,
    FDivergence,
    available_divergences,
    get_divergence,
    induced_weights,
)
from simpo_bio.weighting.functions import SCHEMES, WeightScheme, available_schemes, get_scheme
from simpo_bio.weighting.normalize import (
    WeightOutput,
    compute_weights,
    kl_to_uniform,
    softmax_normalize,
    wd1_normalize,
    weight_diagnostics,
)
from simpo_bio.weighting.step import StageOneOutput, WeightingStep
from simpo_bio.weighting.temperature import TemperatureController
from simpo_bio.weighting.thresholds import threshold_bisect, threshold_exact
from simpo_bio.weighting.validation import AdvantageError, check_advantage

__all__ = [
    "DIVERGENCES",
    "AdvantageError",
    "SCHEMES",
    "StageOneOutput",
    "FDivergence",
    "TemperatureController",
    "WeightOutput",
    "WeightScheme",
    "WeightingStep",
    "available_divergences",
    "available_schemes",
    "check_advantage",
    "compute_weights",
    "get_divergence",
    "get_scheme",
    "group_advantages",
    "induced_weights",
    "kl_to_uniform",
    "softmax_normalize",
    "threshold_bisect",
    "threshold_exact",
    "wd1_normalize",
    "weight_diagnostics",
]
