"""How ``simpo-bio demo`` composes its LightningCLI run: the configs plus a generated file pointing outputs at ``--out``.

Imports: :mod:`simpo_bio.dna.inputs` and :mod:`simpo_bio.dna.designs` (the command itself is :func:`simpo_bio.dna.cli.demo_main`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from simpo_bio.dna.designs import DEFAULT_EVAL_ORACLE, write_text
from simpo_bio.dna.inputs import InputError, read_config

DEMO_CONFIGS = ("configs/dna/simpo_base.yaml", "configs/dna/simpo_square_neg.yaml", "configs/dna/demo.yaml")
DEFAULT_PRETRAINED = "checkpoints/dna/pretrained_dhs.ckpt"
DEFAULT_ORACLE = "checkpoints/dna/oracle_ft.ckpt"


def demo_args(configs: Sequence[str], out: Path, a: argparse.Namespace, *, seed: int | None = None,
              pool_with: Sequence[str | Path] = (), export: bool = True) -> list[str]:
    """LightningCLI arguments of one demo run: the configs plus a generated file that points every output at ``out``.

    ``seed`` (``None``: the configs') sets both the global seed and the module's generator; ``pool_with`` lists
    the checkpoints of the other runs whose samples the export pools (``--runs``); ``export=False`` writes no
    designs (a run that only contributes to another run's pool).
    """
    args = ["fit"]
    for c in configs:
        if not Path(c).exists():
            raise InputError(f"config {c} not found (run the demo from the repository root)")
        args += ["--config", c]
    callbacks = [{"class_path": "simpo_bio.dna.checkpoints.ResumableCheckpoint",  # last.ckpt after every iteration
                  "init_args": {"dirpath": str(out / "checkpoints"), "every_n_epochs": 1}}]
    if export:
        settings = export_with_samples(export_overrides(configs), a.num_samples)
        if pool_with:
            settings["pool_with"] = [str(p) for p in pool_with]
        callbacks.append({"class_path": "simpo_bio.dna.designs.ExportDesigns",
                          "init_args": {"out_dir": str(out), **settings}})
    run_cfg: dict[str, Any] = {"trainer": {
        "default_root_dir": str(out),
        "logger": [
            {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(out), "name": "logs"}},
            {"class_path": "lightning.pytorch.loggers.WandbLogger",
             "init_args": {"save_dir": str(out), "project": "simpo-bio", "offline": True}},
        ],
        "callbacks": callbacks,
    }}
    if a.iterations is not None:
        run_cfg["trainer"]["max_epochs"] = a.iterations
    if seed is not None:
        run_cfg["seed_everything"] = seed
        run_cfg["model"] = {"init_args": {"seed": seed}}
    path = write_text(yaml.safe_dump(run_cfg, sort_keys=False), out / "run_config.yaml")
    return args + ["--config", str(path)]


def run_seeds(configs: Sequence[str], seed: int | None, runs: int) -> list[int]:
    """The seeds of the demo's ``runs`` fits: ``seed`` (default: the configs' ``seed_everything``, else 0) and
    the next ``runs - 1`` integers. The first run writes the designs; the others only add their samples."""
    if seed is None:
        seed = 0
        for c in configs:
            seed = int(read_config(c).get("seed_everything", seed) or 0)
    return [seed + k for k in range(runs)]


def export_with_samples(export: dict[str, Any], num_samples: int | None) -> dict[str, Any]:
    """``--num-samples`` applied to the export settings; a configured selection keeps its candidates-per-design."""
    if num_samples and export.get("select_from"):
        ratio = int(export["select_from"]) / int(export.get("num_samples", 640))
        export = {**export, "select_from": max(num_samples, round(num_samples * ratio))}
    return {**export, "num_samples": num_samples} if num_samples else export


def export_overrides(configs: Sequence[str]) -> dict[str, Any]:
    """The ExportDesigns settings of the given configs (so the generated run config keeps them)."""
    found: dict[str, Any] = {}
    for c in configs:
        cfg = read_config(c)
        for cb in (cfg.get("trainer") or {}).get("callbacks") or []:
            if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("ExportDesigns"):
                found.update({k: v for k, v in (cb.get("init_args") or {}).items() if k != "out_dir"})
    return found


def model_paths(configs: Sequence[str]) -> dict[str, str]:
    """``pretrained`` / ``oracle`` / ``eval_oracle`` paths the composed configs use (later files win)."""
    paths = {"pretrained": DEFAULT_PRETRAINED, "oracle": DEFAULT_ORACLE, "eval_oracle": DEFAULT_EVAL_ORACLE}
    for c in configs:
        cfg = read_config(c)
        init = ((cfg.get("model") or {}).get("init_args")) or {}
        paths.update({k: str(init[k]) for k in ("pretrained", "oracle") if init.get(k)})
    export = export_overrides(configs)
    if export.get("eval_oracle"):
        paths["eval_oracle"] = str(export["eval_oracle"])
    return paths


# -------------------------------------------------------------------------------------------------------- data
