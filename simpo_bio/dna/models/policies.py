"""Fine-tuned and pretrained generators from their checkpoints: the one checkpoint-to-model path.

:func:`load_policy` reads a SiMPO fine-tuning checkpoint (:class:`simpo_bio.dna.finetune.module.SiMPOFineTuning`), a
pretrained model checkpoint (:mod:`simpo_bio.dna.models.pretrain`), DRAKES' ``pretrained.ckpt``
(:mod:`simpo_bio.dna.drakes`) or a ``simpo-bio export-hf`` directory (:mod:`simpo_bio.dna.models.hf`). It needs neither
Lightning's module class nor the fine-tuning oracle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from simpo_bio.dna.models.checkpoints import (
    KIND_KEY,
    CheckpointCorruptError,
    CheckpointFormatError,
    load_checkpoint,
    load_state_dict_checked,
    strip_prefix,
)
from simpo_bio.dna.models.pretrain import build_masked_diffusion, load_pretrained, pretrained_from_checkpoint

#: The model kind recorded in a SiMPO fine-tuning checkpoint.
MODEL_KIND = "SiMPOFineTuning"
#: The model kind recorded in a checkpoint of the natural policy (reward backpropagation).
GRADIENT_MODEL_KIND = "RewardGradientFineTuning"
#: Every kind :func:`load_policy` reads as a fine-tuned policy (same layout: ``policy.*`` weights, ``simpo_policy``).
FINETUNED_KINDS = (MODEL_KIND, GRADIENT_MODEL_KIND)
__all__ = ["FINETUNED_KINDS", "GRADIENT_MODEL_KIND", "MODEL_KIND", "load_policy"]


def load_policy(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a generator from a checkpoint: a SiMPO fine-tuning checkpoint or a pretrained model checkpoint.

    A directory written by ``simpo-bio export-hf`` (Hugging Face format) loads too
    (:func:`simpo_bio.dna.models.hf.load_hf_policy`, needs the ``[hf]`` extra). A fine-tuning checkpoint of the flat
    layout of 0.1 (before the typed groups) is refused with one line saying to refit.

    Returns:
        ``(MaskedDiffusion in eval mode, info)``; ``info`` holds ``kind`` (``"finetuned"`` / ``"pretrained"``),
        ``scheme`` (``"none"`` for a pretrained model), ``seq_len``, ``num_steps`` (``None`` when not recorded)
        and, for a fine-tuned model, the ``oracle`` it was tuned on, the ``pretrained`` path and the ``history``
        (per-iteration training log, a list of dicts).

    Raises:
        CheckpointNotFoundError: no such file.
        CheckpointCorruptError: truncated / unreadable file, or a fine-tuning checkpoint without its weights or
            without the record of its policy (names the file).
        CheckpointArchitectureError: a checkpoint of another model (e.g. an oracle) or mismatching weights.
        CheckpointFormatError: a fine-tuning checkpoint of an earlier layout (refit it).
        UnsafeCheckpointError: a file that holds Python objects (never unpickled in full).
    """
    if Path(path).is_dir():
        from simpo_bio.dna.models.hf import load_hf_policy

        return load_hf_policy(path, map_location)
    from simpo_bio.dna.models.drakes import is_drakes_checkpoint

    if is_drakes_checkpoint(str(path).split("?")[0]):  # DRAKES' pretrained.ckpt: read without unpickling in full
        return load_pretrained(str(path), map_location).eval(), {
            "kind": "pretrained", "scheme": "none", "seq_len": 200, "num_steps": None, "oracle": None,
            "pretrained": str(path)}
    ckpt = load_checkpoint(path, map_location="cpu")  # torch's safe loader: a file with Python objects is refused
    if isinstance(ckpt, dict) and ckpt.get(KIND_KEY) in FINETUNED_KINDS:
        hp = dict(ckpt.get("hyper_parameters") or {})
        if hp and "sampling" not in hp:
            raise CheckpointFormatError(
                f"{path}: a fine-tuning checkpoint of simpo-bio 0.1 (flat hyper-parameters; since 0.2 they are the "
                "groups sampling / reward / weighting / update): refit it with this version", path)
        sampling, weighting = dict(hp.get("sampling") or {}), dict(hp.get("weighting") or {})
        spec = ckpt.get("simpo_policy")
        if spec is not None:
            policy = build_masked_diffusion(spec["backbone"], mask_index=spec["mask_index"], eps=spec["eps"])
        else:
            if not hp.get("pretrained"):
                raise CheckpointCorruptError(f"{path}: a fine-tuning checkpoint that records neither its policy's "
                                             "architecture nor its 'pretrained' model; refit it with this version", path)
            policy = load_pretrained(str(hp["pretrained"]))
        if "state_dict" not in ckpt:
            raise CheckpointCorruptError(f"{path}: a fine-tuning checkpoint without weights ('state_dict')", path)
        load_state_dict_checked(policy, strip_prefix(ckpt["state_dict"], "policy."), path)
        info = {"kind": "finetuned", "scheme": weighting.get("scheme", "reward_gradient" if "gradient" in hp else "?"), "seq_len": sampling.get("seq_len", 200),
                "num_steps": sampling.get("num_steps"), "oracle": hp.get("oracle"), "pretrained": hp.get("pretrained"),
                "history": list(ckpt.get("simpo_history") or [])}
    else:
        policy = pretrained_from_checkpoint(ckpt, path)
        info = {"kind": "pretrained", "scheme": "none", "seq_len": 200, "num_steps": None, "oracle": None,
                "pretrained": str(path)}
    return policy.to(map_location).eval(), info
