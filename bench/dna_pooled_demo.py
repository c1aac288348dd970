"""The shipped demo (two runs, pooled selection) on given seeds, with best-of-N at the same oracle calls.

For each ``--seeds`` value S this runs ``simpo-bio demo --seed S --out OUT/sS --threads 1`` (runs of seeds S and
S + 1, 256 designs kept of 2,048 + 2,048 pooled candidates; skipped when ``OUT/sS/metrics.csv`` exists), reads its
fine-tuned row of ``metrics.csv``, and adds best-of-N sampling from the pretrained model at the same number of
fine-tuning-oracle calls (the top 256 of N samples by the fine-tuning oracle, sampling seed 1000 + S). The calls
are counted from the run's own files (:func:`demo_calls`).

Usage (one process per seed on the 2-core machine)::

    OMP_NUM_THREADS=1 python bench/dna_pooled_demo.py --seeds 5 --out runs/bench_pooled

Appends one row per seed and method to ``OUT/pooled_demo.jsonl``; ``--table`` prints the markdown table of all
rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

COLUMNS = ["pred_activity_median", "kmer3_corr", "jaspar_corr", "gc_median", "frac_gc_outside",
           "frac_homopolymer_over", "diversity_hamming", "frac_train_copies"]  # metrics.Evaluator's row keys


def demo_calls(run: Path) -> tuple[int, int]:
    """(fine-tuning-oracle calls of the demo in ``run``, designs kept) from its files: the first run's
    ``history.csv`` (``reward_queries``) times the number of runs (the others differ only in the seed), plus the
    candidates the selection scored (``run_config.yaml``)."""
    train = int(pd.read_csv(run / "history.csv")["reward_queries"].max())
    export = yaml.safe_load((run / "run_config.yaml").read_text())["trainer"]["callbacks"][-1]["init_args"]
    runs = 1 + len(export.get("pool_with") or [])
    return train * runs + int(export["select_from"]), int(export["num_samples"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[5, 7, 9])
    p.add_argument("--out", default="runs/bench_pooled")
    p.add_argument("--num-steps", type=int, default=16, help="sampler steps of best-of-N (the demo's)")
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
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:
        run = out / f"s{seed}"
        if not (run / "metrics.csv").exists():
            subprocess.run([sys.executable, "-m", "simpo_bio.cli", "demo", "--seed", str(seed), "--out", str(run),
                            "--threads", "1"], check=True)
        calls, n = demo_calls(run)
        have = {(r["method"], r["seed"]) for r in rows}
        metrics = pd.read_csv(run / "metrics.csv")
        tuned = metrics[metrics["model"].str.startswith("fine-tuned")].iloc[0].to_dict()
        if ("pooled demo", seed) not in have:
            record(done, rows, {"method": "pooled demo", "seed": seed, "seeds": [seed, seed + 1], "calls": calls,
                                **tuned})
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
