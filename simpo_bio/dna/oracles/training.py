"""Training the cell-type oracle: the classifier's LightningModule and the k-mer baseline it must beat.

``simpo-bio fit --config configs/dna/oracle.yaml`` trains :class:`CellTypeClassifier` (the network of
:class:`~simpo_bio.dna.oracles.oracle.CellTypeCNN`) on one of two disjoint halves of the DHS train split
(:class:`~simpo_bio.dna.data.datamodules.CellTypeDataModule`); ``configs/dna/oracle_eval.yaml`` trains the evaluation
oracle on the other half. ``simpo-bio test`` prints the HepG2-vs-rest AUROC on the test split next to a 6-mer-count
logistic regression fitted on the same rows (:func:`kmer_logistic_baseline`). The checkpoints it writes are read by
:func:`simpo_bio.dna.oracles.oracle.load_oracle`.

Imports: Lightning, :mod:`simpo_bio.dna.models.checkpoints`, :mod:`simpo_bio.dna.data.dhs` (constants),
:mod:`simpo_bio.dna.oracles.oracle` (scikit-learn and scipy inside the baseline: slow to import, needed only at test time).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F

from simpo_bio.dna.data.dhs import CELL_TYPES, DHS_SEQ_LEN, HEPG2_INDEX
from simpo_bio.dna.models.checkpoints import guard_resume, record_model_kind
from simpo_bio.dna.oracles.oracle import CellTypeCNN, CellTypeOracle, log_odds


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

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        guard_resume(self, checkpoint)  # resuming a fit from another model's / config's checkpoint: one line, exit 2
