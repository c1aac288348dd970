"""Training loop of the control experiments: ``simpo-bio control --config configs/control/halfcheetah.yaml``.

Off-policy loop (CleanRL-style, one readable function :func:`train`):

* ``train.learning_starts`` env steps of uniform random actions, then actions from :meth:`SiMPOAgent.act`
  (exploration documented in :mod:`simpo_bio.control.agent`);
* ``env.num_envs`` Gymnasium envs stepped together (default 5, as in the paper); after every vector step,
  ``train.updates_per_step`` gradient updates on batches of ``train.batch_size`` from a replay buffer
  (stable-baselines3's :class:`~stable_baselines3.common.buffers.ReplayBuffer`; time-limit truncations are
  bootstrapped: only true terminations are stored as ``done``);
* evaluation every ``train.eval_every`` env steps on a separate vector env of ``train.eval_episodes`` copies
  (seeds ``seed + 10_000 + i``), one episode each, greedy action selection (best-of-K by Q);
* CSV (``<output_dir>/metrics.csv``) + wandb offline logging, a tqdm bar with env steps/s and updates/s,
  atomic checkpoints (``checkpoint.pt``; the replay buffer in ``replay_buffer.pkl`` if ``train.save_buffer``)
  that ``train.resume`` continues from (step counts, optimisers, LR schedule, RNG states).

Configuration is three dataclasses (:class:`EnvConfig`, :class:`~simpo_bio.control.agent.AgentConfig`,
:class:`TrainConfig`) read by jsonargparse from YAML; any field can be overridden on the command line, e.g.
``--agent.scheme square --train.seed 3``. :func:`configs_from_checkpoint` rebuilds them from a checkpoint,
including checkpoints written before the agent's keys were renamed (:data:`RENAMED_AGENT_KEYS`).

Imports: numpy, torch, :mod:`simpo_bio.control.agent`, :mod:`simpo_bio.control.envs`, :mod:`simpo_bio.fileio`;
stable-baselines3, tqdm and wandb inside :func:`train`, jsonargparse inside :func:`build_parser`.
"""

from __future__ import annotations

import csv
import math
import os
import pickle
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simpo_bio.control.agent import AgentConfig, SiMPOAgent
from simpo_bio.control.envs import make_vector_env
from simpo_bio.fileio import atomic_path


@dataclass
class EnvConfig:
    """Which environment and how many copies.

    Attributes:
        id: ``HalfCheetah-v4`` ... (see :mod:`simpo_bio.control.envs`) or ``dmc/cheetah-run``.
        num_envs: parallel training envs (paper: 5).
        reward_shape: DMC speed-reward shape ``sqrt | linear | square | exp`` (None: the task's reward).
        exp_scale: steepness of the ``exp`` shape.
        vectorization: ``sync`` (one process, best on few cores) or ``async`` (a process per env).
    """

    id: str = "HalfCheetah-v4"
    num_envs: int = 5
    reward_shape: str | None = None
    exp_scale: float = 3.0
    vectorization: str = "sync"


@dataclass
class TrainConfig:
    """Budget, data and bookkeeping of a run.

    Attributes:
        total_env_steps: env interactions summed over the parallel envs (paper: 1M).
        learning_starts: env steps of uniform random actions before learning.
        updates_per_step: gradient updates per vector step (paper: 1 -> 200k updates for 1M steps, 5 envs).
        batch_size: transitions per update. buffer_size: replay capacity in transitions (paper: 1M).
        eval_every: env steps between evaluations (0: only at the end). eval_episodes: episodes per evaluation.
        checkpoint_every: env steps between checkpoints (0: only at the end). save_buffer: also save the buffer.
        seed: seeds Python, NumPy (the buffer's sampler), torch and the envs.
        output_dir: where metrics.csv, config and checkpoints go.
        resume: path of a checkpoint.pt to continue from, or ``auto`` (``<output_dir>/checkpoint.pt`` if any).
        wandb: also log to wandb (offline unless WANDB_MODE says otherwise). wandb_project: its project.
        progress: show a tqdm progress bar. torch_threads: ``torch.set_num_threads`` (0: leave as is).
        device: ``cpu`` or ``cuda``. compile: ``torch.compile`` the policy and critic networks.
        stop_return: stop early once an evaluation's mean return reaches this value (None: run the full budget).
    """

    total_env_steps: int = 1_000_000
    learning_starts: int = 5_000
    updates_per_step: int = 1
    batch_size: int = 256
    buffer_size: int = 1_000_000
    eval_every: int = 10_000
    eval_episodes: int = 10
    checkpoint_every: int = 50_000
    save_buffer: bool = False
    seed: int = 0
    output_dir: str = "runs/control"
    resume: str | None = None
    wandb: bool = True
    wandb_project: str = "simpo-bio-control"
    progress: bool = True
    torch_threads: int = 0
    device: str = "cpu"
    compile: bool = False
    stop_return: float | None = None


METRIC_FIELDS = (
    "env_steps", "updates", "wall_time_s", "env_steps_per_s", "updates_per_s", "episode_return",
    "eval_return_mean", "eval_return_std", "eval_original_return_mean", "critic_loss", "policy_loss",
    "temperature", "weight_kl", "weight_ess", "weight_active", "negative_mass", "q_mean", "td_target_mean",
    "particle_q_std", "policy_lr",
)  # fmt: skip


class MetricLogger:
    """Append rows to ``<dir>/metrics.csv`` (fixed columns :data:`METRIC_FIELDS`) and, optionally, to wandb."""

    def __init__(
        self, output_dir: Path, *, use_wandb: bool, project: str, config: dict[str, Any], run_id: str
    ):
        self.path = output_dir / "metrics.csv"
        new = not self.path.exists()
        self._fh = open(self.path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.DictWriter(self._fh, fieldnames=METRIC_FIELDS, extrasaction="ignore")
        if new:
            self._writer.writeheader()
        self._wandb = None
        if use_wandb:
            import wandb

            os.environ.setdefault("WANDB_MODE", "offline")
            self._wandb = wandb.init(
                project=project, dir=str(output_dir), config=config, id=run_id, resume="allow", reinit=True
            )

    def log(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)
        self._fh.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k != "env_steps"}, step=int(row["env_steps"]))

    def close(self) -> None:
        self._fh.close()
        if self._wandb is not None:
            self._wandb.finish()


def _atomic_save(obj: Any, path: Path, *, use_pickle: bool = False) -> None:
    with atomic_path(path) as tmp:
        if use_pickle:
            with open(tmp, "wb") as fh:
                pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            torch.save(obj, tmp)


def _to_batch(samples, device: str) -> dict[str, torch.Tensor]:
    return {
        "state": samples.observations.float().to(device),
        "action": samples.actions.float().to(device),
        "reward": samples.rewards.float().reshape(-1).to(device),
        "next_state": samples.next_observations.float().to(device),
        "done": samples.dones.float().reshape(-1).to(device),
    }


#: Keys of :class:`~simpo_bio.control.agent.AgentConfig` renamed in 0.1.0, old -> new. Configs saved in older
#: checkpoints carry the old names; :func:`upgrade_agent_config` maps them.
RENAMED_AGENT_KEYS = {"num_particles": "group_size", "flow_steps": "num_steps", "temperature_init": "temperature"}


def upgrade_agent_config(values: dict[str, Any]) -> dict[str, Any]:
    """A saved agent config (dict) with the old key names of :data:`RENAMED_AGENT_KEYS` replaced by the new ones.

    Args:
        values: ``asdict(AgentConfig)`` as stored in a checkpoint, from any version.

    Returns:
        A new dict that ``AgentConfig(**...)`` accepts (keys already new are kept as they are).

    Raises:
        ValueError: an old key and its new name are both present with different values.
    """
    out = dict(values)
    for old, new in RENAMED_AGENT_KEYS.items():
        if old not in out:
            continue
        value = out.pop(old)
        if new in out and out[new] != value:
            raise ValueError(f"agent config has both {old!r} (= {value!r}) and its new name {new!r} (= {out[new]!r})")
        out[new] = value
    return out


def configs_from_checkpoint(ckpt: dict[str, Any]) -> tuple[EnvConfig, AgentConfig, TrainConfig]:
    """The three configs a checkpoint was trained with (``ckpt["config"]``, see :func:`train`).

    Old checkpoints are read too: renamed agent keys are mapped by :func:`upgrade_agent_config`.

    Args:
        ckpt: the dict :func:`torch.load` returns for a ``checkpoint.pt``.

    Returns:
        ``(EnvConfig, AgentConfig, TrainConfig)``.

    Raises:
        KeyError: no ``"config"`` entry. TypeError: a key no version of the dataclasses knows.
    """
    cfg = ckpt["config"]
    return (EnvConfig(**cfg["env"]), AgentConfig(**upgrade_agent_config(cfg["agent"])),
            TrainConfig(**cfg["train"]))


@torch.no_grad()
def evaluate(
    agent: SiMPOAgent, env_cfg: EnvConfig, episodes: int, seed: int, device: str = "cpu"
) -> dict[str, Any]:
    """Mean/std of the return of ``episodes`` greedy episodes (one per env copy, run in lockstep).

    Returns:
        ``eval_return_mean``, ``eval_return_std``, ``returns`` (list), and for reshaped DMC rewards
        ``eval_original_return_mean`` (the task's own reward summed over the episode).

    Raises:
        ValueError: unknown env id or reward shape (from :func:`simpo_bio.control.envs.make_vector_env`).
    """
    envs = make_vector_env(
        env_cfg.id, episodes, seed=seed, reward_shape=env_cfg.reward_shape, exp_scale=env_cfg.exp_scale
    )
    try:
        obs, _ = envs.reset(seed=seed)
        returns = np.zeros(episodes)
        original = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)
        while running.any():
            state = torch.as_tensor(obs, dtype=torch.float32, device=device)
            action = agent.act(state, explore=False).cpu().numpy()
            obs, reward, terminated, truncated, info = envs.step(action)
            returns += reward * running
            if "original_reward" in info:
                original += np.asarray(info["original_reward"], dtype=float) * running
            running &= ~(terminated | truncated)
    finally:
        envs.close()
    out = {"eval_return_mean": float(returns.mean()), "eval_return_std": float(returns.std()),
           "returns": returns.tolist()}  # fmt: skip
    if env_cfg.reward_shape is not None:
        out["eval_original_return_mean"] = float(original.mean())
    return out


def train(env: EnvConfig, agent: AgentConfig, train: TrainConfig) -> dict[str, Any]:  # noqa: C901
    """Run SiMPO on ``env`` for ``train.total_env_steps`` env steps; returns the evaluation history.

    Returns:
        ``{"evals": [(env_steps, mean, std), ...], "env_steps": int, "updates": int, "output_dir": str,
        "wall_time_s": float, "env_steps_per_s": float, "updates_per_s": float, "timings": {phase: seconds}}``;
        ``env_steps`` is below the budget only when ``train.stop_return`` ended the run early. Wall time and
        rates cover the whole run, resumed segments included (the checkpoint carries the training time so far;
        a checkpoint written before this field existed gives the rates of the last segment only).

    Raises:
        ValueError: inconsistent budget (e.g. ``batch_size`` larger than ``learning_starts``), bad env id.
        FileNotFoundError: ``train.resume`` names a missing checkpoint.
    """
    from stable_baselines3.common.buffers import ReplayBuffer
    from tqdm.auto import tqdm

    if train.learning_starts < train.batch_size:
        raise ValueError(
            f"learning_starts ({train.learning_starts}) must be >= batch_size ({train.batch_size})"
        )
    if train.torch_threads > 0:
        torch.set_num_threads(train.torch_threads)
    out_dir = Path(train.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    buffer_path = out_dir / "replay_buffer.pkl"
    resume = train.resume
    if resume == "auto":
        resume = str(ckpt_path) if ckpt_path.exists() else None
    if resume is not None and not Path(resume).exists():
        raise FileNotFoundError(f"checkpoint to resume from not found: {resume}")

    random.seed(train.seed)
    np.random.seed(train.seed)  # SB3's ReplayBuffer samples with NumPy's global generator
    torch.manual_seed(train.seed)

    n = env.num_envs
    envs = make_vector_env(
        env.id, n, seed=train.seed, reward_shape=env.reward_shape, exp_scale=env.exp_scale,
        vectorization=env.vectorization,
    )  # fmt: skip
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    state_dim, action_dim = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
    vector_steps = math.ceil(train.total_env_steps / n)
    total_updates = max(1, (vector_steps - train.learning_starts // n) * train.updates_per_step)
    device = train.device
    simpo = SiMPOAgent(state_dim, action_dim, agent, total_updates=total_updates).to(device)
    if train.compile:
        simpo.compile()
    buffer = ReplayBuffer(
        max(train.buffer_size // n, 1) * n, obs_space, act_space, device=device, n_envs=n,
        handle_timeout_termination=False,
    )  # fmt: skip

    env_steps, run_id = 0, f"{Path(train.output_dir).name}-{train.seed}-{int(time.time())}"
    evals: list[tuple[int, float, float]] = []
    elapsed_before = 0.0  # training wall time of the segments before a resume
    whole_run = True  # rates over the whole run; False for a checkpoint without "elapsed_s" (last segment only)
    if resume is not None:
        ckpt = torch.load(resume, map_location=device, weights_only=False)
        simpo.load_training_state(ckpt["agent"])
        env_steps, run_id, evals = int(ckpt["env_steps"]), ckpt["run_id"], list(ckpt["evals"])
        whole_run = ckpt.get("elapsed_s") is not None
        elapsed_before = float(ckpt.get("elapsed_s") or 0.0)
        random.setstate(ckpt["rng"]["python"])
        np.random.set_state(ckpt["rng"]["numpy"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if ckpt.get("buffer_path") and Path(ckpt["buffer_path"]).exists():
            with open(ckpt["buffer_path"], "rb") as fh:
                buffer = pickle.load(fh)
            buffer.device = torch.device(device)

    config = {"env": asdict(env), "agent": asdict(agent), "train": asdict(train)}
    logger = MetricLogger(
        out_dir, use_wandb=train.wandb, project=train.wandb_project, config=config, run_id=run_id
    )

    def checkpoint() -> None:
        saved_buffer = None
        if train.save_buffer:
            _atomic_save(buffer, buffer_path, use_pickle=True)
            saved_buffer = str(buffer_path)
        rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        _atomic_save(
            {"agent": simpo.training_state(), "env_steps": env_steps, "run_id": run_id, "evals": evals,
             "rng": rng, "config": config, "buffer_path": saved_buffer,
             "elapsed_s": elapsed_before + time.perf_counter() - t_start if whole_run else None},
            ckpt_path,
        )  # fmt: skip

    def run_eval() -> None:
        res = evaluate(simpo, env, train.eval_episodes, seed=train.seed + 10_000, device=device)
        evals.append((env_steps, res["eval_return_mean"], res["eval_return_std"]))
        logger.log({"env_steps": env_steps, "updates": simpo.num_updates, **res})
        bar.set_postfix_str(f"eval {res['eval_return_mean']:.1f}", refresh=False)

    # a resumed run restarts its episodes (env states are not checkpointed) with a fresh but seeded reset
    obs, _ = envs.reset(seed=train.seed + env_steps)
    bar = tqdm(total=train.total_env_steps, initial=env_steps, disable=not train.progress, unit="step",
               desc=f"SiMPO[{agent.scheme}] {env.id}", dynamic_ncols=True)  # fmt: skip
    t_start = time.perf_counter()
    steps_start, updates_start = (0, 0) if whole_run else (env_steps, simpo.num_updates)
    logs: dict[str, float] = {}
    next_eval = (env_steps // train.eval_every + 1) * train.eval_every if train.eval_every > 0 else None
    next_ckpt = (
        (env_steps // train.checkpoint_every + 1) * train.checkpoint_every if train.checkpoint_every else None
    )
    try:
        while env_steps < train.total_env_steps:
            if env_steps < train.learning_starts:
                action = np.random.uniform(-1.0, 1.0, size=(n, action_dim)).astype(np.float32)
            else:
                state = torch.as_tensor(obs, dtype=torch.float32, device=device)
                action = simpo.act(state, explore=True).cpu().numpy()
            next_obs, reward, terminated, truncated, info = envs.step(action)
            real_next = next_obs.copy()
            if "_final_obs" in info:
                for i in np.flatnonzero(info["_final_obs"]):
                    real_next[i] = info["final_obs"][i]
            buffer.add(obs, real_next, action, reward, terminated, [{} for _ in range(n)])
            obs = next_obs
            env_steps += n
            bar.update(n)
            if "_final_info" in info and info["_final_info"].any():
                ep = info["final_info"]["episode"]
                done_mask = info["final_info"]["_episode"]
                logger.log({"env_steps": env_steps, "updates": simpo.num_updates,
                            "episode_return": float(np.mean(ep["r"][done_mask]))})  # fmt: skip

            if env_steps > train.learning_starts:
                for _ in range(train.updates_per_step):
                    logs = simpo.update(_to_batch(buffer.sample(train.batch_size), device))

            if next_eval is not None and env_steps >= next_eval:
                next_eval += train.eval_every
                elapsed = elapsed_before + time.perf_counter() - t_start
                rates = {"env_steps_per_s": (env_steps - steps_start) / elapsed,
                         "updates_per_s": (simpo.num_updates - updates_start) / elapsed}  # fmt: skip
                logger.log({"env_steps": env_steps, "updates": simpo.num_updates, "wall_time_s": elapsed,
                            **rates, **logs})  # fmt: skip
                bar.set_postfix_str(f"{rates['env_steps_per_s']:.0f} env steps/s", refresh=False)
                run_eval()
                if train.stop_return is not None and evals[-1][1] >= train.stop_return:
                    break
            if next_ckpt is not None and env_steps >= next_ckpt:
                next_ckpt += train.checkpoint_every
                checkpoint()
        if not evals or evals[-1][0] != env_steps:
            run_eval()
        checkpoint()
    finally:
        bar.close()
        envs.close()
        logger.close()
    elapsed = elapsed_before + time.perf_counter() - t_start
    return {
        "evals": evals,
        "env_steps": env_steps,
        "updates": simpo.num_updates,
        "output_dir": str(out_dir),
        "wall_time_s": elapsed,
        "env_steps_per_s": (env_steps - steps_start) / max(elapsed, 1e-9),
        "updates_per_s": (simpo.num_updates - updates_start) / max(elapsed, 1e-9),
        "timings": dict(simpo.timings),
    }


def build_parser():
    """The jsonargparse parser of ``simpo-bio control`` (``--config`` YAML + ``--env.*``, ``--agent.*``, ``--train.*``)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog="simpo-bio control", description="SiMPO actor-critic on MuJoCo / DMC")
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config (configs/control/*.yaml)")
    parser.add_class_arguments(EnvConfig, "env")
    parser.add_class_arguments(AgentConfig, "agent")
    parser.add_class_arguments(TrainConfig, "train")
    return parser


def cli_main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``simpo-bio control``; saves the resolved config next to the metrics.

    Returns:
        The result of :func:`train` (evaluations, step counts, rates).

    Raises:
        SystemExit: an invalid config or option (jsonargparse's usage error). ValueError / FileNotFoundError:
            see :func:`train`.
    """
    parser = build_parser()
    cfg = parser.parse_args(argv)
    init = parser.instantiate(cfg)
    out_dir = Path(init.train.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parser.save(cfg, out_dir / "config.yaml", overwrite=True, skip_check=True)
    result = train(init.env, init.agent, init.train)
    for steps, mean, std in result["evals"]:
        print(f"env_steps {steps:>9d}  eval return {mean:10.2f} +- {std:.2f}")
    return result
