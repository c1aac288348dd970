"""SiMPO fine-tuning of a pretrained masked diffusion model toward a frozen reward oracle (paper section 5.3).

Online RL has no data set: the train dataloader only counts iterations (:class:`PolicyIterationDataModule`), and
every training step is one policy-improvement iteration of :class:`SiMPOFineTuning` (the equations, with their
paper references, are in ``docs/method.md``):

1. **sample** ``num_groups x group_size`` sequences from the current policy with no grad (``pi_old`` = the policy
   at sampling time, paper Sec. 3.1; the batched ancestral sampler of
   :class:`~simpo_bio.diffusion.masked.MaskedDiffusion`);
2. **reward** them with the frozen fine-tuning oracle (:mod:`simpo_bio.dna.oracle`, checked finite; a list of
   oracles is a conservative ensemble, :mod:`simpo_bio.dna.ensemble`), minus ``kl_penalty`` times the log-ratio
   to the reference (the leash, :mod:`simpo_bio.dna.leash`), designs outside the natural range ranked last
   (``constraints``, :mod:`simpo_bio.dna.naturalness`), then group-relative advantages
   (:func:`simpo_bio.weighting.group_advantages`, paper Example 3.4);
3. **weights** by scheme name (``exp``, ``linear``, ``square``, ``power``, ``linear_neg``, ``square_neg``,
   ``wd1``; :func:`simpo_bio.weighting.compute_weights`, paper Eq. 9-11 and Appendix E) at a fixed temperature or
   one tuned by the dual of paper Appendix G, Eq. 30 (:class:`simpo_bio.weighting.TemperatureController`);
4. **update**: ``update_epochs`` passes of gradient steps on ``sum_i w_i * ELBO_loss(x_i)`` (weights detached;
   paper Eq. 7 with the negative ELBO of section 5.3; negative weights repel, paper section 3.4, capped at
   ``repel_margin`` nats per base), plus an optional anchor ``kl_coef * KL(policy || reference)`` on the denoising
   distributions, with gradient-norm clipping.

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
uses it. Designs and exports at the end of a fit: :mod:`simpo_bio.dna.designs`.

Imports: Lightning, :mod:`simpo_bio.weighting`, :mod:`simpo_bio.dna.checkpoints`, :mod:`simpo_bio.dna.oracle`,
:mod:`simpo_bio.dna.pretrain`, :mod:`simpo_bio.dna.leash`, :mod:`simpo_bio.dna.naturalness`,
:mod:`simpo_bio.dna.ensemble` (and, lazily, :mod:`simpo_bio.dna.hf` / :mod:`simpo_bio.dna.drakes` for those files).
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from simpo_bio.dna.checkpoints import guard_resume, record_model_kind
from simpo_bio.dna.ensemble import EnsembleOracle
from simpo_bio.dna.leash import (
    KL_ESTIMATORS,
    anchor_kl,
    bounded_elbo,
    build_constraints,
    check_kl_control,
    elbo_log_ratio,
    kl_control_step,
    kl_regularized_reward,
    kmer_set_penalty,
)
from simpo_bio.dna.naturalness import feasibility_ranked, kmer_counts
from simpo_bio.dna.oracle import check_rewards, load_oracle
from simpo_bio.dna.policies import MODEL_KIND, RENAMED_HPARAMS, load_policy
from simpo_bio.dna.pretrain import load_pretrained
from simpo_bio.dna.selection import count_kl, reference_spectra
from simpo_bio.weighting import TemperatureController, compute_weights, get_scheme, group_advantages

#: How the policy's ELBO in the weighted loss is estimated (``SiMPOFineTuning(elbo_estimator=...)``).
ELBO_ESTIMATORS = ("count", "time")

__all__ = ["SiMPOFineTuning", "PolicyIterationDataModule", "load_policy"]


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
    if isinstance(spec, list | tuple):  # an ensemble: conservative reward mean - k std (simpo_bio/dna/ensemble.py)
        return EnsembleOracle([_load_oracle_from(s) for s in spec], std_coef=std_coef)
    if callable(spec) and not isinstance(spec, str | Path):
        return spec
    return load_oracle(str(spec))


# ------------------------------------------------------------------------------------------------ the module
class SiMPOFineTuning(pl.LightningModule):
    """SiMPO fine-tuning of a masked diffusion policy (paper sections 3-4 and 5.3; ``docs/method.md`` 5-8).

    Args:
        pretrained: path of the pretrained model checkpoint (:func:`simpo_bio.dna.pretrain.load_pretrained`); from
            Python a :class:`~simpo_bio.diffusion.masked.MaskedDiffusion` module is accepted too. The policy starts
            as a copy of it and the frozen reference stays equal to it.
        oracle: path of the frozen fine-tuning oracle (:func:`simpo_bio.dna.oracle.load_oracle`), a list of paths
            (an ensemble with the conservative reward ``mean - ensemble_std_coef * std``,
            :class:`simpo_bio.dna.ensemble.EnsembleOracle`) or, from Python, any callable
            ``tokens [B, L] long -> rewards [B]``. It is never saved in the checkpoint.
        scheme: weighting scheme name (:func:`simpo_bio.weighting.available_schemes`).
        scheme_params: extra parameters of the scheme, e.g. ``{"eta": 1.0}`` for ``linear_neg`` / ``square_neg``,
            ``{"p": 3}`` for ``power``.
        group_size: ``G``, sequences per group (advantages and weights are normalised within a group).
        num_groups: groups sampled per iteration (reward queries per iteration = ``G * num_groups``).
        seq_len: length ``L`` of the generated sequences (bp).
        num_steps: steps of the ancestral sampler.
        temperature: fixed temperature (advantage units); initial value when ``auto_temperature``.
        auto_temperature: tune the temperature so ``KL(w || uniform) = target_kl`` (paper Appendix G).
        target_kl: target of the temperature dual, nats (must be ``< log G``).
        temperature_lr: Adam learning rate of ``log temperature``.
        normalize_advantage: standardise rewards within each group (``(r - mean) / std``).
        leave_one_out: centre each reward on the mean of the other group members.
        update_epochs: passes over the sampled sequences per iteration.
        minibatch_size: sequences per gradient step (``None`` = all ``G * num_groups``).
        lr, weight_decay, betas: AdamW settings of the policy.
        kmer_penalty: the set-level leash, reward units per nat: ``r - kmer_penalty * p`` with ``p`` how much the
            sequence pulls the batch's 3-mer spectrum away from the reference model's
            (:func:`simpo_bio.dna.leash.kmer_set_penalty`; the reference spectrum from 512 of its samples); 0 = off.
        lr_warmup: iterations of linear learning-rate warmup (``lr * (k + 1) / lr_warmup`` at iteration ``k``);
            0 = none. AdamW's first steps move every parameter by about ``lr`` whatever the signal.
        grad_clip: max gradient norm (``0`` disables clipping).
        kl_coef: coefficient of the KL anchor to the reference in the loss, per nat of path KL (0 = off; the
            shipped configs use 1.0: :func:`simpo_bio.dna.leash.anchor_kl`).
        kl_penalty: ``beta`` of the KL-regularised reward ``r - beta (log pi(x) - log pi_ref(x))``, reward units
            (HepG2 log-odds, nats) per nat of KL to the frozen reference; 0 = off (:mod:`simpo_bio.dna.leash`).
        kl_estimator: how ``log pi(x) - log pi_ref(x)`` is estimated: ``trajectory`` (exact log-ratio of the
            sampling trajectory; the reference runs beside the policy in the sampler) or ``elbo`` (ELBO
            differences with shared noise, 2 draws). Its mean is logged every iteration as ``kl_ref``.
        kl_target: nats per sequence at the last iteration, or ``None``: ``kl_penalty`` is then only the start of
            a ``beta`` that the adaptive controller moves every iteration toward a target rising linearly to this
            KL over ``max_epochs`` (:func:`simpo_bio.dna.leash.kl_control_step`; logged as ``kl_penalty``).
        kl_max: a drift ceiling, nats per sequence, or ``None``: ``beta`` rises above ``kl_penalty`` while the
            iteration's KL estimate exceeds it and relaxes back while below (one-sided; not with ``kl_target``).
        repel_margin: cap of a negative-weight sequence's ELBO term, nats per base (bounded repulsion,
            :func:`simpo_bio.dna.leash.bounded_elbo`); ``None`` = no cap.
        constraints: the natural range designs must stay in (``gc_window``, ``max_homopolymer``, ``max_dust``,
            ``kmer_quantile``; :func:`simpo_bio.dna.leash.build_constraints`): a sampled design outside it ranks
            below every design inside it (:func:`simpo_bio.dna.naturalness.feasibility_ranked`); ``None`` = off.
        ensemble_std_coef: ``k`` of the conservative ensemble reward (used when ``oracle`` is a list).
        elbo_estimator: the policy's ELBO in the weighted loss: ``count`` (masked-subset size ``k ~ U{1..L}``
            with weight ``L / k``, :meth:`~simpo_bio.diffusion.masked.MaskedDiffusion.elbo_loss_by_count`) or
            ``time`` (``t ~ U[eps, 1]`` with weight ``1 / t``, the pretraining loss). With one independent draw the
            two are about equally noisy; ``count`` allows stratified draws and shared masks (``docs/method.md``
            section 8, ``bench/elbo_gradient.py``).
        elbo_draws: Monte-Carlo draws per sequence in the loss (cost grows linearly).
        elbo_shared_noise: the same masked subsets for every sequence of a minibatch (common random numbers:
            the noise of the zero-sum weighted ELBO cancels; ``count`` only, ignored by ``time``).
        log_reference_elbo: log ``elbo_ref`` of the samples under the reference (one extra ELBO pass).
        seed: seed of the module's generator (sampling, ELBO noise, minibatch order).

    Raises:
        ValueError: unknown scheme or invalid sizes (at construction).
        NonFiniteRewardError: the oracle returned NaN or infinity (during training; a ValueError too).
    """

    #: Read by :mod:`simpo_bio.lightning_cli` and :func:`load_policy` for checkpoints of earlier releases.
    RENAMED_HPARAMS = RENAMED_HPARAMS

    def __init__(
        self,
        pretrained: str = "checkpoints/dna/pretrained_dhs.ckpt",
        oracle: str | list[str] = "checkpoints/dna/oracle_ft.ckpt",
        scheme: str = "square_neg",
        scheme_params: dict[str, float] | None = None,
        group_size: int = 32,
        num_groups: int = 2,
        seq_len: int = 200,
        num_steps: int = 32,
        temperature: float = 1.0,
        auto_temperature: bool = False,
        target_kl: float = 1.5,
        temperature_lr: float = 3e-2,
        normalize_advantage: bool = True,
        leave_one_out: bool = False,
        update_epochs: int = 2,
        minibatch_size: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        grad_clip: float = 1.0,
        kl_coef: float = 0.0,
        log_reference_elbo: bool = True,
        seed: int = 0,
        kl_penalty: float = 0.0,
        kl_estimator: str = "trajectory",
        repel_margin: float | None = None,
        constraints: dict[str, Any] | None = None,
        ensemble_std_coef: float = 1.0,
        elbo_estimator: str = "count",
        elbo_draws: int = 4,
        elbo_shared_noise: bool = True,
        lr_warmup: int = 0,
        kmer_penalty: float = 0.0,
        kl_target: float | None = None,
        kl_max: float | None = None,
    ) -> None:
        super().__init__()
        # modules passed from Python are not hyperparameters (only paths are recorded)
        def _is_path(v) -> bool:
            return isinstance(v, str | Path) or (isinstance(v, list | tuple) and all(isinstance(e, str | Path) for e in v))

        self.save_hyperparameters(ignore=[k for k, v in (("pretrained", pretrained), ("oracle", oracle))
                                          if not _is_path(v)])
        for name, v in (("group_size", group_size), ("num_groups", num_groups), ("seq_len", seq_len),
                        ("num_steps", num_steps), ("update_epochs", update_epochs)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if group_size < 2:
            raise ValueError("group_size must be >= 2 (advantages are relative within a group)")
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
        if kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {kl_estimator!r}")
        if elbo_estimator not in ELBO_ESTIMATORS:
            raise ValueError(f"elbo_estimator must be one of {ELBO_ESTIMATORS}, got {elbo_estimator!r}")
        if not (kmer_penalty >= 0 and math.isfinite(kmer_penalty)):
            raise ValueError(f"kmer_penalty must be finite and >= 0, got {kmer_penalty}")
        check_kl_control(kl_penalty, kl_target, kl_max)
        if int(lr_warmup) < 0:
            raise ValueError(f"lr_warmup must be >= 0 iterations, got {lr_warmup}")
        if int(elbo_draws) < 1:
            raise ValueError(f"elbo_draws must be >= 1, got {elbo_draws}")
        if repel_margin is not None and not repel_margin > 0:
            raise ValueError(f"repel_margin must be > 0 nats per base (or null), got {repel_margin}")
        self.constraints = build_constraints(constraints)
        self.scheme = get_scheme(scheme, **(scheme_params or {}))
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
        self.temperature_ctl = TemperatureController(self.scheme, temperature=temperature, target_kl=target_kl)
        self.temperature_ctl.requires_grad_(auto_temperature)

        self.generator = torch.Generator().manual_seed(seed)
        self.register_buffer("reward_queries", torch.zeros((), dtype=torch.long))
        self.register_buffer("kl_beta", torch.tensor(float(kl_penalty), dtype=torch.float64))  # kl_target moves it
        self.history: list[dict[str, float]] = []
        self._extra_sample_kwargs: dict[str, Any] = {}

    # ---------------------------------------------------------------------------------------- plumbing
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

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(self.policy.parameters(), lr=hp.lr, weight_decay=hp.weight_decay,
                                betas=tuple(hp.betas))
        temp_opt = torch.optim.Adam(self.temperature_ctl.parameters(), lr=hp.temperature_lr)
        return [opt, temp_opt]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_model_kind(checkpoint, MODEL_KIND)
        backbone = self.policy.backbone
        if hasattr(backbone, "config"):  # makes the checkpoint self-contained for `simpo-bio sample`
            checkpoint["simpo_policy"] = {"backbone": backbone.config(), "mask_index": self.policy.mask_index,
                                          "eps": self.policy.eps}
        checkpoint["simpo_generator_state"] = self.generator.get_state().cpu()
        checkpoint["simpo_generator_device"] = str(self.generator.device)
        checkpoint["simpo_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        guard_resume(self, checkpoint)  # a checkpoint of another model / config: one line, exit 2
        checkpoint["state_dict"].setdefault("kl_beta", self.kl_beta.clone())  # checkpoints from before kl_target
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

    # ------------------------------------------------------------------------------------------- pieces
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
        kwargs = dict(num_steps=num_steps or self.hparams.num_steps,
                      generator=self.generator if generator is None else generator, device=self.device)
        if batch_size is not None:
            kwargs["batch_size"] = batch_size
        kwargs.update(self._extra_sample_kwargs)
        if reference is not None:
            kwargs.update(reference=reference, return_log_probs=True)
        x = self.policy.sample(num_samples, self.hparams.seq_len, **kwargs)
        self.policy.train(was_training)
        return x

    @torch.no_grad()
    def reward(self, tokens: Tensor) -> Tensor:
        """Frozen fine-tuning oracle rewards ``[B]`` (validated: finite)."""
        r = self.oracle(tokens)
        return check_rewards(torch.as_tensor(r).reshape(-1).to(self.device), "the fine-tuning oracle")

    def kmer_reference_freq(self) -> Tensor:
        """3-mer frequencies ``[64]`` of 512 samples of the frozen reference (own seeded stream; computed once)."""
        if getattr(self, "_kmer_ref", None) is None:
            hp = self.hparams
            self._kmer_ref = reference_spectra(self.reference, hp.seq_len, num_steps=hp.num_steps, seed=hp.seed + 7919,
                                               device=self.device)["kmer3"].float().to(self.device)
        return self._kmer_ref

    def policy_nelbo(self, x: Tensor) -> Tensor:
        """Negative ELBO ``[B]`` (nats) of the policy in the weighted loss, by ``elbo_estimator`` (differentiable)."""
        hp = self.hparams
        if hp.elbo_estimator == "time":
            draws = [self.policy.elbo_loss(x, generator=self.generator) for _ in range(hp.elbo_draws)]
            return torch.stack(draws).mean(0)
        return self.policy.elbo_loss_by_count(x, num_draws=hp.elbo_draws, shared_noise=hp.elbo_shared_noise,
                                              generator=self.generator)

    def anchor_kl(self, x: Tensor) -> Tensor:
        """Per-sample KL anchor ``[B]`` of the loss (:func:`simpo_bio.dna.leash.anchor_kl`; ``kl_coef``)."""
        return anchor_kl(self.policy, self.reference, x, generator=self.generator)

    # ------------------------------------------------------------------------------------- training step
    def training_step(self, batch, batch_idx: int) -> Tensor:
        hp = self.hparams
        opt, temp_opt = self.optimizers()
        n = hp.group_size * hp.num_groups
        timings = {}

        t0 = time.perf_counter()
        if hp.kl_estimator == "trajectory":
            x, log_p, log_q = self.generate(n, reference=self.reference)
            log_ratio = log_p - log_q
        else:
            x = self.generate(n)
            log_ratio = elbo_log_ratio(self.policy, self.reference, x, generator=self.generator)
        timings["time_sample_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        reward = self.reward(x)
        timings["time_reward_s"] = time.perf_counter() - t0
        if reward.numel() != n:
            raise ValueError(f"the fine-tuning oracle returned {reward.numel()} rewards for {n} sequences")
        self.reward_queries += n

        t0 = time.perf_counter()
        beta = float(self.kl_beta)
        shaped = kl_regularized_reward(reward, log_ratio, beta)
        kl_ref = log_ratio.mean().item()  # nats per sequence: the KL controller's input and the train/kl_ref log
        self.kl_beta.fill_(kl_control_step(beta, kl_ref, base=hp.kl_penalty, target=hp.get("kl_target"), cap=hp.get(
            "kl_max"), progress=(self.current_epoch + 1) / max(1, self.trainer.max_epochs or 1)))
        if hp.kmer_penalty > 0:  # the set-level leash: the batch's 3-mer spectrum vs the reference model's
            shaped = shaped - hp.kmer_penalty * kmer_set_penalty(x, self.kmer_reference_freq())
        shaped = shaped.view(hp.num_groups, hp.group_size)
        feasible = torch.ones(n, dtype=torch.bool, device=self.device)
        if self.constraints is not None:
            violation = self.constraints.violation(x)
            feasible = violation == 0
            shaped = feasibility_ranked(shaped, violation.view_as(shaped))
        groups = shaped
        advantage = group_advantages(groups, normalize=hp.normalize_advantage, leave_one_out=hp.leave_one_out)
        temperature = self.temperature_ctl.temperature.to(self.device)
        wout = compute_weights(advantage, self.scheme, temperature)
        weight = wout.weight.detach().reshape(-1)  # [n]; each group sums to 1
        if hp.auto_temperature:
            temp_opt.zero_grad()
            self.temperature_ctl.loss(wout.weight).backward()
            temp_opt.step()

        # linear warmup over the first lr_warmup iterations (a function of the iteration: resumes exactly)
        scale = min(1.0, (self.current_epoch + 1) / hp.lr_warmup) if hp.lr_warmup else 1.0
        for group in opt.param_groups:
            group["lr"] = hp.lr * scale
        mb = hp.minibatch_size or n
        losses = []
        self.policy.train()
        for _ in range(hp.update_epochs):
            perm = torch.randperm(n, generator=self.generator, device=self.generator.device).to(self.device)
            for s in range(0, n, mb):
                idx = perm[s : s + mb]
                elbo = self.policy_nelbo(x[idx])  # [b], nats
                elbo = bounded_elbo(elbo, weight[idx], hp.repel_margin, hp.seq_len)
                # groups are averaged: the full-batch loss is mean_groups sum_i w_i ELBO_i
                loss = (weight[idx] * elbo).sum() / hp.num_groups
                if hp.kl_coef > 0:
                    loss = loss + hp.kl_coef * self.anchor_kl(x[idx]).sum() / n
                opt.zero_grad()
                self.manual_backward(loss)
                if hp.grad_clip > 0:
                    self.clip_gradients(opt, gradient_clip_val=hp.grad_clip, gradient_clip_algorithm="norm")
                opt.step()
                losses.append(loss.detach())
        timings["time_update_s"] = time.perf_counter() - t0

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
            "temperature": float(temperature),
            "kl_to_uniform": self.temperature_ctl.kl(wout.weight).item(),
            "loss": torch.stack(losses).mean().item(),
            "kl_ref": kl_ref,
            "kl_penalty": beta,
            "feasible": feasible.float().mean().item(),
            "gc": ((x == 1) | (x == 2)).float().mean().item(),
            **timings,
        }
        if hp.kmer_penalty > 0:  # KL(batch 3-mer spectrum || reference spectrum), nats
            f = kmer_counts(x).sum(0) + 1.0
            stats["kmer_kl"] = float(count_kl(f, self.kmer_reference_freq()) / f.sum())
        if hp.log_reference_elbo:
            with torch.no_grad():
                stats["elbo_ref"] = -self.reference.elbo_loss(x, generator=self.generator).mean().item()
        self.history.append(stats)
        self.log_dict({f"train/{k}": v for k, v in stats.items()}, on_step=True, on_epoch=False,
                      prog_bar=False, batch_size=n)
        self.log_dict({"reward": stats["reward_mean"], "ess": stats["ess"]}, prog_bar=True, on_step=True,
                      on_epoch=False, logger=False, batch_size=n)
        return torch.stack(losses).mean()
