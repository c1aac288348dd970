"""MaskedDiffusion.log_likelihood: the per-sequence ELBO estimate of designs.csv's log_lik without exact zeros.

Why it exists: a one-draw -elbo_loss per sequence gives exactly 0 when its time t is so small that no position is
masked (probability (1 - t)^L), and a huge negative value when one position is masked at t ~ eps (weight 1/t).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from simpo_bio.diffusion.masked import MaskedDiffusion
from simpo_bio.dna.models.backbones import DilatedCNN

torch.set_num_threads(1)


class FixedLogits(nn.Module):
    """The same logits ``[L, V]`` whatever the input: then ``log p(x)`` is exact and the bound is tight."""

    vocab_size = 5

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("logits", logits)

    def forward(self, tokens, sigma):
        return self.logits.expand(tokens.shape[0], -1, -1).clone()


def test_tight_bound_of_a_context_free_model_is_the_exact_log_likelihood():
    length = 12
    logits = torch.randn(length, 5, generator=torch.Generator().manual_seed(0))
    model = MaskedDiffusion(FixedLogits(logits))
    x = torch.randint(0, 4, (6, length), generator=torch.Generator().manual_seed(1))
    logp = torch.log_softmax(logits[:, :4], dim=-1)
    exact = logp.expand(x.shape[0], -1, -1).gather(-1, x.unsqueeze(-1)).squeeze(-1).sum(-1)
    est = model.log_likelihood(x, num_draws=length * 40, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(est, exact, rtol=0.02, atol=0.05)


def test_no_zero_estimates_and_far_less_spread_than_one_draw_elbo():
    torch.manual_seed(0)
    model = MaskedDiffusion(DilatedCNN(hidden_dim=16, num_stacks=1, dilations=(1, 2), kernel_size=3)).eval()
    length = 200
    x = torch.randint(0, 4, (1, length), generator=torch.Generator().manual_seed(3)).repeat(512, 1)
    with torch.no_grad():
        one_draw = -model.elbo_loss(x, generator=torch.Generator().manual_seed(4))
    ours = model.log_likelihood(x, num_draws=1, generator=torch.Generator().manual_seed(5))
    assert (one_draw == 0).sum() >= 1  # the failure mode of designs.csv's log_lik (t so small nothing is masked)
    assert (ours != 0).all()
    # both estimate the same bound (up to the schedule's eps offset) ...
    assert ours.mean().item() == pytest.approx(one_draw.mean().item(), rel=0.03)
    assert ours.mean().item() == pytest.approx(-length * math.log(4), rel=0.1)  # untrained: about uniform
    # ... the per-sequence spread is what changes
    assert ours.std().item() < 0.5 * one_draw.std().item()
    assert ours.min().item() > one_draw.min().item()
    again = model.log_likelihood(x[:4], num_draws=8, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(again, model.log_likelihood(x[:4], num_draws=8, generator=torch.Generator().manual_seed(6)))
    with pytest.raises(ValueError, match="num_draws"):
        model.log_likelihood(x[:1], num_draws=0)


def _cnn(seed: int = 0) -> MaskedDiffusion:
    torch.manual_seed(seed)
    return MaskedDiffusion(DilatedCNN(hidden_dim=16, num_stacks=1, dilations=(1, 2), kernel_size=3))


def test_elbo_loss_by_count_is_differentiable_and_the_negative_log_likelihood_estimate():
    model = _cnn()
    x = torch.randint(0, 4, (5, 40), generator=torch.Generator().manual_seed(1))
    nelbo = model.elbo_loss_by_count(x, num_draws=3, generator=torch.Generator().manual_seed(2))
    assert nelbo.shape == (5,) and (nelbo > 0).all()
    nelbo.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with torch.no_grad():
        again = -model.log_likelihood(x, num_draws=3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(nelbo.detach(), again)
    with pytest.raises(ValueError, match="num_draws"):
        model.elbo_loss_by_count(x, num_draws=0)


def test_shared_noise_masks_the_same_positions_in_every_sequence():
    model = FixedLogits(torch.zeros(30, 5))
    diff = MaskedDiffusion(model)
    x = torch.randint(0, 4, (1, 30), generator=torch.Generator().manual_seed(3)).repeat(8, 1)
    shared = diff.elbo_loss_by_count(x, num_draws=1, shared_noise=True, generator=torch.Generator().manual_seed(4))
    independent = diff.elbo_loss_by_count(x, num_draws=1, generator=torch.Generator().manual_seed(4))
    # uniform logits: -log p per masked position = log 4, weight L / k: every draw gives L log 4 exactly; a
    # position-dependent model tells the two apart
    torch.testing.assert_close(shared, torch.full((8,), 30 * math.log(4)))
    logits = torch.randn(30, 5, generator=torch.Generator().manual_seed(5))
    diff = MaskedDiffusion(FixedLogits(logits))
    shared = diff.elbo_loss_by_count(x, num_draws=1, shared_noise=True, generator=torch.Generator().manual_seed(6))
    independent = diff.elbo_loss_by_count(x, num_draws=1, generator=torch.Generator().manual_seed(6))
    assert torch.unique(shared).numel() == 1  # identical sequences, identical masks -> identical estimates
    assert torch.unique(independent).numel() > 1


def test_shared_noise_cancels_in_a_zero_sum_weighted_elbo():
    """The fine-tuning loss sum_i w_i ELBO_i with signed weights: with common masks the noise that every sequence
    shares (how many positions are masked, and which) cancels; with independent masks it does not."""
    model = _cnn(1)
    base = torch.randint(0, 4, (1, 60), generator=torch.Generator().manual_seed(7))
    x = base.repeat(16, 1)
    x[8:, 30] = (x[8:, 30] + 1) % 4  # two kinds of sequence, one base apart
    w = torch.cat([torch.full((8,), 1.0), torch.full((8,), -1.0)]) / 8  # zero-sum: prefer kind 1 over kind 2
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        shared = torch.stack([(w * model.elbo_loss_by_count(x, shared_noise=True, generator=g)).sum()
                              for _ in range(256)])
        independent = torch.stack([(w * model.elbo_loss_by_count(x, generator=g)).sum() for _ in range(256)])
    assert shared.std() < 0.75 * independent.std()  # measured 0.3-0.74 over five model seeds; about 1 if ignored
    # same expectation (both unbiased): the means agree within the independent estimator's standard error
    assert abs(shared.mean() - independent.mean()) < 4 * independent.std() / 16
