"""Tests of the DRAKES-style metrics (simpo_bio.dna.evaluation.metrics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simpo_bio.dna.data import composition as C
from simpo_bio.dna.data.alphabet import decode
from simpo_bio.dna.evaluation import metrics as M
from simpo_bio.dna.oracles.oracle import NonFiniteRewardError


def _rand_tokens(n, length=60, seed=0):
    return torch.randint(0, 4, (n, length), generator=torch.Generator().manual_seed(seed))


def test_kmer_frequencies_match_counting_by_hand():
    toks = _rand_tokens(5, 30)
    freq = M.kmer_frequencies(toks, k=3)
    names = C.kmer_names(3)
    counts = dict.fromkeys(names, 0)
    for s in decode(toks):
        for i in range(len(s) - 2):
            counts[s[i : i + 3]] += 1
    expected = np.array([counts[n] for n in names], dtype=float)
    np.testing.assert_allclose(freq.numpy(), expected / expected.sum())
    per_seq = M.kmer_counts_per_sequence(toks, 3)
    np.testing.assert_allclose(per_seq.sum(0).numpy(), expected)


def test_kmer_correlation_is_one_for_same_set_and_lower_for_biased_set():
    ref = _rand_tokens(200, 100, seed=1)
    assert C.kmer_correlation(ref, ref) == pytest.approx(1.0)
    biased = torch.where(torch.rand(200, 100, generator=torch.Generator().manual_seed(2)) < 0.6, 0, ref)
    assert C.kmer_correlation(biased, ref) < 0.9


def test_hamming_diversity_and_novelty_brute_force():
    toks = _rand_tokens(7, 20, seed=3)
    toks[3] = toks[1]
    brute = np.mean([(toks[i] != toks[j]).sum().item() for i in range(7) for j in range(7) if i != j])
    assert M.pairwise_hamming_mean(toks, chunk=3) == pytest.approx(brute)
    train = _rand_tokens(50, 20, seed=4)
    train[10] = toks[2]
    d = M.min_hamming_to_set(toks, train, chunk=7)
    brute_min = [min((t != r).sum().item() for r in train) for t in toks]
    assert d.tolist() == brute_min
    assert d[2] == 0
    with pytest.raises(ValueError, match="length mismatch"):
        M.min_hamming_to_set(toks, train[:, :10])


def test_one_hot_rejects_mask_token():
    with pytest.raises(ValueError, match="no mask token"):
        M.one_hot(torch.tensor([[0, 1, 4]]))


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    return M.MotifScanner.jaspar(max_motifs=12, cache_dir=tmp_path_factory.mktemp("motifs"))


def test_motif_scan_matches_biopython_search(scanner):
    from Bio.Seq import Seq
    from pyjaspar import jaspardb

    motifs = jaspardb(release="JASPAR2024").fetch_motifs(collection="CORE", tax_group=["vertebrates"])[:12]
    toks = _rand_tokens(6, 80, seed=5)
    # plant a consensus so some hits are certain
    cons = str(motifs[0].consensus)
    toks[0, 10 : 10 + len(cons)] = torch.tensor(["ACGT".index(c) for c in cons])
    ours = scanner.count(toks)
    from Bio.motifs.jaspar import calculate_pseudocounts

    for j, m in enumerate(motifs):
        m.pseudocounts = calculate_pseudocounts(m)
        pssm = m.pssm
        thr = float(scanner.threshold[j])
        for i, s in enumerate(decode(toks)):
            hits = list(pssm.search(Seq(s), threshold=thr - 1e-4, both=True))
            assert ours[i, j].item() == len(hits), (i, j)
    assert ours[0, 0] >= 1
    assert scanner.names[0].startswith("MA0004")


def test_motif_scanner_cache_roundtrip(tmp_path):
    a = M.MotifScanner.jaspar(max_motifs=3, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("motifs-*.pt"))) == 1
    b = M.MotifScanner.jaspar(max_motifs=3, cache_dir=tmp_path)
    assert a.names == b.names and torch.equal(a.weight, b.weight) and torch.equal(a.threshold, b.threshold)


class _GCOracle:
    """A transparent oracle: reward = GC fraction * 10; logits favour class 2 (HepG2) when GC > 0.5."""

    cell_types = ("GM12878", "hESCT0", "HepG2", "K562")

    def __call__(self, tokens):
        return ((tokens == 1) | (tokens == 2)).float().mean(1) * 10

    def logits(self, tokens):
        gc = ((tokens == 1) | (tokens == 2)).float().mean(1)
        out = torch.zeros(tokens.shape[0], 4)
        out[:, 2] = gc - 0.5
        return out


class _NaNOracle(_GCOracle):
    def __call__(self, tokens):
        r = super().__call__(tokens)
        r[1] = float("nan")
        return r


def test_evaluator_summary_and_per_sequence(scanner):
    ref = _rand_tokens(40, 60, seed=6)
    train = _rand_tokens(100, 60, seed=7)
    ev = M.Evaluator(_GCOracle(), ref, train_tokens=train, motif_scanner=scanner)
    designs = torch.cat([train[:2], _rand_tokens(18, 60, seed=8)])
    designs[5:] = torch.where(designs[5:] == 0, 2, designs[5:])  # GC-rich -> HepG2 by this oracle
    row, per_seq = ev.evaluate(designs)
    gc = ((designs == 1) | (designs == 2)).float().mean(1).numpy()
    assert row["pred_activity_median"] == pytest.approx(np.median(gc * 10), rel=1e-5)
    assert row["pred_activity_q25"] <= row["pred_activity_median"] <= row["pred_activity_q75"]
    assert row["atac_acc"] == pytest.approx(float((gc > 0.5).mean()))
    assert row["frac_train_copies"] == pytest.approx(2 / 20)
    assert per_seq["min_train_hamming"].iloc[0] == 0
    assert -1 <= row["jaspar_corr"] <= 1 and -1 <= row["kmer3_corr"] <= 1
    assert row["frac_unique"] == 1.0
    # naturalness columns beside Pred-Activity
    assert row["gc_median"] == pytest.approx(float(np.median(gc)))
    assert row["frac_gc_outside"] == pytest.approx(float(((gc < 0.3) | (gc > 0.7)).mean()))
    assert {"longest_homopolymer", "dust", "gc"} <= set(per_seq.columns)
    table = M.metrics_table({"designs": row})
    assert "Pred-Activity (median)" in table and "designs" in table
    assert "GC (median)" in table and "Homopolymer > 15 bp" in table


def test_evaluator_rejects_nan_reward():
    ev = M.Evaluator(_NaNOracle(), _rand_tokens(10, 30))
    with pytest.raises(NonFiniteRewardError, match="evaluation oracle returned a non-finite reward.*sequence 1"):
        ev.evaluate(_rand_tokens(4, 30))


def test_app_log_lik_is_a_stable_per_sequence_estimate():
    from simpo_bio.diffusion.masked import MaskedDiffusion
    from simpo_bio.dna.models.backbones import DilatedCNN

    torch.manual_seed(0)
    model = MaskedDiffusion(DilatedCNN(hidden_dim=8, num_stacks=1, dilations=(1, 2), kernel_size=3))
    x = _rand_tokens(64, 200, seed=3)
    a = M.elbo_log_likelihood(model, x, seed=0)
    b = M.elbo_log_likelihood(model, x, seed=0)
    assert torch.equal(a, b)  # seeded
    assert (a < 0).all()  # never exactly 0: every draw masks at least one position
    one = M.elbo_log_likelihood(model, x, seed=1, num_draws=1)
    many = M.elbo_log_likelihood(model, x, seed=2, num_draws=64)
    assert (a - many).abs().median() < (one - many).abs().median()  # 16 draws: closer to a long estimate
    with pytest.raises(ValueError, match="num_draws"):
        M.elbo_log_likelihood(model, x, num_draws=0)


def test_diversity_is_exact_for_small_sets_and_a_fixed_seed_estimate_above_the_cap():
    from itertools import combinations

    from simpo_bio.dna.evaluation.metrics import diversity_pairs, metrics_table, pairwise_hamming_mean

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (40, 30), generator=g)
    x[1] = x[0]  # a duplicate pair (distance 0) counts too
    brute = np.mean([int((x[i] != x[j]).sum()) for i, j in combinations(range(40), 2)])
    assert pairwise_hamming_mean(x) == pytest.approx(brute)
    est = pairwise_hamming_mean(x, max_exact=10, num_pairs=200_000)
    assert est != pytest.approx(brute, abs=1e-9) and est == pytest.approx(brute, abs=0.1)  # sampled, close
    assert est == pairwise_hamming_mean(x, max_exact=10, num_pairs=200_000)  # the seed is fixed
    assert diversity_pairs(40) == "all" and diversity_pairs(10**5) == "200,000 sampled"
    table = metrics_table({"big": {"diversity_hamming": 150.0, "diversity_pairs": "200,000 sampled"},
                           "small": {"diversity_hamming": 149.0}})
    assert "Diversity of big: mean over 200,000 sampled pairs" in table and "small:" not in table
