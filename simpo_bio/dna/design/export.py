"""The top-k designs of a design table to FASTA + CSV, checked against synthesis constraints, optionally repaired.

This is ``simpo-bio export`` without the argument parsing: :func:`read_design_table` reads a run's
``designs.csv`` (or any table with a ``sequence`` column), :func:`export_designs` flags every design
(:mod:`simpo_bio.dna.design.synthesis`), filters or repairs and re-scores them, ranks, and writes the FASTA and its table
together (:func:`simpo_bio.dna.design.designs.write_designs`), plus ``<out>.repair.csv`` when repairing;
:func:`export_report` is what the command prints.

Imports: pandas, :mod:`simpo_bio.dna.design.designs`, :mod:`simpo_bio.dna.oracles.oracle`, :mod:`simpo_bio.dna.design.synthesis`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from simpo_bio.dna.design.designs import write_designs, write_table
from simpo_bio.dna.design.synthesis import (
    SynthesisConstraints,
    constraint_summary,
    flags_column,
    repair_designs,
)
from simpo_bio.dna.oracles.oracle import load_oracle, oracle_scores

__all__ = ["export_parser", "ExportError", "ExportResult", "read_design_table", "export_designs", "export_report"]


class ExportError(ValueError):
    """A design table or export setting the export cannot use (one line: names the file, column or setting)."""


@dataclass
class ExportResult:
    """What :func:`export_designs` wrote: the exported rows, the repair report (``None`` without repair), every
    design's flags before any repair, and the files."""

    top: pd.DataFrame
    report: pd.DataFrame | None
    flags_before: list[str]
    fasta: Path
    table: Path
    margin: float = 0.5


def export_parser(oracle: str, eval_oracle: str) -> argparse.ArgumentParser:
    """The argument parser of ``simpo-bio export`` (defaults: :class:`SynthesisConstraints`; the oracles given)."""
    d = SynthesisConstraints()
    p = argparse.ArgumentParser(prog="simpo-bio export", description="Top-k designs of a run to FASTA, checked "
                                "against a vendor's synthesis constraints (DnaChisel; enzyme sites from "
                                "Bio.Restriction).")
    p.add_argument("--run", required=True, help="run directory holding designs.csv (or the table itself)")
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--by", default="eval_reward", help="column to rank by (default eval_reward)")
    p.add_argument("--out", default=None, help="output FASTA (default: runs/export/<run name>-top<k>.fasta)")
    g = p.add_argument_group("synthesis constraints (flagged with their positions in the FASTA header and the CSV; "
                             "--filter drops flagged designs, --repair fixes them)")
    g.add_argument("--gc-min", type=float, default=d.gc_min, help=f"lowest GC of any window (default {d.gc_min})")
    g.add_argument("--gc-max", type=float, default=d.gc_max, help=f"highest GC of any window (default {d.gc_max})")
    g.add_argument("--gc-window", type=int, default=None, help=f"GC window, bp (default {d.gc_window}, or the "
                   "construct's length where that is shorter)")
    g.add_argument("--max-homopolymer", type=int, default=d.max_homopolymer,
                   help=f"longest allowed run of one base, bp (default {d.max_homopolymer})")
    g.add_argument("--enzyme", action="append", default=None, metavar="NAME",
                   help="an enzyme (Bio.Restriction name) whose site must not occur on either strand (repeatable; "
                   f"default {' '.join(d.enzymes)}; --enzyme none for no enzyme)")
    g.add_argument("--pattern", action="append", default=[], metavar="IUPAC",
                   help="a further site to avoid on either strand, IUPAC letters (repeatable)")
    g.add_argument("--repeat-kmer", type=int, default=0, help="no k-mer twice, either strand (0 = off, default)")
    g.add_argument("--hairpin-stem", type=int, default=0, help="avoid hairpins with this stem, bp (0 = off, default)")
    g.add_argument("--prefix", default="", help="5' adapter; the checks run on prefix + design + suffix")
    g.add_argument("--suffix", default="", help="3' adapter")
    g.add_argument("--filter", action="store_true", help="keep only designs without flags (then take the top k)")
    r = p.add_argument_group("repair (DnaChisel's solver, fewest base changes; adapters never change)")
    r.add_argument("--repair", action="store_true", help="repair flagged designs, re-score them with both oracles, "
                   "keep a repair only if its fine-tuning-oracle reward drops by less than --margin; the FASTA then "
                   "holds designs that pass every constraint, and <out>.repair.csv reports every flagged design")
    r.add_argument("--margin", type=float, default=0.5, help="largest reward drop a repair may cost, log-odds "
                   "(default 0.5)")
    r.add_argument("--oracle", default=oracle, help=f"fine-tuning oracle that re-scores (default "
                   f"{oracle})")
    r.add_argument("--eval-oracle", default=eval_oracle, help="evaluation oracle that re-scores "
                   f"(default {eval_oracle}; 'none' skips it)")
    r.add_argument("--seed", type=int, default=0, help="seed of the solver's random mutations")
    return p


def read_design_table(path: str | os.PathLike) -> pd.DataFrame:
    """A design table (``.csv`` / ``.tsv`` / ``.parquet``) with a ``sequence`` column (ids made up if absent).

    Raises:
        ExportError: a missing, unreadable (binary, malformed) or empty table, or one without ``sequence``.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no design table at {path} (run `simpo-bio demo` or a fit first)")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else "empty"
        raise ExportError(f"{path} is not a readable design table ({type(err).__name__}: {first})") from None
    if "sequence" not in df:
        raise ExportError(f"{path} has no 'sequence' column; columns: {', '.join(map(str, df.columns))}")
    if "id" not in df:
        df.insert(0, "id", [f"design-{i:06d}" for i in range(len(df))])
    return df


def export_designs(table: pd.DataFrame, out: str | os.PathLike, constraints: SynthesisConstraints, *,
                   top_k: int = 50, by: str = "eval_reward", keep_clean_only: bool = False, repair: bool = False,
                   oracle: str | None = None, eval_oracle: str | None = None, margin: float = 0.5, seed: int = 0,
                   source: str = "the table") -> ExportResult:
    """Flag, filter or repair, rank and write the top ``top_k`` designs of ``table``.

    Args:
        table: :func:`read_design_table`'s frame.
        out: the FASTA; its table goes beside it as ``.csv`` (and ``.repair.csv`` with ``repair``).
        constraints: the synthesis constraints.
        top_k: designs to export; ``by``: the column they are ranked by (descending).
        keep_clean_only: drop flagged designs before ranking (``--filter``).
        repair: repair flagged designs (:func:`simpo_bio.dna.design.synthesis.repair_designs`), re-score them with
            ``oracle`` (the fine-tuning oracle, required) and ``eval_oracle`` (``None`` skips it), keep a repair only
            if it lost less than ``margin`` log-odds; only designs that pass are exported.
        seed: the repair solver's seed. ``source``: how errors name the table.

    Raises:
        ExportError: bad settings, no column ``by``, a design the constraints cannot check (named), or no design
            left to export.
        CheckpointError: an oracle that does not load (:func:`simpo_bio.dna.oracles.oracle.load_oracle`).
    """
    if top_k < 1:
        raise ExportError(f"--top-k must be >= 1, got {top_k}")
    if repair and keep_clean_only:
        raise ExportError("--repair and --filter exclude each other (--repair already exports only designs that "
                          "pass)")
    if margin < 0:
        raise ExportError(f"--margin must be >= 0 log-odds, got {margin}")
    if repair and not oracle:
        raise ExportError("--repair needs the fine-tuning oracle (--oracle) to re-score the repaired designs")
    if by not in table:
        raise ExportError(f"{source} has no column {by!r}; columns: {', '.join(map(str, table.columns))}")
    out = Path(out)
    df, report = table.copy(), None
    try:
        flags_before = flags_column(df["sequence"].astype(str).tolist(), constraints)
        if repair:
            ft = load_oracle(oracle)
            ev = load_oracle(eval_oracle) if eval_oracle else None
            df, report = repair_designs(
                df, constraints, margin=margin, seed=seed, flags=flags_before,
                score=lambda x: oracle_scores(ft, x, what="the fine-tuning oracle"),
                eval_score=None if ev is None else lambda x: oracle_scores(ev, x, what="the evaluation oracle"))
        else:
            df["flags"] = flags_before
    except ExportError:
        raise
    except ValueError as err:  # a design the constraints cannot check (letters, length): the message names it
        raise ExportError(f"{source}: {err}") from None
    if keep_clean_only:
        df = df[df["flags"] == "none"]
    if df.empty:
        raise ExportError(f"no design of {source} meets the synthesis constraints (drop --filter / --repair to see "
                          "the flags, or widen the constraints)")
    top = df.sort_values(by, ascending=False).head(top_k)
    fasta, tab = write_designs(out, top, out.with_suffix(".csv"))
    if report is not None:
        write_table(report, out.with_suffix(".repair.csv"))
    return ExportResult(top, report, flags_before, fasta, tab, margin)


def export_report(result: ExportResult, constraints: SynthesisConstraints, by: str, source: str) -> list[str]:
    """The lines ``simpo-bio export`` prints: what was written, the repair summary, designs per constraint."""
    top, report = result.top, result.report
    lines = [f"wrote the top {len(top)} designs by {by} to {result.fasta} "
             f"({int((top['flags'] != 'none').sum())} flagged: see the FASTA header)"]
    if report is not None:
        n = {s: int((report["status"] == s).sum()) for s in ("repaired", "rejected: reward", "rejected: unsolved")}
        kept = report[report["status"] == "repaired"]
        med = (f"median fine-tuning-oracle change {kept['reward_change'].median():+.3f} log-odds, median "
               f"{kept['bases_changed'].median():g} bases changed; ") if len(kept) else ""
        lines.append(f"repair: {len(report)} flagged designs; {n['repaired']} repaired and kept ({med}"
                     f"{n['rejected: reward']} lost more than {result.margin:g} log-odds, {n['rejected: unsolved']} "
                     f"unsolved: dropped); report: {result.fasta.with_suffix('.repair.csv')}")
    lines.append(f"designs of {source} each constraint touches (before any repair):")
    total = len(result.flags_before)
    lines += [f"  {row.constraint:<18} {row.designs:>5} of {total}   {row.checks}"
              for row in constraint_summary(result.flags_before, constraints).itertuples()]
    return lines
