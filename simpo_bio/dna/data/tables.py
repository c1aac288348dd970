"""Sequences in: FASTA and CSV/TSV files -> validated token ids and ``datasets.DatasetDict`` splits.

The first stop of a sequence after :mod:`simpo_bio.dna.data.alphabet`. :func:`read_fasta` is the one FASTA reader of the
project (the ``evaluate`` command, :func:`load_fasta` and the tests all use it): it names the file, the record and
the 0-based position of a bad character. :func:`load_sequence_table` and :func:`load_fasta` turn a user's file into
train / validation / test splits; :mod:`simpo_bio.dna.data.dhs` builds the embedded default data set with the same
helpers (:func:`to_dataset_dict`). The data facts (cache layout, splits, file formats) are in ``data/README.md``.

Data set columns (every loader): ``name`` (record id), ``sequence`` (str, uppercase), ``tokens`` (int8, length
``L``; ids of :mod:`simpo_bio.dna.data.alphabet`). Tables with numeric target columns (the Gosai ``gosai_all.csv``
layout: ``seq, hepg2, k562, sknsh``) keep each target as a float32 column and add ``targets`` (float32 ``[K]``).

Imports: :mod:`simpo_bio.dna.data.alphabet` only (``datasets`` inside the functions that build data sets: it is slow to
import, and the oracle and the commands import this package for much less).
"""

from __future__ import annotations

import errno
import gzip
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from Bio.SeqIO.FastaIO import SimpleFastaParser

from simpo_bio.dna.data.alphabet import _LOOKUP, SequenceValidationError, decode, encode, tokenize

SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: Split names found in files (lowercase) -> the split they mean.
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "testing": "test",
}  # fmt: skip
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fa.gz", ".fasta.gz", ".fna.gz")
_SPLIT_COLUMNS = ("split", "data_label", "set", "fold")
_SEQUENCE_COLUMNS = ("sequence", "seq", "sequences", "seqs")
_CHROM_COLUMNS = ("chrom", "chr", "chromosome")
_NAME_COLUMNS = ("name", "id", "dhs_id", "seq_id")


class FastaFormatError(ValueError):
    """A file that is not usable FASTA: not FASTA at all, no records, or duplicate record ids."""


def default_cache_dir() -> Path:
    """The data cache: ``$SIMPO_BIO_CACHE`` if set, else ``~/.cache/simpo-bio``."""
    env = os.environ.get("SIMPO_BIO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "simpo-bio"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir`` (``~`` expanded), or :func:`default_cache_dir` when ``None``."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


# ---------------------------------------------------------------------------------------------------------------
# FASTA
# ---------------------------------------------------------------------------------------------------------------
def _parse_value(v: str):
    try:
        return float(v)
    except ValueError:
        return v


def _symlink_loop(path: str | os.PathLike) -> bool:
    """``path`` (or a folder on the way to it) is a symbolic link that leads back to itself (``ELOOP``)."""
    try:
        os.stat(path)
    except OSError as err:
        return err.errno == errno.ELOOP
    return False


_NO_FIELDS: dict = {}  # the header fields of every record without any (shared; never written to)
_FASTA_SLICE = 8192  # records tokenised at a time by read_fasta (temporaries of 8192 x L bytes)


def _records(fh):
    """Stream the records of an open text FASTA: ``(id, header fields, sequence)``; see :func:`read_fasta`."""
    for title, seq in SimpleFastaParser(fh):  # plain str throughout (any character reaches the checks)
        words = title.split()
        row = _NO_FIELDS
        for tok in words[1:]:
            if "=" in tok:
                if row is _NO_FIELDS:
                    row = {}
                k, v = tok.split("=", 1)
                row[k] = _parse_value(v)
        yield (words[0] if words else ""), row, seq


def read_fasta(path: str | os.PathLike, length: int | None = None) -> tuple[list[str], torch.Tensor, pd.DataFrame]:
    """Read and validate a FASTA file of DNA sequences (plain or ``.gz``).

    Headers may carry ``key=value`` fields after the id (what :func:`simpo_bio.dna.design.designs.write_fasta` writes)::

        >square_neg-000017 reward=4.812 eval_reward=4.105 model=runs/demo/last.ckpt scheme=square_neg

    Args:
        length: required sequence length (the model's); ``None`` requires all records to share the first one's.

    Returns:
        ``(ids, tokens [B, L] long, header_fields)``: ``header_fields`` has one row per record (index: the ids)
        with the ``key=value`` fields found in the headers (numbers as floats; no columns when there are none).

    Accepted: Windows (CRLF) or old Mac (CR) line endings, lowercase bases, gzip (by content, any file name).

    The file is streamed record by record into one byte buffer (``B * L`` bytes), tokenised at the end, a slice
    at a time, into the returned tensor: beside it, no per-record Python objects but the ids and the header fields
    (one shared empty dict for the records without any). 100,000 records of 200 bp: about 1 s and 50 MiB beside
    the 153 MiB of the int64 result (``bench/results/trust-and-io.md``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FastaFormatError (a ValueError): a directory, a symlink loop, an empty / binary / unreadable (e.g.
            corrupt gzip) file, a file that holds no FASTA records, or two records with the same id (both named
            by their 1-based number).
        SequenceValidationError: a non-ACGT character (``N`` included) or a wrong length, naming the file, record and
            0-based position.
    """
    path = Path(path)
    if _symlink_loop(path):
        raise FastaFormatError(f"{path}: symlink loop (a symbolic link that leads back to itself), not a FASTA file")
    if not path.exists():
        raise FileNotFoundError(f"FASTA file not found: {path}")
    if path.is_dir():
        raise FastaFormatError(f"{path}: is a directory, not a FASTA file")
    ids: list[str] = []
    rows: list[dict] = []
    first: dict[str, int] = {}
    duplicate: tuple[str, int, int] | None = None
    bad: int | None = None  # the first record with a wrong length or a non-ASCII character
    bad_seq = ""
    buf = bytearray()  # the ASCII bases of the records before `bad`, L bytes each
    try:
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as fh:
            raw = fh.read(1 << 16)
        if not raw.strip():
            raise FastaFormatError(f"{path}: {'empty file' if not raw else 'only blank lines'}: not a FASTA file (no records)")
        if b"\x00" in raw:
            raise FastaFormatError(f"{path}: binary content (NUL bytes), not a FASTA text file")
        if not raw.lstrip().startswith(b">"):
            raise FastaFormatError(f"{path}: not a FASTA file (expected the first non-blank character to be '>')")
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:  # universal newlines: CRLF, CR
            for i, (rid, row, seq) in enumerate(_records(fh)):
                if length is None:
                    length = len(seq)  # the first record's
                if duplicate is None:
                    if rid in first:
                        duplicate = (rid, first[rid], i)
                    else:
                        first[rid] = i
                ids.append(rid)
                rows.append(row)
                if bad is None:
                    if len(seq) == length and seq.isascii():
                        buf += seq.encode("ascii")
                    else:
                        bad = i
                        bad_seq = seq
    except (OSError, EOFError, zlib.error) as err:  # e.g. a truncated or corrupt .gz
        raise FastaFormatError(f"{path}: cannot be read ({type(err).__name__}: {err})") from None
    if not ids:
        raise FastaFormatError(f"{path}: no FASTA records found")
    if duplicate is not None:
        rid, a, b = duplicate
        raise FastaFormatError(f"{path}: duplicate record id {rid!r} (records {a + 1} and {b + 1})")
    n_ok = len(ids) if bad is None else bad
    ascii_bases = np.frombuffer(buf, dtype=np.uint8).reshape(n_ok, length)
    tokens = np.empty((n_ok, length), dtype=np.int64) if bad is None else None  # filled slice by slice
    for s in range(0, n_ok, _FASTA_SLICE):
        part = _LOOKUP[ascii_bases[s : s + _FASTA_SLICE]]  # uint8 ids; 255: not A, C, G, T
        invalid = np.flatnonzero((part == 255).any(axis=1))
        if invalid.size:
            bad, bad_seq = s + int(invalid[0]), ascii_bases[s + int(invalid[0])].tobytes().decode("ascii")
            break
        if tokens is not None:
            tokens[s : s + _FASTA_SLICE] = part
    if bad is not None:  # the first bad record in file order, with the message of `encode`
        try:
            encode([bad_seq], length=length, names=[ids[bad]])
        except SequenceValidationError as err:
            raise SequenceValidationError(f"{path}: {err.reason}", err.record, err.position) from None
    out = torch.from_numpy(tokens)
    return ids, out, pd.DataFrame(rows, index=pd.Index(ids, name="id"))


# ---------------------------------------------------------------------------------------------------------------
# splits and data sets
# ---------------------------------------------------------------------------------------------------------------
def _pick(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    return None


def split_names(values: Sequence) -> np.ndarray:
    """Split names (``train`` / ``validation`` / ``test``) of a file's split labels; ``"?"`` for unknown ones."""
    return np.array([SPLIT_ALIASES.get(str(s).lower(), "?") for s in values], dtype=object)


def seeded_split(n: int, seed: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Array of split names (``train``/``validation``/``test``) for ``n`` records, random under ``seed``."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"invalid split fractions val={val_fraction} test={test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    out = np.full(n, "train", dtype=object)
    out[perm[:n_test]] = "test"
    out[perm[n_test : n_test + n_val]] = "validation"
    return out


def to_dataset_dict(columns: dict, split: np.ndarray, features_extra: dict, seq_len: int):
    """A ``datasets.DatasetDict`` (splits :data:`SPLITS`) from column arrays plus a per-row split-name array."""
    import datasets

    features = {
        "name": datasets.Value("string"),
        "sequence": datasets.Value("string"),
        "tokens": datasets.Sequence(datasets.Value("int8"), length=seq_len),
        **features_extra,
    }
    feats = datasets.Features({k: features[k] for k in columns})
    out = {}
    for name in SPLITS:
        idx = np.flatnonzero(split == name)
        part = {k: (v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]) for k, v in columns.items()}
        out[name] = datasets.Dataset.from_dict(part, features=feats, split=name)
    return datasets.DatasetDict(out)


def columns_numpy(ds, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """The given columns of a ``datasets.Dataset`` as numpy arrays."""
    arr = ds.with_format("numpy", columns=list(columns))[:]
    return {c: np.asarray(arr[c]) for c in columns}


def train_half_indices(labels: np.ndarray, half: int, seed: int) -> np.ndarray:
    """Indices of one of two disjoint halves of a split, stratified by class, random under ``seed``.

    Each class is permuted under ``seed`` and cut in two; half 0 takes the first ``floor(n_c / 2)`` rows of
    every class ``c``, half 1 the rest. Both halves together cover every row exactly once.

    Args:
        labels: int array ``[N]`` of class ids (use zeros for unlabelled data).
        half: 0 or 1.
        seed: the permutation seed (the same seed must be used for both halves).

    Returns:
        sorted int64 array of row indices.

    Raises:
        ValueError: ``half`` not in {0, 1}.
    """
    if half not in (0, 1):
        raise ValueError(f"half must be 0 or 1, got {half}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = len(idx) // 2
        chosen.append(idx[:cut] if half == 0 else idx[cut:])
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------------
# loaders
# ---------------------------------------------------------------------------------------------------------------
def load_sequence_table(
    path: str | os.PathLike,
    *,
    sequence_column: str | None = None,
    target_columns: Sequence[str] | None = None,
    class_column: str | None = None,
    split_column: str | None = None,
    val_chroms: Sequence[str] = (),
    test_chroms: Sequence[str] = (),
    seq_len: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
):
    """Load a CSV/TSV of sequences (e.g. the Gosai ``gosai_all.csv``: ``seq, hepg2, k562, sknsh``).

    The separator is taken from the suffix (``.tsv``/``.txt`` tab, else comma). The split is, in order of
    preference: the file's own split column (``split_column``, or one named ``split``/``data_label``/``set``/
    ``fold`` with values train/training, validation/valid/val, test); a chromosome hold-out when a chromosome
    column exists and ``val_chroms``/``test_chroms`` are given; else a random split under ``seed``.

    Args:
        path: the table.
        sequence_column: column of sequences; default the first of ``sequence``, ``seq`` (case-insensitive).
        target_columns: numeric columns kept as regression targets; default every numeric column other than
            positions (``start``, ``end``, ...). The Gosai layout gives ``hepg2, k562, sknsh``.
        class_column: optional categorical column turned into ``label`` (ClassLabel, sorted class names).
        split_column, val_chroms, test_chroms, seed, val_fraction, test_fraction: see above.
        seq_len: required sequence length; default the first record's length.

    Returns:
        ``DatasetDict`` (``train``/``validation``/``test``) with ``name, sequence, tokens`` (int8 ``[L]``), each
        target column (float32), ``targets`` (float32 ``[K]``; ``DatasetDict.target_names`` is not kept by
        ``datasets``, so the order is the feature order of the target columns), ``label`` when
        ``class_column`` is given and ``chrom`` when present.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no sequence column, unknown split values, or a named column missing.
        SequenceValidationError: a bad sequence (names the row's ``name``/index and the position).
    """
    import datasets

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"sequence table {path} does not exist")
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") or path.name.lower().endswith(".tsv.gz") else ","
    df = pd.read_csv(path, sep=sep)
    for col in [sequence_column, class_column, split_column, *(target_columns or [])]:
        if col is not None and col not in df.columns:
            raise ValueError(f"{path}: no column {col!r}; columns are {list(df.columns)}")
    seq_col = sequence_column or _pick(df.columns, _SEQUENCE_COLUMNS)
    if seq_col is None:
        raise ValueError(f"{path}: no sequence column (tried {_SEQUENCE_COLUMNS}); pass sequence_column=")
    name_col = _pick([c for c in df.columns if c != seq_col], _NAME_COLUMNS)
    chrom_col = _pick(df.columns, _CHROM_COLUMNS)
    split_col = split_column or _pick(df.columns, _SPLIT_COLUMNS)
    names = df[name_col].astype(str).tolist() if name_col else [f"{path.name}:row{i}" for i in range(len(df))]
    seqs = df[seq_col].astype(str).str.upper().tolist()
    tokens = tokenize(seqs, seq_len, names)
    seq_len = tokens.shape[1]
    skip = {seq_col, name_col, chrom_col, split_col, class_column, "start", "end", "summit", "pos", "position"}
    if target_columns is None:
        target_columns = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])]
    cols: dict = {"name": names, "sequence": seqs, "tokens": tokens}
    extra: dict = {}
    for c in target_columns:
        cols[c] = df[c].to_numpy(np.float32)
        extra[c] = datasets.Value("float32")
    if target_columns:
        cols["targets"] = np.stack([cols[c] for c in target_columns], axis=1)
        extra["targets"] = datasets.Sequence(datasets.Value("float32"), length=len(target_columns))
    if class_column is not None:
        classes = sorted(df[class_column].astype(str).unique())
        cols["label"] = df[class_column].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
        extra["label"] = datasets.ClassLabel(names=classes)
    if chrom_col is not None:
        cols["chrom"] = df[chrom_col].astype(str).tolist()
        extra["chrom"] = datasets.Value("string")
    if split_col is not None:
        split = split_names(df[split_col])
        if (split == "?").any():
            bad = df[split_col][split == "?"].iloc[0]
            raise ValueError(f"{path}: unknown value {bad!r} in split column {split_col!r}")
    elif chrom_col is not None and (val_chroms or test_chroms):
        chrom = df[chrom_col].astype(str).to_numpy(dtype=object)
        split = np.full(len(df), "train", dtype=object)
        split[np.isin(chrom, list(val_chroms))] = "validation"
        split[np.isin(chrom, list(test_chroms))] = "test"
    else:
        split = seeded_split(len(df), seed, val_fraction, test_fraction)
    return to_dataset_dict(cols, split, extra, seq_len)


def load_fasta(
    path: str | os.PathLike,
    *,
    seq_len: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
):
    """Load a FASTA file (:func:`read_fasta`; ``.gz`` ok) as a ``DatasetDict`` with a random split under ``seed``.

    Records whose header carries ``split=train|validation|test`` keep that split (all records must then carry
    one); otherwise the split is random.

    Returns:
        ``DatasetDict`` with columns ``name`` (record id), ``sequence`` (uppercase), ``tokens`` (int8 ``[L]``).

    Raises:
        FileNotFoundError: no such file.
        FastaFormatError (a ValueError): the file holds no records, or duplicate record ids.
        SequenceValidationError: a bad sequence, naming the file, the record id and the position.
    """
    names, tokens, fields = read_fasta(path, length=seq_len)
    seqs = decode(tokens)
    tags = fields["split"] if "split" in fields else None
    if tags is not None and tags.notna().all():
        split = split_names(tags)
        if (split == "?").any():
            raise ValueError(f"{path}: record {names[list(split).index('?')]!r} has an unknown split= tag")
    else:
        split = seeded_split(len(names), seed, val_fraction, test_fraction)
    cols = {"name": names, "sequence": seqs, "tokens": tokens.numpy().astype(np.int8)}
    return to_dataset_dict(cols, split, {}, tokens.shape[1])
