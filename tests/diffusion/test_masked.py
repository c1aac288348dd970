"""MDLM masked diffusion: subs parameterisation, per-sample ELBO, antithetic times, ancestral sampler."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from torch import nn

from simpo_bio.diffusion.masked import LogLinearSchedule, MaskedDiffusion, antithetic_times
from simpo_bio.dna.models.backbones import DilatedCNN

torch.set_num_threads(1)
MASK = 4


def tiny_backbone(seed: int = 0, hidden: int = 16) -> DilatedCNN:
    torch.manual_seed(seed)
    return DilatedCNN(hidden_dim=hidden, num_stacks=1, dilations=(1, 2), kernel_size=3, block_order="interleaved")


class FixedLogits(nn.Module):
    """Ignores the input: the same logits ``[L, V]`` for every sequence."""

    vocab_size = 5

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("logits", logits)
        self.calls = 0

    def forward(self, tokens, sigma):
        self.calls += 1
        return self.logits.expand(tokens.shape[0], -1, -1).clone()


def test_subs_parameterisation_invariants():
    model = MaskedDiffusion(tiny_backbone(), mask_index=MASK)
    g = torch.Generator().manual_seed(0)
    z = torch.randint(0, 5, (6, 20), generator=g)
    z[0] = MASK  # one fully masked row
    log_probs = model(z, torch.rand(6, generator=g))
    assert log_probs.shape == (6, 20, 5)
    # the mask token is never predicted
    assert torch.isneginf(log_probs[..., MASK]).all()
    masked = z == MASK
    # masked positions: a proper distribution over the four bases
    lse = torch.logsumexp(log_probs[masked], dim=-1)
    torch.testing.assert_close(lse, torch.zeros_like(lse), atol=1e-5, rtol=0)
    assert torch.isfinite(log_probs[masked][:, :4]).all()
    # unmasked positions: the observed token is carried over with probability one
    carried = log_probs[~masked]
    tok = z[~masked]
    assert (carried.gather(-1, tok[:, None]).squeeze(-1) == 0).all()
    others = torch.ones_like(carried, dtype=torch.bool).scatter_(-1, tok[:, None], False)
    assert torch.isneginf(carried[others]).all()


def test_antithetic_times_are_stratified():
    eps, b = 1e-3, 64
    t = antithetic_times(b, eps=eps, generator=torch.Generator().manual_seed(3))
    assert t.shape == (b,) and (t >= eps).all() and (t <= 1).all()
    u = torch.sort((t - eps) / (1 - eps)).values
    gaps = u[1:] - u[:-1]
    torch.testing.assert_close(gaps, torch.full_like(gaps, 1.0 / b), atol=1e-5, rtol=0)
    # without antithetic sampling the times are i.i.d.: the gaps are not all equal
    t_iid = antithetic_times(b, eps=eps, antithetic=False, generator=torch.Generator().manual_seed(3))
    gaps_iid = torch.diff(torch.sort(t_iid).values)
    assert gaps_iid.std() > 1e-3


def test_elbo_matches_closed_form_for_uniform_model():
    # A model predicting uniform bases has E[ELBO_loss(x)] = L (1 - eps) ln 4 for every x and every t.
    length, eps = 40, 1e-3
    logits = torch.zeros(length, 5)
    model = MaskedDiffusion(FixedLogits(logits), mask_index=MASK, eps=eps)
    x = torch.randint(0, 4, (4000, length), generator=torch.Generator().manual_seed(0))
    nll = model.elbo_loss(x, generator=torch.Generator().manual_seed(1))
    assert nll.shape == (4000,) and torch.isfinite(nll).all() and (nll >= 0).all()
    expected = length * (1 - eps) * math.log(4)
    assert abs(float(nll.mean()) - expected) < 0.02 * expected


def test_elbo_loss_is_per_sample_reproducible_and_validates_input():
    model = MaskedDiffusion(tiny_backbone(), mask_index=MASK)
    x = torch.randint(0, 4, (8, 30), generator=torch.Generator().manual_seed(0))
    a = model.elbo_loss(x, generator=torch.Generator().manual_seed(5))
    b = model.elbo_loss(x, generator=torch.Generator().manual_seed(5))
    assert a.shape == (8,)
    torch.testing.assert_close(a, b)
    # a given time vector is used as such: t = 1 masks ~all tokens, weight 1
    t = torch.ones(8)
    c = model.elbo_loss(x, t=t, generator=torch.Generator().manual_seed(5))
    assert torch.isfinite(c).all()
    bad = x.clone()
    bad[2, 7] = MASK
    with pytest.raises(ValueError, match="sequence 2 .* position 7"):
        model.elbo_loss(bad)
    with pytest.raises(ValueError, match="long token tensor"):
        model.elbo_loss(x.float())


def test_elbo_decreases_on_tiny_overfit_run():
    torch.manual_seed(0)
    model = MaskedDiffusion(tiny_backbone(hidden=24), mask_index=MASK)
    x = torch.randint(0, 4, (4, 24), generator=torch.Generator().manual_seed(1)).repeat(8, 1)

    def eval_elbo() -> float:
        with torch.no_grad():
            g = torch.Generator().manual_seed(123)
            return float(torch.stack([model.elbo_loss(x, generator=g) for _ in range(8)]).mean())

    before = eval_elbo()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model.elbo_loss(x).mean()
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_elbo()
    assert math.isfinite(after)
    assert after < 0.6 * before, (before, after)


def test_reveal_step_probs_loglinear_is_uniform():
    model = MaskedDiffusion(tiny_backbone(), mask_index=MASK)
    p = model.reveal_step_probs(16)
    torch.testing.assert_close(p.sum(), torch.tensor(1.0))
    torch.testing.assert_close(p, torch.full((16,), 1 / 16))
    sched = LogLinearSchedule(1e-3)
    torch.testing.assert_close(sched.elbo_weight(torch.tensor([0.5])), torch.tensor([2.0]))


def test_sampler_shapes_determinism_and_no_mask():
    model = MaskedDiffusion(tiny_backbone(), mask_index=MASK)
    a = model.sample(10, 33, num_steps=12, seed=7)
    b = model.sample(10, 33, num_steps=12, seed=7)
    c = model.sample(10, 33, num_steps=12, seed=8)
    assert a.shape == (10, 33) and a.dtype == torch.long
    assert ((a >= 0) & (a < 4)).all()  # never the mask token
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    d = model.sample(7, 33, num_steps=5, batch_size=3, generator=g1)
    e = model.sample(7, 33, num_steps=5, batch_size=3, generator=g2)
    assert d.shape == (7, 33) and torch.equal(d, e)
    assert model.training  # the train/eval flag is restored
    with pytest.raises(ValueError):
        model.sample(0, 10)
    with pytest.raises(ValueError):
        model.sample(2, 10, seed=1, generator=g1)


def test_sampler_never_emits_mask_even_when_model_prefers_it():
    logits = torch.zeros(20, 5)
    logits[:, MASK] = 50.0  # subs must ignore the mask logit
    logits[:, 3] = -50.0
    model = MaskedDiffusion(FixedLogits(logits), mask_index=MASK)
    x = model.sample(64, 20, num_steps=8, seed=0)
    assert ((x >= 0) & (x < 3)).all()


def test_sampler_marginals_follow_model_and_skip_empty_steps():
    torch.manual_seed(0)
    length = 6
    logits = torch.randn(length, 5)
    backbone = FixedLogits(logits)
    model = MaskedDiffusion(backbone, mask_index=MASK)
    n = 20000
    x = model.sample(n, length, num_steps=4, seed=0)
    probs = torch.softmax(logits[:, :4], -1)
    freq = torch.stack([torch.bincount(x[:, i], minlength=4).float() / n for i in range(length)])
    assert (freq - probs).abs().max() < 0.02
    # single sequence, 50 steps, 3 positions: the backbone runs once per step that reveals something (<= 3)
    backbone.calls = 0
    model.sample(1, 3, num_steps=50, seed=0)
    assert 1 <= backbone.calls <= 3


def _reference_sampler(model: MaskedDiffusion, n: int, length: int, steps: int, gen: torch.Generator):
    """Step-by-step MDLM ancestral sampler (every step, every sequence, grid 1 -> 0)."""
    x = torch.full((n, length), MASK, dtype=torch.long)
    grid = torch.linspace(1, 0, steps + 1)
    sched = model.schedule
    for i in range(steps):
        t, s = grid[i], grid[i + 1]
        p_x0 = model(x, sched.sigma(t).expand(n)).exp()  # subs probabilities
        m_t, m_s = sched.move_chance(t), sched.move_chance(s)
        q = p_x0 * (m_t - m_s) / m_t
        q[..., MASK] = m_s / m_t
        u = torch.rand(q.shape[:-1], generator=gen)[..., None]
        draw = (q.cumsum(-1) < u).sum(-1).clamp(max=4)
        x = torch.where(x == MASK, draw, x)
    return x


def test_sampler_matches_step_by_step_reference_distribution():
    # Context-dependent tiny model, L = 3: compare the empirical distributions over all 64 sequences.
    model = MaskedDiffusion(tiny_backbone(seed=4, hidden=8), mask_index=MASK)
    with torch.no_grad():
        for p in model.backbone.parameters():
            if p.requires_grad:
                p.mul_(3.0)  # sharpen so that the context matters
    n, length, steps = 12000, 3, 4
    with torch.no_grad():
        ours = model.sample(n, length, num_steps=steps, seed=0)
        ref = _reference_sampler(model.eval(), n, length, steps, torch.Generator().manual_seed(1))

    def dist(x):
        codes = (x[:, 0] * 16 + x[:, 1] * 4 + x[:, 2]).tolist()
        c = Counter(codes)
        return torch.tensor([c.get(k, 0) / len(codes) for k in range(64)])

    p, q = dist(ours), dist(ref)
    assert (ref != MASK).all()
    tv = 0.5 * (p - q).abs().sum()
    assert tv < 0.04, float(tv)
    # the tiny model's distribution is far from uniform, so the comparison has power
    assert 0.5 * (p - 1 / 64).abs().sum() > 0.1
