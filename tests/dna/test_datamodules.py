"""Tests of the LightningDataModules (simpo_bio.dna.data.datamodules) on the small fake DHS set of conftest.py."""

import torch
from fake_data import random_seqs

from simpo_bio.dna.data import datamodules, dhs
from simpo_bio.dna.data import tables as data


def test_datamodules(fake_dhs):
    common = {"source": "dhs", "cache_dir": str(fake_dhs["cache"]), "batch_size": 8, "eval_batch_size": 5}
    dhs.fetch_dhs(cache_dir=fake_dhs["cache"])
    seq = datamodules.SequenceDataModule(**common)
    seq.setup("fit")
    batch = next(iter(seq.train_dataloader()))
    assert batch.shape == (8, 200) and batch.dtype == torch.long
    assert sum(len(b) for b in seq.val_dataloader()) == 12
    only = datamodules.SequenceDataModule(**common, cell_types=["HepG2"])
    only.setup()
    assert len(only.dataset("train")) == 12
    halves = [datamodules.CellTypeDataModule(**common, train_half=h, half_seed=1) for h in (0, 1)]
    rows = []
    for dm in halves:
        dm.setup("fit")
        b = next(iter(dm.train_dataloader()))
        assert b["tokens"].shape == (8, 200) and b["label"].dtype == torch.long
        assert dm.num_classes == 4 and dm.label_names[dhs.HEPG2_INDEX] == "HepG2"
        rows.append({bytes(t.numpy()) for t in dm.dataset("train").tokens})
        assert len(dm.dataset("train")) == 24 and len(dm.dataset("test")) == 12
    assert not rows[0] & rows[1]
    capped = datamodules.CellTypeDataModule(**common, max_train_samples=10)
    assert len(capped.dataset("train")) == 10 and len(set(capped.dataset("train").labels.tolist())) > 1


def test_load_sequences_dispatches_on_the_source(fake_dhs, tmp_path):
    dhs.fetch_dhs(cache_dir=fake_dhs["cache"])
    assert len(datamodules.load_sequences("dhs", cache_dir=fake_dhs["cache"])["train"]) == 48
    fasta = tmp_path / "x.fasta"
    fasta.write_text("".join(f">r{i}\n{s}\n" for i, s in enumerate(random_seqs(10, 8))))
    assert sum(len(d) for d in datamodules.load_sequences(fasta, seed=0).values()) == 10
    assert datamodules.load_sequences(fasta, seed=1)["test"]["name"] == data.load_fasta(fasta, seed=1)["test"]["name"]
    table = tmp_path / "t.csv"
    table.write_text("seq,act\n" + "".join(f"{s},{i}\n" for i, s in enumerate(random_seqs(10, 8))))
    assert "targets" in datamodules.load_sequences(table)["train"].column_names

