"""The RSM agents (simpo_bio/control/rsm.py): reverse sampling, SDAC on a 1-D bandit, configs, resume, errors."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from simpo_bio.control.agent import AgentConfig, make_agent
from simpo_bio.control.rsm import DPMDAgent, SDACAgent, ddpm_sample, noise_schedule, reverse_samples

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- reverse sampling vs the closed form
@pytest.mark.parametrize("abar", [0.95, 0.5, 0.05, 1e-3])
def test_reverse_samples_match_the_gaussian_posterior(abar):
    gen = torch.Generator().manual_seed(0)
    x = torch.tensor([[0.3, -1.2]])
    a0, eps = reverse_samples(x, torch.tensor([abar]), 200_000, low=None, high=None, generator=gen)
    mean, var = x / math.sqrt(abar), (1 - abar) / abar
    torch.testing.assert_close(a0[0].mean(0), mean[0], atol=4 * math.sqrt(var / 2e5), rtol=0)
    torch.testing.assert_close(a0[0].var(0), torch.full((2,), var), rtol=0.02, atol=0)
    # eps is the noise that maps each candidate back to the noised action
    torch.testing.assert_close(math.sqrt(abar) * a0 + math.sqrt(1 - abar) * eps, x.unsqueeze(1).expand_as(a0),
                               atol=1e-4, rtol=0)  # fmt: skip


def _truncnorm_moments(mu: float, sd: float, lo: float, hi: float) -> tuple[float, float]:
    a, b = (lo - mu) / sd, (hi - mu) / sd
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    z = cdf(b) - cdf(a)
    m = mu + sd * (phi(a) - phi(b)) / z
    v = sd**2 * (1 + (a * phi(a) - b * phi(b)) / z - ((phi(a) - phi(b)) / z) ** 2)
    return m, v


@pytest.mark.parametrize("abar,x", [(0.9, 0.8), (0.5, -0.2), (0.05, 0.1), (0.99, 1.1)])
def test_reverse_samples_match_the_truncated_posterior_on_the_box(abar, x):
    gen = torch.Generator().manual_seed(1)
    a0, _ = reverse_samples(torch.tensor([[x]]), torch.tensor([abar]), 200_000, generator=gen)
    assert float(a0.min()) >= -1 and float(a0.max()) <= 1
    m, v = _truncnorm_moments(x / math.sqrt(abar), math.sqrt((1 - abar) / abar), -1.0, 1.0)
    assert float(a0.mean()) == pytest.approx(m, abs=4 * math.sqrt(v / 2e5) + 1e-4)
    assert float(a0.var()) == pytest.approx(v, rel=0.02)


def test_reverse_samples_far_tail_stays_finite_and_in_the_box():
    # a noised action far outside what the box can produce at low noise: both bounds deep in one tail
    a0, eps = reverse_samples(torch.tensor([[3.0, -3.0]]), torch.tensor([0.999]), 1000)
    assert torch.isfinite(a0).all() and torch.isfinite(eps).all()
    assert float(a0.abs().max()) <= 1.0
    assert float(a0[..., 0].min()) > 0.99 and float(a0[..., 1].max()) < -0.99


def test_reverse_samples_bad_values_raise():
    with pytest.raises(ValueError, match="num_samples"):
        reverse_samples(torch.zeros(1, 1), torch.tensor([0.5]), 0)
    with pytest.raises(ValueError, match="abar"):
        reverse_samples(torch.zeros(1, 1), torch.tensor([0.0]), 2)
    with pytest.raises(ValueError, match="low < high"):
        reverse_samples(torch.zeros(1, 1), torch.tensor([0.5]), 2, low=1.0, high=-1.0)


def test_noise_schedules_are_variance_preserving_and_decreasing():
    for kind in ("cosine", "linear"):
        ab = noise_schedule(20, kind)
        assert ab[0] == 1 and bool((ab.diff() < 0).all()) and 0 < float(ab[-1]) < 1e-3
    with pytest.raises(ValueError, match="kind"):
        noise_schedule(20, "vp")


# ---------------------------------------------------------------- SDAC on a 1-D bandit with a known target
class FixedQ(nn.Module):
    """A critic whose ``min_q(s, a)`` is a known function of a 1-D action (``[..., 1] -> [...]``)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def min_q(self, state, action):
        return self.fn(action[..., 0])


def _fit_sdac(q_fn, lam: float, steps: int, seed: int = 0) -> torch.Tensor:
    """Train only SDAC's policy step against a fixed Q (replay actions uniform on [-1, 1]); return 4000 samples."""
    torch.manual_seed(seed)
    cfg = AgentConfig(algorithm="sdac", scheme="exp", group_size=64, num_steps=20, hidden=64, depth=2,
                      temperature=lam, auto_temperature=False, policy_lr=3e-3, policy_lr_final=3e-3)  # fmt: skip
    agent = SDACAgent(1, 1, cfg, total_updates=steps)
    agent.critic = FixedQ(q_fn)
    opt = torch.optim.Adam(agent.policy.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = {"state": torch.zeros(256, 1), "action": torch.rand(256, 1) * 2 - 1}
        loss, _ = agent.policy_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return agent.sample(torch.zeros(4000, 1), 1)[:, 0, 0]


def test_sdac_matches_a_gaussian_target_mean_and_variance():
    lam, mu, sd = 0.5, 0.3, 0.2  # exp(Q / lam) = N(0.3, 0.2^2) (truncation at +-1 negligible)
    a = _fit_sdac(lambda x: -lam * (x - mu) ** 2 / (2 * sd**2), lam, steps=600)
    assert float(a.mean()) == pytest.approx(mu, abs=0.05)
    assert float(a.std()) == pytest.approx(sd, abs=0.05)


def _two_optima(lam: float):
    def q(x):
        dens = 0.5 * torch.exp(-((x - 0.5) ** 2) / (2 * 0.1**2)) + 0.5 * torch.exp(
            -((x + 0.5) ** 2) / (2 * 0.1**2)
        )
        return lam * torch.log(dens + 1e-30)

    return q


def _mode_mass(a: torch.Tensor) -> tuple[float, float]:
    return float(((a - 0.5).abs() < 0.2).float().mean()), float(((a + 0.5).abs() < 0.2).float().mean())


def test_sdac_reaches_both_optima_where_a_gaussian_policy_cannot():
    lam = 0.5
    q = _two_optima(lam)
    right, left = _mode_mass(_fit_sdac(q, lam, steps=1500))
    assert right > 0.3 and left > 0.3, (right, left)
    # SAC's projection: a Gaussian maximising E[Q] / lam + entropy (reverse KL to exp(Q / lam)) by reparametrisation
    torch.manual_seed(0)
    mean, log_std = torch.tensor(0.05, requires_grad=True), torch.tensor(math.log(0.3), requires_grad=True)
    opt = torch.optim.Adam([mean, log_std], lr=0.02)
    for _ in range(800):
        a = mean + log_std.exp() * torch.randn(512)
        loss = -(q(a) / lam).mean() - log_std
        opt.zero_grad()
        loss.backward()
        opt.step()
    g_right, g_left = _mode_mass((mean + log_std.exp() * torch.randn(4000)).detach())
    assert min(g_right, g_left) < 0.05 < max(g_right, g_left), (g_right, g_left)


# ---------------------------------------------------------------- agents on the harness
def _batch(b: int, s: int, a: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"state": torch.randn(b, s, generator=g), "action": torch.rand(b, a, generator=g) * 2 - 1,
            "reward": torch.randn(b, generator=g), "next_state": torch.randn(b, s, generator=g),
            "done": torch.zeros(b)}  # fmt: skip


@pytest.mark.parametrize("algorithm,cls", [("sdac", SDACAgent), ("dpmd", DPMDAgent)])
def test_rsm_update_is_finite_moves_the_policy_and_tunes_the_temperature(algorithm, cls):
    torch.manual_seed(0)
    cfg = AgentConfig(algorithm=algorithm, scheme="exp", group_size=6, num_steps=4, hidden=16, depth=1,
                      temperature=0.01, target_kl=0.5)  # fmt: skip
    agent = make_agent(4, 2, cfg, total_updates=10)
    assert isinstance(agent, cls)
    before = [p.clone() for p in agent.policy.parameters()]
    for i in range(3):
        logs = agent.update(_batch(16, 4, 2, seed=i))
        assert all(math.isfinite(v) for v in logs.values()), logs
    assert any(not torch.equal(x, y) for x, y in zip(before, agent.policy.parameters()))
    assert logs["temperature"] > 0.01  # the KL dual raised a far too peaked temperature
    assert agent.act(torch.randn(3, 4), explore=True).shape == (3, 2)
    assert float(agent.act(torch.randn(3, 4), explore=False).abs().max()) <= 1


def test_sdac_update_makes_one_critic_call_on_all_reverse_samples(monkeypatch):
    cfg = AgentConfig(algorithm="sdac", scheme="exp", group_size=5, num_steps=3, hidden=8, depth=1)
    agent = make_agent(3, 2, cfg)
    calls = []
    real = agent.critic.min_q_grouped
    monkeypatch.setattr(
        agent.critic, "min_q_grouped", lambda s, a: calls.append(tuple(a.shape)) or real(s, a)
    )
    agent.policy_loss(_batch(7, 3, 2))
    assert calls == [(7, 5, 2)]


def test_grouped_critic_equals_the_expanded_call():
    from simpo_bio.control.agent import DoubleQCritic

    torch.manual_seed(0)
    critic = DoubleQCritic(9, 3, hidden=16, depth=2)
    state, action = torch.randn(5, 9), torch.randn(5, 7, 3)
    expanded = critic.min_q(state.unsqueeze(1).expand(-1, 7, -1), action)
    torch.testing.assert_close(critic.min_q_grouped(state, action), expanded, atol=1e-5, rtol=1e-5)


def test_ddpm_sampler_factored_layer_equals_the_plain_network():
    torch.manual_seed(0)
    cfg = AgentConfig(algorithm="dpmd", scheme="exp", num_steps=3, hidden=8, depth=2)
    agent = make_agent(3, 2, cfg)
    state = torch.randn(4, 3)
    got = ddpm_sample(agent.policy, state, 2, agent.abar.float(), generator=torch.Generator().manual_seed(5))
    # the same ancestral steps with plain network calls
    g = torch.Generator().manual_seed(5)
    ab = agent.abar
    x = torch.randn(8, 2, generator=g)
    z = torch.randn(2, 8, 2, generator=g)
    s = state.repeat_interleave(2, 0)
    for k in range(3, 0, -1):
        eps = agent.policy(x, torch.full((8,), k / 3), s)
        a0 = ((x - (1 - ab[k]).sqrt() * eps) / ab[k].sqrt()).clamp(-1, 1)
        beta = 1 - ab[k] / ab[k - 1]
        x = (ab[k - 1].sqrt() * beta * a0 + (1 - beta).sqrt() * (1 - ab[k - 1]) * x) / (1 - ab[k])
        if k > 1:
            x = x + (beta * (1 - ab[k - 1]) / (1 - ab[k])).sqrt() * z[k - 2]
    torch.testing.assert_close(got.reshape(8, 2), x.float().clamp(-1, 1), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- configs, errors, resume
@pytest.mark.parametrize("overrides,message", [
    ({"agent.algorithm": "ppo"}, "agent.algorithm must be one of"),
    ({"agent.algorithm": "sdac"}, "agent.scheme must be 'exp' for agent.algorithm 'sdac'"),
    ({"agent.algorithm": "sdac", "agent.scheme": "exp", "agent.noise_schedule": "vp"},
     "agent.noise_schedule must be 'cosine' or 'linear'"),
    ({"agent.algorithm": "dpmd", "agent.scheme": "exp", "agent.group_size": 1}, "agent.group_size must be"),
])  # fmt: skip
def test_bad_rsm_config_values_fail_with_one_line(tmp_path, capsys, overrides, message):
    pytest.importorskip("mujoco")
    from test_resume_kill import tiny_args

    from simpo_bio.control.train import cli_main

    with pytest.raises(SystemExit) as exc:
        cli_main(tiny_args(tmp_path / "out", **overrides))
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


PAPER = sorted(
    [
        *(ROOT / "configs/control/paper").glob("sdac_*.yaml"),
        *(ROOT / "configs/control/paper").glob("dpmd_*.yaml"),
    ]
)


def test_paper_rsm_configs_exist():
    names = {p.stem for p in PAPER}
    assert {f"{a}_{e}" for a in ("sdac", "dpmd") for e in ("halfcheetah", "ant", "humanoid")} <= names


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_rsm_config_builds_and_runs_a_few_updates_on_cpu(path):
    """Dry run: the config as written (1M steps, paper sizes) parses and validates; the agent it names is built for
    the env's real dimensions and takes two updates and one action of each kind on CPU (a small batch)."""
    pytest.importorskip("mujoco")
    from simpo_bio.control.envs import make_env
    from simpo_bio.control.train import build_parser

    parser = build_parser()
    init = parser.instantiate(parser.parse_args(["--config", str(path)]))
    init.env.validate(), init.agent.validate(), init.train.validate()
    assert init.train.total_env_steps == 1_000_000 and init.agent.algorithm == path.stem.split("_")[0]
    env = make_env(init.env.id)
    s_dim, a_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    agent = make_agent(s_dim, a_dim, init.agent, total_updates=10)
    for i in range(2):
        logs = agent.update(_batch(8, s_dim, a_dim, seed=i))
    assert all(math.isfinite(v) for v in logs.values())
    assert agent.act(torch.randn(1, s_dim), explore=True).shape == (1, a_dim)
    assert agent.act(torch.randn(1, s_dim), explore=False).shape == (1, a_dim)


# ---------------------------------------------------------------- fast paths == the straightforward computation
def test_blocked_ddpm_sampler_equals_the_differentiable_loop(monkeypatch):
    """ddpm_sample without autograd (blocks of whole states, in-place steps, reused buffers) == its plain loop."""
    import simpo_bio.control.agent as agent_mod

    torch.manual_seed(0)
    cfg = AgentConfig(algorithm="dpmd", scheme="exp", num_steps=5, hidden=16, depth=2, activation="mish")
    agent = make_agent(3, 2, cfg)
    state, abar = torch.randn(9, 3), agent.abar.float()
    ref = ddpm_sample(agent.policy, state, 4, abar, generator=torch.Generator().manual_seed(3)).detach()
    monkeypatch.setattr(agent_mod, "ROW_CHUNK", 10)  # 2 states per block, the last block short
    with torch.no_grad():
        got = ddpm_sample(agent.policy, state, 4, abar, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(agent.sample(state, 4, generator=torch.Generator().manual_seed(3)), ref,
                               atol=1e-5, rtol=1e-5)  # fmt: skip


def test_reverse_samples_equal_the_expanded_inverse_cdf():
    """The truncation bounds and their CDF values computed once per row give the draws of the full-shape formula."""
    x, ab = torch.rand(6, 3) * 2.4 - 1.2, torch.tensor([0.99, 0.9, 0.5, 0.1, 0.01, 0.999])
    got_a0, got_eps = reverse_samples(x, ab, 5, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    xd, abd = x.double().unsqueeze(1).expand(6, 5, 3), ab.double().view(6, 1, 1)
    sig, mu = (1 - abd).sqrt(), abd.sqrt()
    lo, hi = ((xd - mu) / sig), ((xd + mu) / sig)
    flip = lo > 0
    lo_, hi_ = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)
    c_lo, c_hi = torch.special.ndtr(lo_), torch.special.ndtr(hi_)
    u = torch.rand((6, 5, 3), generator=g, dtype=torch.float64)
    eps = torch.special.ndtri(c_lo + u * (c_hi - c_lo))
    eps = torch.minimum(torch.maximum(torch.where(flip, -eps, eps), lo), hi)
    a0 = ((xd - sig * eps) / mu).clamp(-1, 1)
    torch.testing.assert_close(got_eps, eps.float(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got_a0, a0.float(), atol=1e-6, rtol=1e-6)


def test_sdac_policy_loss_equals_the_straightforward_loss(monkeypatch):
    """SDAC's policy loss (blocked candidate scoring) == the loss written out with plain calls on the same draws:
    expanded critic call, softmax(Q / lambda) weights, || eps_theta(a_k, k, s) - sum_j w_j eps^j ||^2 / A."""
    import simpo_bio.control.agent as agent_mod

    torch.manual_seed(0)
    cfg = AgentConfig(algorithm="sdac", scheme="exp", group_size=6, num_steps=5, hidden=16, depth=2,
                      temperature=0.3, auto_temperature=False)  # fmt: skip
    agent = make_agent(4, 2, cfg)
    batch = _batch(10, 4, 2, seed=4)
    monkeypatch.setattr(agent_mod, "ROW_CHUNK", 16)  # 2 states (12 candidates) per block
    torch.manual_seed(7)
    loss, _ = agent.policy_loss(batch)
    torch.manual_seed(7)
    a_k, _, t, ab = agent.noised(batch["action"])
    cand, eps = reverse_samples(a_k, ab, 6)
    q = agent.critic.min_q(batch["state"].unsqueeze(1).expand(-1, 6, -1), cand).detach()
    w = torch.softmax(q / 0.3, dim=1)
    ref = (agent.policy(a_k, t, batch["state"]) - torch.einsum("bk,bka->ba", w, eps)).pow(2).mean()
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    g_fast = torch.autograd.grad(loss, list(agent.policy.parameters()))
    g_ref = torch.autograd.grad(ref, list(agent.policy.parameters()))
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_dpmd_candidates_are_the_behaviour_policy_actions():
    """DPMD's candidates: policy samples + N(0, exploration_noise^2), clipped; sigma = 0 gives the plain samples."""
    from dataclasses import replace

    cfg = AgentConfig(algorithm="dpmd", scheme="exp", hidden=16, depth=2, group_size=4, num_steps=3,
                      exploration_noise=0.3)  # fmt: skip
    agent = make_agent(5, 2, cfg)
    state = torch.randn(64, 5)
    torch.manual_seed(0)
    plain = agent.sample(state, 4)
    torch.manual_seed(0)
    noised = agent.candidates(state, 4)
    assert noised.shape == (64, 4, 2) and noised.abs().max() <= 1.0
    diff = (noised - plain)[noised.abs() < 1.0]  # away from the clip, the difference is the added noise
    assert 0.25 < float(diff.std()) < 0.35
    quiet = make_agent(5, 2, replace(cfg, exploration_noise=0.0))
    quiet.load_state_dict(agent.state_dict())
    torch.manual_seed(0)
    assert torch.equal(quiet.candidates(state, 4), plain)
    calls = []
    original = agent.candidates
    agent.candidates = lambda s, n: calls.append(n) or original(s, n)
    batch = {"state": state, "action": plain[:, 0], "reward": torch.randn(64), "next_state": state,
             "done": torch.zeros(64)}  # fmt: skip
    logs = agent.update(batch)  # the policy step draws its candidates through candidates()
    assert calls == [4] and math.isfinite(logs["policy_loss"]) and logs["particle_q_std"] > 0
