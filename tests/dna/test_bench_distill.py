"""bench/dna_policy_alone.py's distillation candidate (eighth grid): selection, likelihood fit, calls, bad values."""

import importlib.util
from pathlib import Path

import pytest
import torch
from test_finetune import GCOracle, tiny_policy

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dna_policy_alone.py"


def bench():
    spec = importlib.util.spec_from_file_location("bench_dna_policy_alone_distill", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make():
    from simpo_bio.dna.finetune import RewardConfig, SamplingConfig, SiMPOFineTuning

    return SiMPOFineTuning(pretrained=tiny_policy(), oracle=GCOracle(), seed=1, log_reference_elbo=False,
                           sampling=SamplingConfig(group_size=8, num_groups=1, num_steps=4, seq_len=20),
                           reward=RewardConfig(constraints=None))


def gc(tokens):
    return ((tokens == 1) | (tokens == 2)).float().mean()


def test_distill_fits_the_kept_set_and_counts_its_calls():
    b, m = bench(), make()
    ref_before = {k: v.clone() for k, v in m.reference.state_dict().items()}
    reference = gc(m.reference.sample(512, 20, num_steps=4, seed=5))
    calls = int(m.reward_queries)
    # selection weight 0: the top 16 of 64 by the GC reward, so the kept set is GC-rich
    kept, losses = b.distill_policy(m, 0, epochs=30, candidates=64, keep=16, lr=1e-2, batch_size=8, num_steps=4,
                                    selection_weight=0.0)
    assert kept.shape == (16, 20) and kept.dtype == torch.long and len(losses) == 30
    assert int(m.reward_queries) - calls == 64  # every candidate scored once by the fine-tuning oracle
    assert gc(kept) > reference + 0.1
    # maximum likelihood on the kept set moves the policy's own samples toward it; the reference is untouched
    assert gc(m.policy.sample(512, 20, num_steps=4, seed=5)) > reference + 0.05
    assert all(torch.equal(ref_before[k], v) for k, v in m.reference.state_dict().items())


def test_distill_with_the_grid_selection_runs():
    b, m = bench(), make()
    kept, losses = b.distill_policy(m, 1, epochs=1, candidates=32, keep=8, num_steps=4)
    assert kept.shape == (8, 20) and len(losses) == 1


def test_nearest_hamming_is_the_distance_to_the_closest_kept_row():
    b = bench()
    kept = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]])
    x = torch.tensor([[0, 0, 0, 1], [1, 1, 2, 2], [3, 3, 3, 3]])
    assert b.nearest_hamming(x, kept).tolist() == [1, 2, 4]


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"epochs": 1.5}, {"epochs": 2, "lr": 0.0},
                                 {"epochs": 2, "batch_size": 0}, {"epochs": 2, "candidates": 8}])
def test_bad_distill_values_are_one_line_errors(bad):
    b, m = bench(), make()
    with pytest.raises(ValueError, match="distill") as e:
        b.distill_policy(m, 0, keep=16, num_steps=4, **bad)
    assert "\n" not in str(e.value)


def test_eighth_grid_entries_spend_their_calls():
    b = bench()
    assert b.schedule(b.GRID["calls4000"]) == (32, 125)  # 4,000 calls in groups of 32
    assert b.schedule(b.GRID["small_kl"]) == (32, 125)
    assert b.schedule(b.GRID["default"]) == (32, 60)  # one make-demo run's 1,920
    assert b.schedule(b.GRID["groups16"]) == (16, 120)
    with pytest.raises(ValueError, match="'odd': 32 x 31 != 1000 calls"):
        b.schedule({"calls": 1000}, "odd")
    assert b.GRID["small_kl"]["update"] == {"kl_coef": 0.1, "lr": 5e-4}
    assert b.GRID["distill5"]["distill"] == {"epochs": 5} and b.GRID["distill20"]["distill"] == {"epochs": 20}
    # the ninth grid's entries share one kept set per seed: the same selection, only the epochs differ
    m, e = b.GRID["distill_motif"], b.GRID["distill_motif_e60"]
    assert m["kept_label"] == e["kept_label"] and {**m["distill"], "epochs": 60} == e["distill"]
    assert b.CALLS + m["distill"]["candidates"] <= 4000  # inside the policy-alone gate's budget


def test_entry_calls_count_every_fine_tuning_oracle_call_of_an_entry():
    b = bench()
    assert b.entry_calls(b.GRID["default"]) == 1920 and b.entry_calls(b.GRID["calls4000"]) == 4000
    assert b.entry_calls(b.GRID["distill20"]) == 1920 + 1024 and b.entry_calls(b.GRID["distill_motif"]) == 3968
    assert all(b.entry_calls(spec) <= 4000 for spec in b.GRID.values())  # the policy-alone gate's budget

