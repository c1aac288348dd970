"""bench/dna_policy_alone.py's reward-gradient candidate (thirteenth grid): the relaxed sampler, the differentiable
oracle reading, the fit, its calls and bad values."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_finetune import tiny_policy

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dna_policy_alone.py"
L = 20


def bench():
    spec = importlib.util.spec_from_file_location("bench_dna_policy_alone_rg", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny_oracle(seed: int = 0):
    from simpo_bio.dna.oracles.oracle import CellTypeCNN, CellTypeOracle

    torch.manual_seed(seed)
    net = CellTypeCNN(channels=8, first_kernel=5, kernel=3, num_blocks=1, pool=2)
    for mod in net.modules():  # non-trivial batch-norm statistics, so that eval mode matters
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return CellTypeOracle(net, seq_len=L)


def make(oracle=None):
    from simpo_bio.dna.finetune import RewardConfig, SamplingConfig, SiMPOFineTuning

    return SiMPOFineTuning(pretrained=tiny_policy(), oracle=oracle or tiny_oracle(), seed=1, log_reference_elbo=False,
                           sampling=SamplingConfig(group_size=16, num_groups=1, num_steps=4, seq_len=L),
                           reward=RewardConfig(constraints=None))


def test_soft_reward_on_a_one_hot_equals_the_oracle_and_has_a_gradient():
    b, o = bench(), tiny_oracle()
    x = torch.randint(0, 4, (12, L), generator=torch.Generator().manual_seed(0))
    p = F.one_hot(x, 4).float().requires_grad_(True)
    r = b.soft_oracle_reward(o, p)
    torch.testing.assert_close(r, o(x))
    r.sum().backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="CellTypeOracle"):
        b.soft_oracle_reward(lambda t: t.sum(-1), p)


def test_relaxed_sample_draws_the_policy_distribution_as_exact_one_hots():
    b = bench()
    policy = tiny_policy(seed=3)
    with torch.no_grad():
        p, kl = b.relaxed_sample(policy, policy, 4000, L, num_steps=4, generator=torch.Generator().manual_seed(0))
    assert p.shape == (4000, L, 4) and kl.shape == (4000,)
    # one-hot up to float rounding (the straight-through sum hard + soft - soft)
    torch.testing.assert_close(p, F.one_hot(p.argmax(-1), 4).float(), atol=1e-6, rtol=0)
    assert kl.abs().max() < 1e-5  # the same model on both sides
    # base frequencies match the ordinary ancestral sampler of the same model (4,000 draws each)
    ref = policy.sample(4000, L, num_steps=4, seed=1)
    freq_relaxed = p.mean((0, 1))
    freq_sampler = F.one_hot(ref, 5)[..., :4].float().mean((0, 1))
    assert (freq_relaxed - freq_sampler).abs().max() < 0.01
    # and the per-position frequencies too (positions differ: the first and last see padding)
    assert (p.mean(0) - F.one_hot(ref, 5)[..., :4].float().mean(0)).abs().max() < 0.05


def test_relaxed_sample_kl_is_positive_between_different_models_and_differentiable():
    b = bench()
    policy, reference = tiny_policy(seed=0), tiny_policy(seed=1).requires_grad_(False)
    p, kl = b.relaxed_sample(policy, reference, 8, L, num_steps=4, generator=torch.Generator().manual_seed(0))
    assert (kl > 0).all()
    (kl.mean() + p[..., 1].sum()).backward()
    assert all(q.grad is not None for q in policy.parameters() if q.requires_grad)
    assert all(q.grad is None for q in reference.parameters())


def test_truncation_keeps_the_gradient_of_the_last_steps_only():
    b = bench()
    grads = {}
    for trunc in (None, 1):
        policy = tiny_policy(seed=0)
        p, _ = b.relaxed_sample(policy, tiny_policy(seed=1).requires_grad_(False), 8, L, num_steps=4, truncate=trunc,
                                generator=torch.Generator().manual_seed(0))
        p[..., 2].sum().backward()
        grads[trunc] = torch.cat([q.grad.flatten() for q in policy.parameters() if q.requires_grad])
    assert grads[1].abs().sum() > 0
    assert not torch.allclose(grads[None], grads[1])


def test_fit_raises_the_oracle_reward_counts_calls_and_leaves_the_reference():
    b, m = bench(), make()
    ref_before = {k: v.clone() for k, v in m.reference.state_dict().items()}
    before = m.oracle(m.policy.sample(1024, L, num_steps=4, seed=9)).mean()
    b.reward_gradient_fit(m, 0, iterations=40, batch=16, lr=1e-2, alpha=0.0, num_steps=4)
    after = m.oracle(m.policy.sample(1024, L, num_steps=4, seed=9)).mean()
    assert int(m.reward_queries) == 40 * 16 and len(m.history) == 40
    assert after > before + 0.1
    assert all(torch.equal(ref_before[k], v) for k, v in m.reference.state_dict().items())


def test_a_larger_kl_weight_keeps_the_policy_closer():
    b = bench()
    kls = []
    for alpha in (0.0, 3.0):
        m = make()
        b.reward_gradient_fit(m, 0, iterations=30, batch=16, lr=1e-2, alpha=alpha, num_steps=4)
        kls.append(sum(h["kl_ref"] for h in m.history[-5:]) / 5)
    assert kls[1] < kls[0]


@pytest.mark.parametrize("kw", [{"iterations": 0}, {"batch": 0}, {"lr": 0.0}, {"alpha": -1.0}, {"tau": 0.0}])
def test_bad_values_fail_at_once(kw):
    b, m = bench(), make()
    args = {"iterations": 1, "batch": 4, "lr": 1e-3, "alpha": 0.1, "tau": 1.0, **kw}
    with pytest.raises(ValueError, match="reward_gradient"):
        b.reward_gradient_fit(m, 0, **args, num_steps=4)
    assert int(m.reward_queries) == 0


def test_grid_entries_spend_1920_or_the_gates_4000_calls():
    b = bench()
    calls = {e: b.entry_calls(spec) for e, spec in b.GRID.items() if "reward_gradient" in spec}
    assert len(calls) == 9
    assert {e for e, c in calls.items() if c == 4000} == {"rgc_k10_m10_c4000", "rgc_k5_m5_c4000", "rgc_k10_m30_c4000"}
    assert set(calls.values()) == {1920, 4000}


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    from simpo_bio.dna.evaluation.metrics import MotifScanner

    return MotifScanner.jaspar(max_motifs=12, cache_dir=tmp_path_factory.mktemp("motifs"))


def test_soft_composition_equals_the_exact_counts_on_one_hots(scanner):
    from simpo_bio.dna.data.composition import kmer_frequencies

    b = bench()
    x = torch.randint(0, 4, (16, 60), generator=torch.Generator().manual_seed(2))
    x[:4, 10:30] = torch.tensor([0, 1, 2, 3] * 5)  # some structure, so that a few motifs may hit
    p = F.one_hot(x, 4).float().requires_grad_(True)
    torch.testing.assert_close(b.soft_kmer_frequencies(p).double(), kmer_frequencies(x))
    prof = b.soft_motif_profile(scanner, p)
    torch.testing.assert_close(prof, scanner.count(x).mean(0))
    (b.soft_kmer_frequencies(p)[5] + prof.sum()).backward()
    assert p.grad.abs().sum() > 0
    assert abs(float(b.pearson_t(torch.tensor([1.0, 2, 3]), torch.tensor([2.0, 4, 7]))) - 0.9934) < 1e-3


def test_the_kmer_term_pulls_the_policy_spectrum_toward_the_prior():
    b = bench()
    corr = {}
    for w in (0.0, 20.0):
        m = make()
        b.reward_gradient_fit(m, 0, iterations=30, batch=16, lr=1e-2, alpha=0.0, num_steps=4, kmer_weight=w)
        assert ("kmer_corr_prior" in m.history[-1]) == (w > 0)
        prior, _ = b.composition_prior(m, None, num=512)
        with torch.no_grad():
            x = m.policy.sample(512, L, num_steps=4, seed=3)
        corr[w] = float(b.pearson_t(b.soft_kmer_frequencies(F.one_hot(x, 5)[..., :4].float()), prior))
    assert corr[20.0] > corr[0.0] + 0.05


def test_the_motif_term_needs_a_scanner_and_runs_with_one(scanner):
    b, m = bench(), make()
    with pytest.raises(ValueError, match="scanner"):
        b.reward_gradient_fit(m, 0, iterations=1, batch=4, num_steps=4, motif_weight=1.0)
    with pytest.raises(ValueError, match="composition weights"):
        b.reward_gradient_fit(m, 0, iterations=1, batch=4, num_steps=4, kmer_weight=-1.0)
    assert int(m.reward_queries) == 0
    b.reward_gradient_fit(m, 0, iterations=2, batch=4, num_steps=4, motif_weight=1.0, scanner=scanner)
    assert "motif_corr_prior" in m.history[-1] and int(m.reward_queries) == 8
