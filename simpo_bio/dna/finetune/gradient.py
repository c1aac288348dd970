"""The natural policy: reward backpropagation through the sampler, with the composition held (``docs/method.md``).

SiMPO (:class:`~simpo_bio.dna.finetune.module.SiMPOFineTuning`) reaches the fine-tuning oracle through weighted
ELBO steps on sampled sequences; its own samples drift in composition, and only selection restores their
naturalness (the SiMPO demo, ``configs/dna/demo_simpo.yaml``). When the oracle is differentiable (the shipped
:class:`~simpo_bio.dna.oracles.oracle.CellTypeCNN`), the policy can instead follow the reward's gradient through
a relaxed sampler, as DRAKES does, and hold its composition with two differentiable terms. Every training step of
:class:`RewardGradientFineTuning` is one iteration:

1. **sample** ``group_size * num_groups`` sequences with the straight-through Gumbel-softmax ancestral sampler
   (:meth:`simpo_bio.diffusion.masked.MaskedDiffusion.relaxed_sample`), with the exact trajectory KL to the frozen
   reference (nats per sequence);
2. **reward** them with the frozen fine-tuning oracle read on base probabilities
   (:meth:`simpo_bio.dna.oracles.oracle.CellTypeOracle.soft_reward`; as many oracle calls as sequences);
3. **composition**: the Pearson correlations ``r3`` of the batch's 3-mer spectrum
   (:func:`simpo_bio.dna.data.composition.soft_kmer_frequencies`) and ``rm`` of its JASPAR motif-hit profile
   (:meth:`simpo_bio.dna.data.motifs.MotifScanner.soft_profile`) with the pretrained model's own, measured once on
   ``gradient.prior_samples`` of its samples (no oracle call, never the metrics' real sequences);
4. **update**: one Adam step on ``-mean r + kl_penalty * mean KL + kmer_weight * (1 - r3) + motif_weight * (1 - rm)``
   (:class:`~simpo_bio.dna.finetune.config.GradientConfig`), gradient norm clipped.

Measured on the shared 2-core CPU at 4,000 calls with the shipped weights (``bench/results/dna-policy-alone.md``,
seventeenth grid, five held-out seeds): the fine-tuned model's own 256 samples have median Pred-Activity 4.3-4.8 by
the evaluation oracle (the pretrained model: -1.8) at 3-mer 0.91-0.95 and JASPAR 0.59-0.63 (the pretrained model:
0.944 / 0.605). Checkpoints, resume (the module's generator is saved), designs at the end of a fit and
:func:`~simpo_bio.dna.models.policies.load_policy` work as for SiMPO (both extend
:class:`~simpo_bio.dna.finetune.module.PolicyFineTuning`).

Imports: :mod:`simpo_bio.dna.data`, :mod:`simpo_bio.dna.oracles.oracle`, :mod:`simpo_bio.dna.finetune.config`,
:mod:`simpo_bio.dna.finetune.module`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from simpo_bio.dna.data.composition import pearson_differentiable, soft_kmer_frequencies
from simpo_bio.dna.data.motifs import MotifScanner
from simpo_bio.dna.finetune.config import GradientConfig, SamplingConfig
from simpo_bio.dna.finetune.module import PolicyFineTuning, _group
from simpo_bio.dna.models.policies import GRADIENT_MODEL_KIND
from simpo_bio.dna.oracles.oracle import CellTypeCNN, CellTypeOracle

__all__ = ["RewardGradientFineTuning"]

#: Batch of the composition prior's sampling (fixed: the chunking is part of what its seed reproduces).
PRIOR_BATCH_SIZE = 128


class RewardGradientFineTuning(PolicyFineTuning):
    """Reward backpropagation through the sampler with the composition held (module docstring).

    Args:
        pretrained: as :class:`~simpo_bio.dna.finetune.module.SiMPOFineTuning` (a checkpoint, an export-hf
            directory or, from Python, a :class:`~simpo_bio.diffusion.masked.MaskedDiffusion`).
        oracle: path of the frozen fine-tuning oracle, or from Python a
            :class:`~simpo_bio.dna.oracles.oracle.CellTypeOracle` whose net is a
            :class:`~simpo_bio.dna.oracles.oracle.CellTypeCNN` (its gradient is what the policy follows).
        sampling: :class:`~simpo_bio.dna.finetune.config.SamplingConfig`; oracle calls per iteration =
            ``group_size * num_groups`` (default 32 x 1, 16 steps).
        gradient: :class:`~simpo_bio.dna.finetune.config.GradientConfig` (the loss's weights, Adam, the prior).
        seed: seed of the module's generator (reveal steps, Gumbel noise).
        motif_scanner: from Python, the :class:`~simpo_bio.dna.data.motifs.MotifScanner` of the motif term
            (default: the JASPAR 2024 CORE vertebrate motifs, :meth:`MotifScanner.jaspar`; built when
            ``gradient.motif_weight > 0``).

    Raises:
        ValueError: an invalid field (one line naming ``<group>.<field>``), or an oracle that is not a
            differentiable :class:`~simpo_bio.dna.oracles.oracle.CellTypeOracle` (e.g. an ensemble list).
    """

    def __init__(
        self,
        pretrained: str = "checkpoints/dna/pretrained_dhs.ckpt",
        oracle: str = "checkpoints/dna/oracle_ft.ckpt",
        sampling: SamplingConfig = SamplingConfig(num_groups=1, num_steps=16),  # noqa: B008  (copied)
        gradient: GradientConfig = GradientConfig(),  # noqa: B008
        seed: int = 0,
        motif_scanner: MotifScanner | None = None,
    ) -> None:
        gradient_config = _group(GradientConfig, gradient, "gradient")
        gradient_config.validate()
        if isinstance(oracle, list | tuple):
            raise ValueError("RewardGradientFineTuning: oracle must be one differentiable CellTypeOracle checkpoint, "
                             f"not a list of {len(oracle)} (an ensemble has no single gradient to follow)")
        super().__init__(pretrained, oracle, sampling, seed)
        if not isinstance(self.oracle, CellTypeOracle) or not isinstance(self.oracle.net, CellTypeCNN):
            raise ValueError(f"RewardGradientFineTuning: the oracle must be a CellTypeOracle with a CellTypeCNN (a "
                             f"differentiable net), got {type(self.oracle).__name__}")
        self.gradient_config = gradient_config
        hp = self.path_hparams(pretrained, oracle)
        hp.update(sampling=asdict(self.sampling), gradient=asdict(gradient_config), seed=int(seed))
        self.save_hyperparameters(hp)
        if motif_scanner is None and gradient_config.motif_weight > 0:
            motif_scanner = MotifScanner.jaspar()
        self.motif_scanner = motif_scanner
        self._prior: tuple[Tensor, Tensor | None] | None = None

    checkpoint_kind = GRADIENT_MODEL_KIND  # a resume as SiMPO (or the reverse) is refused

    @property
    def method(self) -> str:
        """``"reward_gradient"`` (labels, FASTA headers, tables)."""
        return "reward_gradient"

    @staticmethod
    def validate_config(init_args: dict[str, Any]) -> None:
        """Check a configuration (``model.init_args``) without loading anything.

        Raises:
            ValueError: one line naming ``<group>.<field>`` or an unknown field."""
        for name, cls in (("sampling", SamplingConfig), ("gradient", GradientConfig)):
            value = init_args.get(name)
            _group(cls, vars(value) if hasattr(value, "__dict__") and not isinstance(value, dict) else value,
                   name).validate()

    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if not params:
            raise ValueError("RewardGradientFineTuning: the policy has no trainable parameter (pass a module whose "
                             "parameters require grad)")
        return torch.optim.Adam(params, lr=self.gradient_config.lr)

    def composition_prior(self) -> tuple[Tensor, Tensor | None]:
        """The pretrained model's own composition: ``(3-mer frequencies [64], mean motif hits [M] or None)`` of
        ``gradient.prior_samples`` of its samples (seed ``gradient.prior_seed``); computed once per process (a
        resumed fit recomputes the same numbers)."""
        if self._prior is None:
            g = self.gradient_config
            with torch.no_grad():
                x = self.reference.sample(g.prior_samples, self.seq_len, num_steps=self.num_steps, seed=g.prior_seed,
                                          batch_size=PRIOR_BATCH_SIZE, device=self.device)
                kmer = soft_kmer_frequencies(torch.nn.functional.one_hot(x, 5)[..., :4].float())
                motif = None
                if g.motif_weight > 0:
                    motif = self.motif_scanner.count(x.cpu()).mean(0).to(self.device)
            self._prior = (kmer, motif)
        return self._prior

    def training_step(self, batch, batch_idx: int) -> Tensor:
        """One iteration: relaxed sample -> soft reward -> composition terms -> one Adam step (module docstring)."""
        g, s = self.gradient_config, self.sampling
        n = s.group_size * s.num_groups
        prior = self.composition_prior() if g.kmer_weight > 0 or g.motif_weight > 0 else None
        opt = self.optimizers()
        self.policy.train()
        timings = {}
        t0 = self._clock()
        probs, kl = self.policy.relaxed_sample(n, self.seq_len, reference=self.reference, num_steps=self.num_steps,
                                               generator=self.generator)
        timings["time_sample_s"] = self._clock() - t0
        t0 = self._clock()
        reward = self.oracle.soft_reward(probs)
        if not torch.isfinite(reward).all():
            raise ValueError(f"the fine-tuning oracle returned {int((~torch.isfinite(reward)).sum())} non-finite "
                             f"rewards of {n}")
        timings["time_reward_s"] = self._clock() - t0
        t0 = self._clock()
        loss = -reward.mean() + g.kl_penalty * kl.mean()
        comp: dict[str, Tensor] = {}
        if g.kmer_weight > 0:
            comp["kmer_corr_prior"] = pearson_differentiable(soft_kmer_frequencies(probs), prior[0])
            loss = loss + g.kmer_weight * (1.0 - comp["kmer_corr_prior"])
        if g.motif_weight > 0:
            comp["motif_corr_prior"] = pearson_differentiable(self.motif_scanner.soft_profile(probs), prior[1])
            loss = loss + g.motif_weight * (1.0 - comp["motif_corr_prior"])
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if g.grad_clip is not None:
            self.clip_gradients(opt, gradient_clip_val=g.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        timings["time_update_s"] = self._clock() - t0
        self.reward_queries += n
        r = reward.detach()
        tokens = probs.detach().argmax(-1)
        stats = {"iteration": float(self.current_epoch), "reward_queries": float(self.reward_queries),
                 "reward_mean": r.mean().item(), "reward_median": r.median().item(), "reward_max": r.max().item(),
                 "reward_min": r.min().item(), "reward_q25": r.quantile(0.25).item(),
                 "reward_q75": r.quantile(0.75).item(), "kl_ref": kl.detach().mean().item(), "loss": loss.item(),
                 "gc": ((tokens == 1) | (tokens == 2)).float().mean().item(),
                 **{k: v.item() for k, v in comp.items()}, **timings}
        self.history.append(stats)
        self.log_dict({f"train/{k}": v for k, v in stats.items()}, on_step=True, on_epoch=False, prog_bar=False,
                      batch_size=n)
        self.log_dict({"reward": stats["reward_mean"], "kl_ref": stats["kl_ref"]}, prog_bar=True, on_step=True,
                      on_epoch=False, logger=False, batch_size=n)
        return loss.detach()
