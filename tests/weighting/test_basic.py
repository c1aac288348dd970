"""Basic behaviour of the weighting API (registry, sums, masks, errors, advantages, temperature)."""

import math

import pytest
import torch

import simpo_bio.weighting as sw

ALL = [
    ("exp", {}),
    ("linear", {}),
    ("square", {}),
    ("power", {"p": 3.0}),
    ("power", {"p": 0.5}),
    ("linear_neg", {"eta": 0.3}),
    ("square_neg", {"eta": 0.3}),
    ("wd1", {"eta": 0.5}),
]


def test_registry_lists_the_seven_schemes():
    assert sw.available_schemes() == ["exp", "linear", "square", "power", "linear_neg", "square_neg", "wd1"]
    assert [sw.get_scheme(n).signed for n in sw.available_schemes()] == [False] * 4 + [True] * 3
    assert not sw.get_scheme("linear_neg", eta=0.0).signed


@pytest.mark.parametrize(
    "name, params",
    [("nope", {}), ("power", {"p": 0.0}), ("power", {"q": 1.0}), ("linear_neg", {"eta": -1.0}),
     ("wd1", {"eta": 1.0}), ("exp", {"eta": 1.0})],
)
def test_bad_scheme_or_parameter_raises(name, params):
    with pytest.raises(ValueError):
        sw.get_scheme(name, **params)


@pytest.mark.parametrize("name, params", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weights_sum_to_one_and_diagnostics(name, params, dtype):
    g = torch.Generator().manual_seed(0)
    adv = torch.randn(8, 5, 16, generator=g, dtype=dtype)
    out = sw.compute_weights(adv, name, 0.7, **params)
    assert out.weight.shape == adv.shape and out.weight.dtype == dtype
    assert out.tau.shape == out.active.shape == out.negative_mass.shape == out.ess.shape == (8, 5)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out.weight.sum(-1), torch.ones(8, 5, dtype=dtype), atol=tol, rtol=0)
    assert torch.equal(out.active, (out.weight != 0).sum(-1))
    torch.testing.assert_close(out.negative_mass, (-out.weight).clamp_min(0).sum(-1))
    assert bool((out.ess >= 1 - 1e-6).all()) and bool((out.ess <= 16 + 1e-4).all())
    if not sw.get_scheme(name, **params).signed:
        assert bool((out.weight >= 0).all())


@pytest.mark.parametrize("name, params", ALL)
def test_mask_gives_zero_weight_and_matches_the_cropped_group(name, params):
    g = torch.Generator().manual_seed(1)
    adv = torch.randn(4, 10, generator=g, dtype=torch.float64)
    mask = torch.ones(4, 10, dtype=torch.bool)
    mask[:, 7:] = False
    garbage = adv.clone()
    garbage[:, 7:] = float("nan")
    out = sw.compute_weights(garbage, name, 0.5, mask=mask, **params)
    ref = sw.compute_weights(adv[:, :7], name, 0.5, **params)
    assert bool((out.weight[:, 7:] == 0).all())
    torch.testing.assert_close(out.weight[:, :7], ref.weight, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name, params", ALL)
def test_non_finite_advantage_names_the_group(name, params):
    adv = torch.zeros(3, 4, 5)
    adv[2, 1, 3] = float("inf")
    with pytest.raises(ValueError, match=r"group \(2, 1\) at position 3"):
        sw.compute_weights(adv, name, **params)
    adv[2, 1, 3] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        sw.compute_weights(adv, name, **params)


def test_empty_group_and_bad_temperature_raise():
    adv = torch.randn(3, 4)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match=r"group \(1\) has no valid sample"):
        sw.compute_weights(adv, "square", mask=mask)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            sw.compute_weights(adv, "linear", bad)


def test_group_advantages():
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0], [0.1, 0.1, 0.1, 0.1]], dtype=torch.float64)
    a = sw.group_advantages(r)
    torch.testing.assert_close(a[0], (r[0] - 2.5) / (r[0].std(correction=0) + 1e-8))
    assert bool((a[1:] == 0).all())  # zero variance -> exactly 0
    loo = sw.group_advantages(r, leave_one_out=True, normalize=False)
    expected = r[0] - torch.stack([(r[0].sum() - r[0][i]) / 3 for i in range(4)])
    torch.testing.assert_close(loo[0], expected)
    mask = torch.tensor([True, True, False, False]).expand(3, 4)
    am = sw.group_advantages(r, mask=mask, normalize=False)
    torch.testing.assert_close(am[0], torch.tensor([-0.5, 0.5, 0.0, 0.0], dtype=torch.float64))
    assert torch.equal(sw.group_advantages(torch.tensor([[3.0]])), torch.zeros(1, 1))
    assert torch.equal(sw.group_advantages(torch.tensor([[3.0]]), leave_one_out=True), torch.zeros(1, 1))
    with pytest.raises(ValueError, match=r"reward has a non-finite value .* group \(1\) at position 0"):
        sw.group_advantages(torch.tensor([[1.0, 2.0], [float("nan"), 1.0]]))


@pytest.mark.parametrize("name, init", [("exp", 1.0), ("linear", 1.0), ("square", 0.05), ("wd1", 5.0),
                                        ("linear_neg", 0.05), ("square_neg", 3.0)])
def test_temperature_controller_reaches_target_kl(name, init):
    torch.manual_seed(0)
    adv = sw.group_advantages(torch.randn(64, 32, dtype=torch.float64))
    target = 1.0
    scheme = sw.get_scheme(name, **({"eta": 0.2} if name.endswith("_neg") else {}))
    ctrl = sw.TemperatureController(scheme, temperature=init, target_kl=target)
    opt = torch.optim.Adam(ctrl.parameters(), lr=3e-2)
    for _ in range(400):
        out = sw.compute_weights(adv, ctrl.scheme, ctrl.temperature)
        loss = ctrl.loss(out.weight)
        opt.zero_grad()
        loss.backward()
        # the contract: d loss / d log_temperature = target_kl - KL(w || uniform)
        torch.testing.assert_close(ctrl.log_temperature.grad, (target - ctrl.kl(out.weight)).float())
        opt.step()
    final = sw.kl_to_uniform(ctrl.weights(adv).weight).mean()
    assert abs(float(final) - target) < 0.02
    assert ctrl.temperature > 0 and not ctrl.temperature.requires_grad


def test_kl_to_uniform_uses_the_positive_part():
    w = torch.tensor([[0.25, 0.25, 0.25, 0.25]])
    assert float(sw.kl_to_uniform(w)) == pytest.approx(0.0, abs=1e-7)
    w = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert float(sw.kl_to_uniform(w)) == pytest.approx(math.log(4))
    w = torch.tensor([[1.2, 0.3, -0.5, 0.0]])  # positive part renormalised: (0.8, 0.2, 0, 0)
    expected = math.log(4) + 0.8 * math.log(0.8) + 0.2 * math.log(0.2)
    assert float(sw.kl_to_uniform(w)) == pytest.approx(expected)
    mask = torch.tensor([[True, True, False, False]])
    assert float(sw.kl_to_uniform(torch.tensor([[0.5, 0.5, 9.0, -3.0]]), mask)) == pytest.approx(0.0, abs=1e-7)
