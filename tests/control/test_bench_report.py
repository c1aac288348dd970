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
    neg = _compare_json(tmp_path / "d.json", "Env-v4", 1000, "linear", [0], [-50.0])
    bench.main(["--json", str(tmp_path / "r2.json"), "report", *files, neg])
    assert json.loads((tmp_path / "r2.json").read_text())["Env-v4/linear"]["vs_sac"] == "n/a"
    assert (tmp_path / "curves_Env-v4.png").stat().st_size > 0
    table = capsys.readouterr().out
    assert "| SB3 SAC | 0, 1, 2 | 2000 +- 816 |" in table


def test_report_keeps_dmc_reward_shapes_apart(bench, tmp_path):
    a = _compare_json(tmp_path / "a.json", "dmc/cheetah-run", 1000, "sac", [0], [6.0])
    res = json.loads(Path(a).read_text())
    res["reward_shape"] = "sqrt"
    Path(a).write_text(json.dumps(res))
    b = _compare_json(tmp_path / "b.json", "dmc/cheetah-run", 1000, "sac", [0], [0.1])
    res = json.loads(Path(b).read_text())
    res["override"] = ["--env.reward_shape", "exp"]  # older files: the shape is only in the overrides
    Path(b).write_text(json.dumps(res))
    bench.main(["--json", str(tmp_path / "r.json"), "report", a, b, "--png", str(tmp_path / "c_{env}.png")])
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["dmc/cheetah-run (reward sqrt)/sac"]["returns"] == [6.0]
    assert out["dmc/cheetah-run (reward exp)/sac"]["returns"] == [0.1]
    assert (tmp_path / "c_dmc_cheetah-run_exp.png").exists()


def test_report_refuses_mixed_budgets_and_foreign_json(bench, tmp_path):
    a = _compare_json(tmp_path / "a.json", "Env-v4", 1000, "sac", [0], [1.0])
    b = _compare_json(tmp_path / "b.json", "Env-v4", 2000, "sac", [1], [1.0])
    with pytest.raises(SystemExit, match="different budgets"):
        bench.main(["report", a, b])
    (tmp_path / "smoke.json").write_text(json.dumps({"rows": [], "verdict": "PASS"}))
    with pytest.raises(SystemExit, match="not the JSON of a `compare` or `landscape` run"):
        bench.main(["report", str(tmp_path / "smoke.json")])


def _landscape_json(path, steps, seeds, cells, kind=True, first=None):
    """cells: {"<shape>/<scheme>": [return per seed]}; kind=False writes the older format (no "kind", no "runs");
    first: the return of every run's first evaluation (at steps // 2)."""
    res = {"env": "dmc/cheetah-run", "steps": steps, "seeds": seeds,
           "table": {k: {"mean": 0, "std": 0, "returns": v} for k, v in cells.items()}}  # fmt: skip
    if kind:
        res["kind"] = "landscape"
        for row in res["table"].values():
            row["runs"] = [{"return": r, "evals": [[steps // 2, first, 0.0], [steps, r, 0.0]]} for r in row["returns"]]
    path.write_text(json.dumps(res))
    return str(path)


def test_report_merges_landscape_seeds_into_a_shape_by_scheme_table(bench, tmp_path, capsys):
    a = _landscape_json(tmp_path / "a.json", 1000, [0], {"exp/linear": [30.0], "exp/square": [10.0],
                                                         "sqrt/linear": [5.0], "sqrt/square": [9.0]}, kind=False)  # fmt: skip
    b = _landscape_json(tmp_path / "b.json", 1000, [1, 2], {"exp/linear": [50.0, 40.0], "sqrt/linear": [7.0, 6.0]},
                        first=0.25)  # fmt: skip
    c = _compare_json(tmp_path / "c.json", "Env-v4", 1000, "sac", [0], [100.0])
    bench.main(["--json", str(tmp_path / "r.json"), "report", a, b, c])
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["dmc/cheetah-run/exp/linear"]["returns"] == [30.0, 50.0, 40.0]
    assert res["dmc/cheetah-run/exp/linear"]["mean"] == pytest.approx(40.0)
    assert res["dmc/cheetah-run/exp/square"]["seeds"] == [0]
    assert res["Env-v4/sac"]["mean"] == pytest.approx(100.0)  # compare files in the same call still tabulate
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("| sqrt") or ln.startswith("| exp")]
    assert lines[0].startswith("| sqrt |")  # flat before steep whatever the file order
    assert lines[0].endswith("| `square` |") and lines[1].endswith("| `linear` |")
    assert "s0 30, s1 50, s2 40" in lines[1]
    assert lines[1].startswith("| exp | 0.25 at 500 |")  # first evaluation, from the files that carry it
    assert "| 9 +- 0 (s0 9) |" in lines[0]  # 3 significant digits, not rounded to integers


def test_report_refuses_landscape_files_with_different_budgets(bench, tmp_path):
    a = _landscape_json(tmp_path / "a.json", 1000, [0], {"exp/linear": [1.0]})
    b = _landscape_json(tmp_path / "b.json", 2000, [1], {"exp/linear": [1.0]})
    with pytest.raises(SystemExit, match="landscape runs with different budgets"):
        bench.main(["report", a, b])


def test_sb3_baseline_evaluates_on_the_harness_schedule(bench):
    env = EnvConfig(id="InvertedPendulum-v4", num_envs=2)
    tr = TrainConfig(total_env_steps=600, learning_starts=200, batch_size=32, buffer_size=1000, eval_every=200,
                     eval_episodes=2, seed=0)  # fmt: skip
    res = bench.run_sb3("td3", env, tr, seed=0)
    assert [e[0] for e in res["evals"]] == [200, 400, 600]
    assert res["return"] == res["evals"][-1][1]
    assert res["updates_per_s"] > 0 and res["env_steps_per_s"] > 0
    # the default 3 x 256 Mish: two 256 x 256 matrices in each of actor, 2 critics and their 3 targets, plus the rest
    assert res["activations"] == ["Mish"] and res["parameters"] > 12 * 256 * 256


def test_sb3_baseline_takes_the_grids_networks(bench):
    # 1 x 32 ReLU on InvertedPendulum (4 obs, 1 action): actor 4*32+32 + 32+1 = 193 weights and two critics of
    # 5*32+32 + 32+1 = 225 each, each network with its target copy: 2 * 193 + 4 * 225 = 1,286
    env = EnvConfig(id="InvertedPendulum-v4", num_envs=1)
    tr = TrainConfig(total_env_steps=300, learning_starts=200, batch_size=32, buffer_size=1000, eval_every=300,
                     eval_episodes=1, seed=0)  # fmt: skip
    res = bench.run_sb3("td3", env, tr, seed=0, hidden=32, depth=1, activation="relu")
    assert res["activations"] == ["ReLU"] and res["parameters"] == 1286


def test_evalckpt_reevaluates_a_finished_run(bench, tmp_path):
    from simpo_bio.control.agent import AgentConfig
    from simpo_bio.control.train import train

    agent = AgentConfig(group_size=4, num_steps=3, hidden=32, depth=2, eval_candidates=4)
    tr = TrainConfig(total_env_steps=400, learning_starts=200, batch_size=32, eval_every=0, eval_episodes=2,
                     checkpoint_every=0, seed=3, out_dir=str(tmp_path / "run"), wandb=False, progress=False)  # fmt: skip
    res = train(EnvConfig(id="InvertedPendulum-v4", num_envs=2), agent, tr)
    out = bench.cmd_evalckpt(bench.argparse.Namespace(runs=[str(tmp_path / "run")], candidates=[1, 4], episodes=2))
    row = out[str(tmp_path / "run")]
    assert row["env_steps"] == 400 and set(row["returns"]) == {1, 4}
    assert all(v > 0 for v in row["returns"].values())  # InvertedPendulum pays +1 per step alive
    assert res["evals"][-1][0] == 400
    with pytest.raises(SystemExit, match="no checkpoint.pt"):
        bench.cmd_evalckpt(bench.argparse.Namespace(runs=[str(tmp_path)], candidates=[1], episodes=1))


def test_rsm_report_refuses_a_run_of_another_grid(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_control_rsm", BENCH.parent / "control_rsm.py")
    rsm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rsm)
    run = {"return": 10.0, "env_steps_per_s": 1.0, "updates_per_s": 1.0, "seed": 0, "grid": rsm.GRID,
           "evals": [[500, 1.0, 0.0], [1500, 10.0, 0.0]]}  # fmt: skip
    (tmp_path / "Env-v4" / "sac").mkdir(parents=True)
    (tmp_path / "Env-v4" / "sac" / "seed0.json").write_text(json.dumps(run))
    rsm.main(["report", "--out-dir", str(tmp_path), "--png", "none"])  # its own grid: tabulated
    assert "| SB3 SAC | 1 | 10 ± 0 | 0: 10 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"a run of 1500 env steps from 1 env\(s\), not grid 50k's 50000 from 1"):
        rsm.main(["report", "--grid", "50k", "--out-dir", str(tmp_path), "--png", "none"])
    # the same budget from another number of envs (another number of updates) is another grid too
    (tmp_path / "Env-v4" / "sac" / "seed0.json").write_text(json.dumps(dict(run, grid=rsm.GRID_50K)))
    with pytest.raises(SystemExit, match=r"50000 env steps from 1 env\(s\), not grid 50k5's 50000 from 5"):
        rsm.main(["report", "--grid", "50k5", "--out-dir", str(tmp_path), "--png", "none"])


def test_rsm_50k5_grid_runs_simpo_as_the_cpu_config(bench):
    """The third grid's SiMPO is configs/control/halfcheetah.yaml's agent and harness (bench/results/control.md)."""
    from dataclasses import replace

    from simpo_bio.control.agent import AgentConfig

    spec = importlib.util.spec_from_file_location("bench_control_rsm", BENCH.parent / "control_rsm.py")
    rsm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rsm)
    grid = rsm.GRID_50K5
    env, agent, tr = bench.load_config(str(BENCH.parents[1] / "configs/control/halfcheetah.yaml"))
    assert AgentConfig(**grid["common"], **grid["agents"]["linear_neg"]) == replace(agent, algorithm="simpo")
    assert grid["env"]["num_envs"] == env.num_envs
    for key in ("total_env_steps", "learning_starts", "updates_per_step", "batch_size", "eval_every", "eval_episodes"):
        assert grid["train"][key] == getattr(tr, key), key
    for algo in ("sdac", "dpmd"):  # the RSM agents' samplers sized as SiMPO's there
        cfg = AgentConfig(**grid["common"], **grid["agents"][algo])
        assert (cfg.group_size, cfg.num_steps, cfg.eval_candidates) == (8, 10, 8)
    # the fourth grid's DPMD differs from the third's only in the dual's floor, and the agent builds with it
    floor = AgentConfig(**grid["common"], **grid["agents"]["dpmd_floor"])
    assert replace(floor, temperature_min=AgentConfig.temperature_min) == AgentConfig(
        **grid["common"], **grid["agents"]["dpmd"])
    assert floor.temperature_min == 1e-4
    # the fifth grid's DPMD is the fourth's config (its candidates are the library's noised ones since it won)
    assert AgentConfig(**grid["common"], **grid["agents"]["dpmd_noised"]) == floor
