"""Selection from the pooled samples of two independent fine-tuning runs (a probe; not a shipped setting).

Each run of the shipped setting drifts toward its own motif mix, and a run that drifted far leaves no natural set
in its own samples (``bench/results/dna-selection.md``, fourth pass, held-out seeds). Runs of different seeds
over-use different motifs. This bench keeps 256 designs from 2,048 + 2,048 samples of two runs, with the shipped
selection (3-mer target 0.85 from weight 1, motif x0.3; ``selection.composition_matched``). The candidate pools
are the cached ones of ``bench/dna_frontier.py`` (``pool_square_neg_s{seed}_4096.pt``: candidates and their
fine-tuning-oracle rewards). A pair costs 2 x 1,920 training calls and 4,096 selection calls (7,936 in all).

Usage::

    OMP_NUM_THREADS=1 python bench/dna_pooled_fits.py --out runs/bench_select --seeds 0 1 2 3 4

Appends one row per pair to ``pooled_pairs.jsonl`` in ``--out``: the evaluation columns, the FT-oracle median, the
3-mer correlation the selection reached, and how many kept designs came from each run.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/bench_select")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--target", type=float, default=0.85)
    p.add_argument("--motif-ratio", type=float, default=0.3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from simpo_bio.dna.design.designs import build_evaluator
    from simpo_bio.dna.design.selection import composition_matched
    from simpo_bio.dna.finetune.leash import build_constraints
    from simpo_bio.dna.models.pretrain import load_pretrained
    from simpo_bio.dna.oracles.oracle import load_oracle, oracle_scores

    out = Path(a.out)
    ref = load_pretrained("checkpoints/dna/pretrained_dhs.ckpt")
    ft = load_oracle("checkpoints/dna/oracle_ft.ckpt")
    ev = build_evaluator("checkpoints/dna/oracle_eval.ckpt", ref, jaspar=True, novelty=True)
    cons = build_constraints({"gc_window": [0.4, 0.6], "max_homopolymer": 10, "max_dust": 2.0})
    pools = {s: torch.load(out / f"pool_square_neg_s{s}_4096.pt", weights_only=True) for s in a.seeds}
    done = out / "pooled_pairs.jsonl"
    have = {tuple(json.loads(x)["seeds"]) for x in done.read_text().splitlines()} if done.exists() else set()
    for pair in itertools.combinations(a.seeds, 2):
        if pair in have:
            continue
        cand = torch.cat([pools[s][0][:2048] for s in pair])
        reward = torch.cat([pools[s][1][:2048] for s in pair])
        kept = composition_matched(cand, reward, 256, ref, weight=1.0, target=a.target, motif_ratio=a.motif_ratio,
                                   motif_scanner=ev.motif_scanner, feasible=cons.violation(cand) == 0)
        row, _ = ev.evaluate(cand[kept.index])
        row = {"seeds": list(pair), "calls": 2 * 1920 + 4096, "select_weight": kept.weight,
               "kmer3_vs_target": kept.kmer3_corr, "kept_per_run": [int((kept.index < 2048).sum()),
                                                                    int((kept.index >= 2048).sum())],
               "ft_reward_median": float(oracle_scores(ft, cand[kept.index]).median()), **row}
        with open(done, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
