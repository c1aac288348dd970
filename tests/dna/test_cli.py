"""Tests of `simpo-bio sample | evaluate | export | data` (simpo_bio.dna.cli) on tiny checkpoints, and of the
LightningCLI helper's reading of checkpoints written by earlier releases (simpo_bio.lightning_cli)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd
import pytest
import torch
from lightning.pytorch.cli import LightningCLI
from tiny_models import SEQ_LEN, tiny_checkpoints, tiny_real_sets, tiny_run

from simpo_bio.cli import main as cli_main
from simpo_bio.dna import cli as dna_cli
from simpo_bio.dna.data import dhs
from simpo_bio.dna.data.tables import read_fasta
from simpo_bio.dna.design import designs


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(autouse=True)
def _small_reference_sets(monkeypatch, tmp_path):
    monkeypatch.setattr(designs, "real_sets", lambda *a, **k: tiny_real_sets())
    monkeypatch.setenv("SIMPO_BIO_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, ckpts):
    mp = pytest.MonkeyPatch()
    mp.setattr(designs, "real_sets", lambda *a, **k: tiny_real_sets())
    try:
        return tiny_run(tmp_path_factory.mktemp("run"), ckpts)
    finally:
        mp.undo()


def test_sample_command_writes_scored_fasta(run_dir, ckpts, tmp_path, capsys):
    out = tmp_path / "d.fasta"
    cli_main(["sample", "--ckpt", str(run_dir / "checkpoints" / "last.ckpt"), "--num-samples", "10",
              "--out", str(out), "--eval-oracle", str(ckpts["eval_oracle"]), "--num-steps", "4"])
    ids, toks, fields = read_fasta(out, length=SEQ_LEN)
    assert len(ids) == 10 and toks.shape == (10, SEQ_LEN)
    assert fields["scheme"].iloc[0] == "square_neg" and "eval_reward" in fields
    assert (tmp_path / "d.csv").exists()
    assert "wrote 10 designs" in capsys.readouterr().out
    # the same seed reproduces the same designs
    out2 = tmp_path / "d2.fasta"
    cli_main(["sample", "--ckpt", str(run_dir / "checkpoints" / "last.ckpt"), "--num-samples", "10",
              "--out", str(out2), "--no-score", "--num-steps", "4"])
    assert torch.equal(read_fasta(out2)[1], toks)


def test_sample_command_keeps_the_selected_candidates(run_dir, ckpts, tmp_path, capsys):
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    common = ["--eval-oracle", str(ckpts["eval_oracle"]), "--num-steps", "4", "--seed", "3"]
    cli_main(["sample", "--ckpt", ckpt, "--num-samples", "30", "--out", str(tmp_path / "all.fasta"), *common])
    cli_main(["sample", "--ckpt", ckpt, "--num-samples", "10", "--select-from", "30", "--select-weight", "0",
              "--out", str(tmp_path / "sel.fasta"), *common])
    assert "kept of 30 candidates, selection weight 0" in capsys.readouterr().out
    every = read_fasta(tmp_path / "all.fasta")[2].sort_values("reward", ascending=False)
    kept = read_fasta(tmp_path / "sel.fasta")[2]
    # weight 0: the 10 candidates with the highest fine-tuning-oracle reward, in that order
    assert kept["reward"].tolist() == pytest.approx(every["reward"].head(10).tolist(), abs=1e-4)
    # several checkpoints: the candidates are pooled (an equal share from each); each design names its source
    cli_main(["sample", "--ckpt", ckpt, ckpt, "--num-samples", "10", "--select-from", "31", "--select-weight", "0",
              "--out", str(tmp_path / "pooled.fasta"), *common])
    pooled = pd.read_csv(tmp_path / "pooled.csv")
    assert len(pooled) == 10 and set(pooled["model"]) == {ckpt}
    assert "kept of 31 candidates" in capsys.readouterr().out
    pre = str(ckpts["pretrained"])
    for argv, msg in ((["--ckpt", ckpt, ckpt, "--num-samples", "10"], "2 checkpoints need --select-from"),
                      (["--ckpt", ckpt, pre, "--num-samples", "10", "--select-from", "30"],
                       "the checkpoints generate different lengths: [20, 200]")):
        with pytest.raises(SystemExit) as err:
            cli_main(["sample", *argv, *common])
        assert err.value.code == 2 and msg in capsys.readouterr().err
    for bad, msg in ((["--select-from", "5"], "--select-from (5) must be 0 (off) or >= --num-samples (10)"),
                     (["--select-from", "30", "--select-target", "1.5"], "--select-target must be a correlation"),
                     (["--select-from", "30", "--select-weight", "0", "--select-target", "0.8"],
                      "with --select-weight > 0"),
                     (["--select-from", "30", "--no-score"], "drop --no-score")):
        with pytest.raises(SystemExit) as err:
            cli_main(["sample", "--ckpt", ckpt, "--num-samples", "10", *bad, *common])
        assert err.value.code == 2
        assert msg in capsys.readouterr().err


def test_evaluate_any_user_fasta(ckpts, tmp_path, capsys):
    fasta = _user_fasta(tmp_path)
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
    ids, toks, fields = read_fasta(out)
    full = pd.read_csv(run_dir / "designs.csv").sort_values("eval_reward", ascending=False)
    assert ids == full["id"].head(5).tolist()
    assert fields["eval_reward"].is_monotonic_decreasing
    with pytest.raises(SystemExit):
        cli_main(["export", "--run", str(run_dir), "--by", "nosuchcolumn"])
    assert "no column 'nosuchcolumn'" in capsys.readouterr().err


def test_data_fetch_and_info(fake_dhs, capsys):
    cli_main(["data", "fetch", "dhs", "--source", str(fake_dhs["wheel"]), "--cache-dir", str(fake_dhs["cache"])])
    out = capsys.readouterr().out
    assert "verified" in out and "train" in out and "HepG2 12" in out
    assert dhs.DHS_TSV_SHA256 in out  # the sum of the table that was checked
    cli_main(["data", "info", "--cache-dir", str(fake_dhs["cache"])])
    assert "test" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # a clean message, not a traceback
        cli_main(["data", "fetch", "dhs", "--source", str(fake_dhs["tsv"]) + ".missing"])
    assert exit_info.value.code == 1 and "does not exist" in capsys.readouterr().err


class _NaNOracle:
    seq_len = SEQ_LEN

    def __call__(self, tokens):
        return torch.full((len(tokens),), float("nan"))


def test_nan_rewards_stop_a_command_with_one_line(ckpts, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dna_cli, "load_oracle", lambda path: _NaNOracle())
    with pytest.raises(SystemExit) as e:
        cli_main(["evaluate", "--fasta", str(_user_fasta(tmp_path)), "--eval-oracle", str(ckpts["eval_oracle"]),
                  "--pretrained", "", "--no-jaspar", "--no-novelty"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "non-finite reward (nan) for sequence 0" in err and "Traceback" not in err


def _user_fasta(tmp_path):
    fasta = tmp_path / "user.fa"
    fasta.write_text("".join(f">u{i} my design\n{'ACGTTGCAAC' * 2}\n".replace("AC", "ac", i % 2) for i in range(4)))
    return fasta


# ------------------------------------------------------------------------------------- LightningCLI --ckpt_path
@pytest.mark.parametrize("name", ["oracle_ft", "oracle_eval", "pretrained_dhs"])
def test_shipped_checkpoints_name_a_class_that_exists(name):
    path = Path(__file__).resolve().parents[2] / "checkpoints" / "dna" / f"{name}.ckpt"
    hp = torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]
    module, _, cls = hp["_class_path"].rpartition(".")
    assert isinstance(getattr(importlib.import_module(module), cls), type)
    assert hasattr(LightningCLI, "_parse_ckpt_path")  # the hook SimpoLightningCLI overrides still exists


def test_a_checkpoint_of_an_earlier_layout_is_one_line(tmp_path, capsys):
    path = Path(__file__).resolve().parents[2] / "checkpoints" / "dna" / "oracle_ft.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["_class_path"] = "simpo_bio.dna.oracle.CellTypeClassifier"  # where 0.1 kept it
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    with pytest.raises(SystemExit) as e:
        cli_main(["test", "--config", str(Path(__file__).resolve().parents[2] / "configs/dna/oracle.yaml"),
                  f"--ckpt_path={old}"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "earlier layout" in err[0] and "simpo_bio.dna.oracle.CellTypeClassifier" in err[0]


def test_export_flags_and_filters_synthesis_constraints(run_dir, tmp_path, capsys):
    df = pd.read_csv(run_dir / "designs.csv")
    seq = list(df["sequence"].astype(str))
    n = len(seq[0])
    seq[0] = "GGTCTC" + "ACGT" * ((n - 6) // 4) + "AC"[: (n - 6) % 4]  # BsaI on the forward strand at 0
    seq[1] = ("ACGT" * n)[: n - 6] + "GAGACG"  # BsmBI (CGTCTC) on the reverse strand
    df["sequence"] = seq
    df["eval_reward"] = list(range(len(df), 0, -1))  # the planted designs rank first
    table = tmp_path / "designs.csv"
    df.to_csv(table, index=False)
    out = tmp_path / "top.fasta"
    cli_main(["export", "--run", str(table), "--top-k", "3", "--out", str(out), "--gc-min", "0", "--gc-max", "1"])
    _, _, fields = read_fasta(out)
    assert fields["flags"].iloc[0] == "BsaI@0-6+"
    assert fields["flags"].iloc[1] == f"BsmBI@{n - 6}-{n}-"
    capsys.readouterr()
    cli_main(["export", "--run", str(table), "--top-k", "3", "--out", str(out), "--gc-min", "0", "--gc-max", "1",
              "--filter"])
    ids, _, fields = read_fasta(out)
    assert df["id"].iloc[0] not in ids and df["id"].iloc[1] not in ids
    assert set(fields["flags"]) == {"none"}
    with pytest.raises(SystemExit) as e:
        cli_main(["export", "--run", str(table), "--enzyme", "BsaX", "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "unknown enzyme 'BsaX'" in err and "BsaI" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("fail_on", ["fasta", "table"])
def test_full_disk_in_sample_and_export_leaves_the_old_pair(run_dir, ckpts, tmp_path, capsys, monkeypatch, fail_on):
    """ENOSPC while writing either file of a FASTA + table pair: one line, exit 2, both old files byte-identical,
    no temporary file left (simpo_bio.fileio.atomic_paths)."""
    import errno

    out = tmp_path / "d.fasta"
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    cli_main(["sample", "--ckpt", ckpt, "--num-samples", "6", "--out", str(out), "--no-score", "--num-steps", "4"])
    old = {p: p.read_bytes() for p in (out, out.with_suffix(".csv"))}
    real_fasta, real_table = designs.write_fasta, designs.write_table

    def full(*a, **k):
        path = Path(a[1] if fail_on == "table" else a[0])
        path.write_bytes(b"x" * 100)  # part written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(designs, "write_fasta", full if fail_on == "fasta" else real_fasta)
    monkeypatch.setattr(designs, "write_table", full if fail_on == "table" else real_table)
    runs = [["sample", "--ckpt", ckpt, "--num-samples", "6", "--out", str(out), "--no-score", "--num-steps", "4",
             "--seed", "9"],
            ["export", "--run", str(run_dir), "--top-k", "3", "--out", str(out)]]
    for argv in runs:
        with pytest.raises(SystemExit) as e:
            cli_main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
        name = out.name if fail_on == "fasta" else out.with_suffix(".csv").name
        assert "no space left on the device writing" in err and name in err
        assert {p: p.read_bytes() for p in old} == old
        assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "d.fasta"]


def test_a_finetuning_checkpoint_without_its_pretrained_record_is_one_line(run_dir, tmp_path, capsys):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt.pop("simpo_policy", None)
    ckpt["hyper_parameters"].pop("pretrained", None)
    bad = tmp_path / "no_pretrained.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(SystemExit) as e:
        cli_main(["sample", "--ckpt", str(bad), "--num-samples", "2", "--out", str(tmp_path / "x.fasta")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "no_pretrained.ckpt" in err[0] and "'pretrained'" in err[0]
