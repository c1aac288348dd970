"""LightningCLI in subclass mode: ``simpo-bio fit | validate | test | predict --config FILE.yaml``.

Every config names its own ``model`` and ``data`` classes by class path, so one entry point runs them all. Used by
the ``simpo-bio`` dispatcher (:mod:`simpo_bio.cli`) and by the DNA commands (:mod:`simpo_bio.dna.cli`, which train
missing models and run the demo fit); it sits apart from both so that no domain module imports the dispatcher.

With ``--ckpt_path``, LightningCLI rebuilds the model from the class path and hyper-parameters recorded in the
checkpoint (a checkpoint of an earlier layout fails with one line saying what changed).

One run root: ``--trainer.default_root_dir`` decides where everything of a fit goes. A logger without a
``save_dir``, a checkpoint callback without a ``dirpath`` (``<root>/checkpoints``) and a callback with an
``out_dir`` of ``null`` are pointed at it before anything is built (:func:`apply_run_root`).

Checkpoints are read with torch's safe loader only (``weights_only=True``): the recorded hyper-parameters through
:func:`simpo_bio.dna.models.checkpoints.load_checkpoint`, the trainer's restore with ``weights_only=True``. A file that
holds Python objects is refused with one line (exit status 2).

Imports: Lightning, :mod:`simpo_bio.fileio`, :mod:`simpo_bio.runlock` (the checkpoint loader when a ``--ckpt_path``
is given).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from simpo_bio.fileio import DiskFullError, atomic_path
from simpo_bio.runlock import run_lock


class AtomicSaveConfigCallback(SaveConfigCallback):
    """Lightning's ``config.yaml`` writer, through a temporary file that replaces the old one only when complete
    (a full disk or a kill leaves the previous ``config.yaml``, never a 0-byte one; :func:`simpo_bio.fileio.atomic_path`).
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        save = self.parser.save

        def atomic_save(cfg, path, **kwargs):
            if not str(path).startswith(("s3:", "gs:", "http")):  # local files only; remote stores as before
                with atomic_path(path) as tmp:
                    return save(cfg, str(tmp), **{**kwargs, "overwrite": True})
            return save(cfg, path, **kwargs)

        self.parser.save = atomic_save
        try:
            super().setup(trainer, pl_module, stage)
        finally:
            self.parser.save = save


#: The run-folder locks of the fit in progress; :func:`lightning_cli` releases them when the fit returns or fails.
_RUN_LOCKS = contextlib.ExitStack()


class SimpoLightningCLI(LightningCLI):
    """:class:`LightningCLI` with one run root, one writer per run folder, one-line errors and the safe loader."""

    def _parse_ckpt_path(self) -> None:
        # Lightning's own method (2.4-2.6) with one change: the checkpoint is read with torch's safe loader.
        if not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if not (ckpt_path and Path(ckpt_path).is_file()):
            return
        from simpo_bio.dna.models.checkpoints import load_checkpoint

        ckpt = load_checkpoint(ckpt_path, map_location="cpu")  # the safe loader: Python objects are refused
        hparams = dict(ckpt.get("hyper_parameters", {}))
        hparams.pop("_instantiator", None)
        if not hparams or "_class_path" not in hparams:  # our fine-tuning module records none: the config names it
            return
        if "_class_path" in hparams:
            module, _, name = str(hparams["_class_path"]).rpartition(".")
            try:
                getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError, ValueError):
                raise ValueError(f"{ckpt_path}: written by an earlier layout of simpo-bio (its class "
                                 f"{hparams['_class_path']} no longer exists; since 0.2 the DNA modules live in "
                                 "simpo_bio.dna.<data|models|oracles|finetune|evaluation|design>): refit it") from None
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({self.config.subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def init_parser(self, **kwargs):
        # a bad config key or value: one line naming the option and the config file it is in, not a usage dump
        parser = super().init_parser(**kwargs)
        parser.error = _one_line_error
        return parser

    def before_instantiate_classes(self) -> None:
        sub = self.config.get("subcommand")
        if sub:
            apply_run_root(self.config[sub])

    def instantiate_classes(self) -> None:
        # one writer per run folder, taken before any model, oracle or data loads (simpo_bio/runlock.py)
        if self.config.get("subcommand") == "fit":
            _RUN_LOCKS.enter_context(run_lock(run_folders(self.config["fit"]), what="fit"))
        super().instantiate_classes()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        # the trainer reads --ckpt_path (or `ckpt_path: last`) with torch's safe loader only, whatever the config says
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "weights_only" in self._subcommand_method_arguments.get(subcommand, ()):
            kwargs["weights_only"] = True
        return kwargs


#: Errors a user causes with a config value or a file (a temperature of 0, a truncated ``--ckpt_path``, a missing
#: checkpoint): reported as one line with exit status 2. ``SIMPO_DEBUG=1`` shows the traceback instead.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, IsADirectoryError, EOFError, pickle.UnpicklingError,
               RuntimeError, DiskFullError)


#: The command line of the LightningCLI call in progress (the config files a parse error is looked for in).
_ARGV: list[str] = []


def _config_files(argv: list[str]) -> list[Path]:
    files = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--config", "-c")]
    files += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    return [Path(f) for f in files if Path(f).is_file()]


def parse_error_line(message: str, argv: list[str]) -> str:
    """The one line a parse error becomes: its most specific sentence, the parser key it is under, and the config
    files (of ``--config`` in ``argv``) that set the offending option."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    specific = [ln for ln in lines if re.search(
        r"not accepted|not expected|unrecognized arguments|No action|does not exist|invalid", ln, re.IGNORECASE)]
    core = (specific or lines or ["invalid arguments"])[-1 if specific else 0]
    where = re.search(r'Parser key "([^"]+)"', str(message))
    option = re.search(r"'([^'\s]+)'", core) or re.search(r'"([^"\s]+)"', core)
    name = option.group(1).split(".")[-1] if option else None
    files = [str(f) for f in _config_files(argv) if name and re.search(
        rf"^\s*{re.escape(name)}\s*:", f.read_text(errors="replace"), re.MULTILINE)]
    if not files and "parsing config" in str(message).lower():  # invalid YAML: name the file that is
        import yaml

        for f in _config_files(argv):
            try:
                yaml.safe_load(f.read_text(errors="replace"))
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where_in = f" at line {mark.line + 1}" if mark is not None else ""
                return f"config {f}: not valid YAML{where_in} ({getattr(err, 'problem', None) or 'syntax error'})"
    text = core + (f" (under {where.group(1)})" if where and where.group(1) not in core else "")
    text += f" in {', '.join(files)}" if files else ""
    return text + "; `simpo-bio fit --print_config` lists every option"


def _one_line_error(message: str, *_: object) -> None:
    command = _ARGV[0] if _ARGV else "fit"
    print(f"simpo-bio {command}: error: {parse_error_line(message, _ARGV)}", file=sys.stderr)
    raise SystemExit(2)


def apply_run_root(config) -> Path:
    """Point every logger's unset ``save_dir`` (null or ``.``), and every callback's ``dirpath`` / ``out_dir`` that is null, at
    the run root ``trainer.default_root_dir`` (default ``.``; checkpoints in ``<root>/checkpoints``), in place.

    A folder set explicitly is kept. Returns the root."""
    trainer = config.get("trainer") or {}
    root = Path(trainer.get("default_root_dir") or ".")

    def init_args(key: str) -> list:
        entries = trainer.get(key)
        entries = entries if isinstance(entries, list) else []
        return [e.get("init_args") for e in entries if hasattr(e, "get") and hasattr(e.get("init_args"), "get")]

    for args in init_args("logger"):
        if args.get("save_dir") in (None, "", "."):  # WandbLogger's own default is "."
            args["save_dir"] = str(root)
    for args in init_args("callbacks"):
        for name, folder in (("dirpath", root / "checkpoints"), ("out_dir", root)):
            if name in args and args.get(name) is None:
                args[name] = str(folder)
    return root


def run_folders(config) -> list[Path]:
    """The folders a fit writes into: ``trainer.default_root_dir`` (default ``.``) and every callback's ``dirpath``
    / ``out_dir``."""
    trainer = config.get("trainer") or {}
    folders = [Path(trainer.get("default_root_dir") or ".")]
    for cb in trainer.get("callbacks") or []:
        args = (cb.get("init_args") if hasattr(cb, "get") else None) or {}
        folders += [Path(args[k]) for k in ("dirpath", "out_dir") if hasattr(args, "get") and args.get(k)]
    return folders


class _ParseOnlyCLI(SimpoLightningCLI):
    """Parses and validates a fit's configuration without building anything (:func:`check_fit_args`)."""

    def _set_seed(self) -> None:  # nothing runs: no global seed either
        pass

    def before_instantiate_classes(self) -> None:
        model = self.config["fit"].get("model") or {}
        init = model.get("init_args") if hasattr(model, "get") else None
        build = getattr(_import_class(str(model.get("class_path", ""))), "validate_config", None) if init else None
        if build is not None:
            build(init.as_dict() if hasattr(init, "as_dict") else dict(init))
        raise _ParsedOK

    def instantiate_classes(self) -> None:  # never reached (before_instantiate_classes stops it)
        raise _ParsedOK


class _ParsedOK(Exception):
    pass


def _import_class(path: str):
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def check_fit_args(args: list[str], command: str = "fit") -> None:
    """Parse ``simpo-bio fit`` arguments and validate the model's configuration, building nothing (no model, oracle
    or data is loaded; a second or so): ``simpo-bio demo`` checks its runs' settings before any work.

    Raises:
        SystemExit: status 2 with one line, for an unknown option or file (the parser) or a bad value (the model
            class's ``validate_config``, e.g. :meth:`simpo_bio.dna.finetune.SiMPOFineTuning.validate_config`).
    """
    _ARGV[:] = [command, *args[1:]]
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        _ParseOnlyCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                      save_config_callback=None, args=list(args), run=True)
    except _ParsedOK:
        return
    except (ValueError, TypeError) as err:
        print(f"simpo-bio {command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(2) from None


def lightning_cli(args: list[str] | None = None) -> SimpoLightningCLI:
    """Run LightningCLI in subclass mode on ``args`` (defaults to ``sys.argv[1:]``); returns it (``.model``,
    ``.trainer``: what ``simpo-bio demo`` passes on to the export).

    Raises:
        SystemExit: status 2 with one line ``simpo-bio <command>: error: <Type>: <message>`` on a
            :data:`USER_ERRORS` error (unless ``SIMPO_DEBUG`` is set).
    """
    argv = list(sys.argv[1:] if args is None else args)
    command = argv[0] if argv else "fit"
    _ARGV[:] = argv
    # the `simpo-bio` dispatcher always passes its argv on: Lightning's warning about that is noise here
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        return SimpoLightningCLI(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=AtomicSaveConfigCallback,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except USER_ERRORS as err:
        if os.environ.get("SIMPO_DEBUG"):
            raise
        message = " ".join(str(err).split()) or "(no message)"
        if isinstance(err, pickle.UnpicklingError) and "weights only load failed" in message.lower():
            # the trainer's restore (e.g. `ckpt_path: last`) refused a file: no advice to unpickle it in full
            detail = message.rpartition("WeightsUnpickler error:")[2].strip().split(". ")[0]
            message = f"checkpoint refused: it holds Python objects that simpo-bio does not unpickle ({detail})"
        print(f"simpo-bio {command}: error: {type(err).__name__}: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        _RUN_LOCKS.close()
