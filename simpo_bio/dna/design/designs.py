"""Designs out: sample a fine-tuned model, evaluate the designs, write FASTA / tables / plots.

What a finished fit hands the user. :func:`export_run` samples designs from the fine-tuned policy and from the
frozen pretrained reference, scores them with the fine-tuning oracle, evaluates them with the *evaluation* oracle
(:class:`~simpo_bio.dna.evaluation.metrics.Evaluator` on the real DHS reference sets of :func:`real_sets`) and writes
``designs.fasta``, ``designs.csv``, ``metrics.csv``, ``metrics.md``, ``history.csv`` and two plots into the run
directory; :class:`ExportDesigns` calls it at the end of ``fit``. The ``sample``, ``evaluate`` and ``export``
commands (:mod:`simpo_bio.dna.cli`) reuse the pieces.

Every write is atomic (:mod:`simpo_bio.fileio`): a crash mid-write leaves the old file or the new one, never half
a file. FASTA headers carry the design's id and ``key=value`` fields, which
:func:`simpo_bio.dna.data.tables.read_fasta` parses back::

    >square_neg-000017 reward=4.812 eval_reward=4.105 model=runs/demo/last.ckpt scheme=square_neg

Imports: Lightning, :mod:`simpo_bio.dna.data.alphabet`, :mod:`simpo_bio.dna.data.dhs`, :mod:`simpo_bio.dna.finetune.module`,
:mod:`simpo_bio.dna.evaluation.metrics`, :mod:`simpo_bio.dna.oracles.oracle`, :mod:`simpo_bio.dna.design.plots` (the figures, re-exported
here), :mod:`simpo_bio.dna.models.policies`, :mod:`simpo_bio.dna.design.selection`, :mod:`simpo_bio.fileio`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from Bio import SeqIO
from Bio.Seq import Seq
from Bio.SeqRecord import SeqRecord
from tqdm.auto import tqdm

from simpo_bio.dna.data.alphabet import decode
from simpo_bio.dna.data.composition import windowed_gc
from simpo_bio.dna.data.dhs import HEPG2_INDEX, load_dhs
from simpo_bio.dna.design.plots import (  # noqa: F401  (re-exported: designs.plot_* is the public place)
    REWARD_UNITS,
    _oracle_name,
    atomic_save_figure,
    plot_gc_distributions,
    plot_reward_curve,
    plot_reward_distributions,
)
from simpo_bio.dna.design.selection import SelectionConfig, composition_matched
from simpo_bio.dna.design.synthesis import SynthesisConstraints, flags_column
from simpo_bio.dna.evaluation.metrics import Evaluator, MotifScanner, metrics_table
from simpo_bio.dna.finetune.module import SiMPOFineTuning
from simpo_bio.dna.models.policies import load_policy
from simpo_bio.dna.oracles.oracle import load_oracle
from simpo_bio.fileio import atomic_paths, atomic_write

DEFAULT_EVAL_ORACLE = "checkpoints/dna/oracle_eval.ckpt"


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
        eval_oracle = load_oracle(eval_oracle)
    if isinstance(reference_model, str | os.PathLike):
        reference_model, _ = load_policy(reference_model)
    real = real if real is not None else real_sets(cache_dir)
    scanner = MotifScanner.jaspar(max_motifs=max_motifs) if jaspar else None
    return Evaluator(eval_oracle, real["hepg2_top"], train_tokens=real["train"] if novelty else None,
                     reference_model=reference_model, motif_scanner=scanner)


# ------------------------------------------------------------------------------------------ files: FASTA, tables
def _fmt(v) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.4f}"
    s = str(v)
    if any(c.isspace() for c in s):
        raise ValueError(f"header field value {s!r} contains whitespace")
    return s


def write_fasta(
    path: str | os.PathLike,
    sequences: Sequence[str] | torch.Tensor,
    ids: Sequence[str] | None = None,
    fields: Mapping[str, Sequence] | None = None,
    **constant_fields,
) -> Path:
    """Write sequences to FASTA (biopython) atomically.

    Args:
        sequences: strings or a token tensor ``[B, L]``.
        ids: record ids (default ``seq-000000`` ...); must be unique and free of whitespace.
        fields: per-record header values, e.g. ``{"reward": [...], "eval_reward": [...]}`` (length ``B`` each).
        **constant_fields: header values shared by all records, e.g. ``model="runs/demo/last.ckpt"``,
            ``scheme="square_neg"``.

    Raises:
        ValueError: length mismatch between sequences, ids and fields; duplicate ids; whitespace in a value.
    """
    if isinstance(sequences, torch.Tensor | np.ndarray):
        sequences = decode(sequences)
    n = len(sequences)
    ids = [f"seq-{i:06d}" for i in range(n)] if ids is None else [str(i) for i in ids]
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} sequences")
    if len(set(ids)) != n:
        raise ValueError("record ids must be unique")
    fields = dict(fields or {})
    for k, v in fields.items():
        if len(v) != n:
            raise ValueError(f"field {k!r} has {len(v)} values for {n} sequences")
    records = []
    for i, (rid, s) in enumerate(zip(ids, sequences)):
        if any(c.isspace() for c in rid):
            raise ValueError(f"record id {rid!r} contains whitespace")
        desc = [f"{k}={_fmt(v[i])}" for k, v in fields.items()]
        desc += [f"{k}={_fmt(v)}" for k, v in constant_fields.items()]
        records.append(SeqRecord(Seq(s), id=rid, description=" ".join(desc)))
    with atomic_write(path) as fh:
        SeqIO.write(records, fh, "fasta")
    return Path(path)


def write_table(df: pd.DataFrame, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write a table atomically; the format (``fmt``, else the suffix) is ``.csv``, ``.parquet`` or ``.tsv``."""
    path = Path(path)
    suffix = (fmt or path.suffix).lower()
    if suffix == ".parquet":
        with atomic_write(path, "wb") as fh:
            df.to_parquet(fh, index=False)
    elif suffix in (".csv", ".tsv"):
        with atomic_write(path) as fh:
            df.to_csv(fh, index=False, sep="\t" if suffix == ".tsv" else ",")
    else:
        raise ValueError(f"unsupported table format {suffix!r} (use .csv, .tsv or .parquet)")
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file atomically."""
    with atomic_write(path) as fh:
        fh.write(text)
    return Path(path)


# ------------------------------------------------------------------------------------------------- designs out
def design_table(tokens: torch.Tensor, ids: Sequence[str], per_seq: pd.DataFrame | None = None,
                 reward: torch.Tensor | None = None, constraints: SynthesisConstraints | None = None,
                 **constant) -> pd.DataFrame:
    """Per-design table: ``id, sequence, [reward], <per-sequence metrics>, flags, <constant columns>``.

    ``flags`` lists the synthesis-constraint breaches of each design with their positions
    (:func:`simpo_bio.dna.design.synthesis.flags_column` with ``constraints``, default
    :class:`~simpo_bio.dna.design.synthesis.SynthesisConstraints`: every 50-bp window at GC 0.25-0.65, homopolymer
    <= 10 bp, no BsaI / BsmBI site on either strand), ``;``-separated, ``none`` when the design is ready to order.
    """
    df = pd.DataFrame({"id": list(ids), "sequence": decode(tokens)})
    if reward is not None:
        df["reward"] = torch.as_tensor(reward).cpu().numpy()
    if per_seq is not None:
        for c in per_seq.columns:
            df[c] = per_seq[c].to_numpy()
    if constraints is None and len(df):  # the vendor defaults, the GC window no longer than the designs
        constraints = SynthesisConstraints().fitted(int(df["sequence"].str.len().max()))
    df["flags"] = flags_column(df["sequence"].tolist(), constraints)
    for k, v in constant.items():
        df[k] = v
    return df


def write_designs(out_fasta: str | os.PathLike, table: pd.DataFrame, table_path: str | os.PathLike | None = None,
                  ) -> tuple[Path, Path]:
    """Write a design table as FASTA (header: id, reward, eval_reward, flags, model, scheme) and as CSV/parquet.

    Both files are written to temporary names first and replaced only when both are complete
    (:func:`simpo_bio.fileio.atomic_paths`): a failure, a kill or a full disk leaves the old pair, never a new FASTA
    beside an old table.

    Raises:
        DiskFullError: the disk filled (names the file; the old files are unchanged, no temporary file remains).
        ValueError: as :func:`write_fasta` / :func:`write_table`.
    """
    fields = {c: table[c].tolist() for c in ("reward", "eval_reward", "flags") if c in table}
    const = {c: str(table[c].iloc[0]) for c in ("model", "scheme") if c in table and len(table)}
    table_path = Path(table_path) if table_path is not None else Path(out_fasta).with_suffix(".csv")
    with atomic_paths(out_fasta, table_path) as (tmp_fasta, tmp_table):
        write_fasta(tmp_fasta, table["sequence"].tolist(), ids=table["id"].tolist(), fields=fields, **const)
        write_table(table, tmp_table, fmt=table_path.suffix)
    return Path(out_fasta), table_path


def sample_with_progress(policy, num_samples: int, seq_len: int, *, num_steps: int, batch_size: int = 64,
                         generator: torch.Generator | None = None, device=None, desc: str = "sampling") -> torch.Tensor:
    """``policy.sample`` in chunks of ``batch_size`` with a tqdm progress bar; same generator, same designs."""
    chunks = []
    with tqdm(total=num_samples, desc=desc, unit="seq", leave=False, disable=num_samples <= batch_size) as bar:
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            chunks.append(policy.sample(n, seq_len, num_steps=num_steps, generator=generator, device=device))
            bar.update(n)
    return torch.cat(chunks)


def sample_runs(runs: Sequence[tuple[torch.nn.Module, str]], num_samples: int, seq_len: int, *, num_steps: int,
                batch_size: int = 64, seed: int = 0, device=None, desc: str = "sampling") -> tuple[torch.Tensor, np.ndarray]:
    """``num_samples`` designs in equal shares from the ``(policy, name)`` pairs of ``runs`` (the first
    ``num_samples % len(runs)`` give one more); run ``i`` samples with a generator seeded ``seed + i``, so a single
    run draws exactly what :func:`sample_with_progress` with seed ``seed`` draws.

    Returns:
        ``(tokens [num_samples, seq_len] on the CPU, names [num_samples])``: the name of each design's run.
    """
    sizes = [num_samples // len(runs) + (i < num_samples % len(runs)) for i in range(len(runs))]
    x = torch.cat([sample_with_progress(pol, n, seq_len, num_steps=num_steps, batch_size=batch_size,
                                        generator=torch.Generator(device=device or "cpu").manual_seed(seed + i),
                                        device=device, desc=desc).cpu()
                   for i, ((pol, _), n) in enumerate(zip(runs, sizes, strict=True))])
    return x, np.repeat([str(name) for _, name in runs], sizes)


def export_run(module: SiMPOFineTuning, out_dir: str | os.PathLike, *, num_samples: int = 640,
               selection: SelectionConfig | None = None, pool: Sequence[PooledRun] = (),
               eval_oracle=DEFAULT_EVAL_ORACLE, num_steps: int | None = None, seed: int = 12345,
               evaluate_pretrained: bool = True, jaspar: bool = True, evaluator: Evaluator | None = None,
               batch_size: int = 64, model_name: str | None = None) -> dict[str, Any]:
    """Everything a finished fit hands the user, written atomically into ``out_dir``.

    The pipeline after fitting, as one call: pool candidates -> select -> evaluate -> write. Samples
    ``num_samples`` designs from ``module.policy`` (and, with ``evaluate_pretrained``, as many from the frozen
    reference; with ``selection.candidates > 0`` the policy's designs are the ``num_samples`` of that many
    candidates kept by :func:`simpo_bio.dna.design.selection.composition_matched`, at as many more
    fine-tuning-oracle calls; with ``pool``, other finished runs (:class:`PooledRun`, e.g. from
    :func:`pooled_policies`), the candidates are pooled: an equal share from each run, this one's drawn first
    with the same generator as without), scores them
    with the fine-tuning oracle and evaluates them with the evaluation oracle, then writes ``designs.fasta``,
    ``designs.csv``, ``pretrained_designs.csv``, ``metrics.csv``, ``metrics.md``, ``history.csv``,
    ``reward_curve.png``, ``reward_distribution.png`` and ``composition.png`` (GC histograms of the designs against
    real HepG2 enhancers).

    Returns:
        ``{"metrics": {name: row}, "table": markdown, "out_dir": Path}``.

    Raises:
        ValueError: bad selection settings (:meth:`SelectionConfig.validate`), a ``pool`` without a selection,
            or a pooled run that generates another length.
    """
    selection = selection or SelectionConfig()
    selection.validate(num_samples)
    select_from, select_weight = selection.candidates, selection.weight
    select_target, select_motif_ratio = selection.target, selection.motif_ratio
    pooled = list(pool)
    if pooled and not select_from:
        raise ValueError(f"pool_with ({len(pooled)} runs) needs selection.candidates > 0: the pooled samples are "
                         "selected from")
    for run in pooled:
        if run.seq_len != module.seq_len:
            raise ValueError(f"pool_with: {run.name} generates {run.seq_len} bp, this run {module.seq_len} bp")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = num_steps or module.num_steps
    scheme = module.method
    model_name = model_name or str(out / "checkpoints" / "last.ckpt")
    history = pd.DataFrame(module.history)
    if len(history):
        write_table(history, out / "history.csv")
        curves = {scheme if not pooled else f"{scheme}, this run": history}
        for run in pooled:  # the pooled runs' own curves (their checkpoints keep their logs)
            if run.history:
                curves[f"{scheme}, {run.label}"] = pd.DataFrame(run.history)
        plot_reward_curve(curves, out / "reward_curve.png", band=("reward_q25", "reward_q75"),
                          oracle=module.hparams.get("oracle", module.oracle),
                          designs_per_iteration=module.sampling.group_size * module.sampling.num_groups)

    if evaluator is None and eval_oracle is not None:
        evaluator = build_evaluator(eval_oracle, module.reference, jaspar=jaspar)
    label = f"fine-tuned ({scheme})" if not select_from else \
        f"fine-tuned ({scheme}; " + (f"{len(pooled) + 1} runs pooled, " if pooled else "") + \
        f"{num_samples} of {select_from} selected, " + (
            f"weight {select_weight:g}" if select_target is None else f"3-mer target {select_target:g}" + (
                f" from weight {select_weight:g}" if select_weight != 1 else "")) + (
            f", motif x{select_motif_ratio:g})" if select_motif_ratio != 1 else ")")
    sets = {label: (module.policy, scheme, model_name, "designs")}
    if evaluate_pretrained:
        sets = {"pretrained": (module.reference, "none", str(module.hparams.get("pretrained", "pretrained")),
                               "pretrained_designs"), **sets}
    rows, rewards, gcs, windows = {}, {}, {}, {}
    for name, (policy, sch, mname, stem) in sets.items():
        t0 = time.perf_counter()
        screen = select_from if sch != "none" else 0
        runs = [(policy, mname)] + ([(run.policy, run.name) for run in pooled] if screen else [])
        x, source = sample_runs(runs, screen or num_samples, module.seq_len, num_steps=steps,
                                batch_size=batch_size, seed=seed, device=module.device, desc=f"sampling {name}")
        r = module.reward(x).cpu()
        if screen:  # composition-matched selection of the final designs (simpo_bio/dna/design/selection.py)
            feasible = module.constraints.violation(x) == 0 if module.constraints is not None else None
            scanner = getattr(evaluator, "motif_scanner", None)
            if scanner is None and select_weight > 0 and jaspar:
                scanner = MotifScanner.jaspar()
            kept = composition_matched(x, r, num_samples, module.reference, weight=select_weight,
                                       target=select_target, motif_ratio=select_motif_ratio,
                                       motif_scanner=scanner, feasible=feasible,
                                       num_steps=steps)
            x, r, source = x[kept.index], r[kept.index], source[kept.index.numpy()]
            per_run = f"; {' + '.join(str(int((source == m).sum())) for _, m in runs)} from the {len(runs)} runs" \
                if pooled else ""
            print(f"[simpo-bio] kept {num_samples} of {screen} candidates (composition-matched selection, weight "
                  f"{kept.weight:g}, 3-mer correlation with the pretrained model's {kept.kmer3_corr:.3f}; "
                  f"{screen} fine-tuning-oracle calls{per_run}){kept.shortfall(select_target)}", flush=True)
        prefix = "pretrained" if sch == "none" else sch
        ids = [f"{prefix}-{i:06d}" for i in range(num_samples)]
        per_seq = None
        if evaluator is not None:
            row, per_seq = evaluator.evaluate(x)
            rows[name] = row
            rewards[name] = per_seq["eval_reward"].to_numpy()
            gcs[name] = per_seq["gc"].to_numpy()
            windows[name] = _window_gc_range(x)
        table = design_table(x, ids, per_seq, r, model=list(source), scheme=sch)
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
        if real is not None and len(real) and real.shape[1] == module.seq_len:
            # real HepG2 enhancers of the held-out test split: what "active" looks like to the eval oracle
            sel = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:num_samples]]
            row, per_seq = evaluator.evaluate(sel)
            rows = {"real HepG2 (test split)": row, **rows}
            rewards = {"real HepG2 (test split)": per_seq["eval_reward"].to_numpy(), **rewards}
            gcs = {"real HepG2 (test split)": per_seq["gc"].to_numpy(), **gcs}
            windows = {"real HepG2 (test split)": _window_gc_range(sel), **windows}
        md = metrics_table(rows)
        write_table(pd.DataFrame([{"model": k, **v} for k, v in rows.items()]), out / "metrics.csv")
        write_text(md + "\n", out / "metrics.md")
        eval_name = _oracle_name(eval_oracle if eval_oracle is not None else getattr(evaluator, "oracle", None))
        plot_reward_distributions(rewards, out / "reward_distribution.png",
                                  title=f"Evaluation-oracle reward of {num_samples} sampled designs per model "
                                  f"(scored by {eval_name})")
        vendor = SynthesisConstraints()
        plot_gc_distributions(gcs, out / "composition.png", windowed=windows if all(
            w is not None for w in windows.values()) else None, gc_bounds=(vendor.gc_min, vendor.gc_max),
            window=vendor.gc_window)
    return {"metrics": rows, "table": md, "out_dir": out}


def _window_gc_range(tokens: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """Lowest and highest GC fraction over the vendor's windows (``SynthesisConstraints().gc_window`` bp) per design,
    or ``None`` when the designs are shorter than a window."""
    w = SynthesisConstraints().gc_window
    if tokens.shape[1] < w:  # a toy length: no vendor window fits
        return None
    g = windowed_gc(tokens, w)
    return g.min(1).values.numpy(), g.max(1).values.numpy()


@dataclass
class PooledRun:
    """Another finished run whose samples :func:`export_run` pools with a run's own before the selection.

    Attributes:
        policy: its generator (eval mode, on the export's device).
        name: how its designs are labelled in the table's ``model`` column (its checkpoint path).
        seq_len: the length it generates, bp.
        history: its per-iteration training log (``[]`` when none), for the reward-curve figure.
        label: the name of its curve in the figure (its run folder).
    """

    policy: torch.nn.Module
    name: str
    seq_len: int
    history: list[dict] = field(default_factory=list)
    label: str = ""

    @classmethod
    def from_module(cls, module: SiMPOFineTuning, name: str, label: str = "") -> PooledRun:
        """A run fitted in this process (``simpo-bio demo``): its policy and log, no file read."""
        return cls(module.policy, str(name), module.seq_len, list(module.history), label or str(name))


def pooled_policies(pool_with: Sequence[str | os.PathLike], seq_len: int | None = None,
                    device=None) -> list[PooledRun]:
    """The fine-tuning checkpoints of other finished runs, as :class:`PooledRun` (``ExportDesigns(pool_with=...)``).

    Raises:
        ValueError: a run whose policy generates another length than ``seq_len`` (names the file).
        CheckpointError: a missing, truncated or foreign file (:func:`simpo_bio.dna.models.policies.load_policy`).
    """
    out = []
    for path in pool_with:
        policy, info = load_policy(path)
        if seq_len is not None and info["seq_len"] != seq_len:
            raise ValueError(f"pool_with: {path} generates {info['seq_len']} bp, this run {seq_len} bp")
        out.append(PooledRun(policy.to(device), str(path), int(info["seq_len"]), info.get("history", []),
                             Path(path).parent.parent.name))
    return out


# ------------------------------------------------------------------------------------------- export callback
class ExportDesigns(pl.Callback):
    """At the end of a fit: :func:`export_run` into the run root (designs, tables, metrics, plots; all atomic).

    Writes ``designs.fasta``, ``designs.csv`` (per-sequence metrics), ``metrics.csv`` / ``metrics.md``,
    ``history.csv`` (per-iteration training log), ``reward_curve.png``, ``reward_distribution.png`` and
    ``composition.png`` into ``out_dir``.

    Args:
        num_samples: designs to sample and evaluate (DRAKES: 640).
        selection: :class:`~simpo_bio.dna.design.selection.SelectionConfig` (or a mapping of its fields) of the
            composition-matched selection; ``None`` = off.
        pool_with: fine-tuning checkpoints of other finished runs (e.g. other seeds) whose samples are pooled with
            this run's before the selection, an equal share from each.
        eval_oracle: path of the *evaluation* oracle (never the fine-tuning one); ``None`` skips evaluation and
            writes the fine-tuning rewards only.
        out_dir: output directory; ``None`` = the run root (``trainer.default_root_dir``).
        num_steps: sampler steps for the designs (``None`` = the module's).
        seed: sampling seed of the designs.
        evaluate_pretrained: also sample the pretrained reference and evaluate it (for the comparison table).
        jaspar: compute the JASPAR motif correlation (first use builds a PSSM cache, ~30 s).

    Raises:
        ValueError: bad selection settings, or ``pool_with`` without a selection (one line, at construction).
    """

    def __init__(self, num_samples: int = 640, selection: SelectionConfig | None = None,
                 pool_with: list[str] | None = None, eval_oracle: str | None = DEFAULT_EVAL_ORACLE,
                 out_dir: str | None = None, num_steps: int | None = None, seed: int = 12345,
                 evaluate_pretrained: bool = True, jaspar: bool = True) -> None:
        super().__init__()
        try:
            if isinstance(selection, dict):
                selection = SelectionConfig(**selection)
            self.selection = selection or SelectionConfig()
            self.selection.validate(num_samples)
            if pool_with and not self.selection.candidates:
                raise ValueError(f"pool_with ({len(pool_with)} runs) needs selection.candidates > 0")
        except (TypeError, ValueError) as e:
            raise ValueError(f"ExportDesigns: {e}") from None
        self.pool_with = [str(p) for p in pool_with or ()]
        self.num_samples, self.eval_oracle, self.out_dir, self.num_steps = num_samples, eval_oracle, out_dir, num_steps
        self.seed, self.evaluate_pretrained, self.jaspar = seed, evaluate_pretrained, jaspar
        self.result: dict[str, Any] | None = None
        self.evaluator_factory: Callable | None = None  # tests may inject a ready Evaluator

    def on_fit_end(self, trainer: pl.Trainer, pl_module: SiMPOFineTuning) -> None:
        if trainer.global_rank != 0 or trainer.interrupted:
            return
        out = Path(self.out_dir or trainer.default_root_dir)
        pool = pooled_policies(self.pool_with, pl_module.seq_len, pl_module.device)
        self.result = export_run(pl_module, out, num_samples=self.num_samples, selection=self.selection, pool=pool,
                                 eval_oracle=self.eval_oracle, num_steps=self.num_steps, seed=self.seed,
                                 evaluate_pretrained=self.evaluate_pretrained, jaspar=self.jaspar,
                                 evaluator=self.evaluator_factory() if self.evaluator_factory else None)
