"""The ``simpo-bio`` command line: a dispatcher, nothing more.

Lightning subcommands (``fit``, ``validate``, ``test``, ``predict``) go to :func:`simpo_bio.lightning_cli.lightning_cli`
(LightningCLI in subclass mode), so any config in ``configs/`` names its own ``model`` and ``data`` classes::

    simpo-bio fit --config configs/dna/pretrain.yaml

The other subcommands are imported lazily from the module that owns them, so ``simpo-bio bandit`` never imports
Lightning's trainer and ``simpo-bio control`` is the only one that needs the ``[control]`` extra. This module may
import only the standard library at the top; no module of ``simpo_bio`` imports it.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")

# subcommand -> (module, function taking argv list, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "data": ("simpo_bio.dna.cli", "data_main", "fetch / inspect the embedded DHS data (`simpo-bio data fetch dhs`)"),
    "sample": ("simpo_bio.dna.cli", "sample_main", "sample sequences from a checkpoint to FASTA"),
    "evaluate": ("simpo_bio.dna.cli", "evaluate_main", "DRAKES-style metrics for a FASTA or a checkpoint"),
    "export": ("simpo_bio.dna.cli", "export_main", "export the top-k designs of a run to FASTA"),
    "export-hf": ("simpo_bio.dna.design.hf_export", "export_hf_main",
                  "a checkpoint as a Hugging Face directory (from_pretrained; extra: [hf])"),
    "demo": ("simpo_bio.dna.cli", "demo_main", "the main job end to end (what `make demo` runs)"),
    "bandit": ("simpo_bio.bandit", "cli_main", "the paper's 1-D bandit experiments"),
    "control": ("simpo_bio.control.train", "cli_main", "SiMPO actor-critic on MuJoCo / DMC (extra: [control])"),
}


def _usage() -> str:
    lines = ["usage: simpo-bio <command> [options]", "", "Lightning commands (LightningCLI, --config YAML):"]
    lines += [f"  {c:<10} see `simpo-bio {c} --help`" for c in LIGHTNING_SUBCOMMANDS]
    lines += ["", "Other commands:"]
    lines += [f"  {c:<10} {h}" for c, (_, _, h) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def _fasta_argument(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a == "--fasta" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--fasta="):
            return a.split("=", 1)[1]
    return None


def _symlink_loop(path: str) -> bool:
    """``path`` (or a folder on the way to it) is a symbolic link that leads back to itself (``ELOOP``)."""
    try:
        os.stat(path)
    except OSError as err:
        return err.errno == errno.ELOOP
    return False


def precheck_fasta(cmd: str, args: list[str]) -> None:
    """Refuse a ``--fasta`` that is no FASTA text before anything heavy is imported (one line, exit status 2).

    Catches what a glance can: a missing path, a symlink loop, a directory, binary content (NUL bytes in the first
    64 KiB of a file that is not gzip). Everything else is checked by
    :func:`simpo_bio.dna.data.tables.read_fasta` (same messages).
    """
    path = _fasta_argument(args)
    if path is None:
        return
    problem = None
    if _symlink_loop(path):  # os.path.exists says False: it would read "not found"
        problem = f"{path}: symlink loop (a symbolic link that leads back to itself), not a FASTA file"
    elif not os.path.exists(path):
        problem = f"FASTA file not found: {path}"
    elif os.path.isdir(path):
        problem = f"{path}: is a directory, not a FASTA file"
    else:
        try:
            with open(path, "rb") as fh:
                head = fh.read(1 << 16)
        except OSError as err:
            problem = f"{path}: cannot be read ({err.strerror})"
        else:
            if not head.startswith(b"\x1f\x8b") and b"\x00" in head:
                problem = f"{path}: binary content (NUL bytes), not a FASTA text file"
    if problem:
        print(f"simpo-bio {cmd}: error: {problem}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``simpo-bio`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return
    cmd, rest = argv[0], argv[1:]
    if cmd in LIGHTNING_SUBCOMMANDS:
        from simpo_bio.lightning_cli import lightning_cli  # imports Lightning: only for these commands

        lightning_cli([cmd, *rest])
        return
    if cmd not in SUBCOMMANDS:
        print(f"simpo-bio: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    module, func, _ = SUBCOMMANDS[cmd]
    if cmd == "evaluate":
        precheck_fasta(cmd, rest)  # before torch / Lightning are imported (seconds): a bad file fails at once
    try:
        mod = importlib.import_module(module)
    except ImportError as err:  # e.g. the [control] extra is missing
        print(f"simpo-bio {cmd}: cannot import {module}: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    getattr(mod, func)(rest)


if __name__ == "__main__":
    main()
