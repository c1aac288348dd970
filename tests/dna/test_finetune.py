"""Tests of SiMPO fine-tuning (simpo_bio.dna.finetune.module) on a tiny model and a transparent oracle."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_models import finetuning, tiny_pretrained_ckpt

from simpo_bio.diffusion.masked import MaskedDiffusion
from simpo_bio.dna.finetune.module import PolicyIterationDataModule, SiMPOFineTuning
from simpo_bio.dna.models.backbones import DilatedCNN
from simpo_bio.dna.models.checkpoints import CheckpointFormatError
from simpo_bio.dna.models.policies import load_policy
from simpo_bio.dna.oracles.oracle import NonFiniteRewardError

L = 16


def tiny_policy(seed: int = 0) -> MaskedDiffusion:
    torch.manual_seed(seed)
    return MaskedDiffusion(DilatedCNN(hidden_dim=16, num_stacks=1, dilations=(1, 2), kernel_size=3))


class GCOracle:
    """Reward = number of G/C bases (a transparent, easy target)."""

    def __call__(self, tokens):
        return ((tokens == 1) | (tokens == 2)).float().sum(-1)


class NaNOracle(GCOracle):
    def __call__(self, tokens):
        r = super().__call__(tokens)
        r[3] = float("nan")
        return r


def make_module(**kw) -> SiMPOFineTuning:
    args = dict(pretrained=tiny_policy(), oracle=GCOracle(), scheme="square_neg", group_size=8, num_groups=2,
                seq_len=L, num_steps=4, update_epochs=1, lr=3e-3, log_reference_elbo=True, seed=1)
    args.update(kw)
    return finetuning(**args)


def trainer(tmp_path, epochs, callbacks=(), **kw) -> pl.Trainer:
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, callbacks=list(callbacks), **kw)


def flat_params(module):
    return torch.cat([p.detach().flatten() for p in module.policy.parameters()])


def test_one_iteration_logs_everything_and_keeps_reference_frozen(tmp_path):
    m = make_module()
    ref_before = [p.clone() for p in m.reference.parameters()]
    pol_before = flat_params(m)
    trainer(tmp_path, 2).fit(m, PolicyIterationDataModule())
    assert len(m.history) == 2
    h = m.history[-1]
    for key in ("reward_mean", "reward_median", "reward_max", "ess", "negative_mass", "active", "temperature",
                "loss", "elbo_ref", "reward_queries", "time_sample_s", "time_reward_s", "time_update_s"):
        assert key in h, key
    assert h["reward_queries"] == 2 * 16
    assert 1 <= h["ess"] <= 8 and h["negative_mass"] >= 0
    assert not torch.equal(flat_params(m), pol_before)
    for a, b in zip(ref_before, m.reference.parameters()):
        assert torch.equal(a, b)
    assert "reference.backbone.linear.weight" not in m.state_dict()  # the frozen parts are not checkpointed


def test_fine_tuning_raises_reward_on_easy_target(tmp_path):
    torch.set_num_threads(1)
    m = make_module(group_size=16, num_groups=2, update_epochs=2, lr=1e-2, log_reference_elbo=False)
    trainer(tmp_path, 14).fit(m, PolicyIterationDataModule())
    first = sum(h["reward_mean"] for h in m.history[:3]) / 3
    last = sum(h["reward_mean"] for h in m.history[-3:]) / 3
    assert last > first + 1.0, (first, last)  # GC count out of 16 positions rises clearly


def test_negative_weights_push_likelihood_down():
    """A sample with negative weight gets less likely after a step on the weighted ELBO (paper section 3.4)."""
    m = make_module(kl_coef=0.0)
    x = m.generate(2)
    elbo0 = m.policy.elbo_loss(x, generator=torch.Generator().manual_seed(0)).detach()
    opt = torch.optim.SGD(m.policy.parameters(), lr=0.05)
    for _ in range(5):
        loss = (torch.tensor([1.5, -0.5]) * m.policy.elbo_loss(x, generator=torch.Generator().manual_seed(0))).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    elbo1 = m.policy.elbo_loss(x, generator=torch.Generator().manual_seed(0)).detach()
    assert elbo1[0] < elbo0[0] and elbo1[1] > elbo0[1]


def test_kl_anchor_is_zero_at_reference_and_positive_after_update(tmp_path):
    m = make_module(kl_coef=1.0)
    x = m.generate(4)
    assert m.anchor_kl(x).abs().max() < 1e-5
    trainer(tmp_path, 2).fit(m, PolicyIterationDataModule())
    assert m.anchor_kl(m.generate(4)).mean() > 0


def test_auto_temperature_moves_temperature(tmp_path):
    m = make_module(scheme="exp", auto_temperature=True, temperature=0.05, target_kl=0.5, temperature_lr=0.2)
    trainer(tmp_path, 3).fit(m, PolicyIterationDataModule())
    temps = [h["temperature"] for h in m.history]
    assert temps[-1] > temps[0]  # weights far more peaked than the target -> temperature rises


def test_nan_reward_gives_clear_error(tmp_path):
    m = make_module(oracle=NaNOracle())
    with pytest.raises(NonFiniteRewardError, match="fine-tuning oracle returned a non-finite reward.*sequence 3"):
        trainer(tmp_path, 1).fit(m, PolicyIterationDataModule())


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="sampling.group_size must be >= 2"):
        make_module(group_size=1)
    with pytest.raises((KeyError, ValueError), match="nosuch"):
        make_module(scheme="nosuch")
    with pytest.raises(ValueError, match="update.elbo_estimator must be one of"):
        make_module(elbo_estimator="nosuch")
    with pytest.raises(ValueError, match="update.elbo_draws must be an integer >= 1"):
        make_module(elbo_draws=0)
    with pytest.raises(ValueError, match="weighting.temperature must be a finite number > 0"):
        make_module(temperature=0.0)
    with pytest.raises(ValueError, match="update.grad_clip must be > 0 or null"):
        make_module(grad_clip=0.0)
    with pytest.raises(ValueError, match=r"sampling: unknown field\(s\) \['group'\]"):
        SiMPOFineTuning(pretrained=tiny_policy(), oracle=GCOracle(), sampling={"group": 4})


def test_code_defaults_are_the_shipped_defaults():
    """configs/dna/simpo_base.yaml sets no model option: what it ships is the code's defaults."""
    import yaml

    from simpo_bio.dna.finetune import RewardConfig, UpdateConfig, WeightingConfig

    root = Path(__file__).resolve().parents[2]
    base = yaml.safe_load((root / "configs/dna/simpo_base.yaml").read_text())["model"]["init_args"]
    assert set(base) == {"pretrained", "oracle"}
    assert UpdateConfig().kl_coef == 1.0 and UpdateConfig().repel_margin == 1.386
    assert RewardConfig().kl_penalty == 0.1 and RewardConfig().constraints["gc_window"] == [0.4, 0.6]
    assert WeightingConfig().scheme == "square_neg" and WeightingConfig().scheme_params is None
    assert SiMPOFineTuning.validate_config({"weighting": {"scheme": "exp"}}) is None  # no eta left over for exp






@pytest.mark.parametrize("estimator,draws,shared", [("time", 1, False), ("time", 2, False), ("count", 1, False),
                                                    ("count", 4, True)])
def test_every_elbo_estimator_of_the_loss_trains_and_is_the_policy_nelbo(tmp_path, estimator, draws, shared):
    m = make_module(elbo_estimator=estimator, elbo_draws=draws, elbo_shared_noise=shared, log_reference_elbo=False)
    x = m.policy.sample(8, L, num_steps=4, seed=0)
    nelbo = m.policy_nelbo(x)
    assert nelbo.shape == (8,) and nelbo.requires_grad and (nelbo >= 0).all() and nelbo.sum() > 0
    before = flat_params(m)
    trainer(tmp_path, 1).fit(m, PolicyIterationDataModule())
    assert not torch.equal(flat_params(m), before)


class _Crash(pl.Callback):
    def __init__(self, at_epoch):
        self.at_epoch = at_epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at_epoch:
            raise RuntimeError("job killed")  # a crash between iterations


@pytest.mark.parametrize("scheme,auto,kl_penalty", [("square_neg", True, 0.0), ("square_neg", False, 0.1)])
def test_resume_from_last_checkpoint_continues_same_iteration_exactly(tmp_path, scheme, auto, kl_penalty):
    kw = dict(scheme=scheme, auto_temperature=auto, update_epochs=2, minibatch_size=8, kl_penalty=kl_penalty)
    # uninterrupted: 4 iterations
    full = make_module(**kw)
    trainer(tmp_path / "full", 4).fit(full, PolicyIterationDataModule())

    # interrupted after 2 iterations, then resumed from last.ckpt
    ckdir = tmp_path / "ck"
    part = make_module(**kw)
    t1 = trainer(tmp_path / "a", 4, [ModelCheckpoint(dirpath=ckdir, save_last=True), _Crash(2)])
    with pytest.raises(RuntimeError, match="job killed"):
        t1.fit(part, PolicyIterationDataModule())
    assert len(part.history) == 2
    resumed = make_module(**kw)
    t2 = trainer(tmp_path / "b", 4, [ModelCheckpoint(dirpath=ckdir, save_last=True)])
    t2.fit(resumed, PolicyIterationDataModule(), ckpt_path=str(ckdir / "last.ckpt"))
    assert [h["iteration"] for h in resumed.history] == [0, 1, 2, 3]
    assert resumed.history[2]["reward_queries"] == full.history[2]["reward_queries"]
    assert torch.equal(flat_params(resumed), flat_params(full))
    assert resumed.history[-1]["reward_mean"] == full.history[-1]["reward_mean"]
    assert resumed.weighting.temperature == full.weighting.temperature  # the Stage-I step's Adam state too
    assert [h["temperature"] for h in resumed.history] == [h["temperature"] for h in full.history]




def test_a_module_passed_twice_is_not_frozen_or_shared():
    base = tiny_policy()
    a, b = make_module(pretrained=base), make_module(pretrained=base)
    flags = [p.requires_grad for p in base.parameters()]
    assert any(flags)
    assert [p.requires_grad for p in b.policy.parameters()] == flags
    assert [p.requires_grad for p in base.parameters()] == flags  # the caller's module is left alone
    assert a.policy.backbone.linear.weight.data_ptr() != b.policy.backbone.linear.weight.data_ptr()


def _policy_checkpoint(tmp_path, **kw):
    m = make_module(**kw)
    trainer(tmp_path, 1, [ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)]).fit(m, PolicyIterationDataModule())
    return m, tmp_path / "ck" / "last.ckpt"


def test_load_policy_round_trip_and_checkpoints_of_earlier_layouts(tmp_path):
    m, path = _policy_checkpoint(tmp_path, num_steps=6, normalize_advantage=False)
    policy, info = load_policy(path)
    assert info["kind"] == "finetuned" and info["scheme"] == "square_neg" and info["num_steps"] == 6
    assert info["seq_len"] == L and not policy.training
    for a, b in zip(policy.state_dict().values(), m.policy.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.randint(0, 4, (3, L), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    expected = m.policy.eval().elbo_loss(x, generator=g)
    torch.testing.assert_close(policy.elbo_loss(x, generator=torch.Generator().manual_seed(1)), expected)
    # a checkpoint of 0.1 (flat hyper-parameters): one line saying what changed, naming the file
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    ckpt["hyper_parameters"] = {"pretrained": hp.get("pretrained"), "num_steps": 6, "scheme": "square_neg"}
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    with pytest.raises(CheckpointFormatError, match=r"old.ckpt: a fine-tuning checkpoint of simpo-bio 0.1.*refit"):
        load_policy(old)


def test_load_policy_reads_a_pretrained_model_too(tmp_path):
    path = tiny_pretrained_ckpt(tmp_path / "pre.ckpt")
    policy, info = load_policy(path)
    assert info == {"kind": "pretrained", "scheme": "none", "seq_len": 200, "num_steps": None, "oracle": None,
                    "pretrained": str(path)}
    assert policy.backbone.config()["hidden_dim"] == 8 and not policy.training





def test_frozen_pretrained_module_is_a_one_line_error():
    m = make_module(pretrained=tiny_policy().requires_grad_(False))
    with pytest.raises(ValueError, match="no trainable parameter"):
        m.configure_optimizers()
