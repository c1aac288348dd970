"""Order-k Markov chain baselines for the likelihood of DNA sequences, in bits per base.

The bar a generative model of regulatory DNA has to clear: an order-``k`` Markov chain fitted by counting on the
train split (additive smoothing ``alpha``). The first ``k`` bases of a sequence are scored by the lower-order
chains fitted on the same data (order ``i`` for base ``i``), so every chain is a proper distribution over whole
sequences and its bits/base compares directly with a diffusion model's ELBO bound.

Imports: torch only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["MarkovChain", "markov_bits_per_base"]


def _codes(x: Tensor, order: int, start: int, stop: int) -> Tensor:
    """Context code ``sum_m x[i - m] 4^(m - 1)`` for target positions ``start..stop-1``: ``[N, stop - start]``."""
    code = torch.zeros(x.shape[0], stop - start, dtype=torch.long)
    for m in range(order, 0, -1):
        code = code * 4 + x[:, start - m: stop - m]
    return code


class MarkovChain:
    """Order-``k`` Markov chain over A, C, G, T with additive smoothing.

    Args:
        order: ``k >= 0`` (0 = independent bases with the train composition).
        alpha: pseudo-count added to every (context, base) cell.
        alphabet_size: 4 for DNA.

    Raises:
        ValueError: on a negative order or non-positive alpha, or tokens outside ``[0, alphabet_size)``.
    """

    def __init__(self, order: int, alpha: float = 1.0, alphabet_size: int = 4) -> None:
        if order < 0 or alpha <= 0:
            raise ValueError(f"MarkovChain: need order >= 0 and alpha > 0, got order={order}, alpha={alpha}")
        self.order, self.alpha, self.alphabet_size = int(order), float(alpha), int(alphabet_size)
        self.log_probs: list[Tensor] = []  # per order j <= k: [A^j, A] natural-log conditionals

    def _check(self, tokens: Tensor) -> Tensor:
        x = torch.as_tensor(tokens).long()
        if x.dim() != 2:
            raise ValueError(f"MarkovChain: expected [N, L] tokens, got shape {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.alphabet_size):
            raise ValueError(f"MarkovChain: tokens must lie in [0, {self.alphabet_size}) (no mask tokens)")
        return x

    def fit(self, tokens: Tensor) -> MarkovChain:
        """Count (context, base) pairs in ``tokens`` ``[N, L]`` for every order ``0..k``; returns ``self``."""
        x = self._check(tokens)
        a = self.alphabet_size
        self.log_probs = []
        for j in range(self.order + 1):
            if x.shape[1] > j:
                code = _codes(x, j, j, x.shape[1]) * a + x[:, j:]
                counts = torch.bincount(code.reshape(-1), minlength=a ** (j + 1)).double()
            else:
                counts = torch.zeros(a ** (j + 1), dtype=torch.float64)
            counts = counts.reshape(a**j, a) + self.alpha
            self.log_probs.append((counts / counts.sum(-1, keepdim=True)).log())
        return self

    def log_likelihood(self, tokens: Tensor) -> Tensor:
        """``[N]`` log-likelihood of every sequence of ``tokens`` ``[N, L]``, in nats."""
        if not self.log_probs:
            raise RuntimeError("MarkovChain: call fit() first")
        x = self._check(tokens)
        n, length = x.shape
        total = torch.zeros(n, dtype=torch.float64)
        a = self.alphabet_size
        for i in range(min(self.order, length)):  # warm-up bases: lower-order chains
            code = _codes(x, i, i, i + 1)[:, 0]
            total += self.log_probs[i].reshape(-1)[code * a + x[:, i]]
        if length > self.order:
            k = self.order
            code = _codes(x, k, k, length) * a + x[:, k:]
            total += self.log_probs[k].reshape(-1)[code].sum(-1)
        return total

    def bits_per_base(self, tokens: Tensor) -> float:
        """Mean negative log2-likelihood per base over ``tokens`` ``[N, L]``."""
        x = self._check(tokens)
        return float(-self.log_likelihood(x).sum() / (x.numel() * math.log(2)))


def markov_bits_per_base(
    train_tokens: Tensor, eval_tokens: Tensor, orders: Iterable[int] = range(6), alpha: float = 1.0
) -> dict[int, float]:
    """Bits/base on ``eval_tokens`` of Markov chains of each order fitted on ``train_tokens`` (``[N, L]`` each)."""
    return {int(k): MarkovChain(k, alpha).fit(train_tokens).bits_per_base(eval_tokens) for k in orders}
