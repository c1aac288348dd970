"""Tests of the oracle's training (simpo_bio.dna.oracles.training): the test report and the k-mer baseline."""

import torch

from simpo_bio.dna.oracles.training import kmer_count_matrix


def test_test_report_prints_auroc_and_baseline(trained_oracle, capsys):
    trained_oracle["trainer"].test(trained_oracle["model"], trained_oracle["dm"], verbose=False)
    out = capsys.readouterr().out
    assert "HepG2-vs-rest AUROC" in out and "2-mer-count logistic regression" in out and "gate" in out
    metrics = trained_oracle["trainer"].callback_metrics
    assert 0.0 <= float(metrics["test_auroc"]) <= 1.0 and 0.0 <= float(metrics["test_baseline_auroc"]) <= 1.0


def test_kmer_counts():
    x = torch.tensor([[0, 0, 1, 3]])
    m = kmer_count_matrix(x, k=2).toarray()
    assert m.shape == (1, 16) and m.sum() == 3
    assert m[0, 0] == 1 and m[0, 1] == 1 and m[0, 1 * 4 + 3] == 1  # AA, AC, CT
