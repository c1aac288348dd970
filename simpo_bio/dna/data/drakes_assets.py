"""The DRAKES assets (pretrained model, Gosai data, oracles): where they live, fetching with checksums.

Moved out of the former ``drakes`` module by concern (data / models / evaluation).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
import zipfile
from pathlib import Path

from simpo_bio.dna.data.dhs import sha256_file
from simpo_bio.dna.data.tables import default_cache_dir
from simpo_bio.fileio import atomic_write

__all__ = ['DRAKES_FILES', 'RECORD', 'drakes_paths', 'fetch_drakes']


#: Files the protocol needs, relative to the archive's ``mdlm/`` folder.
DRAKES_FILES = {
    "gosai_csv": "gosai_data/processed_data/gosai_all.csv",
    "pretrained": "outputs_gosai/pretrained.ckpt",
    "oracle_ft": "outputs_gosai/lightning_logs/reward_oracle_ft.ckpt",
    "oracle_eval": "outputs_gosai/lightning_logs/reward_oracle_eval.ckpt",
    "atac": "gosai_data/binary_atac_cell_lines.ckpt",
}


RECORD = "drakes_assets.json"


# ------------------------------------------------------------------------------------------------ assets
def _mdlm_root(root: Path) -> Path | None:
    for cand in (root, root / "mdlm", root / "data_and_model" / "mdlm", *root.glob("*/data_and_model/mdlm")):
        if (cand / DRAKES_FILES["pretrained"]).exists() or (cand / DRAKES_FILES["gosai_csv"]).exists():
            return cand
    return None


def drakes_paths(root: str | os.PathLike) -> dict[str, Path]:
    """Paths of :data:`DRAKES_FILES` under an unpacked archive (``root`` = the ``mdlm`` folder or any parent).

    Raises:
        FileNotFoundError: no ``mdlm`` folder with the DRAKES files under ``root``.
    """
    found = _mdlm_root(Path(root))
    if found is None:
        raise FileNotFoundError(f"no DRAKES data under {root} (expected mdlm/{DRAKES_FILES['pretrained']}); "
                                "run `simpo-bio data fetch drakes --path DRAKES_data.zip`")
    return {k: found / v for k, v in DRAKES_FILES.items()}


def fetch_drakes(path: str | os.PathLike | None = None, url: str | None = None,
                 dest: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Unpack ``DRAKES_data.zip`` into ``dest`` (default ``<cache>/drakes``), check and record its files.

    Args:
        path: the archive, or an already unpacked folder. url: download the archive first (a direct link; for
            the Dropbox link of the DRAKES README use ``dl=1``). force: unpack again.

    Returns:
        the ``mdlm`` folder. ``dest/drakes_assets.json`` holds the sha256 and size of every file of
        :data:`DRAKES_FILES`; a later call compares the files with it.

    Raises:
        FileNotFoundError: missing archive or expected files. ValueError: neither or both of ``path``/``url``, or
        an archive member that would land outside ``dest``. ChecksumError: a file changed since it was recorded.
    """
    from simpo_bio.dna.data.dhs import ChecksumError

    dest = Path(dest) if dest is not None else default_cache_dir() / "drakes"
    dest.mkdir(parents=True, exist_ok=True)
    if path is not None and url is not None or (path is None and url is None and _mdlm_root(dest) is None):
        raise ValueError("give the archive with --path DRAKES_data.zip or --url URL (exactly one)")
    if url is not None and (force or _mdlm_root(dest) is None):
        path = dest / "DRAKES_data.zip"
        with urllib.request.urlopen(url) as resp, atomic_write(path, "wb") as fh:  # noqa: S310 (user's URL)
            shutil.copyfileobj(resp, fh, 1 << 20)
    if path is not None and Path(path).is_dir():
        dest = Path(path)
    elif path is not None and (force or _mdlm_root(dest) is None):
        if not Path(path).exists():
            raise FileNotFoundError(f"DRAKES archive {path} does not exist")
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                target = (dest / member).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise ValueError(f"{path}: member {member!r} would be written outside {dest}")
            zf.extractall(dest)
    paths = drakes_paths(dest)
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"the DRAKES archive lacks {missing}")
    record_path = dest / RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() and not force else {}
    for key, p in paths.items():
        digest, size = sha256_file(p), p.stat().st_size
        old = record.get(key)
        if old and old["sha256"] != digest:
            raise ChecksumError(p, old["sha256"], digest)
        record[key] = {"path": str(p.relative_to(dest)), "sha256": digest, "size": size}
    with atomic_write(record_path) as fh:
        json.dump(record, fh, indent=1)
    return paths["pretrained"].parents[1]
