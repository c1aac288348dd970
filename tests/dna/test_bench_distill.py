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


def test_tenth_grid_entries_share_a_selection_and_fit_the_budget():
    b = bench()
    tenth = ["distill_m1024", "distill_m1024_lr1e-3", "distill_x2", "distill_rl"]
    assert {b.GRID[e]["kept_label"] for e in tenth} == {"distill_m1024_kept"}
    # the first round of every entry is the control's selection; only the named setting differs
    control = b.GRID["distill_m1024"]["distill"]
    assert {**control, "lr": 1e-3} == b.GRID["distill_m1024_lr1e-3"]["distill"]
    assert b.GRID["distill_x2"]["distill"] == control == b.GRID["distill_rl"]["distill"]
    assert [b.entry_calls(b.GRID[e]) for e in tenth] == [2944, 2944, 3968, 4000]  # 1,920 + 1,024 x rounds + 33 x 32
    assert b.entry_calls(b.GRID["distill_motif"]) == 3968 and b.entry_calls(b.GRID["calls4000"]) == 4000
    assert all(b.entry_calls(spec) <= 4000 for spec in b.GRID.values())  # the policy-alone gate's budget


def test_continue_fit_runs_more_iterations_from_the_current_policy():
    b, m = bench(), make()
    b.distill_policy(m, 0, epochs=1, candidates=16, keep=8, num_steps=4, selection_weight=0.0)
    distilled = {k: v.clone() for k, v in m.policy.state_dict().items()}
    calls, rows = int(m.reward_queries), len(m.history)
    b.continue_fit(m, 2)
    assert int(m.reward_queries) - calls == 2 * 8 and len(m.history) - rows == 2  # two iterations of one group
    assert "kl_ref" in m.history[-1]
    assert any(not torch.equal(distilled[k], v) for k, v in m.policy.state_dict().items())  # it trained the policy


@pytest.mark.parametrize("bad", [0, -3, 1.5, True])
def test_bad_rl_after_is_a_one_line_error(bad):
    b, m = bench(), make()
    with pytest.raises(ValueError, match="rl_after must be an integer >= 1") as e:
        b.continue_fit(m, bad)
    assert "\n" not in str(e.value)


def make_update(lr=1e-2, kl_coef=0.0, repel_margin=1.386):
    from simpo_bio.dna.finetune import RewardConfig, SamplingConfig, SiMPOFineTuning, UpdateConfig

    return SiMPOFineTuning(pretrained=tiny_policy(), oracle=GCOracle(), seed=1, log_reference_elbo=False,
                           sampling=SamplingConfig(group_size=8, num_groups=1, num_steps=4, seq_len=20),
                           reward=RewardConfig(constraints=None),
                           update=UpdateConfig(lr=lr, kl_coef=kl_coef, repel_margin=repel_margin))


def test_selection_update_uses_the_distillation_selection_and_counts_its_calls():
    b = bench()
    x, index = b.select_candidates(make_update(), 3, candidates=64, keep=16, num_steps=4, motif_ratio=1.0)
    m = make_update()
    kept, losses = b.selection_update(m, 3, epochs=2, negative_mass=1.0, candidates=64, keep=16, batch_size=8,
                                      num_steps=4)
    assert int(m.reward_queries) == 64 and len(losses) == 2
    assert sorted(map(tuple, kept.tolist())) == sorted(map(tuple, x[index].tolist()))  # the same kept designs


def test_signed_selection_update_pushes_the_rejected_designs_away():
    b = bench()
    x, index = b.select_candidates(make_update(), 0, candidates=64, keep=16, num_steps=4, motif_ratio=1.0)
    rejected = torch.ones(64, dtype=torch.bool)
    rejected[index] = False

    def nll(negative_mass, epochs):  # mean -ELBO bound (nats) of the rejected and the kept after the update
        # the tiny model starts near uniform (log 4 nats per base), so the cap is set above it to leave room
        m = make_update(repel_margin=1.5)
        b.selection_update(m, 0, epochs=epochs, negative_mass=negative_mass, candidates=64, keep=16, batch_size=8,
                           num_steps=4)
        v = -m.policy.log_likelihood(x, num_draws=32, generator=torch.Generator().manual_seed(0))
        return float(v[rejected].mean()), float(v[~rejected].mean())

    (rej_signed, kept_signed), (rej_pos, kept_pos) = nll(1.0, 10), nll(0.0, 40)  # 80 steps each
    assert rej_signed > rej_pos + 0.5  # the negative weights raise the rejected designs' bound
    assert rej_signed - kept_signed > 0.0 and rej_pos - kept_pos > 0.0  # and both fits favour the kept


@pytest.mark.parametrize("bad", [{"negative_mass": -0.1}, {"negative_mass": 1.5}, {"epochs": 0},
                                 {"batch_size": 0}, {"candidates": 16, "negative_mass": 0.5},
                                 {"candidates": 8}])
def test_bad_selection_update_values_are_one_line_errors(bad):
    b = bench()
    kwargs = {"epochs": 1, "negative_mass": 1.0, "keep": 16, "num_steps": 4, **bad}
    with pytest.raises(ValueError, match="selection update") as e:
        b.selection_update(make_update(), 0, **kwargs)
    assert "\n" not in str(e.value)


def test_eleventh_grid_entries_take_as_many_steps_as_the_distillation():
    b = bench()
    pos, signed = b.GRID["sel_pos"]["selection_update"], b.GRID["sel_signed"]["selection_update"]
    assert (pos["negative_mass"], signed["negative_mass"]) == (0.0, 1.0)
    # 20 epochs over the 256 kept and 5 over all 1,024 candidates: 160 minibatches of 32 each, as distill20
    assert pos["epochs"] * b.DESIGNS // 32 == signed["epochs"] * b.DISTILL_CANDIDATES // 32 == 160
    assert b.entry_calls(b.GRID["sel_pos"]) == b.entry_calls(b.GRID["sel_signed"]) == 2944
    assert b.GRID["sel_pos"]["kept_label"] == b.GRID["sel_signed"]["kept_label"] == "distill_m1024_kept"
