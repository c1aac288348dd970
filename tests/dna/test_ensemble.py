"""The conservative ensemble reward (simpo_bio/dna/oracles/ensemble.py)."""

import pytest
import torch

from simpo_bio.dna.oracles.ensemble import EnsembleOracle
from simpo_bio.dna.oracles.oracle import RewardOracle


class _Fixed(RewardOracle):
    """Reward = scale * fraction of A (+ offset): members that agree on natural-looking inputs only."""

    def __init__(self, scale, offset=0.0, seq_len=8):
        super().__init__(seq_len=seq_len)
        self.scale, self.offset = scale, offset
        self.register_buffer("_dev", torch.zeros(()))

    def reward(self, tokens):
        return self.scale * (tokens == 0).float().mean(1) + self.offset


def test_mean_minus_k_std_arithmetic():
    ens = EnsembleOracle([_Fixed(1.0), _Fixed(3.0), _Fixed(2.0, offset=1.0)], std_coef=2.0)
    x = torch.tensor([[0] * 8, [1] * 8, [0, 0, 0, 0, 1, 1, 1, 1]])
    members = torch.stack([torch.tensor([1.0, 0.0, 0.5]), torch.tensor([3.0, 0.0, 1.5]),
                           torch.tensor([3.0, 1.0, 2.0])])
    expected = members.mean(0) - 2.0 * members.std(0, unbiased=False)
    assert torch.allclose(ens(x), expected)
    assert torch.allclose(ens.last_std, members.std(0, unbiased=False))
    assert not any(p.requires_grad for p in ens.parameters())
    # k = 0 is the plain mean; the penalty lowers exactly the inputs where the members disagree
    assert torch.allclose(EnsembleOracle([_Fixed(1.0), _Fixed(3.0)], std_coef=0.0)(x), torch.tensor([2.0, 0.0, 1.0]))


@pytest.mark.parametrize("members,k,match", [([_Fixed(1.0)], 1.0, "at least 2"),
                                              ([_Fixed(1.0), _Fixed(1.0, seq_len=9)], 1.0, "seq_len"),
                                              ([_Fixed(1.0), _Fixed(2.0)], -1.0, "std_coef")])
def test_bad_ensembles(members, k, match):
    with pytest.raises(ValueError, match=match):
        EnsembleOracle(members, std_coef=k)


def test_finetuning_accepts_a_list_of_oracle_paths(tmp_path):
    from tiny_models import finetuning, tiny_oracle_ckpt, tiny_pretrained_ckpt

    pre = tiny_pretrained_ckpt(tmp_path / "pre.ckpt")
    paths = [str(tiny_oracle_ckpt(tmp_path / f"o{i}.ckpt", seed=i)) for i in range(3)]
    m = finetuning(pretrained=str(pre), oracle=paths, ensemble_std_coef=0.5, seq_len=20, group_size=4,
                        num_groups=1, num_steps=2)
    assert isinstance(m.oracle, EnsembleOracle) and len(m.oracle.members) == 3
    assert m.hparams.oracle == paths
    assert m.reward(m.generate(4)).shape == (4,)
