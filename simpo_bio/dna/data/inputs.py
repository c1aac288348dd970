"""Checks of what a user hands the DNA commands, run before any model is loaded: one line, naming the culprit.

* :func:`check_sizes` -- integer options that must be >= 1 (``--num-samples``, ``--num-steps``, ...);
* :func:`check_out` -- an output path that is a directory;
* :func:`read_config` -- a YAML config that is missing, unreadable or not a mapping;
* :func:`check_model_config` -- the fine-tuning model's arguments of composed configs plus ``--model.init_args.X``
  overrides (unknown scheme or bad scheme parameters, sizes below their minimum, a temperature of 0 ...), naming the
  file (or option) that set the bad value.

All raise :class:`InputError` (a ``ValueError``), which the commands report as ``simpo-bio <cmd>: error: ...`` with
exit status 2 (:mod:`simpo_bio.dna.cli`).

Imports: yaml and :mod:`simpo_bio.weighting` (inside :func:`check_model_config`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["InputError", "check_model_config", "check_out", "check_sizes", "read_config"]


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


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_number(v: Any, *, strict: bool) -> bool:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return ok and (v > 0 if strict else v >= 0)


#: Fine-tuning model arguments checked: name -> (test, what it must be).
MODEL_CHECKS: dict[str, tuple[Any, str]] = {
    "group_size": (lambda v: _is_int(v, 2), "an integer >= 2"),
    **{k: (lambda v: _is_int(v, 1), "an integer >= 1") for k in ("num_groups", "seq_len", "num_steps", "update_epochs")},
    "minibatch_size": (lambda v: v is None or _is_int(v, 1), "null or an integer >= 1"),
    **{k: (lambda v: _is_number(v, strict=True), "a finite number > 0")
       for k in ("temperature", "lr", "target_kl", "temperature_lr")},
    **{k: (lambda v: _is_number(v, strict=False), "a finite number >= 0")
       for k in ("kl_coef", "grad_clip", "weight_decay")},
}  # fmt: skip


def check_model_config(configs: Sequence[str | Path], overrides: Sequence[str] = ()) -> None:
    """The ``model.init_args`` of ``configs`` (composed in order) and ``--model.init_args.X=V`` overrides.

    Raises:
        InputError: ``<file or option>: model.init_args.<name> must be <what>, got <value>``, or an unknown scheme /
            bad scheme parameters (the message of :func:`simpo_bio.weighting.get_scheme`).
    """
    from simpo_bio.weighting import get_scheme

    values: dict[str, tuple[Any, str]] = {}
    for c in configs:
        init = ((read_config(c).get("model") or {}).get("init_args")) or {}
        values.update({k: (v, f"config {c}") for k, v in init.items()})
    args = list(overrides)
    for i, arg in enumerate(args):
        if arg.startswith("--model.init_args."):
            key, sep, raw = arg[len("--model.init_args.") :].partition("=")
            if not sep and i + 1 < len(args):
                raw = args[i + 1]
            try:
                value = yaml.safe_load(raw) if raw else None
            except yaml.YAMLError:
                value = raw
            values[key] = (value, f"option --model.init_args.{key}")
    for key, (test, what) in MODEL_CHECKS.items():
        if key in values and not test(values[key][0]):
            value, source = values[key]
            raise InputError(f"{source}: model.init_args.{key} must be {what}, got {value!r}")
    if "scheme" in values:
        params = values.get("scheme_params", (None, ""))[0] or {}
        try:
            get_scheme(values["scheme"][0], **(params if isinstance(params, dict) else {}))
        except (TypeError, ValueError) as err:
            raise InputError(f"{values['scheme'][1]}: model.init_args.scheme: {err}") from None
