"""DRAKES-style evaluation of designed DNA sequences.

Every metric here is computed with the *evaluation* oracle (an independent model trained on the other half of the
data, ``data/README.md``), never with the oracle the policy was fine-tuned on, so a policy that merely exploits its
training oracle does not look good here.

Metrics (one row of :func:`summarize` per set of designs):

- **Pred-Activity**: reward of the evaluation oracle (HepG2 log-odds for the DHS oracle), median (the DRAKES
  headline number), mean and quartiles.
- **ATAC-Acc analogue**: fraction of designs the evaluation oracle assigns to HepG2 (argmax over cell types). On
  the DRAKES data this is a binary accessibility classifier; here the cell-type classifier plays that role.
- **3-mer correlation**: Pearson correlation of the 64 3-mer frequencies with those of a real reference set (the
  top 10% real HepG2 sequences).
- **JASPAR correlation**: Pearson correlation, over the JASPAR 2024 CORE vertebrate motifs, of the mean number of
  motif hits per sequence in the designs and in the same reference set. PSSMs and score thresholds come from
  ``Bio.motifs`` (pseudocounts of :func:`Bio.motifs.jaspar.calculate_pseudocounts`, threshold at a false-positive
  rate); the scan itself runs all motifs at once as one convolution (:class:`~simpo_bio.dna.data.motifs.MotifScanner`), cross-checked
  against ``Bio.motifs`` ``PSSM.search`` in the tests.
- **App-Log-Lik**: mean ELBO log-likelihood (nats per sequence, higher is more natural) under the frozen
  pretrained model: ``-MaskedDiffusion.elbo_loss(x)`` (``docs/method.md`` section 8), a lower bound of ``log p(x)``.
- **Diversity**: mean pairwise Hamming distance (positions) and fraction of unique sequences.
- **Novelty**: per design, the Hamming distance to the closest training sequence; reported as its mean, and the
  fraction of exact copies of a training sequence.

Big sets: :meth:`Evaluator.evaluate` works through the designs in chunks of :data:`EVAL_BATCH_SIZE` records (a
progress bar on stderr when there is more than one), so memory stays bounded whatever the number of designs: the
per-sequence columns are computed chunk by chunk, the 3-mer and JASPAR correlations from per-chunk sums of
counts, the medians and means from the per-sequence table. A set that fits in one chunk gets exactly the numbers
of the one-pass computation; a larger set the same within float rounding (the App-Log-Lik draws follow the same
seeded batches either way). Diversity above :data:`EXACT_DIVERSITY_MAX` designs is a fixed-seed estimate over
sampled pairs, and the table says so.

Imports: :mod:`simpo_bio.dna.data.composition`, :mod:`simpo_bio.dna.data.motifs` (the scanner, re-exported here)
and :mod:`simpo_bio.dna.oracles.oracle` (scoring).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from simpo_bio.dna.data.composition import (  # the k-mer and correlation helpers live low: loading imports no evaluation
    kmer_counts,
    kmer_frequencies,
    naturalness_per_sequence,
    naturalness_summary,
    pearson,
)
from simpo_bio.dna.data.motifs import MOTIF_BATCH_SIZE, MotifScanner, one_hot  # noqa: F401 (re-exported)
from simpo_bio.dna.oracles.oracle import CellTypeOracle, check_rewards, log_odds, oracle_predicts_target

#: Designs per chunk of :meth:`Evaluator.evaluate` (per-sequence outputs are small; the intermediates of one chunk
#: are what bounds memory). A multiple of the batch sizes below, so chunking changes no batch of a set that fits.
EVAL_BATCH_SIZE = 4096
#: Batch of the evaluation oracle (the shipped CNN reads both strands: its activations take about 40 MB at 32
#: designs, 260 MB at 512; the same rewards, bit for bit, and no slower; measured).
ORACLE_BATCH_SIZE = 32
#: Batch of the App-Log-Lik estimate (:func:`elbo_log_likelihood`).
ELBO_BATCH_SIZE = 256
#: Designs per call of the naturalness columns inside a chunk (DUST's one-hot is ``[B, L, 64]`` floats: 76 MB of
#: temporaries at 256 x 200 bp, 830 MB at 4,096, measured; and small batches are twice as fast per design).
NATURALNESS_BATCH_SIZE = 64


# ----------------------------------------------------------------------------------------------------- helpers
def kmer_counts_per_sequence(tokens: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Per-sequence k-mer counts ``[B, 4**k]`` (same order as :func:`kmer_names`;
    :func:`simpo_bio.dna.data.composition.kmer_counts`)."""
    return kmer_counts(torch.as_tensor(tokens).long(), k)


#: Above this many designs, :func:`pairwise_hamming_mean` averages a fixed-seed random sample of pairs instead of
#: all ``B (B - 1) / 2`` (which grows as ``B^2``: about 2 s at 10,000 designs, hours at 10^6).
EXACT_DIVERSITY_MAX = 5000
#: Pairs drawn above :data:`EXACT_DIVERSITY_MAX` (for random 200-bp designs, per-pair SD 6.1 positions: a standard
#: error of 0.014 positions).
DIVERSITY_PAIRS = 200_000


def pairwise_hamming_mean(tokens: torch.Tensor, chunk: int = 1024, *, max_exact: int = EXACT_DIVERSITY_MAX,
                          num_pairs: int = DIVERSITY_PAIRS, seed: int = 0) -> float:
    """Mean Hamming distance (positions) over the unordered pairs of ``tokens`` ``[B, L]``; 0 for B < 2.

    Exact over all pairs for ``B <= max_exact``; above, the mean over ``num_pairs`` pairs ``(i, j), i != j`` drawn
    uniformly with a fixed ``seed`` (an unbiased estimate, linear in ``num_pairs``; :func:`diversity_pairs` says
    which was used).
    """
    tokens = torch.as_tensor(tokens).long()
    b, length = tokens.shape
    if b < 2:
        return 0.0
    if b > max_exact:
        g = torch.Generator().manual_seed(seed)
        i = torch.randint(0, b, (num_pairs,), generator=g)
        j = (i + torch.randint(1, b, (num_pairs,), generator=g)) % b  # uniform over j != i
        small, total = tokens.to(torch.uint8), 0
        for s in range(0, num_pairs, 8192):  # the int64 sum of a [8192, L] mask: 13 MB at L = 200
            total += int((small[i[s:s + 8192]] != small[j[s:s + 8192]]).sum(dtype=torch.int64))
        return total / num_pairs
    oh = one_hot(tokens).flatten(1)  # [B, 4L]; <oh_i, oh_j> = number of equal positions
    total = 0.0
    for s in range(0, b, chunk):
        same = oh[s : s + chunk] @ oh.T  # [c, B]
        total += float((length - same).sum())
    return total / (b * (b - 1))  # the diagonal contributes 0


def diversity_pairs(num_designs: int, *, max_exact: int = EXACT_DIVERSITY_MAX, num_pairs: int = DIVERSITY_PAIRS
                    ) -> str:
    """How :func:`pairwise_hamming_mean` averages ``num_designs`` designs: ``"all"`` or ``"N sampled"`` pairs."""
    return "all" if num_designs <= max_exact else f"{num_pairs:,} sampled"


def min_hamming_to_set(tokens: torch.Tensor, reference: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """For each row of ``tokens`` ``[B, L]``, the Hamming distance to its nearest row in ``reference`` ``[R, L]``.

    Returns:
        LongTensor ``[B]``. Cost ``O(B * R * L)`` as chunked matrix products (a few seconds for 640 x 40k x 200).
    """
    tokens = torch.as_tensor(tokens).long()
    reference = torch.as_tensor(reference).long()
    if tokens.shape[1] != reference.shape[1]:
        raise ValueError(f"length mismatch: designs {tokens.shape[1]} vs reference {reference.shape[1]}")
    q = one_hot(tokens).flatten(1)
    best = torch.zeros(tokens.shape[0])
    for s in range(0, reference.shape[0], chunk):
        r = one_hot(reference[s : s + chunk]).flatten(1)
        best = torch.maximum(best, (q @ r.T).max(dim=1).values)
    return (tokens.shape[1] - best).round().long()


# ---------------------------------------------------------------------------------------------- likelihood
def _model_device(model) -> torch.device:
    return next(iter(model.parameters())).device if any(True for _ in model.parameters()) else torch.device("cpu")


@torch.no_grad()
def elbo_log_likelihood(model, tokens: torch.Tensor, batch_size: int = ELBO_BATCH_SIZE, seed: int = 0,
                        num_draws: int = 16, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sequence ELBO log-likelihood ``[B]`` (nats; higher = more likely) under a masked diffusion model.

    ``model`` is a :class:`simpo_bio.diffusion.masked.MaskedDiffusion`; the estimate is
    :meth:`~simpo_bio.diffusion.masked.MaskedDiffusion.log_likelihood` with ``num_draws`` stratified masked subsets
    per sequence (never exactly 0, no ``1/t`` blow-ups: median error 2 nats against a 128-draw estimate at 16
    draws, measured on the shipped model), seeded so the same designs always get the same number. Models without
    that method fall back to ``-elbo_loss`` averaged over ``num_draws`` draws.

    Args:
        generator: continue this RNG (on the model's device) instead of a fresh one seeded with ``seed``: the
            estimates of consecutive slices, each a multiple of ``batch_size`` long, then equal those of one call.

    Raises:
        ValueError: ``num_draws < 1`` and the token checks of the model.
    """
    if num_draws < 1:
        raise ValueError(f"num_draws must be >= 1, got {num_draws}")
    tokens = torch.as_tensor(tokens).long()
    dev = _model_device(model)
    was_training = model.training
    model.eval()
    gen = generator if generator is not None else torch.Generator(device=dev).manual_seed(seed)
    parts = []
    for s in range(0, tokens.shape[0], batch_size):
        x = tokens[s : s + batch_size].to(dev)
        if hasattr(model, "log_likelihood"):
            parts.append(model.log_likelihood(x, num_draws=num_draws, generator=gen).float().cpu())
        else:
            parts.append(torch.stack([-model.elbo_loss(x, generator=gen).float().cpu()
                                      for _ in range(num_draws)]).mean(0))
    model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0)


# ------------------------------------------------------------------------------------------------- evaluator
def _kmer_totals(tokens: torch.Tensor, k: int) -> torch.Tensor:
    """Counts of each k-mer code over a set ``[B, L]``: long ``[4**k]`` (:func:`kmer_frequencies` before its
    normalisation, so the sums of chunks give the frequencies of the whole set)."""
    if tokens.shape[1] < k:
        raise ValueError(f"sequences of length {tokens.shape[1]} have no {k}-mers")
    code = torch.zeros(tokens.shape[0], tokens.shape[1] - k + 1, dtype=torch.long)
    for j in range(k):
        code = code * 4 + tokens[:, j : tokens.shape[1] - k + 1 + j]
    return torch.bincount(code.reshape(-1), minlength=4**k)


def _add_padded(total: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    if part.numel() > total.numel():  # a token above 3 gave a longer bincount (as kmer_frequencies would)
        total = torch.nn.functional.pad(total, (0, part.numel() - total.numel()))
    total[: part.numel()] += part
    return total


def _malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _malloc_trim()


def _release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim``; a no-op elsewhere).

    Called between chunks: the tensors of a chunk come and go in sizes that glibc's adaptive mmap threshold serves
    from the heap, where anything small that outlives them pins the pages. The per-sequence columns are allocated
    once for the whole set for that reason (appending small per-batch arrays made the resident memory of 30,000
    designs grow by 1.1 GB, measured); this returns what is left free after each chunk (a few ms).
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _raw_rewards(oracle, tokens: torch.Tensor, batch_size: int = ORACLE_BATCH_SIZE) -> torch.Tensor:
    """The oracle's rewards ``[B]`` (float32, CPU), batched as :func:`~simpo_bio.dna.oracles.oracle.oracle_scores`
    but not yet checked (the check names the sequence's index in the whole set)."""
    parts = [torch.as_tensor(oracle(tokens[s : s + batch_size])).float().reshape(-1).cpu()
             for s in range(0, tokens.shape[0], batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0)


def _oracle_outputs(oracle, tokens: torch.Tensor, batch_size: int = ORACLE_BATCH_SIZE
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(rewards [B] unchecked, argmax-is-target [B] or None)``: :func:`_raw_rewards` and
    :func:`~simpo_bio.dna.oracles.oracle.oracle_predicts_target` (``None`` without ``.logits``).

    A :class:`~simpo_bio.dna.oracles.oracle.CellTypeOracle` (whose reward is the log-odds of its logits) runs its
    network once per batch for both, instead of twice: the same batches, so the same numbers, at half the cost.
    """
    if not (isinstance(oracle, CellTypeOracle) and type(oracle).reward is CellTypeOracle.reward):
        rewards = _raw_rewards(oracle, tokens, batch_size)
        if not torch.isfinite(rewards).all():
            return rewards, None  # the caller raises before the logits are needed
        return rewards, (oracle_predicts_target(oracle, tokens, batch_size) if hasattr(oracle, "logits") else None)
    rewards, hits = [], []
    for s in range(0, tokens.shape[0], batch_size):
        logits = oracle.logits(tokens[s : s + batch_size])
        rewards.append(log_odds(logits, oracle.target_index).float().reshape(-1).cpu())
        hits.append(logits.argmax(-1).cpu() == oracle.target_index)
    if not rewards:
        return torch.zeros(0), torch.zeros(0, dtype=torch.bool)
    return torch.cat(rewards), torch.cat(hits)


@dataclass
class _SetSums:
    """What the set-level metrics need, summed over the chunks of a set."""

    kmer: torch.Tensor | None = None  # long [4**k]
    motif: torch.Tensor | None = None  # float64 [M]: hits per motif, summed over the designs
    unique: set = field(default_factory=set)  # every distinct design, as bytes (_design_keys)


def _design_keys(tokens: torch.Tensor, lo: int, hi: int):
    """One ``bytes`` per design ``[B, L]``, equal exactly for equal designs: four bases a byte when every token of
    the set (``lo..hi``) is in ``0..3`` (50 bytes for 200 bp), else one byte or eight a token."""
    a = tokens.numpy()
    if a.size == 0:
        return (b"" for _ in range(a.shape[0]))
    if 0 <= lo and hi <= 3:
        a = np.pad(a.astype(np.uint8), ((0, 0), (0, -a.shape[1] % 4))).reshape(a.shape[0], -1, 4)
        a = (a[..., 0] << 6) | (a[..., 1] << 4) | (a[..., 2] << 2) | a[..., 3]
    elif 0 <= lo and hi <= 255:
        a = a.astype(np.uint8)
    return (bytes(row) for row in np.ascontiguousarray(a))


@dataclass
class Evaluator:
    """Evaluates sets of designs against fixed references (computed once, reused for every set).

    Args:
        eval_oracle: the *evaluation* oracle (``RewardOracle``; ``.logits`` for the ATAC-Acc analogue).
        reference_tokens: ``[R, L]`` real sequences for the 3-mer / JASPAR correlations (top 10% real HepG2).
        train_tokens: ``[T, L]`` training sequences for novelty, or ``None`` to skip novelty.
        reference_model: frozen pretrained ``MaskedDiffusion`` for App-Log-Lik, or ``None`` to skip it.
        motif_scanner: a :class:`MotifScanner`, or ``None`` to skip the JASPAR correlation.
        elbo_draws: masked subsets per sequence of the App-Log-Lik estimate (:func:`elbo_log_likelihood`).
        gc_window, max_homopolymer: the naturalness limits of the summary (share of designs with GC outside the
            window; share with a homopolymer longer than the limit, bp).
        batch_size: designs per chunk (:data:`EVAL_BATCH_SIZE`); memory grows with it, not with the set.
        progress: a tqdm bar (stderr, unit ``seq``) over the chunks; ``None``: when there is more than one chunk.
    """

    eval_oracle: object
    reference_tokens: torch.Tensor
    train_tokens: torch.Tensor | None = None
    reference_model: object | None = None
    motif_scanner: MotifScanner | None = None
    elbo_draws: int = 16
    kmer: int = 3
    gc_window: tuple[float, float] = (0.3, 0.7)
    max_homopolymer: int = 15
    batch_size: int = EVAL_BATCH_SIZE
    progress: bool | None = None
    _ref_kmer: torch.Tensor | None = field(default=None, repr=False)
    _ref_motif: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self):
        self.reference_tokens = torch.as_tensor(self.reference_tokens).long()
        if self.reference_tokens.ndim != 2 or self.reference_tokens.shape[0] == 0:
            raise ValueError("reference_tokens must be a non-empty [R, L] tensor")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        self._ref_kmer = kmer_frequencies(self.reference_tokens, self.kmer)
        if self.motif_scanner is not None:
            self._ref_motif = self.motif_scanner.count(self.reference_tokens).mean(0)

    # ------------------------------------------------------------------------------------------- one pass
    def _scan(self, tokens: torch.Tensor, *, per_sequence: bool, set_level: bool, batch_size: int | None = None,
              progress: bool | None = None) -> tuple[pd.DataFrame | None, _SetSums | None]:
        """One pass over ``tokens`` in chunks: the per-sequence table and / or the set-level sums."""
        n = tokens.shape[0]
        bs = int(self.batch_size if batch_size is None else batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1, got {bs}")
        show = (n > bs) if progress is None and self.progress is None else bool(
            self.progress if progress is None else progress)
        cols: dict[str, np.ndarray] = {}  # per-sequence columns, allocated once (n values) and filled in place

        def put(name: str, start: int, values) -> None:
            values = values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
            if name not in cols:
                cols[name] = np.empty(n, dtype=values.dtype)
            cols[name][start : start + len(values)] = values

        gen, elbo_done = None, 0
        if per_sequence and self.reference_model is not None:
            gen = torch.Generator(device=_model_device(self.reference_model)).manual_seed(0)
        sums = _SetSums() if set_level else None
        lo, hi = (int(tokens.min()), int(tokens.max())) if n else (0, 0)  # how designs become bytes (`unique`)
        with tqdm(total=n, desc="evaluate", unit="seq", leave=False, disable=not show, file=sys.stderr) as bar:
            for s in range(0, max(n, 1), bs):  # an empty set still makes one (empty) pass
                e = min(n, s + bs)
                x = tokens[s:e]
                if per_sequence:
                    r, hits = _oracle_outputs(self.eval_oracle, x)
                    if not torch.isfinite(r).all():  # the error names the index and count in the whole set
                        done = torch.from_numpy(cols["eval_reward"][:s]) if s else torch.zeros(0)
                        check_rewards(torch.cat([done, r, _raw_rewards(self.eval_oracle, tokens[e:])]),
                                      "the evaluation oracle")
                    put("eval_reward", s, check_rewards(r, "the evaluation oracle"))
                    if hits is not None:
                        put("eval_is_hepg2", s, hits)
                    if gen is not None:  # the same 256-design batches (and draws) as one pass over the set
                        upto = n if e >= n else min(n, -(-e // ELBO_BATCH_SIZE) * ELBO_BATCH_SIZE)
                        if upto > elbo_done or n == 0:
                            put("log_lik", elbo_done, elbo_log_likelihood(
                                self.reference_model, tokens[elbo_done:upto], batch_size=ELBO_BATCH_SIZE,
                                num_draws=self.elbo_draws, generator=gen))
                            elbo_done = upto
                    if self.train_tokens is not None:
                        put("min_train_hamming", s, min_hamming_to_set(x, self.train_tokens))
                    for t in range(0, max(x.shape[0], 1), NATURALNESS_BATCH_SIZE):
                        for name, values in naturalness_per_sequence(x[t : t + NATURALNESS_BATCH_SIZE]).items():
                            put(name, s + t, values)
                if set_level:
                    sums.kmer = _kmer_totals(x, self.kmer) if sums.kmer is None else _add_padded(
                        sums.kmer, _kmer_totals(x, self.kmer))
                    if self.motif_scanner is not None:
                        part = self.motif_scanner.count(x).sum(0, dtype=torch.float64)
                        sums.motif = part if sums.motif is None else sums.motif + part
                    sums.unique.update(_design_keys(x, lo, hi))
                _release_free_memory()
                bar.update(e - s)
        if not per_sequence:
            return None, sums
        df = pd.DataFrame(index=pd.RangeIndex(n))
        for name, values in cols.items():  # eval_reward, eval_is_hepg2, log_lik, min_train_hamming, naturalness
            df[name] = values
        return df, sums

    def per_sequence(self, tokens: torch.Tensor, progress: bool | None = None, *,
                     batch_size: int | None = None) -> pd.DataFrame:
        """Per-design table: ``eval_reward``, ``eval_is_hepg2``, ``log_lik``, ``min_train_hamming``, and the
        naturalness columns ``gc``, ``longest_homopolymer``, ``dust`` (:mod:`simpo_bio.dna.data.composition`).

        Computed in chunks of ``batch_size`` designs (default :attr:`batch_size`); ``progress`` as the attribute.
        """
        tokens = torch.as_tensor(tokens).long()
        return self._scan(tokens, per_sequence=True, set_level=False, batch_size=batch_size, progress=progress)[0]

    def summarize(self, tokens: torch.Tensor, per_seq: pd.DataFrame | None = None, *, batch_size: int | None = None,
                  progress: bool | None = None) -> dict[str, float]:
        """One row of metrics for a set of designs ``[B, L]`` (keys documented in the module docstring)."""
        tokens = torch.as_tensor(tokens).long()
        if tokens.ndim != 2 or tokens.shape[0] == 0:
            raise ValueError("need a non-empty [B, L] set of designs to evaluate")
        if per_seq is None:
            per_seq, sums = self._scan(tokens, per_sequence=True, set_level=True, batch_size=batch_size,
                                       progress=progress)
        else:
            _, sums = self._scan(tokens, per_sequence=False, set_level=True, batch_size=batch_size,
                                 progress=progress)
        return self._row(tokens, per_seq, sums)

    def _row(self, tokens: torch.Tensor, per_seq: pd.DataFrame, sums: _SetSums) -> dict[str, float]:
        n = int(tokens.shape[0])
        r = per_seq["eval_reward"].to_numpy()
        row = {
            "n": n,
            "pred_activity_median": float(np.median(r)),
            "pred_activity_mean": float(r.mean()),
            "pred_activity_q25": float(np.quantile(r, 0.25)),
            "pred_activity_q75": float(np.quantile(r, 0.75)),
        }
        if "eval_is_hepg2" in per_seq:
            row["atac_acc"] = float(per_seq["eval_is_hepg2"].mean())
        counts = sums.kmer.double()  # as kmer_frequencies, from the summed counts
        row["kmer3_corr"] = pearson(counts / counts.sum().clamp_min(1), self._ref_kmer)
        if self.motif_scanner is not None:  # the float32 mean of the hit counts, as count(tokens).mean(0)
            row["jaspar_corr"] = pearson((sums.motif / n).float(), self._ref_motif)
        if "log_lik" in per_seq:
            row["app_log_lik"] = float(per_seq["log_lik"].mean())
        row["diversity_hamming"] = pairwise_hamming_mean(tokens)
        if n > EXACT_DIVERSITY_MAX:  # the table says the mean is over sampled pairs
            row["diversity_pairs"] = diversity_pairs(n)
        row["frac_unique"] = len(sums.unique) / n
        if {"gc", "longest_homopolymer", "dust"} <= set(per_seq.columns):
            row.update(naturalness_summary(per_seq, gc_window=self.gc_window, max_homopolymer=self.max_homopolymer))
        if "min_train_hamming" in per_seq:
            row["novelty_hamming"] = float(per_seq["min_train_hamming"].mean())
            row["frac_train_copies"] = float((per_seq["min_train_hamming"] == 0).mean())
        return row

    def evaluate(self, tokens: torch.Tensor, *, batch_size: int | None = None,
                 progress: bool | None = None) -> tuple[dict[str, float], pd.DataFrame]:
        """``(summary row, per-sequence table)`` for a set of designs, in one chunked pass over them.

        Args:
            batch_size: designs per chunk (default :attr:`batch_size`, :data:`EVAL_BATCH_SIZE`).
            progress: show a progress bar (default :attr:`progress`: when there is more than one chunk).
        """
        tokens = torch.as_tensor(tokens).long()
        if tokens.ndim != 2 or tokens.shape[0] == 0:
            per_seq = self.per_sequence(tokens, progress, batch_size=batch_size)  # the errors of the one-pass code
            return self.summarize(tokens, per_seq), per_seq
        per_seq, sums = self._scan(tokens, per_sequence=True, set_level=True, batch_size=batch_size,
                                   progress=progress)
        return self._row(tokens, per_seq, sums), per_seq


#: Column order and display names of the metrics table (``simpo-bio evaluate``, the demo, the benchmark).
DISPLAY_COLUMNS = {
    "pred_activity_median": "Pred-Activity (median)",
    "pred_activity_mean": "Pred-Activity (mean)",
    "atac_acc": "ATAC-Acc analogue",
    "kmer3_corr": "3-mer corr",
    "jaspar_corr": "JASPAR corr",
    "app_log_lik": "App-Log-Lik",
    "diversity_hamming": "Diversity (Hamming)",
    "frac_unique": "Unique",
    "novelty_hamming": "Novelty (min Hamming)",
    "gc_median": "GC (median)",
    "frac_gc_outside": "GC outside 0.3-0.7",
    "homopolymer_median": "Longest homopolymer (median, bp)",
    "frac_homopolymer_over": "Homopolymer > 15 bp",
    "dust_median": "DUST (median)",
}
_THREE_DECIMALS = ("atac_acc", "kmer3_corr", "jaspar_corr", "frac_unique", "gc_median", "frac_gc_outside",
                   "frac_homopolymer_over")


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per named set of designs, the columns of :data:`DISPLAY_COLUMNS` present."""
    cols = [c for c in DISPLAY_COLUMNS if any(c in r for r in rows.values())]
    head = "| model | " + " | ".join(DISPLAY_COLUMNS[c] for c in cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    lines = [head, sep]
    for name, r in rows.items():
        cells = []
        for c in cols:
            v = r.get(c, float("nan"))
            cells.append(f"{v:.3f}" if c in _THREE_DECIMALS else f"{v:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    sampled = {name: r["diversity_pairs"] for name, r in rows.items() if "diversity_pairs" in r}
    if sampled:  # more designs than EXACT_DIVERSITY_MAX: the diversity column is a sampled estimate
        lines.append("")
        lines += [f"Diversity of {name}: mean over {pairs} pairs (fixed seed; exact up to {EXACT_DIVERSITY_MAX:,} "
                  "designs)." for name, pairs in sampled.items()]
    return "\n".join(lines)
