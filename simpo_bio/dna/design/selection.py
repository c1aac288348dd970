"""Composition-matched selection: the final designs of a run, chosen from a larger sample of the fine-tuned model.

A fine-tuned policy reaches high activity partly by having every design over-use the same few motif families: each
design stays inside the natural per-sequence range (GC, homopolymers, DUST), but the *set* drifts (its 3-mer and
motif spectra; ``bench/results/dna-selection.md``, "Natural designs"). Screening a larger sample with the fine-tuning oracle and
keeping the top ``k`` makes that worse. :func:`select_by_composition` instead picks ``k`` of ``M`` candidates
greedily, maximising

    ``sum_{i in S} r_i  -  sum_j lambda_j * N_j(S) * KL(f_j(S) || q_j)``

with ``r`` the fine-tuning-oracle rewards, and for each spectrum ``j`` (3-mer counts, JASPAR motif hit counts):
``f_j(S)`` the selected set's normalised counts (``pseudocount`` added), ``N_j(S)`` their total and ``q_j`` a
reference spectrum (samples of the *pretrained* model: :func:`reference_spectra`). ``N * KL`` is the log-likelihood
ratio of the set's counts under their own frequencies and under ``q``, so ``lambda`` is in reward units per nat.
At every step the candidate with the largest exact gain is added. ``lambda = 0`` is plain top-``k`` screening.

With a naturalness ``target`` (:func:`composition_matched`), the weight is not fixed: a ladder of weights is tried
in order and the first whose kept set's 3-mer spectrum correlates at least ``target`` with the reference is used.
A run whose policy stayed near the pretrained model then keeps its most active designs; one that drifted gets the
stronger pull it needs (``bench/results/dna-selection.md``, "Natural designs, fourth pass").

It uses the fine-tuning oracle (``M`` calls, counted by the caller) and the pretrained model only: never the
evaluation oracle or the real reference sets of the metrics. Each selected design is a sample of the policy;
selection changes which ones are kept, not the designs (per-design checks: :mod:`simpo_bio.dna.data.composition`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor

from simpo_bio.dna.data.composition import kmer_counts

__all__ = ["LADDER", "Selection", "SpectrumTerm", "SelectionConfig", "composition_matched", "count_kl",
           "reference_spectra", "select_by_composition", "spectrum_counts"]

#: Multiples of the starting weight tried in order by a selection with a naturalness target.
LADDER = (1.0, 2.0, 4.0, 8.0)


class Selection(NamedTuple):
    """What :func:`composition_matched` kept: ``index`` ``[k]`` (long, in the order chosen), the ``weight`` used
    (reward per nat) and ``kmer3_corr``, the Pearson correlation of the kept set's 3-mer spectrum with the
    reference spectrum (``nan`` when no reference was sampled, i.e. weight 0)."""

    index: Tensor
    weight: float
    kmer3_corr: float

    def shortfall(self, target: float | None) -> str:
        """A warning line when ``target`` was set and not reached, else ``""``. A pool that no weight brings to
        the target comes from a policy that drifted too far (``bench/results/dna-selection.md``, fourth pass, held-out seeds)."""
        if target is None or not self.kmer3_corr < target:
            return ""
        return (f"\n[simpo-bio] warning: the kept set's 3-mer correlation with the pretrained model's "
                f"({self.kmer3_corr:.3f}) is below the target {target:g}: the policy drifted too far for selection to "
                "restore the 3-mer mix; pool another run's samples (simpo-bio demo --runs 3, simpo-bio sample --ckpt "
                "A B C) or fine-tune with a stronger leash")

SpectrumTerm = tuple[Tensor, Tensor, float]
"""``(counts [M, D], reference [D], weight)``: candidates' counts, a positive reference spectrum, reward per nat."""


def count_kl(counts: Tensor, q: Tensor) -> Tensor:
    """``N * KL(counts / N || q)`` along the last dimension, nats (``counts > 0``, ``q`` normalised; ``N`` the
    total count): the log-likelihood ratio of the counts under their own frequencies and under ``q``."""
    n = counts.sum(-1, keepdim=True)
    return (counts * torch.log(counts / n / q)).sum(-1)


def select_by_composition(reward: Tensor, k: int, terms: Sequence[SpectrumTerm] = (), *,
                          feasible: Tensor | None = None, pseudocount: float = 1.0) -> Tensor:
    """Greedy composition-matched selection of ``k`` candidates: indices ``[k]`` (long), in the order chosen.

    Args:
        reward: ``[M]`` fine-tuning-oracle rewards of the candidates.
        k: designs to keep, ``1 <= k <= M``.
        terms: ``(counts [M, D], reference [D], weight)`` per spectrum: non-negative per-candidate counts (e.g.
            :func:`simpo_bio.dna.data.composition.kmer_counts`, :meth:`simpo_bio.dna.evaluation.metrics.MotifScanner.count`),
            a reference spectrum with positive entries (normalised here) and ``weight >= 0`` in reward units per nat.
            Empty = top-``k`` by reward.
        feasible: ``[M]`` bool; infeasible candidates are taken only once every feasible one is (the constraint
            rule of fine-tuning: outside the natural range ranks last).
        pseudocount: added to every entry of the selected set's counts, ``> 0``.

    Raises:
        ValueError: ``k`` out of range, a non-finite reward, shapes that do not match, a negative count or weight,
            a non-positive reference entry, ``pseudocount <= 0`` (each named).
    """
    reward = torch.as_tensor(reward, dtype=torch.float64).reshape(-1)
    m = reward.numel()
    if not 1 <= int(k) <= m:
        raise ValueError(f"k must be in 1..{m} (the number of candidates), got {k}")
    if not bool(torch.isfinite(reward).all()):
        bad = torch.nonzero(~torch.isfinite(reward)).flatten()[:5].tolist()
        raise ValueError(f"reward holds non-finite values (candidates {bad})")
    if not pseudocount > 0:
        raise ValueError(f"pseudocount must be > 0, got {pseudocount}")
    active = []
    for j, (counts, ref, weight) in enumerate(terms):
        counts = torch.as_tensor(counts, dtype=torch.float64)
        ref = torch.as_tensor(ref, dtype=torch.float64).reshape(-1)
        if counts.ndim != 2 or counts.shape[0] != m or counts.shape[1] != ref.numel():
            raise ValueError(f"term {j}: counts {tuple(counts.shape)} must be [{m}, {ref.numel()}] "
                             "(one row per candidate, one column per reference entry)")
        if bool((counts < 0).any()):
            raise ValueError(f"term {j}: counts must be >= 0")
        if bool((ref <= 0).any()) or not bool(torch.isfinite(ref).all()):
            raise ValueError(f"term {j}: the reference spectrum must be finite and > 0 everywhere")
        if not (weight >= 0 and float(weight) < float("inf")):
            raise ValueError(f"term {j}: weight must be finite and >= 0, got {weight}")
        if weight > 0:
            active.append((counts, ref / ref.sum(), float(weight), torch.full_like(ref, pseudocount)))
    if feasible is None:
        feasible = torch.ones(m, dtype=torch.bool)
    feasible = torch.as_tensor(feasible, dtype=torch.bool).reshape(-1)
    if feasible.numel() != m:
        raise ValueError(f"feasible has {feasible.numel()} entries for {m} candidates")

    # infeasible candidates rank below every feasible one: they are considered once no feasible one is left
    taken = torch.zeros(m, dtype=torch.bool)
    chosen = []
    for _ in range(int(k)):
        available = ~taken & feasible
        if not bool(available.any()):
            available = ~taken
        gain = reward.clone()
        for counts, ref, w, sel in active:
            gain -= w * (count_kl(sel[None] + counts, ref) - count_kl(sel, ref))
        gain[~available] = -float("inf")
        i = int(gain.argmax())
        chosen.append(i)
        taken[i] = True
        for c, _r, _w, sel in active:
            sel += c[i]
    return torch.tensor(chosen, dtype=torch.long)


def spectrum_counts(tokens: Tensor, motif_scanner=None) -> dict[str, Tensor]:
    """Per-sequence counts the selection matches: ``{"kmer3": [B, 64], "motif": [B, M]}`` (``motif`` only with a
    :class:`~simpo_bio.dna.evaluation.metrics.MotifScanner`)."""
    out = {"kmer3": kmer_counts(tokens, 3)}
    if motif_scanner is not None:
        out["motif"] = motif_scanner.count(tokens)
    return out


def reference_spectra(model, seq_len: int, *, motif_scanner=None, num_samples: int = 512, num_steps: int = 16,
                      seed: int = 7919, pseudocount: float = 1.0, device=None) -> dict[str, Tensor]:
    """Reference spectra from ``num_samples`` samples of the (pretrained) ``model``: ``{"kmer3": [64], "motif":
    [M]}``, each the summed counts plus ``pseudocount``, normalised to 1. Sampling is seeded: the same model and
    arguments give the same spectra.

    Raises:
        ValueError: ``num_samples < 1``.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    x = model.sample(num_samples, seq_len, num_steps=num_steps, seed=seed, batch_size=128, device=device)
    out = {}
    for name, c in spectrum_counts(x.cpu(), motif_scanner).items():
        s = c.sum(0).double() + pseudocount
        out[name] = s / s.sum()
    return out


@dataclass
class SelectionConfig:
    """Composition-matched selection of a run's final designs (:func:`composition_matched`; ``docs/method.md``).

    ``candidates = 0`` is off (the designs are plain samples). Otherwise ``candidates`` samples are drawn (as many
    fine-tuning-oracle calls) and the requested number kept.
    """

    candidates: int = 0  # samples to choose from (>= the designs kept), fine-tuning-oracle calls; 0 = off
    weight: float = 0.0  # reward per nat of the kept set's 3-mer spectrum KL to the pretrained model's; 0 = top-k
    target: float | None = None  # a 3-mer correlation the kept set must reach: the weight doubles (x1..8) until it does
    motif_ratio: float = 0.3  # the JASPAR motif term's weight as a multiple of the 3-mer term's

    def validate(self, num_samples: int) -> None:
        """Check the settings for keeping ``num_samples`` designs.

        Raises:
            ValueError: one line naming the field: ``0 < candidates < num_samples``; ``weight < 0``; ``target``
                outside ``(0, 1]`` or with ``weight == 0``; ``motif_ratio`` negative or not finite.
        """
        if not (self.motif_ratio >= 0 and math.isfinite(self.motif_ratio)):
            raise ValueError(f"selection.motif_ratio must be finite and >= 0, got {self.motif_ratio}")
        if self.candidates and self.candidates < num_samples:
            raise ValueError(f"selection.candidates ({self.candidates}) must be 0 (off) or >= the designs kept "
                             f"({num_samples})")
        if not self.weight >= 0:
            raise ValueError(f"selection.weight must be >= 0 (reward per nat), got {self.weight}")
        if self.target is not None and not (0 < self.target <= 1 and self.weight > 0):
            raise ValueError(f"selection.target must be a correlation in (0, 1] with selection.weight > 0, got "
                             f"{self.target} (weight {self.weight})")

    def scaled(self, num_samples: int, default_samples: int) -> SelectionConfig:
        """The same selection for ``num_samples`` designs instead of ``default_samples``: as many candidates per kept
        design (``simpo-bio demo --num-samples``)."""
        if not self.candidates:
            return self
        ratio = self.candidates / default_samples
        return replace(self, candidates=max(num_samples, round(num_samples * ratio)))


def composition_matched(candidates: Tensor, reward: Tensor, k: int, reference_model, *, weight: float,
                        target: float | None = None, motif_ratio: float = 0.3, motif_scanner=None,
                        feasible: Tensor | None = None, num_steps: int = 16, reference_samples: int = 512,
                        seed: int = 7919) -> Selection:
    """The ``k`` designs to keep from ``candidates`` ``[M, L]`` (rewards ``[M]``): composition-matched selection
    on the 3-mer spectrum and, with a ``motif_scanner``, the JASPAR motif spectrum, both against
    ``reference_samples`` samples of ``reference_model`` (the pretrained model; sampled with ``num_steps`` steps
    and ``seed``).

    Args:
        weight: reward per nat on the 3-mer spectrum; ``0`` is top-``k`` by reward (nothing is sampled).
        motif_ratio: the motif spectrum's weight as a multiple of ``weight``. Its 879 JASPAR motifs (about 46
            hits per 200-bp sequence) outweigh the 64 3-mers at equal weight (``bench/results/dna-selection.md``, fourth pass).
        target: ``None`` (one selection at ``weight``), or a Pearson correlation in ``(0, 1]``: the weights
            ``weight * LADDER`` are tried in order and the first whose kept set's 3-mer spectrum correlates at
            least ``target`` with the reference is used; if none does, the one that came closest.

    Raises:
        ValueError: as :func:`select_by_composition`; ``weight < 0``; ``target`` outside ``(0, 1]`` or with
            ``weight == 0``.
    """
    from simpo_bio.dna.evaluation.metrics import pearson

    if not weight >= 0:
        raise ValueError(f"the selection weight must be >= 0 (reward per nat), got {weight}")
    if not (motif_ratio >= 0 and math.isfinite(motif_ratio)):
        raise ValueError(f"the motif ratio must be finite and >= 0, got {motif_ratio}")
    if target is not None and not (0 < target <= 1 and weight > 0):
        raise ValueError(f"the selection target must be a correlation in (0, 1] with a weight > 0, got target "
                         f"{target}, weight {weight}")
    if weight == 0:
        return Selection(select_by_composition(reward, k, feasible=feasible), 0.0, float("nan"))
    ref = reference_spectra(reference_model, candidates.shape[1], motif_scanner=motif_scanner,
                            num_samples=reference_samples, num_steps=num_steps, seed=seed)
    counts = spectrum_counts(candidates, motif_scanner)
    best = None
    for w in [weight * m for m in (LADDER if target is not None else (1.0,))]:
        terms = [(counts[name], ref[name], w * (motif_ratio if name == "motif" else 1.0)) for name in counts]
        idx = select_by_composition(reward, k, terms, feasible=feasible)
        kept = counts["kmer3"][idx].sum(0).double()
        found = Selection(idx, w, pearson(kept / kept.sum(), ref["kmer3"]))
        if best is None or found.kmer3_corr > best.kmer3_corr:
            best = found
        if target is None or found.kmer3_corr >= target:
            return found
    return best
