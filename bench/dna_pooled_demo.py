"""The shipped demo on given seeds, with best-of-N at the same oracle calls.

For each ``--seeds`` value S this runs ``simpo-bio demo --seed S --out OUT/sS --threads T`` (skipped when
``OUT/sS/metrics.csv`` exists; its wall time is recorded), reads its fine-tuned row of ``metrics.csv``, and adds
best-of-N sampling from the pretrained model at the same number of fine-tuning-oracle calls (the top 256 of N
samples by the fine-tuning oracle, sampling seed 1000 + S). The calls are counted from the run's own files
(:func:`demo_calls`).

Usage: the demo of one natural-policy run, alone on the 2-core machine (the demo's own threads)::

    python bench/dna_pooled_demo.py --seeds 15 16 17 18 19 --threads 2 --out runs/bench_demo_np

(the demo of two SiMPO runs, until 2026-12-07, was run one seed per core: ``--threads 1``).

Appends one row per seed and method to ``OUT/pooled_demo.jsonl``; ``--table`` prints the markdown table of all
rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

COLUMNS = ["pred_activity_median", "kmer3_corr", "jaspar_corr", "gc_median", "frac_gc_outside",
           "frac_homopolymer_over", "diversity_hamming", "frac_train_copies"]  # metrics.Evaluator's row keys


def demo_calls(run: Path) -> tuple[int, int]:
    """(fine-tuning-oracle calls of the demo in ``run``, designs kept) from its files: each run's
    ``history.csv`` (``reward_queries``; the other runs in ``run/run_seed*/``), plus the candidates the selection
    scored (the designs' share of the demo's ``DEMO_SELECTION``)."""
    from simpo_bio.dna.cli import DEMO_NUM_SAMPLES, DEMO_SELECTION

    train = int(pd.read_csv(run / "history.csv")["reward_queries"].max())
    for other in sorted(run.glob("run_seed*")):  # the other runs' CSV logs (every version, if one resumed)
        train += max(int(pd.read_csv(f).filter(like="reward_queries").max().max())
                     for f in other.glob("logs/version_*/metrics.csv"))
    n = len(pd.read_csv(run / "designs.csv"))
    return train + DEMO_SELECTION.scaled(n, DEMO_NUM_SAMPLES).candidates, n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[5, 7, 9])
    p.add_argument("--out", default="runs/bench_pooled")
    p.add_argument("--num-steps", type=int, default=16, help="sampler steps of best-of-N (the demo's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the demo and of best-of-N")
    p.add_argument("--table", action="store_true", help="print the table of all rows and stop")
    a = p.parse_args(argv)
    out = Path(a.out)
    done = out / "pooled_demo.jsonl"
    rows = [json.loads(x) for x in done.read_text().splitlines()] if done.exists() else []
    if a.table:
        cols = ["method", "seed", "calls", *COLUMNS]
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        first = {}
        for r in rows:  # one row per method and seed (a seed run twice at once writes its identical row twice)
            first.setdefault((r["method"], r["seed"]), r)
        for r in sorted(first.values(), key=lambda r: (r["method"], r["seed"])):
            print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
        return 0
    torch.set_num_threads(a.threads)
    out.mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:
        run = out / f"s{seed}"
        wall = None
        if not (run / "metrics.csv").exists():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "simpo_bio.cli", "demo", "--seed", str(seed), "--out", str(run),
                            "--threads", str(a.threads)], check=True)
            wall = time.perf_counter() - t0
        calls, n = demo_calls(run)
        have = {(r["method"], r["seed"]) for r in rows}
        metrics = pd.read_csv(run / "metrics.csv")
        tuned = metrics[metrics["model"].str.startswith("fine-tuned")].iloc[0].to_dict()
        if ("demo", seed) not in have:
            record(done, rows, {"method": "demo", "seed": seed, "calls": calls, "wall_s": wall, **tuned})
        if ("best-of-N", seed) not in have:
            from simpo_bio.dna.design.designs import build_evaluator
            from simpo_bio.dna.models.pretrain import load_pretrained
            from simpo_bio.dna.oracles.oracle import load_oracle, oracle_scores

            ref = load_pretrained("checkpoints/dna/pretrained_dhs.ckpt")
            ft = load_oracle("checkpoints/dna/oracle_ft.ckpt")
            ev = build_evaluator("checkpoints/dna/oracle_eval.ckpt", ref, jaspar=True, novelty=True)
            pool = ref.sample(calls, 200, num_steps=a.num_steps, seed=1000 + seed, batch_size=128)
            top = oracle_scores(ft, pool).argsort(descending=True)[:n]
            row, _ = ev.evaluate(pool[top])
            record(done, rows, {"method": "best-of-N", "seed": seed, "calls": calls, **row})
    return 0


def record(path: Path, rows: list, row: dict) -> None:
    rows.append(row)
    with open(path, "a") as fh:
        fh.write(json.dumps(row, default=float) + "\n")
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
