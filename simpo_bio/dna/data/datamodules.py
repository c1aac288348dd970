"""LightningDataModules: data sets -> batches ready for a model (token ids ``torch.long``).

* :class:`SequenceDataModule` -- ``tokens [B, L]`` (a plain LongTensor) for masked-diffusion pretraining.
* :class:`CellTypeDataModule` -- ``{"tokens": [B, L] long, "label": [B] long}`` for the cell-type oracle,
  optionally restricted to one of two disjoint, class-stratified, seeded halves of the train split (the
  DRAKES-style fine-tuning / evaluation oracle pair).

Both read their ``source`` through :func:`load_sequences`: ``"dhs"`` (the embedded default of
:mod:`simpo_bio.dna.data.dhs`), a DHS wheel / TSV, a CSV/TSV table or a FASTA file (:mod:`simpo_bio.dna.data.tables`). The
splits are copied into memory once (int8), so batches are plain tensor slices.

The training order of epoch ``e`` is a permutation seeded by ``(seed, e)`` (:class:`EpochSeededSampler`; Lightning
sets the epoch), so a fit resumed from a mid-epoch checkpoint of
:class:`~simpo_bio.dna.models.checkpoints.ResumableCheckpoint` skips exactly the batches already trained on
(:meth:`_DNADataModuleBase.resume_train_at`) and sees the same batches as an uninterrupted fit.

Imports: Lightning, :mod:`simpo_bio.dna.data.tables`, :mod:`simpo_bio.dna.data.dhs`.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from simpo_bio.dna.data.dhs import DHS_TSV_FILENAME, load_dhs
from simpo_bio.dna.data.tables import (
    FASTA_SUFFIXES,
    SPLITS,
    columns_numpy,
    load_fasta,
    load_sequence_table,
    train_half_indices,
)


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
    if s.lower().endswith(FASTA_SUFFIXES):
        return load_fasta(s, **{k: v for k, v in kwargs.items() if k in ("seq_len", "seed", "val_fraction", "test_fraction")})
    return load_sequence_table(s, **kwargs)


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


class EpochSeededSampler(torch.utils.data.Sampler):
    """A permutation of ``range(n)`` drawn from ``(seed, epoch)`` alone; Lightning calls :meth:`set_epoch`.

    :meth:`resume_at` makes the next pass over ``epoch`` start after its first ``skip`` indices (a fit resumed
    mid-epoch); the length stays ``n`` so that Lightning's batch counts keep their meaning.
    """

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = int(n), int(seed), 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, skip: int) -> None:
        self._resume = (int(epoch), int(skip))

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if self._resume is not None and self._resume[0] == self.epoch:
            order = order[self._resume[1]:]
        self._resume = None
        yield from order


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
        self._resume_train: tuple[int, int] | None = None

    def resume_train_at(self, epoch: int, batches: int) -> None:
        """Start the next train loader's epoch ``epoch`` after its first ``batches`` batches (a mid-epoch resume;
        called by :class:`~simpo_bio.dna.models.checkpoints.ResumableCheckpoint`)."""
        self._resume_train = (int(epoch), int(batches))

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
        # the generator only seeds the workers: the order comes from the sampler (never the global RNG)
        g = torch.Generator().manual_seed(self.seed)
        batch_size = self.batch_size if split == "train" else self.eval_batch_size
        sampler = None
        if shuffle:
            sampler = EpochSeededSampler(len(self.dataset(split)), self.seed)
            if self._resume_train is not None:
                sampler.resume_at(self._resume_train[0], self._resume_train[1] * batch_size)
                self._resume_train = None
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=_identity,
            generator=g,
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
            labels = columns_numpy(ds, ["label"])["label"]
            ds = ds.select(np.flatnonzero(np.isin(labels, keep)))
        keep = self._limit(len(ds), split)
        tokens = columns_numpy(ds.select(keep), ["tokens"])["tokens"].astype(np.int8).reshape(len(keep), -1)
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
        cols = columns_numpy(ds, ["tokens", "label"])
        tokens, labels = cols["tokens"].astype(np.int8).reshape(len(ds), -1), cols["label"].astype(np.int64)
        if split == "train" and self.train_half is not None:
            idx = train_half_indices(labels, self.train_half, self.half_seed)
            tokens, labels = tokens[idx], labels[idx]
        keep = self._limit(len(labels), split)
        return _InMemoryTokens(torch.from_numpy(np.ascontiguousarray(tokens[keep])), torch.from_numpy(labels[keep]))
