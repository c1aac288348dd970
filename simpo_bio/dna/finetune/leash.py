"""The leash to the pretrained reference and the natural range: what keeps fine-tuned designs usable DNA.

SiMPO's regulariser ``D_f(pi || pi_old)`` (paper Eq. 4) keeps one iteration near the policy it sampled from, but
the drift from the pretrained reference accumulates over iterations; an oracle trained on natural sequences then
rewards sequences no enhancer looks like (near-0% GC, homopolymers). This module holds the pieces
:class:`simpo_bio.dna.finetune.module.SiMPOFineTuning` uses against that (``docs/method.md``, "Leash to the reference"):

- :func:`elbo_log_ratio`: ``log pi(x) - log pi_ref(x)`` per sequence from the two models' ELBOs with shared noise
  (the ``elbo`` estimator of the KL-regularised reward). The default ``trajectory`` estimator needs no function
  here: :meth:`simpo_bio.diffusion.masked.MaskedDiffusion.sample` returns both models' log-probabilities of the
  sampled trajectory.
- :func:`kl_regularized_reward`: RLHF's KL-in-reward, ``r - beta * log_ratio`` (Ziegler et al. 2019; the
  optimum of ``E[r] - beta KL(pi || pi_ref)`` is ``pi_ref exp(r / beta) / Z``).
- :func:`anchor_kl`: the KL anchor in the loss, ``KL(p_theta(.|z_t) || p_ref(.|z_t))`` on noised samples.
- :func:`bounded_elbo`: the cap on negative-weight ELBO terms (bounded repulsion; the paper's Case II).
- :func:`build_constraints`: :class:`simpo_bio.dna.data.composition.NaturalnessConstraints` from a config mapping
  (the 3-mer limit from the embedded real sequences).

Imports: torch, :mod:`simpo_bio.dna.data.composition`, :mod:`simpo_bio.dna.finetune.config` and :mod:`simpo_bio.dna.data.dhs` (lazily, for the real sequences).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from simpo_bio.diffusion.masked import random_subset_mask
from simpo_bio.dna.data.composition import NaturalnessConstraints
from simpo_bio.dna.finetune.config import KL_ESTIMATORS

__all__ = ["KL_ESTIMATORS", "anchor_kl", "elbo_log_ratio", "kl_regularized_reward", "bounded_elbo", "build_constraints"]


@torch.no_grad()
def elbo_log_ratio(policy, reference, x: Tensor, *, generator: torch.Generator | None = None,
                   num_draws: int = 2) -> Tensor:
    """``log pi(x) - log pi_ref(x)`` per sequence from ELBO differences, ``[B]`` nats.

    Both models see the same diffusion times and masks (common random numbers), so most of the Monte-Carlo noise
    of each ELBO cancels in the difference; ``num_draws`` draws are averaged. A difference of two lower bounds is
    not a bound: use it as an estimate.

    Args:
        policy, reference: :class:`~simpo_bio.diffusion.masked.MaskedDiffusion` models.
        x: ``[B, L]`` long tokens.
        generator: RNG of the noise (its state advances by ``num_draws`` ELBO draws).
        num_draws: Monte-Carlo draws per sequence (>= 1).

    Raises:
        ValueError: ``num_draws < 1`` (and the token checks of ``elbo_loss``).
    """
    if num_draws < 1:
        raise ValueError(f"num_draws must be >= 1, got {num_draws}")
    out = torch.zeros(x.shape[0], device=x.device)
    for _ in range(num_draws):
        state = generator.get_state() if generator is not None else None
        log_p = -policy.elbo_loss(x, generator=generator)
        if generator is not None:
            generator.set_state(state)
        log_q = -reference.elbo_loss(x, generator=generator)
        out += (log_p - log_q) / num_draws
    return out


def kl_regularized_reward(reward: Tensor, log_ratio: Tensor, beta: float) -> Tensor:
    """KL-in-reward: ``r - beta * (log pi(x) - log pi_ref(x))``, ``[B]`` in reward units.

    ``beta`` is in reward units per nat; its mean over policy samples is ``E[r] - beta KL(pi || pi_ref)``.

    Raises:
        ValueError: ``beta < 0`` or not finite; shapes differ.
    """
    if not (beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"kl_penalty (beta) must be finite and >= 0, got {beta}")
    if reward.shape != log_ratio.shape:
        raise ValueError(f"reward {tuple(reward.shape)} and log_ratio {tuple(log_ratio.shape)} differ in shape")
    return reward - beta * log_ratio if beta > 0 else reward


def bounded_elbo(elbo: Tensor, weight: Tensor, repel_margin: float | None, seq_len: int) -> Tensor:
    """Cap the ELBO terms of negative-weight sequences: ``min(ELBO_i, repel_margin * L)`` where ``w_i < 0``.

    A negative weight makes ``w_i * ELBO_i`` fall without bound as the model pushes ``ELBO_i`` (a negative
    log-likelihood bound, nats) up (the paper's Case II). With the cap, the push on a bad sequence stops once its
    bound exceeds ``repel_margin`` nats per base; ``log 4 = 1.386`` is the level of a model that knows nothing.
    The weighted loss is then bounded below by ``repel_margin * L * sum(negative weights)``. Positive-weight terms
    are unchanged. The same rule as control's ``repel_margin`` (:func:`simpo_bio.diffusion.flow.flow_matching_loss`).

    Args:
        elbo: ``[B]`` per-sequence negative ELBO, nats.
        weight: ``[B]`` weights (any sign).
        repel_margin: nats per base, ``> 0``; ``None`` returns ``elbo`` unchanged.
        seq_len: ``L``.

    Raises:
        ValueError: ``repel_margin <= 0``; shapes differ.
    """
    if repel_margin is None:
        return elbo
    if not repel_margin > 0:
        raise ValueError(f"repel_margin must be > 0 nats per base (or null), got {repel_margin}")
    if elbo.shape != weight.shape:
        raise ValueError(f"elbo {tuple(elbo.shape)} and weight {tuple(weight.shape)} differ in shape")
    return torch.where(weight < 0, elbo.clamp(max=repel_margin * seq_len), elbo)


def build_constraints(spec: Mapping[str, Any] | NaturalnessConstraints | None, *,
                      reference: Tensor | None = None) -> NaturalnessConstraints | None:
    """Constraints from a config mapping (``null`` = none).

    Keys: those of :class:`~simpo_bio.dna.data.composition.NaturalnessConstraints` plus ``kmer_quantile``: the 3-mer
    limit is that quantile of the real sequences' chi-square distances, from ``reference`` (``[R, L]`` tokens) or,
    when not given, the training split of the embedded DHS data (:func:`simpo_bio.dna.data.dhs.load_dhs`).

    Raises:
        ValueError: unknown keys or invalid values (named).
    """
    if spec is None or isinstance(spec, NaturalnessConstraints):
        return spec
    spec = dict(spec)
    allowed = {"gc_window", "max_homopolymer", "max_dust", "kmer_quantile"}
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"constraints: unknown keys {sorted(unknown)}; allowed {sorted(allowed)}")
    quantile = spec.pop("kmer_quantile", None)
    if quantile is None:
        return NaturalnessConstraints(**spec)
    if reference is None:
        import numpy as np

        from simpo_bio.dna.data.dhs import load_dhs

        train = load_dhs()["train"].with_format("numpy", columns=["tokens"])[:]["tokens"]
        reference = torch.from_numpy(np.asarray(train, dtype=np.int64))
    return NaturalnessConstraints.from_reference(reference, kmer_quantile=float(quantile), **spec)


def anchor_kl(policy, reference, x: Tensor, *, generator: torch.Generator | None = None,
              by_count: bool = True) -> Tensor:
    """Per-sample KL anchor ``[B]``: ``w * sum_{masked l} KL(p_theta(.|z)_l || p_ref(.|z)_l)``, nats.

    The masked-diffusion analogue of a path KL between the policy and the reference (``docs/method.md``, "Leash to
    the reference"), in the form of the ELBO: with ``by_count`` (default) ``k ~ U{1..L}`` positions are masked
    (stratified over the batch) with weight ``w = L / k``, as in
    :meth:`~simpo_bio.diffusion.masked.MaskedDiffusion.elbo_loss_by_count`; otherwise ``t ~ U[eps, 1]``, each
    position masked with probability ``m(t)`` and ``w = 1 / t`` (up to ``1 / eps``: noisier). Differentiable
    through ``policy`` only.

    Args:
        policy, reference: :class:`~simpo_bio.diffusion.masked.MaskedDiffusion` models (same vocabulary).
        x: ``[B, L]`` long clean tokens.
        generator: RNG of the masks.
        by_count: the count form (``True``) or the time form.
    """
    sched = policy.schedule
    batch, length = x.shape
    if by_count:
        u = torch.rand(1, device=x.device, generator=generator)
        k = (((u + torch.arange(batch, device=x.device) / batch) % 1.0) * length).long().clamp_(0, length - 1) + 1
        move = random_subset_mask(k, length, generator=generator)
        t = k.float() / length
        weight = length / k.float()
    else:
        t = policy.eps + (1 - policy.eps) * torch.rand(batch, device=x.device, generator=generator)
        move = torch.rand(x.shape, device=x.device, generator=generator) < sched.move_chance(t)[:, None]
        weight = sched.elbo_weight(t)
    z = torch.where(move, torch.full_like(x, policy.mask_index), x)
    sigma = sched.sigma(t)
    logp = policy(z, sigma)
    with torch.no_grad():
        logq = reference(z, sigma)
    masked = (z == policy.mask_index).float()
    # -inf entries (the mask token; carried-over positions) have p = 0: zero them before the product so that
    # neither the value nor the gradient sees inf - inf
    finite = torch.isfinite(logp) & torch.isfinite(logq)
    logp_f = torch.where(finite, logp, torch.zeros_like(logp))
    logq_f = torch.where(finite, logq, torch.zeros_like(logq))
    kl = (logp_f.exp() * finite * (logp_f - logq_f)).sum(-1)  # [B, L]
    return (kl * masked).sum(-1) * weight
