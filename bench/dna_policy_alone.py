"""The policy alone: is a fine-tuned model's own sample natural? A fixed grid of fine-tuning methods at equal calls.

Every entry of :data:`GRID` fine-tunes the shipped pretrained model with the shipped fine-tuning oracle for
``calls = iterations x group_size`` (1,920, as one run of ``make demo``, unless the entry sets ``calls``; the
``distill*`` entries add their candidates' calls) fine-tuning-oracle calls, starting from the shipped defaults
(``simpo_bio/dna/finetune/config.py``: ``square_neg``, leash 0.1, anchor 1, natural range, bounded repulsion) and
changing only what the entry names. Then 256 plain samples of the fitted policy (no selection, seed
``12345 + seed``) are scored by the evaluation oracle with every naturalness column. Baselines of the same seed: the pretrained model and best-of-N at the same calls.

Nothing in training sees the evaluation oracle or the real HepG2 sequences; the choice of a winner (the rule is in
``bench/results/dna-policy-alone.md``, fixed with the grid) uses the fine-tuning-oracle and naturalness columns.

Usage (one process per core, 1 thread; a row already in ``results.jsonl`` is not run again)::

    OMP_NUM_THREADS=1 python bench/dna_policy_alone.py --seeds 5 6 7 --entries default --out runs/bench_alone
    python bench/dna_policy_alone.py --report --out runs/bench_alone

The ``distill*`` entries refit the ``default`` entry's saved policy of the same seed and ``--out`` (run ``default``
first) and add a row for the designs they were refitted on (``distill_kept``, ``distill_motif_kept``).

Writes ``results.jsonl``, ``history_<entry>_s<seed>.csv``, ``policy_<entry>_s<seed>.pt`` and, with ``--report``,
``summary.md`` (one row per entry and seed, then the per-entry means).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

#: The grid, fixed before any of its evaluation-oracle numbers (entry -> what differs from the shipped defaults).
#: Only ``default`` is left: the other entries of the grid (``groups128``, ``trust`` with ``update.trust_coef``,
#: ``last_blocks`` with ``update.trainable``) and the reference-tilted sampler (``tilt`` of
#: ``MaskedDiffusion.sample``) lost and left the code; their numbers are in ``bench/results/dna-policy-alone.md``
#: and they run from commit 866c223 (``git worktree add /tmp/grid 866c223``).
GRID: dict[str, dict] = {
    "default": {},  # the shipped settings, 60 x 32 calls
    # second and third grids (fixed 2026-12-02 13:08 and 13:59 UTC): the composition term of the reward (the policy
    # gradient of N KL(policy's 3-mer spectrum || pretrained's)) lost and left the code; commit 9329c10 runs the
    # third grid's entries (composition_now0.25, composition_now1), commit 2538a93 the second's.
    # fourth grid (fixed 2026-12-02 14:16 UTC, before any of its numbers): the weighting schemes at equal calls, each
    # with its shipped scheme file's parameters (configs/dna/simpo_<scheme>.yaml); square_neg is "default"
    "exp": {"weighting": {"scheme": "exp"}},
    "linear": {"weighting": {"scheme": "linear"}},
    "square": {"weighting": {"scheme": "square"}},
    "linear_neg": {"weighting": {"scheme": "linear_neg", "scheme_params": {"eta": 1.0}}},
    "wd1": {"weighting": {"scheme": "wd1"}},
    # fifth grid (fixed 2026-12-02 16:55 UTC, before any of its numbers): the unsigned schemes at lower temperatures,
    # for pairs at matched drift with the signed schemes of the fourth grid
    "exp_t0.3": {"weighting": {"scheme": "exp", "temperature": 0.3}},
    "exp_t0.1": {"weighting": {"scheme": "exp", "temperature": 0.1}},
    "wd1_t0.3": {"weighting": {"scheme": "wd1", "temperature": 0.3}},
    # sixth grid (fixed 2026-12-02 19:45 UTC, before any of its numbers): smaller groups over more iterations, the
    # mirror of the first grid's groups128 (which lost on every column); the same 1,920 calls
    "groups16_e1": {"group_size": 16, "update": {"update_epochs": 1}},  # 120 x 16, 120 gradient steps (= default)
    "groups16": {"group_size": 16},  # 120 x 16, shipped 2 epochs: 240 gradient steps
    "groups8_e1": {"group_size": 8, "update": {"update_epochs": 1}},  # 240 x 8, 240 gradient steps
    # seventh grid (fixed 2026-12-03 00:55 UTC, before any of its numbers): each iteration's samples reused in the
    # next iterations with truncated importance weights (ReuseFineTuning below), the learning rate divided by the
    # reuse count, so every sample carries the default's lr x uses
    "reuse2": {"reuse": 2, "update": {"lr": 5e-4}},
    # eighth grid (fixed 2026-12-03 06:38 UTC, before any of its numbers): the gate's whole budget (4,000 calls), a
    # tenfold weaker anchor over those iterations at half the learning rate, and the default's fit distilled on its
    # own composition-matched best (distill_policy below; 1,920 + 1,024 calls)
    "calls4000": {"calls": 4000},
    "small_kl": {"calls": 4000, "update": {"kl_coef": 0.1, "lr": 5e-4}},
    "distill5": {"distill": {"epochs": 5}},
    "distill20": {"distill": {"epochs": 20}},
    # ninth grid (fixed 2026-12-03 07:00 UTC, after the eighth grid's seed-0 rows, before any of its own numbers):
    # a kept set chosen with the motif term as heavy as the 3-mer term from twice the candidates (1,920 + 2,048 =
    # 3,968 calls), distilled for 20 or 60 epochs; both share one selection per seed
    "distill_motif": {"distill": {"epochs": 20, "candidates": 2048, "motif_ratio": 1.0},
                      "kept_label": "distill_motif_kept"},
    "distill_motif_e60": {"distill": {"epochs": 60, "candidates": 2048, "motif_ratio": 1.0},
                          "kept_label": "distill_motif_kept"},
    # tenth and eleventh grids (fixed 2026-12-03 13:14 and 13:30 UTC, before any of their numbers): the
    # distillation twice in a row, at lr 1e-3, followed by SiMPO iterations, and SiMPO's own update with the
    # selection as its weights (kept-only or signed) lost and left the code; commit 3e035b8 runs them
    # thirteenth grid (fixed 2026-12-03 15:33 UTC, before any of its numbers): direct reward backpropagation through
    # a straight-through Gumbel-softmax sampler (build_gradient below; DRAKES' idea), 60 x 32 calls, the
    # trajectory-KL weight alpha and the Adam learning rate varied
    "rg_a0.1_lr3e-4": {"reward_gradient": {"alpha": 0.1, "lr": 3e-4}},
    "rg_a0.3": {"reward_gradient": {"alpha": 0.3, "lr": 1e-3}},
    "rg_a1": {"reward_gradient": {"alpha": 1.0, "lr": 1e-3}},
    "rg_a3": {"reward_gradient": {"alpha": 3.0, "lr": 1e-3}},
    # fourteenth grid (fixed 2026-12-03 16:01 UTC, before any of its numbers): rg_a0.1_lr3e-4 with the batch's 3-mer
    # spectrum and motif-hit profile held to the pretrained model's own (composition terms of build_gradient)
    "rgc_k3_m3": {"reward_gradient": {"alpha": 0.1, "lr": 3e-4, "kmer_weight": 3.0, "motif_weight": 3.0}},
    "rgc_k10_m10": {"reward_gradient": {"alpha": 0.1, "lr": 3e-4, "kmer_weight": 10.0, "motif_weight": 10.0}},
    "rgc_k10_m10_c4000": {"calls": 4000,
                          "reward_gradient": {"alpha": 0.1, "lr": 3e-4, "kmer_weight": 10.0, "motif_weight": 10.0}},
    # sixteenth grid (fixed 2026-12-03 17:17 UTC, before any of its numbers): at 4,000 calls, both weights halved,
    # and the motif weight tripled
    "rgc_k5_m5_c4000": {"calls": 4000,
                        "reward_gradient": {"alpha": 0.1, "lr": 3e-4, "kmer_weight": 5.0, "motif_weight": 5.0}},
    "rgc_k10_m30_c4000": {"calls": 4000,
                          "reward_gradient": {"alpha": 0.1, "lr": 3e-4, "kmer_weight": 10.0, "motif_weight": 30.0}},
    # seventeenth grid (fixed 2026-12-07 01:02 UTC, before any of its numbers): between 5 / 5 and 10 / 10 at 4,000 calls
    "rgc_k7_m7_c4000": {"calls": 4000,
                        "reward_gradient": {"alpha": 0.1, "lr": 3e-4, "kmer_weight": 7.0, "motif_weight": 7.0}},
    "rgc_k5_m10_c4000": {"calls": 4000,
                         "reward_gradient": {"alpha": 0.1, "lr": 3e-4, "kmer_weight": 5.0, "motif_weight": 10.0}},
}
CALLS = 1920
DESIGNS = 256
NUM_STEPS = 16


def reuse_fine_tuning_class():
    """:class:`SiMPOFineTuning` that reuses each iteration's samples over ``reuse`` iterations (a bench candidate).

    Iteration ``t`` trains on its own group and on the groups of iterations ``t - reuse + 1 .. t - 1``. A reused
    sample ``x`` from iteration ``k`` keeps its weight ``w`` (signed, from its own group) times the truncated
    importance ratio ``min(exp(ELBO_t(x) - ELBO_k(x)), ratio_cap)``: the ELBO stands in for ``log pi`` (a lower
    bound; no exact likelihood exists), both ELBOs on the same masked subsets (one seeded generator per stored
    group: common random numbers), in eval mode and without gradient. The buffer is not checkpointed.
    """
    import torch

    from simpo_bio.dna.finetune import SiMPOFineTuning

    class ReuseFineTuning(SiMPOFineTuning):
        def __init__(self, *args, reuse: int = 2, ratio_cap: float = 2.0, **kwargs):
            if isinstance(reuse, bool) or not isinstance(reuse, int) or reuse < 1:
                raise ValueError(f"reuse must be an integer >= 1, got {reuse!r}")
            if not ratio_cap >= 1.0:
                raise ValueError(f"ratio_cap must be >= 1, got {ratio_cap!r}")
            super().__init__(*args, **kwargs)
            self.reuse, self.ratio_cap, self.stored = reuse, float(ratio_cap), []
            self.last_pool = 0

        def ratio_elbo(self, x, seed: int):
            """ELBO ``[B]`` (nats) of the current policy on fixed masked subsets (no gradient, eval mode)."""
            g = torch.Generator(device=x.device).manual_seed(seed)
            was = self.policy.training
            self.policy.eval()
            with torch.no_grad():
                e = -self.policy.elbo_loss_by_count(x, num_draws=self.update_config.elbo_draws, shared_noise=True,
                                                    generator=g)
            self.policy.train(was)
            return e

        def policy_update(self, x, weight):
            seed = 1_000_003 * (int(self.hparams.seed) + 1) + int(self.current_epoch)
            xs, ws, ratios = [x], [weight], []
            for xb, wb, eb, sb in self.stored:
                r = (self.ratio_elbo(xb, sb) - eb).exp().clamp(max=self.ratio_cap)
                xs.append(xb)
                ws.append(wb * r)
                ratios.append(r)
            self.stored.append((x, weight, self.ratio_elbo(x, seed), seed))
            self.stored = self.stored[-(self.reuse - 1):] if self.reuse > 1 else []
            self.last_ratios = torch.cat(ratios) if ratios else torch.ones(0)
            self.last_pool = sum(t.shape[0] for t in xs)
            return super().policy_update(torch.cat(xs), torch.cat(ws))

        def training_step(self, batch, batch_idx: int):
            loss = super().training_step(batch, batch_idx)
            r = self.last_ratios
            self.history[-1].update(reuse_pool=float(self.last_pool),
                                    reuse_ratio_mean=float(r.mean()) if r.numel() else 1.0,
                                    reuse_ratio_capped=float((r >= self.ratio_cap).float().mean()) if r.numel() else 0.0)
            return loss

    return ReuseFineTuning


DISTILL_CANDIDATES = 1024  # samples of the fitted policy scored for the distillation (fine-tuning-oracle calls)


def distill_policy(module, seed: int, *, epochs: int, candidates: int = DISTILL_CANDIDATES, keep: int = DESIGNS,
                   lr: float = 3e-4, batch_size: int = 32, motif_scanner=None, num_steps: int = NUM_STEPS,
                   selection_weight: float = 1.0, target: float = 0.85, motif_ratio: float = 0.3):
    """Filtered fine-tuning of a fitted policy on its own composition-matched best (a bench candidate, eighth grid).

    ``candidates`` samples of ``module.policy`` (seed ``2000 + seed``) are scored by ``module.reward`` (as many
    fine-tuning-oracle calls, counted in ``module.reward_queries``); ``keep`` of them are kept by the demo's
    composition-matched selection (:func:`simpo_bio.dna.design.selection.composition_matched`: weight
    ``selection_weight`` (1, the grid's; 0 = top-``keep`` by reward), 3-mer ``target`` (0.85) against the pretrained
    model's own samples, ``motif_ratio`` (0.3), feasible designs only); then the policy
    is trained on the kept set by maximum likelihood (its ELBO, ``MaskedDiffusion.elbo_loss``, nats per sequence)
    for ``epochs`` epochs of AdamW at ``lr``, minibatches of ``batch_size`` (a seeded shuffle). Modifies
    ``module.policy`` in place.

    Returns:
        ``(kept [keep, L] long, losses [epochs] float)``: the kept designs and each epoch's mean ELBO loss (nats).

    Raises:
        ValueError: ``epochs < 1``, ``batch_size < 1``, ``lr <= 0`` or ``candidates < keep``.
    """
    import torch

    from simpo_bio.dna.design.selection import composition_matched

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"distill epochs must be an integer >= 1, got {epochs!r}")
    if batch_size < 1 or not lr > 0:
        raise ValueError(f"distill batch_size must be >= 1 and lr > 0, got {batch_size!r}, {lr!r}")
    if candidates < keep:
        raise ValueError(f"distill candidates ({candidates}) must be >= the designs kept ({keep})")
    policy = module.policy
    policy.eval()
    with torch.no_grad():
        x = policy.sample(candidates, module.seq_len, num_steps=num_steps, seed=2000 + seed, batch_size=128)
    r = module.reward(x).cpu()
    module.reward_queries += candidates
    feasible = module.constraints.violation(x) == 0 if module.constraints is not None else None
    chosen = composition_matched(x, r, keep, module.reference, weight=selection_weight,
                                 target=target if selection_weight > 0 else None, motif_ratio=motif_ratio,
                                 motif_scanner=motif_scanner, feasible=feasible, num_steps=num_steps)
    kept = x[chosen.index]
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(7 + seed)
    losses = []
    policy.train()
    for _ in range(epochs):
        order, total = torch.randperm(keep, generator=g), 0.0
        for i in range(0, keep, batch_size):
            loss = policy.elbo_loss(kept[order[i:i + batch_size]]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * min(batch_size, keep - i)
        losses.append(total / keep)
    policy.eval()
    return kept, losses


def nearest_hamming(samples, kept):
    """Hamming distance ``[N]`` (bases) of each sample ``[N, L]`` to its nearest row of ``kept`` ``[K, L]``."""
    return (samples[:, None, :] != kept[None, :, :]).sum(-1).min(1).values


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entries", nargs="+", default=list(GRID), choices=list(GRID))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/bench_alone")
    p.add_argument("--report", action="store_true", help="only write summary.md from results.jsonl")
    p.add_argument("--no-baselines", action="store_true", help="skip the pretrained and best-of-N rows (another "
                   "process writes them)")
    return p.parse_args(argv)


def schedule(spec: dict, entry: str = "entry") -> tuple[int, int]:
    """``(group_size, iterations)`` of a grid entry's fit: ``spec["calls"]`` (default 1,920) in groups of
    ``spec["group_size"]`` (default 32).

    Raises:
        ValueError: the calls are not a whole number of groups.
    """
    group, calls = spec.get("group_size", 32), spec.get("calls", CALLS)
    iterations = spec.get("iterations", calls // group)
    if group * iterations != calls:
        raise ValueError(f"grid entry {entry!r}: {group} x {iterations} != {calls} calls")
    return group, iterations


def entry_calls(spec: dict) -> int:
    """Fine-tuning-oracle calls of a grid entry: its fit (:func:`schedule`); for a ``distill`` entry the default's
    1,920 plus its ``candidates`` (1,024)."""
    if "distill" not in spec:
        group, iterations = schedule(spec)
        return group * iterations
    return CALLS + spec["distill"].get("candidates", DISTILL_CANDIDATES)


def build(entry: str, seed: int):
    """The :class:`SiMPOFineTuning` module and the iteration count of one grid entry."""
    from simpo_bio.dna.finetune import SamplingConfig, SiMPOFineTuning, UpdateConfig, WeightingConfig

    spec = GRID[entry]
    group, iterations = schedule(spec, entry)
    cls, extra = SiMPOFineTuning, {}
    if "reuse" in spec:
        cls, extra = reuse_fine_tuning_class(), {"reuse": spec["reuse"]}
    module = cls(seed=seed, log_reference_elbo=False, **extra,
                             sampling=SamplingConfig(group_size=group, num_groups=1, num_steps=NUM_STEPS),
                             weighting=WeightingConfig(**spec.get("weighting", {})),
                             update=UpdateConfig(**spec.get("update", {})))
    return module, iterations


def build_gradient(entry: str, seed: int, motif_scanner=None):
    """The shipped :class:`~simpo_bio.dna.finetune.gradient.RewardGradientFineTuning` of a ``reward_gradient``
    entry: ``alpha`` is ``gradient.kl_penalty``; the composition weights default to 0 here (the thirteenth grid's
    entries have none). Its generator is seeded ``3000 + seed``, the seed of the grids' fits (the fits of commit
    935c824, the bench's own function then, give the same weights bit for bit: ``bench/results/dna-policy-alone.md``).
    """
    import torch

    from simpo_bio.dna.finetune import GradientConfig, RewardGradientFineTuning, SamplingConfig

    spec = dict(GRID[entry]["reward_gradient"])
    group, _ = schedule(GRID[entry], entry)
    cfg = GradientConfig(kl_penalty=spec.pop("alpha"), kmer_weight=spec.pop("kmer_weight", 0.0),
                         motif_weight=spec.pop("motif_weight", 0.0), **spec)
    module = RewardGradientFineTuning(seed=seed, gradient=cfg, motif_scanner=motif_scanner,
                                      sampling=SamplingConfig(group_size=group, num_groups=1, num_steps=NUM_STEPS))
    module.generator = torch.Generator().manual_seed(3000 + seed)
    return module


def main(argv=None) -> int:
    a = parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    done = out / "results.jsonl"
    rows = [json.loads(s) for s in done.read_text().splitlines() if s.strip()] if done.exists() else []
    if a.report:
        return report(rows, out)

    import lightning.pytorch as pl
    import pandas as pd

    from simpo_bio.dna.design.designs import build_evaluator
    from simpo_bio.dna.models.pretrain import load_pretrained
    from simpo_bio.dna.oracles.oracle import load_oracle, oracle_scores

    have = {(r["method"], r["seed"]) for r in rows}
    ft = load_oracle("checkpoints/dna/oracle_ft.ckpt")
    ref = load_pretrained("checkpoints/dna/pretrained_dhs.ckpt")
    ev = build_evaluator("checkpoints/dna/oracle_eval.ckpt", ref, jaspar=True, novelty=False)

    def record(method, seed, tokens, **extra):
        row, _ = ev.evaluate(tokens)
        row = {"method": method, "seed": seed, **extra, **row,
               "ft_reward_median": float(oracle_scores(ft, tokens).median())}
        rows.append(row)
        with open(done, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)

    for seed in a.seeds:
        if ("pretrained", seed) not in have and not a.no_baselines:
            record("pretrained", seed, ref.sample(DESIGNS, 200, num_steps=NUM_STEPS, seed=12345 + seed), calls=0)
        if ("best-of-N", seed) not in have and not a.no_baselines:
            pool = ref.sample(CALLS, 200, num_steps=NUM_STEPS, seed=1000 + seed, batch_size=128)
            top = oracle_scores(ft, pool).argsort(descending=True)[:DESIGNS]
            record("best-of-N", seed, pool[top], calls=CALLS)
        for entry in a.entries:
            if (entry, seed) in have:
                continue
            pl.seed_everything(seed, verbose=False)
            if "distill" in GRID[entry]:  # the default's fit of this seed, then the distillation
                m, _ = build("default", seed)
                base = out / f"policy_default_s{seed}.pt"
                if not base.exists():
                    raise SystemExit(f"{entry}: {base} is missing: run --entries default first (same --out)")
                m.policy.load_state_dict(torch.load(base, weights_only=True))
                m.history = pd.read_csv(out / f"history_default_s{seed}.csv").to_dict("records")
                spec, t0 = GRID[entry], time.time()
                kept, losses = distill_policy(m, seed, motif_scanner=ev.motif_scanner, **spec["distill"])
                fit_s = time.time() - t0
                calls, label = entry_calls(spec), spec.get("kept_label", "distill_kept")  # shared selection, one row
                if (label, seed) not in have:
                    have.add((label, seed))
                    record(label, seed, kept, calls=calls)
                x = m.policy.sample(DESIGNS, 200, num_steps=NUM_STEPS, seed=12345 + seed)
                near = nearest_hamming(x, kept).float()
                record(entry, seed, x, calls=calls, fit_s=fit_s, distill_loss_first=losses[0],
                       distill_loss_last=losses[-1], nearest_kept_median=float(near.median()),
                       frac_within10_of_kept=float((near <= 10).float().mean()))
                continue
            m, iterations = build(entry, seed)
            hist, saved = out / f"history_{entry}_s{seed}.csv", out / f"policy_{entry}_s{seed}.pt"
            fit_s = None
            if saved.exists() and hist.exists():
                m.policy.load_state_dict(torch.load(saved, weights_only=True))
                m.history = pd.read_csv(hist).to_dict("records")
            elif "reward_gradient" in GRID[entry]:
                m = build_gradient(entry, seed, ev.motif_scanner)
                t0 = time.time()
                pl.Trainer(max_epochs=iterations, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                           enable_model_summary=False).fit(m)
                fit_s = time.time() - t0
                pd.DataFrame(m.history).to_csv(hist, index=False)
                torch.save(m.policy.state_dict(), saved)
            else:
                t0 = time.time()
                pl.Trainer(max_epochs=iterations, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                           enable_model_summary=False).fit(m)
                fit_s = time.time() - t0
                pd.DataFrame(m.history).to_csv(hist, index=False)
                torch.save(m.policy.state_dict(), saved)
            kl = sum(h["kl_ref"] for h in m.history[-3:]) / 3
            extra = {"calls": int(m.reward_queries) if fit_s is not None else GRID[entry].get("calls", CALLS),
                     "kl_ref": kl, "fit_s": fit_s}
            record(entry, seed, m.policy.sample(DESIGNS, 200, num_steps=NUM_STEPS, seed=12345 + seed), **extra)
    return report(rows, out)


COLUMNS = ["method", "seed", "calls", "kl_ref", "ft_reward_median", "pred_activity_median", "kmer3_corr",
           "jaspar_corr", "gc_median", "frac_gc_outside", "frac_homopolymer_over", "diversity_hamming", "fit_s",
           "nearest_kept_median", "frac_within10_of_kept"]


def report(rows, out: Path) -> int:
    import pandas as pd

    if not rows:
        print("no rows yet")
        return 0
    df = pd.DataFrame(rows)
    cols = [c for c in COLUMNS if c in df]
    text = df[cols].sort_values(["method", "seed"]).to_string(index=False, float_format="%.3f")
    means = df[cols].drop(columns=["seed"]).groupby("method").mean(numeric_only=True)
    text += "\n\nmeans over seeds:\n" + means.to_string(float_format="%.3f")
    (out / "summary.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
