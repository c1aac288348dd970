"""Tests of the oracle interface, loading, scoring and the finite-reward check (simpo_bio.dna.oracles.oracle), on the tiny
classifier of conftest.py (``trained_oracle``: a few steps on a small labelled table)."""

import pytest
import torch

from simpo_bio.dna.data.alphabet import SequenceValidationError, decode
from simpo_bio.dna.models.checkpoints import (
    CheckpointArchitectureError,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointNotFoundError,
    load_checkpoint,
)
from simpo_bio.dna.oracles.oracle import (
    CellTypeOracle,
    NonFiniteRewardError,
    RegressionOracle,
    RewardOracle,
    check_rewards,
    load_oracle,
    log_odds,
    oracle_scores,
    reverse_complement,
)

L = 24


def test_round_trip_and_interface(trained_oracle):
    oracle = load_oracle(trained_oracle["path"])
    assert isinstance(oracle, RewardOracle) and isinstance(oracle, CellTypeOracle)
    assert oracle.target_index == 3 and oracle.cell_types[3] == "HepG2" and oracle.seq_len == L
    tokens = trained_oracle["dm"].dataset("test").tokens.long()
    model = trained_oracle["model"].eval()
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


def test_oracle_stays_frozen(trained_oracle):
    oracle = load_oracle(trained_oracle["path"])
    parent = torch.nn.ModuleDict({"oracle": oracle, "policy": torch.nn.Linear(2, 2)})
    parent.train()
    assert not oracle.training and not any(p.requires_grad for p in oracle.parameters())
    x = trained_oracle["dm"].dataset("test").tokens[:5]
    torch.testing.assert_close(oracle(x), oracle(x))  # no dropout noise, no batch-norm updates


def test_bad_inputs(trained_oracle):
    oracle = load_oracle(trained_oracle["path"])
    with pytest.raises(SequenceValidationError, match="position 1"):
        oracle(["AN" + "A" * (L - 2)])
    with pytest.raises(SequenceValidationError, match="expected 24"):
        oracle(["ACGT"])
    with pytest.raises(ValueError, match="shape"):
        oracle(torch.zeros(2, L + 1, dtype=torch.long))
    with pytest.raises(TypeError):
        oracle(torch.zeros(2, L))


def test_missing_truncated_and_wrong_architecture(trained_oracle, tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_oracle(tmp_path / "nope.ckpt")
    raw = trained_oracle["path"].read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointCorruptError, match="truncated"):
        load_oracle(cut)
    ckpt = load_checkpoint(trained_oracle["path"])
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


def test_reverse_complement():
    assert reverse_complement(torch.tensor([[0, 1, 4, 2]])).tolist() == [[1, 4, 2, 3]]


def test_non_finite_rewards_raise_one_typed_error():
    r = torch.tensor([0.5, float("nan"), 1.0, float("inf")])
    with pytest.raises(NonFiniteRewardError, match="the fine-tuning oracle returned a non-finite reward") as err:
        check_rewards(r, "the fine-tuning oracle")
    assert (err.value.index, err.value.count, err.value.total) == (1, 2, 4) and isinstance(err.value, ValueError)
    assert "sequence 1 of 4" in str(err.value)
    assert check_rewards(torch.tensor([1, 2])).dtype == torch.float32
    with pytest.raises(ValueError, match="shape"):
        check_rewards(torch.zeros(2, 2))
    with pytest.raises(NonFiniteRewardError, match="sequence 3"):
        oracle_scores(lambda x: x.float().sum(-1) / (x[:, 0] != 3), torch.tensor([[0, 1]] * 3 + [[3, 0]]))

