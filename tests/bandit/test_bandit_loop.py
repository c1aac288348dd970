"""Tests of simpo_bio.bandit.experiment and .cli: the SiMPO loop, the CLI outputs and reading them back."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from simpo_bio.bandit import (
    BanditConfig,
    cli_main,
    get_reward,
    load_runs,
    parse_schemes,
    pretrain_policy,
    train_bandit,
)

torch.set_num_threads(1)

# a small, fast configuration (not the experiment's): 2 x 32 MLP, short pretraining and run
TINY = BanditConfig(
    reward="broad", schemes="linear", seeds=1, iterations=40, group_size=32, update_epochs=2,
    elbo_draws=2, hidden=32, depth=2, num_steps=8, pretrain_steps=300, pretrain_batch=256, eval_every=10,
    eval_samples=512, density_bins=20, progress=False,
)


def test_bad_names_give_clear_errors(capsys):
    with pytest.raises(ValueError, match="unknown bandit reward 'nope'.*two_optima"):
        get_reward("nope")
    with pytest.raises(ValueError, match="unknown weighting scheme 'lin'"):
        parse_schemes("linear,lin")
    with pytest.raises(ValueError, match="key=value"):
        parse_schemes("linear_neg:eta")
    with pytest.raises(ValueError, match="not a number"):
        parse_schemes("linear_neg:eta=abc")
    with pytest.raises(ValueError, match="no weighting scheme"):
        parse_schemes(" , ")
    with pytest.raises(SystemExit) as exc:
        cli_main(["--reward", "two_optima", "--schemes", "linear,bogus", "--seeds", "1"])
    assert exc.value.code == 2
    assert "unknown weighting scheme 'bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["--reward", "flat", "--seeds", "1"])
    assert "unknown bandit reward 'flat'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="group_size"):
        replace(TINY, group_size=1).validate()


def test_loop_reduces_regret_and_is_deterministic():
    reward = get_reward("broad")
    init = pretrain_policy(TINY, reward, seed=0)
    spec = parse_schemes("linear")[0]
    run = train_bandit(TINY, reward, spec, seed=0, init_policy=init)
    assert run.iteration.tolist() == [0, 10, 20, 30, 40]
    assert run.regret[0] > 0.3  # the initial policy sits between the optima
    assert run.regret[-1] < 0.5 * run.regret[0]
    assert run.std[-1] < run.std[0]  # the policy concentrates
    assert run.density.shape == (5, 20)
    np.testing.assert_allclose((run.density * (2.0 / 20)).sum(1), 1.0, rtol=1e-4)
    again = train_bandit(TINY, reward, spec, seed=0, init_policy=init)
    np.testing.assert_array_equal(run.regret, again.regret)
    # linear_neg with eta = 0 is linear, and (temperature_from="unsigned") runs at linear's temperature
    zero_eta = train_bandit(TINY, reward, parse_schemes("linear_neg:eta=0")[0], seed=0, init_policy=init)
    np.testing.assert_allclose(zero_eta.temperature, run.temperature, rtol=1e-3)
    np.testing.assert_allclose(zero_eta.regret, run.regret, atol=0.02)
    assert (zero_eta.negative_mass == 0).all()


def test_cli_writes_csv_and_png(tmp_path, capsys):
    args = [f"--{k}={v}" for k, v in vars(TINY).items() if k not in ("reward", "schemes", "seeds", "out_dir")]
    args += ["--reward", "sharp", "--schemes", "linear,linear_neg:eta=0.5", "--seeds", "2", "--iterations", "10",
             "--pretrain_steps", "50", "--out_dir", str(tmp_path)]
    cli_main(args)
    frame = pd.read_csv(tmp_path / "bandit_sharp.csv")
    assert set(frame.columns) >= {"reward", "scheme", "seed", "iteration", "regret", "global_mass"}
    assert len(frame) == 2 * 2 * 2  # schemes x seeds x evaluations (iterations 0 and 10)
    assert set(frame["scheme"]) == {"linear", "linear_neg:eta=0.5"}
    assert (frame["regret"] >= 0).all()
    for name in ("bandit_sharp.png", "bandit_sharp_density.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.load(tmp_path / "bandit_sharp_density.npz")["density"].shape == (4, 2, 20)
    back = load_runs(tmp_path / "bandit_sharp.csv", tmp_path / "bandit_sharp_density.npz")
    assert [(r.scheme, r.seed) for r in back] == [("linear", 0), ("linear_neg:eta=0.5", 0), ("linear", 1),
                                                  ("linear_neg:eta=0.5", 1)]
    np.testing.assert_allclose(back[0].regret, frame["regret"][:2], rtol=1e-5)
    assert back[0].density.shape == (2, 20)
    out = capsys.readouterr().out
    assert "final_regret_mean" in out and "wrote csv" in out
