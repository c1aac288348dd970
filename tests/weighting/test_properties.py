"""Property-based tests of the normalisers (hypothesis): groups of 1..512 samples, float32 and float64."""

import pytest
import torch
from entmax import entmax15, sparsemax
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simpo_bio.weighting as sw

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCHEMES = [
    ("exp", {}),
    ("linear", {}),
    ("square", {}),
    ("power", {"p": 3.0}),
    ("power", {"p": 0.7}),
    ("linear_neg", {"eta": 0.4}),
    ("square_neg", {"eta": 0.4}),
    ("linear_neg", {"eta": 2.0}),
    ("square_neg", {"eta": 0.05}),
    ("wd1", {"eta": 0.6}),
]
EXACT = [("linear", 1.0, 0.0), ("square", 2.0, 0.0), ("linear_neg", 1.0, 0.4), ("square_neg", 2.0, 0.4),
         ("square_neg", 2.0, 3.0), ("linear_neg", 1.0, 0.01)]


@st.composite
def groups(draw, dtypes=(torch.float32, torch.float64)):
    """A ``[G, N]`` advantage tensor: N in 1..512, varied scale, optional ties (rounding)."""
    n = draw(st.integers(1, 512))
    g = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(dtypes))
    scale = draw(st.sampled_from([1e-3, 0.1, 1.0, 3.0, 30.0]))
    ties = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(g, n, generator=gen, dtype=torch.float64) * scale
    if ties:
        x = (x / scale * 2).round() * scale / 2
    return x.to(dtype)


def _tol(dtype):
    return 2e-5 if dtype == torch.float32 else 1e-10


@SETTINGS
@given(x=groups(), k=st.integers(0, len(SCHEMES) - 1), temperature=st.sampled_from([0.05, 0.5, 1.0, 5.0]))
def test_sum_to_one_monotone_and_floor(x, k, temperature):
    name, params = SCHEMES[k]
    scheme = sw.get_scheme(name, **params)
    out = sw.compute_weights(x, scheme, temperature)
    w = out.weight
    tol = _tol(x.dtype)
    assert bool(torch.isfinite(w).all())
    # rounding of a sum of n numbers of size up to 1 + negative mass
    sum_tol = tol * 10 * (1 + out.negative_mass.max())
    torch.testing.assert_close(w.sum(-1), torch.ones(x.shape[0], dtype=x.dtype), atol=sum_tol, rtol=0)
    # order preserved: sorting by advantage sorts the weights (non-decreasing)
    order = torch.argsort(x, dim=-1)
    ws = w.gather(-1, order)
    assert bool((ws[:, 1:] - ws[:, :-1] >= -tol * (1 + ws.abs().amax(-1, keepdim=True))).all())
    # ties get equal weights
    xs = x.gather(-1, order)
    tied = xs[:, 1:] == xs[:, :-1]
    assert bool(((ws[:, 1:] - ws[:, :-1]).abs()[tied] <= tol * (1 + ws.abs().max())).all())
    floor = scheme.eta / (1 - scheme.eta) if name == "wd1" else scheme.eta
    assert bool((w >= -floor * (1 + 4 * torch.finfo(x.dtype).eps)).all())
    if not scheme.signed:
        assert bool((w >= 0).all())


@SETTINGS
@given(x=groups(dtypes=(torch.float64,)), k=st.integers(0, len(EXACT) - 1),
       temperature=st.sampled_from([0.05, 0.3, 1.0, 4.0]), method=st.sampled_from(["sort", "active_set"]))
def test_exact_solvers_match_bisection(x, k, temperature, method):
    _, p, eta = EXACT[k]
    z = x / temperature
    w_exact, tau_exact = sw.threshold_exact(z, p, eta, method=method)
    w_ref, tau_ref = sw.threshold_bisect(z, p, eta)
    torch.testing.assert_close(w_exact, w_ref, atol=1e-6, rtol=0)
    # tau is unique wherever some sample is on a strictly increasing piece of phi
    torch.testing.assert_close(tau_exact, tau_ref, atol=1e-6 * (1 + tau_ref.abs().max()), rtol=0)
    # and it solves the defining equation
    g = sw.get_scheme("linear_neg" if p == 1 else "square_neg", eta=eta).phi(z - tau_exact[:, None])
    torch.testing.assert_close(g.sum(-1), torch.ones_like(tau_exact), atol=1e-9, rtol=0)


@SETTINGS
@given(x=groups(), temperature=st.sampled_from([0.1, 1.0, 3.0]))
def test_linear_is_sparsemax_and_square_is_entmax15(x, temperature):
    z = x / temperature
    tol = _tol(x.dtype) * 10
    lin = sw.compute_weights(x, "linear", temperature).weight
    sq = sw.compute_weights(x, "square", temperature).weight
    torch.testing.assert_close(lin, sparsemax(z, dim=-1), atol=tol, rtol=0)
    torch.testing.assert_close(sq, entmax15(2.0 * z, dim=-1), atol=tol, rtol=0)


@SETTINGS
@given(x=groups(), k=st.integers(0, len(SCHEMES) - 1), shift=st.floats(-50, 50), seed=st.integers(0, 1000))
def test_shift_invariance_and_permutation_equivariance(x, k, shift, seed):
    name, params = SCHEMES[k]
    w = sw.compute_weights(x, name, 0.7, **params).weight
    scale = 1 + w.abs().max()
    tol = (1e-3 if x.dtype == torch.float32 else 1e-9) * scale
    w_shift = sw.compute_weights(x + shift, name, 0.7, **params).weight
    torch.testing.assert_close(w_shift, w, atol=tol, rtol=0)
    perm = torch.randperm(x.shape[-1], generator=torch.Generator().manual_seed(seed))
    w_perm = sw.compute_weights(x[:, perm], name, 0.7, **params).weight
    torch.testing.assert_close(w_perm, w[:, perm], atol=_tol(x.dtype) * 10 * scale, rtol=0)


@SETTINGS
@given(x=groups(dtypes=(torch.float64,)), k=st.integers(0, len(SCHEMES) - 1),
       temps=st.tuples(st.floats(0.02, 50), st.floats(0.02, 50)))
def test_larger_temperature_is_flatter(x, k, temps):
    """Flatness = squared distance to uniform (any sign); the controller's KL is monotone too."""
    name, params = SCHEMES[k]
    lo, hi = sorted(temps)
    w_lo = sw.compute_weights(x, name, lo, **params).weight
    w_hi = sw.compute_weights(x, name, hi, **params).weight
    n = x.shape[-1]
    dist_lo, dist_hi = (w_lo - 1 / n).square().sum(-1), (w_hi - 1 / n).square().sum(-1)
    assert bool((dist_hi <= dist_lo * (1 + 1e-9) + 1e-12).all())
    # (for wd1 this KL has small bumps when eta is close to 1; at eta = 0.6 it is monotone)
    assert bool((sw.kl_to_uniform(w_hi) <= sw.kl_to_uniform(w_lo) + 1e-9).all())


@SETTINGS
@given(x=groups(dtypes=(torch.float64,)), p=st.floats(0.3, 4.0), temperature=st.sampled_from([0.2, 1.0]))
def test_power_bisection_solves_its_equation(x, p, temperature):
    out = sw.compute_weights(x, "power", temperature, p=p)
    z = x / temperature
    tau = out.tau[:, None]
    delta = 1e-9 * (1 + z.abs().amax(-1, keepdim=True))  # phi may be steep (p < 1): bracket tau instead

    def mass(t):
        return torch.relu(z - t).pow(p).sum(-1)

    assert bool((mass(tau - delta) >= 1).all()) and bool((mass(tau + delta) <= 1).all())
    torch.testing.assert_close(out.weight, torch.relu(z - tau).pow(p) / mass(tau)[:, None])


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_power_with_p_1_or_2_equals_linear_or_square(p):
    x = torch.randn(16, 33, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    name = "linear" if p == 1 else "square"
    torch.testing.assert_close(sw.compute_weights(x, "power", 0.4, p=p).weight,
                               sw.compute_weights(x, name, 0.4).weight)
