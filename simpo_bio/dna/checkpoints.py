"""Checkpoint loading with errors that say what went wrong: missing, truncated/unreadable, or wrong architecture.

Shared by every model the project ships (pretrained masked diffusion model, reward oracles)::

    ckpt = load_checkpoint(path)                      # CheckpointNotFoundError / CheckpointCorruptError
    check_model_kind(ckpt, "CellTypeClassifier", path)  # CheckpointArchitectureError (another model's file)
    load_state_dict_checked(module, ckpt["state_dict"], path)  # CheckpointArchitectureError (keys / shapes)

All three errors derive from :class:`CheckpointError`. A LightningModule that wants its kind recorded calls
:func:`record_model_kind` in ``on_save_checkpoint``.

Imports: torch and :mod:`simpo_bio.fileio` only.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from simpo_bio.fileio import atomic_torch_save

#: Key under which our LightningModules record the class that wrote a checkpoint.
KIND_KEY = "simpo_bio_model"


class CheckpointError(RuntimeError):
    """Base class of the checkpoint errors below; ``.path`` is the file."""

    def __init__(self, message: str, path: str | os.PathLike):
        self.path = Path(path)
        super().__init__(message)


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


class CheckpointCorruptError(CheckpointError):
    """The file exists but cannot be read as a checkpoint (truncated download, partial write, not a checkpoint)."""


class CheckpointArchitectureError(CheckpointError):
    """The checkpoint was written by another model or another architecture (keys or tensor shapes differ)."""


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *, weights_only: bool = True):
    """Read a ``torch.save`` / Lightning checkpoint.

    Args:
        path: the file.
        map_location: where tensors are placed (default CPU).
        weights_only: torch's safe unpickler (tensors, containers, primitives); set ``False`` only for trusted files
            that carry arbitrary Python objects.

    Returns:
        the loaded object (a dict for Lightning checkpoints).

    Raises:
        CheckpointNotFoundError: no file at ``path``.
        CheckpointCorruptError: the file is truncated, empty or not a checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint {path} does not exist", path)
    if path.is_dir():
        raise CheckpointCorruptError(f"checkpoint {path} is a directory, not a checkpoint file", path)
    size = path.stat().st_size
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if weights_only and "weights_only" in str(err).lower().replace(" ", "_"):
            raise CheckpointCorruptError(
                f"checkpoint {path} holds Python objects that the safe loader refuses ({err}); "
                "load it with weights_only=False only if you trust the file",
                path,
            ) from err
        raise CheckpointCorruptError(
            f"checkpoint {path} ({size} bytes) is truncated or not a checkpoint: {err}", path
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointCorruptError(
            f"checkpoint {path} ({size} bytes) is truncated or not a checkpoint: {err}", path
        ) from err


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
