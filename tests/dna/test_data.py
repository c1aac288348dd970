"""Tests of the generic loaders (simpo_bio.dna.data.tables): FASTA reading, tables, splits. Every file is built here."""

import gzip

import numpy as np
import pandas as pd
import pytest
from fake_data import RNG, random_seqs

from simpo_bio.dna.data import tables as data
from simpo_bio.dna.data.alphabet import SequenceValidationError


def test_bad_sequence_in_table_names_record(tmp_path):
    df = pd.DataFrame({"seq": ["ACGTAC", "ACGRAC"], "hepg2": [1.0, 2.0], "k562": [0.1, 0.2], "sknsh": [0.0, 0.3]})
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SequenceValidationError) as err:
        data.load_sequence_table(tmp_path / "bad.csv")
    assert err.value.position == 3 and "row1" in str(err.value.record)


def test_gosai_layout_csv(tmp_path):
    n = 50
    df = pd.DataFrame({"seq": random_seqs(n), "hepg2": RNG.normal(size=n), "k562": RNG.normal(size=n),
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
    df = pd.DataFrame({"sequence": random_seqs(6, 10), "chr": ["chr1", "chr2", "chr3", "chr3", "chr2", "chr1"],
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
    seqs = random_seqs(20, 12)
    path = tmp_path / "x.fa"
    path.write_text("".join(f">rec{i} some description\n{s[:6]}\n{s[6:].lower()}\n" for i, s in enumerate(seqs)))
    dd = data.load_fasta(path, seed=1)
    assert sum(len(dd[s]) for s in data.SPLITS) == 20 and len(dd["test"]) == 2
    got = dict(zip(dd["train"]["name"], dd["train"]["sequence"]))
    assert all(got[f"rec{i}"] == s for i, s in enumerate(seqs) if f"rec{i}" in got)
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


def test_read_fasta_errors_name_file_record_position(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">ok\nACGTACGT\n>weird\nACGTNCGT\n")
    with pytest.raises(SequenceValidationError) as e:
        data.read_fasta(bad)
    assert e.value.record == "weird" and e.value.position == 4 and "bad.fa" in str(e.value)
    short = tmp_path / "short.fa"
    short.write_text(">a\nACGTACGT\n>b\nACGT\n")
    with pytest.raises(SequenceValidationError, match="length 4, expected 8"):
        data.read_fasta(short)
    with pytest.raises(SequenceValidationError, match="expected 200"):
        data.read_fasta(short, length=200)
    notfasta = tmp_path / "x.fa"
    notfasta.write_text("sequence,reward\nACGT,1\n")
    with pytest.raises(ValueError, match="not a FASTA"):
        data.read_fasta(notfasta)
    empty = tmp_path / "e.fa"
    empty.write_text("")
    with pytest.raises(ValueError, match="not a FASTA"):
        data.read_fasta(empty)
    dup = tmp_path / "dup.fa"
    dup.write_text(">a\nACGT\n>a\nACGT\n")
    with pytest.raises(ValueError, match="duplicate record id 'a'"):
        data.read_fasta(dup)
    with pytest.raises(FileNotFoundError):
        data.read_fasta(tmp_path / "missing.fa")


def test_gzipped_fasta_and_header_fields(tmp_path):
    path = tmp_path / "x.fa.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(">a reward=1.5 split=test\nACGT\n>b reward=2 split=train\nacga\n")
    ids, tokens, fields = data.read_fasta(path, length=4)
    assert ids == ["a", "b"] and tokens.tolist() == [[0, 1, 2, 3], [0, 1, 2, 0]]
    assert fields.loc["b", "reward"] == 2.0 and fields.loc["a", "split"] == "test"
    dd = data.load_fasta(path)
    assert dd["test"]["name"] == ["a"] and dd["train"]["sequence"] == ["ACGA"]

