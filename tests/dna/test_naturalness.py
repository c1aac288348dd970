"""Naturalness metrics and synthesis flags on hand-made sequences (simpo_bio/dna/naturalness.py)."""

import numpy as np
import pytest
import torch

from simpo_bio.dna.naturalness import (
    SynthesisConstraints,
    dust_score,
    gc_fraction,
    longest_homopolymer,
    naturalness_per_sequence,
    naturalness_summary,
    reverse_complement_str,
    synthesis_flags,
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


def test_restriction_sites_both_strands():
    body = "ACGTACGTAC" * 4
    fwd = body[:5] + "GGTCTC" + body[11:]           # BsaI forward at 5
    rev = body[:20] + "GAGACG" + body[26:]          # BsmBI (CGTCTC) on the reverse strand at 20
    clean = body
    flags = synthesis_flags([fwd, rev, clean], SynthesisConstraints(gc_min=0.0, gc_max=1.0))
    assert flags[0] == ["BsaI@5+"]
    assert flags[1] == ["BsmBI@20-"]
    assert flags[2] == []


def test_site_across_adapter_junction_and_gc_homopolymer_flags():
    c = SynthesisConstraints(prefix="AAGG", suffix="", gc_min=0.4, gc_max=0.6, max_homopolymer=5)
    design = "TCTC" + "ACGT" * 9        # prefix GG + TCTC forms GGTCTC at 2
    f = synthesis_flags([design, "A" * 40, "G" * 40], c)
    assert "BsaI@2+" in f[0]
    assert f[1] == ["gc_low", "homopolymer"]
    assert f[2][:2] == ["gc_high", "homopolymer"]


def test_tokens_input_and_palindrome_once():
    c = SynthesisConstraints(forbidden={"EcoRI": "GAATTC"}, gc_min=0, gc_max=1)
    x = _tok("ACGTGAATTCACGTACGTAC")
    assert synthesis_flags(x, c) == [["EcoRI@4+"]]
    assert reverse_complement_str("GGTCTC") == "GAGACC"


@pytest.mark.parametrize("kw", [dict(gc_min=0.8, gc_max=0.2), dict(max_homopolymer=0),
                                dict(forbidden={"X": "GGNN"}), dict(prefix="ACGU")])
def test_constraints_validate(kw):
    with pytest.raises(ValueError):
        SynthesisConstraints(**kw)
