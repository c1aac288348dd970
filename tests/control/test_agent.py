"""Critic target, soft update, flow sampler, replay sampling and the SiMPO update on fake data."""

import numpy as np
import pytest
import torch

from simpo_bio.control.agent import (
    AgentConfig,
    DoubleQCritic,
    SiMPOAgent,
    critic_target,
    soft_update,
)
from simpo_bio.diffusion.flow import sample_actions


def test_critic_target_values():
    reward = torch.tensor([1.0, -2.0, 0.5])
    done = torch.tensor([0.0, 1.0, 0.0])
    q1 = torch.tensor([10.0, 5.0, -4.0])
    q2 = torch.tensor([8.0, 7.0, -3.0])
    y = critic_target(reward, done, q1, q2, gamma=0.9)
    # r + gamma * (1 - done) * min(q1, q2): 1 + 0.9 * 8, -2 (terminal), 0.5 + 0.9 * -4
    torch.testing.assert_close(y, torch.tensor([8.2, -2.0, -3.1]))
    with pytest.raises(ValueError, match="gamma"):
        critic_target(reward, done, q1, q2, gamma=1.5)
    with pytest.raises(ValueError, match="shape"):
        critic_target(reward, done[:2], q1, q2, gamma=0.9)


def test_agent_critic_loss_uses_target_networks():
    torch.manual_seed(0)
    agent = SiMPOAgent(3, 2, AgentConfig(hidden=16, depth=2, group_size=4, num_steps=2, gamma=0.5))
    batch = _batch(8, 3, 2)
    # make the target networks differ from the online ones: the TD target must come from the target copy
    with torch.no_grad():
        for p in agent.critic_target.parameters():
            p.add_(0.3)
    gen_state = torch.get_rng_state()
    loss, info = agent.critic_loss(batch)
    torch.set_rng_state(gen_state)
    with torch.no_grad():
        a_next = agent.sample(batch["next_state"], 1)[:, 0]
        tq1, tq2 = agent.critic_target(batch["next_state"], a_next)
        y = batch["reward"] + 0.5 * (1 - batch["done"]) * torch.minimum(tq1, tq2)
        q1, q2 = agent.critic(batch["state"], batch["action"])
    torch.testing.assert_close(info["td_target_mean"], y.mean())
    torch.testing.assert_close(loss, (q1 - y).pow(2).mean() + (q2 - y).pow(2).mean())


def test_soft_update():
    src, dst = DoubleQCritic(2, 1, 8, 1), DoubleQCritic(2, 1, 8, 1)
    before = [p.clone() for p in dst.parameters()]
    soft_update(dst, src, 0.25)
    for b, d, s in zip(before, dst.parameters(), src.parameters()):
        torch.testing.assert_close(d, 0.75 * b + 0.25 * s)
    soft_update(dst, src, 1.0)
    for d, s in zip(dst.parameters(), src.parameters()):
        torch.testing.assert_close(d, s)


def test_agent_samples_with_the_shared_flow_sampler_on_its_cosine_grid():
    """The agent's particles are diffusion.flow.sample_actions on the config's grid, clipped to [-1, 1]."""
    torch.manual_seed(0)
    agent = SiMPOAgent(3, 2, AgentConfig(hidden=16, depth=2, num_steps=6, time_schedule="cosine"))
    with torch.no_grad():  # a large output scale so that clipping matters
        agent.policy.net[-1].weight.mul_(30)
    state = torch.randn(5, 3)
    ours = agent.sample(state, 4, generator=torch.Generator().manual_seed(1))
    ref = sample_actions(agent.policy, state, 4, num_steps=6, schedule="cosine", low=-1.0, high=1.0,
                         generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert ours.shape == (5, 4, 2)
    torch.testing.assert_close(ours, ref)
    assert bool((ours.abs() <= 1).all()) and bool((ours.abs() == 1).any())
    uniform = sample_actions(agent.policy, state, 4, num_steps=6, low=-1.0, high=1.0,
                             generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert not torch.allclose(ours, uniform)  # the schedule reaches the sampler
    with pytest.raises(ValueError, match="schedule"):
        SiMPOAgent(3, 2, AgentConfig(hidden=8, depth=1, time_schedule="linear"))


def _batch(b, s, a, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "state": torch.randn(b, s, generator=g),
        "action": torch.rand(b, a, generator=g) * 2 - 1,
        "reward": torch.randn(b, generator=g),
        "next_state": torch.randn(b, s, generator=g),
        "done": (torch.rand(b, generator=g) < 0.1).float(),
    }


@pytest.mark.parametrize(
    "scheme,params", [("exp", {}), ("linear", {}), ("square", {}), ("linear_neg", {"eta": 0.5})]
)
def test_update_on_fake_env_is_finite_and_weights_sum_to_one(scheme, params):
    torch.manual_seed(0)
    cfg = AgentConfig(scheme=scheme, scheme_params=params, group_size=6, num_steps=3, hidden=32, depth=2,
                      target_kl=0.5, particle_noise=0.3 if scheme == "linear" else 0.0,
                      normalize_advantage=True)  # fmt: skip
    agent = SiMPOAgent(4, 2, cfg, total_updates=10)
    policy_before = [p.clone() for p in agent.policy.parameters()]
    temp_before = float(agent.weighting.temperature)
    for i in range(3):
        logs = agent.update(_batch(16, 4, 2, seed=i))
        assert all(np.isfinite(v) for v in logs.values()), logs
    stage1 = agent.particle_weights(_batch(16, 4, 2)["state"])
    w = stage1["weights"].weight
    assert w.shape == (16, 6) and stage1["particles"].shape == (16, 6, 2)
    torch.testing.assert_close(w.sum(-1), torch.ones(16))
    assert bool((stage1["particles"].abs() <= 1).all())
    if scheme == "linear_neg":
        assert bool((w < 0).any()), "a signed scheme should produce negative weights on a spread group"
    assert any(not torch.equal(a, b) for a, b in zip(policy_before, agent.policy.parameters()))
    assert float(agent.weighting.temperature) != temp_before
    assert agent.num_updates == 3
    assert logs["policy_lr"] < cfg.policy_lr  # annealing toward policy_lr_final


def test_policy_lr_anneals_linearly_to_final():
    cfg = AgentConfig(group_size=2, num_steps=1, hidden=8, depth=1, policy_lr=1e-3, policy_lr_final=1e-4)
    agent = SiMPOAgent(2, 1, cfg, total_updates=4)
    lrs = []
    for i in range(6):
        lrs.append(agent.update(_batch(4, 2, 1, seed=i))["policy_lr"])
    np.testing.assert_allclose(lrs, [1e-3, 7.75e-4, 5.5e-4, 3.25e-4, 1e-4, 1e-4], rtol=1e-6)


def test_act_explore_and_greedy_shapes_and_bounds():
    torch.manual_seed(0)
    cfg = AgentConfig(group_size=2, num_steps=2, hidden=8, depth=1, exploration_noise=0.5,
                      collect_candidates=3, eval_candidates=5)  # fmt: skip
    agent = SiMPOAgent(3, 2, cfg)
    s = torch.randn(7, 3)
    for explore in (True, False):
        a = agent.act(s, explore=explore)
        assert a.shape == (7, 2) and bool((a.abs() <= 1).all())
    # greedy = the candidate with the largest min(Q1, Q2)
    g = torch.Generator().manual_seed(3)
    cand = agent.sample(s, 5, generator=torch.Generator().manual_seed(3))
    best = agent.best_of(s, 5, generator=g)
    q = agent.critic.min_q(s.unsqueeze(1).expand(-1, 5, -1), cand)
    torch.testing.assert_close(best, cand[torch.arange(7), q.argmax(1)])


def test_replay_buffer_sampling_keeps_transitions_together():
    pytest.importorskip("stable_baselines3", reason="needs the [control] extra (stable-baselines3)")
    import gymnasium as gym
    from stable_baselines3.common.buffers import ReplayBuffer

    from simpo_bio.control.train import _to_batch

    n_envs, obs_space = 3, gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    act_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    buf = ReplayBuffer(
        30, obs_space, act_space, device="cpu", n_envs=n_envs, handle_timeout_termination=False
    )
    np.random.seed(0)
    for t in range(7):  # 7 vector steps x 3 envs; encode (t, env) in every field to check alignment
        obs = np.array([[t, e] for e in range(n_envs)], np.float32)
        buf.add(obs, obs + 100, np.full((n_envs, 1), t / 10, np.float32), np.arange(n_envs) + 10 * t,
                np.array([t == 6, False, False]), [{}] * n_envs)  # fmt: skip
    batch = _to_batch(buf.sample(64), "cpu")
    assert batch["state"].shape == (64, 2) and batch["reward"].shape == (64,) and batch["done"].shape == (64,)
    t, e = batch["state"][:, 0], batch["state"][:, 1]
    torch.testing.assert_close(batch["next_state"], batch["state"] + 100)
    torch.testing.assert_close(batch["action"][:, 0], t / 10)
    torch.testing.assert_close(batch["reward"], e + 10 * t)
    torch.testing.assert_close(batch["done"], ((t == 6) & (e == 0)).float())
    assert len(set(zip(t.tolist(), e.tolist()))) > 10  # samples spread over the stored transitions


def test_update_passes_repel_ratio_and_rejects_a_bad_one(monkeypatch):
    import simpo_bio.control.agent as agent_mod

    seen = []
    real = agent_mod.flow_matching_loss
    monkeypatch.setattr(agent_mod, "flow_matching_loss", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    cfg = AgentConfig(scheme="linear_neg", scheme_params={"eta": 1.0}, group_size=4, num_steps=2, hidden=16,
                      depth=1, repel_ratio=2.5)  # fmt: skip
    SiMPOAgent(3, 2, cfg).update(_batch(8, 3, 2))
    assert seen and seen[0]["repel_margin"] == 2.5  # flow_matching_loss keeps its own name
    assert AgentConfig().repel_ratio == 4.0  # on by default
    with pytest.raises(ValueError, match="repel_ratio"):
        SiMPOAgent(3, 2, AgentConfig(group_size=2, num_steps=1, hidden=8, depth=1, repel_ratio=-1.0))


def test_diverged_critic_raises_a_clear_error():
    agent = SiMPOAgent(3, 2, AgentConfig(group_size=4, num_steps=2, hidden=16, depth=1))
    with torch.no_grad():
        agent.critic.q1[-1].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite Q values"):
        agent.particle_weights(torch.randn(5, 3))


# ---------------------------------------------------------------- fast no-gradient paths == the plain computation
@pytest.mark.parametrize("activation", ["relu", "mish", "silu", "tanh", "gelu", "elu"])
def test_blocked_grouped_critic_equals_the_expanded_call(monkeypatch, activation):
    """min_q_grouped under no_grad (blocks of ROW_CHUNK rows, in-place activations, reused buffers, a partial last
    block) gives the plain expanded min_q; with autograd on, the differentiable path gives the same."""
    import simpo_bio.control.agent as agent_mod

    torch.manual_seed(0)
    critic = DoubleQCritic(9, 3, hidden=16, depth=3, activation=activation)
    state, action = torch.randn(11, 9), torch.rand(11, 7, 3) * 2 - 1
    ref = critic.min_q(state.unsqueeze(1).expand(-1, 7, -1), action).detach()
    monkeypatch.setattr(agent_mod, "ROW_CHUNK", 20)  # 2 states (14 rows) per block, 6 blocks, the last one short
    with torch.no_grad():
        fast = critic.min_q_grouped(state, action)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(critic.min_q_grouped(state, action).detach(), ref, atol=1e-5, rtol=1e-5)
    monkeypatch.setattr(agent_mod, "ROW_CHUNK", 1)  # fewer rows than one state's group: one state per block
    with torch.no_grad():
        torch.testing.assert_close(critic.min_q_grouped(state, action), ref, atol=1e-5, rtol=1e-5)


def test_forward_no_grad_with_buffers_equals_the_module_call():
    from simpo_bio.control.agent import first_layer_work, forward_no_grad, mlp

    torch.manual_seed(0)
    for activation in ("relu", "mish", "silu", "tanh", "gelu"):
        net = mlp(5, 2, hidden=12, depth=3, activation=activation)
        x = torch.randn(9, 5)
        ref = net(x).detach()
        with torch.no_grad():
            h = torch.addmm(net[0].bias, x, net[0].weight.t())
            work = first_layer_work(16, 12, x)
            got = forward_no_grad(list(net)[1:], h, work)
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)


def test_fused_adam_matches_the_default_adam():
    from simpo_bio.control.agent import make_adam

    torch.manual_seed(0)
    a = DoubleQCritic(4, 2, hidden=16, depth=2)
    b = DoubleQCritic(4, 2, hidden=16, depth=2)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = make_adam(a.parameters(), 1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    for i in range(5):
        g = torch.Generator().manual_seed(i)
        s, act = torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g)
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            sum(q.pow(2).mean() for q in net(s, act)).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("with_state", [True, False])
def test_blocked_flow_integration_equals_one_call(monkeypatch, with_state):
    """SiMPO's sampler runs integrate_flow on blocks of whole states; same actions as one call (step noise too)."""
    import simpo_bio.control.agent as agent_mod
    from simpo_bio.diffusion.flow import VelocityMLP, integrate_flow, time_grid

    torch.manual_seed(0)
    net = VelocityMLP(2, state_dim=3 if with_state else 0, hidden=16, depth=2)
    state = torch.randn(7, 3) if with_state else None
    noise, times = torch.randn(7 * 5, 2), time_grid(4, "cosine")
    step_noise = torch.randn(3, 35, 2)
    kw = dict(step_noise=step_noise, noise_scale=0.3, low=-1.0, high=1.0, bound="clip")
    with torch.no_grad():
        ref = integrate_flow(net, noise, times, state, **kw)
        monkeypatch.setattr(agent_mod, "ROW_CHUNK", 12)  # 2 states (10 rows) per block, or 12 rows unconditional
        got = agent_mod.chunked_integrate(integrate_flow)(net, noise, times, state, **kw)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)
