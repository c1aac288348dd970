"""Tiny checkpoints and runs for the DNA command / designs / notebook tests (seconds, no training, no DHS download)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch

from simpo_bio.dna.models.checkpoints import record_model_kind

SEQ_LEN = 20


def tiny_pretrained_ckpt(path: Path, seed: int = 0) -> Path:
    from simpo_bio.dna.models.pretrain import MaskedDiffusionLM, export_state

    torch.manual_seed(seed)
    m = MaskedDiffusionLM(hidden_dim=8, num_stacks=1, dilations=[1, 2], kernel_size=3, num_eval_samples=0)
    m.ema.load_state_dict(m.model.state_dict())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(export_state(m), path)
    return path


def tiny_oracle_ckpt(path: Path, seed: int = 0) -> Path:
    from simpo_bio.dna.oracles.training import CellTypeClassifier

    torch.manual_seed(seed)
    m = CellTypeClassifier(channels=8, first_kernel=5, kernel=3, num_blocks=1, pool=2, seq_len=SEQ_LEN)
    ckpt = {"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}
    record_model_kind(ckpt, "CellTypeClassifier")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def tiny_real_sets(n_train: int = 60, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    train = torch.randint(0, 4, (n_train, SEQ_LEN), generator=g)
    return {"train": train, "hepg2_top": train[:10], "hepg2_test": train[10:30]}


def tiny_checkpoints(root: Path) -> dict[str, Path]:
    return {
        "pretrained": tiny_pretrained_ckpt(root / "pretrained.ckpt"),
        "oracle": tiny_oracle_ckpt(root / "oracle_ft.ckpt", seed=1),
        "eval_oracle": tiny_oracle_ckpt(root / "oracle_eval.ckpt", seed=2),
    }


def tiny_run(root: Path, ckpts: dict[str, Path], iterations: int = 2, num_samples: int = 24,
             scheme: str = "square_neg", **export_kwargs) -> Path:
    """Fit SiMPO for a few iterations on the tiny checkpoints; outputs (FASTA, tables, plots) under ``root``.

    The caller must make :func:`simpo_bio.dna.design.designs.real_sets` return :func:`tiny_real_sets` (monkeypatch).
    """
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from simpo_bio.dna.design.designs import ExportDesigns
    from simpo_bio.dna.finetune.module import PolicyIterationDataModule

    module = finetuning(pretrained=str(ckpts["pretrained"]), oracle=str(ckpts["oracle"]), scheme=scheme,
                             group_size=8, num_groups=1, seq_len=SEQ_LEN, num_steps=4, update_epochs=1,
                             lr=1e-3)
    names = {"select_from": "candidates", "select_weight": "weight", "select_target": "target",
             "select_motif_ratio": "motif_ratio"}
    selection = {names[k]: export_kwargs.pop(k) for k in list(export_kwargs) if k in names}
    export = ExportDesigns(num_samples=num_samples, eval_oracle=str(ckpts["eval_oracle"]), out_dir=str(root),
                           jaspar=False, selection=selection or None, **export_kwargs)
    trainer = pl.Trainer(max_epochs=iterations, accelerator="cpu", devices=1, default_root_dir=root,
                         logger=CSVLogger(root, name="logs"), enable_progress_bar=False,
                         enable_model_summary=False,
                         callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, save_top_k=0),
                                    export])
    trainer.fit(module, PolicyIterationDataModule())
    return root


#: The leash settings the unit tests were written against (the module's own defaults are the shipped ones:
#: simpo_bio/dna/finetune/config.py); a test that wants the shipped leash passes them explicitly.
UNLEASHED = {"kl_coef": 0.0, "kl_penalty": 0.0, "constraints": None, "repel_margin": None, "minibatch_size": None}


def finetuning(cls=None, **kw):
    """``SiMPOFineTuning`` (or its subclass ``cls``) from flat keyword arguments, each put into its config group
    by name (tests only), with :data:`UNLEASHED` under the given values."""
    from dataclasses import fields

    from simpo_bio.dna.finetune import (
        RewardConfig,
        SamplingConfig,
        SiMPOFineTuning,
        UpdateConfig,
        WeightingConfig,
    )

    groups = {"sampling": SamplingConfig, "reward": RewardConfig, "weighting": WeightingConfig, "update": UpdateConfig}
    kw = {**UNLEASHED, **kw}
    args: dict = {name: {} for name in groups}
    for key, value in kw.items():
        owner = [g for g, cls in groups.items() if key in {f.name for f in fields(cls)}]
        if owner:
            args[owner[0]][key] = value
        else:
            args[key] = value
    return (cls or SiMPOFineTuning)(**{k: (groups[k](**v) if k in groups else v) for k, v in args.items()})
