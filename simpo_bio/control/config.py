"""Configuration of the control runs: :class:`EnvConfig` and :class:`TrainConfig` (the agent's is
:class:`simpo_bio.control.agent.AgentConfig`), each with a ``validate()`` that names the first invalid field.

Imports: the standard library; :mod:`simpo_bio.control.envs` inside :meth:`EnvConfig.validate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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
        from simpo_bio.control.envs import DMC_TASKS, REWARD_SHAPES, check_env_id

        if self.id not in DMC_TASKS:
            try:
                check_env_id(self.id)
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
        updates_per_step: gradient updates per vector step (paper: 1 -> 200k updates for 1M steps, 5 envs): a
            replay ratio, each update on a fresh batch from the buffer. Not ``update_epochs`` (the bandit's and the
            DNA module's passes over the same freshly sampled group), hence the other name.
        batch_size: transitions per update. buffer_size: replay capacity in transitions (paper: 1M).
        eval_every: env steps between evaluations (0: only at the end). eval_episodes: episodes per evaluation.
        checkpoint_every: env steps between checkpoints (0: only at the end; default 5000). Each checkpoint is
            written atomically (a kill leaves the previous one intact) and a resumed run continues bit for bit
            as if it had not been stopped (see :func:`train`).
        save_buffer: also save the replay buffer, incrementally: each checkpoint adds the transitions collected
            since the previous one to ``<out_dir>/replay_buffer/`` (needed for an exact resume; without it a
            resumed run starts from an empty buffer and waits for ``batch_size`` new transitions).
        seed: seeds Python, NumPy (the buffer's sampler), torch and the envs.
        out_dir: where metrics.csv, config and checkpoints go.
        resume: ``auto`` (default: continue ``<out_dir>/checkpoint.pt`` if it exists, else start), the path of a
            checkpoint.pt to continue from, or ``null`` (start afresh, overwriting the output folder's run).
        force_resume: resume even from a checkpoint whose config differs in a field that changes the results
            (without it such a resume is refused, naming the checkpoint, both config hashes and the fields that
            differ; the fields of :data:`RESUME_FREE_FIELDS` may always change).
        wandb: also log to wandb (offline unless WANDB_MODE says otherwise). wandb_project: its project.
        progress: show a tqdm progress bar. threads: torch CPU threads, ``torch.set_num_threads`` (0: leave as is).
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
    out_dir: str = "runs/control"
    resume: str | None = "auto"
    force_resume: bool = False
    wandb: bool = True
    wandb_project: str = "simpo-bio-control"
    progress: bool = True
    threads: int = 0
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
                   "buffer_size": 1, "eval_every": 0, "eval_episodes": 1, "checkpoint_every": 0, "threads": 0,
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
