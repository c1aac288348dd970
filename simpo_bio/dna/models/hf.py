"""Hugging Face format of the DNA generators: the Auto-class registration and loading an exported directory.

``simpo-bio export-hf --ckpt RUN_OR_PRETRAINED.ckpt --out DIR`` (:func:`simpo_bio.dna.design.hf_export.export_hf`) writes

* ``config.json`` (:class:`~simpo_bio.dna.models.hf_modeling.configuration_simpo_dna.SimpoDNAConfig`: the backbone
  config, ``mask_index``, ``eps``, ``seq_len``, ``num_steps``, provenance under ``simpo_bio``; ``auto_map`` points
  at the two code files below),
* ``model.safetensors`` (float32; keys ``backbone.*`` exactly as in
  :class:`~simpo_bio.diffusion.masked.MaskedDiffusion`),
* ``configuration_simpo_dna.py`` and ``modeling_simpo_dna.py``, copied from :mod:`simpo_bio.dna.models.hf_modeling`
  (they import only ``torch`` and ``transformers``), for ``trust_remote_code`` where simpo-bio is not installed,
* ``README.md``, a model card (:func:`simpo_bio.dna.design.hf_export.model_card`): the model, its data and checksum, the fine-tuning scheme and
  oracle, the run's ``metrics.md`` when one lies in the checkpoint's run directory, and how to sample.

The other way, :func:`load_hf_policy` rebuilds the :class:`~simpo_bio.diffusion.masked.MaskedDiffusion` from a
directory (what :func:`simpo_bio.dna.finetune.module.load_policy` does for a directory, so ``simpo-bio sample --ckpt DIR``
and ``evaluate --ckpt DIR`` accept one).

Importing this module registers the classes with ``AutoConfig`` / ``AutoModelForMaskedLM`` (:func:`register`), so
``AutoModelForMaskedLM.from_pretrained(DIR)`` works locally without remote code. ``transformers`` comes with the
``[hf]`` extra. The model: MDLM masked diffusion (Sahoo et al. 2024); inputs ``input_ids [B, L]`` and ``sigma [B]``
(or ``t [B]``), output ``logits [B, L, 5]`` (``simpo_bio/dna/models/hf_modeling/modeling_simpo_dna.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from simpo_bio.dna.models.checkpoints import (
    CheckpointArchitectureError,
    CheckpointCorruptError,
    CheckpointNotFoundError,
    load_state_dict_checked,
)
from simpo_bio.dna.models.hf_modeling.configuration_simpo_dna import SimpoDNAConfig
from simpo_bio.dna.models.hf_modeling.modeling_simpo_dna import SimpoDNAForMaskedLM

__all__ = ["register", "load_hf_policy", "SimpoDNAConfig", "SimpoDNAForMaskedLM", "CODE_FILES",
           "AUTO_MAP", "MODEL_TYPE"]

MODEL_TYPE = SimpoDNAConfig.model_type
CODE_DIR = Path(__file__).with_name("hf_modeling")
#: The self-contained modelling files an export carries (``trust_remote_code``).
CODE_FILES = ("configuration_simpo_dna.py", "modeling_simpo_dna.py")
AUTO_MAP = {
    "AutoConfig": "configuration_simpo_dna.SimpoDNAConfig",
    "AutoModelForMaskedLM": "modeling_simpo_dna.SimpoDNAForMaskedLM",
}


def register() -> None:
    """Register :class:`SimpoDNAConfig` / :class:`SimpoDNAForMaskedLM` with the Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    AutoConfig.register(MODEL_TYPE, SimpoDNAConfig, exist_ok=True)
    AutoModelForMaskedLM.register(SimpoDNAConfig, SimpoDNAForMaskedLM, exist_ok=True)


register()


# ------------------------------------------------------------------------------------------------- loading
def load_hf_policy(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild the :class:`~simpo_bio.diffusion.masked.MaskedDiffusion` of an exported directory.

    Returns:
        ``(MaskedDiffusion in eval mode, info)`` with the ``info`` keys of
        :func:`simpo_bio.dna.finetune.module.load_policy` (``kind``, ``scheme``, ``seq_len``, ``num_steps``, ``oracle``,
        ``pretrained``) read from ``config.json``.

    Raises:
        CheckpointNotFoundError: no ``config.json`` / ``model.safetensors`` in ``path``.
        CheckpointArchitectureError: a directory of another model, or weights that do not fit the config.
        CheckpointCorruptError: a ``config.json`` that is not JSON, or truncated / unreadable weights.
    """
    from safetensors.torch import load_file

    from simpo_bio.dna.models.pretrain import build_masked_diffusion

    root = Path(path)
    for name in ("config.json", "model.safetensors"):
        if not (root / name).is_file():
            raise CheckpointNotFoundError(f"no {name} in {root} (write one with `simpo-bio export-hf`)", root)
    try:
        cfg = json.loads((root / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointCorruptError(f"{root}/config.json is not valid JSON ({err}); export the directory again "
                                     "with `simpo-bio export-hf`", root) from None
    if not isinstance(cfg, dict) or cfg.get("model_type") != MODEL_TYPE:
        cfg = cfg if isinstance(cfg, dict) else {}
        raise CheckpointArchitectureError(
            f"wrong architecture: {root}/config.json has model_type {cfg.get('model_type')!r}, not {MODEL_TYPE!r}",
            root)
    try:
        policy = build_masked_diffusion(cfg["backbone_config"], mask_index=int(cfg.get("mask_index", 4)),
                                        eps=float(cfg.get("eps", 1e-3)))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointArchitectureError(f"wrong architecture: {root}/config.json: {err}", root) from err
    try:
        weights = load_file(str(root / "model.safetensors"))
    except Exception as err:  # safetensors' SafetensorError (truncated / not a safetensors file), OSError
        raise CheckpointCorruptError(f"{root}/model.safetensors is truncated or unreadable "
                                     f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); export "
                                     "the directory again with `simpo-bio export-hf`", root) from None
    load_state_dict_checked(policy, weights, root)
    meta = dict(cfg.get("simpo_bio") or {})
    info = {"kind": meta.get("kind", "pretrained"), "scheme": meta.get("scheme", "none"),
            "seq_len": int(cfg.get("seq_len", 200)), "num_steps": cfg.get("num_steps"),
            "oracle": meta.get("oracle"), "pretrained": meta.get("pretrained")}
    return policy.to(map_location).eval(), info
