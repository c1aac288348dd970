"""Data tests: everything here builds its own small files; no network, no real cache."""

import hashlib
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from simpo_bio.dna import data
from simpo_bio.dna.alphabet import SequenceValidationError, decode

RNG = np.random.default_rng(0)


def _random_seqs(n, length=200):
    return ["".join(RNG.choice(list("ACGT"), size=length)) for _ in range(n)]


def _dhs_table(n_per=(12, 3, 3)) -> pd.DataFrame:
    """A small table of the DHS layout: per split, ``n`` rows per cell type."""
    rows = []
    for split, chrom, n in zip(("training", "validation", "test"), ("chr5", "chr2", "chr1"), n_per):
        for tag in data.DHS_TAGS:
            for i, seq in enumerate(_random_seqs(n)):
                rows.append({"dhs_id": f"{chrom}_{tag[:4]}_{i}", "chr": chrom, "start": 100 * i, "end": 100 * i + 200,
                             "numsamples": 2, "total_signal": 1.5, "sequence": seq.lower() if i == 0 else seq,
                             "TAG": tag, "data_label": split})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture
def fake_dhs(tmp_path, monkeypatch):
    """A wheel holding a small DHS-layout table, with the expected sums patched to its own."""
    tsv = tmp_path / "src" / data.DHS_TSV_FILENAME
    tsv.parent.mkdir()
    _dhs_table().to_csv(tsv, sep="\t", index=False)
    wheel = tmp_path / "src" / data.DHS_WHEEL_FILENAME
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(tsv, data.DHS_WHEEL_MEMBER)
        zf.writestr("dnadiffusion/__init__.py", "")
    monkeypatch.setattr(data, "DHS_TSV_SHA256", hashlib.sha256(tsv.read_bytes()).hexdigest())
    monkeypatch.setattr(data, "DHS_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    calls = []

    def fake_pip_download(requirement, dest):
        calls.append(requirement)
        dest.mkdir(parents=True, exist_ok=True)
        return shutil.copy(wheel, dest / data.DHS_WHEEL_FILENAME) and dest / data.DHS_WHEEL_FILENAME

    monkeypatch.setattr(data, "_pip_download", fake_pip_download)
    return {"tsv": tsv, "wheel": wheel, "cache": tmp_path / "cache", "calls": calls}


def test_fetch_downloads_verifies_and_caches(fake_dhs):
    path = data.fetch_dhs(cache_dir=fake_dhs["cache"])
    assert fake_dhs["calls"] == [data.DHS_REQUIREMENT]
    assert path.read_bytes() == fake_dhs["tsv"].read_bytes()
    data.fetch_dhs(cache_dir=fake_dhs["cache"])  # cached: no second download
    assert len(fake_dhs["calls"]) == 1


def test_cache_dir_from_environment(fake_dhs, monkeypatch):
    monkeypatch.setenv("SIMPO_BIO_CACHE", str(fake_dhs["cache"] / "env"))
    assert data.default_cache_dir() == fake_dhs["cache"] / "env"
    assert data.fetch_dhs().is_relative_to(fake_dhs["cache"] / "env")


def test_corrupted_wheel_and_tsv_name_file_and_both_sums(fake_dhs, tmp_path):
    bad = tmp_path / "bad.whl"
    raw = bytearray(fake_dhs["wheel"].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(data.ChecksumError) as err:
        data.fetch_dhs(bad, cache_dir=fake_dhs["cache"])
    msg = str(err.value)
    assert str(bad) in msg and data.DHS_WHEEL_SHA256 in msg and hashlib.sha256(raw).hexdigest() in msg
    bad_tsv = tmp_path / "bad.tsv"
    bad_tsv.write_text(fake_dhs["tsv"].read_text().replace("ACG", "ACC", 1))
    with pytest.raises(data.ChecksumError, match="bad.tsv"):
        data.fetch_dhs(bad_tsv, cache_dir=fake_dhs["cache"])
    assert not (fake_dhs["cache"] / "dhs" / data.DHS_TSV_FILENAME).exists()  # nothing half-written kept


def test_corrupted_download_is_an_error(fake_dhs, monkeypatch):
    monkeypatch.setattr(data, "DHS_WHEEL_SHA256", "0" * 64)
    with pytest.raises(data.ChecksumError, match="0" * 64):
        data.fetch_dhs(cache_dir=fake_dhs["cache"])


def test_offline_sources_and_tokenised_cache(fake_dhs):
    dd = data.load_dhs(fake_dhs["wheel"], cache_dir=fake_dhs["cache"])
    assert set(dd) == {"train", "validation", "test"}
    assert [len(dd[s]) for s in data.SPLITS] == [48, 12, 12]
    assert dd["train"].features["label"].names == list(data.CELL_TYPES)
    assert data.CELL_TYPES[data.HEPG2_INDEX] == "HepG2"
    row = dd["train"][0]
    assert len(row["tokens"]) == 200 and row["sequence"] == row["sequence"].upper()
    assert decode(torch.tensor([row["tokens"]]))[0] == row["sequence"]
    assert set(dd["test"]["chrom"]) == {"chr1"}
    tags = _dhs_table()["TAG"]
    assert np.bincount(dd["train"]["label"]).tolist() == [12] * 4 and len(tags) == 72
    # the second load memory-maps the Arrow copy (no re-parse); the TSV path works as a source too
    again = data.load_dhs(cache_dir=fake_dhs["cache"])
    assert again["train"].cache_files and again["train"]["name"] == dd["train"]["name"]
    assert len(data.load_dhs(fake_dhs["tsv"], cache_dir=fake_dhs["cache"])["test"]) == 12


def test_bad_sequence_in_table_names_record(tmp_path):
    df = pd.DataFrame({"seq": ["ACGTAC", "ACGRAC"], "hepg2": [1.0, 2.0], "k562": [0.1, 0.2], "sknsh": [0.0, 0.3]})
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SequenceValidationError) as err:
        data.load_sequence_table(tmp_path / "bad.csv")
    assert err.value.position == 3 and "row1" in str(err.value.record)


def test_gosai_layout_csv(tmp_path):
    n = 50
    df = pd.DataFrame({"seq": _random_seqs(n), "hepg2": RNG.normal(size=n), "k562": RNG.normal(size=n),
                       "sknsh": RNG.normal(size=n)})  # fmt: skip
    path = tmp_path / "gosai_all.csv"
    df.to_csv(path, index=False)
    dd = data.load_sequence_table(path, seed=3)
    assert sum(len(dd[s]) for s in data.SPLITS) == n and len(dd["test"]) == 5 and len(dd["validation"]) == 5
    tr = dd["train"].with_format("numpy")[:]
    assert tr["tokens"].shape == (40, 200) and tr["targets"].shape == (40, 3)
    # targets keep the column order hepg2, k562, sknsh, and match the file
    first = df.set_index("seq").loc[dd["train"][0]["sequence"]]
    np.testing.assert_allclose(dd["train"][0]["targets"], first[["hepg2", "k562", "sknsh"]].to_numpy(), rtol=1e-6)
    # the random split is reproducible under the seed and changes with it
    assert data.load_sequence_table(path, seed=3)["test"]["name"] == dd["test"]["name"]
    assert data.load_sequence_table(path, seed=4)["test"]["name"] != dd["test"]["name"]


def test_table_own_split_and_chromosome_holdout(tmp_path):
    df = pd.DataFrame({"sequence": _random_seqs(6, 10), "chr": ["chr1", "chr2", "chr3", "chr3", "chr2", "chr1"],
                       "act": np.arange(6.0)})  # fmt: skip
    df.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    dd = data.load_sequence_table(tmp_path / "t.tsv", val_chroms=["chr2"], test_chroms=["chr1"])
    assert set(dd["test"]["chrom"]) == {"chr1"} and set(dd["validation"]["chrom"]) == {"chr2"}
    df["split"] = ["train", "valid", "test", "train", "train", "train"]
    df.to_csv(tmp_path / "s.csv", index=False)
    dd = data.load_sequence_table(tmp_path / "s.csv")
    assert [len(dd[s]) for s in data.SPLITS] == [4, 1, 1]
    df["split"] = "holdout"
    df.to_csv(tmp_path / "u.csv", index=False)
    with pytest.raises(ValueError, match="holdout"):
        data.load_sequence_table(tmp_path / "u.csv")


def test_fasta_loader(tmp_path):
    seqs = _random_seqs(20, 12)
    path = tmp_path / "x.fa"
    path.write_text("".join(f">rec{i} some description\n{s[:6]}\n{s[6:].lower()}\n" for i, s in enumerate(seqs)))
    dd = data.load_fasta(path, seed=1)
    assert sum(len(dd[s]) for s in data.SPLITS) == 20 and len(dd["test"]) == 2
    got = dict(zip(dd["train"]["name"], dd["train"]["sequence"]))
    assert all(got[f"rec{i}"] == s for i, s in enumerate(seqs) if f"rec{i}" in got)
    assert data.load_sequences(path, seed=1)["test"]["name"] == dd["test"]["name"]
    path.write_text(">ok\nACGTACGTACGT\n>broken\nACGTACGTAC-T\n")
    with pytest.raises(SequenceValidationError) as err:
        data.load_fasta(path)
    assert err.value.record == "broken" and err.value.position == 10
    path.write_text(">a split=test\nACGT\n>b split=train\nACGA\n")
    assert data.load_fasta(path)["test"]["name"] == ["a"]


def test_train_halves_disjoint_stratified_seeded():
    labels = np.repeat(np.arange(4), [10, 11, 7, 8])
    h0, h1 = (data.train_half_indices(labels, h, seed=5) for h in (0, 1))
    assert not set(h0) & set(h1) and sorted([*h0, *h1]) == list(range(len(labels)))
    assert np.bincount(labels[h0]).tolist() == [5, 5, 3, 4]
    assert np.array_equal(h0, data.train_half_indices(labels, 0, seed=5))
    assert not np.array_equal(h0, data.train_half_indices(labels, 0, seed=6))
    with pytest.raises(ValueError):
        data.train_half_indices(labels, 2, seed=0)


def test_datamodules(fake_dhs):
    common = {"source": "dhs", "cache_dir": str(fake_dhs["cache"]), "batch_size": 8, "eval_batch_size": 5}
    data.fetch_dhs(cache_dir=fake_dhs["cache"])
    seq = data.SequenceDataModule(**common)
    seq.setup("fit")
    batch = next(iter(seq.train_dataloader()))
    assert batch.shape == (8, 200) and batch.dtype == torch.long
    assert sum(len(b) for b in seq.val_dataloader()) == 12
    only = data.SequenceDataModule(**common, cell_types=["HepG2"])
    only.setup()
    assert len(only.dataset("train")) == 12
    halves = [data.CellTypeDataModule(**common, train_half=h, half_seed=1) for h in (0, 1)]
    rows = []
    for dm in halves:
        dm.setup("fit")
        b = next(iter(dm.train_dataloader()))
        assert b["tokens"].shape == (8, 200) and b["label"].dtype == torch.long
        assert dm.num_classes == 4 and dm.label_names[data.HEPG2_INDEX] == "HepG2"
        rows.append({bytes(t.numpy()) for t in dm.dataset("train").tokens})
        assert len(dm.dataset("train")) == 24 and len(dm.dataset("test")) == 12
    assert not rows[0] & rows[1]
    capped = data.CellTypeDataModule(**common, max_train_samples=10)
    assert len(capped.dataset("train")) == 10 and len(set(capped.dataset("train").labels.tolist())) > 1


def test_cli_fetch_and_info(fake_dhs, capsys):
    data.cli_main(["fetch", "dhs", "--source", str(fake_dhs["wheel"]), "--cache-dir", str(fake_dhs["cache"])])
    out = capsys.readouterr().out
    assert "verified" in out and "train" in out and "HepG2 12" in out
    data.cli_main(["info", "--cache-dir", str(fake_dhs["cache"])])
    assert "test" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # a clean message, not a traceback
        data.cli_main(["fetch", "dhs", "--source", str(fake_dhs["tsv"]) + ".missing"])
    assert exit_info.value.code == 1 and "does not exist" in capsys.readouterr().err
