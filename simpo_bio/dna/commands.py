"""The user-facing DNA commands: ``simpo-bio sample | evaluate | export | demo``.

``simpo_bio.cli`` dispatches each subcommand here with its argument list. Every command validates its inputs and
fails with one line that names the offending file / record / position (exit status 2), never a traceback, for
the errors a user can make: a missing or corrupt checkpoint, a FASTA with non-ACGT characters or the wrong length,
an oracle that returns NaN.

- ``simpo-bio sample --ckpt RUN.ckpt --num-samples 1000 --out designs.fasta``: sample a fine-tuned (or
  pretrained) model, score with the fine-tuning and the evaluation oracle, write FASTA + a CSV table.
- ``simpo-bio evaluate --fasta designs.fasta`` (any user FASTA) or ``--ckpt RUN.ckpt``: the DRAKES-style metrics
  of :mod:`simpo_bio.dna.metrics` as a table (printed; ``--out`` writes CSV / markdown).
- ``simpo-bio export --run runs/demo --top-k 50 --out top50.fasta``: the top-k designs of a run to FASTA.
- ``simpo-bio demo``: the main job end to end (what ``make demo`` runs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from simpo_bio.dna import io
from simpo_bio.dna.metrics import Evaluator, MotifScanner, metrics_table

DEFAULT_PRETRAINED = "checkpoints/dna/pretrained_dhs.ckpt"
DEFAULT_ORACLE = "checkpoints/dna/oracle_ft.ckpt"
DEFAULT_EVAL_ORACLE = "checkpoints/dna/oracle_eval.ckpt"
DEMO_CONFIGS = ("configs/dna/simpo_base.yaml", "configs/dna/simpo_square_neg.yaml", "configs/dna/demo.yaml")


class CommandError(Exception):
    """A user error reported as one line (``simpo-bio <cmd>: error: ...``) with exit status 2."""


@contextmanager
def _user_errors(cmd: str):
    """Turn the errors a user can cause into one clear line and exit status 2."""
    from simpo_bio.dna.alphabet import SequenceValidationError

    try:
        yield
    except (CommandError, SequenceValidationError, io.FastaFormatError, FileNotFoundError) as err:
        print(f"simpo-bio {cmd}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as err:  # checkpoint errors, NaN rewards: our own messages are already specific
        from simpo_bio.dna.checkpoints import CheckpointError

        if isinstance(err, CheckpointError) or (isinstance(err, ValueError) and "non-finite" in str(err)):
            print(f"simpo-bio {cmd}: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        raise


def _set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(int(n))


# ---------------------------------------------------------------------------------------------- real data sets
def real_sets(cache_dir: str | None = None, top_fraction: float = 0.1) -> dict[str, torch.Tensor]:
    """Real DHS sequences used by the metrics (cached per process).

    Returns:
        ``train`` ``[T, 200]`` (all training sequences, for novelty); ``hepg2_top`` (the top ``top_fraction`` of
        training HepG2 sequences by measured DNase ``total_signal``, the reference of the 3-mer / JASPAR
        correlations); ``hepg2_test`` (HepG2 sequences of the held-out test split, for the reward-distribution
        plot).
    """
    key = (cache_dir, top_fraction)
    if key in _REAL_CACHE:
        return _REAL_CACHE[key]
    from simpo_bio.dna.data import HEPG2_INDEX, load_dhs

    dd = load_dhs(None, cache_dir)
    tr = dd["train"].with_format("numpy", columns=["tokens", "label", "total_signal"])[:]
    te = dd["test"].with_format("numpy", columns=["tokens", "label"])[:]
    train = torch.from_numpy(np.asarray(tr["tokens"], dtype=np.int64))
    hep = np.flatnonzero(tr["label"] == HEPG2_INDEX)
    k = max(1, int(round(len(hep) * top_fraction)))
    top = hep[np.argsort(-np.asarray(tr["total_signal"])[hep], kind="stable")[:k]]
    out = {
        "train": train,
        "hepg2_top": train[torch.from_numpy(np.sort(top))],
        "hepg2_test": torch.from_numpy(np.asarray(te["tokens"], dtype=np.int64)[te["label"] == HEPG2_INDEX]),
    }
    _REAL_CACHE[key] = out
    return out


_REAL_CACHE: dict[Any, dict[str, torch.Tensor]] = {}


def build_evaluator(eval_oracle, reference_model=None, *, jaspar: bool = True, novelty: bool = True,
                    cache_dir: str | None = None, real: dict[str, torch.Tensor] | None = None,
                    max_motifs: int | None = None) -> Evaluator:
    """An :class:`Evaluator` on the real DHS reference sets (:func:`real_sets`).

    Args:
        eval_oracle: the evaluation oracle (object or checkpoint path).
        reference_model: frozen pretrained ``MaskedDiffusion`` (or checkpoint path) for App-Log-Lik; ``None`` skips.
        jaspar: include the JASPAR motif correlation.
        novelty: include novelty (distance to the training set).
        real: pre-loaded :func:`real_sets` output (tests pass small sets here).
        max_motifs: only the first ``max_motifs`` JASPAR motifs (fast tests).
    """
    if isinstance(eval_oracle, str | os.PathLike):
        from simpo_bio.dna.oracle import load_oracle

        eval_oracle = load_oracle(eval_oracle)
    if isinstance(reference_model, str | os.PathLike):
        from simpo_bio.dna.pretrain import load_pretrained

        reference_model = load_pretrained(reference_model)
    real = real if real is not None else real_sets(cache_dir)
    scanner = MotifScanner.jaspar(max_motifs=max_motifs) if jaspar else None
    return Evaluator(eval_oracle, real["hepg2_top"], train_tokens=real["train"] if novelty else None,
                     reference_model=reference_model, motif_scanner=scanner)


# ------------------------------------------------------------------------------------------------- designs out
def design_table(tokens: torch.Tensor, ids: Sequence[str], per_seq: pd.DataFrame | None = None,
                 reward: torch.Tensor | None = None, **constant) -> pd.DataFrame:
    """Per-design table: ``id, sequence, [reward], <per-sequence metrics>, <constant columns>``."""
    from simpo_bio.dna.alphabet import decode

    df = pd.DataFrame({"id": list(ids), "sequence": decode(tokens)})
    if reward is not None:
        df["reward"] = torch.as_tensor(reward).cpu().numpy()
    if per_seq is not None:
        for c in per_seq.columns:
            df[c] = per_seq[c].to_numpy()
    for k, v in constant.items():
        df[k] = v
    return df


def write_designs(out_fasta: str | os.PathLike, table: pd.DataFrame, table_path: str | os.PathLike | None = None,
                  ) -> tuple[Path, Path]:
    """Write a design table as FASTA (header: id, reward, eval_reward, model, scheme) and as CSV/parquet."""
    fields = {c: table[c].tolist() for c in ("reward", "eval_reward") if c in table}
    const = {c: str(table[c].iloc[0]) for c in ("model", "scheme") if c in table and len(table)}
    fasta = io.write_fasta(out_fasta, table["sequence"].tolist(), ids=table["id"].tolist(), fields=fields, **const)
    table_path = Path(table_path) if table_path is not None else Path(out_fasta).with_suffix(".csv")
    return fasta, io.write_table(table, table_path)


def _history_curve(history: list[dict[str, float]]) -> pd.DataFrame:
    from simpo_bio.dna.finetune import history_frame

    return history_frame(history)


def sample_with_progress(policy, num_samples: int, seq_len: int, *, num_steps: int, batch_size: int = 64,
                         generator: torch.Generator | None = None, device=None, desc: str = "sampling") -> torch.Tensor:
    """``policy.sample`` in chunks of ``batch_size`` with a tqdm progress bar; same generator, same designs."""
    from tqdm.auto import tqdm

    chunks = []
    with tqdm(total=num_samples, desc=desc, unit="seq", leave=False, disable=num_samples <= batch_size) as bar:
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            chunks.append(policy.sample(n, seq_len, num_steps=num_steps, generator=generator, device=device))
            bar.update(n)
    return torch.cat(chunks)


def export_run(module, out_dir: str | os.PathLike, *, num_samples: int = 640, eval_oracle=DEFAULT_EVAL_ORACLE,
               num_sampling_steps: int | None = None, seed: int = 12345, evaluate_pretrained: bool = True,
               jaspar: bool = True, evaluator: Evaluator | None = None, batch_size: int = 64,
               model_name: str | None = None) -> dict[str, Any]:
    """Everything a finished fit hands the user, written atomically into ``out_dir``.

    Samples ``num_samples`` designs from ``module.policy`` (and, with ``evaluate_pretrained``, as many from the
    frozen reference), scores them with the fine-tuning oracle and evaluates them with the evaluation oracle, then
    writes ``designs.fasta``, ``designs.csv``, ``pretrained_designs.csv``, ``metrics.csv``, ``metrics.md``,
    ``history.csv``, ``reward_curve.png`` and ``reward_distribution.png``.

    Returns:
        ``{"metrics": {name: row}, "table": markdown, "out_dir": Path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = num_sampling_steps or module.hparams.num_sampling_steps
    scheme = module.scheme.name
    model_name = model_name or str(out / "checkpoints" / "last.ckpt")
    history = pd.DataFrame(module.history)
    if len(history):
        io.write_table(history, out / "history.csv")
        io.plot_reward_curve({scheme: history}, out / "reward_curve.png", band=("reward_q25", "reward_q75"))

    if evaluator is None and eval_oracle is not None:
        evaluator = build_evaluator(eval_oracle, module.reference, jaspar=jaspar)
    sets = {"fine-tuned (" + scheme + ")": (module.policy, scheme, model_name, "designs")}
    if evaluate_pretrained:
        sets = {"pretrained": (module.reference, "none", str(module.hparams.get("pretrained", "pretrained")),
                               "pretrained_designs"), **sets}
    rows, rewards = {}, {}
    for name, (policy, sch, mname, stem) in sets.items():
        gen = torch.Generator(device=module.device).manual_seed(seed)
        t0 = time.perf_counter()
        x = sample_with_progress(policy, num_samples, module.hparams.seq_len, num_steps=steps,
                                 batch_size=batch_size, generator=gen, device=module.device,
                                 desc=f"sampling {name}").cpu()
        r = module.reward(x).cpu()
        prefix = "pretrained" if sch == "none" else sch
        ids = [f"{prefix}-{i:06d}" for i in range(num_samples)]
        per_seq = None
        if evaluator is not None:
            row, per_seq = evaluator.evaluate(x)
            rows[name] = row
            rewards[name] = per_seq["eval_reward"].to_numpy()
        table = design_table(x, ids, per_seq, r, model=mname, scheme=sch)
        if per_seq is None:
            table = table.sort_values("reward", ascending=False)
        write_designs(out / f"{stem}.fasta", table, out / f"{stem}.csv")
        print(f"[simpo-bio] {name}: {num_samples} designs sampled and scored in {time.perf_counter() - t0:.0f} s "
              f"-> {out / (stem + '.fasta')}", flush=True)
    md = ""
    if rows:
        real = None
        try:
            real = real_sets()["hepg2_test"]
        except Exception:  # no DHS data (e.g. a user oracle on other data): designs only
            pass
        if real is not None and len(real) and real.shape[1] == module.hparams.seq_len:
            # real HepG2 enhancers of the held-out test split: what "active" looks like to the eval oracle
            sel = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:num_samples]]
            row, per_seq = evaluator.evaluate(sel)
            rows = {"real HepG2 (test split)": row, **rows}
            rewards = {"real HepG2 (test split)": per_seq["eval_reward"].to_numpy(), **rewards}
        md = metrics_table(rows)
        io.write_table(pd.DataFrame([{"model": k, **v} for k, v in rows.items()]), out / "metrics.csv")
        io.write_text(md + "\n", out / "metrics.md")
        io.plot_reward_distributions(rewards, out / "reward_distribution.png")
    return {"metrics": rows, "table": md, "out_dir": out}


# ------------------------------------------------------------------------------------------------------ sample
def sample_main(argv: list[str] | None = None) -> None:
    """``simpo-bio sample``: designs from a checkpoint to FASTA (+ CSV table)."""
    p = argparse.ArgumentParser(prog="simpo-bio sample", description="Sample designs from a fine-tuned or "
                                "pretrained checkpoint; score them; write FASTA and a CSV table.")
    p.add_argument("--ckpt", required=True, help="fine-tuning checkpoint (runs/.../last.ckpt) or pretrained model")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--out", default="designs.fasta", help="output FASTA (the table goes next to it as .csv)")
    p.add_argument("--table", default=None, help="table path (.csv / .parquet); default: --out with .csv")
    p.add_argument("--num-steps", type=int, default=None, help="sampler steps (default: the run's, else 128)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oracle", default=None, help=f"fine-tuning oracle (default: the run's, else {DEFAULT_ORACLE})")
    p.add_argument("--eval-oracle", default=DEFAULT_EVAL_ORACLE)
    p.add_argument("--no-score", action="store_true", help="write sequences only (no oracle calls)")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    _set_threads(a.threads)
    with _user_errors("sample"):
        if a.num_samples < 1:
            raise CommandError(f"--num-samples must be >= 1, got {a.num_samples}")
        from simpo_bio.dna.finetune import check_rewards, load_policy

        policy, info = load_policy(a.ckpt)
        steps = a.num_steps or info.get("num_sampling_steps") or 128
        x = sample_with_progress(policy, a.num_samples, info["seq_len"], num_steps=steps, batch_size=a.batch_size,
                                 generator=torch.Generator().manual_seed(a.seed))
        reward = per_seq = None
        if not a.no_score:
            from simpo_bio.dna.metrics import oracle_scores
            from simpo_bio.dna.oracle import load_oracle

            oracle = load_oracle(a.oracle or info.get("oracle") or DEFAULT_ORACLE)
            reward = check_rewards(oracle_scores(oracle, x), "the fine-tuning oracle")
            ev = load_oracle(a.eval_oracle)
            per_seq = pd.DataFrame({"eval_reward": oracle_scores(ev, x).numpy()})
        prefix = info["scheme"] if info["kind"] == "finetuned" else "pretrained"
        ids = [f"{prefix}-{i:06d}" for i in range(a.num_samples)]
        table = design_table(x, ids, per_seq, reward, model=str(a.ckpt), scheme=info["scheme"])
        fasta, tab = write_designs(a.out, table, a.table)
    msg = f"wrote {a.num_samples} designs to {fasta} and {tab}"
    if per_seq is not None:
        msg += f" (median eval-oracle Pred-Activity {np.median(per_seq['eval_reward']):.3f})"
    print(msg)


# ---------------------------------------------------------------------------------------------------- evaluate
def evaluate_main(argv: list[str] | None = None) -> None:
    """``simpo-bio evaluate``: DRAKES-style metrics of a FASTA file or of samples from a checkpoint."""
    p = argparse.ArgumentParser(prog="simpo-bio evaluate", description="DRAKES-style metrics (evaluation oracle).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fasta", help="any FASTA of 200-bp DNA sequences (A/C/G/T, either case)")
    src.add_argument("--ckpt", help="sample --num-samples designs from this checkpoint and evaluate them")
    p.add_argument("--num-samples", type=int, default=640)
    p.add_argument("--num-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-oracle", default=DEFAULT_EVAL_ORACLE)
    p.add_argument("--pretrained", default=DEFAULT_PRETRAINED, help="reference model of App-Log-Lik ('' skips)")
    p.add_argument("--no-jaspar", action="store_true", help="skip the JASPAR motif correlation")
    p.add_argument("--max-motifs", type=int, default=None, help="only the first N JASPAR motifs (quick look)")
    p.add_argument("--no-novelty", action="store_true", help="skip the distance to the training set")
    p.add_argument("--name", default=None, help="row name in the table (default: the file name)")
    p.add_argument("--out", default=None, help="write the metrics row (.csv / .md)")
    p.add_argument("--per-sequence", default=None, help="write per-sequence metrics (.csv / .parquet)")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    _set_threads(a.threads)
    with _user_errors("evaluate"):
        from simpo_bio.dna.oracle import load_oracle

        oracle = load_oracle(a.eval_oracle)
        seq_len = int(getattr(oracle, "seq_len", 200))
        if a.fasta:
            ids, x, _ = io.read_fasta(a.fasta, length=seq_len)
            name = a.name or Path(a.fasta).name
        else:
            from simpo_bio.dna.finetune import load_policy

            policy, info = load_policy(a.ckpt)
            steps = a.num_steps or info.get("num_sampling_steps") or 128
            x = sample_with_progress(policy, a.num_samples, seq_len, num_steps=steps,
                                     generator=torch.Generator().manual_seed(a.seed))
            ids = [f"seq-{i:06d}" for i in range(a.num_samples)]
            name = a.name or f"{Path(a.ckpt).name} ({info['scheme']})"
        ev = build_evaluator(oracle, a.pretrained or None, jaspar=not a.no_jaspar, novelty=not a.no_novelty,
                             max_motifs=a.max_motifs)
        row, per_seq = ev.evaluate(x)
        table = metrics_table({name: row})
        if a.out:
            if a.out.endswith(".md"):
                io.write_text(table + "\n", a.out)
            else:
                io.write_table(pd.DataFrame([{"model": name, **row}]), a.out)
        if a.per_sequence:
            io.write_table(design_table(x, ids, per_seq), a.per_sequence)
    print(table)


# ------------------------------------------------------------------------------------------------------ export
def export_main(argv: list[str] | None = None) -> None:
    """``simpo-bio export``: the top-k designs of a run (its ``designs.csv``) to FASTA."""
    p = argparse.ArgumentParser(prog="simpo-bio export", description="Top-k designs of a run to FASTA.")
    p.add_argument("--run", required=True, help="run directory holding designs.csv (or the table itself)")
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--by", default="eval_reward", help="column to rank by (default eval_reward)")
    p.add_argument("--out", default=None, help="output FASTA (default: <run>/top<k>.fasta)")
    a = p.parse_args(argv)
    with _user_errors("export"):
        path = Path(a.run)
        table_path = path / "designs.csv" if path.is_dir() else path
        if not table_path.exists():
            raise CommandError(f"no design table at {table_path} (run `simpo-bio demo` or a fit first)")
        df = pd.read_parquet(table_path) if table_path.suffix == ".parquet" else pd.read_csv(table_path)
        if a.by not in df:
            raise CommandError(f"{table_path} has no column {a.by!r}; columns: {', '.join(df.columns)}")
        if a.top_k < 1:
            raise CommandError(f"--top-k must be >= 1, got {a.top_k}")
        top = df.sort_values(a.by, ascending=False).head(a.top_k)
        out = Path(a.out) if a.out else table_path.parent / f"top{a.top_k}.fasta"
        write_designs(out, top, out.with_suffix(".csv"))
    print(f"wrote the top {len(top)} designs by {a.by} to {out}")


# -------------------------------------------------------------------------------------------------------- demo
#: model file -> (config that trains it, file that config writes). The repository ships the model files; these
#: configs are the slow path for a clone without them (minutes to ~20 min each on 2 CPU cores).
TRAINING_RECIPES = {
    "pretrained": ("configs/dna/pretrain.yaml", "runs/pretrain_dhs/pretrained_dhs.ckpt"),
    "oracle": ("configs/dna/oracle.yaml", "runs/oracle_ft/oracle_ft.ckpt"),
    "eval_oracle": ("configs/dna/oracle_eval.yaml", "runs/oracle_eval/oracle_eval.ckpt"),
}


def ensure_checkpoints(pretrained: str = DEFAULT_PRETRAINED, oracle: str = DEFAULT_ORACLE,
                       eval_oracle: str = DEFAULT_EVAL_ORACLE) -> None:
    """Train the pretrained model / oracles with their configs (:data:`TRAINING_RECIPES`) when missing.

    Raises:
        CommandError: a model file is missing and cannot be trained here (no recipe for a custom path, missing
            config), or training did not write the expected file.
    """
    import shutil

    from simpo_bio.cli import lightning_cli

    for role, path in (("pretrained", pretrained), ("oracle", oracle), ("eval_oracle", eval_oracle)):
        if Path(path).exists():
            continue
        config, produced = TRAINING_RECIPES[role]
        default = {"pretrained": DEFAULT_PRETRAINED, "oracle": DEFAULT_ORACLE, "eval_oracle": DEFAULT_EVAL_ORACLE}
        if str(path) != default[role] or not Path(config).exists():
            raise CommandError(f"{role} checkpoint {path} does not exist (and there is no recipe to train it here)")
        print(f"[simpo-bio] {path} is missing: training it with `simpo-bio fit --config {config}` "
              "(the slow path; a clone of the repository ships this file)", flush=True)
        lightning_cli(["fit", "--config", config])
        if not Path(produced).exists():
            raise CommandError(f"training with {config} did not write {produced}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(produced, path)


def demo_main(argv: list[str] | None = None) -> None:
    """``simpo-bio demo`` (``make demo``): fetch data, load models, fine-tune with square_neg, evaluate, export."""
    p = argparse.ArgumentParser(prog="simpo-bio demo", description="SiMPO fine-tuning of the DHS masked diffusion "
                                "model toward HepG2 activity, end to end (fetch, fine-tune, evaluate, export).")
    p.add_argument("--out", default="runs/demo", help="output directory")
    p.add_argument("--config", action="append", default=None,
                   help=f"LightningCLI config(s) (default: {' + '.join(DEMO_CONFIGS)})")
    p.add_argument("--iterations", type=int, default=None, help="policy iterations (default: the config's)")
    p.add_argument("--num-samples", type=int, default=None, help="designs to evaluate (default: the config's)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--fresh", action="store_true", help="start over even if the output directory holds a run")
    p.add_argument("overrides", nargs="*", help="extra LightningCLI arguments, e.g. --model.init_args.lr=1e-3")
    a, extra = p.parse_known_args(argv)
    _set_threads(a.threads)
    t_start = time.perf_counter()
    out = Path(a.out)
    with _user_errors("demo"):
        print("[simpo-bio] 1/4 data: ENCODE DHS sequences (fetched once into the cache, checksum-verified)",
              flush=True)
        real = real_sets()
        print(f"[simpo-bio]     {len(real['train'])} training sequences, {len(real['hepg2_top'])} top HepG2 "
              "reference sequences", flush=True)
        print("[simpo-bio] 2/4 models: pretrained masked diffusion model + fine-tuning / evaluation oracles",
              flush=True)
        configs = list(a.config or DEMO_CONFIGS)
        args = _demo_args(configs, out, a)
        ensure_checkpoints(**_model_paths(configs))
        print("[simpo-bio] 3/4 fine-tuning with SiMPO (scheme square_neg)", flush=True)
        last = out / "checkpoints" / "last.ckpt"
        if last.exists() and not a.fresh:
            print(f"[simpo-bio]     resuming from {last}", flush=True)
            args += [f"--ckpt_path={last}"]
        from simpo_bio.cli import lightning_cli

        print("[simpo-bio] 4/4 evaluation and export happen at the end of the fit (ExportDesigns)", flush=True)
        lightning_cli(args + list(a.overrides) + list(extra))
        md = (out / "metrics.md")
        if not md.exists():
            raise CommandError(f"the fit finished without writing {md}")
        print("\n" + md.read_text())
    print(f"[simpo-bio] demo finished in {(time.perf_counter() - t_start) / 60:.1f} min; outputs in {out}/: "
          "designs.fasta, designs.csv, metrics.csv, history.csv, reward_curve.png, reward_distribution.png")


def _demo_args(configs: Sequence[str], out: Path, a: argparse.Namespace) -> list[str]:
    """LightningCLI arguments of the demo: the configs plus a generated file that points every output at ``out``."""
    import yaml

    args = ["fit"]
    for c in configs:
        if not Path(c).exists():
            raise CommandError(f"config {c} not found (run the demo from the repository root)")
        args += ["--config", c]
    run_cfg = {"trainer": {
        "default_root_dir": str(out),
        "logger": [
            {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(out), "name": "logs"}},
            {"class_path": "lightning.pytorch.loggers.WandbLogger",
             "init_args": {"save_dir": str(out), "project": "simpo-bio", "offline": True}},
        ],
        "callbacks": [
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
             "init_args": {"dirpath": str(out / "checkpoints"), "save_last": True, "save_top_k": 0}},
            {"class_path": "simpo_bio.dna.finetune.ExportDesigns",
             "init_args": {"out_dir": str(out), **({"num_samples": a.num_samples} if a.num_samples else {}),
                           **_export_overrides(configs)}},
        ],
    }}
    if a.iterations is not None:
        run_cfg["trainer"]["max_epochs"] = a.iterations
    path = io.write_text(yaml.safe_dump(run_cfg, sort_keys=False), out / "run_config.yaml")
    return args + ["--config", str(path)]


def _export_overrides(configs: Sequence[str]) -> dict[str, Any]:
    """The ExportDesigns settings of the given configs (so the generated run config keeps them)."""
    import yaml

    found: dict[str, Any] = {}
    for c in configs:
        cfg = yaml.safe_load(Path(c).read_text()) or {}
        for cb in (cfg.get("trainer") or {}).get("callbacks") or []:
            if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("ExportDesigns"):
                found.update({k: v for k, v in (cb.get("init_args") or {}).items() if k != "out_dir"})
    return found


def _model_paths(configs: Sequence[str]) -> dict[str, str]:
    """``pretrained`` / ``oracle`` / ``eval_oracle`` paths the composed configs use (later files win)."""
    import yaml

    paths = {"pretrained": DEFAULT_PRETRAINED, "oracle": DEFAULT_ORACLE, "eval_oracle": DEFAULT_EVAL_ORACLE}
    for c in configs:
        cfg = yaml.safe_load(Path(c).read_text()) or {}
        init = ((cfg.get("model") or {}).get("init_args")) or {}
        paths.update({k: str(init[k]) for k in ("pretrained", "oracle") if init.get(k)})
    export = _export_overrides(configs)
    if export.get("eval_oracle"):
        paths["eval_oracle"] = str(export["eval_oracle"])
    return paths
