"""gReLU reward oracles (the DRAKES setting) and a restricted reader for checkpoints written by other projects.

DRAKES (Wang et al. 2024, ``drakes_dna/oracle.py`` and ``train_oracle.py`` of its repository) scores enhancers with
gReLU ``LightningModel`` checkpoints (Lal et al. 2024, gReLU ``src/grelu/lightning/__init__.py``): two
Enformer-style regressors of MPRA activity with the three tasks ``hepg2, k562, sknsh`` (``reward_oracle_ft.ckpt``
for fine-tuning, ``reward_oracle_eval.ckpt`` for reporting) and a binary accessibility classifier with 7 sigmoid
outputs (``binary_atac_cell_lines.ckpt``, column 1 is the ATAC-Acc metric). Each maps a one-hot batch
``[B, 4, 200]`` (channels A, C, G, T) to ``[B, T, 1]``.

:class:`GreluNet` wraps such a model as a token network: ``tokens [B, L] long -> reward [B]`` (one output column
after an optional transform) and :meth:`GreluNet.predictions` ``-> [B, T]`` (every task). :func:`load_grelu_net`
loads it; :func:`simpo_bio.dna.oracles.oracle.load_oracle` puts it behind the :class:`~simpo_bio.dna.oracles.oracle.RewardOracle`
interface (as a :class:`~simpo_bio.dna.oracles.oracle.RegressionOracle`) whenever :func:`is_grelu_checkpoint` says the
file is a gReLU checkpoint, so every ``--oracle`` / ``--eval-oracle`` option takes one.

Choosing the output: an oracle *spec* is a path with optional ``?key=value&...`` options (:func:`split_spec`):
``task=hepg2`` (a task name of the checkpoint, or an index; default index 0 = HepG2 for the DRAKES oracles) and
``transform=identity`` (the prediction itself) or ``transform=specificity`` (the task minus the maximum of the
other tasks, a cell-type specificity reward). Example: ``reward_oracle_ft.ckpt?task=k562``.

Trust: gReLU's ``LightningModel.load_from_checkpoint`` runs the full unpickler (the DRAKES files hold Python objects
that torch's safe loader refuses), which can run arbitrary code. It is the one full unpickle of the project, and it is
refused (one line, :class:`~simpo_bio.dna.models.checkpoints.UnsafeCheckpointError`) unless the user opts in: environment
variable ``SIMPO_BIO_TRUST_PICKLE=1``, or the file's sha256 among the comma-separated digests of
``SIMPO_BIO_TRUSTED_SHA256`` (:func:`simpo_bio.dna.models.checkpoints.require_trusted_pickle`).
gReLU's ``EnformerPretrainedModel`` downloads the published Enformer weights in its constructor; its checkpoints
are rebuilt offline as ``EnformerModel`` with the same parameters (identical tensors; the checkpoint's weights
replace them anyway).

Before anything is unpickled in full, :func:`peek_checkpoint` reads the structure of a checkpoint with a
restricted unpickler that imports nothing outside an allow-list (every other class becomes an inert
:class:`Opaque` record; state is set only on those records, tensors and ``OrderedDict``) and loads no tensor
data; :func:`read_checkpoint_restricted` does the same but loads the tensors. The DRAKES pretrained model's ``hyper_parameters`` hold an OmegaConf ``DictConfig``;
:func:`to_plain` turns those records (or real OmegaConf objects) into dicts, so it is read without ``omegaconf``.

Imports: torch, :mod:`simpo_bio.dna.models.checkpoints` (``grelu`` inside the functions that need it: the ``[drakes]``
extra).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from simpo_bio.dna.models.checkpoints import (
    CheckpointArchitectureError,
    require_trusted_pickle,
)
from simpo_bio.dna.models.formats import (  # the spec and sniffing helpers are re-exported here
    Opaque,
    _check_file,
    _grelu_hparams,
    is_grelu_checkpoint,
    peek_checkpoint,
    read_checkpoint_restricted,
    split_spec,
    to_plain,
)

__all__ = ["GreluNet", "load_grelu_net", "is_grelu_checkpoint", "split_spec", "peek_checkpoint",
           "read_checkpoint_restricted", "to_plain", "Opaque", "GRELU_EXTRA_HINT"]

GRELU_EXTRA_HINT = "pip install 'simpo-bio[drakes]' (grelu, omegaconf)"
TRANSFORMS = ("identity", "specificity")


class MissingExtraError(ImportError):
    """A file needs an optional extra that is not installed (the message names the ``pip install`` to run)."""


def _require_grelu(path: str | os.PathLike):
    try:
        from grelu.lightning import LightningModel
    except ImportError as err:
        raise MissingExtraError(f"{path} is a gReLU checkpoint; loading it needs the grelu package: "
                          f"{GRELU_EXTRA_HINT}") from err
    return LightningModel


class GreluNet(nn.Module):
    """A gReLU ``LightningModel`` as a token network (one-hot in, predictions out, fp32, no autocast).

    Args:
        model: the loaded ``grelu.lightning.LightningModel`` (its ``forward`` applies the task activation:
            identity for the MSE regressors, sigmoid for the binary ATAC classifier).
        task_index: output column of the reward.
        transform: ``"identity"`` or ``"specificity"`` (column minus the maximum of the other columns).
        task_names: names of the output columns (from the checkpoint's ``data_params["tasks"]["name"]``).

    Shapes: ``forward(tokens [B, L] long in 0..3) -> [B]``; :meth:`predictions` ``-> [B, T]`` (the model's
    ``[B, T, L_out]`` averaged over its ``L_out`` output bins; ``L_out = 1`` for the DRAKES models).

    Raises:
        ValueError: an unknown transform, a task index outside ``[0, T)``, a token outside ``0..3`` (e.g. the mask).
    """

    def __init__(self, model: nn.Module, task_index: int = 0, transform: str = "identity",
                 task_names: list[str] | None = None) -> None:
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(f"unknown oracle transform {transform!r}; choose one of {TRANSFORMS}")
        self.model = model.eval()
        self.task_index = int(task_index)
        self.transform = transform
        self.task_names = list(task_names) if task_names else None
        n_tasks = (getattr(model, "model_params", None) or {}).get("n_tasks")
        if n_tasks is not None and not 0 <= self.task_index < int(n_tasks):
            raise ValueError(f"task index {self.task_index} outside the model's {n_tasks} tasks")

    def predictions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Every task's prediction ``[B, T]`` (float32) of token ids ``[B, L]``."""
        tokens = tokens.long()
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) > 3):
            raise ValueError("gReLU oracles take bases A, C, G, T only (token ids 0..3; no mask token)")
        onehot = F.one_hot(tokens, 4).float().transpose(1, 2)  # [B, 4, L]
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            out = self.model(onehot).float()  # [B, T, L_out]
        return out.mean(-1) if out.dim() == 3 else out

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pred = self.predictions(tokens)
        value = pred[:, self.task_index]
        if self.transform == "specificity" and pred.shape[1] > 1:
            others = torch.cat([pred[:, : self.task_index], pred[:, self.task_index + 1 :]], dim=1)
            value = value - others.max(dim=1).values
        return value

    def train(self, mode: bool = True) -> GreluNet:
        """Always eval mode (dropout of the Enformer trunk stays off)."""
        return super().train(False)


def load_grelu_net(path: str | os.PathLike, *, task: str | int = 0, transform: str = "identity",
                   map_location: str | torch.device = "cpu") -> tuple[GreluNet, dict[str, Any]]:
    """Load a gReLU ``LightningModel`` checkpoint as a frozen :class:`GreluNet`.

    Args:
        path: the checkpoint (e.g. DRAKES ``reward_oracle_ft.ckpt``); unpickled in full, so refused unless the
            user trusts it (``SIMPO_BIO_TRUST_PICKLE=1`` or its sha256 in ``SIMPO_BIO_TRUSTED_SHA256``).
        task: output column: an index or a task name of the checkpoint (``hepg2``, ``k562``, ``sknsh``).
        transform: see :class:`GreluNet`.
        map_location: device of the weights.

    Returns:
        ``(net, info)``; ``info`` has ``model_type`` (as saved), ``remapped`` (Enformer rebuilt offline),
        ``task_names``, ``task_index``, ``n_tasks``.

    Raises:
        ImportError: grelu is not installed (names the extra).
        CheckpointNotFoundError / CheckpointCorruptError: missing or unreadable file.
        CheckpointArchitectureError: not a gReLU checkpoint, or weights that do not fit its model parameters.
        UnsafeCheckpointError: the user has not opted in to unpickling the file (names the opt-in).
        ValueError: an unknown task name or transform.
    """
    path = Path(path)
    _check_file(path)
    hp = _grelu_hparams(peek_checkpoint(path))
    if hp is None:
        raise CheckpointArchitectureError(f"wrong architecture: {path} is not a gReLU LightningModel checkpoint "
                                          "(no hyper_parameters.model_params.model_type)", path)
    require_trusted_pickle(path, "gReLU checkpoint")  # before anything is unpickled in full
    LightningModel = _require_grelu(path)
    model_params = dict(hp["model_params"])
    overrides: dict[str, Any] = {}
    remapped = model_params.get("model_type") == "EnformerPretrainedModel"
    if remapped:  # its constructor downloads the published weights; EnformerModel builds the same tensors
        overrides["model_params"] = {**model_params, "model_type": "EnformerModel"}
    try:  # the one full unpickle of simpo-bio: a file the user trusts (require_trusted_pickle above)
        model = LightningModel.load_from_checkpoint(str(path), map_location=map_location, weights_only=False,
                                                    **overrides)
    except RuntimeError as err:
        raise CheckpointArchitectureError(f"wrong architecture: {path}: {err}", path) from err
    names = list((getattr(model, "data_params", None) or {}).get("tasks", {}).get("name", []) or [])
    if isinstance(task, str) and not task.lstrip("-").isdigit():
        if task not in names:
            raise ValueError(f"{path}: unknown task {task!r}; the checkpoint's tasks are {names or 'unnamed'}")
        index = names.index(task)
    else:
        index = int(task)
    net = GreluNet(model, index, transform, names).requires_grad_(False)
    info = {"model_type": model_params.get("model_type"), "remapped": remapped, "task_names": names,
            "task_index": index, "n_tasks": model_params.get("n_tasks")}
    return net, info
