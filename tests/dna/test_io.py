"""Tests of FASTA / table / plot output (simpo_bio.dna.io)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from simpo_bio.dna import io
from simpo_bio.dna.alphabet import SequenceValidationError
from simpo_bio.fileio import _default_mode


def test_fasta_roundtrip_with_header_fields(tmp_path):
    toks = torch.randint(0, 4, (5, 30), generator=torch.Generator().manual_seed(0))
    p = io.write_fasta(tmp_path / "d.fasta", toks, ids=[f"d{i}" for i in range(5)],
                       fields={"reward": [1.5, 2.0, 3.0, 4.0, 5.25], "eval_reward": torch.arange(5.0).tolist()},
                       model="runs/x/last.ckpt", scheme="square_neg")
    text = p.read_text()
    assert text.startswith(">d0 reward=1.5000 eval_reward=0.0000 model=runs/x/last.ckpt scheme=square_neg\n")
    ids, back, fields = io.read_fasta(p, length=30)
    assert ids == [f"d{i}" for i in range(5)]
    assert torch.equal(back, toks)
    assert fields.loc["d4", "reward"] == pytest.approx(5.25)
    assert fields.loc["d0", "scheme"] == "square_neg"


def test_read_fasta_errors_name_file_record_position(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">ok\nACGTACGT\n>weird\nACGTNCGT\n")
    with pytest.raises(SequenceValidationError) as e:
        io.read_fasta(bad)
    assert e.value.record == "weird" and e.value.position == 4 and "bad.fa" in str(e.value)
    short = tmp_path / "short.fa"
    short.write_text(">a\nACGTACGT\n>b\nACGT\n")
    with pytest.raises(SequenceValidationError, match="length 4, expected 8"):
        io.read_fasta(short)
    with pytest.raises(SequenceValidationError, match="expected 200"):
        io.read_fasta(short, length=200)
    notfasta = tmp_path / "x.fa"
    notfasta.write_text("sequence,reward\nACGT,1\n")
    with pytest.raises(ValueError, match="not a FASTA"):
        io.read_fasta(notfasta)
    empty = tmp_path / "e.fa"
    empty.write_text("")
    with pytest.raises(ValueError, match="not a FASTA"):
        io.read_fasta(empty)
    dup = tmp_path / "dup.fa"
    dup.write_text(">a\nACGT\n>a\nACGT\n")
    with pytest.raises(ValueError, match="duplicate record id 'a'"):
        io.read_fasta(dup)
    with pytest.raises(FileNotFoundError):
        io.read_fasta(tmp_path / "missing.fa")


def test_write_fasta_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="2 ids for 1"):
        io.write_fasta(tmp_path / "a.fa", ["ACGT"], ids=["a", "b"])
    with pytest.raises(ValueError, match="whitespace"):
        io.write_fasta(tmp_path / "a.fa", ["ACGT"], model="my model")
    assert not (tmp_path / "a.fa").exists()


def test_atomic_write_leaves_old_file_on_crash(tmp_path):
    p = tmp_path / "t.csv"
    io.write_table(pd.DataFrame({"a": [1, 2]}), p)
    before = p.read_text()
    with pytest.raises(RuntimeError), io.atomic_write(p) as fh:
        fh.write("half a fi")
        raise RuntimeError("crash")
    assert p.read_text() == before
    assert [f.name for f in tmp_path.iterdir()] == ["t.csv"]  # no temp file left behind
    assert p.stat().st_mode & 0o777 == _default_mode()  # usual permissions, not mkstemp's 0600


def test_tables_and_plots(tmp_path):
    df = pd.DataFrame({"id": ["a", "b"], "eval_reward": [1.0, 2.0]})
    for suffix in ("csv", "parquet", "tsv"):
        p = io.write_table(df, tmp_path / f"t.{suffix}")
        back = pd.read_parquet(p) if suffix == "parquet" else pd.read_csv(p, sep="\t" if suffix == "tsv" else ",")
        pd.testing.assert_frame_equal(back, df)
    with pytest.raises(ValueError, match="unsupported"):
        io.write_table(df, tmp_path / "t.xlsx")
    p = io.plot_reward_distributions({"real": [0.0, 1.0, 2.0], "tuned": [2.0, 3.0, 4.0]}, tmp_path / "r.png")
    assert p.read_bytes()[:4] == b"\x89PNG"
    curve = pd.DataFrame({"reward_queries": [64, 128], "reward_median": [0.1, 0.5]})
    p = io.plot_reward_curve({"square_neg": curve}, tmp_path / "c.png")
    assert p.read_bytes()[:4] == b"\x89PNG"
