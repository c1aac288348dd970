"""Designs against the natural frontier: composition-matched selection, fine-tuning alone, best-of-N, real DNA.

Reads the rows that ``bench/dna_frontier.py --select-from`` wrote (``results.jsonl``) and draws Pred-Activity
against the 3-mer and JASPAR correlations, mean +- standard deviation over seeds, next to *real* DNA: the held-out
DHS sequences (validation + test splits, all cell types) ranked by the fine-tuning oracle, 256 per rank band
(``real_frontier.jsonl``, computed once). Real sequences are what "natural at that activity" looks like; the
reference set of the correlations (top 10% HepG2 of the training split) does not overlap them.

Usage::

    OMP_NUM_THREADS=1 python bench/dna_selection.py --results runs/bench_select/results.jsonl

Writes ``selection.png`` and ``selection.md`` (the mean table) next to ``--results``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch

BANDS = (0, 128, 256, 512, 1024, 2048)  # start ranks of the 256-sequence bands of real DNA
COLS = ["calls", "ft_reward_median", "pred_activity_median", "kmer3_corr", "jaspar_corr", "gc_median",
        "frac_gc_outside", "frac_homopolymer_over", "diversity_hamming", "frac_train_copies", "kmer3_vs_pretrained",
        "motif_vs_pretrained", "frac_kmer_outlier"]


def real_frontier(path: Path) -> pd.DataFrame:
    """Evaluation columns of 256-sequence bands of held-out real DNA ranked by the fine-tuning oracle (cached)."""
    if path.exists():
        return pd.read_json(path, lines=True)
    import numpy as np

    from simpo_bio.dna.data.dhs import load_dhs
    from simpo_bio.dna.design.designs import build_evaluator
    from simpo_bio.dna.oracles.oracle import load_oracle, oracle_scores

    ft = load_oracle("checkpoints/dna/oracle_ft.ckpt")
    ev = build_evaluator("checkpoints/dna/oracle_eval.ckpt", None, jaspar=True, novelty=False)
    d = load_dhs()
    x = torch.from_numpy(np.concatenate([np.asarray(d[s].with_format("numpy", columns=["tokens"])[:]["tokens"],
                                                    dtype=np.int64) for s in ("validation", "test")]))
    score = oracle_scores(ft, x)
    order = score.argsort(descending=True)
    rows = []
    for lo in BANDS:
        idx = order[lo : lo + 256]
        row, _ = ev.evaluate(x[idx])
        rows.append({"rank_from": lo, "n_real": len(x), "ft_reward_median": float(score[idx].median()), **row})
        print(json.dumps({k: rows[-1][k] for k in ("rank_from", "pred_activity_median", "kmer3_corr",
                                                   "jaspar_corr")}), flush=True)
    df = pd.DataFrame(rows)
    df.to_json(path, orient="records", lines=True)
    return df


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", default="runs/bench_select/results.jsonl")
    p.add_argument("--curves", nargs="*", default=["square_neg+sel4096 x1", "square_neg+sel4096 x0.3",
                                                    "square_neg+sel4096 x0.1", "square_neg_km18+sel4096 x1",
                                                    "square_neg_km12+sel4096 x1", "square_neg+sel2048 x1"],
                   help="selection curves drawn ('<policy>+sel<candidates> x<motif ratio>'); the table has all")
    p.add_argument("--shipped", default="square_neg, 4096, motif x0.3, target 0.85",
                   help="a point of bench/dna_selection_rule.py drawn as the shipped setting")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    res = Path(a.results)
    df = pd.read_json(res, lines=True)
    from dna_selection_rule import points

    shipped = points(df, [0, 1, 2], [0.85, 0.90]).get(a.shipped)
    df["label"] = df["method"].where(df["method"] != "best-of-N", "best-of-N (" + df["calls"].astype(str) + " calls)")
    df = df[df["seed"].isin([0, 1, 2])].drop_duplicates(["label", "seed"], keep="last")
    agg = df.groupby("label")[[c for c in COLS if c in df]].agg(["mean", "std"])
    n = df.groupby("label")["seed"].nunique()
    table = agg.xs("mean", axis=1, level=1).assign(seeds=n)
    (res.parent / "selection.md").write_text(table.to_string(float_format="%.3f") + "\n")
    print(table.to_string(float_format="%.3f"))
    real = real_frontier(res.parent / "real_frontier.jsonl")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 7.8))
    for ax, col, name, gate in ((axes[0], "kmer3_corr", "3-mer correlation", 0.85),
                                (axes[1], "jaspar_corr", "JASPAR motif correlation", 0.5)):
        ax.plot(real[col], real["pred_activity_median"], "-o", color="grey", label="real DHS sequences (held out), "
                "256 per fine-tuning-oracle rank band")
        palette = iter(["tab:blue", "tab:purple", "tab:orange", "tab:cyan", "tab:olive", "tab:brown"])
        parsed = table.index.to_series().str.extract(r"^(?P<policy>[^+]+)\+sel(?P<cands>\d+)_w(?P<w>[\d.]+)"
                                                     r"(?:_m(?P<ratio>[\d.]+))?$").dropna(subset=["w"])
        parsed["ratio"] = parsed["ratio"].fillna("1")
        for (policy, cands, ratio), g in parsed.groupby(["policy", "cands", "ratio"]):
            if f"{policy}+sel{cands} x{ratio}" not in a.curves:
                continue
            sel = table.loc[g.index].assign(w=g["w"].astype(float)).sort_values("w")
            calls = int(sel["calls"].iloc[0])
            ax.errorbar(sel[col], sel["pred_activity_median"], xerr=agg.loc[sel.index, (col, "std")],
                        yerr=agg.loc[sel.index, ("pred_activity_median", "std")], fmt="-s", color=next(palette),
                        label=f"{policy} + selection, 256 of {cands}, motif x{ratio} ({calls} calls)")
            for w, (_, r) in zip(sel["w"], sel.iterrows(), strict=True):
                ax.annotate(f"w {w:g}", (r[col], r["pred_activity_median"]), xytext=(4, 4),
                            textcoords="offset points", fontsize=7)
        if shipped is not None:
            ax.errorbar(shipped[col].mean(), shipped["pred_activity_median"].mean(), xerr=shipped[col].std(),
                        yerr=shipped["pred_activity_median"].std(), fmt="*", color="gold", markeredgecolor="black",
                        markersize=18, label=f"shipped: {a.shipped} (per-run weight)", zorder=5)
        others = {"square_neg": ("tab:red", "square_neg, 256 samples (1,920 calls)"),
                  "square_neg_i120": ("darkred", "square_neg_i120, 256 samples (3,840 calls)"),
                  "pretrained": ("black", "pretrained, 256 samples")}
        for key, (color, label) in others.items():
            if key in table.index:
                ax.errorbar(table.loc[key, col], table.loc[key, "pred_activity_median"],
                            xerr=agg.loc[key, (col, "std")], yerr=agg.loc[key, ("pred_activity_median", "std")],
                            fmt="D", color=color, label=label, markersize=8)
        for i, key in enumerate(sorted(i for i in table.index if i.startswith("best-of-N"))):
            ax.errorbar(table.loc[key, col], table.loc[key, "pred_activity_median"],
                        xerr=agg.loc[key, (col, "std")], yerr=agg.loc[key, ("pred_activity_median", "std")],
                        fmt="*^v<>"[i % 5], color="tab:green", label=key + ", top 256", markersize=9)
        ax.axvline(gate, color="grey", linestyle=":", linewidth=1)
        ax.axhline(2.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(f"{name} with top-10% real HepG2 (train split)\n(higher = more natural; dotted: {gate} target)")
        ax.set_ylabel("Pred-Activity median (evaluation oracle, HepG2 log-odds)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=3)
    fig.suptitle("Designs vs real DNA: 256 designs per point, mean +- sd over seeds 0-2\nw = selection weight "
                 "(reward per nat on the 3-mer spectrum; the motif term weighs 'motif x' of it)", fontsize=11)
    fig.tight_layout(rect=(0, 0.17, 1, 0.97))
    fig.savefig(res.parent / "selection.png", dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
