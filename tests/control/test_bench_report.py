"""bench/control.py: SB3 baselines record evaluations on the same schedule; `report` merges compare JSONs."""

import importlib.util
import json
from pathlib import Path

import pytest

EXTRA = "needs the [control] extra (pip install 'simpo-bio[control]')"
pytest.importorskip("mujoco", reason=EXTRA)
pytest.importorskip("stable_baselines3", reason=EXTRA)

from simpo_bio.control.train import EnvConfig, TrainConfig  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "bench" / "control.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_control", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _compare_json(path, env, steps, algo, seeds, returns):
    runs = [{"return": r, "env_steps_per_s": 100.0, "updates_per_s": 10.0,
             "evals": [[steps // 2, r / 2, 1.0], [steps, r, 1.0]]} for r in returns]  # fmt: skip
    path.write_text(json.dumps({"env": env, "steps": steps, "seeds": seeds,
                                "table": {algo: {"mean": 0, "std": 0, "runs": runs}}}))  # fmt: skip
    return str(path)


def test_report_merges_seeds_and_algorithms(bench, tmp_path, capsys):
    files = [
        _compare_json(tmp_path / "a.json", "Env-v4", 1000, "sac", [0], [1000.0]),
        _compare_json(tmp_path / "b.json", "Env-v4", 1000, "sac", [1, 2], [2000.0, 3000.0]),
        _compare_json(tmp_path / "c.json", "Env-v4", 1000, "linear_neg", [0, 1], [1500.0, 2500.0]),
    ]
    png = tmp_path / "curves_{env}.png"
    bench.main(["--json", str(tmp_path / "r.json"), "report", *files, "--png", str(png)])
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["Env-v4/sac"]["returns"] == [1000.0, 2000.0, 3000.0]
    assert res["Env-v4/sac"]["mean"] == pytest.approx(2000.0)
    assert res["Env-v4/linear_neg"]["mean"] == pytest.approx(2000.0)
    assert res["Env-v4/linear_neg"]["vs_sac"] == "1.00x"
    assert (tmp_path / "curves_Env-v4.png").stat().st_size > 0
    table = capsys.readouterr().out
    assert "| SB3 SAC | 0, 1, 2 | 2000 +- 816 |" in table


def test_report_refuses_mixed_budgets_and_foreign_json(bench, tmp_path):
    a = _compare_json(tmp_path / "a.json", "Env-v4", 1000, "sac", [0], [1.0])
    b = _compare_json(tmp_path / "b.json", "Env-v4", 2000, "sac", [1], [1.0])
    with pytest.raises(SystemExit, match="different budgets"):
        bench.main(["report", a, b])
    (tmp_path / "smoke.json").write_text(json.dumps({"rows": [], "verdict": "PASS"}))
    with pytest.raises(SystemExit, match="not the JSON of a `compare` run"):
        bench.main(["report", str(tmp_path / "smoke.json")])


def test_sb3_baseline_evaluates_on_the_harness_schedule(bench):
    env = EnvConfig(id="InvertedPendulum-v4", num_envs=2)
    tr = TrainConfig(total_env_steps=600, learning_starts=200, batch_size=32, buffer_size=1000, eval_every=200,
                     eval_episodes=2, seed=0)  # fmt: skip
    res = bench.run_sb3("td3", env, tr, seed=0)
    assert [e[0] for e in res["evals"]] == [200, 400, 600]
    assert res["return"] == res["evals"][-1][1]
    assert res["updates_per_s"] > 0 and res["env_steps_per_s"] > 0


def test_evalckpt_reevaluates_a_finished_run(bench, tmp_path):
    from simpo_bio.control.agent import AgentConfig
    from simpo_bio.control.train import train

    agent = AgentConfig(num_particles=4, flow_steps=3, hidden=32, depth=2, eval_candidates=4)
    tr = TrainConfig(total_env_steps=400, learning_starts=200, batch_size=32, eval_every=0, eval_episodes=2,
                     checkpoint_every=0, seed=3, output_dir=str(tmp_path / "run"), wandb=False, progress=False)  # fmt: skip
    res = train(EnvConfig(id="InvertedPendulum-v4", num_envs=2), agent, tr)
    out = bench.cmd_evalckpt(bench.argparse.Namespace(runs=[str(tmp_path / "run")], candidates=[1, 4], episodes=2))
    row = out[str(tmp_path / "run")]
    assert row["env_steps"] == 400 and set(row["returns"]) == {1, 4}
    assert all(v > 0 for v in row["returns"].values())  # InvertedPendulum pays +1 per step alive
    assert res["evals"][-1][0] == 400
    with pytest.raises(SystemExit, match="no checkpoint.pt"):
        bench.cmd_evalckpt(bench.argparse.Namespace(runs=[str(tmp_path)], candidates=[1], episodes=1))
