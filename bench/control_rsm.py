"""Returns of the RSM agents (SDAC, DPMD) vs SiMPO ``linear_neg`` and SB3 SAC / TD3 on the same harness.

    MUJOCO_GL=disable .venv/bin/python bench/control_rsm.py run [--grid 1.5k|50k|50k5] [--envs HalfCheetah-v4]
        [--seeds 0 1 2] [--algos sdac dpmd linear_neg sac td3] [--out-dir runs/control_rsm]
    .venv/bin/python bench/control_rsm.py report [--grid 1.5k|50k|50k5] [--out-dir runs/control_rsm] [--png PATH|none]

The grids (budget, seeds, hyper-parameters) are :data:`GRIDS`: ``1.5k`` (:data:`GRID`), ``50k``
(:data:`GRID_50K`) and ``50k5`` (:data:`GRID_50K5`); each was fixed in ``bench/results/control-rsm.md`` before anything of it was run. Every run is
one process step after another (one torch thread), results are saved per run (``<out>/<env>/<algo>/seed<k>.json``)
so a killed benchmark continues where it stopped; ``report`` prints the table (mean +- std over seeds, per-seed
returns, env steps/s, updates/s) and draws one learning-curve figure per env (default
``bench/results/control_rsm_{env}.png`` for ``1.5k``, ``control_rsm<grid>_{env}.png`` for the others). It refuses, in one
line, a run file of another grid's budget.

Imports: numpy, torch, :mod:`simpo_bio.control`, ``bench/control.py`` (SB3 runner on the harness schedule).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "disable")
os.environ.setdefault("WANDB_MODE", "offline")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from simpo_bio.control.agent import AgentConfig  # noqa: E402
from simpo_bio.control.train import EnvConfig, TrainConfig, train  # noqa: E402

#: The fixed grid (see bench/results/control-rsm.md). Networks 3 x 256 Mish everywhere (SB3 too, via bench/control.py).
GRID = {
    "train": dict(
        total_env_steps=1500,
        learning_starts=1000,
        updates_per_step=1,
        batch_size=256,
        buffer_size=1_000_000,
        eval_every=500,
        eval_episodes=2,
        checkpoint_every=0,
        save_buffer=False,
        wandb=False,
        progress=False,
        threads=1,
    ),
    "env": dict(num_envs=1),
    "agents": {
        "sdac": dict(
            algorithm="sdac",
            scheme="exp",
            group_size=32,
            num_steps=20,
            noise_schedule="cosine",
            temperature=0.05,
            auto_temperature=False,
            exploration_noise=0.1,
            collect_candidates=1,
            eval_candidates=10,
            policy_lr_final=3e-4,
        ),
        "dpmd": dict(
            algorithm="dpmd",
            scheme="exp",
            group_size=8,
            num_steps=20,
            noise_schedule="cosine",
            temperature=1.0,
            auto_temperature=True,
            target_kl=1.0,
            exploration_noise=0.1,
            collect_candidates=1,
            eval_candidates=10,
            policy_lr_final=3e-4,
        ),
        "linear_neg": dict(
            algorithm="simpo",
            scheme="linear_neg",
            scheme_params={"eta": 1.0},
            group_size=8,
            num_steps=20,
            target_kl=1.0,
            exploration_noise=0.1,
            collect_candidates=1,
            eval_candidates=10,
        ),
    },
    "common": dict(hidden=256, depth=3, activation="mish"),
}
#: The second grid (bench/results/control-rsm.md, "50k grid"): the issue's 50k env steps, at the speed gate's sizes
#: (2 x 256 ReLU, SDAC K = 8), for the algorithms that fit this CPU at that budget (SDAC, SB3 SAC / TD3).
GRID_50K = {
    "train": dict(GRID["train"], total_env_steps=50_000, learning_starts=5000, eval_every=5000, eval_episodes=5,
                  checkpoint_every=10_000, save_buffer=True),  # fmt: skip
    "env": dict(num_envs=1),
    "agents": {"sdac": dict(GRID["agents"]["sdac"], group_size=8)},
    "common": dict(hidden=256, depth=2, activation="relu"),
}
#: The third grid (bench/results/control-rsm.md, "50k5 grid", fixed 2 December 2026 19:46 UTC): the harness of
#: bench/results/control.md's SiMPO-vs-SB3 bench (configs/control/halfcheetah.yaml: 5 envs, one update per vector
#: step, 9,000 updates in 50k env steps, 3 x 256 Mish), which the particle-sampling agents (DPMD, SiMPO) fit on this
#: CPU. SiMPO ``linear_neg`` is that config's agent; DPMD and SDAC keep the first grid's settings except the sampler,
#: sized as SiMPO's there: T = 10 levels, N = K = 8, best of 8 at evaluation.
GRID_50K5 = {
    "train": dict(GRID["train"], total_env_steps=50_000, learning_starts=5000, eval_every=10_000, eval_episodes=5,
                  checkpoint_every=10_000, save_buffer=True),  # fmt: skip
    "env": dict(num_envs=5),
    "agents": {
        "sdac": dict(GRID["agents"]["sdac"], group_size=8, num_steps=10, eval_candidates=8),
        "dpmd": dict(GRID["agents"]["dpmd"], group_size=8, num_steps=10, eval_candidates=8),
        # fourth grid (control-rsm.md, fixed 2 December 2026 22:45 UTC): DPMD with the dual's floor 100x lower, so
        # that lambda can follow the shrinking Q spread of the policy's own candidates (third grid: stuck at 0.01)
        "dpmd_floor": dict(GRID["agents"]["dpmd"], group_size=8, num_steps=10, eval_candidates=8,
                           temperature_min=1e-4),
        # fifth grid (control-rsm.md, fixed 3 December 2026 05:33 UTC before any of its runs): dpmd_floor whose
        # candidates are the behaviour policy's actions, policy samples + N(0, 0.1^2). It won and the library's
        # DPMDAgent.candidates now draws them so; `dpmd` and `dpmd_floor` ran plain samples up to commit 2feae5b
        "dpmd_noised": dict(GRID["agents"]["dpmd"], group_size=8, num_steps=10, eval_candidates=8,
                            temperature_min=1e-4),
        "linear_neg": dict(algorithm="simpo", scheme="linear_neg", scheme_params={"eta": 1.0}, group_size=8,
                           num_steps=10, time_schedule="cosine", gamma=0.99, polyak=0.005, critic_lr=3e-4,
                           policy_lr=3e-4, policy_lr_final=3e-5, normalize_advantage=False, target_kl=0.9,
                           exploration_noise=0.1, collect_candidates=1, eval_candidates=8),  # fmt: skip
    },
    "common": dict(hidden=256, depth=3, activation="mish"),
}
GRIDS = {"1.5k": GRID, "50k": GRID_50K, "50k5": GRID_50K5}
ALGOS = ("sdac", "dpmd", "dpmd_floor", "dpmd_noised", "linear_neg", "sac", "td3")
NAMES = {"sdac": "SDAC (ours)", "dpmd": "DPMD (ours)", "dpmd_floor": "DPMD, floor 1e-4 (ours)",
         "dpmd_noised": "DPMD, noised candidates (ours)",
         "linear_neg": "SiMPO linear_neg", "sac": "SB3 SAC", "td3": "SB3 TD3"}  # fmt: skip


def run_one(env_id: str, algo: str, seed: int, out: Path, grid: dict = GRID) -> dict:
    """One (env, algorithm, seed) run of ``grid``; saved to ``out/<env>/<algo>/seed<seed>.json``.

    Raises:
        KeyError: ``algo`` is not one of ``grid``'s agents nor ``sac`` / ``td3``.
    """
    path = out / env_id / algo / f"seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    torch.set_num_threads(1)
    env = EnvConfig(id=env_id, **grid["env"])
    tr = TrainConfig(seed=seed, out_dir=str(path.parent / f"seed{seed}"), **grid["train"])
    if algo in ("sac", "td3"):
        from control import (
            run_sb3,  # bench/control.py: SB3 with the grid's networks on the harness's envs and schedule
        )

        res = run_sb3(algo, env, tr, seed, **grid["common"])
    else:
        agent = AgentConfig(**grid["common"], **grid["agents"][algo])
        r = train(env, agent, tr)
        res = {"return": r["evals"][-1][1], "env_steps_per_s": r["env_steps_per_s"],
               "updates_per_s": r["updates_per_s"], "evals": r["evals"], "timings": r["timings"]}  # fmt: skip
    res.update(env=env_id, algo=algo, seed=seed, grid=grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))
    return res


def cmd_run(args: argparse.Namespace) -> None:
    for env_id in args.envs:
        for seed in args.seeds:  # seed-major: an interrupted benchmark has every algorithm at the first seeds
            for algo in args.algos:
                r = run_one(env_id, algo, seed, Path(args.out), GRIDS[args.grid])
                print(f"{env_id} {algo} seed {seed}: return {r['return']:.1f}, {r['env_steps_per_s']:.1f} env steps/s, "
                      f"{r['updates_per_s']:.1f} updates/s", flush=True)  # fmt: skip


def cmd_report(args: argparse.Namespace) -> None:
    out = Path(args.out)
    for env_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        runs = {
            a: [json.loads(f.read_text()) for f in sorted((env_dir / a).glob("seed*.json"))] for a in ALGOS
        }
        runs = {a: r for a, r in runs.items() if r}
        if not runs:  # an env whose runs are all still going
            continue
        grid = GRIDS[args.grid]
        steps, envs = grid["train"]["total_env_steps"], grid["env"]["num_envs"]
        for a, rs in runs.items():
            for r in rs:
                got = (r["grid"]["train"]["total_env_steps"], r["grid"]["env"]["num_envs"])
                if got != (steps, envs):
                    raise SystemExit(f"{env_dir / a}/seed{r['seed']}.json: a run of {got[0]} env steps from {got[1]} "
                                     f"env(s), not grid {args.grid}'s {steps} from {envs}")  # fmt: skip
        print(f"\n### {env_dir.name}, {steps} env steps\n")
        print("| algorithm | seeds | return mean ± std | per seed | env steps/s | updates/s |")
        print("|---|---|---|---|---|---|")
        for a, rs in runs.items():
            rets = [r["return"] for r in rs]
            per = ", ".join(f"{r['seed']}: {r['return']:.0f}" for r in rs)
            print(
                f"| {NAMES[a]} | {len(rs)} | {np.mean(rets):.0f} ± {np.std(rets):.0f} | {per} | "
                f"{np.mean([r['env_steps_per_s'] for r in rs]):.1f} | {np.mean([r['updates_per_s'] for r in rs]):.1f} |"
            )
        png = args.png or f"bench/results/control_rsm{'' if args.grid == '1.5k' else args.grid}_{{env}}.png"
        if png != "none":
            plot(env_dir.name, runs, Path(png.format(env=env_dir.name)), GRIDS[args.grid])


def plot(env_id: str, runs: dict[str, list[dict]], path: Path, grid: dict = GRID) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (algo, rs) in enumerate(runs.items()):
        curves = [np.asarray([(s, m) for s, m, _ in r["evals"]]) for r in rs]
        for c in curves:
            ax.plot(c[:, 0], c[:, 1], color=f"C{i}", alpha=0.3, lw=1)
        n = min(len(c) for c in curves)
        ax.plot(
            curves[0][:n, 0],
            np.mean([c[:n, 1] for c in curves], axis=0),
            color=f"C{i}",
            lw=2,
            marker="o",
            label=f"{NAMES[algo]} (n={len(curves)})",
        )
    ax.axvline(grid["train"]["learning_starts"], color="grey", ls=":", lw=1, label="end of random actions")
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"eval return (mean of {grid['train']['eval_episodes']} episodes)")
    steps = grid["train"]["total_env_steps"]
    envs = grid["env"]["num_envs"]
    ax.set_title(f"{env_id}, {steps:,} env steps from {envs} env{'s' if envs > 1 else ''}\n"
                 "evaluation return per seed (thin) and mean over seeds (thick)", fontsize=10)  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nwrote {path}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--grid", choices=sorted(GRIDS), default="1.5k")
    r.add_argument("--envs", nargs="+", default=["HalfCheetah-v4"])
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    r.add_argument("--out-dir", dest="out", default="runs/control_rsm")
    q = sub.add_parser("report")
    q.add_argument("--grid", choices=sorted(GRIDS), default="1.5k")
    q.add_argument("--out-dir", dest="out", default="runs/control_rsm")
    q.add_argument("--png", default=None, help="figure path with {env}; 'none' draws nothing (default: by grid)")
    args = p.parse_args(argv)
    {"run": cmd_run, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
