"""Pretraining of the masked diffusion model of DNA (MDLM) as a LightningModule, and loading it back.

``simpo-bio fit --config configs/dna/pretrain.yaml`` trains :class:`MaskedDiffusionLM` on the embedded DHS data;
``simpo-bio test --config configs/dna/pretrain.yaml --ckpt_path checkpoints/dna/pretrained_dhs.ckpt`` prints the
quality gate on the test split: the model's ELBO in bits/base next to order-0..5 Markov chains fitted on the train
split (:mod:`simpo_bio.dna.models.baselines`), and the Pearson correlation of 3-mer frequencies of model samples with the
split.

Training minimises the mean per-sequence negative ELBO (:meth:`MaskedDiffusion.elbo_loss`, ``docs/method.md``
section 8) with AdamW, linear warm-up and cosine decay; an exponential moving average (EMA) of the weights is kept
and used for validation, testing, sampling and export. :class:`ExportPretrained` writes the small EMA-only
checkpoint the project ships; :func:`load_pretrained` reads either that file or a full training checkpoint and
returns a :class:`MaskedDiffusion` with the EMA weights; it also reads DRAKES' ``pretrained.ckpt`` as it is (raw
weights by default, :mod:`simpo_bio.dna.drakes`). :func:`build_masked_diffusion` is the one place a
denoiser and its diffusion are built from a backbone configuration (here and in
:func:`simpo_bio.dna.finetune.module.load_policy`).

Imports: :mod:`simpo_bio.diffusion.masked`, Lightning, :mod:`simpo_bio.dna.data.alphabet`,
:mod:`simpo_bio.dna.models.backbones`, :mod:`simpo_bio.dna.models.baselines`, :mod:`simpo_bio.dna.models.checkpoints`,
:mod:`simpo_bio.dna.drakes` (DRAKES checkpoints), :mod:`simpo_bio.dna.oracles.grelu` (``path?options`` specs),
:mod:`simpo_bio.dna.evaluation.metrics` (the 3-mer correlation of the gate).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Timer
from torch import Tensor

from simpo_bio.diffusion.masked import MaskedDiffusion
from simpo_bio.dna.data.alphabet import MASK_INDEX, VOCAB_SIZE
from simpo_bio.dna.data.composition import kmer_correlation
from simpo_bio.dna.models.backbones import DilatedCNN
from simpo_bio.dna.models.baselines import markov_bits_per_base
from simpo_bio.dna.models.checkpoints import (
    CheckpointArchitectureError,
    check_model_kind,
    guard_resume,
    load_checkpoint,
    load_state_dict_checked,
    record_model_kind,
    save_checkpoint_atomic,
    strip_prefix,
)
from simpo_bio.dna.models.drakes import (
    drakes_model_from_checkpoint,
    is_drakes_checkpoint,
    is_drakes_layout,
    load_drakes_pretrained,
)
from simpo_bio.dna.models.formats import split_spec

__all__ = ["MaskedDiffusionLM", "ExportPretrained", "load_pretrained", "build_masked_diffusion", "BACKBONE_ARGS"]

#: Hyper-parameters of :class:`MaskedDiffusionLM` that build the backbone (and must match to load weights).
BACKBONE_ARGS = ("hidden_dim", "num_stacks", "dilations", "kernel_size", "block_order", "time_conditioning")
MODEL_KIND = "MaskedDiffusionLM"
LN2 = math.log(2.0)


def build_masked_diffusion(backbone: Mapping[str, Any], *, mask_index: int = MASK_INDEX,
                           eps: float = 1e-3) -> MaskedDiffusion:
    """A :class:`MaskedDiffusion` around a fresh denoiser built from its constructor arguments.

    ``backbone`` is what :meth:`DilatedCNN.config` returns, or a subset of it (lists become tuples, ``None``
    values are left to the defaults), or a config with ``architecture: "transformer"``
    (:func:`simpo_bio.dna.models.transformer.build_backbone`, needs the ``[hf]`` extra); the weights are random until a
    state dict is loaded.
    """
    if backbone.get("architecture", "dilated_cnn") != "dilated_cnn":
        from simpo_bio.dna.models.transformer import build_backbone

        return MaskedDiffusion(build_backbone(backbone), mask_index=mask_index, eps=eps)
    cfg = {k: (tuple(v) if isinstance(v, list) else v) for k, v in backbone.items()
           if v is not None and k != "architecture"}
    return MaskedDiffusion(DilatedCNN(**cfg), mask_index=mask_index, eps=eps)


def _tokens(batch: Any) -> Tensor:
    """The ``[B, L]`` token tensor of a batch (a tensor, a dict with ``tokens`` or a tuple/list)."""
    if torch.is_tensor(batch):
        return batch.long()
    if isinstance(batch, dict):
        return batch["tokens"].long()
    return batch[0].long()


class MaskedDiffusionLM(pl.LightningModule):
    """MDLM pretraining: per-sequence ELBO loss, AdamW + warm-up/cosine, EMA weights, bits/base evaluation.

    Args:
        hidden_dim, num_stacks, dilations, kernel_size, block_order, time_conditioning, dropout: the
            :class:`~simpo_bio.dna.models.backbones.DilatedCNN` (DRAKES: 128, 4, [1, 1, 4, 16, 64], 9, grouped, False, 0).
        eps: schedule offset of :class:`~simpo_bio.diffusion.masked.MaskedDiffusion`.
        lr: peak AdamW learning rate; ``weight_decay``, ``betas`` as in AdamW.
        warmup_steps: linear warm-up length (optimizer steps).
        min_lr_ratio: the cosine decay ends at ``lr * min_lr_ratio``.
        schedule_horizon: ``"steps"``: the cosine runs over ``trainer.max_steps``; ``"time"``: over whichever of
            ``max_steps`` and ``trainer.max_time`` runs out first (progress = the larger of the two fractions),
            so a wall-clock-budgeted run anneals properly on a slow or busy machine.
        ema_decay: EMA decay; the effective decay ``min(ema_decay, (1 + n) / (10 + n))`` warms up over updates.
        eval_elbo_draws: Monte-Carlo draws of ``(t, z_t)`` per sequence for the test / validate ELBO (seeded, so
            the number is reproducible); validation inside ``fit`` uses one draw.
        eval_seed: seed of those draws and of the evaluation samples.
        num_eval_samples: sequences sampled at test / validate (not during fit) for the 3-mer correlation; 0 skips.
        eval_sampling_steps: sampler steps for those samples.
        markov_orders: orders of the Markov baselines printed at test / validate.
        architecture: ``"dilated_cnn"`` (the arguments above) or ``"transformer"``
            (:class:`~simpo_bio.dna.models.transformer.TransformerDenoiser`; ``configs/dna/pretrain_transformer.yaml``).
        transformer: the transformer's arguments (``hidden_size``, ``num_layers``, ``num_heads``,
            ``intermediate_size``, ``max_len``) when ``architecture="transformer"``; ``dropout`` applies to it too.

    Logged metrics: ``train/loss`` (nats/sequence), ``train/bpb``, ``val/bpb`` / ``test/bpb`` (EMA ELBO, bits per
    base), and at test / validate ``{stage}/kmer3_corr`` and ``{stage}/markov{k}_bpb``.
    """

    def __init__(
        self,
        hidden_dim: int = 64,
        num_stacks: int = 2,
        dilations: list[int] = (1, 1, 4, 16, 64),
        kernel_size: int = 9,
        block_order: str = "interleaved",
        time_conditioning: bool = False,
        dropout: float = 0.0,
        eps: float = 1e-3,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.98),
        warmup_steps: int = 200,
        min_lr_ratio: float = 0.05,
        schedule_horizon: str = "time",
        ema_decay: float = 0.999,
        eval_elbo_draws: int = 2,
        eval_seed: int = 0,
        num_eval_samples: int = 512,
        eval_sampling_steps: int = 128,
        markov_orders: list[int] = (0, 1, 2, 3, 4, 5),
        architecture: str = "dilated_cnn",
        transformer: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if schedule_horizon not in ("steps", "time"):
            raise ValueError(f"schedule_horizon must be 'steps' or 'time', got {schedule_horizon!r}")
        self.save_hyperparameters()
        backbone = {"vocab_size": VOCAB_SIZE, "hidden_dim": hidden_dim, "num_stacks": num_stacks,
                    "dilations": tuple(dilations), "kernel_size": kernel_size, "block_order": block_order,
                    "time_conditioning": time_conditioning, "dropout": dropout}
        if architecture == "transformer":
            backbone = {"architecture": "transformer", "vocab_size": VOCAB_SIZE, "dropout": dropout,
                        **(transformer or {})}
        elif architecture != "dilated_cnn":
            raise ValueError(f"architecture must be 'dilated_cnn' or 'transformer', got {architecture!r}")
        self.model = build_masked_diffusion(backbone, eps=eps)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self._eval_sums: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = _tokens(batch)
        nll = self.model.elbo_loss(x)  # [B] nats per sequence
        loss = nll.mean()
        self.log("train/loss", loss, prog_bar=False)
        self.log("train/bpb", loss.detach() / (x.shape[1] * LN2), prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.update_ema()

    @torch.no_grad()
    def update_ema(self) -> None:
        """One EMA step: ``ema <- d * ema + (1 - d) * model`` with ``d = min(ema_decay, (1 + n) / (10 + n))``."""
        n = int(self.ema_updates)
        decay = min(self.hparams.ema_decay, (1.0 + n) / (10.0 + n))
        ema_p = [p for p in self.ema.parameters()]
        new_p = [p.detach() for p in self.model.parameters()]
        torch._foreach_lerp_(ema_p, new_p, 1.0 - decay)
        self.ema_updates += 1

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(self.model.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        max_steps = self.trainer.max_steps if self.trainer is not None else -1

        def factor(step: int) -> float:
            if step < hp.warmup_steps:
                return (step + 1) / hp.warmup_steps
            frac = 0.0
            if max_steps is not None and max_steps > 0:
                frac = (step - hp.warmup_steps) / max(1, max_steps - hp.warmup_steps)
            if hp.schedule_horizon == "time":
                frac = max(frac, self._time_fraction())
            if frac <= 0.0 and (max_steps is None or max_steps <= 0) and hp.schedule_horizon != "time":
                return 1.0
            frac = min(1.0, frac)
            return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _time_fraction(self) -> float:
        """Fraction of ``trainer.max_time`` spent training so far (0 without a time limit); survives resumes."""
        timer = next((c for c in getattr(self.trainer, "callbacks", []) if isinstance(c, Timer)), None)
        if timer is None or timer._duration is None:
            return 0.0
        return float(timer.time_elapsed("train") / timer._duration)

    # ---------------------------------------------------------------- evaluation
    def _eval_step(self, batch: Any, batch_idx: int, stage: str) -> None:
        x = _tokens(batch)
        gen = torch.Generator(device=x.device).manual_seed(self.hparams.eval_seed * 1_000_003 + batch_idx)
        draws = 1 if self.trainer.state.fn == "fit" else self.hparams.eval_elbo_draws  # cheap checks while fitting
        nll = torch.stack([self.ema.elbo_loss(x, generator=gen) for _ in range(draws)]).mean(0)
        sums = self._eval_sums.setdefault(stage, [0.0, 0.0])
        sums[0] += float(nll.double().sum())
        sums[1] += x.numel()

    def on_validation_epoch_start(self) -> None:
        self._eval_sums.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._eval_sums.pop("test", None)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", "validation")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", "test")

    def _eval_epoch_end(self, stage: str, split: str) -> None:
        total, bases = self._eval_sums.get(stage, (0.0, 0.0))
        if not bases:
            return
        bpb = total / bases / LN2
        self.log(f"{stage}/bpb", bpb, prog_bar=True)
        if self.trainer.sanity_checking or self.trainer.state.fn == "fit":
            return
        self.gate_report(stage, split, bpb)

    def gate_report(self, stage: str, split: str, bpb: float) -> dict[str, float]:
        """Markov baselines, 3-mer correlation of samples; logs them and prints the quality-gate table."""
        hp = self.hparams
        dm = self.trainer.datamodule
        result: dict[str, float] = {"bpb": bpb}
        lines = [f"\n== masked diffusion ELBO on the {split} split (bits/base; lower is better) =="]
        if dm is not None and hasattr(dm, "dataset"):
            train = dm.dataset("train").tokens
            ref = dm.dataset(split).tokens
            markov = markov_bits_per_base(train, ref, hp.markov_orders)
            for k, v in markov.items():
                result[f"markov{k}_bpb"] = v
                self.log(f"{stage}/markov{k}_bpb", v)
                lines.append(f"  Markov order {k} (fit on train){'':<8}{v:.4f}")
            lines.append(f"  masked diffusion (EMA ELBO bound)     {bpb:.4f}")
            if 1 in markov:
                verdict = "PASS" if bpb < markov[1] else "FAIL"
                lines.append(f"  gate: ELBO < order-1 Markov ({markov[1]:.4f}): {verdict}")
            if hp.num_eval_samples > 0:
                t0 = time.perf_counter()
                samples = self.ema.sample(
                    hp.num_eval_samples, ref.shape[1], num_steps=hp.eval_sampling_steps, seed=hp.eval_seed,
                    batch_size=256, device=self.device,
                ).cpu()
                secs = time.perf_counter() - t0
                corr = kmer_correlation(samples, ref.long(), k=3)
                result["kmer3_corr"] = corr
                self.log(f"{stage}/kmer3_corr", corr)
                lines.append(
                    f"  3-mer frequency Pearson r, {hp.num_eval_samples} samples ({hp.eval_sampling_steps} steps, "
                    f"{secs:.0f} s) vs {split}: {corr:.4f}  gate >= 0.9: {'PASS' if corr >= 0.9 else 'FAIL'}"
                )
        else:
            lines.append(f"  masked diffusion (EMA ELBO bound)     {bpb:.4f}")
        print("\n".join(lines), flush=True)
        return result

    # ------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_model_kind(checkpoint, MODEL_KIND)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Accept the EMA-only export: fill the training weights (``model.*``) from the EMA (``ema.*``)."""
        guard_resume(self, checkpoint)  # resuming a fit from another model's / config's checkpoint: one line, exit 2
        state = checkpoint.get("state_dict", {})
        if not any(k.startswith("model.") for k in state):
            for k, v in list(state.items()):
                if k.startswith("ema."):
                    state["model." + k[4:]] = v.clone()
            state.setdefault("ema_updates", torch.zeros((), dtype=torch.long))
            for k in list(state):
                if torch.is_tensor(state[k]) and state[k].is_floating_point():
                    state[k] = state[k].float()


def export_state(module: MaskedDiffusionLM, extra: dict[str, Any] | None = None, half: bool = False) -> dict:
    """The EMA-only checkpoint dict (a minimal Lightning checkpoint ``test --ckpt_path`` and :func:`load_pretrained` read)."""
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items() if k.startswith("ema.")}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    # Only what rebuilds the network: LightningCLI lets checkpoint hyper-parameters override the command line, so
    # evaluation settings (samples, draws) stay with the config.
    keep = (*BACKBONE_ARGS, "dropout", "eps", "architecture", "transformer")
    hparams = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(module.hparams).items() if k in keep}
    # LightningCLI (subclass mode) needs the class to re-apply checkpoint hyper-parameters at `test --ckpt_path`.
    hparams["_class_path"] = f"{type(module).__module__}.{type(module).__qualname__}"
    ckpt = {
        "pytorch-lightning_version": pl.__version__,
        "state_dict": state,
        "hyper_parameters": hparams,
        "global_step": int(module.global_step) if module._trainer is not None else 0,
        "simpo_bio": dict(extra or {}),
    }
    record_model_kind(ckpt, MODEL_KIND)
    return ckpt


class ExportPretrained(pl.Callback):
    """At the end of ``fit``, write the EMA weights to ``path`` (atomically) — the file the project ships.

    Args:
        path: output file, e.g. ``runs/pretrain_dhs/pretrained_dhs.ckpt``.
        half: store float16 tensors (half the size; loaded back as float32).
        data_sha256: checksum of the training data recorded in the file (``data/README.md``).
    """

    def __init__(self, path: str = "runs/pretrain_dhs/pretrained_dhs.ckpt", half: bool = False,
                 data_sha256: str | None = None) -> None:
        self.path, self.half, self.data_sha256 = path, half, data_sha256
        self._t0 = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.time()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, MaskedDiffusionLM) or not trainer.is_global_zero:
            return
        extra = {
            "data_sha256": self.data_sha256,
            "train_wall_clock_s": None if self._t0 is None else round(time.time() - self._t0, 1),
            "torch_threads": torch.get_num_threads(),
            "val_bpb": float(trainer.callback_metrics["val/bpb"]) if "val/bpb" in trainer.callback_metrics else None,
        }
        path = save_checkpoint_atomic(export_state(pl_module, extra, self.half), self.path)
        os.chmod(path, 0o644)  # a file meant to be shipped / shared, not a private temp file
        print(f"exported EMA weights to {path} ({os.path.getsize(path) / 1e6:.2f} MB)", flush=True)


def load_pretrained(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> MaskedDiffusion:
    """Load a pretrained masked diffusion model (EMA weights) from a :class:`MaskedDiffusionLM` checkpoint.

    Reads the shipped EMA-only export (:class:`ExportPretrained`), a full training checkpoint (``last.ckpt``) or
    DRAKES' ``pretrained.ckpt`` (detected by its layout; raw weights, ``path?weights=ema`` for its EMA copy;
    :func:`simpo_bio.dna.models.drakes.load_drakes_pretrained`).

    Args:
        path: checkpoint file, for a DRAKES file optionally with ``?weights=raw|ema``.
        map_location: device for the tensors.

    Returns:
        a :class:`MaskedDiffusion` in eval mode, float32, on ``map_location``.

    Raises:
        CheckpointNotFoundError: no file at ``path``.
        CheckpointCorruptError: truncated / unreadable file.
        CheckpointArchitectureError: a checkpoint of another model, or weights that do not fit the backbone the
            checkpoint's hyper-parameters describe (names the keys and shapes).
        ValueError: ``?options`` on a file that is not a DRAKES checkpoint, or an unknown option.
    """
    path, options = split_spec(path)
    if is_drakes_checkpoint(path):
        unknown = set(options) - {"weights"}
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)} for DRAKES checkpoint {path} (known: weights)")
        return load_drakes_pretrained(path, options.get("weights", "raw"), map_location)
    if options:
        raise ValueError(f"options {options} apply to DRAKES checkpoints only; {path} is not one")
    return pretrained_from_checkpoint(load_checkpoint(path, map_location), path).to(map_location).eval()


def pretrained_from_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike) -> MaskedDiffusion:
    """The model of an already loaded :class:`MaskedDiffusionLM` checkpoint dict (``path`` names it in errors);
    a DRAKES checkpoint dict gives its raw weights.

    Raises:
        CheckpointArchitectureError: as :func:`load_pretrained`.
    """
    if is_drakes_layout(ckpt):
        return drakes_model_from_checkpoint(ckpt, path)[0]
    check_model_kind(ckpt, MODEL_KIND, path)
    hp = ckpt.get("hyper_parameters") or {}
    missing = [k for k in BACKBONE_ARGS if k not in hp]
    if missing:
        raise CheckpointArchitectureError(
            f"wrong architecture: checkpoint {path} lacks the backbone hyper-parameters {missing}; "
            "it was not written by simpo_bio.dna.models.pretrain.MaskedDiffusionLM",
            path,
        )
    backbone = {"vocab_size": VOCAB_SIZE, **{k: hp[k] for k in BACKBONE_ARGS}}
    if hp.get("architecture") == "transformer":
        backbone = {"architecture": "transformer", "vocab_size": VOCAB_SIZE, "dropout": hp.get("dropout", 0.0),
                    **(hp.get("transformer") or {})}
    model = build_masked_diffusion(backbone, eps=float(hp.get("eps", 1e-3)))
    state = strip_prefix(ckpt["state_dict"], "ema.")
    if not state:
        state = strip_prefix(ckpt["state_dict"], "model.")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    load_state_dict_checked(model, state, path)
    return model


def pretrained_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``simpo_bio`` metadata block of an exported checkpoint (data checksum, wall clock, ...)."""
    ckpt = load_checkpoint(Path(path))
    return dict(ckpt.get("simpo_bio") or {})
