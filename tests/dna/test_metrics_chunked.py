"""Evaluator.evaluate in chunks (big FASTA files): the same numbers as one pass over the set."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from simpo_bio.dna.evaluation import metrics as M


class _Oracle:
    """Deterministic oracle with a reward that differs from design to design; logits favour HepG2 when GC > 0.5."""

    cell_types = ("GM12878", "hESCT0", "HepG2", "K562")

    def __call__(self, tokens):
        return ((tokens == 1) | (tokens == 2)).float().mean(1) * 10 + torch.sin(tokens.float() @ torch.arange(
            tokens.shape[1], dtype=torch.float32) / 100)

    def logits(self, tokens):
        out = torch.zeros(tokens.shape[0], 4)
        out[:, 2] = ((tokens == 1) | (tokens == 2)).float().mean(1) - 0.5
        return out


def test_chunked_evaluation_equals_one_chunk(tmp_path, capsys):
    from simpo_bio.diffusion.masked import MaskedDiffusion
    from simpo_bio.dna.models.backbones import DilatedCNN

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    length = 60
    ref = torch.randint(0, 4, (50, length), generator=g)
    train = torch.randint(0, 4, (200, length), generator=g)
    x = torch.randint(0, 4, (300, length), generator=g)
    x[5], x[250] = train[0], train[1]  # training copies in the first and the last chunk
    x[200] = x[10]  # a duplicate across chunks (frac_unique)
    x[100:110, :30] = 0  # a run of A: homopolymer and DUST columns that vary
    torch.manual_seed(0)
    model = MaskedDiffusion(DilatedCNN(hidden_dim=8, num_stacks=1, dilations=(1, 2), kernel_size=3))
    scanner = M.MotifScanner.jaspar(max_motifs=12, cache_dir=tmp_path)
    ev = M.Evaluator(_Oracle(), ref, train_tokens=train, reference_model=model, motif_scanner=scanner)

    one_row, one = ev.evaluate(x)  # 300 <= EVAL_BATCH_SIZE: one chunk, no progress bar
    assert "seq" not in capsys.readouterr().err
    row, per_seq = ev.evaluate(x, batch_size=64)  # five chunks, the last one short
    assert "seq" in capsys.readouterr().err  # the progress bar (stderr, unit seq)

    assert list(per_seq.columns) == list(one.columns) == [
        "eval_reward", "eval_is_hepg2", "log_lik", "min_train_hamming", "gc", "longest_homopolymer", "dust"]
    pd.testing.assert_frame_equal(per_seq, one, rtol=1e-6)
    assert row.keys() == one_row.keys()
    for key, value in one_row.items():
        assert row[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert row["frac_unique"] == pytest.approx(299 / 300) and row["frac_train_copies"] == pytest.approx(2 / 300)
    # the set-level numbers are those of the whole set, not of a chunk
    assert row["kmer3_corr"] == pytest.approx(M.pearson(M.kmer_frequencies(x), M.kmer_frequencies(ref)), rel=1e-12)
    assert row["jaspar_corr"] == pytest.approx(
        M.pearson(scanner.count(x).mean(0), scanner.count(ref).mean(0)), rel=1e-6)
    assert row["app_log_lik"] == pytest.approx(float(M.elbo_log_likelihood(model, x).mean()), rel=1e-6)
    # summarize with a given table and per_sequence alone, chunked, give the same
    assert ev.summarize(x, per_seq, batch_size=64) == pytest.approx(row)
    pd.testing.assert_frame_equal(ev.per_sequence(x, batch_size=100), one, rtol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        ev.evaluate(x, batch_size=0)


class _NaNAt150(_Oracle):
    def __call__(self, tokens):
        r = super().__call__(tokens)
        return torch.where((tokens[:, :8] == 3).all(1), float("nan"), r)  # the marked design below


def test_chunked_evaluation_names_a_bad_reward_by_its_index_in_the_whole_set():
    from simpo_bio.dna.oracles.oracle import NonFiniteRewardError

    x = torch.randint(0, 3, (300, 40), generator=torch.Generator().manual_seed(1))
    x[150, :8] = 3
    ev = M.Evaluator(_NaNAt150(), x[:20])
    for batch_size in (64, 4096):
        with pytest.raises(NonFiniteRewardError, match=r"sequence 150 of 300 \(1 non-finite in all\)"):
            ev.evaluate(x, batch_size=batch_size)
