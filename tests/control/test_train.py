"""End-to-end: a short seeded InvertedPendulum run learns; a resumed run continues the step count."""

import csv

import pytest
import yaml

EXTRA = "needs the [control] extra (pip install 'simpo-bio[control]')"
pytest.importorskip("mujoco", reason=EXTRA)
pytest.importorskip("stable_baselines3", reason=EXTRA)

from simpo_bio.control.agent import AgentConfig  # noqa: E402
from simpo_bio.control.train import (  # noqa: E402
    EnvConfig,
    TrainConfig,
    cli_main,
    train,
)

TINY_AGENT = dict(group_size=4, num_steps=3, hidden=32, depth=2, eval_candidates=4, target_kl=0.5,
                  critic_lr=1e-3, policy_lr=1e-3, policy_lr_final=1e-4, polyak=0.02)  # fmt: skip


def test_short_inverted_pendulum_run_improves(tmp_path):
    result = train(
        EnvConfig(id="InvertedPendulum-v4", num_envs=2),
        AgentConfig(**TINY_AGENT),
        TrainConfig(total_env_steps=3000, learning_starts=500, batch_size=64, eval_every=500, eval_episodes=3,
                    checkpoint_every=0, seed=1, out_dir=str(tmp_path), wandb=False, progress=False),
    )  # fmt: skip
    evals = result["evals"]
    assert [e[0] for e in evals] == [500, 1000, 1500, 2000, 2500, 3000]
    initial, final = evals[0][1], evals[-1][1]  # the first evaluation follows a single update
    assert final > 2 * initial + 5, evals
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert any(r["episode_return"] for r in rows) and any(r["critic_loss"] for r in rows)


def test_resume_continues_step_count(tmp_path):
    cfg = {
        "env": {"id": "InvertedPendulum-v4", "num_envs": 2},
        "agent": TINY_AGENT,
        "train": {"total_env_steps": 800, "learning_starts": 400, "batch_size": 32, "eval_every": 400,
                  "eval_episodes": 1, "checkpoint_every": 0, "save_buffer": True, "seed": 0,
                  "out_dir": str(tmp_path / "run"), "wandb": False, "progress": False},
    }  # fmt: skip
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    first = cli_main(["--config", str(path)])
    assert first["env_steps"] == 800 and first["updates"] == 200
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "config.yaml").exists()
    second = cli_main(["--config", str(path), "--train.total_env_steps", "1200", "--train.resume", "auto"])
    assert second["env_steps"] == 1200
    assert second["updates"] == 400  # 200 before + 200 after the restart: counters continue, not restart
    assert [e[0] for e in second["evals"]] == [400, 800, 1200]
    # rates cover the whole run: the first segment's training time is carried in the checkpoint
    assert second["wall_time_s"] > first["wall_time_s"]
    assert second["updates_per_s"] == pytest.approx(400 / second["wall_time_s"])
    third = cli_main(["--config", str(path), "--train.total_env_steps", "1200", "--train.resume", "auto"])
    assert third["updates"] == 400 and third["evals"] == second["evals"]  # finished: nothing more to do
    assert third["updates_per_s"] == pytest.approx(second["updates_per_s"], rel=0.2)
    import torch


    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["env_steps"] == 1200 and ckpt["agent"]["num_updates"] == 400
    assert ckpt["replay_journal"]["rows"] * 2 == 1200  # the saved buffer was reloaded and kept filling
    chunks = sorted(p.name for p in (tmp_path / "run" / "replay_buffer").glob("rows_*.npz"))
    assert chunks == [c[0] for c in ckpt["replay_journal"]["chunks"]]
    steps = [int(r["env_steps"]) for r in csv.DictReader(open(tmp_path / "run" / "metrics.csv"))]
    assert steps == sorted(steps) and steps[-1] == 1200
    with pytest.raises(SystemExit) as exc:
        cli_main(["--config", str(path), "--train.resume", str(tmp_path / "missing.pt")])
    assert exc.value.code == 2

    # a checkpoint without the training time (older runs): rates of the new segment only, and it resumes again
    legacy = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    del legacy["elapsed_s"]
    torch.save(legacy, tmp_path / "run" / "checkpoint.pt")
    fourth = cli_main(["--config", str(path), "--train.total_env_steps", "1400", "--train.resume", "auto"])
    assert fourth["updates"] == 500
    assert fourth["updates_per_s"] == pytest.approx(100 / fourth["wall_time_s"])
    fifth = cli_main(["--config", str(path), "--train.total_env_steps", "1600", "--train.resume", "auto"])
    assert fifth["updates"] == 600


def test_every_shipped_config_parses_and_builds_an_agent():
    from pathlib import Path

    from simpo_bio.control.agent import make_agent
    from simpo_bio.control.envs import DMC_TASKS, GYM_TASKS
    from simpo_bio.control.train import build_parser

    configs = sorted((Path(__file__).resolve().parents[2] / "configs" / "control").rglob("*.yaml"))
    assert len(configs) >= 12
    parser = build_parser()
    for path in configs:
        init = parser.instantiate(parser.parse_args(["--config", str(path)]))
        assert init.env.id in DMC_TASKS or init.env.id.split("-")[0] in GYM_TASKS, path
        make_agent(5, 2, init.agent)  # validates the scheme name and its parameters
        if "paper" in path.parts and init.agent.algorithm != "simpo":  # RSM: tests/control/test_rsm.py
            assert (init.train.total_env_steps, init.agent.num_steps) == (1_000_000, 20), path
        elif "paper" in path.parts:
            a, t = init.agent, init.train
            assert (t.total_env_steps, a.num_steps, a.time_schedule, a.hidden, a.depth, a.activation) == (
                1_000_000,
                20,
                "cosine",
                256,
                3,
                "mish",
            ), path
            assert (a.policy_lr, a.policy_lr_final, t.buffer_size, init.env.num_envs) == (
                3e-4,
                3e-5,
                1_000_000,
                5,
            )


