"""Synthesis constraints on DnaChisel, their repair and the export (simpo_bio/dna/design/synthesis.py, `simpo-bio export`)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from simpo_bio.cli import main as cli_main
from simpo_bio.dna.data.alphabet import encode
from simpo_bio.dna.data.composition import gc_fraction, longest_homopolymer, windowed_gc
from simpo_bio.dna.data.tables import read_fasta
from simpo_bio.dna.design.synthesis import (
    SynthesisConstraints,
    check_designs,
    constraint_summary,
    repair_design,
    repair_designs,
)

ROOT = Path(__file__).resolve().parents[2]
ORACLE, EVAL_ORACLE = ROOT / "checkpoints/dna/oracle_ft.ckpt", ROOT / "checkpoints/dna/oracle_eval.ckpt"
OPEN = dict(gc_min=0.0, gc_max=1.0, max_homopolymer=50)  # only the sites count


def _clean(n: int, seed: int = 0) -> str:
    """A random design that passes the default constraints."""
    rng = np.random.default_rng(seed)
    c = SynthesisConstraints()
    for _ in range(1000):
        s = "".join(rng.choice(list("ACGT"), size=n))
        if not check_designs([s], c)[0]:
            return s
    raise AssertionError("no clean random design")


def _names(violations):
    return [v.constraint for v in violations]


def test_degenerate_enzyme_from_bio_restriction_found_on_both_strands():
    from Bio.Restriction import Eco57MI

    c = SynthesisConstraints(enzymes=("Eco57MI",), **OPEN)
    assert c.sites == {"Eco57MI": "CTGRAG"} == {"Eco57MI": Eco57MI.site}  # a degenerate, non-palindromic site
    base = _clean(200, seed=3)
    assert check_designs([base], c) == [[]]
    s = base[:10] + "CTGAAG" + base[16:60] + "CTTCAG" + base[66:100] + "CTCCAG" + base[106:]  # R=A fwd; both rev
    found = {(v.constraint, v.start, v.end, v.strand) for v in check_designs([s], c)[0]}
    assert {("Eco57MI", 10, 16, 1), ("Eco57MI", 60, 66, -1), ("Eco57MI", 100, 106, -1)} <= found
    assert str(next(v for v in check_designs([s], c)[0] if v.start == 60)) == "Eco57MI@60-66-"


def test_windowed_gc_catches_a_rich_window_that_the_global_gc_hides():
    rich = "GGCAC" * 10  # 50 bp, 80% GC
    assert sum(ch in "GC" for ch in rich) / 50 == 0.8
    poor = _clean(150, seed=5).replace("G", "A", 10).replace("C", "T", 10)
    design = rich + poor
    assert 0.25 <= gc_fraction(encode([design]))[0] <= 0.65  # the whole sequence is within the window
    flags = check_designs([design])[0]
    assert "gc_high" in _names(flags)
    high = next(v for v in flags if v.constraint == "gc_high")
    assert high.start == 0 and high.end >= 50
    assert windowed_gc(encode([design]), 50).max() > 0.65


def test_repair_removes_a_planted_bsai_site_with_two_changes_at_most():
    base = _clean(200, seed=7)
    planted = base[:80] + "GGTCTC" + base[86:]
    assert _names(check_designs([planted])[0]) == ["BsaI"]
    r = repair_design(planted, seed=0)
    assert r.passes and check_designs([r.sequence]) == [[]]
    assert 1 <= len(r.changed) <= 2
    assert all(80 <= i < 86 for i in r.changed)
    assert r.sequence[:80] == planted[:80] and r.sequence[86:] == planted[86:]
    assert repair_design(planted, seed=0).sequence == r.sequence  # deterministic for a seed


def test_site_across_the_adapter_junction_is_found_and_repaired_inside_the_design():
    c = SynthesisConstraints(prefix="AAGG", suffix="CCAA")
    design = "TCTC" + _clean(196, seed=11)[4:]  # prefix GG + TCTC makes GGTCTC at construct position 2
    flags = check_designs([design], c)[0]
    assert any(v.constraint == "BsaI" and v.start == 2 for v in flags)
    assert check_designs([design], SynthesisConstraints()) == [[]] or "BsaI" not in _names(
        check_designs([design], SynthesisConstraints())[0])
    r = repair_design(design, c)
    assert r.passes and len(r.sequence) == len(design)
    assert not check_designs([r.sequence], c)[0]
    inside = {i - 4 for v in flags for i in range(v.start, v.end)}  # the flagged spans, in design coordinates
    assert any(i < 4 for i in r.changed)  # the adapters cannot change:
    assert set(r.changed) <= inside  # the junction site is fixed in the design's TCTC, nothing else moves


@pytest.mark.parametrize("kw, match", [
    (dict(enzymes=("BsaX",)), "unknown enzyme 'BsaX'.*BsaI"),
    (dict(gc_min=0.7, gc_max=0.3), "gc_min <= gc_max"),
    (dict(max_homopolymer=0), "max_homopolymer"),
    (dict(patterns=("GGXX",)), "IUPAC"),
    (dict(prefix="ACGU"), "prefix"),
    (dict(gc_window=1), "gc_window"),
])
def test_bad_constraints_are_one_line_errors(kw, match):
    with pytest.raises(ValueError, match=match) as e:
        SynthesisConstraints(**kw)
    assert "\n" not in str(e.value)


def test_window_longer_than_the_design_and_bad_letters_are_one_line_errors():
    with pytest.raises(ValueError, match="gc_window 300 bp is longer than design 0 .200 bp") as e:
        check_designs([_clean(200)], SynthesisConstraints(gc_window=300))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="design 1: letter 'N' at position 3"):
        check_designs([_clean(60), "ACGNACGT" * 8])
    assert SynthesisConstraints().fitted(30).gc_window == 30 and SynthesisConstraints().fitted(200).gc_window == 50


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["A", "C", "G", "T", "GGGGG", "AAAAAA", "GC", "AT"]), min_size=12, max_size=40))
def test_dnachisel_flags_agree_with_the_fast_tensor_checks(parts):
    """The training loop's tensor checks (homopolymer, windowed GC) and the DnaChisel specs flag the same designs."""
    seq = "".join(parts)
    c = SynthesisConstraints(gc_min=0.35, gc_max=0.6, gc_window=min(20, len(seq)), max_homopolymer=6, enzymes=())
    names = set(_names(check_designs([seq], c)[0]))
    x = encode([seq])
    assert ("homopolymer" in names) == bool(longest_homopolymer(x)[0] > c.max_homopolymer)
    w = windowed_gc(x, c.gc_window)[0]
    assert ("gc_low" in names) == bool((w < c.gc_min - 1e-9).any())
    assert ("gc_high" in names) == bool((w > c.gc_max + 1e-9).any())


def test_repair_designs_keeps_a_repair_only_within_the_margin():
    designs = [_clean(200, seed=s) for s in (21, 22, 23)]
    designs[1] = designs[1][:40] + "GGTCTC" + designs[1][46:]
    table = pd.DataFrame({"id": ["a", "b", "c"], "sequence": designs, "reward": [1.0, 2.0, 3.0]})
    originals = {s for s in designs}

    def score(x):  # the originals score 0, any changed design -1: a repair costs 1 log-odds
        from simpo_bio.dna.data.alphabet import decode
        return torch.tensor([0.0 if s in originals else -1.0 for s in decode(x)])

    kept, report = repair_designs(table, score=score, margin=0.5)
    assert kept["id"].tolist() == ["a", "c"] and kept["sequence"].tolist() == [designs[0], designs[2]]
    assert report["status"].tolist() == ["rejected: reward"] and report["reward_change"].tolist() == [-1.0]
    kept, report = repair_designs(table, score=score, eval_score=score, margin=2.0)
    assert kept["id"].tolist() == ["a", "b", "c"]
    assert kept["repair"].tolist() == ["clean", "repaired", "clean"]
    assert kept.loc[1, "reward"] == -1.0 and kept.loc[1, "flags"] == "none"
    assert not check_designs([kept.loc[1, "sequence"]])[0]
    assert report.loc[0, "bases_changed"] == len(report.loc[0, "positions"].split()) >= 1
    assert report.loc[0, "eval_reward_after"] == -1.0
    with pytest.raises(ValueError, match="no 'sequence' column"):
        repair_designs(table.drop(columns="sequence"), score=score)


def test_constraint_summary_counts_designs_per_constraint():
    flags = ["BsaI@1-7+;gc_high@0-60", "none", "homopolymer@3-15", "BsaI@9-15-"]
    s = constraint_summary(flags).set_index("constraint")["designs"]
    assert s["gc_low / gc_high"] == 1 and s["homopolymer"] == 1 and s["BsaI"] == 2 and s["BsmBI"] == 0
    assert s["any"] == 3


@pytest.fixture
def design_csv(tmp_path):
    designs = [_clean(200, seed=s) for s in range(30, 42)]
    for i in (0, 3, 6):
        designs[i] = designs[i][:90] + "GGTCTC" + designs[i][96:]  # BsaI
    designs[4] = designs[4][:120] + "GAGACG" + designs[4][126:]  # BsmBI, reverse strand
    designs[8] = designs[8][:20] + "A" * 13 + designs[8][33:]  # homopolymer
    path = tmp_path / "designs.csv"
    pd.DataFrame({"id": [f"d{i}" for i in range(12)], "sequence": designs, "reward": np.arange(12.0),
                  "eval_reward": np.arange(12.0)[::-1]}).to_csv(path, index=False)
    return path


def test_export_repair_exports_only_passing_designs_and_reports_each(design_csv, tmp_path, capsys):
    out = tmp_path / "top.fasta"
    cli_main(["export", "--run", str(design_csv), "--top-k", "12", "--out", str(out), "--repair",
              "--oracle", str(ORACLE), "--eval-oracle", str(EVAL_ORACLE)])
    ids, tokens, fields = read_fasta(out)
    assert check_designs(tokens) == [[]] * len(ids) and set(fields["flags"]) == {"none"}
    report = pd.read_csv(out.with_suffix(".repair.csv"))
    assert sorted(report["id"]) == ["d0", "d3", "d4", "d6", "d8"]
    kept = report[report["status"] == "repaired"]
    assert (kept["reward_before"] - kept["reward_after"] < 0.5).all()
    assert set(kept["id"]) <= set(ids) and not set(report.loc[report["status"] != "repaired", "id"]) & set(ids)
    table = pd.read_csv(out.with_suffix(".csv"))
    assert set(table["repair"]) <= {"clean", "repaired"}
    text = capsys.readouterr().out
    assert "repair: 5 flagged designs" in text and "BsaI" in text and "  homopolymer" in text


def test_export_without_repair_flags_with_positions(design_csv, tmp_path):
    out = tmp_path / "top.fasta"
    cli_main(["export", "--run", str(design_csv), "--top-k", "12", "--out", str(out), "--by", "reward"])
    _, _, fields = read_fasta(out)
    table = pd.read_csv(out.with_suffix(".csv")).set_index("id")
    assert "BsaI@90-96+" in table.loc["d0", "flags"] and "BsmBI@120-126-" in table.loc["d4", "flags"]
    assert "homopolymer@20-33" in table.loc["d8", "flags"]
    assert (fields["flags"] != "none").sum() == 5


@pytest.mark.parametrize("args, match", [
    (["--gc-window", "500"], "gc_window 500 bp is longer than design 0"),
    (["--gc-min", "0.7", "--gc-max", "0.3"], "gc_min <= gc_max"),
    (["--enzyme", "NotAnEnzyme"], "unknown enzyme"),
    (["--repair", "--filter"], "exclude each other"),
    (["--repair", "--margin", "-1"], "--margin"),
])
def test_export_bad_constraint_input_is_one_line(design_csv, tmp_path, capsys, args, match):
    with pytest.raises(SystemExit) as e:
        cli_main(["export", "--run", str(design_csv), "--out", str(tmp_path / "x.fasta"), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert pytest.importorskip("re").search(match, err)
    assert not (tmp_path / "x.fasta").exists()


def test_export_damaged_tables_are_one_line(tmp_path, capsys):
    no_seq = tmp_path / "a.csv"
    pd.DataFrame({"id": ["x"], "eval_reward": [1.0]}).to_csv(no_seq, index=False)
    binary = tmp_path / "b.csv"
    binary.write_bytes(bytes(range(256)) * 50)
    for path, match in ((no_seq, "no 'sequence' column"), (binary, "not a readable design table")):
        with pytest.raises(SystemExit) as e:
            cli_main(["export", "--run", str(path), "--out", str(tmp_path / "x.fasta")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and match in err and str(path) in err and len(err.strip().splitlines()) == 1


def test_composition_figure_legends_sit_outside_the_axes(monkeypatch, tmp_path):
    import simpo_bio.dna.design.plots as plots

    seen = {}

    def capture(fig, path, dpi=120):
        fig.canvas.draw()
        seen["fig"] = fig
        return Path(path)

    monkeypatch.setattr(plots, "atomic_save_figure", capture)
    rng = np.random.default_rng(0)
    gcs = {"real": rng.normal(0.45, 0.05, 100), "fine-tuned": rng.normal(0.5, 0.05, 100)}
    windows = {k: (v - 0.2, v + 0.2) for k, v in gcs.items()}
    plots.plot_gc_distributions(gcs, tmp_path / "c.png", windowed=windows)
    fig = seen["fig"]
    assert len(fig.axes) == 2
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.get_window_extent(renderer)) and ax.get_title() and ax.get_xlabel()
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    outside = int(((windows["real"][0] < 0.25) | (windows["real"][1] > 0.65)).sum())
    assert f"real: {outside} of 100 outside the window" in labels


def test_an_unsolvable_design_comes_back_unchanged_with_its_breaches():
    c = SynthesisConstraints(prefix="GGTCTC")  # a BsaI site inside the frozen adapter: no repair can remove it
    design = _clean(120, seed=13)
    r = repair_design(design, c)
    assert not r.passes and r.sequence == design and r.changed == []
    assert [(v.constraint, v.start) for v in r.remaining] == [("BsaI", 0)]
