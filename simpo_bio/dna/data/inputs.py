"""Checks of what a user hands the DNA commands, run before any model is loaded: one line, naming the culprit.

* :func:`check_sizes` -- integer options that must be >= 1 (``--num-samples``, ``--num-steps``, ...);
* :func:`check_out` -- an output path that is a directory;

All raise :class:`InputError` (a ``ValueError``), which the commands report as ``simpo-bio <cmd>: error: ...`` with
exit status 2 (:mod:`simpo_bio.dna.cli`).

Imports: yaml.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["InputError", "check_out", "check_sizes"]


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
