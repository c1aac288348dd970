"""bench/dna_policy_alone.py's sample-reuse candidate (seventh grid): buffer, ratios, cap, bad values."""

import importlib.util
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from test_finetune import GCOracle, tiny_policy

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dna_policy_alone.py"


def reuse_cls():
    spec = importlib.util.spec_from_file_location("bench_dna_policy_alone", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.reuse_fine_tuning_class()


def make(reuse, **kw):
    from simpo_bio.dna.finetune import RewardConfig, SamplingConfig, UpdateConfig

    return reuse_cls()(pretrained=tiny_policy(), oracle=GCOracle(), seed=1, log_reference_elbo=False, reuse=reuse,
                       sampling=SamplingConfig(group_size=8, num_groups=1, num_steps=4, seq_len=20),
                       update=UpdateConfig(update_epochs=1, minibatch_size=None, lr=3e-3), reward=RewardConfig(constraints=None), **kw)


def fit(m, epochs, tmp_path):
    pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
               enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path).fit(m)


def test_reuse_pools_the_last_groups_with_ratios(tmp_path):
    m = make(3)
    fit(m, 4, tmp_path)
    pools = [h["reuse_pool"] for h in m.history]
    assert pools == [8, 16, 24, 24]  # each iteration adds its group; at most `reuse` groups train together
    assert len(m.stored) == 2
    # the policy moved (lr 3e-3 on the GC reward), so the reused samples' ratios differ from 1, within the cap
    ratios = m.last_ratios
    assert ratios.numel() == 16 and (ratios <= m.ratio_cap).all() and (ratios > 0).all()
    assert not torch.allclose(ratios, torch.ones_like(ratios))


def test_ratio_uses_common_random_numbers_and_is_capped(monkeypatch):
    from simpo_bio.dna.finetune import SiMPOFineTuning

    m = make(2)
    x = torch.randint(0, 4, (8, 20))
    e = m.ratio_elbo(x, 7)
    assert torch.equal(e, m.ratio_elbo(x, 7))  # common random numbers: the same subsets, the same estimate
    assert not torch.equal(e, m.ratio_elbo(x, 8))
    m.stored = [(x, torch.full((8,), 1 / 8), e - 5.0, 7)]  # a policy 5 nats likelier now: ratio e^5 -> capped at 2
    seen = {}
    # the parent's update replaced for this test only (monkeypatch restores it): what does it receive?
    monkeypatch.setattr(SiMPOFineTuning, "policy_update", lambda self, xs, ws: seen.update(x=xs, w=ws) or torch.tensor(0.0))
    m.policy_update(torch.randint(0, 4, (8, 20)), torch.full((8,), 1 / 8))
    assert seen["x"].shape == (16, 20)
    assert torch.allclose(seen["w"][8:], torch.full((8,), 2 / 8))


@pytest.mark.parametrize("bad", [{"reuse": 0}, {"reuse": 1.5}, {"reuse": 2, "ratio_cap": 0.5}])
def test_bad_reuse_values_are_one_line_errors(bad):
    reuse = bad.pop("reuse")
    with pytest.raises(ValueError, match="reuse must be|ratio_cap must be"):
        make(reuse, **bad)
