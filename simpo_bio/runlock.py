"""One writer per run folder: an exclusive lock (``filelock``) held while a run writes there.

A second run started into a folder that a live run holds fails at once with one line naming the holder's pid and
start time. The lock is an OS lock (``flock``), released by the kernel when its process dies, so the lock of a
killed run is stale by construction: the next run takes it over and says so.

Imports: the standard library and ``filelock`` only.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["LOCK_NAME", "RunLockedError", "run_lock"]

#: Name of the lock file (and of its ``.json`` holder record) inside a run folder.
LOCK_NAME = ".simpo-run.lock"


class RunLockedError(RuntimeError):
    """Another live process writes into the run folder (the message names it: pid, host, start time)."""


def _holder(folder: Path, name: str) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((folder / (name + ".json")).read_text())
    return {}


@contextlib.contextmanager
def run_lock(folders: str | os.PathLike | Sequence[str | os.PathLike], what: str = "run", name: str = LOCK_NAME
             ) -> Iterator[list[Path]]:
    """Hold the exclusive lock of every folder in ``folders`` (created if missing) for the ``with`` block.

    ``name`` is the lock file inside each folder: a demo holds ``.simpo-demo.lock`` on its ``--out`` while its fits
    hold :data:`LOCK_NAME` on their own folders (two locks of one process on one file would block each other).

    Raises:
        RunLockedError: a folder is held by another live process: ``"<folder> is in use by another run (pid P on
            HOST, started T)"``; nothing is written and the locks already taken are released.
    """
    paths = [Path(folders)] if isinstance(folders, str | os.PathLike) else [Path(f) for f in folders]
    paths = list(dict.fromkeys(p.resolve() for p in paths))
    held: list[tuple[FileLock, Path]] = []
    try:
        for folder in paths:
            folder.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(folder / name), is_singleton=False)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                h = _holder(folder, name)
                who = f"pid {h.get('pid', '?')} on {h.get('host', '?')}, started {h.get('started', '?')}"
                raise RunLockedError(f"{folder} is in use by another {h.get('what', 'run')} ({who}); wait for it to finish, or "
                                     "write this one elsewhere (--trainer.default_root_dir / --out)") from None
            stale = _holder(folder, name)
            if stale and stale.get("pid") != os.getpid():
                print(f"[simpo-bio] took over the stale lock of {folder} (pid {stale.get('pid')}, started "
                      f"{stale.get('started')}: that run ended without releasing it)", file=sys.stderr)
            record = {"what": what, "pid": os.getpid(), "host": socket.gethostname(),
                      "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv[:3])}
            (folder / (name + ".json")).write_text(json.dumps(record))
            held.append((lock, folder))
        yield paths
    finally:
        for lock, folder in reversed(held):
            with contextlib.suppress(OSError):
                (folder / (name + ".json")).unlink()
            lock.release()
