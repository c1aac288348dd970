"""Edge cases (N = 1, ties, all equal, huge magnitudes, overflow, per-group temperature) and f-divergences."""

import pytest
import torch

import simpo_bio.weighting as sw

SCHEMES = [("exp", {}), ("linear", {}), ("square", {}), ("power", {"p": 3.0}), ("linear_neg", {"eta": 0.5}),
           ("square_neg", {"eta": 0.5}), ("wd1", {"eta": 0.5})]


@pytest.mark.parametrize("name, params", SCHEMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_single_sample_and_all_equal_groups_are_uniform(name, params, dtype):
    one = sw.compute_weights(torch.tensor([[3.0], [-1e6]], dtype=dtype), name, **params)
    assert torch.equal(one.weight, torch.ones(2, 1, dtype=dtype))
    assert torch.equal(one.active, torch.ones(2, dtype=torch.long))
    for value in (0.0, 7.5, -1e6):
        out = sw.compute_weights(torch.full((3, 9), value, dtype=dtype), name, 0.01, **params)
        torch.testing.assert_close(out.weight, torch.full((3, 9), 1 / 9, dtype=dtype))
        torch.testing.assert_close(out.ess, torch.full((3,), 9.0, dtype=dtype))
        assert bool((out.negative_mass == 0).all())


@pytest.mark.parametrize("name, params", SCHEMES)
def test_ties_get_equal_weights(name, params):
    x = torch.tensor([[2.0, 1.0, 2.0, -1.0, 1.0, -1.0, 0.0]], dtype=torch.float64)
    w = sw.compute_weights(x, name, 0.8, **params).weight[0]
    assert w[0] == pytest.approx(float(w[2]), abs=1e-12)
    assert w[1] == pytest.approx(float(w[4]), abs=1e-12)
    assert w[3] == pytest.approx(float(w[5]), abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_huge_magnitudes(dtype):
    """1e6-scale advantages: the best sample takes the positive mass; signed floors hold exactly."""
    x = torch.tensor([[1e6, -1e6, 0.0, 5e5], [-3e6, -2e6, -1e6, -2.5e6]], dtype=dtype)
    for name in ("exp", "linear", "square"):
        w = sw.compute_weights(x, name).weight
        expected = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 0]], dtype=dtype)
        torch.testing.assert_close(w, expected)
    for name in ("linear_neg", "square_neg"):
        w = sw.compute_weights(x, name, eta=0.25).weight
        expected = torch.tensor([[1.75, -0.25, -0.25, -0.25], [-0.25, -0.25, 1.75, -0.25]], dtype=dtype)
        torch.testing.assert_close(w, expected)
    w = sw.compute_weights(x, "wd1", eta=0.5).weight  # (one-hot top - 0.5 one-hot bottom) / 0.5
    torch.testing.assert_close(w, torch.tensor([[2.0, -1.0, 0, 0], [-1.0, 0, 2.0, 0]], dtype=dtype))


def test_overflowing_scaled_advantage_raises():
    with pytest.raises(ValueError, match="advantage / temperature"):
        sw.compute_weights(torch.tensor([[1e300, 0.0]], dtype=torch.float64), "exp", 1e-300)


def test_per_group_temperature_and_integer_input():
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    temps = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    out = sw.compute_weights(x, "square_neg", temps, eta=0.3)
    for i in range(3):
        torch.testing.assert_close(out.weight[i], sw.compute_weights(x[i], "square_neg", float(temps[i]), eta=0.3).weight)
    w = sw.compute_weights(torch.tensor([3, 1, 2]), "linear").weight
    assert w.dtype == torch.get_default_dtype() and float(w.sum()) == pytest.approx(1.0)


def test_weights_are_detached_and_half_precision_is_accepted():
    x = torch.randn(2, 5, requires_grad=True)
    out = sw.compute_weights(x, "square")
    assert not out.weight.requires_grad
    h = sw.compute_weights(x.detach().to(torch.bfloat16), "linear_neg", eta=0.1)
    assert h.weight.dtype == torch.bfloat16


def test_scheme_object_and_params_are_exclusive():
    with pytest.raises(ValueError):
        sw.compute_weights(torch.randn(2, 3), sw.get_scheme("linear_neg"), eta=0.1)


def test_phi_is_monotone_and_matches_the_table():
    u = torch.linspace(-3, 3, 601, dtype=torch.float64)
    for name, params in SCHEMES:
        phi = sw.get_scheme(name, **params).phi(u)
        assert bool((phi[1:] >= phi[:-1]).all()), name
    torch.testing.assert_close(sw.get_scheme("square_neg", eta=0.5).phi(u), torch.clamp_min(u * u.abs(), -0.5))
    torch.testing.assert_close(sw.get_scheme("linear_neg", eta=0.5).phi(u), torch.clamp_min(u, -0.5))
    torch.testing.assert_close(sw.get_scheme("power", p=1.5).phi(u), torch.relu(u) ** 1.5)


# ---------------------------------------------------------------------------------------------- divergences


@pytest.mark.parametrize(
    "name, params, scheme", [("kl", {}, "exp"), ("chi2", {}, "linear"), ("alpha", {"alpha": 1.5}, "square"),
                             ("alpha", {"alpha": 2.0}, "linear"), ("alpha", {"alpha": 3.0}, "power")],
)
@pytest.mark.parametrize("lam", [0.05, 0.5, 3.0])
def test_induced_weighting_equals_closed_form_scheme(name, params, scheme, lam):
    div = sw.get_divergence(name, **params)
    assert div.scheme == scheme
    q = torch.randn(6, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    induced = sw.induced_weights(div, q, lam)
    closed = sw.compute_weights(q, div.scheme, div.temperature(lam, q.shape[-1]), **div.scheme_params).weight
    torch.testing.assert_close(closed, induced, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name, params", [("kl", {}), ("chi2", {}), ("alpha", {"alpha": 1.5}), ("alpha", {"alpha": 4})])
def test_generator_derivative_and_clipped_inverse(name, params):
    div = sw.get_divergence(name, **params)
    x = torch.linspace(0.2, 3.0, 50, dtype=torch.float64, requires_grad=True)
    fx = div.f(x)
    (grad,) = torch.autograd.grad(fx.sum(), x)
    torch.testing.assert_close(grad, div.f_prime(x.detach()))
    assert float(div.f(torch.tensor(1.0, dtype=torch.float64))) == pytest.approx(0.0, abs=1e-12)
    y = div.f_prime(x.detach())
    torch.testing.assert_close(div.weight_fn(y), x.detach())  # g inverts f' where positive
    low = torch.tensor([-1e3], dtype=torch.float64)
    assert float(div.weight_fn(low)) == pytest.approx(0.0, abs=1e-12)  # clipped at 0


def test_unknown_divergence_raises():
    with pytest.raises(ValueError):
        sw.get_divergence("hellinger")
    with pytest.raises(ValueError):
        sw.get_divergence("alpha", alpha=0.5)


@pytest.mark.parametrize("p, eta", [(1.0, 0.0), (2.0, 0.0), (1.0, 0.7)])
def test_active_set_fallback_to_sort_is_exact(monkeypatch, p, eta):
    """Groups the active-set iteration has not settled are re-solved by the sort solver."""
    from simpo_bio.weighting import active_set

    x = torch.randn(2, 5, 40, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 3
    mask = torch.rand(2, 5, 40, generator=torch.Generator().manual_seed(5)) < 0.8
    mask[..., 0] = True
    ref, _ = sw.threshold_exact(x, p, eta, mask, method="sort")
    monkeypatch.setattr(active_set, "ACTIVE_SET_MAX_ITER", 1)
    w, _ = sw.threshold_exact(x, p, eta, mask, method="active_set")
    torch.testing.assert_close(w, ref, atol=1e-12, rtol=0)
    bis, _ = sw.threshold_bisect(x, p, eta, mask)
    torch.testing.assert_close(w, bis, atol=1e-9, rtol=0)


@pytest.mark.parametrize("p, eta", [(1.0, 0.0), (2.0, 0.0), (1.0, 0.3), (2.0, 0.3), (2.0, 4.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_both_exact_methods_agree_on_large_masked_batches(p, eta, dtype):
    """Covers the path ``method='auto'`` takes on CPU for big inputs (active set), with ragged groups."""
    gen = torch.Generator().manual_seed(7)
    x = (torch.randn(64, 300, generator=gen, dtype=torch.float64) * torch.rand(64, 1, generator=gen) * 20).to(dtype)
    mask = torch.rand(64, 300, generator=gen) < torch.rand(64, 1, generator=gen)
    mask[:, 5] = True
    w_active, tau_active = sw.threshold_exact(x, p, eta, mask, method="active_set")
    w_sort, tau_sort = sw.threshold_exact(x, p, eta, mask, method="sort")
    w_bis, _ = sw.threshold_bisect(x.double(), p, eta, mask)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(w_active, w_sort, atol=tol, rtol=0)
    torch.testing.assert_close(w_active.double(), w_bis, atol=tol, rtol=0)
    assert bool((w_active[~mask] == 0).all())
    auto = sw.compute_weights(x, "linear_neg" if p == 1 else "square_neg", mask=mask, eta=eta)
    torch.testing.assert_close(auto.weight, w_active, atol=tol, rtol=0)


def test_wd1_is_the_documented_rule():
    """w = (softmax(x) - eta softmax(-x)) / (1 - eta); eta = 0 is exp; the wd1 direction for any eta."""
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    for eta in (0.0, 0.3, 0.9):
        w = sw.compute_weights(x, "wd1", 0.7, eta=eta).weight
        z = x / 0.7
        expected = (torch.softmax(z, -1) - eta * torch.softmax(-z, -1)) / (1 - eta)
        torch.testing.assert_close(w, expected)
    torch.testing.assert_close(sw.compute_weights(x, "wd1", eta=0.0).weight, sw.compute_weights(x, "exp").weight)
    # direction: (1 - eta) w + (eta - 1) softmax(x) ... i.e. w - softmax(x) is proportional to wd1's
    # softmax(x) - softmax(-x) when eta -> 1 (the scale diverges, the direction does not)
    w = sw.compute_weights(x, "wd1", eta=0.999).weight * (1 - 0.999)
    torch.testing.assert_close(w, torch.softmax(x, -1) - torch.softmax(-x, -1), atol=2e-3, rtol=0)


@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("scale", [0.01, 3.0, 300.0])
@pytest.mark.parametrize("masked", [False, True])
def test_long_groups_compacted_active_set_is_exact(p, scale, masked):
    """Long groups (>= 1024): the active-set solver works on the samples within 1 of the max only."""
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(3, 5000, generator=gen, dtype=torch.float64) * scale
    mask = None
    if masked:
        mask = torch.rand(3, 5000, generator=gen) < 0.5
        mask[2] = False
        mask[2, :3] = True  # a group with fewer valid samples than the compacted width
    w, tau = sw.threshold_exact(x, p, 0.0, mask, method="active_set")
    w_ref, tau_ref = sw.threshold_bisect(x, p, 0.0, mask)
    torch.testing.assert_close(w, w_ref, atol=1e-9, rtol=0)
    torch.testing.assert_close(tau, tau_ref, atol=1e-9 * (1 + tau_ref.abs().max()), rtol=0)


@pytest.mark.parametrize("max_iter", [2, 3, 5])
@pytest.mark.parametrize("p, eta", [(1.0, 0.0), (2.0, 0.0), (1.0, 0.5), (2.0, 0.5)])
def test_active_set_row_bookkeeping_with_early_stop(monkeypatch, max_iter, p, eta):
    """Groups finish at different steps and leave the working set; results must land on the right groups,
    including those still open when the step budget runs out (they go to the sort fallback)."""
    from simpo_bio.weighting import active_set

    gen = torch.Generator().manual_seed(11)
    x = torch.randn(512, 24, generator=gen, dtype=torch.float64) * torch.rand(512, 1, generator=gen) * 6
    mask = torch.rand(512, 24, generator=gen) < 0.85
    mask[:, 3] = True
    monkeypatch.setattr(active_set, "ACTIVE_SET_MAX_ITER", max_iter)
    w, tau = sw.threshold_exact(x, p, eta, mask, method="active_set")
    w_ref, tau_ref = sw.threshold_bisect(x, p, eta, mask)
    torch.testing.assert_close(w, w_ref, atol=1e-9, rtol=0)
    torch.testing.assert_close(tau, tau_ref, atol=1e-9 * (1 + tau_ref.abs().max()), rtol=0)
