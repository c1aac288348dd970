"""Tests of `simpo-bio sample | evaluate | export | demo` (simpo_bio.dna.commands) on tiny checkpoints."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from tiny_models import SEQ_LEN, tiny_checkpoints, tiny_real_sets, tiny_run

from simpo_bio.cli import main as cli_main
from simpo_bio.dna import commands, io


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(autouse=True)
def _small_reference_sets(monkeypatch, tmp_path):
    monkeypatch.setattr(commands, "real_sets", lambda *a, **k: tiny_real_sets())
    monkeypatch.setenv("SIMPO_BIO_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, ckpts):
    mp = pytest.MonkeyPatch()
    mp.setattr(commands, "real_sets", lambda *a, **k: tiny_real_sets())
    try:
        return tiny_run(tmp_path_factory.mktemp("run"), ckpts)
    finally:
        mp.undo()


def test_fit_writes_fasta_tables_and_plots(run_dir):
    for name in ("designs.fasta", "designs.csv", "pretrained_designs.fasta", "metrics.csv", "metrics.md",
                 "history.csv", "reward_curve.png", "reward_distribution.png", "checkpoints/last.ckpt"):
        assert (run_dir / name).exists(), name
    ids, toks, fields = io.read_fasta(run_dir / "designs.fasta", length=SEQ_LEN)
    assert len(ids) == 24 and ids[0] == "square_neg-000000"
    assert {"reward", "eval_reward", "model", "scheme"} <= set(fields.columns)
    assert (fields["scheme"] == "square_neg").all()
    table = pd.read_csv(run_dir / "designs.csv")
    assert table["eval_reward"].tolist() == pytest.approx(fields["eval_reward"].tolist(), abs=1e-3)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics["model"]) == ["real HepG2 (test split)", "pretrained", "fine-tuned (square_neg)"]
    assert len(pd.read_csv(run_dir / "history.csv")) == 2
    assert not list(run_dir.glob(".*.tmp"))  # no temp files left behind


def test_sample_command_writes_scored_fasta(run_dir, ckpts, tmp_path, capsys):
    out = tmp_path / "d.fasta"
    cli_main(["sample", "--ckpt", str(run_dir / "checkpoints" / "last.ckpt"), "--num-samples", "10",
              "--out", str(out), "--eval-oracle", str(ckpts["eval_oracle"]), "--num-steps", "4"])
    ids, toks, fields = io.read_fasta(out, length=SEQ_LEN)
    assert len(ids) == 10 and toks.shape == (10, SEQ_LEN)
    assert fields["scheme"].iloc[0] == "square_neg" and "eval_reward" in fields
    assert (tmp_path / "d.csv").exists()
    assert "wrote 10 designs" in capsys.readouterr().out
    # the same seed reproduces the same designs
    out2 = tmp_path / "d2.fasta"
    cli_main(["sample", "--ckpt", str(run_dir / "checkpoints" / "last.ckpt"), "--num-samples", "10",
              "--out", str(out2), "--no-score", "--num-steps", "4"])
    assert torch.equal(io.read_fasta(out2)[1], toks)


def test_evaluate_any_user_fasta(ckpts, tmp_path, capsys):
    fasta = tmp_path / "user.fa"
    fasta.write_text("".join(f">u{i} my design\n{'ACGTTGCAAC' * 2}\n".replace("AC", "ac", i % 2) for i in range(4)))
    out = tmp_path / "m.csv"
    cli_main(["evaluate", "--fasta", str(fasta), "--eval-oracle", str(ckpts["eval_oracle"]),
              "--pretrained", str(ckpts["pretrained"]), "--out", str(out), "--max-motifs", "6", "--per-sequence", str(tmp_path / "p.csv")])
    text = capsys.readouterr().out
    assert "Pred-Activity (median)" in text and "user.fa" in text
    row = pd.read_csv(out).iloc[0]
    assert row["frac_unique"] == pytest.approx(0.25)  # lowercase is the same sequence
    assert {"eval_reward", "log_lik", "min_train_hamming"} <= set(pd.read_csv(tmp_path / "p.csv").columns)


@pytest.mark.parametrize("content,needle", [
    (">a\nACGTACGTACGTACGTACGT\n>b\nACGTACGTACNTACGTACGT\n", "invalid character 'N'"),
    (">a\nACGTACGTACGTACGTACGT\n>short\nACGTACGT\n", "length 8, expected 20"),
    ("id,seq\na,ACGT\n", "not a FASTA"),
])
def test_evaluate_bad_fasta_gives_one_line_error(ckpts, tmp_path, capsys, content, needle):
    fasta = tmp_path / "bad.fa"
    fasta.write_text(content)
    with pytest.raises(SystemExit) as e:
        cli_main(["evaluate", "--fasta", str(fasta), "--eval-oracle", str(ckpts["eval_oracle"]), "--no-jaspar"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "bad.fa" in err and "Traceback" not in err
    if "invalid" in needle:
        assert "'b'" in err and "position 10" in err


def test_corrupt_or_wrong_checkpoint_gives_clear_error(ckpts, tmp_path, capsys):
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(ckpts["pretrained"].read_bytes()[:200])
    with pytest.raises(SystemExit) as e:
        cli_main(["sample", "--ckpt", str(bad), "--num-samples", "2", "--out", str(tmp_path / "x.fa")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "broken.ckpt" in err and "truncated" in err
    with pytest.raises(SystemExit):
        cli_main(["sample", "--ckpt", str(ckpts["oracle"]), "--num-samples", "2", "--out", str(tmp_path / "x.fa")])
    assert "oracle_ft.ckpt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["sample", "--ckpt", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "x.fa")])
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.fa").exists()


def test_export_top_k(run_dir, tmp_path, capsys):
    out = tmp_path / "top.fasta"
    cli_main(["export", "--run", str(run_dir), "--top-k", "5", "--out", str(out)])
    ids, toks, fields = io.read_fasta(out)
    full = pd.read_csv(run_dir / "designs.csv").sort_values("eval_reward", ascending=False)
    assert ids == full["id"].head(5).tolist()
    assert fields["eval_reward"].is_monotonic_decreasing
    with pytest.raises(SystemExit):
        cli_main(["export", "--run", str(run_dir), "--by", "nosuchcolumn"])
    assert "no column 'nosuchcolumn'" in capsys.readouterr().err


class _NaNOracle(torch.nn.Module):
    def forward(self, tokens):
        r = tokens.float().mean(-1)
        r[2] = float("nan")
        return r


def test_nan_rewards_from_a_user_oracle_are_rejected(ckpts):
    from simpo_bio.dna.metrics import Evaluator

    ev = Evaluator(_NaNOracle(), tiny_real_sets()["hepg2_top"])
    with pytest.raises(ValueError, match="non-finite reward.*sequence 2"):
        ev.evaluate(tiny_real_sets()["train"][:5])
