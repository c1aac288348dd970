"""Atomic file writes, shared by every part of simpo-bio that writes results.

A write goes to a temporary file in the destination's folder, which ``os.replace`` then moves over the destination
in one step: a crash (or Ctrl-C) mid-write leaves either the old file or the new one, never half a file. The
temporary file is removed on any error, and the final file gets the user's usual permissions (``mkstemp`` would
leave it ``0600``).

Imports: the standard library only (torch inside :func:`atomic_torch_save`, so the pure parts never load it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class DiskFullError(OSError):
    """A write ran out of space (``ENOSPC``): the message names the destination, the bytes written before the disk
    filled and the space left; the destination was left as it was and no temporary file remains."""


def disk_full_error(path: str | os.PathLike, tmp: Path | None = None) -> DiskFullError:
    """The :class:`DiskFullError` of a write to ``path`` that filled the disk (``tmp``: its partial temp file)."""
    path = Path(path)
    written = tmp.stat().st_size if tmp is not None and tmp.exists() else 0
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = 0
    need = f"it needs more than {written:,} bytes and " if written else ""
    return DiskFullError(errno.ENOSPC, f"no space left on the device writing {path}: {need}{free:,} bytes are free "
                         "(what was there before is unchanged)", str(path))


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield one temporary path per destination; on a clean exit every destination is replaced, and only once all
    of them were written (a FASTA and its table: never a new one beside an old one).

    For writers that take a file name (``DataFrame.to_csv``, ``Figure.savefig``, ``torch.save``, ...). Temporary
    names are unique (``mkstemp``), so two writers never share one. Parent folders are created. On an exception
    every temporary file is removed and the destinations are left untouched; a full disk (``ENOSPC``) becomes
    :class:`DiskFullError` naming the destination.
    """
    dests = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for path in dests:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
            os.close(fd)
            tmps.append(Path(tmp))
        try:
            yield list(tmps)
        except OSError as err:
            if err.errno == errno.ENOSPC and not isinstance(err, DiskFullError):
                named = [i for i, t in enumerate(tmps) if err.filename and Path(err.filename) == t]
                written = [i for i, t in enumerate(tmps) if t.exists() and t.stat().st_size]
                i = (named or written[-1:] or [0])[0]  # the file being written when the disk filled
                raise disk_full_error(dests[i], tmps[i]) from None
            raise
        for tmp in tmps:
            os.chmod(tmp, _default_mode())
        for tmp, path in zip(tmps, dests, strict=True):
            os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit it replaces ``path`` atomically.

    For writers that take a file name (``DataFrame.to_csv``, ``Figure.savefig``, ``torch.save``, ...).
    Parent folders are created. On an exception the temporary file is removed and ``path`` is left untouched; a
    full disk becomes :class:`DiskFullError` (:func:`atomic_paths`).
    """
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """Open a temporary file next to ``path`` for writing; on a clean exit it replaces ``path`` atomically.

    Args:
        path: destination file.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        encoding: text encoding (ignored in binary mode).
    """
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (no half-written checkpoints). Returns ``path``."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
