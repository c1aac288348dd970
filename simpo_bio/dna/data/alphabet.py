"""DNA tokeniser: A, C, G, T and the absorbing mask token of masked diffusion.

Token ids are ``A=0, C=1, G=2, T=3, [MASK]=4`` (:data:`MASK_INDEX`), the vocabulary of the DRAKES / MDLM
models (``data/README.md``, tier 2), so a DRAKES state dict and our own checkpoints share one embedding table.

User sequences are validated before they reach a model: lowercase bases are accepted (soft-masked genome
sequence is common), any other character (``N``, IUPAC codes, whitespace, digits) or a length other than the
model's raises :class:`SequenceValidationError`, which names the record (its FASTA id / row name when given,
otherwise its index) and the 0-based position of the first offending character.

Imports: numpy and torch only; every other DNA module starts here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ALPHABET = "ACGT"
MASK_INDEX = 4
VOCAB_SIZE = 5
#: Character :func:`decode` writes for the mask token (never produced by a finished sampler).
MASK_CHAR = "N"

# byte -> token id; 255 marks an invalid byte
_LOOKUP = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(ALPHABET):
    _LOOKUP[ord(_c)] = _i
    _LOOKUP[ord(_c.lower())] = _i
_DECODE = np.frombuffer((ALPHABET + MASK_CHAR).encode("ascii"), dtype=np.uint8)


class SequenceValidationError(ValueError):
    """A sequence that cannot be tokenised.

    Attributes:
        record: the record's name (FASTA id, row name) or, when no names were given, its 0-based index.
        position: 0-based position of the first invalid character, or ``None`` for a length error.
        reason: human-readable description (also the first part of ``str(err)``).
    """

    def __init__(self, reason: str, record: str | int, position: int | None = None):
        self.reason = reason
        self.record = record
        self.position = position
        where = f"record {record!r}" + ("" if position is None else f", position {position}")
        super().__init__(f"{reason} ({where})")


def _record_name(i: int, names: Sequence[str] | None) -> str | int:
    return names[i] if names is not None else i


def tokenize(
    seqs: str | Sequence[str],
    length: int | None = None,
    names: Sequence[str] | None = None,
    *,
    dtype: np.dtype | type = np.int8,
) -> np.ndarray:
    """Tokenise and validate sequences into a numpy array (the data pipeline's fast path).

    Args:
        seqs: one sequence or a sequence of them.
        length: required length ``L``; ``None`` takes the first record's length and requires all to match it.
        names: optional record names used in error messages (same length as ``seqs``).
        dtype: numpy integer dtype of the result (``int8`` keeps the cached data set small).

    Returns:
        array ``[B, L]`` of token ids in ``0..3``.

    Raises:
        SequenceValidationError: a character outside ``ACGTacgt`` or a length other than ``length``.
        ValueError: ``names`` has a different length than ``seqs``.
    """
    if isinstance(seqs, str):
        seqs = [seqs]
    if names is not None and len(names) != len(seqs):
        raise ValueError(f"got {len(names)} names for {len(seqs)} sequences")
    if len(seqs) == 0:
        return np.zeros((0, length or 0), dtype=dtype)
    if length is None:
        length = len(seqs[0])
    out = np.empty((len(seqs), length), dtype=dtype)
    for i, s in enumerate(seqs):
        if not isinstance(s, str):
            raise SequenceValidationError(f"expected a str, got {type(s).__name__}", _record_name(i, names))
        if len(s) != length:
            raise SequenceValidationError(
                f"sequence has length {len(s)}, expected {length}", _record_name(i, names)
            )
        try:
            raw = np.frombuffer(s.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError as err:
            raise SequenceValidationError(
                f"invalid character {s[err.start]!r}; allowed: A, C, G, T (either case)",
                _record_name(i, names),
                err.start,
            ) from None
        ids = _LOOKUP[raw]
        bad = np.flatnonzero(ids == 255)
        if bad.size:
            p = int(bad[0])
            raise SequenceValidationError(
                f"invalid character {s[p]!r}; allowed: A, C, G, T (either case)", _record_name(i, names), p
            )
        out[i] = ids
    return out


def encode(
    seqs: str | Sequence[str], length: int | None = None, names: Sequence[str] | None = None
) -> torch.Tensor:
    """Tokenise and validate DNA sequences.

    Args:
        seqs: one sequence (gives a batch of one) or a sequence of ``B`` strings.
        length: required length ``L``; ``None`` takes the first record's length and requires all to match it.
        names: optional record names for error messages.

    Returns:
        LongTensor ``[B, L]`` with ids ``A=0, C=1, G=2, T=3``.

    Raises:
        SequenceValidationError: invalid character or wrong length, naming the record and position.
    """
    return torch.from_numpy(tokenize(seqs, length, names, dtype=np.int64))


def decode(tokens: torch.Tensor | np.ndarray) -> list[str]:
    """Turn token ids ``[B, L]`` (or one sequence ``[L]``) back into strings.

    The mask token (:data:`MASK_INDEX`) is written as :data:`MASK_CHAR` (``N``).

    Raises:
        ValueError: a token id outside ``0..4`` or a tensor that is not 1-D or 2-D.
    """
    arr = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(f"expected tokens of shape [B, L], got {tuple(arr.shape)}")
    if arr.size and (arr.min() < 0 or arr.max() >= VOCAB_SIZE):
        raise ValueError(f"token ids must lie in 0..{VOCAB_SIZE - 1}, got min {arr.min()} max {arr.max()}")
    chars = _DECODE[arr.astype(np.int64)]
    return [row.tobytes().decode("ascii") for row in chars]
