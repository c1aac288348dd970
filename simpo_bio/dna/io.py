"""Files a user takes home: FASTA of designs, per-sequence tables, plots. Every write is atomic.

Atomic means: the content goes to a temporary file in the destination directory, is flushed and fsync'ed, then
``os.replace`` moves it over the destination in one step. A crash (or Ctrl-C) mid-write leaves either the old
file or the new one, never half a file.

FASTA headers carry the design's id and ``key=value`` fields::

    >square_neg-000017 reward=4.812 eval_reward=4.105 model=runs/demo/last.ckpt scheme=square_neg

so the file alone says where each sequence came from and how it scored. :func:`read_fasta` parses them back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from simpo_bio.dna.alphabet import SequenceValidationError, decode, encode
from simpo_bio.fileio import atomic_write


class FastaFormatError(ValueError):
    """A file that is not usable FASTA: not FASTA at all, no records, or duplicate record ids."""


# ------------------------------------------------------------------------------------------------ atomic write
def atomic_save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------------------------------------------ FASTA
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
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqRecord import SeqRecord

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


def _parse_value(v: str):
    try:
        return float(v)
    except ValueError:
        return v


def read_fasta(path: str | os.PathLike, length: int | None = None) -> tuple[list[str], torch.Tensor, pd.DataFrame]:
    """Read and validate a FASTA file of DNA designs.

    Args:
        length: required sequence length (the model's); ``None`` requires all records to share the first one's.

    Returns:
        ``(ids, tokens [B, L], header_fields)``: ``header_fields`` has one row per record with the ``key=value``
        fields found in the headers (empty columns when there are none).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FastaFormatError (a ValueError): the file holds no FASTA records (empty, or not FASTA), or duplicate ids.
        SequenceValidationError: a non-ACGT character or a wrong length, naming the file, record and position.
    """
    from Bio import SeqIO

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"FASTA file not found: {path}")
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(1 << 16).lstrip()
    if not head.startswith(">"):
        raise FastaFormatError(f"{path}: not a FASTA file (expected the first non-blank character to be '>')")
    ids, seqs, rows = [], [], []
    for rec in SeqIO.parse(str(path), "fasta"):
        ids.append(rec.id)
        seqs.append(str(rec.seq))
        row = {}
        for tok in rec.description.split()[1:]:
            if "=" in tok:
                k, v = tok.split("=", 1)
                row[k] = _parse_value(v)
        rows.append(row)
    if not ids:
        raise FastaFormatError(f"{path}: no FASTA records found")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise FastaFormatError(f"{path}: duplicate record id {dup!r}")
    try:
        tokens = encode(seqs, length=length, names=ids)
    except SequenceValidationError as err:
        raise SequenceValidationError(f"{path}: {err.reason}", err.record, err.position) from None
    return ids, tokens, pd.DataFrame(rows, index=pd.Index(ids, name="id"))


# ------------------------------------------------------------------------------------------------------ tables
def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table atomically; the format follows the suffix: ``.csv``, ``.parquet`` or ``.tsv``."""
    path = Path(path)
    suffix = path.suffix.lower()
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


# ------------------------------------------------------------------------------------------------------- plots
def plot_reward_distributions(
    rewards: Mapping[str, Sequence[float]], path: str | os.PathLike, xlabel: str = "Pred-Activity (eval oracle)"
) -> Path:
    """Overlaid histograms of reward per named set (e.g. real HepG2 / pretrained / fine-tuned), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    vals = [np.asarray(v, dtype=float) for v in rewards.values()]
    lo = min(float(v.min()) for v in vals if v.size)
    hi = max(float(v.max()) for v in vals if v.size)
    bins = np.linspace(lo, hi, 50)
    for (name, v) in zip(rewards, vals):
        ax.hist(v, bins=bins, alpha=0.45, density=True, label=f"{name} (median {np.median(v):.2f})")
        ax.axvline(np.median(v), ls="--", lw=1, color=ax.patches[-1].get_facecolor()[:3])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return atomic_save_figure(fig, path)


def plot_reward_curve(
    curves: Mapping[str, pd.DataFrame], path: str | os.PathLike, x: str = "reward_queries",
    y: str = "reward_median", band: tuple[str, str] | None = None, ylabel: str = "reward (fine-tuning oracle)",
) -> Path:
    """Reward vs reward queries during training, one line per named run (optional shaded band), PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, df in curves.items():
        line = ax.plot(df[x], df[y], label=name)[0]
        if band is not None and band[0] in df and band[1] in df:
            ax.fill_between(df[x], df[band[0]], df[band[1]], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("reward queries (oracle calls)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return atomic_save_figure(fig, path)
