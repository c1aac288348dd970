"""JASPAR motif scanning of DNA sequences: :class:`MotifScanner` counts PSSM hits of many motifs on both strands
with one convolution, on token ids (:meth:`MotifScanner.count`, the JASPAR correlation of
:mod:`simpo_bio.dna.evaluation.metrics`) or, differentiably, on base probabilities (:meth:`MotifScanner.soft_profile`,
the motif term of :class:`simpo_bio.dna.finetune.gradient.RewardGradientFineTuning`).

PSSMs and thresholds come from ``Bio.motifs`` (pseudocounts of :func:`Bio.motifs.jaspar.calculate_pseudocounts`,
threshold at a false-positive rate under a uniform background), the motifs from ``pyjaspar`` (offline).

Imports: :mod:`simpo_bio.dna.data.alphabet`, :mod:`simpo_bio.dna.data.tables` (the cache folder),
:mod:`simpo_bio.fileio`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from Bio.motifs.jaspar import calculate_pseudocounts
from pyjaspar import jaspardb

from simpo_bio.dna.data.alphabet import ALPHABET
from simpo_bio.dna.data.tables import default_cache_dir
from simpo_bio.fileio import atomic_write

__all__ = ["MOTIF_BATCH_SIZE", "MotifScanner", "one_hot"]

#: Batch of the motif scan (:meth:`MotifScanner.count`: the 879 JASPAR motifs take 80 MB at 16 designs of 200 bp,
#: 590 MB at 256; the same counts and no slower; measured).
MOTIF_BATCH_SIZE = 16


def one_hot(tokens: torch.Tensor, num_classes: int = 4) -> torch.Tensor:
    """``[B, L]`` token ids in ``0..3`` -> float ``[B, 4, L]`` one-hot (channels first, for convolution).

    Raises:
        ValueError: a token outside ``0..num_classes-1`` (e.g. a leftover mask token).
    """
    tokens = torch.as_tensor(tokens).long()
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= num_classes):
        raise ValueError(f"tokens must lie in 0..{num_classes - 1} (no mask token) to be evaluated")
    return torch.nn.functional.one_hot(tokens, num_classes).float().transpose(1, 2)


@dataclass
class MotifScanner:
    """Counts PSSM hits of many motifs on both strands with one convolution.

    Attributes:
        names: ``[M]`` motif ids and names (``"MA0004.1 Arnt"``).
        weight: float ``[M, 4, W]`` log-odds (bits, ``Bio.motifs`` PSSM), zero-padded on the right to ``W``.
        width: long ``[M]`` true motif widths.
        threshold: float ``[M]`` score thresholds (bits).
    """

    names: list[str]
    weight: torch.Tensor
    width: torch.Tensor
    threshold: torch.Tensor

    @classmethod
    def from_motifs(cls, motifs: Sequence, fpr: float = 1e-4, precision: int = 100) -> MotifScanner:
        """Build the scanner from ``Bio.motifs`` motifs (e.g. JASPAR records).

        Pseudocounts follow ``Bio.motifs.jaspar.calculate_pseudocounts`` when the motif has counts; the threshold
        of each motif is the score whose false-positive rate under a uniform background is ``fpr``
        (``PSSM.distribution(precision).threshold_fpr``).
        """
        if len(motifs) == 0:
            raise ValueError("no motifs given")
        width = max(len(m) for m in motifs)
        weight = torch.zeros(len(motifs), 4, width)
        thr, widths, names = [], [], []
        for i, m in enumerate(motifs):
            m.pseudocounts = calculate_pseudocounts(m)
            pssm = m.pssm
            for c, base in enumerate(ALPHABET):
                weight[i, c, : len(m)] = torch.tensor([float(v) for v in pssm[base]])
            thr.append(float(pssm.distribution(precision=precision).threshold_fpr(fpr)))
            widths.append(len(m))
            names.append(f"{getattr(m, 'matrix_id', '') or i} {m.name}".strip())
        weight = torch.nan_to_num(weight, neginf=-20.0)
        return cls(names, weight, torch.tensor(widths), torch.tensor(thr))

    @classmethod
    def jaspar(
        cls,
        release: str = "JASPAR2024",
        collection: str = "CORE",
        tax_group: str = "vertebrates",
        fpr: float = 1e-4,
        max_motifs: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> MotifScanner:
        """JASPAR motifs shipped offline with ``pyjaspar``; PSSMs and thresholds are cached on disk.

        The first call takes ~30 s for the 879 CORE vertebrate motifs (threshold search in ``Bio.motifs``);
        later calls read the cache (``$SIMPO_BIO_CACHE`` or ``~/.cache/simpo-bio``).

        Args:
            max_motifs: keep only the first ``max_motifs`` motifs (fast tests); ``None`` keeps all.
        """
        key = f"{release}-{collection}-{tax_group}-{fpr:g}-{max_motifs}"
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = cache / f"motifs-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"
        if path.exists():
            try:
                d = torch.load(path, weights_only=True)
                return cls(d["names"], d["weight"], d["width"], d["threshold"])
            except Exception:  # a corrupt cache is rebuilt
                pass
        motifs = jaspardb(release=release).fetch_motifs(collection=collection, tax_group=[tax_group])
        if max_motifs is not None:
            motifs = motifs[:max_motifs]
        scanner = cls.from_motifs(motifs, fpr=fpr)
        with atomic_write(path, "wb") as fh:
            torch.save(
                {"names": scanner.names, "weight": scanner.weight, "width": scanner.width,
                 "threshold": scanner.threshold},
                fh,
            )
        return scanner

    def __len__(self) -> int:
        return len(self.names)

    def scores(self, tokens: torch.Tensor) -> torch.Tensor:
        """PSSM scores ``[B, 2, M, L]`` (forward, reverse-complement strand) at every start position.

        Positions where the motif would run past the end hold ``-inf``. The reverse-strand score at position
        ``p`` is the score of the reverse complement of the window starting at ``p`` (as ``Bio.motifs``).
        """
        padded, valid = self._padded(tokens)
        fwd = torch.nn.functional.conv1d(padded, self.weight)  # [B, M, L]
        rev = torch.nn.functional.conv1d(padded, self._reverse_complement())
        out = torch.stack([fwd, rev], dim=1)
        return out.masked_fill(~valid, float("-inf"))

    def _reverse_complement(self) -> torch.Tensor:
        """The motifs on the other strand: positions flipped, A<->T and C<->G swapped (channel order ACGT reversed).
        Built once per scanner (the fine-tuning loss reads it every iteration); ``weight`` is not to be changed
        in place afterwards."""
        rc = self.__dict__.get("_rc")
        if rc is None:
            rc = torch.zeros_like(self.weight)
            for i, wi in enumerate(self.width.tolist()):
                rc[i, :, :wi] = self.weight[i, :, :wi].flip(0).flip(-1)
            self.__dict__["_rc"] = rc
        return rc

    def _valid_starts(self, length: int, device=None) -> torch.Tensor:
        """Bool ``[M, L]``: the start positions where each motif fits inside ``length`` bases."""
        return torch.arange(length, device=device)[None, :] <= (length - self.width.to(device))[:, None]

    def _padded(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot ``[B, 4, L + W - 1]`` (zero-padded on the right) and the valid start positions ``[M, L]``."""
        oh = one_hot(tokens)  # [B, 4, L]
        return torch.nn.functional.pad(oh, (0, self.weight.shape[-1] - 1)), self._valid_starts(oh.shape[-1])

    def count(self, tokens: torch.Tensor, batch_size: int = MOTIF_BATCH_SIZE) -> torch.Tensor:
        """Number of hits (score >= threshold, both strands) per sequence and motif: float ``[B, M]``.

        The hits of :meth:`scores`, one strand at a time (a ``[batch_size, M, L]`` score tensor at most).
        """
        tokens = torch.as_tensor(tokens).long()
        out = []
        rc = self._reverse_complement()
        threshold = (self.threshold - 1e-4)[None, :, None]
        with torch.no_grad():
            for s in range(0, tokens.shape[0], batch_size):
                padded, valid = self._padded(tokens[s : s + batch_size])
                hits = 0
                for weight in (self.weight, rc):
                    sc = torch.nn.functional.conv1d(padded, weight)  # [b, M, L]
                    hits = hits + ((sc >= threshold) & valid).sum(-1)
                    del sc
                out.append(hits.float())
        return torch.cat(out) if out else torch.zeros(0, len(self))

    def soft_profile(self, probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Mean hits per sequence ``[M]`` of every motif on base probabilities ``probs [B, L, 4]`` (order ACGT, both
        strands), differentiable in ``probs``.

        Straight-through: the forward value is the hit count of :meth:`count` averaged over the batch (exact on
        one-hots), the gradient that of ``sigmoid((score - threshold) / temperature)`` (score in bits). One
        ``[B, M, L]`` score tensor per strand: keep ``B`` small with the 879 JASPAR motifs (32 x 200 bp: 45 MB).

        Raises:
            ValueError: ``probs`` is not ``[B, L, 4]`` floats or ``temperature <= 0``.
        """
        if probs.dim() != 3 or probs.shape[-1] != 4 or not probs.is_floating_point():
            raise ValueError(f"soft_profile: probs must be float [B, L, 4], got {tuple(probs.shape)} {probs.dtype}")
        if not temperature > 0:
            raise ValueError(f"soft_profile: temperature must be > 0 bits, got {temperature!r}")
        x = probs.transpose(1, 2)  # [B, 4, L]
        weight, threshold = self.weight.to(x.device), (self.threshold - 1e-4).to(x.device)[None, :, None]
        valid = self._valid_starts(x.shape[-1], x.device)  # [M, L]
        x = torch.nn.functional.pad(x, (0, weight.shape[-1] - 1))
        hits = 0
        for w in (weight, self._reverse_complement().to(x.device)):
            score = torch.nn.functional.conv1d(x, w)  # [B, M, L]
            soft = torch.sigmoid((score - threshold) / temperature)
            hard = (score >= threshold).to(soft.dtype)
            hits = hits + ((hard + soft - soft.detach()) * valid).sum(-1)
        return hits.mean(0)
