"""bench/gpu_check.py at the CPU toy size: every printed / JSON field is there with sane values (seconds, a small
DHS-layout table behind a fake download: no network, no real cache); bad input gives one line and exit 2."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "gpu_check.py"
ORACLE = ROOT / "checkpoints" / "dna" / "oracle_ft.ckpt"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("bench_gpu_check", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _positive(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_toy_run_prints_and_writes_every_number(gpu_check, fake_dhs, tmp_path, capsys):
    out = tmp_path / "toy.json"
    rc = gpu_check.main(["--toy", "--threads", "1", "--cache-dir", str(fake_dhs["cache"]), "--oracle", str(ORACLE),
                         "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    s = json.loads(out.read_text())
    assert s["complete"] is True and s["toy"] is True and s["device"]["accelerator"] == "cpu"
    assert s["device"]["precision"] == "32-true"
    assert 0 < s["wall_s"] < 60 * s["max_minutes"]

    p = s["pretrain"]
    assert (p["hidden_dim"], p["num_stacks"], p["block_order"], p["seq_len"]) == (8, 1, "grouped", 200)
    assert p["steps"] == 4 and p["stopped_by"] == "steps" and p["sequences"] == 4 * 8
    assert p["measured_steps"] == 3 and p["measured_sequences"] == 3 * 8  # after the one warm-up step
    assert _positive(p["seq_per_s"]) and _positive(p["tokens_per_s"]) and _positive(p["params"])
    assert p["tokens_per_s"] == pytest.approx(200 * p["seq_per_s"])
    assert p["measured_s"] <= p["fit_s"]

    f = s["finetune"]
    assert (f["group_size"], f["num_groups"], f["num_steps"]) == (4, 1, 4)
    assert f["iterations"] == f["iterations_requested"] == 2 and not f["stopped_by_guard"]
    assert f["reward_queries"] == f["sampled_sequences"] == 2 * 4  # iterations * group size * groups
    for key in ("seq_per_s", "sampler_seq_per_s", "oracle_calls_per_s", "seq_per_s_after_first", "iteration_mean_s"):
        assert _positive(f[key]), key
    assert f["sampler_seq_per_s"] >= f["seq_per_s"]  # sampling is a part of the iteration
    assert len(f["per_iteration"]) == 2
    for it in f["per_iteration"]:
        split = it["time_sample_s"] + it["time_reward_s"] + it["time_update_s"]
        assert all(it[k] > 0 for k in ("time_sample_s", "time_reward_s", "time_update_s"))
        assert split <= it["iteration_s"] + 1e-6  # the stages run inside the iteration
        assert split >= 0.5 * it["iteration_s"]  # and are most of it
        assert it["time_other_s"] == pytest.approx(it["iteration_s"] - split)
        assert math.isfinite(it["reward_mean"])
    assert sum(f["split_share"].values()) == pytest.approx(1.0)
    assert f["total_s"] == pytest.approx(sum(it["iteration_s"] for it in f["per_iteration"]))
    assert f["oracle_calls_per_s"] == pytest.approx(8 / f["time_reward_s_total"])

    m = s["memory"]
    assert m["measure"].startswith("peak RSS") and _positive(m["pretrain_peak_mib"])
    assert m["finetune_peak_mib"] >= m["pretrain_peak_mib"]

    for text in ("sequences/s", "tokens/s", "calls/s", "sample", "reward", "update", "peak memory",
                 "reward_queries 8", "2 of 2 iterations"):
        assert text in printed, text
    assert printed.strip() == gpu_check.report(s)


@pytest.mark.parametrize("argv, name", [
    (["--pretrain-minutes", "-1"], "--pretrain-minutes"),
    (["--toy", "--pretrain-steps", "0"], "--pretrain-steps"),
    (["--toy", "--group-size", "1"], "--group-size"),
    (["--max-minutes", "nan"], "--max-minutes"),
    (["--max-minutes", "2", "--pretrain-minutes", "2"], "--pretrain-minutes"),
])
def test_bad_budget_is_one_argparse_line(gpu_check, argv, name, capsys):
    with pytest.raises(SystemExit) as err:
        gpu_check.main(argv)
    assert err.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1 and name in lines[0]


def test_missing_oracle_is_one_line(gpu_check, tmp_path, capsys):
    rc = gpu_check.main(["--toy", "--oracle", str(tmp_path / "no_such.ckpt"), "--cache-dir", str(tmp_path / "c")])
    assert rc == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("gpu_check: error:") and "no_such.ckpt" in err[0]
