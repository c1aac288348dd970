"""Composition-matched selection of the final designs (simpo_bio.dna.design.selection) and its use at export."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import SEQ_LEN, tiny_checkpoints, tiny_real_sets, tiny_run

from simpo_bio.dna.design import designs
from simpo_bio.dna.design.designs import ExportDesigns
from simpo_bio.dna.design.selection import composition_matched, reference_spectra, select_by_composition


def _nkl(c, q):
    c = np.asarray(c, dtype=float)
    return float((c * np.log(c / c.sum() / q)).sum())


def test_no_terms_is_top_k_by_reward():
    r = torch.tensor([0.3, 2.0, -1.0, 1.5, 0.9])
    assert select_by_composition(r, 3).tolist() == [1, 3, 4]
    # a zero weight is the same as no term
    c = torch.rand(5, 4)
    assert select_by_composition(r, 3, [(c, torch.ones(4), 0.0)]).tolist() == [1, 3, 4]


def test_each_pick_maximises_the_exact_gain():
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 6, (12, 5), generator=g).float()
    q = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    r = torch.randn(12, generator=g)
    w = 0.7
    picked = select_by_composition(r, 6, [(counts, torch.tensor(q), w)]).tolist()
    sel = np.ones(5)  # pseudocount 1
    for step, i in enumerate(picked):
        gains = [(-math.inf if j in picked[:step] else
                  float(r[j]) - w * (_nkl(sel + counts[j].numpy(), q) - _nkl(sel, q))) for j in range(12)]
        assert i == int(np.argmax(gains)), step
        sel = sel + counts[i].numpy()


def test_a_large_weight_trades_reward_for_a_spectrum_near_the_reference():
    # 20 "hacked" candidates (high reward, all mass on k-mer 0) and 20 balanced ones (lower reward)
    hacked = torch.tensor([[20.0, 0, 0, 0]]).repeat(20, 1)
    balanced = torch.tensor([[5.0, 5, 5, 5]]).repeat(20, 1)
    counts = torch.cat([hacked, balanced])
    r = torch.cat([torch.full((20,), 3.0), torch.full((20,), 1.0)]) + torch.linspace(0, 0.01, 40)
    q = torch.full((4,), 0.25)
    kl = {}
    for w in (0.0, 0.05, 1.0):
        idx = select_by_composition(r, 10, [(counts, q, w)])
        c = counts[idx].sum(0) + 1
        kl[w] = _nkl(c, q.numpy()) / float(c.sum())
        if w == 0.0:
            assert (idx < 20).all()  # plain screening keeps the hacked ones
        if w == 1.0:
            assert (idx >= 20).all()  # a strong leash keeps the balanced ones
    assert kl[0.0] > kl[0.05] > kl[1.0]


def test_infeasible_candidates_come_last():
    r = torch.tensor([5.0, 4.0, 1.0, 0.0, 3.0])
    feasible = torch.tensor([False, True, True, True, False])
    assert select_by_composition(r, 2, feasible=feasible).tolist() == [1, 2]
    # more designs wanted than feasible candidates: all feasible first, then the best infeasible
    assert select_by_composition(r, 4, feasible=feasible).tolist() == [1, 2, 3, 0]


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "k must be in 1..4"),
    ({"k": 5}, "k must be in 1..4"),
    ({"reward": torch.tensor([0.0, float("nan"), 1.0, 2.0])}, r"non-finite values \(candidates \[1\]\)"),
    ({"terms": [(torch.ones(3, 2), torch.ones(2), 1.0)]}, "term 0: counts"),
    ({"terms": [(-torch.ones(4, 2), torch.ones(2), 1.0)]}, "term 0: counts must be >= 0"),
    ({"terms": [(torch.ones(4, 2), torch.tensor([1.0, 0.0]), 1.0)]}, "term 0: the reference spectrum"),
    ({"terms": [(torch.ones(4, 2), torch.ones(2), -1.0)]}, "term 0: weight"),
    ({"feasible": torch.ones(3, dtype=torch.bool)}, "feasible has 3 entries for 4"),
    ({"pseudocount": 0.0}, "pseudocount must be > 0"),
])
def test_bad_inputs_are_named(kwargs, match):
    args = {"reward": torch.arange(4.0), "k": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        select_by_composition(**args)


def test_reference_spectra_and_composition_matched_on_a_tiny_model(tmp_path):
    from simpo_bio.dna.models.pretrain import load_pretrained

    ref = load_pretrained(tiny_checkpoints(tmp_path)["pretrained"])
    a = reference_spectra(ref, SEQ_LEN, num_samples=16, num_steps=4, seed=3)
    b = reference_spectra(ref, SEQ_LEN, num_samples=16, num_steps=4, seed=3)
    assert set(a) == {"kmer3"} and a["kmer3"].shape == (64,)
    assert float(a["kmer3"].sum()) == pytest.approx(1.0) and bool((a["kmer3"] > 0).all())
    assert torch.equal(a["kmer3"], b["kmer3"])
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        reference_spectra(ref, SEQ_LEN, num_samples=0)

    g = torch.Generator().manual_seed(1)
    cand = torch.randint(0, 4, (30, SEQ_LEN), generator=g)
    cand[:10] = 0  # poly-A candidates with the highest rewards
    r = torch.linspace(0, 1, 30).flip(0)
    # weight 0: top-k by reward and the reference model is never used
    top = composition_matched(cand, r, 8, None, weight=0.0)
    assert top.index.tolist() == list(range(8)) and top.weight == 0.0
    keep = composition_matched(cand, r, 8, ref, weight=5.0, num_steps=4, reference_samples=16)
    assert (keep.index >= 10).all()  # a poly-A design pulls the 3-mer spectrum far from the model's
    assert len(set(keep.index.tolist())) == 8 and keep.weight == 5.0
    with pytest.raises(ValueError, match="selection weight must be >= 0"):
        composition_matched(cand, r, 8, ref, weight=-1.0)
    for target, weight in ((0.0, 1.0), (1.5, 1.0), (0.5, 0.0)):
        with pytest.raises(ValueError, match="selection target must be a correlation in"):
            composition_matched(cand, r, 8, ref, weight=weight, target=target)


def test_a_selection_target_raises_the_weight_until_the_kept_set_reaches_it(tmp_path):
    from simpo_bio.dna.data.composition import kmer_counts
    from simpo_bio.dna.design.selection import LADDER
    from simpo_bio.dna.evaluation.metrics import pearson
    from simpo_bio.dna.models.pretrain import load_pretrained

    ref = load_pretrained(tiny_checkpoints(tmp_path)["pretrained"])
    spectra = reference_spectra(ref, SEQ_LEN, num_samples=16, num_steps=4)
    g = torch.Generator().manual_seed(2)
    cand = torch.randint(0, 4, (60, SEQ_LEN), generator=g)
    cand[:20, : SEQ_LEN // 2] = 0  # half poly-A: rewarded, and far from the model's spectrum
    r = torch.linspace(0, 1, 60).flip(0)
    kw = {"num_steps": 4, "reference_samples": 16}
    ladder = [composition_matched(cand, r, 10, ref, weight=0.01 * m, **kw) for m in LADDER]
    corrs = [s.kmer3_corr for s in ladder]
    for s in ladder:  # the reported correlation is the kept set's
        kept = kmer_counts(cand[s.index], 3).sum(0).double()
        assert s.kmer3_corr == pytest.approx(pearson(kept / kept.sum(), spectra["kmer3"]))
    # a target between the first and the best rung: the first rung that reaches it is used
    assert corrs[0] < max(corrs)
    target = (corrs[0] + max(corrs)) / 2
    first = next(i for i, c in enumerate(corrs) if c >= target)
    got = composition_matched(cand, r, 10, ref, weight=0.01, target=target, **kw)
    assert got.weight == pytest.approx(0.01 * LADDER[first]) and torch.equal(got.index, ladder[first].index)
    # reached at once: the starting weight; out of reach: the rung that came closest
    assert composition_matched(cand, r, 10, ref, weight=0.01, target=corrs[0], **kw).weight == 0.01
    assert composition_matched(cand, r, 10, ref, weight=0.01, target=1.0, **kw).kmer3_corr == pytest.approx(
        max(corrs))


@pytest.fixture(scope="module")
def selected_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(designs, "real_sets", lambda *a, **k: tiny_real_sets())
    torch.set_num_threads(1)
    ckpts = tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))
    try:
        return tiny_run(tmp_path_factory.mktemp("run"), ckpts, num_samples=12, select_from=40,
                        select_weight=0.5), ckpts
    finally:
        mp.undo()


def test_export_keeps_num_samples_of_the_candidates(selected_run):
    selected_run, ckpts = selected_run
    table = pd.read_csv(selected_run / "designs.csv")
    assert len(table) == 12
    metrics = pd.read_csv(selected_run / "metrics.csv")
    assert metrics["model"].tolist()[-1] == "fine-tuned (square_neg; 12 of 40 selected, weight 0.5, motif x0.3)"
    assert len(pd.read_csv(selected_run / "pretrained_designs.csv")) == 12
    # each kept design carries its own fine-tuning-oracle reward (selection reorders designs and rewards together)
    from simpo_bio.dna.data.alphabet import encode
    from simpo_bio.dna.oracles.oracle import load_oracle, oracle_scores

    toks = torch.cat([torch.as_tensor(encode(s)).reshape(1, -1) for s in table["sequence"]]).long()
    rescored = oracle_scores(load_oracle(ckpts["oracle"]), toks)
    assert table["reward"].to_numpy() == pytest.approx(rescored.numpy(), abs=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_samples": 64, "selection": {"candidates": 32}},
     r"selection.candidates \(32\) must be 0 \(off\) or >= the designs kept \(64\)"),
    ({"selection": {"weight": -0.1}}, "selection.weight must be >= 0"),
    ({"selection": {"candidates": 640, "weights": 1.0}}, "ExportDesigns: .*weights"),
])
def test_export_callback_rejects_bad_selection_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExportDesigns(eval_oracle=None, **kwargs)


def test_demo_num_samples_keeps_the_candidates_per_design():
    from simpo_bio.dna.design.selection import SelectionConfig

    sel = SelectionConfig(candidates=1024, weight=1.0)
    assert sel.scaled(64, 256) == SelectionConfig(candidates=256, weight=1.0)
    assert sel.scaled(256, 256) == sel
    assert SelectionConfig().scaled(64, 256) == SelectionConfig()  # off stays off


class _FirstBaseScanner:
    """A stand-in motif scanner: one 'motif' per base, hit when the sequence starts with it ([B, 4] counts)."""

    def count(self, tokens):
        return torch.nn.functional.one_hot(tokens[:, 0].long().clamp(max=3), 4).float() * 10


def test_motif_ratio_weighs_the_motif_term_against_the_3mer_term(tmp_path):
    from simpo_bio.dna.design.selection import SelectionConfig
    from simpo_bio.dna.models.pretrain import load_pretrained

    ref = load_pretrained(tiny_checkpoints(tmp_path)["pretrained"])
    g = torch.Generator().manual_seed(4)
    cand = torch.randint(0, 4, (40, SEQ_LEN), generator=g)
    cand[:, 0] = 0  # every candidate "hits" the same motif but the first 10 ...
    cand[:10, 0] = torch.arange(10) % 4  # ... which spread their hits over all four
    r = torch.linspace(0, 1, 40)  # ... and have the lowest rewards
    kw = {"num_steps": 4, "reference_samples": 16, "motif_scanner": _FirstBaseScanner()}
    no_motif = composition_matched(cand, r, 8, ref, weight=0.05, num_steps=4, reference_samples=16)
    assert torch.equal(composition_matched(cand, r, 8, ref, weight=0.05, motif_ratio=0.0, **kw).index,
                       no_motif.index)  # ratio 0: the 3-mer term alone
    strong = composition_matched(cand, r, 8, ref, weight=0.05, motif_ratio=100.0, **kw)
    assert int((strong.index < 10).sum()) > int((no_motif.index < 10).sum())  # the motif term pulls them in
    for bad in (-1.0, float("inf")):
        with pytest.raises(ValueError, match="motif ratio must be finite and >= 0"):
            composition_matched(cand, r, 8, ref, weight=1.0, motif_ratio=bad, **kw)
        with pytest.raises(ValueError, match="selection.motif_ratio must be finite and >= 0"):
            SelectionConfig(40, 1.0, None, bad).validate(8)
        with pytest.raises(ValueError, match="ExportDesigns: selection.motif_ratio"):
            ExportDesigns(eval_oracle=None, selection={"motif_ratio": bad})


def test_export_with_a_selection_target_names_it_and_prints_the_weight_used(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(designs, "real_sets", lambda *a, **k: tiny_real_sets())
    ckpts = tiny_checkpoints(tmp_path / "ckpt")
    run = tiny_run(tmp_path / "run", ckpts, iterations=1, num_samples=12, select_from=40, select_weight=0.25,
                   select_target=0.999, select_motif_ratio=0.5)
    label = pd.read_csv(run / "metrics.csv")["model"].tolist()[-1]
    assert label == "fine-tuned (square_neg; 12 of 40 selected, 3-mer target 0.999 from weight 0.25, motif x0.5)"
    out = capsys.readouterr().out
    # a target out of reach on 40 candidates: the ladder ran to its end (weights 0.25 x 1, 2, 4, 8) or stopped
    # at a weight that reached it; either way the printed weight is one of the ladder's
    printed = float(out.split("composition-matched selection, weight ")[1].split(",")[0])
    assert printed in (0.25, 0.5, 1.0, 2.0)
    reached = float(out.split("3-mer correlation with the pretrained model's ")[1].split(";")[0])
    assert reached < 0.999 and "warning: the kept set's 3-mer correlation" in out  # the target was missed: said
    assert len(pd.read_csv(run / "designs.csv")) == 12


def test_a_missed_target_is_a_warning_and_a_met_one_is_not():
    from simpo_bio.dna.design.selection import Selection

    idx = torch.arange(3)
    assert "below the target 0.85" in Selection(idx, 4.0, 0.6).shortfall(0.85)
    assert Selection(idx, 1.0, 0.9).shortfall(0.85) == ""
    assert Selection(idx, 1.0, 0.6).shortfall(None) == ""  # no target, nothing to miss
    assert Selection(idx, 0.0, float("nan")).shortfall(None) == ""


def test_pooled_export_draws_an_equal_share_from_each_run_and_names_the_run_of_each_design(tmp_path, monkeypatch,
                                                                                          capsys):
    """A run's export with ``pool_with``: 20 + 20 candidates from two runs; every kept design is a sample of the
    run its ``model`` column names (re-drawn here from that run's checkpoint with the export's generator)."""
    from simpo_bio.dna.design.designs import sample_with_progress
    from simpo_bio.dna.models.policies import load_policy

    monkeypatch.setattr(designs, "real_sets", lambda *a, **k: tiny_real_sets())
    ckpts = tiny_checkpoints(tmp_path / "ckpt")
    other = tiny_run(tmp_path / "a", ckpts, iterations=2, num_samples=12)
    a_last = other / "checkpoints" / "last.ckpt"
    curves, pools = {}, []
    monkeypatch.setattr(designs, "plot_reward_curve", lambda c, path, **kw: curves.update(c))
    real_select = designs.composition_matched

    def keep_pool(x, *args, **kwargs):
        pools.append(x.clone())
        return real_select(x, *args, **kwargs)

    monkeypatch.setattr(designs, "composition_matched", keep_pool)
    run = tiny_run(tmp_path / "b", ckpts, iterations=1, num_samples=12, select_from=40, select_weight=0.25,
                   pool_with=[str(a_last)], seed=7)
    b_last = run / "checkpoints" / "last.ckpt"
    # the reward curve shows each run's training: this one's 1 iteration, the pooled run's 2
    assert {k: len(v) for k, v in curves.items()} == {"square_neg, this run": 1, "square_neg, a": 2}
    assert "2 runs pooled, 12 of 40 selected" in pd.read_csv(run / "metrics.csv")["model"].tolist()[-1]
    kept = pd.read_csv(run / "designs.csv")
    assert len(kept) == 12 and set(kept["model"]) <= {str(a_last), str(b_last)}
    out = capsys.readouterr().out
    counts = out.split("40 fine-tuning-oracle calls; ")[1].split(" from the 2 runs")[0]
    assert counts == f"{(kept['model'] == str(b_last)).sum()} + {(kept['model'] == str(a_last)).sum()}"
    for i, path in enumerate((b_last, a_last)):  # this run first (seed), then the pooled one (seed + 1)
        policy, _ = load_policy(path)
        drawn = sample_with_progress(policy, 20, SEQ_LEN, num_steps=4, generator=torch.Generator().manual_seed(7 + i))
        assert torch.equal(pools[0][20 * i: 20 * (i + 1)], drawn)  # the candidates: 20 from each run, in order
        drawn = {"".join("ACGT"[t] for t in row) for row in drawn.tolist()}
        mine = kept.loc[kept["model"] == str(path), "sequence"]
        assert set(mine) <= drawn, path


def test_pooling_refuses_what_it_cannot_pool(tmp_path):
    from simpo_bio.dna.design.designs import pooled_policies
    from simpo_bio.dna.models.checkpoints import CheckpointNotFoundError

    ckpts = tiny_checkpoints(tmp_path)
    with pytest.raises(ValueError, match="ExportDesigns: pool_with"):
        ExportDesigns(eval_oracle=None, pool_with=[str(ckpts["pretrained"])])
    with pytest.raises(CheckpointNotFoundError, match="missing.ckpt does not exist"):
        pooled_policies([tmp_path / "missing.ckpt"], SEQ_LEN)
    # a pretrained checkpoint records no length: load_policy reads it as the DHS model's 200 bp
    with pytest.raises(ValueError, match=f"pretrained.ckpt generates 200 bp, this run {SEQ_LEN} bp"):
        pooled_policies([ckpts["pretrained"]], SEQ_LEN)
    assert len(pooled_policies([ckpts["pretrained"]], 200)) == 1
