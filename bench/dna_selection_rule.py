"""The eval-free choice among selection settings, per seed (``bench/results/dna-selection.md``, fourth pass).

Reads the rows of ``bench/dna_frontier.py --select-from`` (``results.jsonl``) and forms *points*: a training
variant (the method name before ``+sel``), a candidate count, a motif-to-3-mer weight ratio and a selection mode,
either a fixed weight or a per-run target ``tau`` (each run keeps the set of its smallest weight whose
``kmer3_vs_target`` reaches ``tau``, else the one with the highest ``kmer3_vs_target``: what
``selection.composition_matched(target=tau)`` does on the same weight ladder). A point needs a row for every seed.

The rule uses eval-free columns only: among the points whose smallest fine-tuning-oracle median over the seeds is
at least ``--min-ft``, the one with the highest smallest-over-seeds mean of ``kmer3_vs_pretrained`` and
``motif_vs_pretrained``. The evaluation columns of every point are printed after the choice, for the record.

Usage::

    python bench/dna_selection_rule.py --results runs/bench_select/results.jsonl --seeds 0 1 2

Writes ``rule.md`` next to ``--results``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

EVAL_COLS = ["pred_activity_median", "kmer3_corr", "jaspar_corr", "gc_median", "frac_gc_outside",
             "frac_homopolymer_over", "diversity_hamming", "frac_train_copies"]


def per_run_target(rows: pd.DataFrame, tau: float) -> pd.Series:
    """The row a per-run target ``tau`` keeps among one run's rows (one per weight)."""
    rows = rows.sort_values("select_weight")
    hit = rows[rows["kmer3_vs_target"] >= tau]
    return hit.iloc[0] if len(hit) else rows.loc[rows["kmer3_vs_target"].idxmax()]


def points(df: pd.DataFrame, seeds: list[int], taus: list[float]) -> dict[str, pd.DataFrame]:
    """``{point name: one row per seed}`` for every complete point."""
    sel = df[df["method"].str.contains(r"\+sel", regex=True)].copy()
    sel["variant"] = sel["method"].str.split("+sel", regex=False).str[0]
    sel["n_cand"] = sel["method"].str.extract(r"\+sel(\d+)_")[0].astype(int)
    sel["ratio"] = sel["motif_ratio"].fillna(1.0) if "motif_ratio" in sel else 1.0
    sel = sel.drop_duplicates(["method", "seed"], keep="last")
    out = {}
    for (variant, n, ratio), g in sel.groupby(["variant", "n_cand", "ratio"]):
        for w, gw in g.groupby("select_weight"):
            if set(seeds) <= set(gw["seed"]):
                out[f"{variant}, {n}, motif x{ratio:g}, w {w:g}"] = gw[gw["seed"].isin(seeds)].sort_values("seed")
        if "kmer3_vs_target" in g and g["kmer3_vs_target"].notna().all() and set(seeds) <= set(g["seed"]):
            for tau in taus:
                rows = [per_run_target(g[g["seed"] == s], tau) for s in seeds]
                out[f"{variant}, {n}, motif x{ratio:g}, target {tau:g}"] = pd.DataFrame(rows)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", default="runs/bench_select/results.jsonl")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--taus", nargs="+", type=float, default=[0.85, 0.90])
    p.add_argument("--min-ft", type=float, default=2.75)
    p.add_argument("--only", nargs="*", default=None, help="substrings: keep the points whose name has one")
    a = p.parse_args(argv)
    df = pd.read_json(a.results, lines=True)
    pts = points(df, a.seeds, a.taus)
    if a.only:
        pts = {k: v for k, v in pts.items() if any(s in k for s in a.only)}
    summary = []
    for name, g in pts.items():
        nat = (g["kmer3_vs_pretrained"] + g["motif_vs_pretrained"]) / 2
        summary.append({"point": name, "weights": "/".join(f"{w:g}" for w in g["select_weight"]),
                        "ft_min": g["ft_reward_median"].min(), "ft_mean": g["ft_reward_median"].mean(),
                        "natural_min": nat.min(), "natural_mean": nat.mean(),
                        **{f"{c} (seeds)": " / ".join(f"{v:.3f}" for v in g[c]) for c in EVAL_COLS[:3]}})
    s = pd.DataFrame(summary)
    ok = s[s["ft_min"] >= a.min_ft]
    chosen = ok.loc[ok["natural_min"].idxmax(), "point"] if len(ok) else None
    lines = [f"Rule: smallest FT median over seeds {a.seeds} >= {a.min_ft}, then the highest smallest-over-seeds "
             f"mean of kmer3_vs_pretrained and motif_vs_pretrained. Chosen: **{chosen}**", "",
             s.sort_values("natural_min", ascending=False).to_string(index=False, float_format="%.3f")]
    text = "\n".join(lines)
    (Path(a.results).parent / "rule.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
