"""Which weighting scheme should a user pick? SiMPO schemes vs pretrained vs best-of-N at equal oracle calls.

For each seed: the pretrained model (no fine-tuning), best-of-N sampling from the pretrained model with the same
number of fine-tuning-oracle calls as one fine-tuning run, and SiMPO fine-tuning with every scheme. Designs are
evaluated with the *evaluation* oracle (never the fine-tuning one) and the DRAKES-style metrics of
:mod:`simpo_bio.dna.evaluation.metrics`. All hyper-parameters are fixed up front (below / in configs/dna/simpo_base.yaml);
nothing is tuned on the evaluation oracle.

Gates (printed, PASS / FAIL):
1. every SiMPO scheme's median Pred-Activity (mean over seeds) exceeds the 90th percentile of the pretrained
   model's samples (eval oracle);
2. at least one scheme beats best-of-N (median Pred-Activity, mean over seeds) at equal oracle calls.

Usage (the recorded run; ~30-40 min on 2 CPU threads)::

    OMP_NUM_THREADS=2 python bench/dna_finetune.py --threads 2 --out runs/bench_dna_finetune

Writes ``results.csv`` (one row per method and seed), ``summary.md`` (the table) and ``reward_vs_calls.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

SCHEMES = ("exp", "linear", "square", "linear_neg", "square_neg", "wd1")
SCHEME_PARAMS = {"linear_neg": {"eta": 1.0}, "square_neg": {"eta": 1.0}, "wd1": {"eta": 0.5}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pretrained", default="checkpoints/dna/pretrained_dhs.ckpt")
    p.add_argument("--oracle", default="checkpoints/dna/oracle_ft.ckpt")
    p.add_argument("--eval-oracle", default="checkpoints/dna/oracle_eval.ckpt")
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--iterations", type=int, default=16, help="policy iterations per fine-tuning run")
    p.add_argument("--group-size", type=int, default=32)
    p.add_argument("--num-groups", type=int, default=1)
    p.add_argument("--num-steps", type=int, default=16, help="sampler steps (training and evaluation)")
    p.add_argument("--update-epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--eval-samples", type=int, default=128, help="designs evaluated per method and seed")
    p.add_argument("--no-jaspar", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/bench_dna_finetune")
    p.add_argument("--tiny-real", action="store_true", help=argparse.SUPPRESS)  # smoke tests with tiny models
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    import lightning.pytorch as pl

    from simpo_bio.dna.design import designs
    from simpo_bio.dna.finetune import (
        PolicyIterationDataModule,
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
    t_all = time.perf_counter()
    reference = load_pretrained(a.pretrained)
    oracle = load_oracle(a.oracle)
    eval_oracle = load_oracle(a.eval_oracle)
    seq_len = oracle.seq_len
    real = None
    if a.tiny_real:
        g = torch.Generator().manual_seed(0)
        train = torch.randint(0, 4, (200, seq_len), generator=g)
        real = {"train": train, "hepg2_top": train[:20], "hepg2_test": train[20:60]}
    evaluator = designs.build_evaluator(eval_oracle, reference, jaspar=not a.no_jaspar, real=real)
    budget = a.iterations * a.group_size * a.num_groups  # fine-tuning-oracle calls of one run
    n_best = max(1, budget // a.eval_samples)
    print(f"# budget: {budget} oracle calls per run ({a.iterations} iterations x {a.group_size * a.num_groups}); "
          f"best-of-{n_best} for {a.eval_samples} designs; {a.num_steps} sampler steps; {a.seeds} seeds; "
          f"{torch.get_num_threads()} threads", flush=True)

    rows, curves, pre_rewards = [], {}, []

    def evaluate(name, seed, x, extra=None):
        t0 = time.perf_counter()
        row, per_seq = evaluator.evaluate(x)
        row.update({"method": name, "seed": seed, "eval_s": time.perf_counter() - t0, **(extra or {})})
        rows.append(row)
        print(f"{name:>12s} seed {seed}: median Pred-Activity {row['pred_activity_median']:.3f} "
              f"(eval {row['eval_s']:.0f} s)", flush=True)
        return per_seq

    for seed in range(a.seeds):
        gen = torch.Generator().manual_seed(10_000 + seed)
        t0 = time.perf_counter()
        x = reference.sample(a.eval_samples, seq_len, num_steps=a.num_steps, generator=gen)
        per_seq = evaluate("pretrained", seed, x, {"oracle_calls": 0, "sample_s": time.perf_counter() - t0})
        pre_rewards.append(per_seq["eval_reward"].to_numpy())

        # best-of-N: the same number of fine-tuning-oracle calls as one fine-tuning run
        t0 = time.perf_counter()
        cand = reference.sample(a.eval_samples * n_best, seq_len, num_steps=a.num_steps, generator=gen)
        r = oracle_scores(oracle, cand).view(a.eval_samples, n_best)
        best = cand.view(a.eval_samples, n_best, seq_len)[torch.arange(a.eval_samples), r.argmax(1)]
        evaluate("best-of-N", seed, best, {"oracle_calls": a.eval_samples * n_best,
                                           "sample_s": time.perf_counter() - t0})

        for scheme in a.schemes:
            torch.manual_seed(seed)
            module = SiMPOFineTuning(
                pretrained=copy.deepcopy(reference), oracle=oracle, log_reference_elbo=False, seed=seed,
                sampling=SamplingConfig(group_size=a.group_size, num_groups=a.num_groups, seq_len=seq_len,
                                        num_steps=a.num_steps),
                reward=RewardConfig(kl_penalty=0.0, constraints=None),  # this bench: the schemes without a leash
                weighting=WeightingConfig(scheme=scheme, scheme_params=SCHEME_PARAMS.get(scheme),
                                          temperature=a.temperature),
                update=UpdateConfig(update_epochs=a.update_epochs, lr=a.lr, kl_coef=0.0, repel_margin=None,
                                    minibatch_size=None))
            trainer = pl.Trainer(max_epochs=a.iterations, accelerator="cpu", devices=1, logger=False,
                                 enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
            t0 = time.perf_counter()
            trainer.fit(module, PolicyIterationDataModule())
            fit_s = time.perf_counter() - t0
            hist = pd.DataFrame(module.history)
            curves.setdefault(scheme, []).append(hist)
            x = module.policy.sample(a.eval_samples, seq_len, num_steps=a.num_steps,
                                     generator=torch.Generator().manual_seed(20_000 + seed))
            evaluate(scheme, seed, x, {
                "oracle_calls": budget, "fit_s": fit_s,
                "step_sample_s": hist["time_sample_s"].mean(), "step_reward_s": hist["time_reward_s"].mean(),
                "step_update_s": hist["time_update_s"].mean(),
                "train_reward_first": hist["reward_mean"].iloc[0], "train_reward_last": hist["reward_mean"].iloc[-1],
                "ess_mean": hist["ess"].mean(), "negative_mass_mean": hist["negative_mass"].mean()})

    df = pd.DataFrame(rows)
    designs.write_table(df, out / "results.csv")
    p90 = float(np.quantile(np.concatenate(pre_rewards), 0.9))
    methods = ["pretrained", "best-of-N", *a.schemes]
    summary = {}
    for m in methods:
        d = df[df.method == m]
        summary[m] = {c: float(d[c].mean()) for c in d.columns if d[c].dtype.kind in "fi" and c != "seed"}
        summary[m]["median_std"] = float(d["pred_activity_median"].std(ddof=0))
    md = ["| method | oracle calls | Pred-Activity median (mean ± sd over seeds) | ATAC-Acc | 3-mer corr | "
          "JASPAR corr | App-Log-Lik | Diversity (Hamming) | Unique |", "|---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        s = summary[m]
        md.append(f"| {m} | {int(s['oracle_calls'])} | {s['pred_activity_median']:.3f} ± {s['median_std']:.3f} | "
                  f"{s.get('atac_acc', float('nan')):.3f} | {s['kmer3_corr']:.3f} | "
                  f"{s.get('jaspar_corr', float('nan')):.3f} | {s.get('app_log_lik', float('nan')):.1f} | "
                  f"{s['diversity_hamming']:.1f} | {s['frac_unique']:.3f} |")
    table = "\n".join(md)
    schemes_ok = {m: summary[m]["pred_activity_median"] > p90 for m in a.schemes}
    gate1 = all(schemes_ok.values())
    best_scheme = max(a.schemes, key=lambda m: summary[m]["pred_activity_median"])
    gate2 = summary[best_scheme]["pred_activity_median"] > summary["best-of-N"]["pred_activity_median"]
    signed = [m for m in ("linear_neg", "square_neg", "wd1") if m in a.schemes]
    lines = [table, "",
             f"pretrained 90th percentile (eval oracle, pooled over seeds): {p90:.3f}",
             "gate 1 (every scheme's median > pretrained p90): " + ("PASS" if gate1 else "FAIL") + " "
             + json.dumps({m: round(summary[m]["pred_activity_median"], 3) for m in a.schemes}),
             f"gate 2 (best scheme {best_scheme} {summary[best_scheme]['pred_activity_median']:.3f} > best-of-N "
             f"{summary['best-of-N']['pred_activity_median']:.3f}): " + ("PASS" if gate2 else "FAIL")]
    if "exp" in a.schemes:
        for m in signed:
            diff = summary[m]["pred_activity_median"] - summary["exp"]["pred_activity_median"]
            lines.append(f"signed {m} vs exp: {summary[m]['pred_activity_median']:.3f} vs "
                         f"{summary['exp']['pred_activity_median']:.3f} ({diff:+.3f} nats of HepG2 log-odds; "
                         "a relative % is meaningless for log-odds that can be negative)")
    ft = df[df.method.isin(a.schemes)]
    lines.append(f"fine-tuning step breakdown (mean s per iteration, {a.group_size * a.num_groups} sequences, "
                 f"{a.num_steps} steps): sample {ft.step_sample_s.mean():.2f}, reward {ft.step_reward_s.mean():.3f}, "
                 f"update {ft.step_update_s.mean():.2f}")
    lines.append(f"total wall clock: {(time.perf_counter() - t_all) / 60:.1f} min")
    text = "\n".join(lines)
    designs.write_text(text + "\n", out / "summary.md")
    print("\n" + text, flush=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for scheme, hs in curves.items():
        q = hs[0]["reward_queries"].to_numpy()
        m = np.mean([h["reward_mean"].to_numpy() for h in hs], axis=0)
        sd = np.std([h["reward_mean"].to_numpy() for h in hs], axis=0)
        line = ax.plot(q, m, label=scheme)[0]
        ax.fill_between(q, m - sd, m + sd, color=line.get_color(), alpha=0.12)
    pre_ft = float(np.mean([oracle_scores(oracle, reference.sample(a.eval_samples, seq_len, num_steps=a.num_steps,
                                                                   seed=s)).mean() for s in range(1)]))
    ax.axhline(pre_ft, color="k", ls=":", label="pretrained (mean)")
    ax.set_xlabel("fine-tuning oracle calls")
    ax.set_ylabel("mean reward of the sampled group\n(fine-tuning oracle)")
    ax.set_title(f"SiMPO on DHS/HepG2, mean ± sd over {a.seeds} seeds")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    designs.atomic_save_figure(fig, out / "reward_vs_calls.png")
    print(f"wrote {out / 'results.csv'}, {out / 'summary.md'}, {out / 'reward_vs_calls.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
