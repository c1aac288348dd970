"""Frozen reward oracles: the interface, the networks, loading a checkpoint, scoring, and the finite-reward check.

One interface, :class:`RewardOracle`: ``oracle(tokens [B, L] long | list[str]) -> rewards [B]`` (float32, no
grad, batched, on the oracle's device; always in eval mode, even inside a module that is put in training mode).
Fine-tuning (paper section 5.3) queries the *fine-tuning* oracle; the metrics use an independent *evaluation*
oracle, as DRAKES does.

The oracle of the embedded DHS task (:mod:`simpo_bio.dna.data.dhs`) is :class:`CellTypeOracle`: a compact CNN
classifier of the four DHS cell types (:data:`~simpo_bio.dna.data.dhs.CELL_TYPES`) whose reward is the HepG2 log-odds

    r(x) = logit_HepG2(x) - logsumexp_{c != HepG2} logit_c(x)        (nats; > 0 means P(HepG2) > 1/2)

:mod:`simpo_bio.dna.oracles.training` trains it. :func:`load_oracle` turns a checkpoint into a frozen
:class:`CellTypeOracle`, and a gReLU checkpoint (the DRAKES oracles, :mod:`simpo_bio.dna.oracles.grelu`) into a
:class:`RegressionOracle`; missing, truncated and wrong-architecture checkpoints raise the errors of
:mod:`simpo_bio.dna.models.checkpoints`. Every reward that leaves an oracle on its way to fine-tuning or to the metrics
passes :func:`check_rewards`, which raises :class:`NonFiniteRewardError` on NaN or infinity.

Imports: :mod:`simpo_bio.dna.data.alphabet`, :mod:`simpo_bio.dna.models.checkpoints`, :mod:`simpo_bio.dna.data.dhs` (constants),
:mod:`simpo_bio.dna.oracles.grelu` (gReLU checkpoints).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from simpo_bio.dna.data.alphabet import MASK_INDEX, encode
from simpo_bio.dna.data.dhs import CELL_TYPES, DHS_SEQ_LEN, HEPG2_INDEX
from simpo_bio.dna.models.checkpoints import (
    CheckpointArchitectureError,
    check_model_kind,
    load_checkpoint,
    load_state_dict_checked,
    strip_prefix,
)
from simpo_bio.dna.oracles.grelu import is_grelu_checkpoint, load_grelu_net, split_spec

#: Model kind recorded in the checkpoints of :class:`simpo_bio.dna.oracles.training.CellTypeClassifier`.
CLASSIFIER_KIND = "CellTypeClassifier"


# ---------------------------------------------------------------------------------------------------------------
# the interface
# ---------------------------------------------------------------------------------------------------------------
class RewardOracle(nn.Module):
    """A frozen reward model of DNA sequences: ``oracle(x) -> rewards [B]``.

    Subclasses implement :meth:`reward` on a LongTensor batch already on the oracle's device. ``__call__``
    (``forward``) accepts token ids ``[B, L]`` (any integer dtype, any device) or a list of strings (validated and
    tokenised with :func:`~simpo_bio.dna.data.alphabet.encode`), runs under ``torch.no_grad()`` in chunks of
    ``batch_size``, and returns float32 rewards ``[B]`` on the device of the input tensor (the oracle's device for
    strings). Parameters never require grad, and :meth:`train` keeps the module in eval mode, so dropout and
    batch-norm statistics never change the rewards.

    Attributes:
        seq_len: sequence length ``L`` the oracle accepts.
        batch_size: chunk size of a call.
    """

    def __init__(self, seq_len: int, batch_size: int = 1024):
        super().__init__()
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)

    def freeze(self) -> RewardOracle:
        """Eval mode and ``requires_grad=False`` on every parameter; returns ``self``."""
        for p in self.parameters():
            p.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> RewardOracle:
        """Always eval mode: an oracle is frozen (a parent module's ``.train()`` does not unfreeze it)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        p = next(iter(self.parameters()), None)
        if p is None:
            p = next(iter(self.buffers()), None)
        return p.device if p is not None else torch.device("cpu")

    def reward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Rewards ``[B]`` of a LongTensor ``[B, L]`` on the oracle's device (no batching, no checks)."""
        raise NotImplementedError

    def _tokens(self, x: torch.Tensor | Sequence[str]) -> torch.Tensor:
        if isinstance(x, str):
            x = [x]
        if not isinstance(x, torch.Tensor):
            return encode(list(x), length=self.seq_len)
        if x.dim() != 2 or x.shape[1] != self.seq_len:
            raise ValueError(f"expected tokens of shape [B, {self.seq_len}], got {tuple(x.shape)}")
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise TypeError(f"expected integer token ids, got dtype {x.dtype}")
        return x

    @torch.no_grad()
    def forward(self, x: torch.Tensor | Sequence[str], batch_size: int | None = None) -> torch.Tensor:
        """Rewards ``[B]`` (float32) of token ids ``[B, L]`` or of ``B`` strings.

        Raises:
            SequenceValidationError: a string with a character outside ACGT or of the wrong length.
            ValueError / TypeError: a tensor of the wrong shape or dtype.
        """
        tokens = self._tokens(x)
        out_device = tokens.device if isinstance(x, torch.Tensor) else self.device
        bs = batch_size or self.batch_size
        dev = self.device
        chunks = [
            self.reward(tokens[s : s + bs].to(dev, torch.long, non_blocking=True)).float()
            for s in range(0, tokens.shape[0], bs)
        ]
        if not chunks:
            return torch.zeros(0, device=out_device)
        return torch.cat(chunks).to(out_device)


# ---------------------------------------------------------------------------------------------------------------
# the networks
# ---------------------------------------------------------------------------------------------------------------
def reverse_complement(tokens: torch.Tensor) -> torch.Tensor:
    """Reverse complement of token ids ``[B, L]`` (A<->T, C<->G, order reversed; the mask token stays)."""
    rc = torch.where(tokens == MASK_INDEX, tokens, 3 - tokens)
    return rc.flip(-1)


class _ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.norm = nn.BatchNorm1d(channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.drop(F.relu(self.norm(self.conv(h))))


class CellTypeCNN(nn.Module):
    """Compact CNN classifier of DNA sequences: token ids ``[B, L]`` -> class logits ``[B, num_classes]``.

    one-hot (the mask token maps to the zero vector) -> conv(``first_kernel``) + BN + ReLU (motif scanner) ->
    max-pool(``pool``) -> ``num_blocks`` residual conv blocks (kernel ``kernel``, dilations 1, 2, 4, ...) ->
    global max and mean pooling -> dropout -> linear. With ``rc_average`` the eval-mode logits are the mean over
    the sequence and its reverse complement (strand-symmetric, as DNA is double stranded); in training mode each
    sample is read from a random strand instead (reverse-complement augmentation, half the cost).
    """

    def __init__(
        self,
        num_classes: int = 4,
        channels: int = 128,
        first_kernel: int = 15,
        kernel: int = 5,
        num_blocks: int = 1,
        pool: int = 8,
        dropout: float = 0.1,
        rc_average: bool = True,
    ):
        super().__init__()
        self.rc_average = rc_average
        self.stem = nn.Sequential(
            nn.Conv1d(4, channels, first_kernel, padding=first_kernel // 2),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.MaxPool1d(pool),
        )
        self.blocks = nn.Sequential(*[_ResBlock(channels, kernel, 2**i, dropout) for i in range(num_blocks)])
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * channels, num_classes))

    def _logits(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.is_floating_point():  # base probabilities [B, L, 4]: differentiable in them
            x = tokens.transpose(1, 2)
        else:
            x = F.one_hot(tokens.long(), 5)[..., :4].transpose(1, 2).float()  # [B, 4, L]
        h = self.blocks(self.stem(x))
        return self.head(torch.cat([h.amax(-1), h.mean(-1)], dim=1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, C]`` of token ids ``[B, L]``, or of base probabilities ``[B, L, 4]`` (float; the
        gradient flows to them; a one-hot gives the logits of its tokens)."""
        if not self.rc_average:
            return self._logits(tokens)
        # the reverse complement of probabilities [B, L, 4] (order ACGT): flip positions and bases
        rc = tokens.flip(1, 2) if tokens.is_floating_point() else reverse_complement(tokens)
        if self.training:  # random strand per sample: the augmentation whose expectation the average is
            flip = torch.rand(tokens.shape[0], *([1] * (tokens.dim() - 1)), device=tokens.device) < 0.5
            return self._logits(torch.where(flip, rc, tokens))
        both = self._logits(torch.cat([tokens, rc]))
        fwd, rev = both.chunk(2)
        return 0.5 * (fwd + rev)


def log_odds(logits: torch.Tensor, target_index: int) -> torch.Tensor:
    """``logit[target] - logsumexp(logit[others])`` for logits ``[B, C]`` -> ``[B]`` (nats)."""
    others = torch.cat([logits[:, :target_index], logits[:, target_index + 1 :]], dim=1)
    return logits[:, target_index] - torch.logsumexp(others, dim=1)


class CellTypeOracle(RewardOracle):
    """Frozen cell-type classifier whose reward is the log-odds of ``target_index`` (HepG2 by default).

    Args:
        net: the classifier (``[B, L]`` tokens -> ``[B, C]`` logits).
        cell_types: class names in logit order.
        target_index: the class whose log-odds is the reward.
        seq_len: accepted sequence length.
    """

    def __init__(
        self,
        net: nn.Module,
        cell_types: Sequence[str] = CELL_TYPES,
        target_index: int = HEPG2_INDEX,
        seq_len: int = DHS_SEQ_LEN,
        batch_size: int = 1024,
    ):
        super().__init__(seq_len, batch_size)
        self.net = net
        self.cell_types = list(cell_types)
        self.target_index = int(target_index)
        self.freeze()

    def reward(self, tokens: torch.Tensor) -> torch.Tensor:
        return log_odds(self.net(tokens), self.target_index)

    def soft_reward(self, probs: torch.Tensor) -> torch.Tensor:
        """Differentiable reward ``[B]`` (log-odds of the target, nats) of base probabilities ``probs [B, L, 4]``
        (order ACGT): the frozen net read on them (:class:`CellTypeCNN` takes floats; strand-averaged in eval
        mode). On exact one-hots it equals :meth:`reward` of their tokens. Used by reward backpropagation
        (:class:`simpo_bio.dna.finetune.gradient.RewardGradientFineTuning`).

        Raises:
            ValueError: ``probs`` is not float ``[B, seq_len, 4]``.
        """
        if probs.dim() != 3 or probs.shape[1:] != (self.seq_len, 4) or not probs.is_floating_point():
            raise ValueError(f"soft_reward: probs must be float [B, {self.seq_len}, 4], got {tuple(probs.shape)} "
                             f"{probs.dtype}")
        return log_odds(self.net(probs), self.target_index)

    @torch.no_grad()
    def logits(self, x: torch.Tensor | Sequence[str], batch_size: int | None = None) -> torch.Tensor:
        """Class logits ``[B, C]`` (float32) of token ids ``[B, L]`` or strings (batched, no grad)."""
        tokens = self._tokens(x)
        out_device = tokens.device if isinstance(x, torch.Tensor) else self.device
        bs = batch_size or self.batch_size
        chunks = [self.net(tokens[s : s + bs].to(self.device, torch.long)).float() for s in range(0, len(tokens), bs)]
        if not chunks:
            return torch.zeros(0, len(self.cell_types), device=out_device)
        return torch.cat(chunks).to(out_device)


class RegressionOracle(RewardOracle):
    """Frozen regression model (e.g. an MPRA activity predictor with outputs hepg2/k562/sknsh) as a reward.

    Args:
        net: module mapping token ids ``[B, L]`` to predictions ``[B, K]`` (or ``[B]``).
        output_index: which of the ``K`` outputs is the reward (ignored for ``[B]`` outputs).
        output_names: names of the outputs, for reports.
        seq_len: accepted sequence length.
    """

    def __init__(
        self,
        net: nn.Module,
        output_index: int = 0,
        output_names: Sequence[str] | None = None,
        seq_len: int = DHS_SEQ_LEN,
        batch_size: int = 1024,
    ):
        super().__init__(seq_len, batch_size)
        self.net = net
        self.output_index = int(output_index)
        self.output_names = list(output_names) if output_names is not None else None
        self.freeze()

    def reward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.net(tokens)
        return out if out.dim() == 1 else out[:, self.output_index]


# ---------------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------------
_NET_ARGS = ("num_classes", "channels", "first_kernel", "kernel", "num_blocks", "pool", "dropout", "rc_average")


def load_oracle(
    path: str | os.PathLike, device: str | torch.device = "cpu", batch_size: int = 1024
) -> RewardOracle:
    """Load a :class:`~simpo_bio.dna.oracles.training.CellTypeClassifier` checkpoint as a frozen :class:`CellTypeOracle`,
    or a gReLU ``LightningModel`` checkpoint (detected by its layout) as a frozen :class:`RegressionOracle`.

    Args:
        path: checkpoint written by ``simpo-bio fit --config configs/dna/oracle.yaml`` (or a shipped one,
            ``checkpoints/dna/oracle_ft.ckpt`` / ``oracle_eval.ckpt``), or a gReLU checkpoint with optional
            ``?task=NAME|INDEX&transform=identity|specificity&seq_len=200`` (default task index 0 = HepG2 of the
            DRAKES oracles; :func:`simpo_bio.dna.oracles.grelu.load_grelu_net`, unpickled in full, so refused unless
            trusted: ``SIMPO_BIO_TRUST_PICKLE=1`` or its sha256 in ``SIMPO_BIO_TRUSTED_SHA256``).
        device: where the oracle lives.
        batch_size: chunk size of a call.

    Returns:
        the frozen oracle (eval mode, no grad); reward = HepG2 log-odds, or the chosen gReLU output.

    Raises:
        CheckpointNotFoundError: no file at ``path``.
        CheckpointCorruptError: truncated or unreadable file.
        CheckpointArchitectureError: a checkpoint of another model, or weights that do not fit the recorded
            architecture.
        UnsafeCheckpointError: a file with Python objects; a gReLU checkpoint the user has not trusted.
        ImportError: a gReLU checkpoint without the ``grelu`` package (names the ``[drakes]`` extra).
        ValueError: ``?options`` on a file that is not a gReLU checkpoint, or an unknown option / task.
    """
    path, options = split_spec(path)
    if is_grelu_checkpoint(path):
        unknown = set(options) - {"task", "transform", "seq_len"}
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)} for gReLU checkpoint {path}")
        net, info = load_grelu_net(path, task=options.get("task", 0), transform=options.get("transform", "identity"))
        return RegressionOracle(net, output_index=info["task_index"], output_names=info["task_names"] or None,
                                seq_len=int(options.get("seq_len", DHS_SEQ_LEN)), batch_size=batch_size).to(device)
    if options:
        raise ValueError(f"options {options} apply to gReLU checkpoints only; {path} is not one")
    ckpt = load_checkpoint(path, map_location="cpu")
    check_model_kind(ckpt, CLASSIFIER_KIND, path)
    hp = dict(ckpt.get("hyper_parameters") or {})
    net_kwargs = {k: hp[k] for k in _NET_ARGS if k in hp}
    try:
        net = CellTypeCNN(**net_kwargs)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointArchitectureError(f"wrong architecture: {path}: cannot build CellTypeCNN: {err}", path) from err
    load_state_dict_checked(net, strip_prefix(ckpt["state_dict"], "net."), path)
    num_classes = net_kwargs.get("num_classes", 4)
    cell_types = hp.get("cell_types") or list(CELL_TYPES)[:num_classes]
    oracle = CellTypeOracle(
        net,
        cell_types=cell_types,
        target_index=hp.get("target_index", HEPG2_INDEX),
        seq_len=hp.get("seq_len", DHS_SEQ_LEN),
        batch_size=batch_size,
    )
    return oracle.to(device)


# ---------------------------------------------------------------------------------------------------------------
# checking and scoring
# ---------------------------------------------------------------------------------------------------------------
class NonFiniteRewardError(ValueError):
    """An oracle returned NaN or an infinite reward.

    Attributes:
        index: 0-based index of the first offending sequence.
        value: its reward.
        count: non-finite rewards in all.
        total: rewards checked.
    """

    def __init__(self, what: str, index: int, value: float, count: int, total: int):
        self.index, self.value, self.count, self.total = index, value, count, total
        super().__init__(
            f"{what} returned a non-finite reward ({value}) for sequence {index} of {total} "
            f"({count} non-finite in all); fix the oracle or its input"
        )


def check_rewards(reward: torch.Tensor, what: str = "the oracle") -> torch.Tensor:
    """Validate oracle output: rewards ``[B]``, all finite; returns them as float32.

    Args:
        what: how error messages name the oracle (``"the fine-tuning oracle"``).

    Raises:
        NonFiniteRewardError (a ValueError): a NaN / infinite reward (names the first offending sequence).
        ValueError: rewards of another shape than ``[B]``.
    """
    reward = torch.as_tensor(reward)
    if reward.ndim != 1:
        raise ValueError(f"{what} must return rewards of shape [B], got {tuple(reward.shape)}")
    bad = torch.nonzero(~torch.isfinite(reward)).flatten()
    if bad.numel():
        i = int(bad[0])
        raise NonFiniteRewardError(what, i, reward[i].item(), bad.numel(), reward.numel())
    return reward.float()


_HEPG2_NAME = CELL_TYPES[HEPG2_INDEX]


def _oracle_target_index(oracle) -> int:
    for attr in ("target_index", "target_idx"):
        if hasattr(oracle, attr):
            return int(getattr(oracle, attr))
    for attr in ("cell_types", "classes", "labels"):
        names = getattr(oracle, attr, None)
        if names is not None and _HEPG2_NAME in list(names):
            return list(names).index(_HEPG2_NAME)
    raise AttributeError(f"cannot tell which output of {type(oracle).__name__} is {_HEPG2_NAME}")


@torch.no_grad()
def oracle_scores(oracle, tokens: torch.Tensor, batch_size: int = 512, what: str = "the oracle") -> torch.Tensor:
    """Rewards ``[B]`` (float32, CPU) of any callable ``oracle`` on ``tokens`` ``[B, L]``, batched and checked.

    Raises:
        NonFiniteRewardError: the oracle returned a non-finite reward (:func:`check_rewards`).
    """
    tokens = torch.as_tensor(tokens).long()
    out = torch.cat([torch.as_tensor(oracle(tokens[s : s + batch_size])).float().reshape(-1).cpu()
                     for s in range(0, tokens.shape[0], batch_size)]) if tokens.shape[0] else torch.zeros(0)
    return check_rewards(out, what)


@torch.no_grad()
def oracle_predicts_target(oracle, tokens: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Bool ``[B]``: the oracle's argmax class is HepG2 (ATAC-Acc analogue); needs ``oracle.logits``."""
    idx = _oracle_target_index(oracle)
    tokens = torch.as_tensor(tokens).long()
    preds = [oracle.logits(tokens[s : s + batch_size]).argmax(-1).cpu() == idx
             for s in range(0, tokens.shape[0], batch_size)]
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.bool)
