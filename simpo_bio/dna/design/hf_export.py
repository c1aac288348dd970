"""``simpo-bio export-hf``: a fine-tuned or pretrained checkpoint as a Hugging Face directory.

``simpo-bio export-hf --ckpt RUN_OR_PRETRAINED.ckpt --out DIR`` (:func:`export_hf`) reads the checkpoint through
:func:`simpo_bio.dna.finetune.module.load_policy` (SiMPO fine-tuning checkpoints and pretrained models alike) and writes
``config.json``, ``model.safetensors``, the self-contained modelling code for ``trust_remote_code`` and a model
card ``README.md`` (:func:`model_card`); the format is described in :mod:`simpo_bio.dna.models.hf`, which also loads such
a directory back. The model: MDLM masked diffusion (Sahoo et al. 2024).
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from simpo_bio.dna.models.checkpoints import CheckpointError, load_checkpoint
from simpo_bio.dna.models.hf import AUTO_MAP, CODE_DIR, CODE_FILES, SimpoDNAConfig, SimpoDNAForMaskedLM
from simpo_bio.dna.models.policies import load_policy
from simpo_bio.dna.models.transformer import backbone_config
from simpo_bio.fileio import DiskFullError, disk_full_error

__all__ = ["export_hf", "model_card", "export_hf_main", "DHS_SHA256"]

#: sha256 of the embedded DHS table (``data/README.md``); the card compares what a checkpoint records with it.
DHS_SHA256 = "ba1063a9a3d0054020ae2e9f8add974550ae91fe2d21989e790e5d6cb2cb4d58"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------- export
def _find_metrics(ckpt: Path) -> Path | None:
    """``metrics.md`` of the checkpoint's run: next to it, or one or two directories up (``run/checkpoints/``)."""
    for folder in (ckpt.parent, ckpt.parent.parent, ckpt.parent.parent.parent):
        if (folder / "metrics.md").is_file():
            return folder / "metrics.md"
    return None


def _metadata(ckpt_path: Path, raw: dict[str, Any], info: dict[str, Any], policy) -> dict[str, Any]:
    """Provenance for ``config.json`` and the card: what the checkpoint (and its pretrained model) record."""
    hp = dict(raw.get("hyper_parameters") or {})
    recorded = dict(raw.get("simpo_bio") or {})
    pretrained = info.get("pretrained")
    if not recorded.get("data_sha256") and info.get("kind") == "finetuned" and pretrained:
        try:  # a fine-tuning checkpoint records its pretrained model's path; the data checksum lives there
            recorded = {**dict(load_checkpoint(pretrained).get("simpo_bio") or {}), **recorded}
        except CheckpointError:
            pass
    oracle = info.get("oracle")
    meta = {
        "kind": info.get("kind"),
        "scheme": info.get("scheme"),
        "scheme_params": dict(hp.get("weighting") or {}).get("scheme_params"),
        "oracle": None if oracle is None else str(oracle),
        "oracle_sha256": _sha256(Path(oracle)) if oracle and Path(oracle).is_file() else None,
        "pretrained": None if pretrained is None else str(pretrained),
        "source_checkpoint": str(ckpt_path),
        "source_sha256": _sha256(ckpt_path),
        "data_sha256": recorded.get("data_sha256"),
        "global_step": raw.get("global_step"),
        "train_wall_clock_s": recorded.get("train_wall_clock_s"),
        "val_bpb": recorded.get("val_bpb"),
        "num_parameters": sum(p.numel() for p in policy.parameters()),
    }
    return meta


def _read_raw(ckpt_path: Path) -> dict[str, Any]:
    """The checkpoint dict for the card: the safe loader, or for DRAKES' ``pretrained.ckpt`` (which holds an
    OmegaConf config) its restricted reader; neither unpickles Python objects."""
    from simpo_bio.dna.models.drakes import is_drakes_checkpoint
    from simpo_bio.dna.oracles.grelu import read_checkpoint_restricted

    if is_drakes_checkpoint(ckpt_path):
        return dict(read_checkpoint_restricted(ckpt_path))
    return load_checkpoint(ckpt_path)


def export_hf(ckpt: str | os.PathLike, out: str | os.PathLike, *, metrics: str | os.PathLike | None = None) -> Path:
    """Export a fine-tuned or pretrained checkpoint to a Hugging Face directory (module docstring).

    Args:
        ckpt: a SiMPO fine-tuning checkpoint (``runs/.../last.ckpt``) or a pretrained model checkpoint.
        out: output directory: written as a sibling temp folder that then replaces it whole (an earlier export
            there is replaced; a folder holding other files is refused).
        metrics: a ``metrics.md`` table for the card (default: the run's, found next to the checkpoint).

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        CheckpointError: the checkpoint is missing, unreadable or not a generator.
        ValueError: ``out`` holds files that are not an export's.
        DiskFullError: the disk filled (the previous export is unchanged, no temp folder remains).
    """
    ckpt_path = Path(ckpt)
    policy, info = load_policy(ckpt_path)
    raw = _read_raw(ckpt_path)
    meta = _metadata(ckpt_path, raw, info, policy)
    num_steps = info.get("num_steps", info.get("num_sampling_steps"))
    config = SimpoDNAConfig(backbone_config=backbone_config(policy.backbone), mask_index=policy.mask_index,
                            eps=policy.eps, seq_len=int(info.get("seq_len") or 200), num_steps=num_steps,
                            simpo_bio=meta)
    config.auto_map = dict(AUTO_MAP)
    model = SimpoDNAForMaskedLM(config)
    model.load_state_dict({k: v.float() for k, v in policy.state_dict().items()}, strict=True)
    out_dir = Path(out)
    exported = {"config.json", "model.safetensors", "README.md", *CODE_FILES}
    if out_dir.exists() and (not out_dir.is_dir() or set(p.name for p in out_dir.iterdir()) - exported):
        raise ValueError(f"{out_dir} exists and holds other files than an export (export into a new or an export-hf "
                         "directory)")
    metrics_path = Path(metrics) if metrics else _find_metrics(ckpt_path)
    table = metrics_path.read_text().strip() if metrics_path is not None and metrics_path.is_file() else None
    # everything goes into a sibling temp folder, which then replaces out_dir: a failure (or a full disk) leaves the
    # old export whole, never new config.json beside old weights
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    old = tmp.with_name(tmp.name[:-5] + ".old")
    try:
        tmp.mkdir()
        model.save_pretrained(tmp, safe_serialization=True)
        for name in CODE_FILES:
            shutil.copyfile(CODE_DIR / name, tmp / name)
        (tmp / "README.md").write_text(model_card(config, table, out_dir.name))
        for path in tmp.iterdir():  # files meant to be shared (safetensors writes through a private temp file)
            if path.name in exported:
                os.chmod(path, 0o644)
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out_dir.exists():
            os.replace(old, out_dir)
        if err.errno == errno.ENOSPC:
            raise disk_full_error(out_dir) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return out_dir


def _describe_backbone(cfg: dict[str, Any]) -> str:
    if cfg.get("architecture") == "transformer":
        return (f"bidirectional transformer encoder (BERT, `transformers.BertModel`, no pretrained weights, no time "
                f"input): hidden {cfg['hidden_size']}, {cfg['num_layers']} layers, {cfg['num_heads']} heads, "
                f"feed-forward {cfg['intermediate_size']}, at most {cfg['max_len']} positions")
    dil = ",".join(str(d) for d in cfg.get("dilations", []))
    return (f"dilated residual CNN: hidden {cfg.get('hidden_dim')}, {cfg.get('num_stacks')} stacks of dilations "
            f"{dil} ({cfg.get('block_order')} order), kernel {cfg.get('kernel_size')}, time conditioning "
            f"{'on' if cfg.get('time_conditioning') else 'off'}")


def model_card(config: SimpoDNAConfig, metrics_table: str | None = None, name: str = "DIR") -> str:
    """The ``README.md`` of an exported directory (what :func:`export_hf` writes)."""
    meta = config.simpo_bio
    finetuned = meta.get("kind") == "finetuned"
    sha = meta.get("data_sha256")
    if sha:
        same = " (the embedded DHS table of simpo-bio)" if sha == DHS_SHA256 else ""
        data = f"training data sha256 recorded in the checkpoint: `{sha}`{same}"
    else:
        data = f"the checkpoint records no data checksum (the embedded DHS table of simpo-bio is `{DHS_SHA256}`)"
    lines = [
        "---",
        "library_name: transformers",
        "tags: [dna, masked-diffusion, mdlm, enhancer-design, simpo]",
        "---",
        "",
        f"# simpo-bio DNA enhancer generator ({'SiMPO fine-tuned' if finetuned else 'pretrained'})",
        "",
        f"A masked discrete diffusion model (MDLM, Sahoo et al. 2024: absorbing mask state, log-linear schedule "
        f"`m(t) = (1 - {config.eps:g}) t`, `subs` parameterisation) of {config.seq_len}-bp DNA sequences over "
        f"`A=0, C=1, G=2, T=3, [MASK]={config.mask_index}`. Denoiser: {_describe_backbone(config.backbone_config)}; "
        f"{meta.get('num_parameters', 0):,} parameters. Exported by `simpo-bio export-hf` from "
        f"`{meta.get('source_checkpoint')}` (sha256 `{meta.get('source_sha256')}`).",
        "",
        "## Data",
        "",
        f"Pretrained on the ENCODE DHS enhancer table embedded in simpo-bio (its `data/README.md`); {data}.",
        "",
        "## Fine-tuning",
        "",
    ]
    if finetuned:
        params = meta.get("scheme_params") or {}
        lines += [
            f"SiMPO (signed measure policy optimisation) with the `{meta.get('scheme')}` weighting scheme"
            + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")
            + f", starting from `{meta.get('pretrained')}`, toward the frozen activity oracle `{meta.get('oracle')}`"
            + (f" (sha256 `{meta['oracle_sha256']}`)" if meta.get("oracle_sha256") else "") + ".",
        ]
    else:
        lines += ["None: the pretrained model (maximum-likelihood ELBO training, no oracle)."
                  + (f" Validation ELBO at the end of training (one draw): {meta['val_bpb']:.4f} bits/base."
                     if meta.get("val_bpb") else "")]
    lines += ["", "## Metrics", ""]
    lines += [metrics_table] if metrics_table else ["No `metrics.md` was found in the checkpoint's run directory."]
    steps = config.num_steps or 128
    timing = ("this model's denoiser is time-conditioned: pass `sigma` or `t`."
              if config.backbone_config.get("time_conditioning") else
              "this model's denoiser has no time input and ignores it (valid under `subs`).")
    lines += [
        "",
        "## Sampling",
        "",
        "With simpo-bio (`pip install 'simpo-bio[hf]'`):",
        "",
        "```bash",
        f"simpo-bio sample --ckpt {name} --num-samples 100 --num-steps {steps} --no-score --out designs.fasta",
        f"simpo-bio evaluate --ckpt {name} --num-samples 640",
        "```",
        "",
        "With `transformers` only (the modelling code ships in this directory):",
        "",
        "```python",
        "import torch",
        "from transformers import AutoModelForMaskedLM",
        "",
        f'model = AutoModelForMaskedLM.from_pretrained("{name}", trust_remote_code=True).eval()',
        f"tokens = model.sample_sequences(16, num_steps={steps}, generator=torch.Generator().manual_seed(0))",
        "print(model.decode(tokens)[0])",
        "",
        "# denoiser logits [B, L, 5] for tokens [B, L] and a noise level sigma [B] (or a time t [B] in [0, 1])",
        "logits = model(tokens, t=torch.full((16,), 0.5)).logits",
        "log_probs = model.subs_log_probs(tokens, logits)  # subs: [MASK] never predicted, unmasked carried over",
        "```",
        "",
        f"`sigma = -log(1 - (1 - eps) t)`; {timing} The logits equal simpo-bio's "
        "`MaskedDiffusion.backbone(tokens, sigma)`.",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- CLI
def export_hf_main(argv: list[str] | None = None) -> None:
    """``simpo-bio export-hf --ckpt CKPT --out DIR``: a checkpoint to a Hugging Face directory."""
    p = argparse.ArgumentParser(prog="simpo-bio export-hf", description="Export a fine-tuned or pretrained "
                                "checkpoint in the Hugging Face format (config.json, model.safetensors, modelling "
                                "code for trust_remote_code, model card).")
    p.add_argument("--ckpt", required=True, help="fine-tuning checkpoint (runs/.../last.ckpt) or pretrained model")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--metrics", default=None, help="metrics.md for the card (default: the run's, if found)")
    a = p.parse_args(argv)
    try:
        out = export_hf(a.ckpt, a.out, metrics=a.metrics)
    except (CheckpointError, FileNotFoundError, ValueError, DiskFullError) as err:
        print(f"simpo-bio export-hf: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"exported {a.ckpt} to {out}/ (config.json, model.safetensors, {', '.join(CODE_FILES)}, README.md)")
