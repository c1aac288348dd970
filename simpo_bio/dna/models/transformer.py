"""Transformer denoiser of the masked diffusion model of DNA, and building a denoiser from its recorded config.

:class:`TransformerDenoiser` (defined in the self-contained ``simpo_bio/dna/models/hf_modeling/modeling_simpo_dna.py``, so
that an exported directory carries exactly the class that was trained) is a bidirectional BERT encoder built from
a ``transformers.BertConfig`` with the DNA vocabulary (``A, C, G, T, [MASK]``), no pretrained weights and no time
input, mapping ``(tokens [B, L], sigma [B]) -> logits [B, L, 5]``. Without time conditioning it is a valid ``subs``
denoiser (MDLM, Sahoo et al. 2024), like the shipped :class:`~simpo_bio.dna.models.backbones.DilatedCNN`.

Pretrain it with ``simpo-bio fit --config configs/dna/pretrain_transformer.yaml`` (``backbone: transformer`` of
:class:`simpo_bio.dna.models.pretrain.MaskedDiffusionLM`). Needs the ``[hf]`` extra (``transformers``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from simpo_bio.dna.models.hf_modeling.modeling_simpo_dna import TransformerDenoiser

__all__ = ["TransformerDenoiser", "build_backbone", "backbone_config", "ARCHITECTURES"]

#: Values of the ``architecture`` key of a backbone config.
ARCHITECTURES = ("dilated_cnn", "transformer")


def build_backbone(config: Mapping[str, Any]) -> nn.Module:
    """The denoiser a recorded backbone config describes.

    Args:
        config: ``backbone.config()`` of a :class:`~simpo_bio.dna.models.backbones.DilatedCNN` (no ``architecture`` key,
            or ``"dilated_cnn"``) or of a :class:`TransformerDenoiser` (``architecture: "transformer"``).

    Raises:
        ValueError: an unknown ``architecture``.
    """
    cfg = dict(config)
    arch = cfg.pop("architecture", "dilated_cnn")
    if arch == "transformer":
        return TransformerDenoiser(**cfg)
    if arch == "dilated_cnn":
        from simpo_bio.dna.models.backbones import DilatedCNN

        return DilatedCNN(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if v is not None})
    raise ValueError(f"unknown backbone architecture {arch!r}; expected one of {ARCHITECTURES}")


def backbone_config(backbone: nn.Module) -> dict[str, Any]:
    """``backbone.config()`` with its ``architecture`` key (what :func:`build_backbone` rebuilds it from)."""
    cfg = dict(backbone.config())
    cfg.setdefault("architecture", "dilated_cnn")
    if "dilations" in cfg:
        cfg["dilations"] = list(cfg["dilations"])
    return cfg
