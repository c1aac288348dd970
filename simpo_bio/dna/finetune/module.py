"""SiMPO fine-tuning of a pretrained masked diffusion model toward a frozen reward oracle (paper section 5.3).

Online RL has no data set: the train dataloader only counts iterations (:class:`PolicyIterationDataModule`), and
every training step is one policy-improvement iteration of :class:`SiMPOFineTuning` (the equations, with their
paper references, are in ``docs/method.md``):

1. **sample** ``num_groups x group_size`` sequences from the current policy with no grad (``pi_old`` = the policy
   at sampling time, paper Sec. 3.1; the batched ancestral sampler of
   :class:`~simpo_bio.diffusion.masked.MaskedDiffusion`);
2. **reward** them with the frozen fine-tuning oracle (:mod:`simpo_bio.dna.oracles.oracle`, checked finite; a list of
   oracles is a conservative ensemble, :mod:`simpo_bio.dna.oracles.ensemble`), minus ``reward.kl_penalty`` times the
   log-ratio to the reference (the leash, :mod:`simpo_bio.dna.finetune.leash`), designs outside the natural range
   ranked last (``reward.constraints``, :mod:`simpo_bio.dna.data.composition`);
3. **weights**: group-relative advantages, then weights by scheme name (``exp``, ``linear``, ``square``, ``power``,
   ``linear_neg``, ``square_neg``, ``wd1``) at a fixed temperature or one tuned by the dual of paper Appendix G,
   Eq. 30 -- the shared Stage-I step :class:`simpo_bio.weighting.WeightingStep` (paper Eq. 9-11, Example 3.4);
4. **update**: ``update.update_epochs`` passes of gradient steps on ``sum_i w_i * ELBO_loss(x_i)`` (weights
   detached; paper Eq. 7 with the negative ELBO of section 5.3; negative weights repel, paper section 3.4, capped
   at ``update.repel_margin`` nats per base), plus the anchor ``update.kl_coef * KL(policy || reference)`` on the
   denoising distributions, with gradient-norm clipping.

The arguments are four typed groups (:mod:`simpo_bio.dna.finetune.config`): ``sampling``, ``reward``,
``weighting``, ``update``; each default is the shipped default.

Everything random (sampling, ELBO noise, minibatch order) draws from one generator owned by the module; its state
is saved in every checkpoint, so a fit killed after iteration ``k`` and resumed from ``last.ckpt`` continues with
iteration ``k + 1`` and reproduces the uninterrupted run (optimizers and the temperature are restored by
Lightning). Each Lightning *epoch* is one iteration, so checkpoints always fall between iterations.

Distributed fits (DDP, ``docs/gpu.md``): rank 0 keeps that generator, every other rank ``r`` re-seeds its own from
a hash of ``(seed, r)`` at ``on_fit_start`` (of ``(restored state, r)`` when resuming), so ranks draw different,
reproducible sequences; each rank samples its own ``num_groups`` groups (a group never spans ranks), and DDP's
gradient average over ranks is the gradient of the one-process loss on all ranks' groups. Checkpoints hold rank 0's
state, so a fit resumes on any number of devices.

Logged every iteration (``train/...``): reward mean/median/max/min, weight diagnostics (``ess``,
``negative_mass``, ``active``, ``temperature``, ``kl_to_uniform``), loss, ``elbo_ref`` (log-likelihood lower bound
of the samples under the frozen reference, nats per sequence), ``kl_ref`` (KL(policy || reference) estimate,
nats per sequence), ``feasible`` (share of designs inside the constraints), ``gc``, ``reward_queries``
(cumulative oracle calls) and the seconds spent in sample / reward / update.

Run it with LightningCLI (``configs/dna/simpo_base.yaml`` plus one scheme file)::

    simpo-bio fit --config configs/dna/simpo_base.yaml --config configs/dna/simpo_square_neg.yaml

:func:`load_policy` is the one way back from a checkpoint (fine-tuned or pretrained) to a sampler; every command
uses it. Designs and exports at the end of a fit: :mod:`simpo_bio.dna.design.designs`.

Imports: Lightning, :mod:`simpo_bio.weighting`, :mod:`simpo_bio.dna.data`, :mod:`simpo_bio.dna.models`,
:mod:`simpo_bio.dna.oracles`, :mod:`simpo_bio.dna.finetune.config`, :mod:`simpo_bio.dna.finetune.leash`.
"""

from __future__ import annotations

import copy
import hashlib
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from simpo_bio.dna.data.composition import feasibility_ranked
from simpo_bio.dna.finetune.config import (
    RewardConfig,
    SamplingConfig,
    UpdateConfig,
    WeightingConfig,
    _natural_range,
)
from simpo_bio.dna.finetune.leash import (
    anchor_kl,
    bounded_elbo,
    build_constraints,
    elbo_log_ratio,
    kl_regularized_reward,
)
from simpo_bio.dna.models.checkpoints import KIND_KEY, CheckpointFormatError, guard_resume, record_model_kind
from simpo_bio.dna.models.policies import MODEL_KIND, load_policy
from simpo_bio.dna.models.pretrain import load_pretrained
from simpo_bio.dna.oracles.ensemble import EnsembleOracle
from simpo_bio.dna.oracles.oracle import check_rewards, load_oracle
from simpo_bio.weighting import WeightingStep

__all__ = ["PolicyFineTuning", "SiMPOFineTuning", "PolicyIterationDataModule"]


# ---------------------------------------------------------------------------------------------- step counter
class _Counter(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Tensor:
        return torch.tensor(i)


class PolicyIterationDataModule(pl.LightningDataModule):
    """The train "data" of online RL: one dummy batch per epoch; each epoch is one policy iteration.

    Set the number of iterations with ``trainer.max_epochs``. No validation data.
    """

    def __init__(self) -> None:
        super().__init__()

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(_Counter(1), batch_size=1, num_workers=0)


# ---------------------------------------------------------------------------------------------------- helpers
def _load_policy_from(spec) -> nn.Module:  # a module, a checkpoint, or an export-hf directory (load_policy)
    return spec if isinstance(spec, nn.Module) else load_policy(spec)[0] if Path(spec).is_dir() else load_pretrained(str(spec))


def _load_oracle_from(spec, std_coef: float = 1.0):
    if isinstance(spec, list | tuple):  # an ensemble: conservative reward mean - k std (simpo_bio/dna/oracles/ensemble.py)
        return EnsembleOracle([_load_oracle_from(s) for s in spec], std_coef=std_coef)
    if callable(spec) and not isinstance(spec, str | Path):
        return spec
    return load_oracle(str(spec))


def _group(cls: type, value: Any, name: str):
    """A config group from a dataclass, a mapping (a checkpoint's hparams) or None (the defaults)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return copy.deepcopy(value)
    if isinstance(value, dict):
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"{name}: unknown field(s) {unknown}; the fields are {sorted(known)}")
        return cls(**value)
    raise TypeError(f"{name} must be a {cls.__name__} or a mapping, got {type(value).__name__}")


# ------------------------------------------------------------------------------------------------ the module
class PolicyFineTuning(pl.LightningModule):
    """What every fine-tuning method of a masked diffusion policy shares: the trained policy (a copy of the
    pretrained model), the frozen reference and oracle, the module's generator, the oracle-call counter, the
    per-iteration ``history``, and their checkpoints (with the generator state, so a resumed fit reproduces the
    uninterrupted one). One Lightning epoch is one iteration; the subclass writes ``training_step`` and saves its
    own hyper-parameters. Subclasses: :class:`SiMPOFineTuning`,
    :class:`~simpo_bio.dna.finetune.gradient.RewardGradientFineTuning`.

    Args:
        pretrained: as :class:`SiMPOFineTuning`.
        oracle: as :class:`SiMPOFineTuning`; a list is an ensemble with ``mean - ensemble_std_coef * std``.
        sampling: the validated :class:`~simpo_bio.dna.finetune.config.SamplingConfig` (or a mapping).
        seed: seed of the module's generator.

    Attributes:
        constraints: the natural range (:class:`~simpo_bio.dna.data.composition.NaturalnessConstraints` or
            ``None``) inside which the selection after a fit keeps designs
            (:func:`simpo_bio.dna.design.designs.export_run`): SiMPO's ``reward.constraints`` (also ranked in its
            reward), otherwise the default natural range (GC 0.4-0.6, homopolymers <= 10 bp, DUST <= 2).
    """

    #: The model kind recorded in every checkpoint (:func:`simpo_bio.dna.models.checkpoints.record_model_kind`).
    checkpoint_kind = MODEL_KIND

    def __init__(self, pretrained, oracle, sampling, seed: int = 0, ensemble_std_coef: float = 1.0) -> None:
        super().__init__()
        self.sampling = _group(SamplingConfig, sampling, "sampling")
        self.sampling.validate()
        self.automatic_optimization = False
        reference = _load_policy_from(pretrained)
        if reference is pretrained:  # a module from the caller: never freeze or move the caller's object
            reference = copy.deepcopy(reference)
        self.policy = copy.deepcopy(reference)  # keeps the trainable / fixed flags of the pretrained model
        self.policy.train()  # the sampler switches to eval mode by itself
        # frozen reference and oracle live outside the state dict (not saved; rebuilt from their paths)
        reference.requires_grad_(False).eval()
        object.__setattr__(self, "reference", reference)
        object.__setattr__(self, "oracle", _load_oracle_from(oracle, ensemble_std_coef))

        self.generator = torch.Generator().manual_seed(seed)
        self.register_buffer("reward_queries", torch.zeros((), dtype=torch.long))
        self.history: list[dict[str, float]] = []
        self._extra_sample_kwargs: dict[str, Any] = {}
        self.constraints = build_constraints(_natural_range())

    @staticmethod
    def path_hparams(pretrained, oracle) -> dict[str, Any]:
        """The ``pretrained`` / ``oracle`` hyper-parameters: paths only (modules passed from Python are not
        recorded)."""
        def _is_path(v) -> bool:
            return isinstance(v, str | Path) or (isinstance(v, list | tuple) and all(isinstance(e, str | Path) for e in v))

        return {name: [str(e) for e in v] if isinstance(v, list | tuple) else str(v)
                for name, v in (("pretrained", pretrained), ("oracle", oracle)) if _is_path(v)}

    # ---------------------------------------------------------------------------------------- plumbing
    @property
    def seq_len(self) -> int:
        """Length of the generated sequences, bp (``sampling.seq_len``)."""
        return self.sampling.seq_len

    @property
    def num_steps(self) -> int:
        """Steps of the ancestral sampler (``sampling.num_steps``)."""
        return self.sampling.num_steps

    def _move_frozen(self) -> None:
        self.reference.to(self.device)
        if isinstance(self.oracle, nn.Module):
            self.oracle.to(self.device)
        elif hasattr(self.oracle, "to"):
            try:
                self.oracle.to(self.device)
            except Exception:  # a user callable that is not device-aware
                pass
        if self.generator.device != self.device:  # e.g. a GPU fit: the sampler draws on the model's device
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def on_fit_start(self) -> None:
        rank = int(self.global_rank)
        if rank > 0:  # DDP: a distinct, reproducible stream per rank (module docstring); rank 0 keeps its own
            base = (self.generator.get_state().cpu().numpy().tobytes() if self.trainer.ckpt_path
                    else str(self.hparams.seed).encode())
            seed = int.from_bytes(hashlib.sha256(base + f"/rank{rank}".encode()).digest()[:8], "little") >> 1
            self.generator = torch.Generator(device=self.generator.device).manual_seed(seed)
        self._move_frozen()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_model_kind(checkpoint, self.checkpoint_kind)
        backbone = self.policy.backbone
        if hasattr(backbone, "config"):  # makes the checkpoint self-contained for `simpo-bio sample`
            checkpoint["simpo_policy"] = {"backbone": backbone.config(), "mask_index": self.policy.mask_index,
                                          "eps": self.policy.eps}
        checkpoint["simpo_generator_state"] = self.generator.get_state().cpu()
        checkpoint["simpo_generator_device"] = str(self.generator.device)
        checkpoint["simpo_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hp = checkpoint.get("hyper_parameters") or {}
        if checkpoint.get(KIND_KEY) == MODEL_KIND and "sampling" not in hp:  # flat: 0.1, before the typed groups
            err = CheckpointFormatError(
                "this fine-tuning checkpoint was written before the typed configuration (its hyper-parameters are "
                "flat, not the groups sampling / reward / weighting / update): refit it with this version "
                "(fit --ckpt_path null, or demo --fresh)", None)
            trainer = getattr(self, "_trainer", None)
            if trainer is not None and getattr(getattr(trainer.state, "fn", None), "value", None) == "fit":
                print(f"simpo-bio: error: {err}", file=sys.stderr)  # a resume: one line, exit 2
                raise SystemExit(2)
            raise err
        guard_resume(self, checkpoint)  # a checkpoint of another model / config: one line, exit 2
        state = checkpoint.get("simpo_generator_state")
        if state is not None:
            dev = torch.device(checkpoint.get("simpo_generator_device", "cpu"))
            if dev.type != "cpu" and not torch.cuda.is_available():
                dev = torch.device("cpu")
            self.generator = torch.Generator(device=dev)
            self.generator.set_state(state)
        self.history = list(checkpoint.get("simpo_history", []))

    def train_dataloader(self):  # used when no datamodule is given (e.g. `trainer.fit(module)`)
        return PolicyIterationDataModule().train_dataloader()

    @torch.no_grad()
    def generate(self, num_samples: int, *, num_steps: int | None = None, generator: torch.Generator | None = None,
                 batch_size: int | None = None, progress: bool = False, reference: nn.Module | None = None
                 ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """Sample ``[num_samples, seq_len]`` token ids from the current policy (no grad, eval mode).

        With ``reference`` (a :class:`~simpo_bio.diffusion.masked.MaskedDiffusion`), returns
        ``(tokens, log_p [B], log_q [B])``: the trajectory log-probabilities under the policy and the reference
        (:meth:`~simpo_bio.diffusion.masked.MaskedDiffusion.sample`, ``return_log_probs``).
        """
        was_training = self.policy.training
        self.policy.eval()
        kwargs = dict(num_steps=num_steps or self.num_steps,
                      generator=self.generator if generator is None else generator, device=self.device)
        if batch_size is not None:
            kwargs["batch_size"] = batch_size
        kwargs.update(self._extra_sample_kwargs)
        if reference is not None:
            kwargs.update(reference=reference, return_log_probs=True)
        x = self.policy.sample(num_samples, self.seq_len, **kwargs)
        self.policy.train(was_training)
        return x

    @torch.no_grad()
    def reward(self, tokens: Tensor) -> Tensor:
        """Frozen fine-tuning oracle rewards ``[B]`` (validated: finite)."""
        r = self.oracle(tokens)
        return check_rewards(torch.as_tensor(r).reshape(-1).to(self.device), "the fine-tuning oracle")

    def _clock(self) -> float:
        """Seconds of ``time.perf_counter``, after the device's queued work (CUDA runs asynchronously: without the
        sync, one stage's kernels would be timed in the next stage)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()



class SiMPOFineTuning(PolicyFineTuning):
    """SiMPO fine-tuning of a masked diffusion policy (paper sections 3-4 and 5.3; ``docs/method.md`` 5-8).

    Args:
        pretrained: path of the pretrained model checkpoint (:func:`simpo_bio.dna.models.pretrain.load_pretrained`)
            or an export-hf directory; from Python a :class:`~simpo_bio.diffusion.masked.MaskedDiffusion` module is
            accepted too. The policy starts as a copy of it and the frozen reference stays equal to it.
        oracle: path of the frozen fine-tuning oracle (:func:`simpo_bio.dna.oracles.oracle.load_oracle`), a list of
            paths (an ensemble with the conservative reward ``mean - reward.ensemble_std_coef * std``,
            :class:`simpo_bio.dna.oracles.ensemble.EnsembleOracle`) or, from Python, any callable
            ``tokens [B, L] long -> rewards [B]``. It is never saved in the checkpoint.
        sampling: :class:`~simpo_bio.dna.finetune.config.SamplingConfig` (group size, groups, length, steps).
        reward: :class:`~simpo_bio.dna.finetune.config.RewardConfig` (the leash and the natural range).
        weighting: :class:`~simpo_bio.dna.finetune.config.WeightingConfig` (scheme, temperature, advantages).
        update: :class:`~simpo_bio.dna.finetune.config.UpdateConfig` (optimiser, ELBO estimator, epochs, anchor).
        log_reference_elbo: log ``elbo_ref`` of the samples under the reference (one extra ELBO pass).
        seed: seed of the module's generator (sampling, ELBO noise, minibatch order).

    Each group is given as its dataclass or as a mapping of its fields (LightningCLI and checkpoints).

    Raises:
        ValueError: unknown scheme, an unknown field of a group, or an invalid value (one line naming
            ``<group>.<field>``; at construction).
        NonFiniteRewardError: the oracle returned NaN or infinity (during training; a ValueError too).
    """

    def __init__(
        self,
        pretrained: str = "checkpoints/dna/pretrained_dhs.ckpt",
        oracle: str | list[str] = "checkpoints/dna/oracle_ft.ckpt",
        sampling: SamplingConfig = SamplingConfig(),  # noqa: B008  (copied: the default is never mutated)
        reward: RewardConfig = RewardConfig(),  # noqa: B008
        weighting: WeightingConfig = WeightingConfig(),  # noqa: B008
        update: UpdateConfig = UpdateConfig(),  # noqa: B008
        log_reference_elbo: bool = True,
        seed: int = 0,
    ) -> None:
        self.reward_config = _group(RewardConfig, reward, "reward")
        self.weighting_config = _group(WeightingConfig, weighting, "weighting")
        self.update_config = _group(UpdateConfig, update, "update")
        for group in (self.reward_config, self.weighting_config, self.update_config):
            group.validate()
        super().__init__(pretrained, oracle, sampling, seed, self.reward_config.ensemble_std_coef)
        hp = self.path_hparams(pretrained, oracle)
        hp.update(sampling=asdict(self.sampling), reward=asdict(self.reward_config),
                  weighting=asdict(self.weighting_config), update=asdict(self.update_config),
                  log_reference_elbo=bool(log_reference_elbo), seed=int(seed))
        self.save_hyperparameters(hp)
        self.constraints = build_constraints(self.reward_config.constraints)
        w = self.weighting_config
        self.weighting = WeightingStep(w.scheme, w.scheme_params, temperature=w.temperature,
                                       auto_temperature=w.auto_temperature, target_kl=w.target_kl,
                                       temperature_lr=w.temperature_lr, normalize_advantage=w.normalize_advantage,
                                       leave_one_out=w.leave_one_out)
        self.scheme = self.weighting.scheme

    @staticmethod
    def validate_config(init_args: dict[str, Any]) -> None:
        """Check a configuration (the ``model.init_args`` mapping of a config) without loading anything.

        Raises:
            ValueError: one line naming ``<group>.<field>``, an unknown field or an unknown scheme."""
        groups = {"sampling": SamplingConfig, "reward": RewardConfig, "weighting": WeightingConfig,
                  "update": UpdateConfig}
        built = {}
        for name, cls in groups.items():
            value = init_args.get(name)
            built[name] = _group(cls, vars(value) if hasattr(value, "__dict__") and not isinstance(value, dict)
                                 else value, name)
            built[name].validate()
        w = built["weighting"]
        WeightingStep(w.scheme, w.scheme_params, temperature=w.temperature, target_kl=w.target_kl,
                      temperature_lr=w.temperature_lr)

    @property
    def method(self) -> str:
        """The method's name in labels, FASTA headers and tables: the weighting scheme (e.g. ``"square_neg"``)."""
        return self.scheme.name

    def configure_optimizers(self):
        u = self.update_config
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if not params:
            raise ValueError("SiMPOFineTuning: the policy has no trainable parameter (a frozen model, e.g. an EMA "
                             "copy, was passed as pretrained: pass a module whose parameters require grad)")
        return torch.optim.AdamW(params, lr=u.lr, weight_decay=u.weight_decay, betas=tuple(u.betas))

    # ------------------------------------------------------------------------------------------- pieces
    def policy_nelbo(self, x: Tensor) -> Tensor:
        """Negative ELBO ``[B]`` (nats) of the policy in the weighted loss, by ``update.elbo_estimator``
        (differentiable)."""
        u = self.update_config
        if u.elbo_estimator == "time":
            draws = [self.policy.elbo_loss(x, generator=self.generator) for _ in range(u.elbo_draws)]
            return torch.stack(draws).mean(0)
        return self.policy.elbo_loss_by_count(x, num_draws=u.elbo_draws, shared_noise=u.elbo_shared_noise,
                                              generator=self.generator)

    def anchor_kl(self, x: Tensor) -> Tensor:
        """Per-sample KL anchor ``[B]`` of the loss (:func:`simpo_bio.dna.finetune.leash.anchor_kl`; ``update.kl_coef``)."""
        return anchor_kl(self.policy, self.reference, x, generator=self.generator)

    # ------------------------------------------------------------------------------------- one iteration
    def sample_iteration(self) -> tuple[Tensor, Tensor]:
        """Stage 0: ``(tokens [n, L], log_ratio [n])`` from ``pi_old``, ``n = group_size * num_groups``;
        ``log_ratio`` estimates ``log pi(x) - log pi_ref(x)`` in nats (``reward.kl_estimator``)."""
        n = self.sampling.group_size * self.sampling.num_groups
        if self.reward_config.kl_estimator == "trajectory":
            x, log_p, log_q = self.generate(n, reference=self.reference)
            return x, log_p - log_q
        x = self.generate(n)
        return x, elbo_log_ratio(self.policy, self.reference, x, generator=self.generator)

    def shaped_reward(self, x: Tensor, reward: Tensor, log_ratio: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 1: ``(shaped [num_groups, G], feasible [n] bool)``: the leash (``reward.kl_penalty``) and the
        natural range (designs outside rank below every design inside)."""
        s = self.sampling
        shaped = kl_regularized_reward(reward, log_ratio, float(self.reward_config.kl_penalty))
        shaped = shaped.view(s.num_groups, s.group_size)
        feasible = torch.ones(x.shape[0], dtype=torch.bool, device=self.device)
        if self.constraints is not None:
            violation = self.constraints.violation(x)
            feasible = violation == 0
            shaped = feasibility_ranked(shaped, violation.view_as(shaped))
        return shaped, feasible

    def policy_update(self, x: Tensor, weight: Tensor) -> Tensor:
        """Stage 3: ``update_epochs`` passes of the weighted-ELBO loss (paper Eq. 7) plus the anchor; returns the
        mean loss (0-d). ``weight`` ``[n]``, detached, each group summing to 1."""
        opt = self.optimizers()
        u, s = self.update_config, self.sampling
        n = x.shape[0]
        mb = u.minibatch_size or n
        losses = []
        self.policy.train()
        for _ in range(u.update_epochs):
            perm = torch.randperm(n, generator=self.generator, device=self.generator.device).to(self.device)
            for start in range(0, n, mb):
                idx = perm[start : start + mb]
                elbo = self.policy_nelbo(x[idx])  # [b], nats
                elbo = bounded_elbo(elbo, weight[idx], u.repel_margin, s.seq_len)
                # groups are averaged: the full-batch loss is mean_groups sum_i w_i ELBO_i
                loss = (weight[idx] * elbo).sum() / s.num_groups
                if u.kl_coef > 0:
                    loss = loss + u.kl_coef * self.anchor_kl(x[idx]).sum() / n
                opt.zero_grad()
                self.manual_backward(loss)
                if u.grad_clip is not None:
                    self.clip_gradients(opt, gradient_clip_val=u.grad_clip, gradient_clip_algorithm="norm")
                opt.step()
                losses.append(loss.detach())
        return torch.stack(losses).mean()

    def training_step(self, batch, batch_idx: int) -> Tensor:
        """One policy iteration: sample -> reward -> shape -> weights -> weighted loss -> step (module docstring)."""
        s = self.sampling
        n = s.group_size * s.num_groups
        timings = {}

        t0 = self._clock()
        x, log_ratio = self.sample_iteration()
        timings["time_sample_s"] = self._clock() - t0

        t0 = self._clock()
        reward = self.reward(x)
        timings["time_reward_s"] = self._clock() - t0
        if reward.numel() != n:
            raise ValueError(f"the fine-tuning oracle returned {reward.numel()} rewards for {n} sequences")
        self.reward_queries += n

        t0 = self._clock()
        shaped, feasible = self.shaped_reward(x, reward, log_ratio)
        stage1 = self.weighting(shaped)  # advantages -> weights -> temperature step (simpo_bio.weighting)
        wout = stage1.weights
        loss = self.policy_update(x, wout.weight.detach().reshape(-1))
        timings["time_update_s"] = self._clock() - t0

        stats = {
            "iteration": float(self.current_epoch),
            "reward_queries": float(self.reward_queries),
            "reward_mean": reward.mean().item(),
            "reward_median": reward.median().item(),
            "reward_max": reward.max().item(),
            "reward_min": reward.min().item(),
            "reward_q25": reward.quantile(0.25).item(),
            "reward_q75": reward.quantile(0.75).item(),
            "ess": wout.ess.float().mean().item(),
            "negative_mass": wout.negative_mass.float().mean().item(),
            "active": wout.active.float().mean().item(),
            "temperature": stage1.temperature,
            "kl_to_uniform": stage1.weight_kl,
            "loss": loss.item(),
            "kl_ref": log_ratio.mean().item(),  # nats per sequence
            "kl_penalty": float(self.reward_config.kl_penalty),
            "feasible": feasible.float().mean().item(),
            "gc": ((x == 1) | (x == 2)).float().mean().item(),
            **timings,
        }
        if self.hparams.log_reference_elbo:
            with torch.no_grad():
                stats["elbo_ref"] = -self.reference.elbo_loss(x, generator=self.generator).mean().item()
        self.history.append(stats)
        self.log_dict({f"train/{k}": v for k, v in stats.items()}, on_step=True, on_epoch=False,
                      prog_bar=False, batch_size=n)
        self.log_dict({"reward": stats["reward_mean"], "ess": stats["ess"]}, prog_bar=True, on_step=True,
                      on_epoch=False, logger=False, batch_size=n)
        return loss
