"""Tests of designs out (simpo_bio.dna.design.designs): the export at the end of a fit, FASTA / tables / plots."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from tiny_models import SEQ_LEN, tiny_checkpoints, tiny_real_sets, tiny_run

from simpo_bio.dna.data.tables import read_fasta
from simpo_bio.dna.design import designs
from simpo_bio.fileio import _default_mode, atomic_write


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(designs, "real_sets", lambda *a, **k: tiny_real_sets())
    torch.set_num_threads(1)
    try:
        return tiny_run(tmp_path_factory.mktemp("run"), tiny_checkpoints(tmp_path_factory.mktemp("ckpt")))
    finally:
        mp.undo()


def test_fit_writes_fasta_tables_and_plots(run_dir):
    for name in ("designs.fasta", "designs.csv", "pretrained_designs.fasta", "metrics.csv", "metrics.md",
                 "history.csv", "reward_curve.png", "reward_distribution.png", "composition.png", "checkpoints/last.ckpt"):
        assert (run_dir / name).exists(), name
    ids, toks, fields = read_fasta(run_dir / "designs.fasta", length=SEQ_LEN)
    assert len(ids) == 24 and ids[0] == "square_neg-000000"
    assert {"reward", "eval_reward", "model", "scheme"} <= set(fields.columns)
    assert (fields["scheme"] == "square_neg").all()
    table = pd.read_csv(run_dir / "designs.csv")
    assert table["eval_reward"].tolist() == pytest.approx(fields["eval_reward"].tolist(), abs=1e-3)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics["model"]) == ["real HepG2 (test split)", "pretrained", "fine-tuned (square_neg)"]
    assert len(pd.read_csv(run_dir / "history.csv")) == 2
    assert not list(run_dir.glob(".*.tmp"))  # no temp files left behind


def test_fasta_roundtrip_with_header_fields(tmp_path):
    toks = torch.randint(0, 4, (5, 30), generator=torch.Generator().manual_seed(0))
    p = designs.write_fasta(tmp_path / "d.fasta", toks, ids=[f"d{i}" for i in range(5)],
                       fields={"reward": [1.5, 2.0, 3.0, 4.0, 5.25], "eval_reward": torch.arange(5.0).tolist()},
                       model="runs/x/last.ckpt", scheme="square_neg")
    text = p.read_text()
    assert text.startswith(">d0 reward=1.5000 eval_reward=0.0000 model=runs/x/last.ckpt scheme=square_neg\n")
    ids, back, fields = read_fasta(p, length=30)
    assert ids == [f"d{i}" for i in range(5)]
    assert torch.equal(back, toks)
    assert fields.loc["d4", "reward"] == pytest.approx(5.25)
    assert fields.loc["d0", "scheme"] == "square_neg"


def test_write_fasta_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="2 ids for 1"):
        designs.write_fasta(tmp_path / "a.fa", ["ACGT"], ids=["a", "b"])
    with pytest.raises(ValueError, match="whitespace"):
        designs.write_fasta(tmp_path / "a.fa", ["ACGT"], model="my model")
    assert not (tmp_path / "a.fa").exists()


def test_atomic_write_leaves_old_file_on_crash(tmp_path):
    p = tmp_path / "t.csv"
    designs.write_table(pd.DataFrame({"a": [1, 2]}), p)
    before = p.read_text()
    with pytest.raises(RuntimeError), atomic_write(p) as fh:
        fh.write("half a fi")
        raise RuntimeError("crash")
    assert p.read_text() == before
    assert [f.name for f in tmp_path.iterdir()] == ["t.csv"]  # no temp file left behind
    assert p.stat().st_mode & 0o777 == _default_mode()  # usual permissions, not mkstemp's 0600


def test_tables_and_plots(tmp_path):
    df = pd.DataFrame({"id": ["a", "b"], "eval_reward": [1.0, 2.0]})
    for suffix in ("csv", "parquet", "tsv"):
        p = designs.write_table(df, tmp_path / f"t.{suffix}")
        back = pd.read_parquet(p) if suffix == "parquet" else pd.read_csv(p, sep="\t" if suffix == "tsv" else ",")
        pd.testing.assert_frame_equal(back, df)
    with pytest.raises(ValueError, match="unsupported"):
        designs.write_table(df, tmp_path / "t.xlsx")
    p = designs.plot_reward_distributions({"real": [0.0, 1.0, 2.0], "tuned": [2.0, 3.0, 4.0]}, tmp_path / "r.png")
    assert p.read_bytes()[:4] == b"\x89PNG"
    curve = pd.DataFrame({"reward_queries": [64, 128], "reward_median": [0.1, 0.5]})
    p = designs.plot_reward_curve({"square_neg": curve}, tmp_path / "c.png")
    assert p.read_bytes()[:4] == b"\x89PNG"
