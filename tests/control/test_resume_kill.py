"""A control run SIGKILLed at a random point after its first checkpoint resumes to the uninterrupted result.

Also: a checkpoint of another config is refused (one line naming both hashes and the differing field) unless
``--train.force_resume true``; unreadable or foreign checkpoints and invalid config values fail with one line and
exit status 2 before anything is written.
"""

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXTRA = "needs the [control] extra (pip install 'simpo-bio[control]')"
pytest.importorskip("mujoco", reason=EXTRA)
pytest.importorskip("stable_baselines3", reason=EXTRA)

import torch  # noqa: E402

from simpo_bio.control.train import cli_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WALL_CLOCK = {"wall_time_s", "env_steps_per_s", "updates_per_s"}


def tiny_args(out: Path, **overrides) -> list[str]:
    values = {
        "env.id": "InvertedPendulum-v4", "env.num_envs": 2, "agent.group_size": 4, "agent.num_steps": 2,
        "agent.hidden": 16, "agent.depth": 1, "agent.eval_candidates": 2, "train.total_env_steps": 440,
        "train.learning_starts": 200, "train.batch_size": 16, "train.eval_every": 160, "train.eval_episodes": 2,
        "train.checkpoint_every": 40, "train.seed": 3, "train.wandb": "false", "train.progress": "false",
        "train.threads": 1, "train.out_dir": str(out),
    }  # fmt: skip
    values.update(overrides)
    return [a for k, v in values.items() for a in (f"--{k}", str(v))]


def same(a, b) -> bool:
    """Tensors equal bit for bit; dicts / lists (an optimiser state in a state_dict's ``_extra_state``) entry by entry."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def outcome(out: Path):
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    rows = [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in csv.DictReader(open(out / "metrics.csv"))]
    return ckpt, rows


@pytest.mark.parametrize("agent", [{}, {"agent.algorithm": "sdac", "agent.scheme": "exp"}], ids=["simpo", "sdac"])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, agent):
    cli_main(tiny_args(tmp_path / "whole", **agent))
    whole, whole_rows = outcome(tmp_path / "whole")

    killed = tmp_path / "killed"
    code = f"from simpo_bio.control.train import cli_main; cli_main({tiny_args(killed, **agent)!r})"
    env = dict(os.environ, MUJOCO_GL="disable", WANDB_MODE="offline", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 60
    while not (killed / "checkpoint.pt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.4))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = torch.load(killed / "checkpoint.pt", weights_only=False)["env_steps"]
    assert stopped_at < 440, "the run ended before it was killed: make it longer"

    result = cli_main(tiny_args(killed, **agent))  # the same command again: resume is "auto" by default
    resumed, resumed_rows = outcome(killed)
    assert result["env_steps"] == 440 and resumed["env_steps"] == 440
    assert resumed["evals"] == whole["evals"]
    assert resumed["agent"]["num_updates"] == whole["agent"]["num_updates"]
    for name, value in whole["agent"]["model"].items():
        assert same(resumed["agent"]["model"][name], value), name
    assert resumed_rows == whole_rows  # rows logged after the last checkpoint were cut and logged again


def test_resume_of_another_config_is_refused_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    cli_main(tiny_args(out, **{"train.total_env_steps": 240}))
    config_before = (out / "config.yaml").read_text()
    with pytest.raises(SystemExit) as exc:
        cli_main(tiny_args(out, **{"train.total_env_steps": 280, "agent.policy_lr": 0.01}))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(out / "checkpoint.pt") in err and "agent.policy_lr" in err and err.count("hash") == 2, err
    assert "--train.force_resume true" in err
    assert (out / "config.yaml").read_text() == config_before  # nothing written by the refused run
    # extending the budget is the same run; forcing accepts the other config
    forced = cli_main(tiny_args(out, **{"train.total_env_steps": 280, "agent.policy_lr": 0.01,
                                        "train.force_resume": "true"}))  # fmt: skip
    assert forced["env_steps"] == 280


def test_bad_checkpoints_and_values_fail_with_one_line(tmp_path, capsys):
    good = tmp_path / "good"
    cli_main(tiny_args(good, **{"train.total_env_steps": 220}))
    raw = (good / "checkpoint.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(raw[: len(raw) // 2])
    lightning = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6.6", "hyper_parameters": {}}, lightning)
    old_layout = tmp_path / "layout1.pt"  # a checkpoint written before WeightingStep (no "layout" entry)
    ckpt = torch.load(good / "checkpoint.pt", weights_only=False)
    ckpt.pop("layout")
    torch.save(ckpt, old_layout)
    cases = {
        "truncated": ({"train.resume": truncated}, "cannot be read as a torch checkpoint"),
        "lightning": ({"train.resume": lightning}, "not a simpo-bio control checkpoint (a Lightning checkpoint"),
        "directory": ({"train.resume": tmp_path}, "is a directory"),
        "missing": ({"train.resume": tmp_path / "nope.pt"}, "not found"),
        "old layout": ({"train.resume": old_layout}, "checkpoint layout 1, this version reads layout 2"),
        "old key": ({"train.output_dir": tmp_path}, "output_dir"),  # renamed to out_dir: no shim
        "old agent key": ({"agent.repel_margin": 2.0}, "repel_margin"),  # renamed to repel_ratio
        "temperature": ({"agent.temperature": 0}, "agent.temperature must be a finite number > 0"),
        "negative": ({"train.batch_size": -4}, "train.batch_size must be an integer >= 1"),
        "scheme": ({"agent.scheme": "bogus"}, "unknown weighting scheme 'bogus'"),
        "env": ({"env.id": "Pendulum-v1"}, "unknown control env 'Pendulum-v1'"),
        "type": ({"train.eval_every": "often"}, 'train.eval_every'),
    }
    for name, (overrides, message) in cases.items():
        out = tmp_path / f"out_{name}"
        start = time.perf_counter()
        with pytest.raises(SystemExit) as exc:
            cli_main(tiny_args(out, **overrides))
        assert time.perf_counter() - start < 1.0, name
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and len(err.splitlines()) == 1 and message in err, (name, err)
        assert err.startswith("simpo-bio control: error: ")
        assert not (out / "config.yaml").exists() and not (out / "metrics.csv").exists(), name
