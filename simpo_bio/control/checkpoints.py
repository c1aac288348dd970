"""Checkpoints of the control runs: reading them, checking that a resume continues the same run, the replay buffer.

* :func:`load_checkpoint` reads a ``checkpoint.pt`` with torch's safe loader (numpy arrays allowed) or fails with one
  line (:class:`CheckpointError`: truncated, a directory, another kind of file such as a Lightning checkpoint;
  :class:`UnsafeCheckpointError`: Python objects, never unpickled);
* :func:`check_resume` refuses a checkpoint written by another config (:class:`ResumeMismatchError`, naming the
  checkpoint, both :func:`config_hash` es and the fields that differ) unless forced; :data:`RESUME_FREE_FIELDS`
  may always differ; :func:`resolve_resume` validates the configs and does both before anything is built;
* :class:`ReplayJournal` saves the replay buffer incrementally (only the rows added since the last checkpoint);
* :func:`configs_from_checkpoint` reads a checkpoint's configs (an older layout is refused: :func:`check_layout`).

Imports: numpy, torch, :mod:`simpo_bio.control.agent`, :mod:`simpo_bio.control.config`, :mod:`simpo_bio.fileio`,
:mod:`simpo_bio.safe_pickle`.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simpo_bio.checkpointing import (
    CheckpointError,
    CheckpointFormatError,
    ResumeMismatchError,
    UnsafeCheckpointError,
    identity_hash,
)
from simpo_bio.control.agent import AgentConfig
from simpo_bio.control.config import EnvConfig, TrainConfig
from simpo_bio.fileio import atomic_path
from simpo_bio.safe_pickle import RestrictedUnpickler, numpy_safe_globals, state_globals
from simpo_bio.safe_pickle import loads as safe_loads


def configs_from_checkpoint(ckpt: dict[str, Any]) -> tuple[EnvConfig, AgentConfig, TrainConfig]:
    """The three configs a checkpoint was trained with (``ckpt["config"]``, see :func:`train`).


    Args:
        ckpt: the dict :func:`torch.load` returns for a ``checkpoint.pt``.

    Returns:
        ``(EnvConfig, AgentConfig, TrainConfig)``.

    Raises:
        KeyError: no ``"config"`` entry. TypeError: a key no version of the dataclasses knows.
    """
    cfg = ckpt["config"]
    return (EnvConfig(**cfg["env"]), AgentConfig(**cfg["agent"]),
            TrainConfig(**cfg["train"]))


#: Config fields that may differ between a checkpoint and the run that resumes it: bookkeeping, the budget (a run
#: can be extended) and speed settings. Every other field changes what the run computes, so a checkpoint written
#: with another value is refused unless ``train.force_resume`` (see :func:`check_resume`).
RESUME_FREE_FIELDS: dict[str, tuple[str, ...]] = {
    "env": ("vectorization",),
    "agent": (),
    "train": ("total_env_steps", "checkpoint_every", "save_buffer", "out_dir", "resume", "force_resume",
              "wandb", "wandb_project", "progress", "threads", "device", "compile", "stop_return"),
}  # fmt: skip


#: The errors are the project's one hierarchy (:mod:`simpo_bio.checkpointing`): a checkpoint that cannot be used
#: (unreadable, not a control checkpoint) is a :class:`CheckpointError`; one holding Python objects beyond tensors,
#: numbers, strings, containers, numpy arrays and random states an :class:`UnsafeCheckpointError`; one of an older
#: layout (:data:`CHECKPOINT_LAYOUT`) a :class:`CheckpointLayoutError`; another config a :class:`ResumeMismatchError`.
CheckpointLayoutError = CheckpointFormatError


#: Layout of what a checkpoint's ``agent`` entry holds; written as ``ckpt["layout"]`` (checkpoints without it are
#: layout 1). 2: the weighting temperature and its Adam moments live in ``weighting.*`` of the model's state_dict
#: (:class:`simpo_bio.weighting.WeightingStep`; layout 1 had ``temperature.*`` plus a ``temperature_opt`` entry), the
#: config keys ``output_dir``, ``torch_threads``, ``repel_margin`` became ``out_dir``, ``threads``, ``repel_ratio``.
#: The RSM agents (``agent.algorithm: sdac | dpmd``) write the same layout (their config fields have defaults, so
#: a layout-2 SiMPO checkpoint without them resumes as ``algorithm: simpo``).
CHECKPOINT_LAYOUT = 2


def check_layout(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse a checkpoint of another :data:`CHECKPOINT_LAYOUT` (its tensors would not load into this version).

    Raises:
        CheckpointLayoutError: one line naming the file, both layouts and the way out (start afresh).
    """
    layout = ckpt.get("layout", 1)
    if layout != CHECKPOINT_LAYOUT:
        raise CheckpointLayoutError(
            f"{path}: written with checkpoint layout {layout}, this version reads layout {CHECKPOINT_LAYOUT} only (the "
            "temperature moved into weighting.WeightingStep and config keys were renamed), so it cannot be resumed; "
            "start afresh with --train.resume null or another --train.out_dir"
        )


def config_identity(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The fields of a run's config that decide its results, flattened to ``{"section.field": value}``.

    Args:
        config: ``{"env": asdict(EnvConfig), "agent": asdict(AgentConfig), "train": asdict(TrainConfig)}``, as
            stored in a checkpoint.

    Returns:
        Every field except those of :data:`RESUME_FREE_FIELDS`, with the current defaults filled in for fields an
        older checkpoint lacks.
    """
    defaults = {"env": asdict(EnvConfig()), "agent": asdict(AgentConfig()), "train": asdict(TrainConfig())}
    out: dict[str, Any] = {}
    for section, fields in defaults.items():
        values = dict(config.get(section) or {})
        for key, default in fields.items():
            if key not in RESUME_FREE_FIELDS[section]:
                out[f"{section}.{key}"] = values.get(key, default)
        for key in values.keys() - fields.keys():  # a field this version does not know
            out[f"{section}.{key}"] = values[key]
    return out


def config_hash(config: dict[str, dict[str, Any]]) -> str:
    """Short SHA-256 (12 hex digits) of :func:`config_identity`: equal hashes resume, different ones are refused."""
    return identity_hash(config_identity(config))


#: Keys every control checkpoint has (older ones included).
CHECKPOINT_KEYS = ("agent", "env_steps", "run_id", "evals", "rng", "config")


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> dict[str, Any]:
    """Read a ``checkpoint.pt`` written by :func:`train`, or fail with one line naming the file and the problem.

    Read with torch's safe loader (``weights_only=True``) plus numpy arrays of plain dtypes; the env snapshot's
    pickled parts are checked by :func:`check_env_state`. Nothing is unpickled in full.

    Raises:
        FileNotFoundError: no such file. CheckpointError: a directory, a truncated / corrupt file, or a file of
            another kind (e.g. a Lightning checkpoint of the DNA model). UnsafeCheckpointError: a file (or env
            snapshot) that holds Python objects (names the first few).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file (expected .../checkpoint.pt)")
    try:
        ckpt = _safe_torch_load(path, device)
    except pickle.UnpicklingError as err:
        unsafe = _unsafe_globals(path)
        if unsafe or (unsafe is None and "weights_only" in str(err).lower().replace(" ", "_")):
            raise UnsafeCheckpointError(
                f"{path}: refused: it holds Python objects{f' ({unsafe_names(unsafe)})' if unsafe else ''} that "
                "simpo-bio does not unpickle (unpickling them could run arbitrary code); a control checkpoint holds "
                "tensors, numbers, strings, containers and numpy arrays only") from None
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint (truncated or corrupt?): "
                              f"{_one_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(
            f"{path}: cannot be read as a torch checkpoint (truncated or corrupt?): {_one_line(err)}"
        ) from None
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in CHECKPOINT_KEYS):
        kind = type(ckpt).__name__
        if isinstance(ckpt, dict):
            kind = "a Lightning checkpoint" if "pytorch-lightning_version" in ckpt else f"keys {sorted(ckpt)[:6]}"
        raise CheckpointError(
            f"{path}: not a simpo-bio control checkpoint ({kind}; expected the keys {list(CHECKPOINT_KEYS)})"
        )
    check_env_state(ckpt.get("env_state"), path)
    return ckpt


def _one_line(err: BaseException) -> str:
    return (" ".join(str(err).split()).split(". ")[0] or type(err).__name__)[:200]  # torch adds a paragraph


def unsafe_names(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _safe_torch_load(path: Path, device: str) -> Any:
    """``torch.load(weights_only=True)`` that also accepts numpy arrays of plain dtypes (RNG states, observations,
    simulator states: :func:`simpo_bio.safe_pickle.numpy_safe_globals`)."""
    context = getattr(torch.serialization, "safe_globals", None)
    if context is None:  # torch < 2.5: no numpy allow-list; such checkpoints are refused
        return torch.load(path, map_location=device, weights_only=True)
    with context(numpy_safe_globals(aliases=hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"))):
        return torch.load(path, map_location=device, weights_only=True)


def _unsafe_globals(path: Path) -> list[str] | None:
    """Globals of the checkpoint outside torch's and the numpy allow-list (``None``: cannot tell)."""
    try:
        found = [str(g) for g in torch.serialization.get_unsafe_globals_in_checkpoint(path)]
    except Exception:  # noqa: BLE001 - torch < 2.6, or not a zip checkpoint
        return None
    return [g for g in found if g not in state_globals()]


def check_env_state(env_state: Any, path: str | os.PathLike) -> None:
    """Refuse an env snapshot (:func:`simpo_bio.control.envs.vector_env_state`) whose pickled parts name anything
    outside :func:`simpo_bio.safe_pickle.state_globals` (they are restored with :func:`simpo_bio.safe_pickle.loads`).

    Raises:
        UnsafeCheckpointError: one line naming the checkpoint, the attribute and the refused global.
        CheckpointError: a snapshot of another layout.
    """
    try:
        blobs = [(key, value if kind == "pickle" else value["task"]) for copy in env_state or []
                 for layer in copy for key, (kind, value) in dict(layer).items() if kind in ("pickle", "dm_control")]
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: not a simpo-bio control checkpoint (env_state: {err})") from None
    for key, blob in blobs:
        try:
            safe_loads(blob)
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpointError(f"{path}: refused: its env snapshot ({key}) holds Python objects that "
                                        f"simpo-bio does not unpickle ({_one_line(err)})") from None


def load_legacy_buffer(path: str | os.PathLike) -> Any:
    """The pickled stable-baselines3 ``ReplayBuffer`` of a checkpoint written before :class:`ReplayJournal`, read
    with a restricted unpickler (the buffer, its Box spaces, numpy data, ``torch.device``; nothing else).

    Raises:
        UnsafeCheckpointError: the file names another global. CheckpointError: unreadable.
    """
    from gymnasium.spaces import Box
    from stable_baselines3.common.buffers import ReplayBuffer

    class BufferUnpickler(RestrictedUnpickler):
        allowed = {**state_globals(), "stable_baselines3.common.buffers.ReplayBuffer": ReplayBuffer,
                   "gymnasium.spaces.box.Box": Box, "torch.device": torch.device}

    try:
        with open(path, "rb") as fh:
            return BufferUnpickler(fh).load()
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(f"{path}: refused: the replay buffer holds Python objects that simpo-bio does "
                                    f"not unpickle ({_one_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - a truncated pickle raises anything
        raise CheckpointError(f"{path}: the replay buffer cannot be read: {_one_line(err)}") from None


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
        "anyway, or --train.resume null (or another --train.out_dir) to start afresh"
    )


def resolve_resume(env: EnvConfig, agent: AgentConfig, train: TrainConfig) -> tuple[Path | None, dict | None]:
    """Validate the three configs, find the checkpoint to resume (if any), load it and check its config.

    Everything a user can get wrong fails here, before an env or a network is built.

    Returns:
        ``(path, checkpoint)``, or ``(None, None)`` for a fresh start.

    Raises:
        ValueError: an invalid field (one line naming it). FileNotFoundError: ``train.resume`` names a missing
            file. CheckpointError: unreadable or foreign checkpoint, or one of an older layout
            (:class:`CheckpointLayoutError`). ResumeMismatchError: see :func:`check_resume`.
    """
    env.validate()
    agent.validate()
    train.validate()
    ckpt_path = Path(train.out_dir) / "checkpoint.pt"
    resume = train.resume
    if resume == "auto":
        resume = str(ckpt_path) if ckpt_path.exists() else None
    if resume is None:
        return None, None
    ckpt = load_checkpoint(resume, train.device)
    check_layout(ckpt, resume)
    config = {"env": asdict(env), "agent": asdict(agent), "train": asdict(train)}
    check_resume(ckpt, resume, config, force=train.force_resume)
    return Path(resume), ckpt


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
