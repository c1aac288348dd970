"""The leash to the reference (simpo_bio/dna/finetune/leash.py, the trajectory log-probabilities of the sampler) and its
use in SiMPO fine-tuning: KL estimates, bounded repulsion, the KL-regularised reward, constraints."""

import copy
import math

import pytest
import torch

from simpo_bio.diffusion.masked import MaskedDiffusion
from simpo_bio.dna.data.composition import NaturalnessConstraints
from simpo_bio.dna.finetune.leash import (
    bounded_elbo,
    build_constraints,
    elbo_log_ratio,
    kl_regularized_reward,
)
from simpo_bio.dna.models.backbones import DilatedCNN


def _model(seed: int) -> MaskedDiffusion:
    torch.manual_seed(seed)
    return MaskedDiffusion(DilatedCNN(hidden_dim=8, num_stacks=1, dilations=(1, 2), kernel_size=3)).eval()


def test_trajectory_log_ratio_zero_for_identical_models_and_same_tokens():
    p = _model(0)
    q = copy.deepcopy(p)
    x0 = p.sample(16, 12, num_steps=6, seed=3)
    x, lp, lq = p.sample(16, 12, num_steps=6, seed=3, reference=q, return_log_probs=True)
    assert torch.equal(x, x0)  # the reference never changes what is drawn
    assert torch.allclose(lp, lq)
    assert (lp < 0).all()


def test_trajectory_kl_matches_exact_kl_of_one_step_sampler():
    # with one sampler step every position is drawn at once from p(. | all masked): the marginal factorises, so
    # the exact KL is a sum of per-position KLs, and the mean trajectory log-ratio is a Monte-Carlo estimate of it
    p, q = _model(0), _model(1)
    length = 6
    z = torch.full((1, length), p.mask_index)
    sigma = p.schedule.sigma(torch.ones(1))
    with torch.no_grad():
        lp_all = p(z, sigma)[0, :, :4]
        lq_all = q(z, sigma)[0, :, :4]
    exact = float((lp_all.exp() * (lp_all - lq_all)).sum())
    _, lp, lq = p.sample(20000, length, num_steps=1, seed=0, reference=q, return_log_probs=True)
    est = (lp - lq).mean().item()
    se = (lp - lq).std().item() / math.sqrt(20000)
    assert exact > 0.01
    assert abs(est - exact) < 4 * se + 1e-4


def test_elbo_log_ratio_zero_for_identical_models_and_shares_noise():
    p = _model(0)
    q = copy.deepcopy(p)
    x = p.sample(8, 12, num_steps=4, seed=1)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(elbo_log_ratio(p, q, x, generator=g, num_draws=3), torch.zeros(8), atol=1e-5)
    with pytest.raises(ValueError, match="num_draws"):
        elbo_log_ratio(p, q, x, num_draws=0)


def test_kl_estimate_positive_after_an_update_toward_a_sequence():
    p = _model(0)
    ref = copy.deepcopy(p)
    target = torch.zeros(4, 12, dtype=torch.long)  # all A
    opt = torch.optim.Adam(p.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        p.elbo_loss(target).mean().backward()
        opt.step()
    _, lp, lq = p.sample(256, 12, num_steps=6, seed=0, reference=ref, return_log_probs=True)
    assert (lp - lq).mean() > 1.0


def test_kl_regularized_reward_arithmetic_and_errors():
    r = torch.tensor([1.0, 2.0, 3.0])
    lr = torch.tensor([0.0, 10.0, -2.0])
    assert torch.allclose(kl_regularized_reward(r, lr, 0.1), torch.tensor([1.0, 1.0, 3.2]))
    assert kl_regularized_reward(r, lr, 0.0) is r
    with pytest.raises(ValueError):
        kl_regularized_reward(r, lr, -1.0)
    with pytest.raises(ValueError):
        kl_regularized_reward(r, lr[:2], 0.1)


def test_bounded_repulsion_keeps_the_weighted_loss_bounded():
    # a negative-weight sequence: minimising w * ELBO drives its ELBO up without bound; the cap stops the push
    length, margin = 12, math.log(4)
    x = torch.zeros(2, length, dtype=torch.long)
    weight = torch.tensor([-1.0, -1.0])
    finals = {}
    for cap in (None, margin):
        p = _model(0).train()
        opt = torch.optim.Adam(p.parameters(), lr=5e-2)
        g = torch.Generator().manual_seed(0)
        for _ in range(60):
            opt.zero_grad()
            loss = (weight * bounded_elbo(p.elbo_loss(x, generator=g), weight, cap, length)).sum()
            loss.backward()
            opt.step()
        finals[cap] = loss.item()
    bound = margin * length * weight.sum().item()
    assert finals[margin] >= bound - 1e-4
    assert finals[None] < bound  # without the cap the loss goes below it: the test can fail
    with pytest.raises(ValueError, match="repel_margin"):
        bounded_elbo(torch.ones(2), weight, 0.0, length)


def test_build_constraints_from_mapping_and_reference():
    ref = torch.randint(0, 4, (100, 40), generator=torch.Generator().manual_seed(0))
    c = build_constraints({"gc_window": [0.3, 0.7], "max_homopolymer": 8, "kmer_quantile": 0.9}, reference=ref)
    assert isinstance(c, NaturalnessConstraints) and c.max_kmer_chi2 > 0
    assert build_constraints(None) is None
    with pytest.raises(ValueError, match="unknown keys"):
        build_constraints({"gc": [0.3, 0.7]})


def test_finetuning_logs_kl_and_feasibility_and_leash_reduces_drift(tmp_path):
    import lightning.pytorch as pl
    from tiny_models import finetuning

    def oracle(tokens):  # rewards A/T content: the hack the constraints and the leash must hold back
        return (tokens == 0).float().mean(1) * 10 + (tokens == 3).float().mean(1) * 10

    kls = {}
    for beta in (0.0, 3.0):
        m = finetuning(pretrained=_model(0), oracle=oracle, group_size=8, num_groups=2, seq_len=16,
                            num_steps=4, lr=1e-2, kl_penalty=beta, repel_margin=math.log(4),
                            constraints={"gc_window": [0.25, 0.75], "max_homopolymer": 6, "max_dust": None}, seed=0)
        pl.Trainer(max_epochs=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path).fit(m)
        h = m.history
        assert all(k in h[-1] for k in ("kl_ref", "feasible", "gc"))
        assert abs(h[0]["kl_ref"]) < 1e-4  # first iteration: policy == reference
        kls[beta] = sum(r["kl_ref"] for r in h[-3:]) / 3
    assert kls[3.0] < kls[0.0]
    with pytest.raises(ValueError, match="kl_estimator"):
        finetuning(pretrained=_model(0), oracle=oracle, seq_len=16, kl_estimator="nope")
    with pytest.raises(ValueError, match="kl_penalty"):
        finetuning(pretrained=_model(0), oracle=oracle, seq_len=16, kl_penalty=-1)


def test_anchor_kl_count_and_time_forms_estimate_the_same_path_kl():
    from simpo_bio.dna.finetune.leash import anchor_kl

    torch.manual_seed(0)
    ref = MaskedDiffusion(DilatedCNN(hidden_dim=16, num_stacks=1, dilations=(1, 2), kernel_size=3)).eval()
    pol = copy.deepcopy(ref)
    x = torch.randint(0, 4, (64, 24), generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    assert anchor_kl(pol, ref, x, generator=g).abs().max() < 1e-5  # zero at the reference, both forms
    assert anchor_kl(pol, ref, x, generator=g, by_count=False).abs().max() < 1e-5
    with torch.no_grad():
        for p in pol.parameters():
            p.add_(0.3 * torch.randn_like(p))
        count = torch.stack([anchor_kl(pol, ref, x, generator=g) for _ in range(64)])
        time_form = torch.stack([anchor_kl(pol, ref, x, generator=g, by_count=False) for _ in range(64)])
    assert (count >= 0).all() and count.mean() > 0
    # same expectation (up to the schedule's eps offset); the count form has the smaller spread
    assert count.mean().item() == pytest.approx(time_form.mean().item(), rel=0.1)
    assert count.mean(0).std() < time_form.mean(0).std()


