"""Input checks shared by the weighting functions: finite values on valid entries, no empty groups.

:func:`check_advantage` is called on rewards (:func:`simpo_bio.weighting.group_advantages`), on advantages and
on ``advantage / temperature`` (:func:`simpo_bio.weighting.compute_weights`); it raises
:class:`AdvantageError` with the group and position of the first bad entry.

Imports: torch only.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["AdvantageError", "check_advantage"]


class AdvantageError(ValueError):
    """A reward / advantage tensor that cannot be weighted (a ``ValueError``).

    Raised for a non-finite value (NaN, +-inf) on a valid entry -- the message names the group and position and
    contains ``"non-finite"`` -- or for a group whose mask is all False (``"has no valid sample"``).
    """


def _group_name(index: list[int]) -> str:
    return "(" + ", ".join(str(i) for i in index) + ")" if index else "()"


def check_advantage(values: Tensor, mask: Tensor | None = None, what: str = "advantage") -> None:
    """Check that every valid entry of ``values`` is finite and every group has a valid sample.

    One reduction in the common (valid) case; the culprit is located only on failure.

    Args:
        values: ``[..., N]`` float tensor (rewards, advantages or ``advantage / temperature``; any units). The
            group is the last dim.
        mask: optional ``[..., N]`` bool, same shape as ``values``, True = valid sample. Masked entries may hold
            anything (even NaN).
        what: the name used in the error message (``"reward"``, ``"advantage"``, ...).

    Raises:
        AdvantageError: a non-finite value on a valid entry (message: ``"<what> has a non-finite value (v) in
            group (i, j) at position k (shape ...)"``), or a group with no valid sample (message:
            ``"group (i, j) has no valid sample"``).
    """
    probe = values if mask is None else values.masked_fill(~mask, 0.0)
    if not bool(torch.isfinite(probe.abs().amax())):  # one reduction; locate the culprit only on failure
        bad = ~torch.isfinite(probe)
        first = bad.nonzero()[0].tolist()
        value = values[tuple(first)].item()
        raise AdvantageError(
            f"{what} has a non-finite value ({value}) in group {_group_name(first[:-1])} at position "
            f"{first[-1]} (shape {tuple(values.shape)}); fix the rewards or mask that sample out"
        )
    if mask is not None:
        empty = ~mask.any(-1)
        if bool(empty.any()):
            first = empty.nonzero()[0].tolist()
            raise AdvantageError(f"group {_group_name(first)} has no valid sample (its mask is all False)")
