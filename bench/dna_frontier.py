"""The frontier: Pred-Activity against drift from the pretrained model, per weighting scheme and leash strength.

For each scheme and each ``kl_penalty`` (beta) of a grid fixed before any evaluation-oracle number was seen (with
one ``--kl-coef`` per invocation), fine-tune with the settings of
``configs/dna/simpo_base.yaml`` (constraints, bounded repulsion, the count-form loss with 4 shared draws; eta 1 for
the signed schemes) at an equal number of fine-tuning-oracle calls, sample designs, and report, next to the
evaluation oracle's Pred-Activity: the KL to the reference (trajectory estimate, nats per sequence, last 3
iterations), 3-mer and JASPAR correlations, GC, longest homopolymer, diversity. Best-of-N sampling from the
pretrained model at the same number of calls is the baseline. Selection of the shipped default uses the
fine-tuning oracle and the naturalness columns only. A run already in ``results.jsonl`` is not run again, so an
invocation whose runs all exist only redraws the table and the plot; a fit whose ``policy_*.pt`` and
``history_*.csv`` exist is not repeated (new selection rows reuse it).

Usage (the second-pass commands are in ``bench/results/dna-frontier.md``; one process, 1 thread)::

    OMP_NUM_THREADS=1 python bench/dna_frontier.py --schemes square_neg --betas 0.1 0.3 --kl-coef 1 --out runs/f

Writes ``results.jsonl`` / ``results.csv`` (one row per run), ``history_*.csv`` (per-iteration logs),
``summary.md`` and ``frontier.png`` (Pred-Activity vs 3-mer, JASPAR and KL).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import torch

GRID_SCHEMES = ("exp", "linear_neg", "square_neg")
GRID_BETA = (0.0, 0.1, 0.3)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--schemes", nargs="+", default=list(GRID_SCHEMES))
    p.add_argument("--betas", nargs="+", type=float, default=list(GRID_BETA))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--group-size", type=int, default=32)
    p.add_argument("--num-steps", type=int, default=16)
    p.add_argument("--designs", type=int, default=256)
    p.add_argument("--no-constraints", action="store_true")
    p.add_argument("--repel-margin", type=float, default=1.386, help="nats per base; <= 0 disables the cap")
    p.add_argument("--kl-estimator", default="trajectory", choices=("trajectory", "elbo"))
    p.add_argument("--kl-coef", type=float, default=0.0, help="KL anchor in the loss")
    p.add_argument("--ensemble", nargs="+", default=None, help="oracle checkpoints of a conservative ensemble")
    p.add_argument("--ensemble-std-coef", type=float, default=1.0)
    p.add_argument("--elbo-estimator", default="count", choices=("count", "time"))
    p.add_argument("--elbo-draws", type=int, default=4)
    p.add_argument("--elbo-noise", default="shared", choices=("shared", "independent"),
                   help="elbo_shared_noise: common masks in a minibatch or not")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eta", type=float, default=1.0, help="signed floor of linear_neg / square_neg, units of x")
    p.add_argument("--tag", default="", help="suffix of the method name in the tables")
    p.add_argument("--select-from", type=int, default=0,
                   help="also sample this many candidates per run, score them with the fine-tuning oracle and keep "
                   "--designs of them by composition-matched selection (simpo_bio/dna/design/selection.py); 0 = off")
    p.add_argument("--select-weights", nargs="+", type=float, default=[0.0, 0.1, 0.2, 0.3, 0.5],
                   help="selection weights (reward per nat), the same for the 3-mer and the JASPAR motif spectra")
    p.add_argument("--motif-ratio", type=float, default=1.0,
                   help="selection: the JASPAR motif term's weight as a multiple of the 3-mer term's")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/bench_frontier")
    return p.parse_args(argv)


def _row(name, tokens, evaluator, ft_oracle, extra):
    from simpo_bio.dna.oracles.oracle import oracle_scores

    row, _ = evaluator.evaluate(tokens)
    row["ft_reward_median"] = float(oracle_scores(ft_oracle, tokens).median())
    return {"method": name, **extra, **row}


def _selection_rows(a, seed, policy, reference, ft, ev, cons, name, extra, record, have):
    """Rows of composition-matched selection: ``--select-from`` candidates of ``policy``, ``--designs`` kept per weight.

    Beside the evaluation columns each row has eval-free columns (what the choice of the weight may use): the
    fine-tuning-oracle median, the 3-mer / motif correlations with 512 *other* samples of the pretrained model
    (``kmer3_vs_pretrained``, ``motif_vs_pretrained``) and the share of designs whose own 3-mer spectrum is
    farther from real DHS sequences than 95% of them (``frac_kmer_outlier``).
    """
    from simpo_bio.dna.data.composition import NaturalnessConstraints, kmer_chi2
    from simpo_bio.dna.design.designs import real_sets
    from simpo_bio.dna.design.selection import reference_spectra, select_by_composition, spectrum_counts
    from simpo_bio.dna.evaluation.metrics import pearson
    from simpo_bio.dna.oracles.oracle import oracle_scores

    scanner = ev.motif_scanner
    target = reference_spectra(reference, 200, motif_scanner=scanner, num_steps=a.num_steps, seed=7919)
    check = spectrum_counts(reference.sample(512, 200, num_steps=a.num_steps, seed=4242, batch_size=128), scanner)
    outlier = NaturalnessConstraints.from_reference(real_sets()["train"], kmer_quantile=0.95)
    pool = Path(a.out) / f"pool_{name}_s{seed}_{a.select_from}.pt"  # the candidates and their rewards, reused
    if pool.exists():
        cand, reward = torch.load(pool, weights_only=True)
    else:
        cand = policy.sample(a.select_from, 200, num_steps=a.num_steps, seed=22345 + seed, batch_size=128)
        reward = oracle_scores(ft, cand)
        torch.save((cand, reward), pool)
    counts = spectrum_counts(cand, scanner)
    feasible = cons.violation(cand) == 0 if cons is not None else None
    for w in a.select_weights:
        method = f"{name}+sel{a.select_from}_w{w:g}" + (f"_m{a.motif_ratio:g}" if a.motif_ratio != 1.0 else "")
        if (method, extra["beta"], seed, extra["kl_coef"]) in have:
            continue
        idx = select_by_composition(reward, a.designs, [(counts["kmer3"], target["kmer3"], w),
                                                         (counts["motif"], target["motif"], w * a.motif_ratio)],
                                    feasible=feasible)
        x = cand[idx]
        k3 = counts["kmer3"][idx].sum(0)
        row = {**extra, "method": method, "seed": seed, "calls": extra["calls"] + a.select_from,
               "select_weight": w, "motif_ratio": a.motif_ratio,
               "kmer3_vs_target": pearson(k3 / k3.sum(), target["kmer3"]),
               "kmer3_vs_pretrained": pearson(k3 / k3.sum(), check["kmer3"].sum(0)),
               "motif_vs_pretrained": pearson(counts["motif"][idx].mean(0), check["motif"].mean(0)),
               "frac_kmer_outlier": float((kmer_chi2(x, torch.as_tensor(outlier.kmer_background))
                                           > outlier.max_kmer_chi2).float().mean())}
        record(_row(method, x, ev, ft, row))


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    from simpo_bio.dna.design.designs import build_evaluator
    from simpo_bio.dna.finetune import (
        RewardConfig,
        SamplingConfig,
        SiMPOFineTuning,
        UpdateConfig,
        WeightingConfig,
    )
    from simpo_bio.dna.models.pretrain import load_pretrained
    from simpo_bio.dna.oracles.oracle import load_oracle, oracle_scores

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ft = load_oracle("checkpoints/dna/oracle_ft.ckpt")
    ref = load_pretrained("checkpoints/dna/pretrained_dhs.ckpt")
    ev = build_evaluator("checkpoints/dna/oracle_eval.ckpt", ref, jaspar=True, novelty=True)
    calls = a.iterations * a.group_size
    rows = []
    done = out / "results.jsonl"
    if done.exists():
        rows = [json.loads(line) for line in done.read_text().splitlines() if line.strip()]
    have = {(r["method"], r.get("beta"), r.get("seed"), r.get("kl_coef", 0.0)) for r in rows}

    def record(r):
        rows.append(r)
        with open(done, "a") as fh:
            fh.write(json.dumps(r) + "\n")
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)

    for seed in a.seeds:
        have_bon = {(r["seed"], r["calls"]) for r in rows if r["method"] == "best-of-N"}
        for n_calls in sorted({calls, calls + a.select_from}):  # best-of-N at every budget of this invocation
            if (seed, n_calls) not in have_bon:
                pool = ref.sample(n_calls, 200, num_steps=a.num_steps, seed=1000 + seed, batch_size=128)
                top = oracle_scores(ft, pool).argsort(descending=True)[: a.designs]
                record(_row("best-of-N", pool[top], ev, ft, {"beta": None, "seed": seed, "calls": n_calls,
                                                             "kl_ref": None}))
        if ("pretrained", None, seed, 0.0) not in have:
            x = ref.sample(a.designs, 200, num_steps=a.num_steps, seed=12345 + seed)
            record(_row("pretrained", x, ev, ft, {"beta": None, "seed": seed, "calls": 0, "kl_ref": 0.0}))
        for scheme in a.schemes:
            for beta in a.betas:
                mr = f"_m{a.motif_ratio:g}" if a.motif_ratio != 1.0 else ""
                names = [scheme + a.tag] + [f"{scheme}{a.tag}+sel{a.select_from}_w{w:g}{mr}" for w in a.select_weights
                                            if a.select_from]
                if all((n, beta, seed, a.kl_coef) in have for n in names):
                    continue
                pl.seed_everything(seed, verbose=False)
                cons = None if a.no_constraints else {"gc_window": [0.4, 0.6], "max_homopolymer": 10,
                                                      "max_dust": 2.0}
                params = {"eta": a.eta} if scheme.endswith("_neg") else None
                m = SiMPOFineTuning(
                    oracle=a.ensemble or "checkpoints/dna/oracle_ft.ckpt", seed=seed, log_reference_elbo=False,
                    sampling=SamplingConfig(group_size=a.group_size, num_groups=1, num_steps=a.num_steps),
                    reward=RewardConfig(kl_penalty=beta, kl_estimator=a.kl_estimator, constraints=cons,
                                        ensemble_std_coef=a.ensemble_std_coef),
                    weighting=WeightingConfig(scheme=scheme, scheme_params=params),
                    update=UpdateConfig(minibatch_size=32, lr=a.lr, kl_coef=a.kl_coef,
                                        repel_margin=a.repel_margin if a.repel_margin > 0 else None,
                                        elbo_estimator=a.elbo_estimator, elbo_draws=a.elbo_draws,
                                        elbo_shared_noise=a.elbo_noise == "shared"))
                stem = f"{scheme}{a.tag}_b{beta:g}_a{a.kl_coef:g}_s{seed}"
                hist, saved = out / f"history_{stem}.csv", out / f"policy_{stem}.pt"
                if saved.exists() and hist.exists():  # this fit is done: reuse it (e.g. for more selection rows)
                    m.policy.load_state_dict(torch.load(saved, weights_only=True))
                    m.history, fit_s = pd.read_csv(hist).to_dict("records"), None
                else:
                    t0 = time.time()
                    pl.Trainer(max_epochs=a.iterations, logger=False, enable_checkpointing=False,
                               enable_progress_bar=False, enable_model_summary=False).fit(m)
                    fit_s = time.time() - t0
                    pd.DataFrame(m.history).to_csv(hist, index=False)
                    torch.save(m.policy.state_dict(), saved)
                x = m.policy.sample(a.designs, 200, num_steps=a.num_steps, seed=12345 + seed)
                kl = sum(h["kl_ref"] for h in m.history[-3:]) / 3
                extra = {"beta": beta, "kl_coef": a.kl_coef, "seed": seed, "calls": calls, "kl_ref": kl,
                         "fit_s": fit_s}
                if (scheme + a.tag, beta, seed, a.kl_coef) not in have:
                    record(_row(scheme + a.tag, x, ev, ft, extra))
                if a.select_from:
                    _selection_rows(a, seed, m.policy, ref, ft, ev, m.constraints, scheme + a.tag, extra, record,
                                    have)
    df = pd.DataFrame(rows)
    df.to_csv(out / "results.csv", index=False)
    cols = ["method", "beta", "kl_coef", "seed", "calls", "ft_reward_median", "pred_activity_median", "kl_ref", "kmer3_corr",
            "jaspar_corr", "gc_median", "frac_gc_outside", "frac_homopolymer_over", "diversity_hamming",
            "frac_train_copies", "select_weight", "kmer3_vs_pretrained", "motif_vs_pretrained", "frac_kmer_outlier"]
    (out / "summary.md").write_text(df[[c for c in cols if c in df]].to_string(index=False, float_format="%.3f"))
    _plot(df, out / "frontier.png", calls)
    print((out / "summary.md").read_text())
    return 0


def _plot(df, path, calls):
    """Pred-Activity against three measures of drift; colour = scheme, marker = kl_coef, line = kl_penalty sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = df.copy()
    df["kl_coef"] = df["kl_coef"].fillna(0.0) if "kl_coef" in df else 0.0
    methods = sorted(df["method"].unique())
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    markers = {0.0: "o", 1.0: "s", 3.0: "^"}
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    panels = ((axes[0], "kmer3_corr", "3-mer correlation with top real HepG2\n(higher = more natural)"),
              (axes[1], "jaspar_corr", "JASPAR motif correlation with top real HepG2\n(higher = more natural)"),
              (axes[2], "kl_ref", "KL(policy || pretrained), nats per sequence\n(trajectory estimate; lower = closer)"))
    for ax, xcol, xlabel in panels:
        for (method, a_coef), g in df.groupby(["method", "kl_coef"]):
            g = g[g[xcol].notna()].sort_values("beta", na_position="first")
            if g.empty:
                continue
            fitted = g["beta"].notna().any()
            label = f"{method}, kl_coef {a_coef:g}" if fitted else method
            ax.plot(g[xcol], g["pred_activity_median"], linestyle="-" if fitted else "none",
                    marker=markers.get(float(a_coef), "D") if fitted else "*", markersize=7 if fitted else 13,
                    color=colors[method], label=label)
            for _, r in g.iterrows():
                if pd.notna(r["beta"]):
                    ax.annotate(f"{r['beta']:g}", (r[xcol], r["pred_activity_median"]), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Pred-Activity median\n(evaluation oracle, HepG2 log-odds)")
        ax.grid(alpha=0.3)
    for ax, gate in ((axes[0], 0.85), (axes[1], 0.5)):
        ax.axvline(gate, color="grey", linestyle=":", linewidth=1)
    axes[0].axhline(2.5, color="grey", linestyle=":", linewidth=1)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8,
               title="method (numbers = kl_penalty;\ndotted = 3-mer 0.85, JASPAR 0.5,\nactivity 2.5 targets)")
    fig.suptitle(f"Activity vs naturalness at {calls} fine-tuning-oracle calls, 256 designs per point, seed 0 "
                 "(stars: no fine-tuning)")
    fig.tight_layout(rect=(0, 0, 0.80, 0.95))
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
