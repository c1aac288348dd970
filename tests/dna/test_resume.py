"""A SiMPO fit SIGKILLed at a random point after its first checkpoint resumes to the uninterrupted result;
``last.ckpt`` of another config is refused with one line (exit 2) unless SIMPO_FORCE_RESUME=1."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from simpo_bio.dna.models.checkpoints import KIND_KEY

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import resume_job  # noqa: E402

ITERATIONS = 12


def kill_after_checkpoints(cmd: list[str], checkpoint: Path, count: int, cwd: Path) -> None:
    """Run ``cmd``; SIGKILL it a random moment (0-50 ms) after ``checkpoint`` has been (re)written ``count`` times.

    Every atomic write replaces the file by a new one (a new modification time), which is what is counted.
    """
    env = dict(os.environ, PYTHONWARNINGS="ignore", WANDB_MODE="offline", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, seen = time.time() + 120, set()
    while len(seen) < count:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no checkpoint within 120 s"
        try:
            seen.add(checkpoint.stat().st_mtime_ns)
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    time.sleep(random.uniform(0.0, 0.05))
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_fit_resumes_to_the_uninterrupted_result(tmp_path):
    whole = resume_job.run(tmp_path / "whole", ITERATIONS)
    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.ckpt"
    count = random.randint(1, ITERATIONS // 2)
    kill_after_checkpoints([sys.executable, str(HERE / "resume_job.py"), str(killed), str(ITERATIONS)], last, count,
                           cwd=HERE.parents[1])  # fmt: skip
    stopped = torch.load(last, weights_only=False)["epoch"]
    assert not (killed / "final.pt").exists() and stopped < ITERATIONS - 1, "finished before the kill"
    resumed = resume_job.run(killed, ITERATIONS)  # the same command again: ckpt_path="last"
    assert [h["iteration"] for h in resumed["history"]] == list(range(ITERATIONS))
    assert [h["reward_mean"] for h in resumed["history"]] == [h["reward_mean"] for h in whole["history"]]
    assert resumed["temperature"] == whole["temperature"]
    for name, value in whole["params"].items():
        assert torch.equal(resumed["params"][name], value), name


def test_last_checkpoint_of_another_config_is_refused_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SIMPO_FORCE_RESUME", raising=False)
    resume_job.run(tmp_path, 2)
    capsys.readouterr()  # drop the first run's output (Lightning warns once per process: no last.ckpt yet)
    with pytest.raises(SystemExit) as exc:
        resume_job.run(tmp_path, 3, lr=1e-2)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    line = err[0]
    assert line.startswith("simpo-bio: error: refusing to resume from ") and "last.ckpt" in line
    assert "hparams.update.lr: 0.003 (checkpoint) vs 0.01 (this run)" in line and line.count("config hash") == 2
    assert "SIMPO_FORCE_RESUME=1" in line
    with pytest.raises(SystemExit):  # another scheme: refused too
        resume_job.run(tmp_path, 3, scheme="linear")
    capsys.readouterr()
    monkeypatch.setenv("SIMPO_FORCE_RESUME", "1")
    forced = resume_job.run(tmp_path, 3, lr=1e-2)
    assert [h["iteration"] for h in forced["history"]] == [0, 1, 2]


def test_checkpoint_of_another_model_kind_is_refused(tmp_path, capsys, monkeypatch):
    """An oracle's checkpoint put where the fine-tuning run expects last.ckpt: refused even when forced."""
    monkeypatch.setenv("SIMPO_FORCE_RESUME", "1")
    (tmp_path / "checkpoints").mkdir(parents=True)
    oracle = resume_job.tiny_oracle_ckpt(tmp_path / "o.ckpt")
    ckpt = torch.load(oracle, weights_only=False)
    ckpt.update({"epoch": 0, "global_step": 1, "pytorch-lightning_version": "2.6.6", "loops": {}})
    torch.save(ckpt, tmp_path / "checkpoints" / "last.ckpt")
    with pytest.raises(SystemExit) as exc:
        resume_job.run(tmp_path, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "written by CellTypeClassifier" in err[0], err


def test_killed_demo_run_again_continues_where_it_stopped(tmp_path):
    """`simpo-bio demo` (tiny models through the shipped demo configs) killed mid-fit, then run again."""
    import demo_job
    import pandas as pd

    iterations = 10
    demo_job.run(tmp_path / "whole", iterations)
    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.ckpt"
    kill_after_checkpoints([sys.executable, str(HERE / "demo_job.py"), str(killed), str(iterations)], last,
                           random.randint(1, iterations // 2), cwd=HERE.parents[1])  # fmt: skip
    assert not (killed / "designs.csv").exists(), "the demo finished before the kill"
    demo_job.run(killed, iterations)  # the same command again
    for name in ("designs.csv", "metrics.csv"):  # (the "model" column names the run's own checkpoint path)
        a, b = (pd.read_csv(d / name) for d in (killed, tmp_path / "whole"))
        pd.testing.assert_frame_equal(a.drop(columns=["model"], errors="ignore"),
                                      b.drop(columns=["model"], errors="ignore"))
    timing = [c for c in pd.read_csv(killed / "history.csv").columns if c.startswith("time_")]
    pd.testing.assert_frame_equal(pd.read_csv(killed / "history.csv").drop(columns=timing),
                                  pd.read_csv(tmp_path / "whole" / "history.csv").drop(columns=timing))
    a = torch.load(last, weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:  # tensors, and the Stage-I step's optimiser state (a nested dict): exactly equal
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_demo_refuses_a_truncated_last_checkpoint_with_one_line(tmp_path, capsys):
    import demo_job

    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(SystemExit) as exc:
        demo_job.run(tmp_path, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "last.ckpt" in err[0] and "truncated" in err[0], err
    assert "--fresh" in err[0] and "cannot resume from" in err[0]  # the way out, on the same line


def test_demo_fits_one_natural_policy_and_selects_its_samples(tmp_path):
    """The default demo: one run of the natural policy (no other run folder), its candidates selected."""
    import demo_job
    import pandas as pd

    demo_job.run(tmp_path, 2, "--seed", "3")
    assert not list(tmp_path.glob("run_seed*"))
    label = pd.read_csv(tmp_path / "metrics.csv")["model"].tolist()[-1]
    assert "pooled" not in label and label.startswith("fine-tuned (reward_gradient; 16 of 256 selected")
    assert set(pd.read_csv(tmp_path / "designs.csv")["model"]) == {str(tmp_path / "checkpoints" / "last.ckpt")}
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["hyper_parameters"]["seed"] == 3 and ckpt["simpo_run"]["seed"] == "3"
    assert ckpt[KIND_KEY] == "RewardGradientFineTuning", ckpt.get(KIND_KEY)


def test_demo_select_weight_reselects_a_finished_run_without_refitting(tmp_path, capsys):
    """``--select-weight`` on a finished demo: the fit is not redone, the selection starts at the new weight."""
    import demo_job
    import pandas as pd

    demo_job.run(tmp_path, 2, "--seed", "3")
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    before = (ckpt.stat().st_mtime_ns, len(pd.read_csv(tmp_path / "history.csv")))
    capsys.readouterr()
    demo_job.run(tmp_path, 2, "--seed", "3", "--select-weight", "0.5")
    out = capsys.readouterr().out
    assert (ckpt.stat().st_mtime_ns, len(pd.read_csv(tmp_path / "history.csv"))) == before
    label = pd.read_csv(tmp_path / "metrics.csv")["model"].tolist()[-1]
    assert "3-mer target 0.85 from weight 0.5" in label, label
    weight = float(out.split("composition-matched selection, weight ")[1].split(",")[0])
    assert weight in (0.5, 1.0, 2.0, 4.0), out  # the ladder from 0.5: 0.5 x 1, 2, 4, 8


def test_the_simpo_demo_with_two_runs_pools_both(tmp_path):
    """The SiMPO demo (configs/dna/demo_simpo.yaml, two runs): seed 1 into run_seed1/ first, both pooled."""
    import demo_job
    import pandas as pd

    demo_job.run(tmp_path, 2, "--runs", "2", simpo=True)
    assert (tmp_path / "run_seed1" / "checkpoints" / "last.ckpt").exists()
    label = pd.read_csv(tmp_path / "metrics.csv")["model"].tolist()[-1]
    assert label.startswith("fine-tuned (square_neg; 2 runs pooled, 16 of 256 selected"), label
    sources = set(pd.read_csv(tmp_path / "designs.csv")["model"])
    assert sources <= {str(tmp_path / "checkpoints" / "last.ckpt"),
                       str(tmp_path / "run_seed1" / "checkpoints" / "last.ckpt")} and len(sources) == 2, sources
