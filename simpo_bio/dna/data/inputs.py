"""Checks of what a user hands the DNA commands, run before any model is loaded: one line, naming the culprit.

* :func:`check_sizes` -- integer options that must be >= 1 (``--num-samples``, ``--num-steps``, ...);
* :func:`check_out` -- an output path that is a directory;
* :func:`read_config` -- a YAML config that is missing, unreadable or not a mapping;

All raise :class:`InputError` (a ``ValueError``), which the commands report as ``simpo-bio <cmd>: error: ...`` with
exit status 2 (:mod:`simpo_bio.dna.cli`).

Imports: yaml.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

__all__ = ["InputError", "check_out", "check_sizes", "read_config"]


class InputError(ValueError):
    """A bad option, file or config value (reported as one line, exit status 2)."""


def check_sizes(a: argparse.Namespace, *names: str) -> None:
    """Integer options of ``a`` that must be >= 1 when given (``None`` = the default).

    Raises:
        InputError: ``--<name> must be >= 1, got <value>``.
    """
    for name in names:
        value = getattr(a, name, None)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def check_out(path: str | Path | None, flag: str) -> None:
    """An output path that can be written as a file (its folder is created when written).

    Raises:
        InputError: ``path`` is an existing directory.
    """
    if path and Path(path).is_dir():
        raise InputError(f"{flag} {path} is a directory; give a file name")


def read_config(path: str | Path) -> dict[str, Any]:
    """A YAML config as a dict.

    Raises:
        InputError: missing file, invalid YAML or UTF-8, or not a mapping at the top level (naming the file).
    """
    if not Path(path).is_file():
        raise InputError(f"config {path} not found (run the demo from the repository root)")
    try:
        cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise InputError(f"config {path}: not valid YAML ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(cfg, dict):
        raise InputError(f"config {path}: expected a mapping at the top level, got {type(cfg).__name__}")
    return cfg
