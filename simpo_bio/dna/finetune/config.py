"""The typed configuration of SiMPO fine-tuning: four groups, one per stage of an iteration (``docs/method.md``).

:class:`~simpo_bio.dna.finetune.module.SiMPOFineTuning` takes ``sampling``, ``reward``, ``weighting`` and
``update`` (LightningCLI reads them as ``--model.init_args.<group>.<field>``). Each default here is the shipped
default: ``configs/dna/simpo_base.yaml`` sets only what differs. Each field: one line, its unit, the paper section.

Imports: the standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: How the policy's ELBO in the weighted loss is estimated (:attr:`UpdateConfig.elbo_estimator`).
ELBO_ESTIMATORS = ("count", "time")
#: How ``log pi(x) - log pi_ref(x)`` of the leash is estimated (:attr:`RewardConfig.kl_estimator`).
KL_ESTIMATORS = ("trajectory", "elbo")


def _natural_range() -> dict[str, Any]:
    return {"gc_window": [0.4, 0.6], "max_homopolymer": 10, "max_dust": 2.0}


@dataclass
class SamplingConfig:
    """Stage 0, what each iteration samples from ``pi_old`` (paper Sec. 3.1, 5.3).

    Oracle calls per iteration = ``group_size * num_groups``.
    """

    group_size: int = 32  # G, sequences per group (advantages and weights are relative within a group), >= 2
    num_groups: int = 2  # groups sampled per iteration, >= 1
    seq_len: int = 200  # length of the generated sequences, bp
    num_steps: int = 32  # steps of the ancestral sampler

    def validate(self) -> None:
        """Raises ValueError naming the first bad field (``sampling.<name>``)."""
        for name in ("group_size", "num_groups", "seq_len", "num_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"sampling.{name} must be an integer >= 1, got {v!r}")
        if self.group_size < 2:
            raise ValueError("sampling.group_size must be >= 2 (advantages are relative within a group)")


@dataclass
class RewardConfig:
    """Stage 1, the reward each sample gets: the oracle, the leash to the reference, the natural range (Sec. 5.3).

    ``r = oracle(x) - kl_penalty * (log pi(x) - log pi_ref(x))``; designs outside ``constraints`` rank below
    every design inside (``simpo_bio.dna.finetune.leash``, ``simpo_bio.dna.data.composition.feasibility_ranked``).
    """

    kl_penalty: float = 0.1  # beta, reward units (HepG2 log-odds) per nat of KL(policy || reference); 0 = off
    kl_estimator: str = "trajectory"  # "trajectory": exact log-ratio of the sampling path; "elbo": ELBO difference
    constraints: dict[str, Any] | None = field(default_factory=_natural_range)  # natural range (gc_window,
    #   max_homopolymer bp, max_dust, kmer_quantile; simpo_bio.dna.finetune.leash.build_constraints); None = off
    ensemble_std_coef: float = 1.0  # k of the conservative ensemble reward mean - k std (a list of oracles)

    def validate(self) -> None:
        """Raises ValueError naming the first bad field (``reward.<name>``)."""
        if not (math.isfinite(self.kl_penalty) and self.kl_penalty >= 0):
            raise ValueError(f"reward.kl_penalty must be finite and >= 0, got {self.kl_penalty!r}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"reward.kl_estimator must be one of {KL_ESTIMATORS}, got {self.kl_estimator!r}")
        if not (math.isfinite(self.ensemble_std_coef) and self.ensemble_std_coef >= 0):
            raise ValueError(f"reward.ensemble_std_coef must be finite and >= 0, got {self.ensemble_std_coef!r}")


@dataclass
class WeightingConfig:
    """Stage 2, rewards -> advantages -> weights (paper Eq. 9-11, Appendix E, G; ``simpo_bio.weighting.WeightingStep``)."""

    scheme: str = "square_neg"  # weighting scheme (simpo_bio.weighting.available_schemes())
    scheme_params: dict[str, float] | None = None  # e.g. {"eta": 1.0} (square_neg's default), {"p": 3}; None = defaults
    temperature: float = 1.0  # fixed temperature, advantage units; the start value with auto_temperature
    auto_temperature: bool = False  # tune it by the dual so KL(w || uniform) = target_kl (Appendix G)
    target_kl: float = 1.5  # target of the dual, nats (< log group_size)
    temperature_lr: float = 3e-2  # Adam learning rate of log temperature
    normalize_advantage: bool = True  # standardise rewards within each group
    leave_one_out: bool = False  # leave-one-out baseline (RLOO) instead of the group mean

    def validate(self) -> None:
        """Raises ValueError naming the first bad field (``weighting.<name>``)."""
        for name in ("temperature", "target_kl", "temperature_lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"weighting.{name} must be a finite number > 0, got {v!r}")


@dataclass
class UpdateConfig:
    """Stage 3, the weighted-ELBO update of the policy (paper Eq. 7, Sec. 3.4 and 5.3; ``docs/method.md`` 7-8)."""

    update_epochs: int = 2  # passes over the iteration's samples
    minibatch_size: int | None = 32  # sequences per gradient step (None = all of the iteration's)
    lr: float = 1e-3  # AdamW learning rate of the policy
    weight_decay: float = 0.0  # AdamW weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    grad_clip: float | None = 1.0  # max gradient norm; None = no clipping
    kl_coef: float = 1.0  # anchor KL(policy || reference) on the denoising distributions, per nat; 0 = off
    repel_margin: float | None = 1.386  # cap of a negative-weight ELBO term, nats per base (log 4); None = no cap
    elbo_estimator: str = "count"  # "count": masked-subset size k ~ U{1..L}, weight L/k; "time": t ~ U[eps, 1]
    elbo_draws: int = 4  # Monte-Carlo draws per sequence of the loss (cost grows linearly)
    elbo_shared_noise: bool = True  # the same masked subsets for every sequence of a minibatch ("count" only)

    def validate(self) -> None:
        """Raises ValueError naming the first bad field (``update.<name>``)."""
        for name in ("update_epochs", "elbo_draws"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"update.{name} must be an integer >= 1, got {v!r}")
        if self.minibatch_size is not None and (isinstance(self.minibatch_size, bool) or self.minibatch_size < 1):
            raise ValueError(f"update.minibatch_size must be >= 1 or null, got {self.minibatch_size!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"update.lr must be finite and > 0, got {self.lr!r}")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"update.grad_clip must be > 0 or null (no clipping), got {self.grad_clip!r}")
        if not (math.isfinite(self.kl_coef) and self.kl_coef >= 0):
            raise ValueError(f"update.kl_coef must be finite and >= 0, got {self.kl_coef!r}")
        if self.repel_margin is not None and not (math.isfinite(self.repel_margin) and self.repel_margin > 0):
            raise ValueError(f"update.repel_margin must be > 0 nats per base or null, got {self.repel_margin!r}")
        if self.elbo_estimator not in ELBO_ESTIMATORS:
            raise ValueError(f"update.elbo_estimator must be one of {ELBO_ESTIMATORS}, got {self.elbo_estimator!r}")


@dataclass
class GradientConfig:
    """Reward backpropagation through the sampler with the composition held
    (:class:`~simpo_bio.dna.finetune.gradient.RewardGradientFineTuning`; ``docs/method.md``, "The natural policy").

    Each iteration takes one step on ``-mean r(x) + kl_penalty * mean KL_path(x) + kmer_weight * (1 - r3) +
    motif_weight * (1 - rm)``, ``r3`` / ``rm`` the Pearson correlations of the batch's 3-mer spectrum and JASPAR
    motif-hit profile with the pretrained model's own (``prior_samples`` of its samples; never real sequences).
    The defaults are ``rgc_k7_m7_c4000`` of ``bench/dna_policy_alone.py`` (the policy-alone gate met on five
    held-out seeds at 125 iterations of 32, ``bench/results/dna-policy-alone.md``, seventeenth grid).
    """

    kl_penalty: float = 0.1  # alpha, reward units (HepG2 log-odds) per nat of trajectory KL to the reference
    kmer_weight: float = 7.0  # reward units per unit of 1 - r3 (3-mer spectrum correlation with the prior); 0 = off
    motif_weight: float = 7.0  # reward units per unit of 1 - rm (motif-hit profile correlation); 0 = off
    lr: float = 3e-4  # Adam learning rate of the policy
    grad_clip: float | None = 1.0  # max gradient norm; None = no clipping
    prior_samples: int = 512  # pretrained-model samples of the composition prior
    prior_seed: int = 4000  # their sampling seed

    def validate(self) -> None:
        """Raises ValueError naming the first bad field (``gradient.<name>``)."""
        for name in ("kl_penalty", "kmer_weight", "motif_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v >= 0):
                raise ValueError(f"gradient.{name} must be a finite number >= 0, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"gradient.lr must be finite and > 0, got {self.lr!r}")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"gradient.grad_clip must be > 0 or null (no clipping), got {self.grad_clip!r}")
        if isinstance(self.prior_samples, bool) or not isinstance(self.prior_samples, int) or self.prior_samples < 2:
            raise ValueError(f"gradient.prior_samples must be an integer >= 2, got {self.prior_samples!r}")
        if isinstance(self.prior_seed, bool) or not isinstance(self.prior_seed, int):
            raise ValueError(f"gradient.prior_seed must be an integer, got {self.prior_seed!r}")
