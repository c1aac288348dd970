"""Naturalness metrics and synthesis flags on hand-made sequences (simpo_bio/dna/data/composition.py)."""

import numpy as np
import pytest
import torch

from simpo_bio.dna.data.composition import (
    dust_score,
    gc_fraction,
    longest_homopolymer,
    naturalness_per_sequence,
    naturalness_summary,
)


def _tok(*seqs):
    return torch.tensor(
        [["ACGT".index(c) for c in s] for s in seqs])


def test_gc_fraction_known_values():
    x = _tok("GGCC" * 5, "ATAT" * 5, "ACGT" * 5, "GAAA" * 5)
    assert gc_fraction(x).tolist() == pytest.approx([1.0, 0.0, 0.5, 0.25])


def test_longest_homopolymer():
    x = _tok("A" * 20, "ACGT" * 5, "ACGTTTTTTTACGTACGTAC", "CCCCCACGTACGTAGGGGGG")
    assert longest_homopolymer(x).tolist() == [20, 1, 7, 6]


def test_dust_homopolymer_vs_random():
    rng = np.random.default_rng(0)
    rand = "".join(rng.choice(list("ACGT"), 200))
    x = _tok("A" * 200, rand, "CA" * 100)
    d = dust_score(x).tolist()
    assert d[0] == pytest.approx(31.0)  # 62 equal 3-mers: 62 * 61 / 2 / 61
    assert 0.2 < d[1] < 1.5  # random: about 0.5
    assert d[2] == pytest.approx(930 / 61)  # two alternating 3-mers, 31 each: 2 * 31 * 30 / 2 / 61
    assert d[0] > d[2] > d[1]


def test_summary_counts_window_and_runs():
    x = _tok("A" * 40, "GC" * 20, "ACGT" * 10, "AACCGGTTAC" * 4)
    s = naturalness_summary(naturalness_per_sequence(x), gc_window=(0.3, 0.7), max_homopolymer=15)
    assert s["frac_gc_outside"] == pytest.approx(0.5)
    assert s["frac_homopolymer_over"] == pytest.approx(0.25)
    assert s["gc_median"] == pytest.approx(0.5)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        gc_fraction(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError):
        naturalness_summary({"gc": [], "longest_homopolymer": [], "dust": []})


def test_windowed_gc_matches_a_direct_count():
    from simpo_bio.dna.data.composition import windowed_gc

    seq = "GGGGGCCCCC" + "ATATATATAT" * 3
    w = windowed_gc(_tok(seq), 10)
    assert w.shape == (1, len(seq) - 9)
    expected = [sum(ch in "GC" for ch in seq[i:i + 10]) / 10 for i in range(len(seq) - 9)]
    assert w[0].tolist() == pytest.approx(expected)
    with pytest.raises(ValueError, match="window"):
        windowed_gc(_tok(seq), len(seq) + 1)


def test_kmer_chi2_zero_for_background_match_and_large_for_homopolymer():
    from simpo_bio.dna.data.composition import kmer_chi2

    x = _tok("ACGT" * 50, "A" * 200)
    uniform = torch.full((64,), 1 / 64)
    d = kmer_chi2(x, uniform)
    # ACGT repeat: 4 distinct 3-mers, 198 / 4 each (49.5 or so): far from uniform, but far less than a homopolymer
    assert d[1] == pytest.approx((198 - 198 / 64) ** 2 / (198 / 64) + 63 * 198 / 64, rel=1e-4)
    assert d[0] < d[1]
    with pytest.raises(ValueError, match="64 positive"):
        kmer_chi2(x, torch.zeros(64))


def test_constraints_violation_and_from_reference():
    from simpo_bio.dna.data.composition import NaturalnessConstraints

    rng = np.random.default_rng(1)
    real = torch.tensor(rng.integers(0, 4, size=(300, 200)))
    c = NaturalnessConstraints.from_reference(real, kmer_quantile=0.95, gc_window=(0.4, 0.6), max_homopolymer=10,
                                              max_dust=2.0)
    v_real = c.violation(real)
    assert (v_real == 0).float().mean() >= 0.9  # the 3-mer limit is the 95th percentile of these very sequences
    bad = _tok("A" * 200, ("GC" * 100))
    assert (c.violation(bad) > 0).all()
    assert NaturalnessConstraints(gc_window=None, max_homopolymer=None, max_dust=None).violation(bad).eq(0).all()
    with pytest.raises(ValueError, match="kmer_background"):
        NaturalnessConstraints(max_kmer_chi2=5.0)
    with pytest.raises(ValueError, match="gc_window"):
        NaturalnessConstraints(gc_window=(0.7, 0.3))


def test_feasibility_ranked_puts_infeasible_last():
    from simpo_bio.dna.data.composition import feasibility_ranked

    r = torch.tensor([[5.0, 1.0, 3.0, 2.0], [4.0, 3.0, 2.0, 1.0]])
    v = torch.tensor([[2.0, 0.0, 0.0, 0.5], [1.0, 1.0, 3.0, 2.0]])
    out = feasibility_ranked(r, v)
    assert out[0].tolist() == [1.0 - 1 - 2.0, 1.0, 3.0, 1.0 - 1 - 0.5]  # infeasible below the worst feasible (1.0)
    assert out[1].tolist() == [-1.0, -1.0, -3.0, -2.0]  # none feasible: min(group) 1.0 - 1 - violation
    assert torch.equal(feasibility_ranked(r, torch.zeros_like(r)), r)
    with pytest.raises(ValueError):
        feasibility_ranked(r, -v)
