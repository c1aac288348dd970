"""Formats of checkpoints written by other projects, read safely: oracle specs, the restricted reader, gReLU sniffing.

The one place foreign checkpoint layouts are recognised (DRAKES ``pretrained.ckpt`` in :mod:`simpo_bio.dna.models.drakes`
uses these readers; own Lightning files and export-hf directories are recognised in
:mod:`simpo_bio.dna.models.checkpoints` and :mod:`simpo_bio.dna.models.hf`; ).

Before anything is unpickled in full, :func:`peek_checkpoint` reads the structure of a checkpoint with a
restricted unpickler that imports nothing outside an allow-list (every other class becomes an inert
:class:`Opaque` record; state is set only on those records, tensors and ``OrderedDict``) and loads no tensor
data; :func:`read_checkpoint_restricted` does the same but loads the tensors. The DRAKES pretrained model's
``hyper_parameters`` hold an OmegaConf ``DictConfig``; :func:`to_plain` turns those records (or real OmegaConf
objects) into dicts, so it is read without ``omegaconf``. An oracle *spec* is a path with optional
``?key=value&...`` options (:func:`split_spec`).

Imports: torch, :mod:`simpo_bio.safe_pickle`, :mod:`simpo_bio.dna.models.checkpoints`.
"""

from __future__ import annotations

import os
import pickle
import types
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import torch

from simpo_bio.dna.models.checkpoints import (
    CheckpointCorruptError,
    CheckpointNotFoundError,
)
from simpo_bio.safe_pickle import RestrictedUnpickler

__all__ = ["split_spec", "peek_checkpoint", "read_checkpoint_restricted", "to_plain", "Opaque", "is_grelu_checkpoint"]


# ---------------------------------------------------------------------------------------- oracle specs

def split_spec(spec: str | os.PathLike) -> tuple[str, dict[str, str]]:
    """``"path?key=value&..."`` -> ``(path, {key: value})``; a plain path (or an existing file) -> ``(path, {})``.

    Raises:
        ValueError: an option without ``=``.
    """
    s = str(spec)
    if "?" not in s or Path(s).exists():
        return s, {}
    path, _, query = s.partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=True))
    except ValueError as err:
        raise ValueError(f"bad options {query!r} in {s!r}: expected key=value pairs joined by '&'") from err
    return path, options


# ------------------------------------------------------------------------- restricted checkpoint reading
class Opaque(dict):
    """Inert stand-in for a class the restricted reader does not import.

    Records ``qualname`` (``module.name``), the constructor ``args`` and the pickled ``state``; dict items and list
    items that the pickle sets on the object land in the dict itself and in ``items_list``.
    """

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args, obj.state, obj.items_list = args, None, []
        return obj

    def __init__(self, *args, **kwargs):  # noqa: D107 - any call signature is accepted and ignored
        super().__init__()

    def __setstate__(self, state):
        self.state = state

    def __call__(self, *args, **kwargs):  # a pickled call of an unknown object (getattr(cls, "f")(...)): inert
        return type(self)(*args)

    def append(self, item):
        self.items_list.append(item)

    def extend(self, items):
        self.items_list.extend(items)

    def __repr__(self) -> str:
        return f"Opaque({self.qualname})"


_OPAQUE_TYPES: dict[str, type] = {}


def _opaque(module: str, name: str) -> type:
    qual = f"{module}.{name}"
    if qual not in _OPAQUE_TYPES:
        _OPAQUE_TYPES[qual] = type(name, (Opaque,), {"qualname": qual, "__module__": __name__})
    return _OPAQUE_TYPES[qual]


def _allowed_globals() -> dict[str, Any]:
    """What torch's own ``weights_only`` unpickler allows (tensor rebuilding, dtypes, containers)."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = dict(_get_allowed_globals())
    except Exception:  # private torch API: fall back to the minimum a state dict needs
        allowed = {"torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
                   "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
                   "torch.Size": torch.Size, "torch.device": torch.device}
    allowed.update({"collections.OrderedDict": OrderedDict, "builtins.set": set, "builtins.frozenset": frozenset,
                    "builtins.slice": slice, "builtins.range": range})
    return allowed


class _RestrictedUnpickler(RestrictedUnpickler):
    """Imports only allow-listed globals (every other class or function becomes an :class:`Opaque` record) and sets
    state only on those records and on allow-listed objects (tensors, ``OrderedDict``; never on a class)."""

    _allowed: dict[str, Any] | None = None

    @property
    def allowed(self) -> dict[str, Any]:  # type: ignore[override]
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _allowed_globals()
        return _RestrictedUnpickler._allowed

    def unknown_global(self, module: str, name: str):
        return _opaque(module, name)

    def may_build(self, inst: Any) -> bool:
        return isinstance(inst, Opaque) or super().may_build(inst)


class _PeekUnpickler(_RestrictedUnpickler):
    """Structure only: tensors become :class:`Opaque` records (``args[2]`` is the shape), no storage is read."""

    def find_class(self, module: str, name: str):
        if module.startswith("torch") and ("rebuild" in name or "Storage" in name):
            return _opaque(module, name)
        return super().find_class(module, name)

    def persistent_load(self, pid):
        return None


_RESTRICTED_PICKLE = types.ModuleType("simpo_bio_restricted_pickle")
_RESTRICTED_PICKLE.Unpickler = _RestrictedUnpickler
_RESTRICTED_PICKLE.load = lambda f, **kw: _RestrictedUnpickler(f, **kw).load()
_RESTRICTED_PICKLE.__name__ = "simpo_bio_restricted_pickle"
#: torch.load's arguments for :func:`read_checkpoint_restricted`: torch's own safe loader takes no pickle module, so
#: it is switched off and the restricted unpickler above takes its place (not a full unpickle).
_RESTRICTED_LOAD = {"pickle_module": _RESTRICTED_PICKLE, "weights_only": False}


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint {path} does not exist", path)
    if path.is_dir():
        raise CheckpointCorruptError(f"checkpoint {path} is a directory, not a checkpoint file", path)


def peek_checkpoint(path: str | os.PathLike) -> Any | None:
    """The pickled structure of a torch zip checkpoint without its tensor data (cheap for a 1 GB file).

    Returns:
        the top-level object (a dict for Lightning checkpoints; tensors and unknown classes as :class:`Opaque`),
        or ``None`` for a file that is not a readable torch zip checkpoint (the caller's loader reports why).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            member = next((n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if member is None:
                return None
            with zf.open(member) as fh:
                return _PeekUnpickler(fh).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError):
        return None


def read_checkpoint_restricted(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with the restricted unpickler: tensors load, nothing outside the allow-list is imported.

    Raises:
        CheckpointNotFoundError: no file at ``path``.
        CheckpointCorruptError: truncated or not a checkpoint.
    """
    path = Path(path)
    _check_file(path)
    try:
        return torch.load(path, map_location=map_location, **_RESTRICTED_LOAD)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, OSError) as err:
        raise CheckpointCorruptError(f"checkpoint {path} is truncated or not a checkpoint: {err}", path) from err


def to_plain(obj: Any) -> Any:
    """Plain dicts / lists of an OmegaConf config read as :class:`Opaque` records, or of real OmegaConf objects.

    Interpolations (``${...}``) stay strings; other records are returned as they are.
    """
    if type(obj).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(obj, resolve=False)
    if isinstance(obj, Opaque):
        state = obj.state
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = state[0] or state[1]
        if isinstance(state, Mapping) and "_content" in state:
            return to_plain(state["_content"])
        if isinstance(state, Mapping) and "_val" in state:
            return to_plain(state["_val"])
        if len(obj):
            return {k: to_plain(v) for k, v in obj.items()}
        return obj
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_plain(v) for v in obj)
    return obj


# -------------------------------------------------------------------------------------------- gReLU files
def _grelu_hparams(ckpt: Any) -> dict[str, Any] | None:
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, Mapping) else None
    if not isinstance(hp, Mapping):
        return None
    mp, tp = hp.get("model_params"), hp.get("train_params")
    if isinstance(mp, Mapping) and "model_type" in mp and isinstance(tp, Mapping):
        return {"model_params": dict(mp), "train_params": dict(tp)}
    return None


def is_grelu_checkpoint(path: str | os.PathLike) -> bool:
    """True when the file is a gReLU ``LightningModel`` checkpoint (``hyper_parameters`` with ``model_params``
    holding a ``model_type`` and ``train_params``); read with :func:`peek_checkpoint`, nothing is executed."""
    return _grelu_hparams(peek_checkpoint(path)) is not None


