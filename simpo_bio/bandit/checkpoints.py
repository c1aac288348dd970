"""Per-run checkpoints of the bandit experiment: a killed ``simpo-bio bandit`` run again computes only what is missing.

Every finished (scheme, seed) run is saved at once, atomically, to ``<out>/bandit_<reward>_runs/`` (one ``.npz``
per run, plus ``config.json`` with the experiment's :func:`config_identity` and its :func:`config_hash`). The same
command run again loads the saved runs instead of computing them (a run is deterministic given the config, its
scheme and its seed, so the outputs are identical to an uninterrupted run's), and so does a command that only adds
seeds or schemes. A folder saved under another config (any field that changes a run's result: ``lr``,
``iterations``, ...) is refused with one line naming the folder, both hashes and the fields that differ, unless
``--restart true``, which discards it.

Imports: hashlib, json, numpy, :mod:`simpo_bio.fileio` and the bandit's ``config`` and ``experiment``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from simpo_bio.bandit.config import BanditConfig, SchemeSpec
from simpo_bio.bandit.experiment import BanditRun
from simpo_bio.checkpointing import ResumeMismatchError, identity_hash
from simpo_bio.fileio import atomic_path, atomic_write

__all__ = ["RESUME_FREE_FIELDS", "ResumeMismatchError", "RunStore", "config_hash", "config_identity"]

#: Fields of :class:`BanditConfig` that do not change any single run's result (which runs exist, where and how
#: fast they go): a saved folder whose config differs only in these is reused.
RESUME_FREE_FIELDS = ("schemes", "seeds", "seed_offset", "out_dir", "threads", "progress", "restart")
_ARRAYS = ("iteration", "regret", "global_mass", "mean", "std", "temperature", "negative_mass", "density")


def config_identity(cfg: BanditConfig) -> dict[str, Any]:
    """The fields of ``cfg`` that decide every run's result (all but :data:`RESUME_FREE_FIELDS`), JSON-ready."""
    return {k: v for k, v in asdict(cfg).items() if k not in RESUME_FREE_FIELDS}


def config_hash(identity: dict[str, Any]) -> str:
    """Short SHA-256 (12 hex digits) of a :func:`config_identity` (:func:`simpo_bio.checkpointing.identity_hash`)."""
    return identity_hash(identity)


class RunStore:
    """The folder of saved (scheme, seed) runs of one experiment (see the module docstring).

    Args:
        cfg: the experiment's config.
        folder: default ``<cfg.out_dir>/bandit_<reward>_runs``.

    Raises:
        ResumeMismatchError: the folder holds runs of another config and ``cfg.restart`` is false.
    """

    def __init__(self, cfg: BanditConfig, folder: str | Path | None = None):
        self.folder = Path(folder or Path(cfg.out_dir) / f"bandit_{cfg.reward}_runs")
        self.identity = config_identity(cfg)
        self.hash = config_hash(self.identity)
        self._prepared = False
        self.restart = bool(getattr(cfg, "restart", False))
        self.check()

    def check(self) -> None:
        """Refuse a folder of another config (or, with ``restart``, forget it); nothing is written here."""
        meta = self.folder / "config.json"
        if not meta.exists():
            return
        try:
            saved = json.loads(meta.read_text())["identity"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            saved = {"<unreadable config.json>": str(err)}
        if saved == json.loads(json.dumps(self.identity, default=repr)) or self.restart:
            return
        diffs = [f"{k}: {saved.get(k)!r} (saved) vs {self.identity.get(k)!r} (this run)"
                 for k in sorted(saved.keys() | self.identity.keys()) if saved.get(k) != self.identity.get(k)]  # fmt: skip
        more = f" and {len(diffs) - 4} more" if len(diffs) > 4 else ""
        raise ResumeMismatchError(
            f"refusing to reuse the runs saved in {self.folder}: they were computed with another config (hash "
            f"{config_hash(saved)}) than this run (hash {self.hash}): {'; '.join(diffs[:4])}{more}; pass --restart "
            "true to discard them, or another --out_dir"
        )

    def _prepare(self) -> None:
        if self._prepared:
            return
        self._prepared = True
        meta = self.folder / "config.json"
        if self.restart and self.folder.exists():
            for path in self.folder.glob("seed*.npz"):
                path.unlink()
        if self.restart or not meta.exists():
            with atomic_write(meta) as fh:
                json.dump({"hash": self.hash, "identity": self.identity}, fh, indent=1, sort_keys=True, default=repr)
        self.restart = False  # discard once, not every run of this experiment

    def path(self, spec: SchemeSpec, seed: int) -> Path:
        """``seed<seed>_<label>_<8 hex of the spec>.npz`` (the label made file-safe, the hash keeps names unique)."""
        key = json.dumps([spec.scheme, spec.scheme_params, spec.label], sort_keys=True)
        safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(spec.label))[:60]
        return self.folder / f"seed{seed}_{safe}_{hashlib.sha256(key.encode()).hexdigest()[:8]}.npz"

    def load(self, spec: SchemeSpec, seed: int) -> BanditRun | None:
        """The saved run of ``(spec, seed)``, or None (not saved yet, or an unreadable file: computed again)."""
        self._prepare()
        path = self.path(spec, seed)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                if str(data["config_hash"]) != self.hash:
                    return None
                arrays = {k: data[k] for k in _ARRAYS}
                return BanditRun(scheme=str(data["scheme"]), seed=int(data["seed"]), **arrays,
                                 escape_regret=float(data["escape_regret"]))  # fmt: skip
        except (OSError, KeyError, ValueError) as err:
            print(f"simpo-bio bandit: {path} unreadable ({err}); computing that run again", file=sys.stderr)
            return None

    def save(self, run: BanditRun, spec: SchemeSpec, seed: int) -> Path:
        """Write ``run`` atomically (a kill leaves either no file or a complete one)."""
        self._prepare()
        path = self.path(spec, seed)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, scheme=run.scheme, seed=run.seed, escape_regret=run.escape_regret, config_hash=self.hash,
                     **{k: getattr(run, k) for k in _ARRAYS})  # fmt: skip
        return path
