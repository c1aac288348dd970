"""Frozen reward oracles for DNA design, and the cell-type classifier the project trains as its oracle.

One interface, :class:`RewardOracle`: ``oracle(tokens [B, L] long | list[str]) -> rewards [B]`` (float32, no
grad, batched, on the oracle's device; always in eval mode, even inside a module that is put in training mode).
Fine-tuning (SPEC section 5, the DNA task) queries the *fine-tuning* oracle; the metrics use an independent
*evaluation* oracle, as DRAKES does.

The oracle of the embedded DHS task (DATA.md, tier 1) is :class:`CellTypeOracle`: a compact CNN classifier of the
four DHS cell types (:data:`~simpo_bio.dna.data.CELL_TYPES`) whose reward is the HepG2 log-odds

    r(x) = logit_HepG2(x) - logsumexp_{c != HepG2} logit_c(x)        (nats; > 0 means P(HepG2) > 1/2)

It is trained by :class:`CellTypeClassifier` (``simpo-bio fit --config configs/dna/oracle.yaml``) on one of two
disjoint halves of the train split. ``simpo-bio test`` prints the HepG2-vs-rest AUROC on the test split next to a
6-mer-count logistic regression fitted on the same half. :func:`load_oracle` turns a checkpoint into a frozen
:class:`CellTypeOracle`; missing, truncated and wrong-architecture checkpoints raise the errors of
:mod:`simpo_bio.dna.checkpoints`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simpo_bio.dna.alphabet import MASK_INDEX, encode
from simpo_bio.dna.checkpoints import (
    check_model_kind,
    load_checkpoint,
    load_state_dict_checked,
    record_model_kind,
    strip_prefix,
)
from simpo_bio.dna.data import CELL_TYPES, DHS_SEQ_LEN, HEPG2_INDEX


# ---------------------------------------------------------------------------------------------------------------
# the interface
# ---------------------------------------------------------------------------------------------------------------
class RewardOracle(nn.Module):
    """A frozen reward model of DNA sequences: ``oracle(x) -> rewards [B]``.

    Subclasses implement :meth:`reward` on a LongTensor batch already on the oracle's device. ``__call__``
    (``forward``) accepts token ids ``[B, L]`` (any integer dtype, any device) or a list of strings (validated and
    tokenised with :func:`~simpo_bio.dna.alphabet.encode`), runs under ``torch.no_grad()`` in chunks of
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
# the network
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
        x = F.one_hot(tokens.long(), 5)[..., :4].transpose(1, 2).float()  # [B, 4, L]
        h = self.blocks(self.stem(x))
        return self.head(torch.cat([h.amax(-1), h.mean(-1)], dim=1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not self.rc_average:
            return self._logits(tokens)
        if self.training:  # random strand per sample: the augmentation whose expectation the average is
            flip = torch.rand(tokens.shape[0], 1, device=tokens.device) < 0.5
            return self._logits(torch.where(flip, reverse_complement(tokens), tokens))
        both = self._logits(torch.cat([tokens, reverse_complement(tokens)]))
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
# baseline: k-mer counts + logistic regression
# ---------------------------------------------------------------------------------------------------------------
def kmer_count_matrix(tokens: torch.Tensor | np.ndarray, k: int = 6):
    """Sparse CSR matrix ``[B, 4**k]`` of k-mer counts (forward strand) of token ids ``[B, L]`` in 0..3."""
    import scipy.sparse as sp

    tok = tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    tok = tok.astype(np.int64)
    b, length = tok.shape
    n = length - k + 1
    idx = np.zeros((b, n), dtype=np.int64)
    for j in range(k):
        idx = idx * 4 + tok[:, j : j + n]
    rows = np.repeat(np.arange(b), n)
    data = np.ones(idx.size, dtype=np.float32)
    return sp.csr_matrix((data, (rows, idx.ravel())), shape=(b, 4**k))


def kmer_logistic_baseline(
    train_tokens, train_labels, val_tokens, val_labels, test_tokens, test_labels,
    *, target_index: int = HEPG2_INDEX, k: int = 6, c_grid: Sequence[float] = (0.003, 0.01, 0.03), seed: int = 0,
) -> dict:  # fmt: skip
    """Target-vs-rest logistic regression on k-mer counts (scikit-learn), C chosen by validation AUROC.

    What a user would try first; the oracle must beat it. Inputs are token ids ``[N, L]`` and class ids ``[N]``.

    Returns:
        dict with ``test_auroc``, ``val_auroc``, ``C``, ``k``, ``fit_seconds``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    t0 = time.perf_counter()
    xtr, xva, xte = (kmer_count_matrix(t, k) for t in (train_tokens, val_tokens, test_tokens))
    ytr, yva, yte = (np.asarray(y) == target_index for y in (train_labels, val_labels, test_labels))
    best = None
    for c in c_grid:
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(xtr, ytr)
        val = roc_auc_score(yva, model.decision_function(xva))
        if best is None or val > best[0]:
            best = (val, c, model)
    val, c, model = best
    test = roc_auc_score(yte, model.decision_function(xte))
    return {"test_auroc": float(test), "val_auroc": float(val), "C": c, "k": k, "fit_seconds": time.perf_counter() - t0}


def _auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    from sklearn.metrics import roc_auc_score

    pos = positive.cpu().numpy().astype(bool)
    if pos.all() or not pos.any():
        return float("nan")
    return float(roc_auc_score(pos, scores.cpu().numpy()))


# ---------------------------------------------------------------------------------------------------------------
# training (LightningModule)
# ---------------------------------------------------------------------------------------------------------------
class CellTypeClassifier(pl.LightningModule):
    """Trains the cell-type CNN oracle (cross-entropy over the DHS cell types) with a :class:`CellTypeDataModule`.

    Validation logs ``val_loss``, ``val_acc`` and ``val_auroc`` (HepG2-vs-rest AUROC of the reward). Test prints
    and logs ``test_auroc`` (the oracle gate: >= ``auroc_gate`` and above the baseline), ``test_acc`` and
    ``test_baseline_auroc``, the AUROC of a 6-mer-count logistic regression fitted on the *same* training rows
    (the data module's train split or half).

    Args:
        num_classes, channels, first_kernel, kernel, num_blocks, pool, dropout, rc_average: :class:`CellTypeCNN`.
        lr: peak AdamW learning rate (one-cycle schedule over the whole run). weight_decay: AdamW decay.
        label_smoothing: cross-entropy label smoothing.
        target_index: class whose log-odds is the reward (HepG2 = 3).
        cell_types: class names in id order.
        seq_len: sequence length the oracle accepts.
        baseline_k, baseline_c_grid: the k-mer logistic-regression baseline at test time (``baseline_k=0`` skips it).
        auroc_gate: the AUROC the test report checks against.
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
        lr: float = 5e-3,
        weight_decay: float = 1e-2,
        label_smoothing: float = 0.0,
        target_index: int = HEPG2_INDEX,
        cell_types: list[str] | None = None,
        seq_len: int = DHS_SEQ_LEN,
        baseline_k: int = 6,
        baseline_c_grid: list[float] | None = None,
        auroc_gate: float = 0.90,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = CellTypeCNN(num_classes, channels, first_kernel, kernel, num_blocks, pool, dropout, rc_average)
        self.cell_types = list(cell_types) if cell_types is not None else list(CELL_TYPES)[:num_classes]
        self._outputs: dict[str, list] = {}
        self._fit_start: float | None = None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` of token ids ``[B, L]``."""
        return self.net(tokens)

    def to_oracle(self) -> CellTypeOracle:
        """A frozen :class:`CellTypeOracle` sharing a copy of this network's weights."""
        import copy

        return CellTypeOracle(
            copy.deepcopy(self.net), self.cell_types, self.hparams.target_index, self.hparams.seq_len
        ).to(self.device)

    def training_step(self, batch, batch_idx):
        logits = self.net(batch["tokens"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(logits))
        return loss

    def _eval_step(self, batch, stage: str):
        logits = self.net(batch["tokens"])
        loss = F.cross_entropy(logits, batch["label"])
        self.log(f"{stage}_loss", loss, prog_bar=True, on_epoch=True, batch_size=len(logits))
        self._outputs.setdefault(stage, []).append((logits.detach().float().cpu(), batch["label"].cpu()))

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def _epoch_metrics(self, stage: str) -> dict[str, float]:
        outs = self._outputs.pop(stage, [])
        if not outs:
            return {}
        logits = torch.cat([o[0] for o in outs])
        labels = torch.cat([o[1] for o in outs])
        t = self.hparams.target_index
        metrics = {
            f"{stage}_acc": float((logits.argmax(1) == labels).float().mean()),
            f"{stage}_auroc": _auroc(log_odds(logits, t), labels == t),
        }
        self.log_dict(metrics, prog_bar=True)
        return metrics

    def on_fit_start(self) -> None:
        self._fit_start = time.perf_counter()

    def on_fit_end(self) -> None:
        if self._fit_start is not None and self.trainer.is_global_zero:
            print(f"[oracle] fit wall-clock: {time.perf_counter() - self._fit_start:.1f} s "
                  f"({torch.get_num_threads()} torch threads)")  # fmt: skip

    def on_validation_epoch_end(self) -> None:
        self._epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        metrics = self._epoch_metrics("test")
        if not metrics:
            return
        lines = [f"[oracle] test split: HepG2-vs-rest AUROC {metrics['test_auroc']:.4f}, "
                 f"4-class accuracy {metrics['test_acc']:.4f}"]  # fmt: skip
        dm = getattr(self.trainer, "datamodule", None)
        passed = metrics["test_auroc"] >= self.hparams.auroc_gate
        if self.hparams.baseline_k and dm is not None and hasattr(dm, "dataset"):
            tr, va, te = (dm.dataset(s) for s in ("train", "validation", "test"))
            base = kmer_logistic_baseline(
                tr.tokens, tr.labels, va.tokens, va.labels, te.tokens, te.labels,
                target_index=self.hparams.target_index, k=self.hparams.baseline_k,
                c_grid=tuple(self.hparams.baseline_c_grid or (0.003, 0.01, 0.03)),
            )  # fmt: skip
            self.log("test_baseline_auroc", base["test_auroc"])
            lines.append(
                f"[oracle] baseline: {base['k']}-mer-count logistic regression on the same {len(tr)} training rows "
                f"(C={base['C']} chosen on validation): AUROC {base['test_auroc']:.4f}"
            )
            passed = passed and metrics["test_auroc"] > base["test_auroc"]
            gate = f"AUROC >= {self.hparams.auroc_gate} and above the baseline"
        else:
            gate = f"AUROC >= {self.hparams.auroc_gate} (baseline skipped)"
        lines.append(f"[oracle] gate ({gate}): {'PASS' if passed else 'FAIL'}")
        if self.trainer.is_global_zero:
            print("\n".join(lines))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        if not math.isfinite(total) or total <= 0:
            return opt
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.hparams.lr, total_steps=total, pct_start=0.2)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        record_model_kind(checkpoint, type(self).__name__)


# ---------------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------------
_NET_ARGS = ("num_classes", "channels", "first_kernel", "kernel", "num_blocks", "pool", "dropout", "rc_average")


def load_oracle(
    path: str | os.PathLike, device: str | torch.device = "cpu", batch_size: int = 1024
) -> CellTypeOracle:
    """Load a :class:`CellTypeClassifier` checkpoint as a frozen :class:`CellTypeOracle`.

    Args:
        path: checkpoint written by ``simpo-bio fit --config configs/dna/oracle.yaml`` (or a shipped one,
            ``checkpoints/dna/oracle_ft.ckpt`` / ``oracle_eval.ckpt``).
        device: where the oracle lives.
        batch_size: chunk size of a call.

    Returns:
        the frozen oracle (eval mode, no grad); reward = HepG2 log-odds.

    Raises:
        CheckpointNotFoundError: no file at ``path``.
        CheckpointCorruptError: truncated or unreadable file.
        CheckpointArchitectureError: a checkpoint of another model, or weights that do not fit the recorded
            architecture.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    check_model_kind(ckpt, "CellTypeClassifier", path)
    hp = dict(ckpt.get("hyper_parameters") or {})
    net_kwargs = {k: hp[k] for k in _NET_ARGS if k in hp}
    try:
        net = CellTypeCNN(**net_kwargs)
    except (TypeError, ValueError, RuntimeError) as err:
        from simpo_bio.dna.checkpoints import CheckpointArchitectureError

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
