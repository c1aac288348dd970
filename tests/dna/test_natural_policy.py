"""The natural policy (simpo_bio/dna/finetune/gradient.py) and its pieces: the relaxed sampler, the differentiable
oracle reading, the soft composition, the fit, resume, the config and its bad values."""

import pytest
import torch
import torch.nn.functional as F
from test_finetune import _Crash, flat_params, tiny_policy, trainer

from simpo_bio.dna.finetune import (
    GradientConfig,
    PolicyIterationDataModule,
    RewardGradientFineTuning,
    SamplingConfig,
)

L = 20


def tiny_oracle(seed: int = 0):
    from simpo_bio.dna.oracles.oracle import CellTypeCNN, CellTypeOracle

    torch.manual_seed(seed)
    net = CellTypeCNN(channels=8, first_kernel=5, kernel=3, num_blocks=1, pool=2)
    for mod in net.modules():  # non-trivial batch-norm statistics, so that eval mode matters
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return CellTypeOracle(net, seq_len=L)


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    from simpo_bio.dna.data.motifs import MotifScanner

    return MotifScanner.jaspar(max_motifs=12, cache_dir=tmp_path_factory.mktemp("motifs"))


def make(scanner=None, seed: int = 1, **gradient):
    gradient = {"kmer_weight": 0.0, "motif_weight": 0.0, "lr": 1e-2, **gradient}
    return RewardGradientFineTuning(pretrained=tiny_policy(), oracle=tiny_oracle(), seed=seed, motif_scanner=scanner,
                                    sampling=SamplingConfig(group_size=16, num_groups=1, num_steps=4, seq_len=L),
                                    gradient=GradientConfig(**gradient))


# ------------------------------------------------------------------------------------------------ the pieces
def test_soft_reward_on_a_one_hot_equals_the_oracle_and_has_a_gradient():
    o = tiny_oracle()
    x = torch.randint(0, 4, (12, L), generator=torch.Generator().manual_seed(0))
    p = F.one_hot(x, 4).float().requires_grad_(True)
    r = o.soft_reward(p)
    torch.testing.assert_close(r, o(x))
    r.sum().backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"float \[B, 20, 4\]"):
        o.soft_reward(F.one_hot(x, 4)[:, :10].float())
    with pytest.raises(ValueError, match="soft_reward"):
        o.soft_reward(F.one_hot(x, 4))  # integers


def test_relaxed_sample_draws_the_policy_distribution_as_exact_one_hots():
    policy = tiny_policy(seed=3)
    with torch.no_grad():
        p, kl = policy.relaxed_sample(4000, L, reference=policy, num_steps=4, generator=torch.Generator().manual_seed(0))
    assert p.shape == (4000, L, 4) and kl.shape == (4000,)
    torch.testing.assert_close(p, F.one_hot(p.argmax(-1), 4).float(), atol=1e-6, rtol=0)  # straight-through sum
    assert kl.abs().max() < 1e-5  # the same model on both sides
    # base frequencies match the ordinary ancestral sampler of the same model (4,000 draws each)
    ref = F.one_hot(policy.sample(4000, L, num_steps=4, seed=1), 5)[..., :4].float()
    assert (p.mean((0, 1)) - ref.mean((0, 1))).abs().max() < 0.01
    assert (p.mean(0) - ref.mean(0)).abs().max() < 0.05  # per position too (the ends see padding)


def test_relaxed_sample_kl_is_positive_between_different_models_and_differentiable():
    policy, reference = tiny_policy(seed=0), tiny_policy(seed=1).requires_grad_(False)
    p, kl = policy.relaxed_sample(8, L, reference=reference, num_steps=4, generator=torch.Generator().manual_seed(0))
    assert (kl > 0).all()
    (kl.mean() + p[..., 1].sum()).backward()
    assert all(q.grad is not None for q in policy.parameters() if q.requires_grad)
    assert all(q.grad is None for q in reference.parameters())


@pytest.mark.parametrize("kw", [{"num_samples": 0}, {"seq_len": 0}, {"num_steps": 0}])
def test_relaxed_sample_rejects_bad_sizes(kw):
    policy = tiny_policy()
    args = {"num_samples": 4, "seq_len": L, "num_steps": 4, **kw}
    with pytest.raises(ValueError, match="relaxed_sample"):
        policy.relaxed_sample(args.pop("num_samples"), args.pop("seq_len"), reference=policy, **args)


def test_soft_composition_equals_the_exact_counts_on_one_hots(scanner):
    from simpo_bio.dna.data.composition import (
        kmer_frequencies,
        pearson,
        pearson_differentiable,
        soft_kmer_frequencies,
    )

    x = torch.randint(0, 4, (16, 60), generator=torch.Generator().manual_seed(2))
    x[:4, 10:30] = torch.tensor([0, 1, 2, 3] * 5)  # some structure, so that a few motifs may hit
    p = F.one_hot(x, 4).float().requires_grad_(True)
    torch.testing.assert_close(soft_kmer_frequencies(p).double(), kmer_frequencies(x))
    prof = scanner.soft_profile(p)
    torch.testing.assert_close(prof, scanner.count(x).mean(0))
    assert prof.sum() > 0  # the test is not about zeros only
    (soft_kmer_frequencies(p)[5] + prof.sum()).backward()
    assert p.grad.abs().sum() > 0
    a, b = torch.tensor([1.0, 2, 3, 5]), torch.tensor([2.0, 4, 7, 1])
    assert abs(float(pearson_differentiable(a, b)) - pearson(a, b)) < 1e-6
    with pytest.raises(ValueError, match="soft_kmer_frequencies"):
        soft_kmer_frequencies(p[:, :2])
    with pytest.raises(ValueError, match="soft_profile"):
        scanner.soft_profile(p[..., :3])
    with pytest.raises(ValueError, match="temperature"):
        scanner.soft_profile(p, temperature=0.0)


# --------------------------------------------------------------------------------------------------- the fit
def test_fit_raises_the_oracle_reward_counts_calls_and_leaves_the_reference(tmp_path):
    m = make(kl_penalty=0.0)
    ref_before = {k: v.clone() for k, v in m.reference.state_dict().items()}
    before = m.oracle(m.policy.sample(1024, L, num_steps=4, seed=9)).mean()
    trainer(tmp_path, 40).fit(m, PolicyIterationDataModule())
    after = m.oracle(m.policy.sample(1024, L, num_steps=4, seed=9)).mean()
    assert int(m.reward_queries) == 40 * 16 and len(m.history) == 40
    assert after > before + 0.1
    assert all(torch.equal(ref_before[k], v) for k, v in m.reference.state_dict().items())
    for key in ("reward_mean", "reward_q25", "reward_q75", "kl_ref", "loss", "gc", "time_sample_s", "time_reward_s",
                "time_update_s"):
        assert key in m.history[-1]
    assert m.method == "reward_gradient"


def test_a_larger_kl_penalty_keeps_the_policy_closer(tmp_path):
    kls = []
    for alpha in (0.0, 3.0):
        m = make(kl_penalty=alpha)
        trainer(tmp_path / str(alpha), 30).fit(m, PolicyIterationDataModule())
        kls.append(sum(h["kl_ref"] for h in m.history[-5:]) / 5)
    assert kls[1] < kls[0]


def test_the_kmer_term_pulls_the_policy_spectrum_toward_the_prior(tmp_path):
    from simpo_bio.dna.data.composition import pearson_differentiable, soft_kmer_frequencies

    corr = {}
    for w in (0.0, 20.0):
        m = make(kl_penalty=0.0, kmer_weight=w)
        trainer(tmp_path / str(w), 30).fit(m, PolicyIterationDataModule())
        assert ("kmer_corr_prior" in m.history[-1]) == (w > 0)
        prior, motif = m.composition_prior()
        assert motif is None
        with torch.no_grad():
            x = m.policy.sample(512, L, num_steps=4, seed=3)
        corr[w] = float(pearson_differentiable(soft_kmer_frequencies(F.one_hot(x, 5)[..., :4].float()), prior))
    assert corr[20.0] > corr[0.0] + 0.05


def test_the_motif_term_runs_with_a_scanner_and_is_logged(tmp_path, scanner):
    m = make(scanner, motif_weight=1.0)
    trainer(tmp_path, 2).fit(m, PolicyIterationDataModule())
    assert "motif_corr_prior" in m.history[-1] and int(m.reward_queries) == 32
    assert m.composition_prior()[1].shape == (len(scanner),)


def test_resume_from_last_checkpoint_continues_exactly(tmp_path, scanner):
    from lightning.pytorch.callbacks import ModelCheckpoint

    full = make(scanner, kmer_weight=2.0, motif_weight=1.0)
    trainer(tmp_path / "full", 4).fit(full, PolicyIterationDataModule())
    ckdir = tmp_path / "ck"
    part = make(scanner, kmer_weight=2.0, motif_weight=1.0)
    with pytest.raises(RuntimeError, match="job killed"):
        trainer(tmp_path / "a", 4, [ModelCheckpoint(dirpath=ckdir, save_last=True), _Crash(2)]).fit(
            part, PolicyIterationDataModule())
    resumed = make(scanner, kmer_weight=2.0, motif_weight=1.0)
    trainer(tmp_path / "b", 4, [ModelCheckpoint(dirpath=ckdir, save_last=True)]).fit(
        resumed, PolicyIterationDataModule(), ckpt_path=str(ckdir / "last.ckpt"))
    assert [h["iteration"] for h in resumed.history] == [0, 1, 2, 3]
    assert torch.equal(flat_params(resumed), flat_params(full))
    assert resumed.history[-1]["reward_mean"] == full.history[-1]["reward_mean"]


def test_a_checkpoint_loads_as_a_policy_and_records_only_its_own_arguments(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from simpo_bio.dna.models.policies import load_policy

    m = make()
    trainer(tmp_path, 2, [ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)]).fit(m, PolicyIterationDataModule())
    policy, info = load_policy(tmp_path / "ck" / "last.ckpt")
    assert info["kind"] == "finetuned" and info["scheme"] == "reward_gradient" and len(info["history"]) == 2
    assert torch.equal(torch.cat([p.flatten() for p in policy.parameters()]), flat_params(m))
    assert set(m.hparams) == {"sampling", "gradient", "seed"}  # modules from Python are not hyper-parameters


# ------------------------------------------------------------------------------------------------ bad values
@pytest.mark.parametrize("field,value", [("kl_penalty", -1.0), ("kmer_weight", float("nan")), ("motif_weight", -2.0),
                                         ("lr", 0.0), ("grad_clip", 0.0), ("prior_samples", 1), ("prior_seed", 1.5)])
def test_bad_gradient_fields_fail_at_construction_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"gradient.{field}"):
        make(**{field: value})
    with pytest.raises(ValueError, match=f"gradient.{field}"):
        RewardGradientFineTuning.validate_config({"gradient": {field: value}})


def test_an_unknown_field_and_a_non_differentiable_oracle_are_refused():
    with pytest.raises(ValueError, match="gradient: unknown field"):
        RewardGradientFineTuning.validate_config({"gradient": {"alpha": 0.1}})
    with pytest.raises(ValueError, match="CellTypeOracle"):
        RewardGradientFineTuning(pretrained=tiny_policy(), oracle=lambda t: t.float().sum(-1),
                                 gradient=GradientConfig(motif_weight=0.0))
    with pytest.raises(ValueError, match="ensemble"):
        RewardGradientFineTuning(pretrained=tiny_policy(), oracle=["a.ckpt", "b.ckpt"])


def test_the_shipped_config_parses_and_a_bad_field_is_one_line(capsys):
    from simpo_bio.lightning_cli import check_fit_args

    check_fit_args(["fit", "--config", "configs/dna/natural_policy.yaml"])
    with pytest.raises(SystemExit) as err:
        check_fit_args(["fit", "--config", "configs/dna/natural_policy.yaml", "--model.init_args.gradient.lr", "-1"])
    assert err.value.code == 2
    lines = [s for s in capsys.readouterr().err.splitlines() if s.strip()]
    assert len(lines) == 1 and "gradient.lr" in lines[0]


def test_a_simpo_checkpoint_is_not_resumed_as_the_natural_policy(tmp_path, capsys):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from simpo_bio.dna.finetune import RewardConfig, SiMPOFineTuning

    simpo = SiMPOFineTuning(pretrained=tiny_policy(), oracle=tiny_oracle(), log_reference_elbo=False,
                            sampling=SamplingConfig(group_size=16, num_groups=1, num_steps=4, seq_len=L),
                            reward=RewardConfig(constraints=None))
    trainer(tmp_path / "s", 1, [ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)]).fit(
        simpo, PolicyIterationDataModule())
    with pytest.raises(SystemExit) as err:
        trainer(tmp_path / "g", 2).fit(make(), PolicyIterationDataModule(), ckpt_path=str(tmp_path / "ck" / "last.ckpt"))
    assert err.value.code == 2
    assert "refusing to resume RewardGradientFineTuning" in capsys.readouterr().err
