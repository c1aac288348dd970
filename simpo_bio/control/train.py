"""Training loop of the control experiments: ``simpo-bio control --config configs/control/halfcheetah.yaml``.

Off-policy loop (CleanRL-style, one readable function :func:`train`):

* ``train.learning_starts`` env steps of uniform random actions, then actions from the agent's ``act`` (``agent.algorithm``: :class:`SiMPOAgent`, or
  :class:`~simpo_bio.control.rsm.SDACAgent` / :class:`~simpo_bio.control.rsm.DPMDAgent`, built by :func:`make_agent`)
  (exploration documented in :mod:`simpo_bio.control.agent`);
* ``env.num_envs`` Gymnasium envs stepped together (default 5, as in the paper); after every vector step,
  ``train.updates_per_step`` gradient updates on batches of ``train.batch_size`` from a replay buffer
  (stable-baselines3's :class:`~stable_baselines3.common.buffers.ReplayBuffer`; time-limit truncations are
  bootstrapped: only true terminations are stored as ``done``);
* evaluation every ``train.eval_every`` env steps on a separate vector env of ``train.eval_episodes`` copies
  (seeds ``seed + 10_000 + i``), one episode each, greedy action selection (best-of-K by Q);
* CSV (``<out_dir>/metrics.csv``) + wandb offline logging, a tqdm bar with env steps/s and updates/s;
* atomic checkpoints every ``train.checkpoint_every`` env steps (default 5000; ``checkpoint.pt`` plus the new
  replay-buffer rows in ``replay_buffer/``) holding everything the run's future depends on (networks, optimisers,
  LR schedule, step counts, RNG states, env states, the buffer), so that running the same command again after a
  kill (``train.resume: auto``, the default) ends exactly as an uninterrupted run would. A checkpoint of another
  config is refused (:func:`check_resume`) unless ``--train.force_resume true``.

Bad input fails with one line and exit status 2 before anything is built or written (:func:`resolve_resume`):
invalid fields (``EnvConfig.validate`` ...), missing, unreadable or foreign checkpoints (:func:`load_checkpoint`).

Configuration is three dataclasses (:class:`~simpo_bio.control.config.EnvConfig`,
:class:`~simpo_bio.control.agent.AgentConfig`, :class:`~simpo_bio.control.config.TrainConfig`) read by jsonargparse
from YAML; any field can be overridden on the command line, e.g. ``--agent.scheme square --train.seed 3``.
:func:`~simpo_bio.control.checkpoints.configs_from_checkpoint` rebuilds them from a checkpoint, including
checkpoints written before the agent's keys were renamed. The checkpoint names are re-exported here.

Imports: gymnasium, numpy, torch, :mod:`simpo_bio.control.agent`, ``.checkpoints``, ``.config``, ``.envs``,
:mod:`simpo_bio.fileio`;
stable-baselines3, tqdm and wandb inside :func:`train`, jsonargparse inside :func:`build_parser`.
"""

from __future__ import annotations

import csv
import math
import os
import pickle
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from simpo_bio.control.agent import AgentConfig, SiMPOAgent, make_agent
from simpo_bio.control.checkpoints import (
    CHECKPOINT_LAYOUT,
    RESUME_FREE_FIELDS,
    CheckpointError,
    ReplayJournal,
    ResumeMismatchError,
    check_resume,
    config_hash,
    configs_from_checkpoint,
    load_checkpoint,
    load_legacy_buffer,
    resolve_resume,
)
from simpo_bio.control.config import EnvConfig, TrainConfig
from simpo_bio.control.envs import make_vector_env
from simpo_bio.fileio import atomic_path

__all__ = [
    "METRIC_FIELDS", "RESUME_FREE_FIELDS", "AgentConfig", "CheckpointError", "EnvConfig",
    "MetricLogger", "ReplayJournal", "ResumeMismatchError", "TrainConfig", "build_parser", "check_resume",
    "cli_main", "config_hash", "configs_from_checkpoint", "evaluate", "load_checkpoint", "resolve_resume", "train",
]  # fmt: skip


METRIC_FIELDS = (
    "env_steps", "updates", "wall_time_s", "env_steps_per_s", "updates_per_s", "episode_return",
    "eval_return_mean", "eval_return_std", "eval_original_return_mean", "critic_loss", "policy_loss",
    "temperature", "weight_kl", "weight_ess", "weight_active", "negative_mass", "q_mean", "td_target_mean",
    "particle_q_std", "policy_lr",
)  # fmt: skip


class MetricLogger:
    """Append rows to ``<dir>/metrics.csv`` (fixed columns :data:`METRIC_FIELDS`) and, optionally, to wandb.

    ``truncate_to``: cut an existing metrics.csv to this many bytes first (0: start a new file; a resumed run
    passes the size recorded in its checkpoint, dropping the rows logged after that checkpoint, which the resumed
    run logs again); None appends to what is there.
    """

    def __init__(
        self, out_dir: Path, *, use_wandb: bool, project: str, config: dict[str, Any], run_id: str,
        truncate_to: int | None = None,
    ):  # fmt: skip
        self.path = out_dir / "metrics.csv"
        if truncate_to is not None and self.path.exists():
            if truncate_to == 0:
                self.path.unlink()
            elif self.path.stat().st_size > truncate_to:
                os.truncate(self.path, truncate_to)
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
                project=project, dir=str(out_dir), config=config, id=run_id, resume="allow", reinit=True
            )

    def log(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)
        self._fh.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k != "env_steps"}, step=int(row["env_steps"]))

    def offset(self) -> int:
        """Bytes of metrics.csv written so far (what a checkpoint records for :class:`MetricLogger`'s truncate_to)."""
        self._fh.flush()
        return self._fh.tell()

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
    """Run the agent ``agent.algorithm`` names (SiMPO, SDAC or DPMD) on ``env`` for ``train.total_env_steps`` env steps; returns the evaluation history.

    Returns:
        ``{"evals": [(env_steps, mean, std), ...], "env_steps": int, "updates": int, "out_dir": str,
        "wall_time_s": float, "env_steps_per_s": float, "updates_per_s": float, "timings": {phase: seconds}}``;
        ``env_steps`` is below the budget only when ``train.stop_return`` ended the run early. Wall time and
        rates cover the whole run, resumed segments included (the checkpoint carries the training time so far;
        a checkpoint written before this field existed gives the rates of the last segment only).

    Checkpoints (``<out_dir>/checkpoint.pt``, every ``train.checkpoint_every`` env steps and at the end, written
    atomically) hold the agent (networks, optimisers, LR schedule), the step counters, the Python / NumPy / torch
    RNG states, the state of every training env (:func:`simpo_bio.control.envs.vector_env_state`: simulator
    integration state, env RNGs, time-limit counters), the current observations, the size of metrics.csv and the
    replay buffer's chunk list (:class:`ReplayJournal`). A run killed at any point and resumed (``train.resume:
    auto``, the default) therefore ends with the same parameters, evaluations and metrics.csv (wall-clock columns
    aside) as a run that was never stopped. Not exact: ``env.vectorization: async`` (the envs live in other
    processes; a resumed run restarts their episodes with a seeded reset) and ``train.save_buffer: false``.

    Raises:
        ValueError: an invalid config field (one line naming it), bad env id.
        FileNotFoundError: ``train.resume`` names a missing checkpoint. CheckpointError: an unreadable or foreign
            checkpoint. ResumeMismatchError: a checkpoint of another config (see :func:`check_resume`).
    """
    from stable_baselines3.common.buffers import ReplayBuffer
    from tqdm.auto import tqdm

    from simpo_bio.control.envs import set_vector_env_state, vector_env_state

    resume, ckpt = resolve_resume(env, agent, train)
    if train.threads > 0:
        torch.set_num_threads(train.threads)
    out_dir = Path(train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"

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
    simpo = make_agent(state_dim, action_dim, agent, total_updates=total_updates).to(device)
    if train.compile:
        simpo.compile()
    buffer = ReplayBuffer(
        max(train.buffer_size // n, 1) * n, obs_space, act_space, device=device, n_envs=n,
        handle_timeout_termination=False,
    )  # fmt: skip

    env_steps, run_id = 0, f"{Path(train.out_dir).name}-{train.seed}-{int(time.time())}"
    evals: list[tuple[int, float, float]] = []
    elapsed_before = 0.0  # training wall time of the segments before a resume
    whole_run = True  # rates over the whole run; False for a checkpoint without "elapsed_s" (last segment only)
    journal = ReplayJournal(out_dir / "replay_buffer", buffer.buffer_size)
    logs: dict[str, float] = {}
    if ckpt is not None:
        simpo.load_training_state(ckpt["agent"])
        env_steps, run_id, evals = int(ckpt["env_steps"]), ckpt["run_id"], list(ckpt["evals"])
        whole_run = ckpt.get("elapsed_s") is not None
        elapsed_before = float(ckpt.get("elapsed_s") or 0.0)
        logs = dict(ckpt.get("logs") or {})
        random.setstate(ckpt["rng"]["python"])
        np.random.set_state(ckpt["rng"]["numpy"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if ckpt.get("replay_journal") is not None:
            journal = ReplayJournal(out_dir / "replay_buffer", buffer.buffer_size, ckpt["replay_journal"])
            journal.restore(buffer)
        elif ckpt.get("buffer_path") and Path(ckpt["buffer_path"]).exists():  # checkpoints before the journal
            buffer = load_legacy_buffer(ckpt["buffer_path"])  # restricted unpickler: the buffer and numpy data
            buffer.device = torch.device(device)
            journal.rows = buffer.pos + (buffer.buffer_size if buffer.full else 0)
        print(f"simpo-bio control: resuming {resume} at env step {env_steps}", file=sys.stderr)

    config = {"env": asdict(env), "agent": asdict(agent), "train": asdict(train)}
    fingerprint = config_hash(config)
    # a fresh start replaces metrics.csv; a resume cuts it back to its checkpoint (older checkpoints: append)
    truncate_to = 0 if ckpt is None else ckpt.get("metrics_offset")
    logger = MetricLogger(
        out_dir, use_wandb=train.wandb, project=train.wandb_project, config=config, run_id=run_id,
        truncate_to=truncate_to,
    )  # fmt: skip
    if ckpt is None:  # a fresh start in a used folder: the old run's buffer chunks are not this run's
        journal.prune()
    snapshot_envs = isinstance(envs, gym.vector.SyncVectorEnv)

    def checkpoint() -> None:
        journal_state = journal.save(buffer) if train.save_buffer else None
        rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        _atomic_save(
            {"format": "simpo-bio control checkpoint", "layout": CHECKPOINT_LAYOUT, "agent": simpo.training_state(), "env_steps": env_steps,
             "run_id": run_id, "evals": evals, "rng": rng, "config": config, "config_hash": fingerprint,
             "buffer_path": None, "replay_journal": journal_state, "logs": logs, "metrics_offset": logger.offset(),
             "env_state": vector_env_state(envs) if snapshot_envs else None, "obs": obs,
             "elapsed_s": elapsed_before + time.perf_counter() - t_start if whole_run else None},
            ckpt_path,
        )  # fmt: skip
        if train.save_buffer:
            journal.prune()  # after the checkpoint that no longer lists them

    def run_eval() -> None:
        res = evaluate(simpo, env, train.eval_episodes, seed=train.seed + 10_000, device=device)
        evals.append((env_steps, res["eval_return_mean"], res["eval_return_std"]))
        logger.log({"env_steps": env_steps, "updates": simpo.num_updates, **res})
        bar.set_postfix_str(f"eval {res['eval_return_mean']:.1f}", refresh=False)

    obs, _ = envs.reset(seed=train.seed + env_steps)
    if ckpt is not None and ckpt.get("env_state") is not None and snapshot_envs:
        set_vector_env_state(envs, ckpt["env_state"])  # continue the episodes where the checkpoint left them
        obs = np.asarray(ckpt["obs"])
    # else (async envs, older checkpoints): a resumed run restarts its episodes with a fresh but seeded reset
    bar = tqdm(total=train.total_env_steps, initial=env_steps, disable=not train.progress, unit="step",
               desc=f"{agent.algorithm.upper()}[{agent.scheme}] {env.id}", dynamic_ncols=True)  # fmt: skip
    t_start = time.perf_counter()
    steps_start, updates_start = (0, 0) if whole_run else (env_steps, simpo.num_updates)
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
            journal.rows += 1
            obs = next_obs
            env_steps += n
            bar.update(n)
            if "_final_info" in info and info["_final_info"].any():
                ep = info["final_info"]["episode"]
                done_mask = info["final_info"]["_episode"]
                logger.log({"env_steps": env_steps, "updates": simpo.num_updates,
                            "episode_return": float(np.mean(ep["r"][done_mask]))})  # fmt: skip

            # (the buffer holds fewer than batch_size rows only after a resume without a saved buffer)
            if env_steps > train.learning_starts and buffer.size() * n >= train.batch_size:
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
        "out_dir": str(out_dir),
        "wall_time_s": elapsed,
        "env_steps_per_s": (env_steps - steps_start) / max(elapsed, 1e-9),
        "updates_per_s": (simpo.num_updates - updates_start) / max(elapsed, 1e-9),
        "timings": dict(simpo.timings),
    }


def _fail(message: str) -> None:
    print(f"simpo-bio control: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def build_parser():
    """The jsonargparse parser of ``simpo-bio control`` (``--config`` YAML + ``--env.*``, ``--agent.*``, ``--train.*``)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog="simpo-bio control", description="SiMPO / SDAC / DPMD actor-critic on MuJoCo / DMC (--agent.algorithm)",
                            exit_on_error=False)
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
        SystemExit: status 2 with one line on stderr (``simpo-bio control: error: ...``) for anything a user can get
            wrong, checked before an env or a network is built: an unreadable config file or unknown option, an
            invalid field (named, with the config files), a missing, unreadable or foreign checkpoint, or a
            checkpoint of another config (see :func:`check_resume`; ``--train.force_resume true`` overrides).
    """
    parser = build_parser()
    try:
        cfg = parser.parse_args(argv)
        init = parser.instantiate(cfg)
    except SystemExit as err:  # -h / --help exits 0; jsonargparse's own errors are reported below
        raise err
    except Exception as err:  # noqa: BLE001 - jsonargparse raises several types for a bad config value
        _fail(" ".join(str(err).split())[:500] or type(err).__name__)
    sources = ", ".join(str(c) for c in (cfg.get("config") or []) if c is not None)
    try:
        resolve_resume(init.env, init.agent, init.train)  # validate + check the checkpoint before writing anything
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        _fail(f"{err}{f' (config: {sources})' if sources and not isinstance(err, ResumeMismatchError) else ''}")
    out_dir = Path(init.train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "config.yaml") as tmp:
        parser.save(cfg, tmp, overwrite=True, skip_check=True)
    try:
        result = train(init.env, init.agent, init.train)
    except CheckpointError as err:  # a checkpoint's replay buffer that is refused or unreadable
        _fail(str(err))
    for steps, mean, std in result["evals"]:
        print(f"env_steps {steps:>9d}  eval return {mean:10.2f} +- {std:.2f}")
    return result
