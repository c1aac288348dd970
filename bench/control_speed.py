"""Gradient updates per second: SDAC / DPMD / SiMPO (this package) vs Stable-Baselines3 SAC, measured in ONE run.

    MUJOCO_GL=disable OMP_NUM_THREADS=1 .venv/bin/python bench/control_speed.py [--env HalfCheetah-v4] [--updates 60]
        [--rounds 3] [--sdac-k 32 8] [--dpmd-n 32] [--simpo-n 32] [--threads 1]
        [--json bench/results/control-speed.json]

Same machine, same process, same batch (256), same replay buffer class (SB3's ``ReplayBuffer`` filled with the same
random transitions of the env), same networks: two hidden layers of 256 units with ReLU for SAC's actor and both its
critics, for the diffusion policy and both critics of ours (``hidden 256, depth 2, activation relu``). Each
algorithm runs ``--updates`` updates per round after a warm-up round, the algorithms interleaved round by round (the
machine is shared: interleaving spreads any slowdown over all of them); the median round is reported. SB3's
``SAC.train(gradient_steps=n)`` is timed as is (its own sampling, losses, entropy-coefficient step, Polyak update).

The gate of the RSM issue: SDAC >= 0.5x SAC updates/s at the paper's update (K reverse samples, 20 diffusion steps);
the ratio is printed per K. Per agent it also prints the milliseconds per update of each stage of the last round
(``agent.timings``: the critic step with the TD target's DDPM / flow next action, reverse or particle sampling,
candidate Q + weights, and the rest of the policy step) and the machine (CPU model, torch threads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "disable")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def fill_buffer(env_id: str, rows: int, seed: int = 0):
    """An SB3 ReplayBuffer with ``rows`` random-action transitions of ``env_id`` (one env)."""
    import gymnasium as gym
    from stable_baselines3.common.buffers import ReplayBuffer

    env = gym.make(env_id)
    buf = ReplayBuffer(
        rows, env.observation_space, env.action_space, device="cpu", handle_timeout_termination=False
    )
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(rows):
        a = env.action_space.sample()
        nxt, r, term, trunc, _ = env.step(a)
        buf.add(obs, nxt, a, np.array([r]), np.array([term]), [{}])
        obs = env.reset()[0] if (term or trunc) else nxt
    return env, buf


def _cpu_model() -> str:
    """``lscpu``'s model name and the number of CPUs (``/proc/cpuinfo`` where lscpu is missing)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{model}, {os.cpu_count()} CPUs"


def stage_split(timings: dict[str, float], updates: int) -> dict[str, float]:
    """ms per update by stage from an agent's ``timings`` (seconds over ``updates`` updates): ``critic``, the
    sampling stage, the candidate-Q stage, and ``rest`` = the policy step minus the two stages inside it."""
    ms = {k: 1e3 * v / updates for k, v in timings.items()}
    inner = [k for k in ms if k not in ("critic", "policy_step", "policy_loss")]
    out = {"critic": ms.get("critic", 0.0), **{k: ms[k] for k in inner}}
    if "policy_step" in ms:  # RSM agents: the sampling and candidate stages run inside the policy step
        out["rest_of_policy_step"] = ms["policy_step"] - sum(ms[k] for k in inner)
    elif "policy_loss" in ms:  # SiMPO: its policy_loss timer starts after the particle stages
        out["rest_of_policy_step"] = ms["policy_loss"]
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="HalfCheetah-v4")
    p.add_argument("--updates", type=int, default=60, help="updates per algorithm per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--sdac-k", type=int, nargs="+", default=[32, 8], help="SDAC reverse samples K to time")
    p.add_argument("--dpmd-n", type=int, default=0, help="also time DPMD with this group size (0: skip)")
    p.add_argument("--simpo-n", type=int, default=0, help="also time SiMPO with this group size (0: skip)")
    p.add_argument("--num-steps", type=int, default=20, help="diffusion / flow steps (paper: 20)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from stable_baselines3 import SAC

    from simpo_bio.control.agent import AgentConfig, make_agent
    from simpo_bio.control.train import _to_batch

    env, buf = fill_buffer(args.env, 5000)
    s_dim, a_dim = env.observation_space.shape[0], env.action_space.shape[0]
    sac = SAC("MlpPolicy", env, batch_size=args.batch, learning_starts=0, device="cpu", seed=0,
              policy_kwargs=dict(net_arch=[256, 256], activation_fn=torch.nn.ReLU))  # fmt: skip
    sac.replay_buffer = buf
    sac._setup_learn(total_timesteps=10**6)  # the logger and the progress SAC.train reads

    def sac_round(n: int) -> float:
        t0 = time.perf_counter()
        sac.train(gradient_steps=n, batch_size=args.batch)
        return n / (time.perf_counter() - t0)

    common = dict(hidden=256, depth=2, activation="relu", num_steps=args.num_steps)
    agents = {}
    for k in args.sdac_k:
        agents[f"SDAC K={k}"] = make_agent(s_dim, a_dim, AgentConfig(algorithm="sdac", scheme="exp", group_size=k,
                                                                      temperature=0.05, auto_temperature=False,
                                                                      **common), 10**6)  # fmt: skip
    if args.dpmd_n:
        agents[f"DPMD N={args.dpmd_n}"] = make_agent(
            s_dim, a_dim, AgentConfig(algorithm="dpmd", scheme="exp", group_size=args.dpmd_n, **common), 10**6
        )
    if args.simpo_n:
        agents[f"SiMPO N={args.simpo_n}"] = make_agent(
            s_dim, a_dim, AgentConfig(group_size=args.simpo_n, **common), 10**6
        )

    def agent_round(agent, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            agent.update(_to_batch(buf.sample(args.batch), "cpu"))
        return n / (time.perf_counter() - t0)

    rates: dict[str, list[float]] = {"SB3 SAC": [], **{name: [] for name in agents}}
    for r in range(args.rounds + 1):  # round 0 warms up
        got = {"SB3 SAC": sac_round(args.updates)}
        for name, agent in agents.items():
            agent.timings.clear()
            got[name] = agent_round(agent, args.updates)
        if r > 0:
            for name, v in got.items():
                rates[name].append(v)
        print(
            f"round {r}{' (warm-up)' if r == 0 else ''}: "
            + ", ".join(f"{k} {v:.1f}/s" for k, v in got.items()),
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in rates.items()}
    sac_rate = med["SB3 SAC"]
    print(
        f"\n{args.env}, batch {args.batch}, 2x256 ReLU networks, {args.num_steps} diffusion steps, "
        f"{args.threads} torch thread(s), median of {args.rounds} rounds of {args.updates} updates"
    )
    report = {"cpu": _cpu_model(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "env": args.env, "batch": args.batch, "threads": args.threads, "num_steps": args.num_steps,
              "updates_per_round": args.updates, "rounds": args.rounds, "updates_per_s": med, "rounds_raw": rates,
              "ratio_to_sac": {k: v / sac_rate for k, v in med.items()}, "torch": torch.__version__,
              "timings_last_round_s": {k: dict(a.timings) for k, a in agents.items()}}  # fmt: skip
    # the ratio within each round (SAC and the agent timed minutes apart at most), then its median over rounds
    report["ratio_to_sac_median_of_rounds"] = {
        k: statistics.median(a / s for a, s in zip(v, rates["SB3 SAC"])) for k, v in rates.items()
    }
    for name, v in med.items():
        gate = ""
        if name.startswith("SDAC"):
            gate = "  gate >= 0.5: " + ("pass" if v / sac_rate >= 0.5 else "FAIL")
        per_round = report["ratio_to_sac_median_of_rounds"][name]
        print(f"  {name:14s} {v:8.1f} updates/s   ratio to SAC {v / sac_rate:5.2f} (median of per-round ratios "
              f"{per_round:4.2f}){gate}")
    print(f"ms per update in the last round ({report['cpu']}):")
    for name, agent in agents.items():
        split = stage_split(dict(agent.timings), args.updates)
        print(f"  {name:14s} " + " / ".join(f"{k} {v:.1f}" for k, v in split.items()))
    report["ms_per_update_last_round"] = {k: stage_split(dict(a.timings), args.updates) for k, a in agents.items()}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
