"""Synthesis readiness of a run's designs: the default vendor constraints, and what ``--repair`` costs.

Reads ``RUN/designs.csv`` (and ``RUN/pretrained_designs.csv`` when present), checks every design against
:class:`simpo_bio.dna.design.synthesis.SynthesisConstraints` (defaults: every 50-bp window at GC 0.25-0.65, homopolymer
<= 10 bp, no BsaI / BsmBI site on either strand, sites from ``Bio.Restriction``), then repairs every flagged
design of the run with DnaChisel (:func:`simpo_bio.dna.design.synthesis.repair_designs`, margin 0.5 log-odds) and
re-scores the repairs with the fine-tuning and evaluation oracles. Prints one markdown table of designs per
constraint, then the repair summary (counts, bases changed, reward change by both oracles, seconds).

Usage (after ``make demo``)::

    python bench/dna_synthesis.py --run runs/demo
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import pandas as pd
import torch

from simpo_bio.dna.design.synthesis import (
    SynthesisConstraints,
    constraint_summary,
    flags_column,
    repair_designs,
)
from simpo_bio.dna.oracles.oracle import load_oracle, oracle_scores

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--oracle", default=str(ROOT / "checkpoints/dna/oracle_ft.ckpt"))
    p.add_argument("--eval-oracle", default=str(ROOT / "checkpoints/dna/oracle_eval.ckpt"))
    p.add_argument("--margin", type=float, default=0.5)
    a = p.parse_args()
    torch.set_num_threads(1)
    run = Path(a.run)
    c = SynthesisConstraints()
    sets = {"fine-tuned designs": run / "designs.csv", "pretrained designs": run / "pretrained_designs.csv"}
    tables = {name: pd.read_csv(path) for name, path in sets.items() if path.exists()}
    print(f"# {date.today()} · {platform.node()} · {platform.processor() or platform.machine()} · torch "
          f"{torch.__version__}, 1 thread · run {run}\n")
    counts = {}
    for name, df in tables.items():
        t0 = time.perf_counter()
        flags = flags_column(df["sequence"].astype(str).tolist(), c)
        counts[name] = constraint_summary(flags, c).set_index("constraint")
        print(f"checked {len(df)} {name} in {time.perf_counter() - t0:.2f} s")
    first = next(iter(counts.values()))
    head = "| constraint | checks | " + " | ".join(f"{n} (of {len(tables[n])})" for n in counts) + " |"
    print("\n" + head + "\n|" + "---|" * (2 + len(counts)))
    for label in first.index:
        print(f"| {label} | {first.loc[label, 'checks']} | "
              + " | ".join(str(int(counts[n].loc[label, "designs"])) for n in counts) + " |")

    oracle, ev = load_oracle(a.oracle), load_oracle(a.eval_oracle)
    df = tables["fine-tuned designs"]
    t0 = time.perf_counter()
    kept, report = repair_designs(df, c, margin=a.margin,
                                  score=lambda x: oracle_scores(oracle, x, what="the fine-tuning oracle"),
                                  eval_score=lambda x: oracle_scores(ev, x, what="the evaluation oracle"))
    secs = time.perf_counter() - t0
    ok = report[report["status"] == "repaired"]
    eval_change = ok["eval_reward_after"] - ok["eval_reward_before"]
    print(f"\nrepair of the {len(df)} fine-tuned designs (margin {a.margin:g} log-odds) in {secs:.1f} s:")
    print(f"- flagged {len(report)}; repaired and kept {len(ok)}; lost more than the margin "
          f"{int((report['status'] == 'rejected: reward').sum())}; unsolved "
          f"{int((report['status'] == 'rejected: unsolved').sum())}; designs passing after repair {len(kept)}")
    if len(ok):
        print(f"- bases changed per repaired design: median {ok['bases_changed'].median():g}, max "
              f"{ok['bases_changed'].max():g}")
        print(f"- fine-tuning-oracle change: median {ok['reward_change'].median():+.3f}, min "
              f"{ok['reward_change'].min():+.3f} log-odds; evaluation-oracle change: median "
              f"{eval_change.median():+.3f}, min {eval_change.min():+.3f}")
        print(f"- every kept design passes: {flags_column(kept['sequence'].tolist(), c) == ['none'] * len(kept)}")


if __name__ == "__main__":
    main()
