"""DNA data: the embedded ENCODE DHS default, generic CSV/TSV and FASTA loaders, and LightningDataModules.

The embedded default (``../shared/DATA.md``, tier 1) is the table of 47,872 ENCODE DNase-hypersensitive sites
(200 bp around the summit, hg38; GM12878, hESC, K562, HepG2, 11,968 each) shipped inside the MIT-licensed PyPI
wheel ``dnadiffusion==0.0.0.dev0``. :func:`fetch_dhs` downloads that wheel with ``pip download --no-deps`` (the
wheel pins ``torch==2.0.0``, so it is never installed), verifies the wheel's and the table's sha256, and
extracts the table into the cache (``$SIMPO_BIO_CACHE``, default ``~/.cache/simpo-bio``). :func:`load_dhs` then
builds, once, a tokenised copy with the ``datasets`` library (Arrow files, memory-mapped on every later load).

Splits follow the file's own ``data_label`` column (a chromosome hold-out): ``train`` = ``training``
(39,254 rows), ``validation`` (4,053 rows, all on chr2) and ``test`` (4,565 rows, all on chr1). Note that the
file puts chr2 in *validation* and chr1 in *test*; the row counts are those of DATA.md.

Data set columns (every loader): ``name`` (record id), ``sequence`` (str, uppercase), ``tokens`` (int8, length
``L``; ids of :mod:`simpo_bio.dna.alphabet`). The DHS set adds ``label`` (:class:`datasets.ClassLabel`, ids
0..3 in the order of :data:`CELL_TYPES`; :data:`HEPG2_INDEX` = 3), ``chrom``, ``total_signal``, ``numsamples``.
Tables with numeric target columns (the Gosai ``gosai_all.csv`` layout: ``seq, hepg2, k562, sknsh``) keep each
target as a float32 column and add ``targets`` (float32 ``[K]``, in ``target_names`` order).

DataModules (batches are ready for a model; token ids are ``torch.long``):

* :class:`SequenceDataModule` -- ``tokens [B, L]`` (a plain LongTensor) for masked-diffusion pretraining.
* :class:`CellTypeDataModule` -- ``{"tokens": [B, L] long, "label": [B] long}`` for the cell-type oracle,
  optionally restricted to one of two disjoint, class-stratified, seeded halves of the train split (the
  DRAKES-style fine-tuning / evaluation oracle pair).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from simpo_bio.dna.alphabet import tokenize
from simpo_bio.fileio import atomic_write

# ---------------------------------------------------------------------------------------------------------------
# constants of the embedded DHS data set (DATA.md)
# ---------------------------------------------------------------------------------------------------------------
DHS_REQUIREMENT = "dnadiffusion==0.0.0.dev0"
DHS_WHEEL_FILENAME = "dnadiffusion-0.0.0.dev0-py3-none-any.whl"
DHS_WHEEL_SHA256 = "d97becfde9c1cc2fcae3a5bd7584da2224d072ebf15194fdb25b85840d7f484c"
DHS_WHEEL_MEMBER = "dnadiffusion/data/K562_hESCT0_HepG2_GM12878_12k_sequences_per_group.txt"
DHS_TSV_FILENAME = "K562_hESCT0_HepG2_GM12878_12k_sequences_per_group.txt"
DHS_TSV_SHA256 = "ba1063a9a3d0054020ae2e9f8add974550ae91fe2d21989e790e5d6cb2cb4d58"
DHS_SEQ_LEN = 200
#: Class names of the DHS cell types, in label-id order.
CELL_TYPES: tuple[str, ...] = ("GM12878", "hESCT0", "K562", "HepG2")
#: ``TAG`` values of the DHS table, aligned with :data:`CELL_TYPES`.
DHS_TAGS: tuple[str, ...] = ("GM12878_ENCLB441ZZZ", "hESCT0_ENCLB449ZZZ", "K562_ENCLB843GMH", "HepG2_ENCLB029COU")
#: Label id of HepG2, the target cell type of the enhancer-design task (reward = HepG2 log-odds).
HEPG2_INDEX = 3
SPLITS: tuple[str, ...] = ("train", "validation", "test")
# version of the tokenised cache layout; bump when the columns change
_CACHE_VERSION = 1

_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "testing": "test",
}  # fmt: skip
_SPLIT_COLUMNS = ("split", "data_label", "set", "fold")
_SEQUENCE_COLUMNS = ("sequence", "seq", "sequences", "seqs")
_CHROM_COLUMNS = ("chrom", "chr", "chromosome")
_NAME_COLUMNS = ("name", "id", "dhs_id", "seq_id")
_FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fa.gz", ".fasta.gz", ".fna.gz")


class ChecksumError(RuntimeError):
    """A downloaded or user-supplied file does not have the expected sha256.

    Attributes: ``path``, ``expected``, ``actual`` (hex digests).
    """

    def __init__(self, path: str | os.PathLike, expected: str, actual: str):
        self.path, self.expected, self.actual = Path(path), expected, actual
        super().__init__(
            f"checksum mismatch for {self.path}: expected sha256 {expected}, got {actual}. "
            "The file is corrupted or not the expected release; delete it and fetch again."
        )


# ---------------------------------------------------------------------------------------------------------------
# cache and download
# ---------------------------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """The data cache: ``$SIMPO_BIO_CACHE`` if set, else ``~/.cache/simpo-bio``."""
    env = os.environ.get("SIMPO_BIO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "simpo-bio"


def _resolve_cache(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`ChecksumError` (naming the file and both sums) unless ``path`` has sha256 ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(path, expected, actual)


def _pip_download(requirement: str, dest: Path) -> Path:
    """Run ``pip download --no-deps requirement -d dest`` and return the wheel it wrote.

    Raises:
        RuntimeError: pip failed (no network, package not served); the message carries pip's output.
    """
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", requirement, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}\n"
            "Offline? Download the wheel elsewhere and pass it: `simpo-bio data fetch dhs --source WHEEL_OR_TSV`."
        )
    wheel = dest / DHS_WHEEL_FILENAME
    if not wheel.exists():
        raise RuntimeError(f"pip download succeeded but {wheel} is missing; pip wrote: {sorted(os.listdir(dest))}")
    return wheel


def _atomic_copy_stream(src_fh, target: Path) -> None:
    with atomic_write(target, "wb") as out:
        shutil.copyfileobj(src_fh, out, 1 << 20)


def _extract_member(wheel: Path, member: str, target: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            _atomic_copy_stream(src, target)
    except KeyError as err:
        raise RuntimeError(f"{wheel} does not contain {member}") from err
    except zipfile.BadZipFile as err:
        raise RuntimeError(f"{wheel} is not a valid wheel (zip) file: {err}") from err


def fetch_dhs(
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    force: bool = False,
) -> Path:
    """Make the verified DHS table available in the cache and return its path.

    With ``source=None`` the wheel ``dnadiffusion==0.0.0.dev0`` is fetched by ``pip download --no-deps`` into
    ``<cache>/dhs/`` (skipped when a verified table is already there). ``source`` may instead be a
    pre-downloaded wheel (``.whl`` / any zip) or the extracted TSV itself (offline use). Both sha256 sums of
    DATA.md are checked: the wheel's (when a wheel is involved) and the table's. Writes are atomic.

    Args:
        source: ``None`` (download), a wheel path or a TSV path.
        cache_dir: cache root; default :func:`default_cache_dir`.
        force: re-download / re-extract even when a verified table is cached.

    Returns:
        path of the verified TSV, ``<cache>/dhs/K562_hESCT0_HepG2_GM12878_12k_sequences_per_group.txt``.

    Raises:
        ChecksumError: the wheel or the table has the wrong sha256 (the message names the file and both sums).
        FileNotFoundError: ``source`` does not exist.
        RuntimeError: pip download failed, or the wheel lacks the table.
    """
    root = _resolve_cache(cache_dir) / "dhs"
    target = root / DHS_TSV_FILENAME
    if source is None:
        if target.exists() and not force:
            try:
                verify_sha256(target, DHS_TSV_SHA256)
                return target
            except ChecksumError:
                target.unlink()  # a stale or damaged copy: fetch afresh
        wheel = root / DHS_WHEEL_FILENAME
        if force or not wheel.exists():
            wheel.unlink(missing_ok=True)
            wheel = _pip_download(DHS_REQUIREMENT, root)
        verify_sha256(wheel, DHS_WHEEL_SHA256)
        _extract_member(wheel, DHS_WHEEL_MEMBER, target)
    else:
        src = Path(source).expanduser()
        if not src.exists():
            raise FileNotFoundError(f"DHS source {src} does not exist")
        if src.suffix == ".whl" or zipfile.is_zipfile(src):
            verify_sha256(src, DHS_WHEEL_SHA256)
            _extract_member(src, DHS_WHEEL_MEMBER, target)
        else:
            verify_sha256(src, DHS_TSV_SHA256)
            if src.resolve() != target.resolve():
                with open(src, "rb") as fh:
                    _atomic_copy_stream(fh, target)
    verify_sha256(target, DHS_TSV_SHA256)
    return target


# ---------------------------------------------------------------------------------------------------------------
# building data sets
# ---------------------------------------------------------------------------------------------------------------
def _pick(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    return None


def _seeded_split(n: int, seed: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Array of split names (``train``/``validation``/``test``) for ``n`` records, random under ``seed``."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"invalid split fractions val={val_fraction} test={test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    out = np.full(n, "train", dtype=object)
    out[perm[:n_test]] = "test"
    out[perm[n_test : n_test + n_val]] = "validation"
    return out


def _to_dataset_dict(columns: dict, split: np.ndarray, features_extra: dict, seq_len: int):
    """Build a DatasetDict from column arrays plus a per-row split-name array."""
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


def _dhs_columns(tsv: Path) -> tuple[dict, np.ndarray]:
    import pandas as pd

    df = pd.read_csv(tsv, sep="\t")
    missing = {"dhs_id", "chr", "sequence", "TAG", "data_label"} - set(df.columns)
    if missing:
        raise ValueError(f"{tsv} lacks the DHS columns {sorted(missing)}")
    seqs = df["sequence"].astype(str).str.upper().tolist()
    names = df["dhs_id"].astype(str).tolist()
    tag_to_id = {t: i for i, t in enumerate(DHS_TAGS)}
    unknown = set(df["TAG"]) - set(tag_to_id)
    if unknown:
        raise ValueError(f"{tsv}: unknown cell-type TAG values {sorted(unknown)}; expected {DHS_TAGS}")
    split = df["data_label"].map(lambda s: _SPLIT_ALIASES.get(str(s).lower(), "?")).to_numpy(dtype=object)
    if (split == "?").any():
        bad = df["data_label"][split == "?"].iloc[0]
        raise ValueError(f"{tsv}: unknown data_label {bad!r}")
    cols = {
        "name": names,
        "sequence": seqs,
        "tokens": tokenize(seqs, DHS_SEQ_LEN, names),
        "label": df["TAG"].map(tag_to_id).to_numpy(np.int64),
        "chrom": df["chr"].astype(str).tolist(),
        "total_signal": df["total_signal"].to_numpy(np.float32),
        "numsamples": df["numsamples"].to_numpy(np.int32),
    }
    return cols, split


def _dhs_features():
    import datasets

    return {
        "label": datasets.ClassLabel(names=list(CELL_TYPES)),
        "chrom": datasets.Value("string"),
        "total_signal": datasets.Value("float32"),
        "numsamples": datasets.Value("int32"),
    }


def load_dhs(
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    rebuild: bool = False,
):
    """The embedded DHS data set as a tokenised, memory-mapped :class:`datasets.DatasetDict`.

    First use fetches and verifies the table (:func:`fetch_dhs`) and writes a tokenised Arrow copy to
    ``<cache>/dhs/tokenised-v1-<sha256[:12]>/``; later calls memory-map that copy (no re-hashing, no parsing).

    Args:
        source: ``None`` (download on first use), or a pre-downloaded wheel / TSV (see :func:`fetch_dhs`).
        cache_dir: cache root; default :func:`default_cache_dir`.
        rebuild: rebuild the tokenised copy even if present.

    Returns:
        ``DatasetDict`` with splits ``train`` (39,254), ``validation`` (4,053; chr2), ``test`` (4,565; chr1) and
        columns ``name, sequence, tokens`` (int8 ``[200]``), ``label`` (ClassLabel over :data:`CELL_TYPES`),
        ``chrom, total_signal, numsamples``.

    Raises:
        ChecksumError, FileNotFoundError, RuntimeError: see :func:`fetch_dhs`.
    """
    import datasets

    root = _resolve_cache(cache_dir) / "dhs"
    final = root / f"tokenised-v{_CACHE_VERSION}-{DHS_TSV_SHA256[:12]}"
    if final.exists() and not rebuild and source is None:
        return datasets.load_from_disk(str(final))
    tsv = fetch_dhs(source, cache_dir)
    if final.exists() and not rebuild:
        return datasets.load_from_disk(str(final))
    cols, split = _dhs_columns(tsv)
    dd = _to_dataset_dict(cols, split, _dhs_features(), DHS_SEQ_LEN)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tokenised-"))
    try:
        dd.save_to_disk(str(tmp))
        if rebuild and final.exists():
            shutil.rmtree(final)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first; keep its copy
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(final))


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
    import pandas as pd

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
        split = df[split_col].map(lambda s: _SPLIT_ALIASES.get(str(s).lower(), "?")).to_numpy(dtype=object)
        if (split == "?").any():
            bad = df[split_col][split == "?"].iloc[0]
            raise ValueError(f"{path}: unknown value {bad!r} in split column {split_col!r}")
    elif chrom_col is not None and (val_chroms or test_chroms):
        chrom = df[chrom_col].astype(str).to_numpy(dtype=object)
        split = np.full(len(df), "train", dtype=object)
        split[np.isin(chrom, list(val_chroms))] = "validation"
        split[np.isin(chrom, list(test_chroms))] = "test"
    else:
        split = _seeded_split(len(df), seed, val_fraction, test_fraction)
    return _to_dataset_dict(cols, split, extra, seq_len)


def load_fasta(
    path: str | os.PathLike,
    *,
    seq_len: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
):
    """Load a FASTA file (biopython; ``.gz`` ok) as a ``DatasetDict`` with a random split under ``seed``.

    Records whose description carries ``split=train|validation|test`` keep that split (all records must then
    carry one); otherwise the split is random.

    Returns:
        ``DatasetDict`` with columns ``name`` (record id), ``sequence``, ``tokens`` (int8 ``[L]``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no records.
        SequenceValidationError: a bad sequence, naming the record id and the position.
    """
    import gzip

    from Bio import SeqIO

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"FASTA file {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    names, seqs, tags = [], [], []
    with opener(path, "rt") as fh:
        for rec in SeqIO.parse(fh, "fasta"):
            names.append(rec.id)
            seqs.append(str(rec.seq).upper())
            tag = next((w.split("=", 1)[1] for w in rec.description.split() if w.startswith("split=")), None)
            tags.append(_SPLIT_ALIASES.get(tag.lower(), "?") if tag else None)
    if not names:
        raise ValueError(f"{path}: no FASTA records")
    tokens = tokenize(seqs, seq_len, names)
    if all(t is not None for t in tags):
        split = np.array(tags, dtype=object)
        if (split == "?").any():
            raise ValueError(f"{path}: record {names[list(split).index('?')]!r} has an unknown split= tag")
    else:
        split = _seeded_split(len(names), seed, val_fraction, test_fraction)
    return _to_dataset_dict({"name": names, "sequence": seqs, "tokens": tokens}, split, {}, tokens.shape[1])


def load_sequences(source: str | os.PathLike = "dhs", *, cache_dir: str | os.PathLike | None = None, **kwargs):
    """Dispatch on ``source``: ``"dhs"`` -> :func:`load_dhs`; ``*.fa|.fasta|.fna[.gz]`` -> :func:`load_fasta`;
    ``*.whl`` -> :func:`load_dhs` from that wheel; anything else -> :func:`load_sequence_table`.

    ``kwargs`` go to the chosen loader (ignored for the DHS set).
    """
    s = str(source)
    if s.lower() == "dhs":
        return load_dhs(None, cache_dir)
    if s.lower().endswith(".whl") or Path(s).name == DHS_TSV_FILENAME:
        return load_dhs(s, cache_dir)
    if s.lower().endswith(_FASTA_SUFFIXES):
        return load_fasta(s, **{k: v for k, v in kwargs.items() if k in ("seq_len", "seed", "val_fraction", "test_fraction")})
    return load_sequence_table(s, **kwargs)


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
# LightningDataModules
# ---------------------------------------------------------------------------------------------------------------
def _identity(batch):
    return batch


class _InMemoryTokens(torch.utils.data.Dataset):
    """Tokens ``[N, L]`` int8 (plus optional labels) with batched fetching (``__getitems__``)."""

    def __init__(self, tokens: torch.Tensor, labels: torch.Tensor | None = None):
        self.tokens, self.labels = tokens, labels

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.long)
        tokens = self.tokens[idx].long()
        if self.labels is None:
            return tokens
        return {"tokens": tokens, "label": self.labels[idx].long()}


def _columns_numpy(ds, columns: Sequence[str]) -> dict[str, np.ndarray]:
    arr = ds.with_format("numpy", columns=list(columns))[:]
    return {c: np.asarray(arr[c]) for c in columns}


class _DNADataModuleBase(pl.LightningDataModule):
    def __init__(
        self,
        source: str = "dhs",
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seq_len: int | None = None,
        cache_dir: str | None = None,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        loader_kwargs: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.loader_kwargs = dict(loader_kwargs or {})
        self.source, self.cache_dir = source, cache_dir
        self.batch_size, self.num_workers = batch_size, num_workers
        self.eval_batch_size = eval_batch_size or batch_size
        self.seq_len, self.seed = seq_len, seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.max_train_samples, self.max_eval_samples = max_train_samples, max_eval_samples
        self.splits = None
        self._data: dict[str, _InMemoryTokens] = {}

    def load(self):
        """The underlying ``DatasetDict`` (loaded once; memory-mapped for the DHS set)."""
        if self.splits is None:
            kwargs = {"seed": self.seed, "val_fraction": self.val_fraction, "test_fraction": self.test_fraction}
            if self.seq_len is not None:
                kwargs["seq_len"] = self.seq_len
            kwargs.update(self.loader_kwargs)
            self.splits = load_sequences(self.source, cache_dir=self.cache_dir, **kwargs)
            got = len(self.splits["train"][0]["tokens"]) if len(self.splits["train"]) else self.seq_len
            if self.seq_len is not None and got != self.seq_len:
                raise ValueError(f"{self.source}: sequences have length {got}, expected seq_len={self.seq_len}")
            self.seq_len = got
        return self.splits

    def prepare_data(self) -> None:
        self.load()

    def _subset(self, split: str) -> np.ndarray | None:
        return None

    def _make(self, split: str) -> _InMemoryTokens:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        self.load()
        for split in SPLITS:
            if split not in self._data:
                self._data[split] = self._make(split)

    def dataset(self, split: str) -> _InMemoryTokens:
        """The in-memory torch dataset of ``split`` (after :meth:`setup`)."""
        if split not in self._data:
            self.setup()
        return self._data[split]

    def _limit(self, n: int, split: str) -> np.ndarray:
        """Row indices kept of a split of ``n`` rows: all, or a seeded random subset of the cap (sorted)."""
        cap = self.max_train_samples if split == "train" else self.max_eval_samples
        if cap is None or cap >= n:
            return np.arange(n)
        return np.sort(np.random.default_rng(self.seed).choice(n, size=cap, replace=False))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=_identity,
            generator=g if shuffle else None,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class SequenceDataModule(_DNADataModuleBase):
    """Unlabelled sequences for masked-diffusion pretraining; batches are LongTensors ``[B, L]``.

    Args:
        source: ``"dhs"`` (the embedded default), a DHS wheel/TSV, a CSV/TSV (Gosai layout ok) or a FASTA file.
        batch_size: training batch size ``B``; ``eval_batch_size`` for validation/test (default ``batch_size``).
        num_workers: DataLoader workers (0 = main process; the data sit in memory, workers rarely help).
        seq_len: required length ``L`` (default: that of the data; 200 for DHS).
        cache_dir: data cache (default ``$SIMPO_BIO_CACHE`` or ``~/.cache/simpo-bio``).
        seed: seed of the shuffling and, for files without their own split, of the random split.
        val_fraction, test_fraction: random-split fractions (only for files without their own split).
        max_train_samples, max_eval_samples: keep a random subset (under ``seed``) of N rows of train / of
            validation and test (quick runs and tests).
        cell_types: DHS only: keep only these cell types (names from :data:`CELL_TYPES`); default all.
    """

    def __init__(
        self,
        source: str = "dhs",
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seq_len: int | None = None,
        cache_dir: str | None = None,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        loader_kwargs: dict | None = None,
        cell_types: list[str] | None = None,
    ):
        super().__init__(
            source, batch_size, eval_batch_size, num_workers, seq_len, cache_dir, seed,
            val_fraction, test_fraction, max_train_samples, max_eval_samples, loader_kwargs,
        )  # fmt: skip
        self.cell_types = cell_types

    def _make(self, split: str) -> _InMemoryTokens:
        ds = self.load()[split]
        if self.cell_types:
            if "label" not in ds.column_names:
                raise ValueError(f"cell_types= needs a labelled data set; {self.source} has no label column")
            names = ds.features["label"].names
            unknown = set(self.cell_types) - set(names)
            if unknown:
                raise ValueError(f"unknown cell types {sorted(unknown)}; known: {names}")
            keep = [names.index(c) for c in self.cell_types]
            labels = _columns_numpy(ds, ["label"])["label"]
            ds = ds.select(np.flatnonzero(np.isin(labels, keep)))
        keep = self._limit(len(ds), split)
        tokens = _columns_numpy(ds.select(keep), ["tokens"])["tokens"].astype(np.int8).reshape(len(keep), -1)
        return _InMemoryTokens(torch.from_numpy(tokens))


class CellTypeDataModule(_DNADataModuleBase):
    """Labelled sequences for the cell-type oracle; batches are ``{"tokens": [B, L] long, "label": [B] long}``.

    Args:
        train_half: ``None`` uses the whole train split; 0 or 1 uses one of two disjoint, class-stratified
            halves (:func:`train_half_indices`) -- the fine-tuning oracle trains on half 0 and the evaluation
            oracle on half 1, as DRAKES does. Validation and test splits are never halved.
        half_seed: seed of the half split (keep it equal for both oracles so the halves are disjoint).
        Other arguments: as :class:`SequenceDataModule`. The source must have a ``label`` column (the DHS set,
            or a table loaded with ``loader_kwargs={"class_column": ...}``).

    Attributes (after :meth:`setup`): ``label_names`` (class names in id order), ``num_classes``.
    """

    def __init__(
        self,
        source: str = "dhs",
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seq_len: int | None = None,
        cache_dir: str | None = None,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        loader_kwargs: dict | None = None,
        train_half: int | None = None,
        half_seed: int = 0,
    ):
        super().__init__(
            source, batch_size, eval_batch_size, num_workers, seq_len, cache_dir, seed,
            val_fraction, test_fraction, max_train_samples, max_eval_samples, loader_kwargs,
        )  # fmt: skip
        if train_half not in (None, 0, 1):
            raise ValueError(f"train_half must be None, 0 or 1, got {train_half}")
        self.train_half, self.half_seed = train_half, half_seed
        self.label_names: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.load()["train"].features["label"].names)

    def _make(self, split: str) -> _InMemoryTokens:
        ds = self.load()[split]
        if "label" not in ds.column_names:
            raise ValueError(f"{self.source} has no 'label' column; CellTypeDataModule needs class labels")
        self.label_names = list(ds.features["label"].names)
        cols = _columns_numpy(ds, ["tokens", "label"])
        tokens, labels = cols["tokens"].astype(np.int8).reshape(len(ds), -1), cols["label"].astype(np.int64)
        if split == "train" and self.train_half is not None:
            idx = train_half_indices(labels, self.train_half, self.half_seed)
            tokens, labels = tokens[idx], labels[idx]
        keep = self._limit(len(labels), split)
        return _InMemoryTokens(torch.from_numpy(np.ascontiguousarray(tokens[keep])), torch.from_numpy(labels[keep]))


# ---------------------------------------------------------------------------------------------------------------
# command line: `simpo-bio data fetch dhs`, `simpo-bio data info`
# ---------------------------------------------------------------------------------------------------------------
def _info(dd, title: str) -> str:
    lines = [title]
    for split in dd:
        ds = dd[split]
        line = f"  {split:<10} {len(ds):>7} records"
        if "label" in ds.column_names:
            names = ds.features["label"].names
            counts = np.bincount(_columns_numpy(ds, ["label"])["label"], minlength=len(names))
            line += "  (" + ", ".join(f"{n} {c}" for n, c in zip(names, counts)) + ")"
        if "chrom" in ds.column_names and len(ds):
            chroms = sorted(set(ds["chrom"]))
            line += f"  chromosomes: {','.join(chroms) if len(chroms) <= 3 else str(len(chroms)) + ' distinct'}"
        lines.append(line)
    first = next(iter(dd.values()))
    lines.append(f"  columns: {', '.join(first.column_names)}")
    return "\n".join(lines)


def cli_main(argv: list[str] | None = None) -> None:
    """``simpo-bio data fetch dhs [--source WHEEL|TSV] [--cache-dir DIR] [--force]`` and
    ``simpo-bio data info [dhs|FILE] [--cache-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="simpo-bio data", description="fetch / inspect the DNA data sets")
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download, verify and tokenise a data set")
    f.add_argument("dataset", choices=["dhs"])
    f.add_argument("--source", default=None, help="pre-downloaded dnadiffusion wheel or extracted TSV (offline)")
    f.add_argument("--cache-dir", default=None, help="default $SIMPO_BIO_CACHE or ~/.cache/simpo-bio")
    f.add_argument("--force", action="store_true", help="download and rebuild even if cached")
    i = sub.add_parser("info", help="split sizes, classes and cache location of a data set")
    i.add_argument("dataset", nargs="?", default="dhs", help="'dhs' (default) or a CSV/TSV/FASTA path")
    i.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    try:
        _run_cli(args)
    except (ChecksumError, FileNotFoundError, RuntimeError, ValueError) as err:
        print(f"simpo-bio data {args.cmd}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from err


def _run_cli(args: argparse.Namespace) -> None:
    cache = _resolve_cache(args.cache_dir)
    if args.cmd == "fetch":
        tsv = fetch_dhs(args.source, cache, force=args.force)
        dd = load_dhs(None, cache, rebuild=args.force)
        print(f"DHS table: {tsv}\n  sha256 {DHS_TSV_SHA256} (verified)")
        print(f"tokenised copy: {cache / 'dhs'}/tokenised-v{_CACHE_VERSION}-{DHS_TSV_SHA256[:12]}")
        print(_info(dd, "splits:"))
        return
    if args.dataset == "dhs":
        dd = load_dhs(None, cache)
        print(f"DHS (ENCODE DNase-hypersensitive sites, {DHS_REQUIREMENT} wheel); cache {cache / 'dhs'}")
        print(f"  table sha256 {DHS_TSV_SHA256}; HepG2 label id {HEPG2_INDEX}")
    else:
        dd = load_sequences(args.dataset, cache_dir=cache)
        print(f"{args.dataset}")
    print(_info(dd, "splits:"))
