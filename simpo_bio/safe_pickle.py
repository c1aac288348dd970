"""Restricted unpickling for the checkpoint readers, and the user's opt-in to a full unpickle of a named file.

Unpickling runs whatever a file asks for (``__reduce__`` may call ``os.system``), so no checkpoint a user names is
unpickled in full by default:

* :class:`RestrictedUnpickler`: a pure-Python unpickler that imports only allow-listed globals and sets an object's
  state (the ``BUILD`` opcode) only on instances of allow-listed classes (never on a class or a function);
* :func:`loads`: ``bytes`` -> object with :func:`state_globals` (numpy arrays and scalars of plain dtypes, numpy
  random generators, ``deque``): the env snapshots of the control checkpoints;
* :func:`numpy_safe_globals`: what ``torch.load(weights_only=True)`` needs, passed to
  ``torch.serialization.safe_globals``, to read numpy arrays and random states (plain dtypes only);
* :func:`pickle_trusted`: whether the user opted in to a full unpickle of a file: :data:`TRUST_PICKLE_ENV` ``=1``
  (every file), or the file's sha256 listed in :data:`TRUSTED_SHA256_ENV` (comma-separated hex digests).

Imports: the standard library (numpy inside the functions that need it).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["RestrictedUnpickler", "loads", "numpy_safe_globals", "state_globals", "pickle_trusted", "file_sha256",
           "TRUST_PICKLE_ENV", "TRUSTED_SHA256_ENV"]

#: ``1`` / ``true`` / ``yes``: the user trusts every file that needs a full unpickle (the gReLU oracles).
TRUST_PICKLE_ENV = "SIMPO_BIO_TRUST_PICKLE"
#: Comma-separated sha256 hex digests of the files the user trusts to be unpickled in full.
TRUSTED_SHA256_ENV = "SIMPO_BIO_TRUSTED_SHA256"


def _load_build(self: RestrictedUnpickler) -> None:
    state = self.stack.pop()
    inst = self.stack[-1]
    if isinstance(inst, type) or not self.may_build(inst):
        kind = inst if isinstance(inst, type) else type(inst)
        raise pickle.UnpicklingError(f"setting the state of {kind.__module__}.{kind.__qualname__} is not allowed")
    setstate = getattr(inst, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    if isinstance(state, tuple) and len(state) == 2 and not state[1]:  # (dict state, no slot state)
        state = state[0]
    if state is not None and not isinstance(state, dict):
        raise pickle.UnpicklingError(f"bad state for {type(inst).__qualname__}")
    inst.__dict__.update(state or {})


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickler that imports only ``allowed`` globals and runs ``BUILD`` only where :meth:`may_build` says so.

    Pure Python (``pickle._Unpickler``), so that ``BUILD`` can be checked: the C unpickler would set attributes on
    any object, classes and functions included.

    Attributes:
        allowed: ``"module.name"`` -> the object ``find_class`` returns for it.
    """

    allowed: Mapping[str, Any] = {}
    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _load_build

    def find_class(self, module: str, name: str) -> Any:
        obj = self.allowed.get(f"{module}.{name}")
        return obj if obj is not None else self.unknown_global(module, name)

    def unknown_global(self, module: str, name: str) -> Any:
        """What a global outside ``allowed`` becomes (here: refused)."""
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")

    def may_build(self, inst: Any) -> bool:
        """Whether the pickle may set the state of ``inst`` (an instance, never a class): its class is allowed."""
        if getattr(self, "_build_types", None) is None:
            self._build_types = frozenset(v for v in self.allowed.values() if isinstance(v, type))
        return type(inst) in self._build_types


def _dtype_classes() -> list[type]:
    """numpy's dtype classes of booleans, numbers and fixed-width strings (no object, void or datetime dtypes)."""
    import numpy as np

    return list(dict.fromkeys(type(np.dtype(c)) for c in "?bBhHiIlLqQpPefdgFDGSU"))


def _qualified(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


@lru_cache(maxsize=1)
def _numpy_globals() -> dict[str, Any]:
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    objs = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *_dtype_classes()]
    out = {_qualified(o): o for o in objs}
    for name in ("_reconstruct", "scalar"):  # files written with numpy 1 (numpy.core) or 2 (numpy._core)
        out[f"numpy.core.multiarray.{name}"] = out[f"numpy._core.multiarray.{name}"] = getattr(multiarray, name)
    return out


def numpy_safe_globals(aliases: bool = True) -> list[Any]:
    """For ``torch.serialization.safe_globals``: numpy arrays and scalars of plain dtypes; with ``aliases`` (torch
    >= 2.6) also ``(obj, name)`` pairs for the names the other numpy major version writes."""
    return [obj if name == _qualified(obj) else (obj, name) for name, obj in _numpy_globals().items()
            if aliases or name == _qualified(obj)]


@lru_cache(maxsize=1)
def state_globals() -> dict[str, Any]:
    """What :func:`loads` imports: numpy arrays / scalars, numpy random generators, containers (name -> object)."""
    import numpy.random._pickle as np_pickle
    from numpy import random as npr
    from numpy.random import bit_generator

    Generator, RandomState, SeedSequence = npr.Generator, npr.RandomState, npr.SeedSequence
    MT19937, PCG64, PCG64DXSM, Philox, SFC64 = npr.MT19937, npr.PCG64, npr.PCG64DXSM, npr.Philox, npr.SFC64

    objs = [deque, OrderedDict, Counter, set, frozenset, complex, slice, range, bytearray, Generator, RandomState,
            SeedSequence, MT19937, PCG64, PCG64DXSM, Philox, SFC64]
    out = {**_numpy_globals(), **{_qualified(o): o for o in objs}}
    for name in ("__generator_ctor", "__bit_generator_ctor", "__randomstate_ctor"):
        out[f"numpy.random._pickle.{name}"] = getattr(np_pickle, name)
    out["numpy.random.bit_generator.__pyx_unpickle_SeedSequence"] = bit_generator.__pyx_unpickle_SeedSequence
    for cls in (Generator, RandomState, SeedSequence, MT19937, PCG64, PCG64DXSM, Philox, SFC64):
        out[f"{cls.__module__}.{cls.__name__}"] = cls  # the names their pickles use
    return out


class _StateUnpickler(RestrictedUnpickler):
    @property
    def allowed(self) -> Mapping[str, Any]:  # type: ignore[override]
        return state_globals()


def loads(data: bytes) -> Any:
    """``pickle.loads`` restricted to :func:`state_globals` (numpy data, numpy random generators, containers).

    Raises:
        pickle.UnpicklingError: the data names another global (the message names it) or is not a pickle.
    """
    try:
        return _StateUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError:
        raise
    except Exception as err:  # noqa: BLE001 - a truncated or malformed pickle raises anything
        raise pickle.UnpicklingError(f"not a readable pickle: {type(err).__name__}: {err}") from None


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pickle_trusted(path: str | os.PathLike) -> bool:
    """Whether the user opted in to unpickling ``path`` in full: :data:`TRUST_PICKLE_ENV` is ``1`` / ``true`` /
    ``yes``, or the file's sha256 is one of the comma-separated digests in :data:`TRUSTED_SHA256_ENV`."""
    if os.environ.get(TRUST_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    listed = {d.strip().lower() for d in os.environ.get(TRUSTED_SHA256_ENV, "").split(",") if d.strip()}
    return bool(listed) and Path(path).is_file() and file_sha256(path) in listed
