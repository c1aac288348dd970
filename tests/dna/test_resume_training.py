"""Pretraining and oracle training resume mid-epoch from ``last.ckpt`` (every N steps) to the uninterrupted result.

The crash here is an exception inside the fit (the SIGKILL tests of tests/dna/test_resume.py cover a real kill);
what is checked is that the checkpoint holds everything the rest of the fit depends on: weights, optimiser and LR
schedule, EMA, global random states (dropout, diffusion noise) and the position in the epoch's data order.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch

from simpo_bio.dna.data.datamodules import CellTypeDataModule, EpochSeededSampler, SequenceDataModule
from simpo_bio.dna.models.checkpoints import ResumableCheckpoint
from simpo_bio.dna.models.pretrain import MaskedDiffusionLM
from simpo_bio.dna.oracles.training import CellTypeClassifier

L = 16


class _Crash(pl.Callback):
    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise RuntimeError("killed")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = [{"seq": "".join(rng.choice(list("ACGT"), size=L)), "cell": f"c{i % 4}"} for i in range(80)]
    path = tmp_path_factory.mktemp("data") / "cells.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _pretrain(table):
    model = MaskedDiffusionLM(hidden_dim=8, num_stacks=1, dilations=[1, 2], kernel_size=3, dropout=0.1, lr=3e-3,
                              warmup_steps=2, ema_decay=0.9, num_eval_samples=0)  # fmt: skip
    data = SequenceDataModule(source=str(table), batch_size=8, seed=3, loader_kwargs={"class_column": "cell"})
    return model, data


def _oracle(table):
    model = CellTypeClassifier(channels=8, first_kernel=5, kernel=3, num_blocks=1, pool=2, seq_len=L, baseline_k=2,
                               baseline_c_grid=[1.0], cell_types=["c0", "c1", "c2", "c3"], target_index=3, lr=1e-2)
    data = CellTypeDataModule(source=str(table), batch_size=8, seed=3, seq_len=L,
                              loader_kwargs={"class_column": "cell"})  # fmt: skip
    return model, data


def _fit(build, table, root, crash_at=None):
    pl.seed_everything(0, verbose=False)
    model, data = build(table)
    callbacks = [ResumableCheckpoint(dirpath=str(root / "ck"), every_n_train_steps=3)]
    if crash_at is not None:
        callbacks.append(_Crash(crash_at))
    trainer = pl.Trainer(max_steps=20, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                         default_root_dir=root, callbacks=callbacks)  # fmt: skip
    trainer.fit(model, data, ckpt_path="last")
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("build", [_pretrain, _oracle], ids=["pretrain", "oracle"])
def test_mid_epoch_resume_matches_the_uninterrupted_fit(build, table, tmp_path):
    torch.set_num_threads(1)
    whole = _fit(build, table, tmp_path / "whole")
    with pytest.raises(RuntimeError, match="killed"):
        _fit(build, table, tmp_path / "cut", crash_at=11)  # 8 batches an epoch: step 11 is mid epoch 2
    last = torch.load(tmp_path / "cut" / "ck" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 9 and last["simpo_data_position"] == {"epoch": 1, "batches": 1}
    resumed = _fit(build, table, tmp_path / "cut")
    assert resumed.keys() == whole.keys()
    for name, value in whole.items():
        assert torch.equal(resumed[name], value), name


def test_epoch_seeded_sampler_order_depends_on_seed_and_epoch_only():
    a, b = EpochSeededSampler(10, seed=1), EpochSeededSampler(10, seed=1)
    first = list(a)
    assert sorted(first) == list(range(10)) and list(b) == first == list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    b.resume_at(1, 4)
    assert list(b) == list(a)[4:] and list(b) == list(a)  # the skip applies to one pass only
