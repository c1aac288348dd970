"""Checkpoint loading with errors that say what went wrong: missing, truncated/unreadable, or wrong architecture.

Shared by every model the project ships (pretrained masked diffusion model, reward oracles)::

    ckpt = load_checkpoint(path)                      # CheckpointNotFoundError / CheckpointCorruptError /
                                                      # UnsafeCheckpointError (weights_only=True, always)
    check_model_kind(ckpt, "CellTypeClassifier", path)  # CheckpointArchitectureError (another model's file)
    load_state_dict_checked(module, ckpt["state_dict"], path)  # CheckpointArchitectureError (keys / shapes)

All these errors derive from :class:`CheckpointError`. A LightningModule that wants its kind recorded calls
:func:`record_model_kind` in ``on_save_checkpoint``.

Resumable fits: :class:`ResumableCheckpoint` writes ``last.ckpt`` atomically every N epochs and / or steps with the
global random states and the run's :func:`run_identity`; a LightningModule calls :func:`guard_resume` in
``on_load_checkpoint`` so that resuming from another model's or another config's checkpoint stops with one line
(:class:`ResumeMismatchError`; override: ``SIMPO_FORCE_RESUME=1``).

Imports: torch, Lightning's ``ModelCheckpoint``, :mod:`simpo_bio.fileio` and :mod:`simpo_bio.safe_pickle`.
"""

from __future__ import annotations

import errno
import os
import pickle
import sys
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from simpo_bio.checkpointing import (  # noqa: F401  (the one hierarchy of every domain, re-exported here)
    CheckpointArchitectureError,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointFormatError,
    CheckpointNotFoundError,
    ResumeMismatchError,
    UnsafeCheckpointError,
    identity_differences,
    identity_hash,
    plain,
)
from simpo_bio.fileio import atomic_torch_save, disk_full_error
from simpo_bio.safe_pickle import TRUST_PICKLE_ENV, TRUSTED_SHA256_ENV, file_sha256, pickle_trusted

#: Key under which our LightningModules record the class that wrote a checkpoint.
KIND_KEY = "simpo_bio_model"


def _unsafe_globals(path: Path) -> list[str] | None:
    """The globals of a torch zip checkpoint that torch's safe loader refuses (``None``: cannot tell)."""
    try:
        return [str(g) for g in torch.serialization.get_unsafe_globals_in_checkpoint(path)]
    except Exception:  # noqa: BLE001 - torch < 2.6, or not a zip checkpoint: the caller reports the load error
        return None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()).split(". ")[0][:200]  # torch adds a paragraph of advice


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Read a ``torch.save`` / Lightning checkpoint with torch's safe loader (``weights_only=True``): tensors,
    numbers, strings and containers, nothing that imports or calls code.

    Every checkpoint a user names goes through here (``--ckpt``, ``--ckpt_path``, ``pretrained``, oracles, the
    demo's ``last.ckpt``, pooled runs); the shipped checkpoints and every file simpo-bio writes load this way. A
    file that needs a full unpickle is refused with one line (:class:`UnsafeCheckpointError`). The one exception
    is a gReLU oracle (:func:`simpo_bio.dna.oracles.grelu.load_grelu_net`, gReLU's own loader): it is unpickled
    in full only when the user opts in for it, with ``SIMPO_BIO_TRUST_PICKLE=1`` or by listing its sha256 in
    ``SIMPO_BIO_TRUSTED_SHA256`` (comma-separated hex digests; :func:`require_trusted_pickle`).

    Args:
        path: the file.
        map_location: where tensors are placed (default CPU).

    Returns:
        the loaded object (a dict for Lightning checkpoints).

    Raises:
        CheckpointNotFoundError: no file at ``path``.
        CheckpointCorruptError: the file is truncated, empty or not a checkpoint.
        UnsafeCheckpointError: the file holds Python objects (names the first few).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint {path} does not exist", path)
    if path.is_dir():
        raise CheckpointCorruptError(f"checkpoint {path} is a directory, not a checkpoint file", path)
    size = path.stat().st_size
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = _unsafe_globals(path)
        if unsafe or (unsafe is None and "weights_only" in str(err).lower().replace(" ", "_")):
            named = f" ({', '.join(unsafe[:3])}{', ...' if len(unsafe) > 3 else ''})" if unsafe else ""
            raise UnsafeCheckpointError(
                f"checkpoint {path} is refused: it holds Python objects{named} that simpo-bio does not unpickle "
                "(unpickling them could run arbitrary code); checkpoints are read as tensors, numbers, strings and "
                "containers only", path) from None
        raise CheckpointCorruptError(
            f"checkpoint {path} ({size} bytes) is truncated or not a checkpoint: {_one_line(err)}", path
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointCorruptError(
            f"checkpoint {path} ({size} bytes) is truncated or not a checkpoint: {_one_line(err)}", path
        ) from err


def require_trusted_pickle(path: str | os.PathLike, what: str = "checkpoint") -> None:
    """Refuse a full unpickle of ``path`` unless the user opted in: ``SIMPO_BIO_TRUST_PICKLE=1`` (every file) or
    the file's sha256 in ``SIMPO_BIO_TRUSTED_SHA256`` (comma-separated hex digests; :mod:`simpo_bio.safe_pickle`).

    Raises:
        UnsafeCheckpointError: one line naming the file, its sha256 and both opt-ins.
    """
    if pickle_trusted(path):
        return
    raise UnsafeCheckpointError(
        f"{what} {path} is refused: it holds Python objects that only a full unpickle reads, which can run arbitrary "
        f"code; if you trust the file, set {TRUST_PICKLE_ENV}=1 or add its sha256 {file_sha256(path)} to "
        f"{TRUSTED_SHA256_ENV} (comma-separated)", path)


def record_model_kind(checkpoint: dict, kind: str) -> None:
    """Record the writing model's class name in a checkpoint dict (call from ``on_save_checkpoint``)."""
    checkpoint[KIND_KEY] = kind


def check_model_kind(checkpoint: Mapping, expected: str | tuple[str, ...], path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointArchitectureError` unless the checkpoint was written by ``expected``.

    A checkpoint without the record (another tool's file) passes here; :func:`load_state_dict_checked` then
    checks its keys and shapes.

    Raises:
        CheckpointArchitectureError: a recorded kind other than ``expected``, or a file without a state dict.
    """
    expected = (expected,) if isinstance(expected, str) else tuple(expected)
    if not isinstance(checkpoint, Mapping):
        raise CheckpointArchitectureError(
            f"checkpoint {path} holds a {type(checkpoint).__name__}, not a checkpoint dict", path
        )
    kind = checkpoint.get(KIND_KEY)
    if kind is not None and kind not in expected:
        raise CheckpointArchitectureError(
            f"wrong architecture: checkpoint {path} was written by {kind}, expected {' or '.join(expected)}", path
        )
    if "state_dict" not in checkpoint:
        raise CheckpointArchitectureError(
            f"wrong architecture: checkpoint {path} has no 'state_dict' (keys: {sorted(checkpoint)[:10]})", path
        )


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state_dict`` under ``prefix`` (e.g. ``"net."``) with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_state_dict_checked(
    module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike
) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with an error that lists what differs.

    Raises:
        CheckpointArchitectureError: missing keys, unexpected keys or tensor shapes that differ (the first few of
            each are named, with both shapes).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:3]})")
        raise CheckpointArchitectureError(
            f"wrong architecture: checkpoint {path} does not fit {type(module).__name__}: " + "; ".join(parts), path
        )
    module.load_state_dict(state_dict, strict=True)


def save_checkpoint_atomic(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename (no half-written checkpoints)."""
    return atomic_torch_save(obj, path)


# ------------------------------------------------------------------------------------------------ resumable fits
#: Environment variable that lets a fit resume from a checkpoint of another config (``1`` / ``true``): the override
#: of :func:`check_resume` for ``simpo-bio fit`` (``simpo-bio demo`` has ``--force-resume``).
FORCE_RESUME_ENV = "SIMPO_FORCE_RESUME"
#: Data-module arguments that do not change what a fit computes (speed, location, evaluation batch size).
RESUME_FREE_DATA_HPARAMS = frozenset({"num_workers", "cache_dir", "eval_batch_size"})
_CLI_HPARAMS = frozenset({"_class_path", "_instantiator"})


_plain = plain


def run_identity(trainer, pl_module) -> dict[str, Any]:
    """What decides a fit's results: model class and hyper-parameters, data module and its arguments (minus
    :data:`RESUME_FREE_DATA_HPARAMS`), the global seed and the trainer's optimisation settings. The budget
    (``max_epochs``, ``max_steps``, ``max_time``), logging and output folders are not part of it: a run may be
    extended or moved."""
    hparams = {k: v for k, v in dict(getattr(pl_module, "hparams", {}) or {}).items() if k not in _CLI_HPARAMS}
    dm = getattr(trainer, "datamodule", None)
    data = {k: v for k, v in dict(getattr(dm, "hparams", {}) or {}).items()
            if k not in RESUME_FREE_DATA_HPARAMS and k not in _CLI_HPARAMS}  # fmt: skip
    return _plain({
        "model": type(pl_module).__name__,
        "hparams": hparams,
        "data": {"class": type(dm).__name__ if dm is not None else None, "hparams": data},
        "seed": os.environ.get("PL_GLOBAL_SEED"),
        "trainer": {"accumulate_grad_batches": getattr(trainer, "accumulate_grad_batches", None),
                    "gradient_clip_val": getattr(trainer, "gradient_clip_val", None),
                    "gradient_clip_algorithm": str(getattr(trainer, "gradient_clip_algorithm", None)),
                    "precision": str(getattr(trainer, "precision", None))},
    })  # fmt: skip




def _recorded_identity(checkpoint: Mapping, pl_module) -> dict[str, Any]:
    """The identity a checkpoint records; for checkpoints written without :class:`ResumableCheckpoint` what can be
    rebuilt from Lightning's own records (model and data hyper-parameters; seed and trainer settings unknown)."""
    if isinstance(checkpoint.get("simpo_run"), Mapping):
        return dict(checkpoint["simpo_run"])
    hp = {k: v for k, v in dict(checkpoint.get("hyper_parameters") or {}).items() if k not in _CLI_HPARAMS}
    data = {k: v for k, v in dict(checkpoint.get("datamodule_hyper_parameters") or {}).items()
            if k not in RESUME_FREE_DATA_HPARAMS and k not in _CLI_HPARAMS}  # fmt: skip
    kind = checkpoint.get(KIND_KEY) or str((checkpoint.get("hyper_parameters") or {}).get("_class_path", "?"))
    return _plain({"model": kind.rpartition(".")[2], "hparams": hp, "data": {"class": None, "hparams": data}})


_differences = identity_differences


def force_resume_requested(trainer=None) -> bool:
    """True when :data:`FORCE_RESUME_ENV` is set to 1/true/yes or a :class:`ResumableCheckpoint` has
    ``force_resume``."""
    if os.environ.get(FORCE_RESUME_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    return any(getattr(cb, "force_resume", False) for cb in getattr(trainer, "callbacks", None) or [])


def check_resume(trainer, pl_module, checkpoint: Mapping, path: str | os.PathLike | None = None,
                 force: bool | None = None) -> None:
    """Refuse to resume ``pl_module`` from ``checkpoint`` unless both describe the same run.

    Another model kind is always refused; another config (:func:`run_identity`; fields a checkpoint does not record
    are not compared) is refused unless ``force`` (default: :func:`force_resume_requested`).

    Raises:
        ResumeMismatchError: one line naming the checkpoint, both config hashes and (up to 4 of) the fields that
            differ, and the override.
    """
    path = path or getattr(trainer, "ckpt_path", None) or "the checkpoint"
    recorded = _recorded_identity(checkpoint, pl_module)
    current = run_identity(trainer, pl_module)
    if recorded.get("model") not in (None, "?", current["model"]):
        raise ResumeMismatchError(
            f"refusing to resume {current['model']} from {path}: it was written by {recorded['model']}", path or ".")
    # fields a checkpoint does not record (older files) are not compared
    comparable = {k: current[k] for k in recorded if k in current}
    if "data" in recorded and recorded["data"].get("class") is None:
        comparable["data"] = {"class": None, "hparams": current["data"]["hparams"]}
    diffs = _differences(recorded, comparable)
    if not diffs or (force_resume_requested(trainer) if force is None else force):
        return
    more = f" and {len(diffs) - 4} more" if len(diffs) > 4 else ""
    raise ResumeMismatchError(
        f"refusing to resume from {path}: it was written by another run (config hash {identity_hash(recorded)}) "
        f"than this one (config hash {identity_hash(comparable)}): {'; '.join(diffs[:4])}{more}; set "
        f"{FORCE_RESUME_ENV}=1 (simpo-bio demo: --force-resume) to resume anyway, or start afresh "
        "(--ckpt_path null / simpo-bio demo --fresh, or another output folder)", path)


def guard_resume(pl_module, checkpoint: Mapping) -> None:
    """:func:`check_resume` for a LightningModule's ``on_load_checkpoint`` while fitting: a mismatch prints one
    line (``simpo-bio: error: ...``) and exits with status 2 (checked once per checkpoint)."""
    trainer = getattr(pl_module, "_trainer", None)
    fitting = trainer is not None and getattr(getattr(trainer.state, "fn", None), "value", None) == "fit"
    if not fitting or checkpoint.get("_simpo_resume_checked"):
        return
    try:
        check_resume(trainer, pl_module, checkpoint)
    except ResumeMismatchError as err:
        print(f"simpo-bio: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if isinstance(checkpoint, dict):
        checkpoint["_simpo_resume_checked"] = True


def rng_states() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) global random states, as types torch's safe loader accepts (Lightning resumes
    with ``weights_only=True``)."""
    import random

    import numpy as np

    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"python": random.getstate(), "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss),
                                                     float(cached)], "torch": torch.get_rng_state()}  # fmt: skip
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Inverse of :func:`rng_states` (missing entries are left as they are)."""
    import random

    import numpy as np

    if "python" in states:
        random.setstate(states["python"])
    if "numpy" in states:
        name, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumableCheckpoint(ModelCheckpoint):
    """``last.ckpt`` at a fixed interval, written atomically, that a killed fit resumes to the same result.

    A :class:`~lightning.pytorch.callbacks.ModelCheckpoint` with ``save_last=True, save_top_k=0`` writes
    ``last.ckpt`` only when training ends (Lightning 2.6); this one writes it every ``every_n_epochs`` epochs (a
    SiMPO policy iteration is an epoch) and / or every ``every_n_train_steps`` optimizer steps. Each write goes to a
    temporary file that then replaces ``last.ckpt`` (a kill leaves the previous one intact). Every checkpoint also
    records the global random states (restored on resume) and the :func:`run_identity`; resuming from a checkpoint
    of another run is refused (:func:`check_resume`) unless ``force_resume`` or :data:`FORCE_RESUME_ENV`.

    Resume with ``ckpt_path: last`` in the config (the shipped DNA configs do): the same command run again
    continues from ``last.ckpt`` when there is one and starts afresh otherwise.

    Args:
        dirpath: folder of ``last.ckpt``.
        every_n_epochs: epochs between checkpoints (0: none at epoch ends).
        every_n_train_steps: optimizer steps between checkpoints (None / 0: none within epochs).
        force_resume: accept a checkpoint of another config.
        save_last, save_top_k, enable_version_counter: as in :class:`ModelCheckpoint`, but ``True``, ``0`` and
            ``False`` by default (always ``last.ckpt``, no other files).
        **kwargs: other :class:`ModelCheckpoint` arguments.
    """

    def __init__(self, dirpath: str | None = None, every_n_epochs: int = 1, every_n_train_steps: int | None = None,
                 force_resume: bool = False, save_last: bool = True, save_top_k: int = 0,
                 enable_version_counter: bool = False, **kwargs: Any) -> None:
        # Lightning's own triggers are off (its step trigger saves before the module's on_train_batch_end, e.g.
        # an EMA update, has run); both triggers are handled here
        super().__init__(dirpath=dirpath, every_n_epochs=0, save_last=save_last, save_top_k=save_top_k,
                         enable_version_counter=enable_version_counter, **kwargs)
        self.last_every_n_epochs = int(every_n_epochs or 0)
        self.last_every_n_train_steps = int(every_n_train_steps or 0)
        self.force_resume = force_resume

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.ckpt_path:  # resumed: the restored step is already saved
            self._last_global_step_saved = trainer.global_step

    def _save_last_now(self, trainer) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        # a step interval is acted on at the start of the next batch: everything of the previous one (the module's
        # on_train_batch_end included) is then done and in the checkpoint
        n = self.last_every_n_train_steps
        if n >= 1 and trainer.global_step > 0 and trainer.global_step // n > self._last_global_step_saved // n:
            self._save_last_now(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        n = self.last_every_n_epochs
        if n >= 1 and (trainer.current_epoch + 1) % n == 0:
            self._save_last_now(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save_last_now(trainer)  # the finished state (a resumed finished run has nothing left to do)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        from weakref import proxy

        # a temp name of its own (two writers never share one), removed on any failure; a full disk: one line
        tmp = Path(filepath).with_name(f".{Path(filepath).name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
        try:
            trainer.save_checkpoint(tmp, self.save_weights_only)
            if trainer.is_global_zero:
                os.replace(tmp, filepath)
        except BaseException as err:
            tmp.unlink(missing_ok=True)
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                raise disk_full_error(filepath) from None
            raise
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["simpo_run"] = run_identity(trainer, pl_module)
        checkpoint["simpo_rng"] = rng_states()
        # batches of the current epoch already trained on
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        checkpoint["simpo_data_position"] = {"epoch": int(trainer.current_epoch), "batches": int(progress.completed)}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        guard_resume(pl_module, checkpoint)
        if checkpoint.get("simpo_rng") is not None:
            set_rng_states(checkpoint["simpo_rng"])
        position, dm = checkpoint.get("simpo_data_position"), getattr(trainer, "datamodule", None)
        if position and callable(getattr(dm, "resume_train_at", None)):
            dm.resume_train_at(position["epoch"], position["batches"])
