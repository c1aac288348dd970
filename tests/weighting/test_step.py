"""The shared Stage-I step (simpo_bio/weighting/step.py): same numbers as the pieces, the dual moves T, resume."""

import pytest
import torch

from simpo_bio.weighting import (
    TemperatureController,
    WeightingStep,
    compute_weights,
    group_advantages,
)


def test_step_equals_the_pieces():
    r = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    step = WeightingStep("square_neg", {"eta": 0.5}, temperature=0.7, leave_one_out=True)
    out = step(r)
    adv = group_advantages(r, leave_one_out=True)
    ref = compute_weights(adv, step.scheme, torch.tensor(0.7))
    torch.testing.assert_close(out.advantage, adv)
    torch.testing.assert_close(out.weights.weight, ref.weight)
    assert out.temperature == pytest.approx(0.7)
    torch.testing.assert_close(out.weights.weight.sum(-1), torch.ones(3))


def test_fixed_temperature_never_moves():
    step = WeightingStep("exp", temperature=2.0)
    for _ in range(5):
        step(torch.randn(4, 8))
    assert float(step.temperature) == pytest.approx(2.0)


def test_dual_matches_a_hand_written_adam_step():
    r = torch.randn(8, 32, generator=torch.Generator().manual_seed(1))
    step = WeightingStep("exp", temperature=0.05, auto_temperature=True, target_kl=1.0, temperature_lr=0.1)
    ctl = TemperatureController("exp", temperature=0.05, target_kl=1.0)
    opt = torch.optim.Adam(ctl.parameters(), lr=0.1)
    for _ in range(3):
        out = step(r)
        w = compute_weights(group_advantages(r), "exp", ctl.temperature).weight
        opt.zero_grad()
        ctl.loss(w).backward()
        opt.step()
        torch.testing.assert_close(out.weights.weight, w)
    torch.testing.assert_close(step.temperature, ctl.temperature)
    # at T = 0.05 the weights are far more peaked than 1 nat: the dual must have raised T
    assert float(step.temperature) > 0.05


def test_update_false_computes_without_stepping():
    step = WeightingStep("exp", temperature=0.05, auto_temperature=True)
    step(torch.randn(4, 8), update=False)
    assert float(step.temperature) == pytest.approx(0.05)


def test_dual_scheme_feeds_the_kl():
    r = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
    step = WeightingStep("linear_neg", temperature=1.0, dual_scheme="linear")
    out = step(r, update=False)
    w_lin = compute_weights(group_advantages(r), "linear", torch.tensor(1.0)).weight
    ctl = TemperatureController("linear")
    assert out.weight_kl == pytest.approx(float(ctl.kl(w_lin)))


def test_state_dict_resumes_temperature_and_adam_moments():
    gen = torch.Generator().manual_seed(3)
    rewards = [torch.randn(4, 16, generator=gen) for _ in range(6)]
    a = WeightingStep("exp", temperature=0.1, auto_temperature=True)
    for r in rewards[:3]:
        a(r)
    assert "_extra_state" in a.state_dict()
    b = WeightingStep("exp", temperature=0.1, auto_temperature=True)
    b.load_state_dict(a.state_dict())
    # the same temperature without the optimiser state (fresh Adam moments): its trajectory must differ
    c = WeightingStep("exp", temperature=float(a.temperature), auto_temperature=True)
    for r in rewards[3:]:
        a(r)
        b(r)
        c(r)
    assert float(a.temperature) == float(b.temperature)
    assert float(a.temperature) != float(c.temperature)


@pytest.mark.parametrize("kw", [dict(temperature=0.0), dict(temperature=float("nan")), dict(temperature_lr=0.0),
                                dict(target_kl=-1.0), dict(temperature_min=2.0, temperature_max=1.0)])
def test_bad_values_raise(kw):
    with pytest.raises(ValueError):
        WeightingStep("exp", **kw)


def test_unknown_scheme_raises():
    with pytest.raises(ValueError):
        WeightingStep("no_such_scheme")
