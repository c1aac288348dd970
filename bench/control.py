"""Benchmarks of the control submodule (results go to bench/results/control.md).

Run one at a time, single-threaded unless you say otherwise::

    python bench/control.py smoke --seeds 0 1 2            # gate: InvertedPendulum >= 950 within 20k steps, 2/3 seeds
    python bench/control.py speed                          # updates/s: SiMPO step vs SB3 SAC, breakdown, torch.compile
    python bench/control.py compare --env HalfCheetah-v4 --steps 50000 --seeds 0 1 2
    python bench/control.py landscape --steps 50000 --seeds 0 1 2   # DMC cheetah-run, linear vs square x 4 rewards
    python bench/control.py evalckpt RUN_DIR ... --candidates 1 8 32   # re-evaluate checkpoints, best-of-K by Q
    python bench/control.py report runs/*.json --png 'docs/images/control_{env}.png'  # merge compare/landscape --json

Arguments this script does not know (``--agent.scheme exp``, ``--train.batch_size 128``) override the YAML config.
Every number printed is measured in this run; ratios are against the SB3 reference measured in the same process.

Imports: numpy, torch, :mod:`simpo_bio.control` (and stable-baselines3 / matplotlib where a command needs them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "disable")
os.environ.setdefault("WANDB_MODE", "offline")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from simpo_bio.control.agent import AgentConfig, SiMPOAgent, make_agent  # noqa: E402
from simpo_bio.control.envs import make_env, make_vector_env  # noqa: E402
from simpo_bio.control.train import EnvConfig, TrainConfig, build_parser, train  # noqa: E402
from simpo_bio.diffusion.flow import ACTIVATIONS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_config(path: str, *overrides: str) -> tuple[EnvConfig, AgentConfig, TrainConfig]:
    """Parse a configs/control YAML (plus ``--a.b value`` overrides) into the three dataclasses."""
    parser = build_parser()
    init = parser.instantiate(parser.parse_args(["--config", path, *overrides]))
    return init.env, init.agent, init.train


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return float(np.mean(xs)), float(np.std(xs)) if len(xs) > 1 else 0.0


# --------------------------------------------------------------------------------------------- smoke
def cmd_smoke(args: argparse.Namespace) -> dict:
    env, agent, tr = load_config(args.config, *args.override)
    rows = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        stop = None if args.full else args.threshold  # stop a seed once it has passed (saves shared CPU)
        res = train(env, agent, replace(tr, seed=seed, out_dir=f"{args.out}/smoke/seed{seed}", progress=False,
                                        wandb=False, stop_return=stop, total_env_steps=args.budget))  # fmt: skip
        wall = time.perf_counter() - t0
        within = [m for s, m, _ in res["evals"] if s <= args.budget]
        reached = next((s for s, m, _ in res["evals"] if s <= args.budget and m >= args.threshold), None)
        rows.append({"seed": seed, "best": max(within), "final": res["evals"][-1][1], "reached_at": reached,
                     "wall_s": wall, "env_steps_per_s": res["env_steps_per_s"], "updates_per_s": res["updates_per_s"],
                     "evals": res["evals"]})  # fmt: skip
        print(f"seed {seed}: best eval {max(within):7.1f}  final {res['evals'][-1][1]:7.1f}  "
              f">= {args.threshold:g} at {reached}  ({wall:.0f} s, {res['env_steps_per_s']:.1f} env steps/s, "
              f"{res['updates_per_s']:.1f} updates/s)", flush=True)  # fmt: skip
    passed = sum(r["reached_at"] is not None for r in rows)
    verdict = "PASS" if passed >= args.need else "FAIL"
    print(f"smoke gate ({env.id}, scheme {agent.scheme}): {passed}/{len(rows)} seeds reach mean eval return "
          f">= {args.threshold:g} within {args.budget} env steps (need {args.need}) -> {verdict}")  # fmt: skip
    return {
        "rows": rows,
        "passed": passed,
        "verdict": verdict,
        "config": args.config,
        "override": args.override,
    }


# --------------------------------------------------------------------------------------------- speed
def _random_batch(state_dim: int, action_dim: int, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"state": torch.randn(batch, state_dim, generator=g),
            "action": torch.rand(batch, action_dim, generator=g) * 2 - 1,
            "reward": torch.randn(batch, generator=g), "next_state": torch.randn(batch, state_dim, generator=g),
            "done": torch.zeros(batch)}  # fmt: skip


def time_simpo(state_dim, action_dim, cfg: AgentConfig, batch: int, updates: int, compile_nets: bool) -> dict:
    """updates/s of :meth:`SiMPOAgent.update` on a random batch and the share of each phase."""
    torch.manual_seed(0)
    agent = SiMPOAgent(state_dim, action_dim, cfg, total_updates=10_000)
    if compile_nets:
        agent.compile()
    data = _random_batch(state_dim, action_dim, batch)
    t0 = time.perf_counter()
    for _ in range(3):  # warm-up (and compilation)
        agent.update(data)
    warm = time.perf_counter() - t0
    agent.timings.clear()
    t0 = time.perf_counter()
    for _ in range(updates):
        agent.update(data)
    dt = time.perf_counter() - t0
    parts = {k: v / updates * 1e3 for k, v in agent.timings.items()}
    return {"updates_per_s": updates / dt, "ms_per_update": dt / updates * 1e3, "warmup_s": warm, "ms": parts}


def time_sb3(algo: str, env_id: str, batch: int, updates: int, hidden: int, depth: int) -> dict:
    """updates/s of SB3's ``train(gradient_steps)`` after filling its buffer with random steps."""
    from stable_baselines3 import SAC, TD3

    cls = {"sac": SAC, "td3": TD3}[algo]
    env = make_env(env_id, seed=0)
    kw = {"net_arch": [hidden] * depth, "activation_fn": torch.nn.Mish}
    model = cls(
        "MlpPolicy", env, batch_size=batch, learning_starts=2_000, policy_kwargs=kw, seed=0, device="cpu"
    )
    model.learn(total_timesteps=2_000)  # random actions only: learning starts after these steps
    model.train(gradient_steps=3, batch_size=batch)
    t0 = time.perf_counter()
    model.train(gradient_steps=updates, batch_size=batch)
    dt = time.perf_counter() - t0
    return {"updates_per_s": updates / dt, "ms_per_update": dt / updates * 1e3}


def cmd_speed(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    probe = make_env(args.env)
    s_dim, a_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    settings = {
        "paper (N=32, 20 steps, 3x256)": AgentConfig(group_size=32, num_steps=20),
        "cpu (N=8, 10 steps, 3x256)": AgentConfig(group_size=8, num_steps=10),
    }
    if args.cpu_config:
        settings[f"config {Path(args.cpu_config).name}"] = load_config(args.cpu_config)[1]
    out: dict = {"env": args.env, "threads": args.threads, "batch": args.batch, "torch": torch.__version__}
    sac = time_sb3("sac", args.env, args.batch, args.sb3_updates, 256, 3)
    out["sb3_sac_3x256"] = sac
    print(f"SB3 SAC (3x256 Mish, batch {args.batch}): {sac['updates_per_s']:.1f} updates/s "
          f"({sac['ms_per_update']:.1f} ms)", flush=True)  # fmt: skip
    for name, cfg in settings.items():
        for compiled in [False, True] if args.compile else [False]:
            if compiled and not name.startswith("cpu"):
                continue
            r = time_simpo(s_dim, a_dim, cfg, args.batch, args.updates, compiled)
            key = f"simpo {name}{' compiled' if compiled else ''}"
            out[key] = r
            parts = ", ".join(f"{k} {v:.1f} ms" for k, v in r["ms"].items())
            print(f"{key}: {r['updates_per_s']:.2f} updates/s ({r['ms_per_update']:.1f} ms = {parts}); "
                  f"{r['updates_per_s'] / sac['updates_per_s']:.3f}x SAC; warm-up {r['warmup_s']:.1f} s",
                  flush=True)  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------- returns
def evaluate_sb3(model, env_cfg: EnvConfig, episodes: int, seed: int) -> list[float]:
    """Same protocol as :func:`simpo_bio.control.train.evaluate` for an SB3 model (deterministic actions)."""
    envs = make_vector_env(
        env_cfg.id, episodes, seed=seed, reward_shape=env_cfg.reward_shape, exp_scale=env_cfg.exp_scale
    )
    obs, _ = envs.reset(seed=seed)
    returns, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while running.any():
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = envs.step(action)
        returns += reward * running
        running &= ~(terminated | truncated)
    envs.close()
    return returns.tolist()


def run_sb3(
    algo: str, env_cfg: EnvConfig, tr: TrainConfig, seed: int, hidden: int = 256, depth: int = 3,
    activation: str = "mish",
) -> dict:
    """Train SB3 SAC/TD3 with the harness's envs, budget and networks; evaluate every ``tr.eval_every`` steps.

    ``hidden``, ``depth``, ``activation``: the actor's and critics' MLPs (``depth`` layers of ``hidden`` units), as
    :class:`AgentConfig`'s fields of the same names; ``activation`` is a key of ``ACTIVATIONS`` (the agents' own).
    """
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class _Eval(BaseCallback):  # the same protocol and episode seeds as SiMPO's evaluations
        def __init__(self) -> None:
            super().__init__()
            self.next, self.seconds = tr.eval_every, 0.0
            self.evals: list[tuple[int, float, float]] = []

        def run(self) -> None:
            t = time.perf_counter()
            rets = evaluate_sb3(self.model, env_cfg, tr.eval_episodes, seed + 10_000)
            self.evals.append((self.num_timesteps, float(np.mean(rets)), float(np.std(rets))))
            self.seconds += time.perf_counter() - t

        def _on_step(self) -> bool:
            if tr.eval_every > 0 and self.num_timesteps >= self.next:
                self.run()
                self.next += tr.eval_every
            return True

    vec = make_vec_env(lambda: make_env(env_cfg.id, reward_shape=env_cfg.reward_shape, exp_scale=env_cfg.exp_scale), n_envs=env_cfg.num_envs,
                       seed=seed)  # fmt: skip
    kw = {"net_arch": [hidden] * depth, "activation_fn": ACTIVATIONS[activation]}
    model = {"sac": SAC, "td3": TD3}[algo](
        "MlpPolicy", vec, batch_size=tr.batch_size, learning_starts=tr.learning_starts, train_freq=1,
        gradient_steps=tr.updates_per_step, policy_kwargs=kw, seed=seed, device="cpu", buffer_size=tr.buffer_size,
    )  # fmt: skip
    cb = _Eval()
    t0 = time.perf_counter()
    model.learn(total_timesteps=tr.total_env_steps, callback=cb)
    wall = time.perf_counter() - t0 - cb.seconds
    if not cb.evals or cb.evals[-1][0] != model.num_timesteps:
        cb.run()
    acts = {type(m).__name__ for m in model.policy.modules() if isinstance(m, torch.nn.Mish | torch.nn.ReLU)}
    return {"return": cb.evals[-1][1], "env_steps_per_s": tr.total_env_steps / wall,
            "updates_per_s": model._n_updates / wall, "evals": cb.evals,
            "parameters": sum(p.numel() for p in model.policy.parameters()), "activations": sorted(acts)}  # fmt: skip


def run_simpo(
    scheme: str, env_cfg: EnvConfig, agent: AgentConfig, tr: TrainConfig, seed: int, out: str
) -> dict:
    # scheme parameters of the config (e.g. eta) only go to the schemes that take them
    params = agent.scheme_params if scheme in ("linear_neg", "square_neg", "wd1") else {}
    # resume="auto": a killed benchmark continues each run from its last checkpoint in ``out``
    res = train(env_cfg, replace(agent, scheme=scheme, scheme_params=params),
                replace(tr, seed=seed, out_dir=out, progress=False, wandb=False, resume="auto"))  # fmt: skip
    return {"return": res["evals"][-1][1], "env_steps_per_s": res["env_steps_per_s"],
            "updates_per_s": res["updates_per_s"], "evals": res["evals"]}  # fmt: skip


def cmd_compare(args: argparse.Namespace) -> dict:
    env, agent, tr = load_config(args.config, *args.override)
    env = replace(env, id=args.env)
    tr = replace(tr, total_env_steps=args.steps, eval_every=args.eval_every)
    table = {}
    for algo in args.algos:
        runs = []
        for seed in args.seeds:
            if algo in ("sac", "td3"):
                r = run_sb3(algo, env, tr, seed)
            else:
                r = run_simpo(algo, env, agent, tr, seed, f"{args.out}/compare/{args.env}/{algo}/seed{seed}")
            runs.append(r)
            print(f"{args.env} {algo} seed {seed}: return {r['return']:.1f} ({r['env_steps_per_s']:.1f} env steps/s, "
                  f"{r['updates_per_s']:.1f} updates/s)", flush=True)  # fmt: skip
        m, s = _mean_std([r["return"] for r in runs])
        table[algo] = {"mean": m, "std": s, "runs": runs}
        print(
            f"== {args.env} {algo}: {m:.1f} +- {s:.1f} over seeds {args.seeds} at {args.steps} env steps",
            flush=True,
        )
    if "sac" in table and "linear_neg" in table and table["sac"]["mean"] <= 0:
        print("gate linear_neg / SAC: undefined, SAC's mean return is <= 0 at this budget")
    elif "sac" in table and "linear_neg" in table:
        ratio = table["linear_neg"]["mean"] / table["sac"]["mean"]
        print(f"gate linear_neg / SAC mean return = {ratio:.3f} (need >= 0.9 at 50k on HalfCheetah; "
              f"this run: {args.steps} steps on {args.env})")  # fmt: skip
    return {
        "env": args.env,
        # DMC tasks: runs under different reshaped rewards must not share a table (``report`` keys on it)
        "reward_shape": env.reward_shape if args.env.startswith("dmc/") else None,
        "steps": args.steps,
        "seeds": args.seeds,
        "table": table,
        "override": args.override,
    }


def cmd_landscape(args: argparse.Namespace) -> dict:
    env, agent, tr = load_config(args.config, *args.override)
    tr = replace(tr, total_env_steps=args.steps, eval_every=args.eval_every)
    table: dict = {}
    for shape in args.shapes:
        for scheme in args.schemes:
            runs = []
            for seed in args.seeds:
                e = replace(env, reward_shape=shape)
                r = run_simpo(scheme, e, agent, tr, seed, f"{args.out}/landscape/{shape}/{scheme}/seed{seed}")
                runs.append(r)
            rets = [r["return"] for r in runs]
            m, s = _mean_std(rets)
            table[f"{shape}/{scheme}"] = {"mean": m, "std": s, "returns": rets, "runs": runs}
            print(f"{env.id} reward {shape:6s} scheme {scheme:6s}: {m:.1f} +- {s:.1f}", flush=True)
    return {"kind": "landscape", "env": env.id, "steps": args.steps, "seeds": args.seeds, "table": table}


def cmd_evalckpt(args: argparse.Namespace) -> dict:
    """Re-evaluate finished runs' checkpoints (any agent.algorithm) with other action-selection settings (best-of-K by Q).

    Same episodes (seeds ``train.seed + 10,000``) as the runs' own evaluations; only ``eval_candidates`` changes.
    """
    from simpo_bio.control.train import configs_from_checkpoint, evaluate

    out: dict = {}
    for run in args.runs:
        path = Path(run) / "checkpoint.pt"
        if not path.exists():
            raise SystemExit(f"{run}: no checkpoint.pt (is it the out_dir of a SiMPO run?)")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        env_cfg, agent_cfg, train_cfg = configs_from_checkpoint(ckpt)  # maps renamed keys of older runs
        seed = train_cfg.seed
        probe = make_env(env_cfg.id)
        s_dim, a_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
        probe.close()
        agent = make_agent(s_dim, a_dim, agent_cfg)  # SiMPO, SDAC or DPMD (agent.algorithm)
        agent.load_training_state(ckpt["agent"])
        row = {}
        for k in args.candidates:
            agent.config = replace(agent.config, eval_candidates=k)  # act() reads it at every call
            torch.manual_seed(0)
            res = evaluate(agent, env_cfg, args.episodes, seed=seed + 10_000)
            row[k] = res["eval_return_mean"]
        out[run] = {"env_steps": ckpt["env_steps"], "returns": row}
        print(f"{run} ({ckpt['env_steps']} env steps): " + ", ".join(f"best-of-{k} {v:.1f}" for k, v in row.items()),
              flush=True)  # fmt: skip
    return out


def _is_landscape(res: dict) -> bool:
    # older landscape JSONs carry no "kind"; their table keys are "<reward shape>/<scheme>"
    return res.get("kind") == "landscape" or (bool(res.get("table")) and all("/" in k for k in res["table"]))


def cmd_report(args: argparse.Namespace) -> dict:
    """Merge the JSON files of several ``compare`` or ``landscape`` runs (e.g. one per seed) into tables.

    ``compare`` files give one table per env (and a learning-curve PNG with ``--png``); ``landscape`` files give one
    reward-shape x scheme table per env and budget. Files of one env with different budgets are refused.
    """
    compare, landscape = [], []
    for path in args.jsons:
        res = json.loads(Path(path).read_text())
        if "table" not in res or "env" not in res or "seeds" not in res or "steps" not in res:
            raise SystemExit(f"{path}: not the JSON of a `compare` or `landscape` run (keys {sorted(res)})")
        (landscape if _is_landscape(res) else compare).append(res)
    out = _report_compare(compare, args.png) if compare else {}
    if landscape:
        out.update(_report_landscape(landscape))
    return out


def _budget(steps: dict[str, set[int]], env_id: str, what: str) -> int:
    if len(steps[env_id]) != 1:
        raise SystemExit(f"{env_id}: {what} runs with different budgets {sorted(steps[env_id])} cannot share a table")
    return next(iter(steps[env_id]))


def _env_label(res: dict) -> str:
    """The env id, plus the reshaped reward of DMC runs (older files only have it in their overrides)."""
    shape = res.get("reward_shape")
    over = res.get("override") or []
    if shape is None and "--env.reward_shape" in over[:-1]:
        shape = over[over.index("--env.reward_shape") + 1]
    return f"{res['env']} (reward {shape})" if shape and res["env"].startswith("dmc/") else res["env"]


def _report_compare(files: list[dict], png: str | None) -> dict:
    runs: dict[tuple[str, str], dict[int, dict]] = {}
    steps: dict[str, set[int]] = {}
    for res in files:
        env_label = _env_label(res)
        steps.setdefault(env_label, set()).add(res["steps"])
        for algo, row in res["table"].items():
            for seed, r in zip(res["seeds"], row["runs"], strict=True):
                runs.setdefault((env_label, algo), {})[seed] = r
    order = ["sac", "td3", "exp", "linear", "linear_neg", "square", "square_neg", "wd1"]
    out: dict = {}
    for env_id in sorted(steps):
        budget = _budget(steps, env_id, "compare")
        algos = sorted((a for e, a in runs if e == env_id), key=lambda a: (order.index(a) if a in order else 99, a))
        sac = runs.get((env_id, "sac"))
        sac_mean = float(np.mean([r["return"] for r in sac.values()])) if sac else None
        print(f"\n{env_id}, {budget} env steps: final evaluation return (mean over episodes)")
        print("| algorithm | seeds | mean +- std over seeds | per seed | vs SAC | env steps/s | updates/s |")
        print("|---|---|---|---|---|---|---|")
        for algo in algos:
            by_seed = runs[(env_id, algo)]
            rets = [by_seed[s]["return"] for s in sorted(by_seed)]
            m, sd = _mean_std(rets)
            # a ratio of returns means nothing once either mean is <= 0 (returns are not on a ratio scale there)
            ratio = f"{m / sac_mean:.2f}x" if sac_mean and sac_mean > 0 and m > 0 else "n/a"
            sps = np.mean([r["env_steps_per_s"] for r in by_seed.values()])
            ups = np.mean([r["updates_per_s"] for r in by_seed.values()])
            per = ", ".join(_g(r) for r in rets)
            print(f"| {_display_name(algo, code=True)} | {', '.join(map(str, sorted(by_seed)))} | {_g(m)} +- {_g(sd)} | {per} | {ratio} | "
                  f"{sps:.1f} | {ups:.1f} |")  # fmt: skip
            out[f"{env_id}/{algo}"] = {"mean": m, "std": sd, "returns": rets, "vs_sac": ratio}
        if png:
            name = env_id.replace("/", "_").replace(" (reward ", "_").rstrip(")")  # dmc/cheetah-run (reward exp)
            _plot_curves(env_id, {a: runs[(env_id, a)] for a in algos}, Path(png.replace("{env}", name)))
    return out


def _report_landscape(files: list[dict]) -> dict:
    rets: dict[tuple[str, str, str], dict[int, float]] = {}
    first: dict[tuple[str, str], list[list[float]]] = {}  # (env, shape) -> [[env steps, return] of 1st evaluation]
    steps: dict[str, set[int]] = {}
    for res in files:
        steps.setdefault(res["env"], set()).add(res["steps"])
        for key, row in res["table"].items():
            shape, scheme = key.split("/", 1)
            for seed, r in zip(res["seeds"], row["returns"], strict=True):
                rets.setdefault((res["env"], shape, scheme), {})[seed] = r
            for run in row.get("runs", []):  # older files have no per-run evaluations
                if run.get("evals"):
                    first.setdefault((res["env"], shape), []).append(run["evals"][0][:2])
    shape_order = ["sqrt", "linear", "square", "exp"]  # flat to steep (simpo_bio.control.envs)
    out: dict = {}
    for env_id in sorted(steps):
        budget = _budget(steps, env_id, "landscape")
        shapes = sorted({k[1] for k in rets if k[0] == env_id},
                        key=lambda x: (shape_order.index(x) if x in shape_order else 99, x))  # fmt: skip
        schemes = sorted({k[2] for k in rets if k[0] == env_id})
        print(f"\n{env_id}, {budget} env steps: final evaluation return, mean +- std over seeds (per seed); "
              "first evaluation = mean over all runs of the shape at its first evaluation (before or at the start "
              "of learning)")  # fmt: skip
        print("| reward shape | first evaluation | " + " | ".join(_display_name(s, code=True) for s in schemes)
              + " | best |")  # fmt: skip
        print("|---|---|" + "---|" * len(schemes) + "---|")
        for shape in shapes:
            cells, means = [], {}
            for scheme in schemes:
                by_seed = rets.get((env_id, shape, scheme))
                if not by_seed:
                    cells.append("not run")
                    continue
                vals = [by_seed[s] for s in sorted(by_seed)]
                m, sd = _mean_std(vals)
                means[scheme] = m
                seeds = ", ".join(f"s{s} {_g(by_seed[s])}" for s in sorted(by_seed))
                cells.append(f"{_g(m)} +- {_g(sd)} ({seeds})")
                out[f"{env_id}/{shape}/{scheme}"] = {"mean": m, "std": sd, "returns": vals, "seeds": sorted(by_seed)}
            best = f"`{max(means, key=means.get)}`" if len(means) > 1 else "n/a"
            f0 = first.get((env_id, shape))
            f0_cell = f"{_g(float(np.mean([r for _, r in f0])))} at {int(f0[0][0])}" if f0 else "n/a"
            print(f"| {shape} | {f0_cell} | " + " | ".join(cells) + f" | {best} |")
    return out


def _g(x: float) -> str:
    """Returns at a readable precision: integers from 100 up, 3 significant digits below (DMC returns can be ~1e-2)."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _display_name(algo: str, code: bool = False) -> str:
    if algo in ("sac", "td3"):
        return f"SB3 {algo.upper()}"
    return f"SiMPO `{algo}`" if code else f"SiMPO {algo}"


def _plot_curves(env_id: str, by_algo: dict[str, dict[int, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (algo, by_seed) in enumerate(by_algo.items()):
        color = f"C{i}"
        curves = [np.asarray([(s, m) for s, m, _ in r["evals"]]) for r in by_seed.values() if r.get("evals")]
        for c in curves:
            ax.plot(c[:, 0], c[:, 1], color=color, alpha=0.25, lw=1)
        common = min(len(c) for c in curves)
        mean = np.mean([c[:common, 1] for c in curves], axis=0)
        ax.plot(curves[0][:common, 0], mean, color=color, lw=2, label=f"{_display_name(algo)} (n={len(curves)})")
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation return (mean over episodes)")
    ax.set_title(f"{env_id}: thin lines = seeds, thick = mean")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", dest="out", default="runs/bench_control", help="where run folders go")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--threads", type=int, default=1)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("smoke")
    s.add_argument("--config", default=str(ROOT / "configs/control/inverted_pendulum.yaml"))
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--threshold", type=float, default=950.0)
    s.add_argument("--budget", type=int, default=20_000)
    s.add_argument("--need", type=int, default=2)
    s.add_argument(
        "--full", action="store_true", help="run every seed to the budget (default: stop once passed)"
    )
    s = sub.add_parser("speed")
    s.add_argument("--env", default="HalfCheetah-v4")
    s.add_argument("--batch", type=int, default=256)
    s.add_argument("--updates", type=int, default=5)
    s.add_argument("--sb3-updates", type=int, default=100)
    s.add_argument("--compile", action="store_true", help="also time torch.compile'd networks")
    s.add_argument("--cpu-config", default=None, help="also time the agent of this YAML")
    for name in ("compare", "landscape"):
        s = sub.add_parser(name)
        default_cfg = "halfcheetah.yaml" if name == "compare" else "dmc_cheetah_run.yaml"
        s.add_argument("--config", default=str(ROOT / "configs/control" / default_cfg))
        s.add_argument("--steps", type=int, default=50_000)
        s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        s.add_argument("--eval-every", type=int, default=10_000, help="env steps between evaluations")
    sub.choices["compare"].add_argument("--env", default="HalfCheetah-v4")
    sub.choices["compare"].add_argument("--algos", nargs="+",
                                        default=["sac", "td3", "exp", "linear", "linear_neg", "square"])  # fmt: skip
    sub.choices["landscape"].add_argument("--shapes", nargs="+", default=["sqrt", "linear", "square", "exp"])
    sub.choices["landscape"].add_argument("--schemes", nargs="+", default=["linear", "square"])
    s = sub.add_parser("evalckpt", help="re-evaluate SiMPO run folders with best-of-K action selection")
    s.add_argument("runs", nargs="+")
    s.add_argument("--candidates", type=int, nargs="+", default=[1, 8, 32])
    s.add_argument("--episodes", type=int, default=5)
    s = sub.add_parser("report", help="merge the --json files of compare / landscape runs into tables and curves")
    s.add_argument("jsons", nargs="+")
    s.add_argument("--png", default=None, help="learning curves; {env} is replaced by the env id")
    # anything not known here overrides the config, e.g. `smoke --seeds 0 1 --agent.scheme exp`
    args, args.override = p.parse_known_args(argv)
    if args.override and args.cmd in ("speed", "report", "evalckpt"):
        p.error(f"unrecognized arguments: {args.override}")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    res = {"smoke": cmd_smoke, "speed": cmd_speed, "compare": cmd_compare, "landscape": cmd_landscape,
           "report": cmd_report, "evalckpt": cmd_evalckpt}[
        args.cmd
    ](args)
    res["wall_s"] = time.perf_counter() - t0
    res["argv"] = sys.argv[1:]
    print(f"total wall time {res['wall_s']:.0f} s ({args.threads} torch thread(s))")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
