"""Oracle tests on a tiny classifier trained for a few steps on a small labelled table the test writes."""

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch

from simpo_bio.dna.alphabet import SequenceValidationError, decode
from simpo_bio.dna.checkpoints import (
    CheckpointArchitectureError,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointNotFoundError,
    load_checkpoint,
)
from simpo_bio.dna.data import CellTypeDataModule
from simpo_bio.dna.oracle import (
    CellTypeClassifier,
    CellTypeOracle,
    RegressionOracle,
    RewardOracle,
    kmer_count_matrix,
    load_oracle,
    log_odds,
    reverse_complement,
)

L = 24
TINY = {"channels": 8, "first_kernel": 5, "kernel": 3, "num_blocks": 1, "pool": 2, "seq_len": L, "baseline_k": 2,
        "baseline_c_grid": [1.0]}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny classifier fitted for a few steps (class 3 = HepG2 sequences are GC-rich) and its checkpoint."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("oracle")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(160):
        label = i % 4
        p = [0.1, 0.4, 0.4, 0.1] if label == 3 else [0.25] * 4
        rows.append({"seq": "".join(rng.choice(list("ACGT"), size=L, p=p)), "cell": f"c{label}"})
    csv = tmp / "cells.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    dm = CellTypeDataModule(source=str(csv), batch_size=32, seed=0, loader_kwargs={"class_column": "cell"})
    pl.seed_everything(0)
    model = CellTypeClassifier(**TINY, cell_types=["c0", "c1", "c2", "HepG2"], lr=1e-2)
    trainer = pl.Trainer(max_steps=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(model, dm)
    path = tmp / "oracle.ckpt"
    trainer.save_checkpoint(path)
    return {"model": model, "path": path, "dm": dm, "trainer": trainer, "tmp": tmp}


def test_round_trip_and_interface(trained):
    oracle = load_oracle(trained["path"])
    assert isinstance(oracle, RewardOracle) and isinstance(oracle, CellTypeOracle)
    assert oracle.target_index == 3 and oracle.cell_types[3] == "HepG2" and oracle.seq_len == L
    tokens = trained["dm"].dataset("test").tokens.long()
    model = trained["model"].eval()
    with torch.no_grad():
        expected = log_odds(model(tokens), 3)
    r = oracle(tokens)
    assert r.shape == (len(tokens),) and r.dtype == torch.float32 and not r.requires_grad
    torch.testing.assert_close(r, expected)
    # reward = logit HepG2 - logsumexp(other logits), from .logits
    lg = oracle.logits(tokens)
    assert lg.shape == (len(tokens), 4)
    torch.testing.assert_close(r, lg[:, 3] - torch.logsumexp(lg[:, :3], dim=1))
    # strings (lowercase ok) give the same rewards as tokens; batching does not change them
    strings = [s.lower() for s in decode(tokens)]
    torch.testing.assert_close(oracle(strings), r)
    torch.testing.assert_close(oracle(tokens, batch_size=3), r)
    assert oracle(tokens[:0]).shape == (0,)
    # strand symmetric in eval mode
    torch.testing.assert_close(oracle(reverse_complement(tokens)), r, atol=1e-5, rtol=1e-5)
    assert oracle.device == torch.device("cpu") and oracle.to("cpu") is oracle


def test_oracle_stays_frozen(trained):
    oracle = load_oracle(trained["path"])
    parent = torch.nn.ModuleDict({"oracle": oracle, "policy": torch.nn.Linear(2, 2)})
    parent.train()
    assert not oracle.training and not any(p.requires_grad for p in oracle.parameters())
    x = trained["dm"].dataset("test").tokens[:5]
    torch.testing.assert_close(oracle(x), oracle(x))  # no dropout noise, no batch-norm updates


def test_bad_inputs(trained):
    oracle = load_oracle(trained["path"])
    with pytest.raises(SequenceValidationError, match="position 1"):
        oracle(["AN" + "A" * (L - 2)])
    with pytest.raises(SequenceValidationError, match="expected 24"):
        oracle(["ACGT"])
    with pytest.raises(ValueError, match="shape"):
        oracle(torch.zeros(2, L + 1, dtype=torch.long))
    with pytest.raises(TypeError):
        oracle(torch.zeros(2, L))


def test_missing_truncated_and_wrong_architecture(trained, tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_oracle(tmp_path / "nope.ckpt")
    raw = trained["path"].read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointCorruptError, match="truncated"):
        load_oracle(cut)
    ckpt = load_checkpoint(trained["path"])
    # a checkpoint of another model
    other = dict(ckpt, simpo_bio_model="MaskedDiffusionLM")
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointArchitectureError, match="MaskedDiffusionLM"):
        load_oracle(tmp_path / "other.ckpt")
    # weights of another width than the recorded architecture
    wide = dict(ckpt, hyper_parameters=dict(ckpt["hyper_parameters"], channels=16))
    torch.save(wide, tmp_path / "wide.ckpt")
    with pytest.raises(CheckpointArchitectureError, match="shape mismatch"):
        load_oracle(tmp_path / "wide.ckpt")
    # a bare state dict of something else
    torch.save({"state_dict": {"layer.weight": torch.zeros(3)}}, tmp_path / "bare.ckpt")
    with pytest.raises(CheckpointArchitectureError, match="missing keys"):
        load_oracle(tmp_path / "bare.ckpt")
    for err in (CheckpointNotFoundError, CheckpointCorruptError, CheckpointArchitectureError):
        assert issubclass(err, CheckpointError)


def test_test_report_prints_auroc_and_baseline(trained, capsys):
    trained["trainer"].test(trained["model"], trained["dm"], verbose=False)
    out = capsys.readouterr().out
    assert "HepG2-vs-rest AUROC" in out and "2-mer-count logistic regression" in out and "gate" in out
    metrics = trained["trainer"].callback_metrics
    assert 0.0 <= float(metrics["test_auroc"]) <= 1.0 and 0.0 <= float(metrics["test_baseline_auroc"]) <= 1.0


def test_kmer_counts():
    x = torch.tensor([[0, 0, 1, 3]])
    m = kmer_count_matrix(x, k=2).toarray()
    assert m.shape == (1, 16) and m.sum() == 3
    assert m[0, 0] == 1 and m[0, 1] == 1 and m[0, 1 * 4 + 3] == 1  # AA, AC, CT
    assert reverse_complement(torch.tensor([[0, 1, 4, 2]])).tolist() == [[1, 4, 2, 3]]


@pytest.mark.parametrize("name", ["oracle_ft", "oracle_eval"])
def test_shipped_checkpoints_load(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "checkpoints" / "dna" / f"{name}.ckpt"
    assert path.stat().st_size <= 5 * 2**20
    oracle = load_oracle(path)
    assert oracle.seq_len == 200 and oracle.cell_types[oracle.target_index] == "HepG2"
    x = torch.randint(0, 4, (6, 200), generator=torch.Generator().manual_seed(0))
    r = oracle(x)
    assert r.shape == (6,) and torch.isfinite(r).all()
    torch.testing.assert_close(r, log_odds(oracle.logits(x), oracle.target_index))
    other = load_oracle(path.with_name("oracle_eval.ckpt" if name == "oracle_ft" else "oracle_ft.ckpt"))
    assert not torch.allclose(other(x), r)  # two independently trained oracles


def test_regression_oracle_wraps_any_module():
    class Activity(torch.nn.Module):  # 3 outputs: GC count, A count, length
        def forward(self, tokens):
            return torch.stack([((tokens == 1) | (tokens == 2)).sum(1), (tokens == 0).sum(1), tokens.new_full(
                (len(tokens),), tokens.shape[1])], dim=1).float()

    oracle = RegressionOracle(Activity(), output_index=0, output_names=["hepg2", "k562", "sknsh"], seq_len=4)
    torch.testing.assert_close(oracle(["GCGA", "aaat"]), torch.tensor([3.0, 0.0]))
    with pytest.raises(SequenceValidationError):
        oracle(["GCG"])
