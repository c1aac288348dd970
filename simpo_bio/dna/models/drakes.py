"""The DRAKES pretrained masked diffusion model: recognising and loading its checkpoint, its sampler.

Moved out of the former ``drakes`` module by concern (data / models / evaluation).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from simpo_bio.diffusion.masked import MaskedDiffusion
from simpo_bio.dna.data.alphabet import MASK_INDEX
from simpo_bio.dna.models.backbones import DilatedCNN, drakes_config, load_drakes_state_dict
from simpo_bio.dna.models.checkpoints import CheckpointArchitectureError
from simpo_bio.dna.models.formats import peek_checkpoint, read_checkpoint_restricted, to_plain

__all__ = ['is_drakes_layout', 'is_drakes_checkpoint', 'drakes_model_from_checkpoint', 'load_drakes_pretrained', 'drakes_sample', 'DrakesSampling', 'DRAKES_SAMPLER']


DRAKES_SAMPLER = {"num_steps": 128, "grid_end": 1e-5, "noise_removal": True}


# ------------------------------------------------------------------------------------ pretrained model
def is_drakes_layout(ckpt: Any) -> bool:
    """A DRAKES ``Diffusion`` checkpoint dict: ``hyper_parameters["config"]`` and ``backbone.*`` weights."""
    if not isinstance(ckpt, Mapping):
        return False
    hp, state = ckpt.get("hyper_parameters"), ckpt.get("state_dict")
    return (isinstance(hp, Mapping) and "config" in hp and isinstance(state, Mapping)
            and any(str(k).startswith("backbone.") for k in state))


def is_drakes_checkpoint(path: str | os.PathLike) -> bool:
    """True for a DRAKES pretrained-model file (structure read without unpickling any object)."""
    return is_drakes_layout(peek_checkpoint(path))


def drakes_model_from_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike,
                                 weights: str = "raw") -> tuple[MaskedDiffusion, dict[str, Any]]:
    """The :class:`MaskedDiffusion` of a loaded DRAKES checkpoint dict (``path`` names it in errors).

    Args:
        weights: ``"raw"`` (DRAKES' sampling / fine-tuning weights) or ``"ema"`` (``ema.shadow_params``).

    Returns:
        ``(model in eval mode, info)``; info: ``layout="drakes"``, ``weights``, ``seq_len``, ``num_steps``.

    Raises:
        CheckpointArchitectureError: a config other than the CNN / absorbing-state / subs / log-linear model, no EMA
            when asked for, or tensors that do not fit (names keys and shapes).
        ValueError: ``weights`` not ``raw`` / ``ema``.
    """
    if weights not in ("raw", "ema"):
        raise ValueError(f"weights must be 'raw' or 'ema', got {weights!r}")
    cfg = to_plain(ckpt["hyper_parameters"]["config"])
    model_cfg = cfg.get("model") or {}
    want = {"backbone": "cnn", "diffusion": "absorbing_state", "parameterization": "subs", "noise.type": "loglinear",
            "model.clean_data": False, "model.cls_free_guidance": False}
    got = {k: cfg.get(k) for k in ("backbone", "diffusion", "parameterization")}
    got["noise.type"] = (cfg.get("noise") or {}).get("type", "loglinear")
    for key in ("clean_data", "cls_free_guidance"):
        got[f"model.{key}"] = bool(model_cfg.get(key, False))
    bad = {k: v for k, v in got.items() if v != want[k]}
    if bad:
        raise CheckpointArchitectureError(f"wrong architecture: DRAKES checkpoint {path} has {bad}; only the CNN "
                                          "absorbing-state subs model with log-linear noise is supported", path)
    if weights == "ema" and not isinstance(ckpt.get("ema"), Mapping):
        raise CheckpointArchitectureError(f"checkpoint {path} has no 'ema' entry; load it with weights=raw", path)
    backbone = {**drakes_config(), "hidden_dim": int(model_cfg.get("hidden_dim", 128)),
                "num_stacks": int(model_cfg.get("num_cnn_stacks", 4)), "dropout": float(model_cfg.get("dropout", 0.0)),
                "time_conditioning": bool(cfg.get("time_conditioning", False))}
    model = MaskedDiffusion(DilatedCNN(**backbone), mask_index=MASK_INDEX, eps=1e-3)  # LogLinearNoise() eps
    try:
        load_drakes_state_dict(model.backbone, ckpt, use_ema=weights == "ema")
    except ValueError as err:
        raise CheckpointArchitectureError(f"wrong architecture: {path}: {err}", path) from err
    info = {"layout": "drakes", "weights": weights, "seq_len": int(model_cfg.get("length", 200)),
            "num_steps": int((cfg.get("sampling") or {}).get("steps", 128))}
    return model.eval(), info


def load_drakes_pretrained(path: str | os.PathLike, weights: str = "raw",
                           map_location: str | torch.device = "cpu") -> MaskedDiffusion:
    """Load DRAKES ``pretrained.ckpt`` as it is (restricted unpickler; no ``omegaconf`` needed).

    Raises:
        CheckpointNotFoundError / CheckpointCorruptError / CheckpointArchitectureError: see
        :func:`drakes_model_from_checkpoint`.
    """
    model, _ = drakes_model_from_checkpoint(read_checkpoint_restricted(path), path, weights)
    return model.to(map_location).eval()


# --------------------------------------------------------------------------------------------- sampling
def drakes_sample(policy: MaskedDiffusion, num_samples: int = 640, seq_len: int = 200, *, batch_size: int = 64,
                  num_steps: int = 128, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> Tensor:
    """``num_samples`` sequences ``[N, seq_len]`` in batches of ``batch_size`` with :data:`DRAKES_SAMPLER`."""
    out = [policy.sample(min(batch_size, num_samples - s), seq_len, num_steps=num_steps, generator=generator,
                         device=device, grid_end=DRAKES_SAMPLER["grid_end"], noise_removal=True)
           for s in range(0, num_samples, batch_size)]
    return torch.cat(out).cpu()


class DrakesSampling(pl.Callback):
    """Makes :class:`~simpo_bio.dna.finetune.module.SiMPOFineTuning` sample with :data:`DRAKES_SAMPLER` (grid end, noise
    removal; the step count stays the module's ``num_steps``)."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module._extra_sample_kwargs.update(grid_end=DRAKES_SAMPLER["grid_end"], noise_removal=True)
