"""One checkpoint error hierarchy and one resume identity, shared by DNA, control and the bandit.

Every domain's checkpoint problem is a :class:`CheckpointError` (a ``RuntimeError`` with the file in ``.path``), so a
command catches one type. A resume is allowed when the run's *identity* (the configuration fields that change its
results, a JSON-normal mapping each domain builds) equals the one recorded; :func:`identity_hash` names it in 12 hex
digits and :func:`identity_differences` lists the fields that differ, for the one-line refusal.

Imports: the standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["CheckpointArchitectureError", "CheckpointCorruptError", "CheckpointError", "CheckpointFormatError",
           "CheckpointNotFoundError", "ResumeMismatchError", "UnsafeCheckpointError", "identity_differences",
           "identity_hash", "plain"]


class CheckpointError(RuntimeError):
    """Base class of every checkpoint error of simpo-bio; ``.path`` is the file (``None`` when not known)."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(message)


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


class CheckpointCorruptError(CheckpointError):
    """The file exists but cannot be read as a checkpoint (truncated download, partial write, not a checkpoint)."""


class CheckpointArchitectureError(CheckpointError):
    """The checkpoint was written by another model or another architecture (keys or tensor shapes differ)."""


class CheckpointFormatError(CheckpointError):
    """A checkpoint of this project written by an earlier version whose layout has changed (the message says what
    changed and how to start afresh)."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds Python objects (classes, functions) that only a full unpickle reads: refused, since
    unpickling it could run arbitrary code."""


class ResumeMismatchError(CheckpointError):
    """A run asked to resume from a checkpoint (or a folder of saved runs) written under another configuration."""


def plain(value: Any) -> Any:
    """JSON-normal form (tuples -> lists, paths and other objects -> ``str``), so recorded and current values
    compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def identity_hash(identity: Mapping[str, Any]) -> str:
    """Short SHA-256 (12 hex digits) of a run identity (JSON, sorted keys; non-JSON values by ``repr``)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=repr).encode()).hexdigest()[:12]


def identity_differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``"<dotted field>: <old> (checkpoint) vs <new> (this run)"`` for every field that differs, nested mappings
    followed (sorted)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += identity_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} (checkpoint) vs {b!r} (this run)")
    return out
