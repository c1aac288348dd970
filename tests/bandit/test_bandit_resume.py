"""A bandit experiment run again after a kill computes only the missing (scheme, seed) runs, with identical outputs.

Saved runs of another config are refused with one line (exit 2) unless ``--restart true``; bad values and files
fail with one line and exit status 2 before any run is computed.
"""

from __future__ import annotations

import pytest
import torch

import simpo_bio.bandit.experiment as experiment
from simpo_bio.bandit import cli_main

torch.set_num_threads(1)

TINY = ["--reward", "broad", "--schemes", "linear,linear_neg:eta=0.5", "--seeds", "2", "--iterations", "6",
        "--group_size", "16", "--update_epochs", "1", "--elbo_draws", "1", "--hidden", "16", "--depth", "1",
        "--num_steps", "4", "--pretrain_steps", "20", "--pretrain_batch", "64", "--eval_every", "3",
        "--eval_samples", "64", "--density_bins", "8", "--progress", "false"]  # fmt: skip


@pytest.fixture
def count_runs(monkeypatch):
    calls = []
    original = experiment.train_bandit

    def counting(cfg, reward, spec, seed, init_policy=None):
        calls.append((spec.label, seed))
        return original(cfg, reward, spec, seed, init_policy=init_policy)

    monkeypatch.setattr(experiment, "train_bandit", counting)
    return calls


def test_rerun_after_a_kill_computes_only_the_missing_runs(tmp_path, count_runs):
    whole = tmp_path / "whole"
    cli_main([*TINY, "--out_dir", str(whole)])
    assert len(count_runs) == 4
    saved = sorted((whole / "bandit_broad_runs").glob("seed*.npz"))
    assert len(saved) == 4 and (whole / "bandit_broad_runs" / "config.json").exists()

    # a kill after two runs: their files exist, nothing else (the outputs are written at the end)
    killed = tmp_path / "killed"
    (killed / "bandit_broad_runs").mkdir(parents=True)
    for path in [*saved[:2], whole / "bandit_broad_runs" / "config.json"]:
        (killed / "bandit_broad_runs" / path.name).write_bytes(path.read_bytes())
    count_runs.clear()
    cli_main([*TINY, "--out_dir", str(killed)])
    assert len(count_runs) == 2  # only the missing runs were computed
    assert (killed / "bandit_broad.csv").read_bytes() == (whole / "bandit_broad.csv").read_bytes()

    count_runs.clear()
    cli_main([*TINY, "--out_dir", str(killed), "--seeds", "3"])  # one more seed: only its runs are computed
    assert sorted(count_runs) == [("linear", 2), ("linear_neg:eta=0.5", 2)]


def test_saved_runs_of_another_config_are_refused_unless_restart(tmp_path, capsys, count_runs):
    cli_main([*TINY, "--out_dir", str(tmp_path), "--seeds", "1"])
    capsys.readouterr()
    count_runs.clear()
    with pytest.raises(SystemExit) as exc:
        cli_main([*TINY, "--out_dir", str(tmp_path), "--seeds", "1", "--lr", "0.002"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1, err
    assert str(tmp_path / "bandit_broad_runs") in err and "lr: 0.001 (saved) vs 0.002 (this run)" in err
    assert err.count("hash") == 2 and "--restart true" in err and count_runs == []
    cli_main([*TINY, "--out_dir", str(tmp_path), "--seeds", "1", "--lr", "0.002", "--restart", "true"])
    assert len(count_runs) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperature", "0"], "temperature must be > 0"),
        (["--group_size", "-4"], "group_size must be >= 1"),
        (["--schemes", "linear,bogus"], "unknown weighting scheme 'bogus'"),
        (["--reward", "flat"], "unknown bandit reward 'flat'"),
        (["--iterations", "many"], "iterations"),
        (["--config", "/nonexistent/bandit.yaml"], "does not exist"),
        (["--nope", "1"], "unrecognized arguments"),
    ],
)
def test_bad_values_fail_with_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        cli_main([*TINY, "--out_dir", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()
