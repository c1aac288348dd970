"""Designs against real DNA ranked by the fine-tuning oracle: where do the designs dominate the real-DNA curve?

The real-DNA curve: the DHS training sequences (all cell types, the embedded data) are ranked by the
*fine-tuning* oracle; for each top fraction of :data:`FRACTIONS` 256 of them are drawn (the top 256 exactly for the
last point, the "natural ceiling") and scored like designs: the evaluation oracle's Pred-Activity median, the 3-mer
and JASPAR correlations with the metrics' reference set. Design sets come from result tables (``--results``: JSON
lines with ``method``, ``seed``, ``pred_activity_median``, ``kmer3_corr``, ``jaspar_corr``, as
``bench/dna_policy_alone.py`` writes) or FASTA files (``--fasta``, scored here).

A design set *dominates* the real curve in a column when it is above the curve's value (linear interpolation in
Pred-Activity) at its own Pred-Activity; above the curve's most active point it dominates when it beats that point
in both activity and the column. Caveat, printed with the table: the two oracles were each trained on half of the
DHS data, so a real sequence was seen by one of them in training; the curve is what real DNA reaches by these
oracles' judgement, not a measured ceiling.

Usage::

    OMP_NUM_THREADS=1 python bench/dna_natural_ceiling.py --results runs/bench_alone/results.jsonl \\
        --out runs/bench_ceiling

Writes ``real_curve.csv``, ``designs.csv`` (with the dominance columns) and ``natural_ceiling.png`` (activity
against 3-mer and against JASPAR).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: Top fractions of the real training sequences by the fine-tuning oracle; 256 are drawn from each.
FRACTIONS = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
SET_SIZE = 256


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", nargs="*", default=[], help="JSON-lines result tables of design sets")
    p.add_argument("--fasta", nargs="*", default=[], help="FASTA files of design sets (200 bp)")
    p.add_argument("--methods", nargs="*", default=None, help="only these methods of --results")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws from each top fraction")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/bench_ceiling")
    return p.parse_args(argv)


def real_curve(evaluator, ft_oracle, train, seed: int = 0):
    """Rows ``{fraction, pred_activity_median, kmer3_corr, jaspar_corr, ft_reward_median}`` of the real curve."""
    import torch

    from simpo_bio.dna.oracles.oracle import oracle_scores

    scores = oracle_scores(ft_oracle, train)
    order = scores.argsort(descending=True)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for frac in FRACTIONS:
        top = order[: max(SET_SIZE, int(round(frac * len(order))))]
        pick = top[torch.randperm(len(top), generator=g)[:SET_SIZE]]
        row, _ = evaluator.evaluate(train[pick])
        rows.append({"set": f"real top {frac:.0%}", "fraction": frac, **row,
                     "ft_reward_median": float(scores[pick].median())})
    row, _ = evaluator.evaluate(train[order[:SET_SIZE]])
    rows.append({"set": f"real top {SET_SIZE} (natural ceiling)", "fraction": SET_SIZE / len(order), **row,
                 "ft_reward_median": float(scores[order[:SET_SIZE]].median())})
    return rows


def dominance(designs, curve, column: str) -> list[bool]:
    """For each design row: is its ``column`` above the real curve at its Pred-Activity (see the module docstring)?"""
    import numpy as np

    pts = sorted((r["pred_activity_median"], r[column]) for r in curve)
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    out = []
    for d in designs:
        a, v = d["pred_activity_median"], d[column]
        if a > xs[-1]:
            top = max(curve, key=lambda r: r["pred_activity_median"])
            out.append(bool(v > top[column]))
        else:
            out.append(bool(v > float(np.interp(a, xs, ys))))
    return out


def plot(curve, designs, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, col, label in ((axes[0], "kmer3_corr", "3-mer correlation with top real HepG2 (higher = more natural)"),
                           (axes[1], "jaspar_corr", "JASPAR motif correlation with top real HepG2")):
        c = sorted(curve, key=lambda r: r["pred_activity_median"])
        ax.plot([r[col] for r in c], [r["pred_activity_median"] for r in c], "k-o", label="real DNA, top fractions "
                "by the fine-tuning oracle")
        for r in c:
            ax.annotate(r["set"].replace("real top ", "").replace(" (natural ceiling)", ""), (r[col],
                        r["pred_activity_median"]), fontsize=7, xytext=(3, -8), textcoords="offset points")
        methods = sorted({d["name"] for d in designs})
        colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
        for m in methods:
            pts = [d for d in designs if d["name"] == m]
            ax.scatter([d[col] for d in pts], [d["pred_activity_median"] for d in pts], color=colors[m], label=m,
                       s=28)
        ax.set_xlabel(label)
        ax.set_ylabel("Pred-Activity median (evaluation oracle, HepG2 log-odds)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Design sets ({SET_SIZE} sequences each) against real DHS sequences ranked by the fine-tuning oracle")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    a = parse_args(argv)
    import pandas as pd
    import torch

    torch.set_num_threads(a.threads)
    from simpo_bio.dna.data.tables import read_fasta
    from simpo_bio.dna.design.designs import build_evaluator, real_sets
    from simpo_bio.dna.oracles.oracle import load_oracle

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ev = build_evaluator("checkpoints/dna/oracle_eval.ckpt", None, jaspar=True, novelty=False)
    ft = load_oracle("checkpoints/dna/oracle_ft.ckpt")
    cached = out / "real_curve.csv"
    if cached.exists():
        curve = pd.read_csv(cached).to_dict("records")
    else:
        curve = real_curve(ev, ft, real_sets()["train"], a.seed)
        pd.DataFrame(curve).to_csv(cached, index=False)
    designs = []
    for path in a.results:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            if a.methods is not None and r["method"] not in a.methods:
                continue
            designs.append({"name": r["method"], "seed": r.get("seed"), **{k: r[k] for k in
                            ("pred_activity_median", "kmer3_corr", "jaspar_corr")}})
    for path in a.fasta:
        _, tokens, _ = read_fasta(path, length=200)
        row, _ = ev.evaluate(tokens)
        designs.append({"name": Path(path).name, "seed": None, **{k: row[k] for k in
                        ("pred_activity_median", "kmer3_corr", "jaspar_corr")}})
    for col in ("kmer3_corr", "jaspar_corr"):
        for d, dom in zip(designs, dominance(designs, curve, col)):
            d[f"dominates_{col}"] = dom
    pd.DataFrame(designs).to_csv(out / "designs.csv", index=False)
    plot(curve, designs, out / "natural_ceiling.png")
    cols = ["set", "ft_reward_median", "pred_activity_median", "kmer3_corr", "jaspar_corr", "gc_median",
            "diversity_hamming"]
    print(pd.DataFrame(curve)[cols].to_string(index=False, float_format="%.3f"))
    if designs:
        print(pd.DataFrame(designs).to_string(index=False, float_format="%.3f"))
    print("caveat: each oracle was trained on half of the DHS data; the curve is real DNA as these oracles judge it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
