"""The embedded default data set: ENCODE DNase-hypersensitive sites (DHS) of four cell types.

47,872 sites, 200 bp around the summit (hg38; GM12878, hESC, K562, HepG2, 11,968 each), shipped as a table inside
the MIT-licensed PyPI wheel ``dnadiffusion==0.0.0.dev0``. :func:`fetch_dhs` downloads that wheel with
``pip download --no-deps`` (the wheel pins ``torch==2.0.0``, so it is never installed), verifies the wheel's and
the table's sha256 and extracts the table into the cache (:func:`simpo_bio.dna.data.tables.default_cache_dir`).
:func:`load_dhs` then builds, once, a tokenised copy with the ``datasets`` library (Arrow files, memory-mapped on
every later load). The facts (checksums, split sizes, cache layout) are listed in ``data/README.md``.

Splits follow the file's own ``data_label`` column (a chromosome hold-out): ``train`` = ``training``
(39,254 rows), ``validation`` (4,053 rows, all on chr2) and ``test`` (4,565 rows, all on chr1). Note that the
file puts chr2 in *validation* and chr1 in *test*. Columns: those of :mod:`simpo_bio.dna.data.tables` plus ``label``
(:class:`datasets.ClassLabel`, ids 0..3 in the order of :data:`CELL_TYPES`; :data:`HEPG2_INDEX` = 3), ``chrom``,
``total_signal``, ``numsamples``.

Imports: :mod:`simpo_bio.dna.data.alphabet`, :mod:`simpo_bio.dna.data.tables`, :mod:`simpo_bio.fileio` (``datasets`` inside
:func:`load_dhs`, like :mod:`simpo_bio.dna.data.tables`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from simpo_bio.dna.data.alphabet import tokenize
from simpo_bio.dna.data.tables import resolve_cache_dir, split_names, to_dataset_dict
from simpo_bio.fileio import atomic_write

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
#: Version of the tokenised cache layout; bump when the columns change.
CACHE_VERSION = 1


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
# download and verify
# ---------------------------------------------------------------------------------------------------------------
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
    pre-downloaded wheel (``.whl`` / any zip) or the extracted TSV itself (offline use). Both sha256 sums
    (``data/README.md``) are checked: the wheel's (when a wheel is involved) and the table's. Writes are atomic.

    Args:
        source: ``None`` (download), a wheel path or a TSV path.
        cache_dir: cache root; default :func:`simpo_bio.dna.data.tables.default_cache_dir`.
        force: re-download / re-extract even when a verified table is cached.

    Returns:
        path of the verified TSV, ``<cache>/dhs/K562_hESCT0_HepG2_GM12878_12k_sequences_per_group.txt``.

    Raises:
        ChecksumError: the wheel or the table has the wrong sha256 (the message names the file and both sums).
        FileNotFoundError: ``source`` does not exist.
        RuntimeError: pip download failed, or the wheel lacks the table.
    """
    root = resolve_cache_dir(cache_dir) / "dhs"
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
# the tokenised data set
# ---------------------------------------------------------------------------------------------------------------
def _dhs_columns(tsv: Path) -> tuple[dict, np.ndarray]:
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
    split = split_names(df["data_label"])
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
        cache_dir: cache root; default :func:`simpo_bio.dna.data.tables.default_cache_dir`.
        rebuild: rebuild the tokenised copy even if present.

    Returns:
        ``DatasetDict`` with splits ``train`` (39,254), ``validation`` (4,053; chr2), ``test`` (4,565; chr1) and
        columns ``name, sequence, tokens`` (int8 ``[200]``), ``label`` (ClassLabel over :data:`CELL_TYPES`),
        ``chrom, total_signal, numsamples``.

    Raises:
        ChecksumError, FileNotFoundError, RuntimeError: see :func:`fetch_dhs`.
    """
    import datasets

    root = resolve_cache_dir(cache_dir) / "dhs"
    final = root / f"tokenised-v{CACHE_VERSION}-{DHS_TSV_SHA256[:12]}"
    if final.exists() and not rebuild and source is None:
        return datasets.load_from_disk(str(final))
    tsv = fetch_dhs(source, cache_dir)
    if final.exists() and not rebuild:
        return datasets.load_from_disk(str(final))
    cols, split = _dhs_columns(tsv)
    dd = to_dataset_dict(cols, split, _dhs_features(), DHS_SEQ_LEN)
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
