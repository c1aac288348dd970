"""simpo_bio.weighting: rewards -> per-sample weights, shared by every domain (SPEC 2-4).

Pure torch (no Lightning, no I/O). Shapes ``[..., N]``: the group is the last dim.

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
    threshold_bisect,
    threshold_exact,
    wd1_normalize,
    weight_diagnostics,
)
from simpo_bio.weighting.temperature import TemperatureController

__all__ = [
    "DIVERGENCES",
    "SCHEMES",
    "FDivergence",
    "TemperatureController",
    "WeightOutput",
    "WeightScheme",
    "available_divergences",
    "available_schemes",
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
