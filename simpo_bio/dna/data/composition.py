"""Naturalness of designed sequences and the checks a synthesis order needs.

A fine-tuned generator can raise an oracle's score by leaving natural DNA (near-0% or near-100% GC, homopolymer
runs, repeats): these per-sequence measures make that visible next to Pred-Activity. The synthesis constraints of
an order live in :mod:`simpo_bio.dna.design.synthesis`.

- :func:`gc_fraction` ``[B]``: share of G or C.
- :func:`longest_homopolymer` ``[B]``: longest run of one base, bp.
- :func:`dust_score` ``[B]``: the DUST low-complexity score (Morgulis et al. 2006, J. Comput. Biol. 13:1028),
  the largest over sliding windows: ``sum_t c_t (c_t - 1) / 2 / (l - 1)`` over the ``l`` 3-mers of a window with
  counts ``c_t``. A random sequence scores about 0.5 in a 64-bp window; DUST masks windows above 2 (its
  threshold 20 is this score times 10); a homopolymer scores ``l / 2``.
- :func:`naturalness_summary`: the set-level columns of the metrics table (median GC, share outside a GC window,
  share with a homopolymer longer than a limit, median DUST score).
- :func:`kmer_chi2` ``[B]``: Pearson chi-square distance of a sequence's 3-mer counts from a background.
- :class:`NaturalnessConstraints` / :func:`feasibility_ranked`: the constraint option of fine-tuning
  (:class:`simpo_bio.dna.finetune.module.SiMPOFineTuning`, ``constraints``): a design outside the natural range ranks
  below every design inside it.
- :func:`windowed_gc` ``[B, L - w + 1]``: GC fraction of every ``w``-bp window (the vendor check of
  :mod:`simpo_bio.dna.design.synthesis`, which builds the synthesis constraints on DnaChisel).

Token ids are those of :mod:`simpo_bio.dna.data.alphabet` (``A=0, C=1, G=2, T=3``). Imports: torch, numpy and
:mod:`simpo_bio.dna.data.alphabet` only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from simpo_bio.dna.data.alphabet import ALPHABET

__all__ = [
    "gc_fraction",
    "longest_homopolymer",
    "dust_score",
    "naturalness_per_sequence",
    "naturalness_summary",
    "windowed_gc",
    "kmer_chi2",
    "NaturalnessConstraints",
    "feasibility_ranked",
]



def _tokens(tokens) -> torch.Tensor:
    t = torch.as_tensor(tokens)
    if t.ndim != 2:
        raise ValueError(f"expected a [B, L] token tensor, got shape {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise ValueError("sequences of length 0 have no composition")
    return t.long()


def gc_fraction(tokens: torch.Tensor) -> torch.Tensor:
    """Share of G or C per sequence: ``[B, L]`` tokens -> ``[B]`` float in ``[0, 1]``.

    Raises:
        ValueError: not a ``[B, L]`` tensor, or ``L == 0``.
    """
    t = _tokens(tokens)
    return ((t == 1) | (t == 2)).float().mean(1)


def longest_homopolymer(tokens: torch.Tensor) -> torch.Tensor:
    """Longest run of one repeated base per sequence: ``[B, L]`` -> ``[B]`` long, in bp (at least 1).

    Raises:
        ValueError: not a ``[B, L]`` tensor, or ``L == 0``.
    """
    t = _tokens(tokens)
    run = torch.ones(t.shape[0], dtype=torch.long)
    best = run.clone()
    for i in range(1, t.shape[1]):
        run = torch.where(t[:, i] == t[:, i - 1], run + 1, torch.ones_like(run))
        best = torch.maximum(best, run)
    return best


def dust_score(tokens: torch.Tensor, window: int = 64) -> torch.Tensor:
    """DUST low-complexity score per sequence, the maximum over sliding windows: ``[B, L]`` -> ``[B]`` float.

    For a window with ``l = window - 2`` 3-mers and count ``c_t`` of 3-mer ``t``:
    ``score = sum_t c_t (c_t - 1) / 2 / (l - 1)`` (Morgulis et al. 2006). Sequences shorter than ``window`` are
    scored as one window. Higher = lower complexity; DUST masks windows above 2.0.

    Raises:
        ValueError: not a ``[B, L]`` tensor, ``L < 4`` or ``window < 4``.
    """
    t = _tokens(tokens)
    if window < 4 or t.shape[1] < 4:
        raise ValueError(f"dust_score needs window >= 4 and sequences of >= 4 bp, got {window} and {t.shape[1]}")
    t = t.clamp(0, 3)
    codes = t[:, :-2] * 16 + t[:, 1:-1] * 4 + t[:, 2:]  # [B, L-2]
    n = codes.shape[1]
    width = min(window - 2, n)
    onehot = torch.nn.functional.one_hot(codes, 64).to(torch.float32)
    csum = torch.cat([torch.zeros(t.shape[0], 1, 64), onehot.cumsum(1)], dim=1)  # [B, n + 1, 64]
    counts = csum[:, width:] - csum[:, : n - width + 1]  # [B, W, 64]
    score = (counts * (counts - 1) / 2).sum(-1) / (width - 1)
    return score.max(1).values


def naturalness_per_sequence(tokens: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-design columns: ``gc`` (fraction), ``longest_homopolymer`` (bp), ``dust`` (score), each ``[B]``."""
    return {
        "gc": gc_fraction(tokens).numpy(),
        "longest_homopolymer": longest_homopolymer(tokens).numpy(),
        "dust": dust_score(tokens).numpy(),
    }


def naturalness_summary(per_sequence: dict[str, np.ndarray] | object, *, gc_window: tuple[float, float] = (0.3, 0.7),
                        max_homopolymer: int = 15) -> dict[str, float]:
    """Set-level naturalness columns from :func:`naturalness_per_sequence` (or a table with those columns).

    Returns:
        ``gc_median``; ``frac_gc_outside`` (share with GC outside ``gc_window``, inclusive bounds are inside);
        ``homopolymer_median`` (bp); ``frac_homopolymer_over`` (share with a run longer than
        ``max_homopolymer`` bp); ``dust_median``.
    """
    gc = np.asarray(per_sequence["gc"], dtype=float)
    hp = np.asarray(per_sequence["longest_homopolymer"], dtype=float)
    dust = np.asarray(per_sequence["dust"], dtype=float)
    if gc.size == 0:
        raise ValueError("need at least one design to summarise")
    lo, hi = gc_window
    return {
        "gc_median": float(np.median(gc)),
        "frac_gc_outside": float(((gc < lo) | (gc > hi)).mean()),
        "homopolymer_median": float(np.median(hp)),
        "frac_homopolymer_over": float((hp > max_homopolymer).mean()),
        "dust_median": float(np.median(dust)),
    }


def windowed_gc(tokens: torch.Tensor, window: int = 50) -> torch.Tensor:
    """GC fraction of every ``window``-bp window, ``[B, L - window + 1]`` (the vendor check of
    :class:`simpo_bio.dna.design.synthesis.SynthesisConstraints`, as a tensor op).

    Raises:
        ValueError: ``window < 1`` or longer than the sequences.
    """
    x = _tokens(tokens)
    if not 1 <= int(window) <= x.shape[1]:
        raise ValueError(f"window must be 1..{x.shape[1]} bp (the sequence length), got {window}")
    gc = ((x == 1) | (x == 2)).float()
    return gc.unfold(1, int(window), 1).mean(-1)


def kmer_counts(tokens: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Per-sequence k-mer counts: ``[B, L]`` tokens -> ``[B, 4**k]`` float32 (lexicographic ``ACGT`` order).

    Raises:
        ValueError: ``L < k``.
    """
    t = _tokens(tokens).clamp(0, 3)
    if t.shape[1] < k:
        raise ValueError(f"sequences of length {t.shape[1]} have no {k}-mers")
    codes = torch.zeros_like(t[:, : t.shape[1] - k + 1])
    for j in range(k):
        codes = codes * 4 + t[:, j : t.shape[1] - k + 1 + j]
    return torch.nn.functional.one_hot(codes, 4**k).to(torch.float32).sum(1)


def kmer_frequencies(tokens: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Normalised k-mer frequencies of a set of sequences.

    Args:
        tokens: ``[B, L]`` ids in ``0..3``.
        k: k-mer length.

    Returns:
        float64 ``[4**k]`` summing to 1, k-mers in lexicographic order of ``ACGT`` (see :func:`kmer_names`).
    """
    tokens = torch.as_tensor(tokens).long()
    if tokens.shape[1] < k:
        raise ValueError(f"sequences of length {tokens.shape[1]} have no {k}-mers")
    code = torch.zeros(tokens.shape[0], tokens.shape[1] - k + 1, dtype=torch.long)
    for j in range(k):
        code = code * 4 + tokens[:, j : tokens.shape[1] - k + 1 + j]
    counts = torch.bincount(code.reshape(-1), minlength=4**k).double()
    return counts / counts.sum().clamp_min(1)


def kmer_names(k: int = 3) -> list[str]:
    """All k-mers over ``ACGT`` in the order used by :func:`kmer_frequencies`."""
    return ["".join(p) for p in itertools.product(ALPHABET, repeat=k)]


def pearson(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Pearson correlation of two vectors; ``nan`` when either is constant."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def soft_kmer_frequencies(probs: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Frequencies ``[4**k]`` of the k-mers of base probabilities ``probs [B, L, 4]`` (order ACGT), differentiable.

    Each window adds the product of its bases' probabilities, so on exact one-hots this is :func:`kmer_frequencies`
    of the tokens (same order: first base most significant).

    Raises:
        ValueError: ``probs`` is not ``[B, L, 4]`` with ``L >= k``.
    """
    if probs.dim() != 3 or probs.shape[-1] != 4 or probs.shape[1] < k:
        raise ValueError(f"soft_kmer_frequencies: probs must be [B, L >= {k}, 4], got {tuple(probs.shape)}")
    length = probs.shape[1]
    out = probs[:, : length - k + 1]
    for j in range(1, k):
        out = (out[..., :, None] * probs[:, j : length - k + 1 + j, None, :]).flatten(-2)
    total = out.sum((0, 1))
    return total / total.sum()


def pearson_differentiable(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation (0-d tensor, differentiable) of two vectors ``[D]``; :func:`pearson` without leaving
    torch. A constant vector gives 0."""
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12)


def kmer_correlation(tokens: torch.Tensor, reference: torch.Tensor, k: int = 3) -> float:
    """Pearson correlation of k-mer frequencies of ``tokens`` ``[B, L]`` and ``reference`` ``[R, L']``."""
    return pearson(kmer_frequencies(tokens, k), kmer_frequencies(reference, k))


def kmer_chi2(tokens: torch.Tensor, background: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Pearson chi-square distance of every sequence's k-mer counts from a background: ``[B, L]`` -> ``[B]``.

    ``sum_t (c_t - n q_t)^2 / (n q_t)`` with ``c_t`` the count of k-mer ``t`` (lexicographic ``ACGT`` order, as
    :func:`simpo_bio.dna.evaluation.metrics.kmer_frequencies`), ``n = L - k + 1`` and ``q`` the background frequencies
    (``[4**k]``, summing to 1, all > 0). Low-complexity and composition-shifted sequences score high.

    Raises:
        ValueError: ``background`` of the wrong size or with a non-positive entry; ``L < k``.
    """
    q = torch.as_tensor(background, dtype=torch.float32).reshape(-1)
    if q.numel() != 4**k or bool((q <= 0).any()):
        raise ValueError(f"background must hold {4**k} positive frequencies, got {q.numel()} values")
    counts = kmer_counts(tokens, k)
    q = q.to(counts.device)
    expected = q[None] / q.sum() * counts.sum(1, keepdim=True)
    return ((counts - expected) ** 2 / expected).sum(1)


@dataclass
class NaturalnessConstraints:
    """The natural range a design must stay in during fine-tuning (``None`` disables a check).

    Args:
        gc_window: allowed GC fraction ``(low, high)``; real DHS sequences: 5th-95th percentile 0.365-0.60.
        max_homopolymer: longest allowed run of one base, bp (real DHS: 99th percentile 15 bp).
        max_dust: largest allowed :func:`dust_score` (DUST masks windows above 2.0).
        kmer_background: ``[64]`` 3-mer frequencies of real sequences (needed with ``max_kmer_chi2``).
        max_kmer_chi2: largest allowed :func:`kmer_chi2` from ``kmer_background`` (e.g. its 95th percentile over
            real sequences: :meth:`from_reference`).

    Raises:
        ValueError: a GC window outside ``[0, 1]`` or reversed, a non-positive limit, ``max_kmer_chi2`` without a
            background.
    """

    gc_window: tuple[float, float] | None = (0.4, 0.6)
    max_homopolymer: int | None = 10
    max_dust: float | None = 2.0
    kmer_background: list[float] | None = None
    max_kmer_chi2: float | None = None

    def __post_init__(self) -> None:
        if self.gc_window is not None:
            lo, hi = (float(v) for v in self.gc_window)
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"gc_window must satisfy 0 <= low <= high <= 1, got {self.gc_window}")
            self.gc_window = (lo, hi)
        for name in ("max_homopolymer", "max_dust", "max_kmer_chi2"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be > 0 (or null), got {v}")
        if self.max_kmer_chi2 is not None and self.kmer_background is None:
            raise ValueError("max_kmer_chi2 needs kmer_background (see NaturalnessConstraints.from_reference)")

    @classmethod
    def from_reference(cls, reference: torch.Tensor, *, kmer_quantile: float = 0.95, **kwargs
                       ) -> NaturalnessConstraints:
        """Constraints whose 3-mer limit is the ``kmer_quantile`` of real ``reference`` sequences ``[R, L]``."""
        if not 0.0 < kmer_quantile <= 1.0:
            raise ValueError(f"kmer_quantile must be in (0, 1], got {kmer_quantile}")
        ref = _tokens(reference)
        codes = ref[:, :-2] * 16 + ref[:, 1:-1] * 4 + ref[:, 2:]
        bg = torch.bincount(codes.reshape(-1), minlength=64).double() + 1.0
        bg = (bg / bg.sum()).float()
        limit = float(torch.quantile(kmer_chi2(ref, bg), kmer_quantile))
        return cls(kmer_background=bg.tolist(), max_kmer_chi2=limit, **kwargs)

    def violation(self, tokens: torch.Tensor) -> torch.Tensor:
        """Non-negative violation per design ``[B]`` (0 = inside every limit), in summed relative units.

        GC: distance outside the window / 0.05; homopolymer: excess bp / 5; DUST: excess score; 3-mer: excess
        chi-square / limit.
        """
        t = _tokens(tokens)
        dev = t.device
        t = t.cpu()
        v = torch.zeros(t.shape[0])
        if self.gc_window is not None:
            gc = gc_fraction(t)
            lo, hi = self.gc_window
            v += ((lo - gc).clamp(min=0) + (gc - hi).clamp(min=0)) / 0.05
        if self.max_homopolymer is not None:
            v += (longest_homopolymer(t) - int(self.max_homopolymer)).clamp(min=0).float() / 5.0
        if self.max_dust is not None:
            v += (dust_score(t) - float(self.max_dust)).clamp(min=0)
        if self.max_kmer_chi2 is not None:
            limit = float(self.max_kmer_chi2)
            v += (kmer_chi2(t, torch.as_tensor(self.kmer_background)) - limit).clamp(min=0) / limit
        return v.to(dev)


def feasibility_ranked(reward: torch.Tensor, violation: torch.Tensor) -> torch.Tensor:
    """Rewards re-ranked so that every infeasible design is worse than every feasible one of its group.

    A constrained-optimisation rule (feasible first, then smaller violation; Deb 2000, Comput. Methods Appl.
    Mech. Eng. 186:311): in each group (last dim) feasible designs keep their reward; an infeasible one gets
    ``min(feasible rewards) - 1 - violation`` (or ``min(group rewards) - 1 - violation`` when no design of the
    group is feasible). Group-relative advantages then rank them last.

    Args:
        reward: ``[..., G]`` rewards.
        violation: ``[..., G]`` non-negative violations (0 = feasible).

    Returns:
        ``[..., G]`` re-ranked rewards (unchanged where every design is feasible).

    Raises:
        ValueError: mismatched shapes or a negative / non-finite violation.
    """
    if reward.shape != violation.shape:
        raise ValueError(f"reward {tuple(reward.shape)} and violation {tuple(violation.shape)} differ in shape")
    if not bool(torch.isfinite(violation).all()) or bool((violation < 0).any()):
        raise ValueError("violation must be finite and >= 0")
    feasible = violation == 0
    if bool(feasible.all()):
        return reward
    inf = torch.full_like(reward, float("inf"))
    best_floor = torch.where(feasible, reward, inf).min(-1, keepdim=True).values
    floor = torch.where(torch.isfinite(best_floor), best_floor, reward.min(-1, keepdim=True).values)
    return torch.where(feasible, reward, floor - 1.0 - violation.to(reward.dtype))
