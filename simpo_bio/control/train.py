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
* CSV (``<output_dir>/metrics.csv``) + wandb offline logging, a tqdm bar with env steps/s and updates/s;
* atomic checkpoints every ``train.checkpoint_every`` env steps (default 5000; ``checkpoint.pt`` plus the new
  replay-buffer rows in ``replay_buffer/``) holding everything the run's future depends on (networks, optimisers,
  LR schedule, step counts, RNG states, env states, the buffer), so that running the same command again after a
  kill (``train.resume: auto``, the default) ends exactly as an uninterrupted run would. A checkpoint of another
  config is refused (:func:`check_resume`) unless ``--train.force_resume true``.

Bad input fails with one line and exit status 2 before anything is built or written (:func:`resolve_resume`):
invalid fields (``EnvConfig.validate`` ...), missing, unreadable or foreign checkpoints (:func:`load_checkpoint`).

Configuration is three dataclasses (:class:`EnvConfig`, :class:`~simpo_bio.control.agent.AgentConfig`,
:class:`TrainConfig`) read by jsonargparse from YAML; any field can be overridden on the command line, e.g.
``--agent.scheme square --train.seed 3``. :func:`configs_from_checkpoint` rebuilds them from a checkpoint,
including checkpoints written before the agent's keys were renamed (:data:`RENAMED_AGENT_KEYS`).

Imports: gymnasium, numpy, torch, :mod:`simpo_bio.control.agent`, :mod:`simpo_bio.control.envs`, :mod:`simpo_bio.fileio`;
stable-baselines3, tqdm and wandb inside :func:`train`, jsonargparse inside :func:`build_parser`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import pickle
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
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

    def validate(self) -> None:
        """Check every field without building an env.

        Raises:
            ValueError: one line naming the first invalid field (``env.<name>``): unknown id or reward shape, a
                reward shape for a Gymnasium task, ``num_envs < 1``, ``exp_scale <= 0``, unknown vectorization.
        """
        from simpo_bio.control.envs import DMC_TASKS, REWARD_SHAPES, _canonical_gym_id

        if self.id not in DMC_TASKS:
            try:
                _canonical_gym_id(self.id)
            except ValueError as err:
                raise ValueError(f"env.id: {err}") from None
            if self.reward_shape is not None:
                raise ValueError(f"env.reward_shape is only defined for {list(DMC_TASKS)}, not {self.id!r}")
        if self.reward_shape is not None and self.reward_shape not in REWARD_SHAPES:
            raise ValueError(f"env.reward_shape must be one of {list(REWARD_SHAPES)} or null, got {self.reward_shape!r}")
        if isinstance(self.num_envs, bool) or not isinstance(self.num_envs, int) or self.num_envs < 1:
            raise ValueError(f"env.num_envs must be an integer >= 1, got {self.num_envs!r}")
        if not (math.isfinite(self.exp_scale) and self.exp_scale > 0):
            raise ValueError(f"env.exp_scale must be a finite number > 0, got {self.exp_scale!r}")
        if self.vectorization not in ("sync", "async"):
            raise ValueError(f"env.vectorization must be 'sync' or 'async', got {self.vectorization!r}")


@dataclass
class TrainConfig:
    """Budget, data and bookkeeping of a run.

    Attributes:
        total_env_steps: env interactions summed over the parallel envs (paper: 1M).
        learning_starts: env steps of uniform random actions before learning.
        updates_per_step: gradient updates per vector step (paper: 1 -> 200k updates for 1M steps, 5 envs).
        batch_size: transitions per update. buffer_size: replay capacity in transitions (paper: 1M).
        eval_every: env steps between evaluations (0: only at the end). eval_episodes: episodes per evaluation.
        checkpoint_every: env steps between checkpoints (0: only at the end; default 5000). Each checkpoint is
            written atomically (a kill leaves the previous one intact) and a resumed run continues bit for bit
            as if it had not been stopped (see :func:`train`).
        save_buffer: also save the replay buffer, incrementally: each checkpoint adds the transitions collected
            since the previous one to ``<output_dir>/replay_buffer/`` (needed for an exact resume; without it a
            resumed run starts from an empty buffer and waits for ``batch_size`` new transitions).
        seed: seeds Python, NumPy (the buffer's sampler), torch and the envs.
        output_dir: where metrics.csv, config and checkpoints go.
        resume: ``auto`` (default: continue ``<output_dir>/checkpoint.pt`` if it exists, else start), the path of a
            checkpoint.pt to continue from, or ``null`` (start afresh, overwriting the output folder's run).
        force_resume: resume even from a checkpoint whose config differs in a field that changes the results
            (without it such a resume is refused, naming the checkpoint, both config hashes and the fields that
            differ; the fields of :data:`RESUME_FREE_FIELDS` may always change).
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
    checkpoint_every: int = 5_000
    save_buffer: bool = True
    seed: int = 0
    output_dir: str = "runs/control"
    resume: str | None = "auto"
    force_resume: bool = False
    wandb: bool = True
    wandb_project: str = "simpo-bio-control"
    progress: bool = True
    torch_threads: int = 0
    device: str = "cpu"
    compile: bool = False
    stop_return: float | None = None

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: one line naming the first invalid field (``train.<name>``): a size below its minimum,
                ``learning_starts < batch_size``, a seed outside ``[0, 2**32)``, an unknown device.
        """
        minimum = {"total_env_steps": 1, "learning_starts": 0, "updates_per_step": 0, "batch_size": 1,
                   "buffer_size": 1, "eval_every": 0, "eval_episodes": 1, "checkpoint_every": 0, "torch_threads": 0,
                   "seed": 0}  # fmt: skip
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"train.{name} must be an integer >= {low}, got {value!r}")
        if self.seed >= 2**32:
            raise ValueError(f"train.seed must be < 2**32 (NumPy's seed range), got {self.seed}")
        if self.learning_starts < self.batch_size:
            raise ValueError(
                f"train.learning_starts ({self.learning_starts}) must be >= train.batch_size ({self.batch_size})"
            )
        if self.buffer_size < self.batch_size:
            raise ValueError(f"train.buffer_size ({self.buffer_size}) must be >= train.batch_size ({self.batch_size})")
        if self.device.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise ValueError(f"train.device must be cpu, cuda[:i] or mps, got {self.device!r}")
        if self.stop_return is not None and not math.isfinite(self.stop_return):
            raise ValueError(f"train.stop_return must be a finite number or null, got {self.stop_return!r}")


#: Config fields that may differ between a checkpoint and the run that resumes it: bookkeeping, the budget (a run
#: can be extended) and speed settings. Every other field changes what the run computes, so a checkpoint written
#: with another value is refused unless ``train.force_resume`` (see :func:`check_resume`).
RESUME_FREE_FIELDS: dict[str, tuple[str, ...]] = {
    "env": ("vectorization",),
    "agent": (),
    "train": ("total_env_steps", "checkpoint_every", "save_buffer", "output_dir", "resume", "force_resume",
              "wandb", "wandb_project", "progress", "torch_threads", "device", "compile", "stop_return"),
}  # fmt: skip


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable (truncated, not a torch file) or not a control checkpoint."""


class ResumeMismatchError(ValueError):
    """Resuming a checkpoint written by another config (refused unless ``train.force_resume``)."""


def config_identity(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The fields of a run's config that decide its results, flattened to ``{"section.field": value}``.

    Args:
        config: ``{"env": asdict(EnvConfig), "agent": asdict(AgentConfig), "train": asdict(TrainConfig)}``, as
            stored in a checkpoint (old agent key names are mapped by :func:`upgrade_agent_config`).

    Returns:
        Every field except those of :data:`RESUME_FREE_FIELDS`, with the current defaults filled in for fields an
        older checkpoint lacks.
    """
    defaults = {"env": asdict(EnvConfig()), "agent": asdict(AgentConfig()), "train": asdict(TrainConfig())}
    out: dict[str, Any] = {}
    for section, fields in defaults.items():
        values = dict(config.get(section) or {})
        if section == "agent":
            values = upgrade_agent_config(values)
        for key, default in fields.items():
            if key not in RESUME_FREE_FIELDS[section]:
                out[f"{section}.{key}"] = values.get(key, default)
        for key in values.keys() - fields.keys():  # a field this version does not know
            out[f"{section}.{key}"] = values[key]
    return out


def config_hash(config: dict[str, dict[str, Any]]) -> str:
    """Short SHA-256 (12 hex digits) of :func:`config_identity`: equal hashes resume, different ones are refused."""
    text = json.dumps(config_identity(config), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


#: Keys every control checkpoint has (older ones included).
CHECKPOINT_KEYS = ("agent", "env_steps", "run_id", "evals", "rng", "config")


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> dict[str, Any]:
    """Read a ``checkpoint.pt`` written by :func:`train`, or fail with one line naming the file and the problem.

    Raises:
        FileNotFoundError: no such file. CheckpointError: a directory, a truncated / corrupt file, or a file of
            another kind (e.g. a Lightning checkpoint of the DNA model).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file (expected .../checkpoint.pt)")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: cannot be read as a torch checkpoint (truncated or corrupt?): {detail[:200]}"
        ) from None
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in CHECKPOINT_KEYS):
        kind = type(ckpt).__name__
        if isinstance(ckpt, dict):
            kind = "a Lightning checkpoint" if "pytorch-lightning_version" in ckpt else f"keys {sorted(ckpt)[:6]}"
        raise CheckpointError(
            f"{path}: not a simpo-bio control checkpoint ({kind}; expected the keys {list(CHECKPOINT_KEYS)})"
        )
    return ckpt


def check_resume(ckpt: dict[str, Any], path: str | os.PathLike, config: dict[str, Any], *, force: bool) -> None:
    """Refuse to resume a checkpoint whose config differs from ``config`` in a field that changes the results.

    Raises:
        ResumeMismatchError: one line naming the checkpoint, both config hashes and (up to 4 of) the differing
            fields, unless ``force``.
    """
    old, new = config_identity(ckpt["config"]), config_identity(config)
    if old == new or force:
        return
    diffs = [f"{k}: {old.get(k)!r} (checkpoint) vs {new.get(k)!r} (this run)" for k in sorted(old.keys() | new.keys())
             if old.get(k) != new.get(k)]  # fmt: skip
    more = f" and {len(diffs) - 4} more" if len(diffs) > 4 else ""
    raise ResumeMismatchError(
        f"refusing to resume {path}: it was written by another config (hash {config_hash(ckpt['config'])}) than this "
        f"run (hash {config_hash(config)}): {'; '.join(diffs[:4])}{more}; pass --train.force_resume true to resume "
        "anyway, or --train.resume null (or another --train.output_dir) to start afresh"
    )


def resolve_resume(env: EnvConfig, agent: AgentConfig, train: TrainConfig) -> tuple[Path | None, dict | None]:
    """Validate the three configs, find the checkpoint to resume (if any), load it and check its config.

    Everything a user can get wrong fails here, before an env or a network is built.

    Returns:
        ``(path, checkpoint)``, or ``(None, None)`` for a fresh start.

    Raises:
        ValueError: an invalid field (one line naming it). FileNotFoundError: ``train.resume`` names a missing
            file. CheckpointError: unreadable or foreign checkpoint. ResumeMismatchError: see :func:`check_resume`.
    """
    env.validate()
    agent.validate()
    train.validate()
    ckpt_path = Path(train.output_dir) / "checkpoint.pt"
    resume = train.resume
    if resume == "auto":
        resume = str(ckpt_path) if ckpt_path.exists() else None
    if resume is None:
        return None, None
    ckpt = load_checkpoint(resume, train.device)
    config = {"env": asdict(env), "agent": asdict(agent), "train": asdict(train)}
    check_resume(ckpt, resume, config, force=train.force_resume)
    return Path(resume), ckpt


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
        self, output_dir: Path, *, use_wandb: bool, project: str, config: dict[str, Any], run_id: str,
        truncate_to: int | None = None,
    ):  # fmt: skip
        self.path = output_dir / "metrics.csv"
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
                project=project, dir=str(output_dir), config=config, id=run_id, resume="allow", reinit=True
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


class ReplayJournal:
    """Saves a stable-baselines3 ``ReplayBuffer`` incrementally into a folder of ``.npz`` chunks.

    Every :meth:`save` writes only the rows added since the previous one (``rows_<first>_<end>.npz``, absolute row
    numbers; row ``k`` lives at position ``k mod capacity`` of the ring buffer), so a checkpoint every few thousand
    env steps costs a few thousand transitions, not the whole buffer. Chunks whose rows have all been overwritten
    are dropped from the state; :meth:`prune` deletes every file the last checkpoint does not list (also the
    chunks a killed run wrote after its last checkpoint). :meth:`restore` refills a fresh buffer from the chunks.
    """

    FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")

    def __init__(self, folder: Path, capacity: int, state: dict[str, Any] | None = None):
        self.folder, self.capacity = Path(folder), int(capacity)
        state = state or {}
        self.rows = int(state.get("rows", 0))  # rows ever added to the buffer
        self.saved = int(state.get("saved", 0))  # rows saved in chunks
        self.chunks: list[tuple[str, int, int]] = [tuple(c) for c in state.get("chunks", [])]

    def state(self) -> dict[str, Any]:
        """What a checkpoint records: row counters and the chunk list ``[(file, first_row, end_row), ...]``."""
        return {"rows": self.rows, "saved": self.saved, "chunks": [list(c) for c in self.chunks]}

    def save(self, buffer) -> dict[str, Any]:
        """Write the rows added since the last save (atomically) and return the new :meth:`state`."""
        start = max(self.saved, self.rows - self.capacity)
        if self.rows > start:
            idx = np.arange(start, self.rows) % self.capacity
            name = f"rows_{start:012d}_{self.rows:012d}.npz"
            with atomic_path(self.folder / name) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **{f: getattr(buffer, f)[idx] for f in self.FIELDS})
            self.chunks.append((name, start, self.rows))
            self.saved = self.rows
        self.chunks = [c for c in self.chunks if c[2] > self.rows - self.capacity]  # drop fully overwritten chunks
        return self.state()

    def prune(self) -> None:
        """Delete the chunk files the current state does not list."""
        keep = {c[0] for c in self.chunks}
        for path in self.folder.glob("rows_*.npz"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def restore(self, buffer) -> None:
        """Fill ``buffer`` (fresh, same capacity) from the chunks of the state this journal was built with.

        Raises:
            CheckpointError: a chunk file is missing or unreadable.
        """
        for name, first, end in self.chunks:
            path = self.folder / name
            try:
                with np.load(path) as data:
                    idx = np.arange(first, end) % self.capacity
                    for f in self.FIELDS:
                        getattr(buffer, f)[idx] = data[f]
            except (OSError, KeyError, ValueError) as err:
                raise CheckpointError(f"{path}: replay-buffer chunk of the checkpoint cannot be read: {err}") from None
        buffer.pos = self.rows % self.capacity
        buffer.full = self.rows >= self.capacity


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

    Checkpoints (``<output_dir>/checkpoint.pt``, every ``train.checkpoint_every`` env steps and at the end, written
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
    if train.torch_threads > 0:
        torch.set_num_threads(train.torch_threads)
    out_dir = Path(train.output_dir)
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
            with open(ckpt["buffer_path"], "rb") as fh:
                buffer = pickle.load(fh)
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
            {"format": "simpo-bio control checkpoint", "agent": simpo.training_state(), "env_steps": env_steps,
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
               desc=f"SiMPO[{agent.scheme}] {env.id}", dynamic_ncols=True)  # fmt: skip
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
        "output_dir": str(out_dir),
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

    parser = ArgumentParser(prog="simpo-bio control", description="SiMPO actor-critic on MuJoCo / DMC",
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
    except (ValueError, FileNotFoundError) as err:
        _fail(f"{err}{f' (config: {sources})' if sources and not isinstance(err, ResumeMismatchError) else ''}")
    out_dir = Path(init.train.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "config.yaml") as tmp:
        parser.save(cfg, tmp, overwrite=True, skip_check=True)
    result = train(init.env, init.agent, init.train)
    for steps, mean, std in result["evals"]:
        print(f"env_steps {steps:>9d}  eval return {mean:10.2f} +- {std:.2f}")
    return result
