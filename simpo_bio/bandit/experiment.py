"""The SiMPO loop of the paper's 1-D bandit (Sec. 5.1): a flow policy on an interval, improved by reweighting.

One iteration (Stage I: paper Eq. 9 and Eq. 11; Stage II: paper Eq. 7; ``docs/method.md``)::

    a_1..a_N ~ pi_theta                     (Euler ODE sampler, N = group_size)
    r_j = r(a_j)                            (a reward function of simpo_bio.bandit.rewards)
    A_j = (r_j - mean r) / (std r + 1e-8)   (group-relative advantages, simpo_bio.weighting.group_advantages)
    w = compute_weights(A, scheme, temperature)          (any scheme of the registry, by name)
    theta <- theta - lr * grad sum_j w_j || v_theta(a_t^j, t) - (a_j - eps) ||^2      (update_epochs Adam steps)

Advantages, weights and the temperature dual are the shared Stage-I step :class:`simpo_bio.weighting.WeightingStep`
(``temperature_from: unsigned`` is its ``dual_scheme``).

The metric is the simple regret ``E_{a ~ pi}[r* - r(a)]`` (reward units) estimated with ``eval_samples`` fresh
samples. :func:`run_experiment` runs every (scheme, seed) pair of a :class:`~simpo_bio.bandit.BanditConfig`.

Imports: numpy, torch, tqdm, :mod:`simpo_bio.diffusion.flow`, :mod:`simpo_bio.weighting` and the bandit's
``config`` and ``rewards``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from simpo_bio.bandit.config import UNSIGNED_COUNTERPART, BanditConfig, SchemeSpec
from simpo_bio.bandit.rewards import RewardFunction, get_reward
from simpo_bio.diffusion.flow import FlowPolicy, VelocityMLP, flow_matching_loss, sample_actions
from simpo_bio.weighting import WeightingStep

__all__ = ["BanditRun", "make_policy", "pretrain_policy", "run_experiment", "train_bandit"]


def make_policy(cfg: BanditConfig, reward: RewardFunction, seed: int) -> FlowPolicy:
    """A fresh 1-D flow policy (initialised with ``torch.manual_seed(seed)``) on the reward's interval."""
    torch.manual_seed(seed)
    net = VelocityMLP(1, hidden=cfg.hidden, depth=cfg.depth, time_embed_dim=cfg.time_embed_dim, activation=cfg.activation)
    return FlowPolicy(net, num_steps=cfg.num_steps, low=reward.low, high=reward.high, bound="clip")


def pretrain_policy(cfg: BanditConfig, reward: RewardFunction, seed: int) -> FlowPolicy:
    """Fit a fresh policy to the reward's initial Gaussian by plain flow matching (``pretrain_steps`` Adam steps).

    Returns:
        The fitted :class:`FlowPolicy`; every scheme of a seed starts from (a copy of) this same policy.
    """
    policy = make_policy(cfg, reward, seed)
    gen = torch.Generator().manual_seed(10_000 + seed)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.pretrain_lr)
    for _ in range(cfg.pretrain_steps):
        loss = flow_matching_loss(policy.velocity, reward.sample_init(cfg.pretrain_batch, gen), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return policy


@dataclass
class BanditRun:
    """The record of one (scheme, seed) run.

    Attributes:
        scheme, seed: what was run.
        iteration: ``[E]`` iterations at which the policy was evaluated (0 = before any update).
        regret: ``[E]`` simple regret ``E_pi[r* - r(a)]`` (reward units).
        global_mass: ``[E]`` fraction of policy samples in the global optimum's basin.
        mean, std: ``[E]`` mean and standard deviation of the policy's actions.
        temperature: ``[E]`` temperature in use at that iteration.
        negative_mass: ``[E]`` sum of |negative weights| of the last group (0 for unsigned schemes).
        density: ``[E, bins]`` histogram density of the policy over ``[low, high]``.
        escape_regret: the reward's :meth:`RewardFunction.escape_regret`.
    """

    scheme: str
    seed: int
    iteration: np.ndarray
    regret: np.ndarray
    global_mass: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    temperature: np.ndarray
    negative_mass: np.ndarray
    density: np.ndarray
    escape_regret: float = math.inf

    @property
    def final_regret(self) -> float:
        """Regret at the last evaluation (reward units)."""
        return float(self.regret[-1])

    @property
    def at_global(self) -> bool:
        """Final policy: > 50% of its mass in the global basin and regret below ``escape_regret``."""
        return bool(self.global_mass[-1] > 0.5 and self.regret[-1] < self.escape_regret)

    @property
    def in_global_basin(self) -> bool:
        """Final policy has > 50% of its mass in the global basin (regret not considered)."""
        return bool(self.global_mass[-1] > 0.5)


def train_bandit(
    cfg: BanditConfig, reward: RewardFunction, scheme: SchemeSpec, seed: int, init_policy: FlowPolicy | None = None
) -> BanditRun:
    """Run the SiMPO loop of this module's docstring for one scheme and seed (paper Sec. 5.1).

    Args:
        cfg: hyper-parameters.
        reward: the reward function.
        scheme: the weighting scheme (registry name ``scheme.scheme``, its ``eta``/``p`` in
            ``scheme.scheme_params``); the run is recorded under ``scheme.label``.
        seed: seeds the sampling generator; the policy starts from ``init_policy`` (copied, not modified) or from
            :func:`pretrain_policy` with this seed.

    Returns:
        :class:`BanditRun` with the regret curve and the policy density over training.

    Raises:
        ValueError: unknown scheme or bad scheme parameters.
    """
    policy = copy.deepcopy(init_policy) if init_policy is not None else pretrain_policy(cfg, reward, seed)
    weight_scheme = scheme.build()
    gen = torch.Generator().manual_seed(seed)
    eval_gen = torch.Generator().manual_seed(1_000_000 + seed)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    dual_scheme = None
    if cfg.temperature_from == "unsigned" and scheme.scheme in UNSIGNED_COUNTERPART:
        dual_scheme = UNSIGNED_COUNTERPART[scheme.scheme]
    auto = cfg.target_kl is not None
    stage_one = WeightingStep(weight_scheme, temperature=cfg.temperature, auto_temperature=auto,
                              target_kl=cfg.target_kl if auto else 1.0, temperature_lr=cfg.temperature_lr,
                              dual_scheme=dual_scheme)
    _, r_star = reward.optimum()
    edges = torch.linspace(reward.low, reward.high, cfg.density_bins + 1)
    rec: dict[str, list[Any]] = {k: [] for k in ("iteration", "regret", "global_mass", "mean", "std",
                                                  "temperature", "negative_mass", "density")}
    negative_mass = 0.0

    def temperature_now() -> float:
        return float(stage_one.temperature) if auto else cfg.temperature

    def evaluate(it: int) -> None:
        a = sample_actions(policy.velocity, None, cfg.eval_samples, num_steps=cfg.num_steps, low=reward.low,
                           high=reward.high, generator=eval_gen)[:, 0]
        hist = torch.histogram(a.double(), bins=edges.double(), density=True).hist
        rec["iteration"].append(it)
        rec["regret"].append(float((r_star - reward(a)).mean()))
        rec["global_mass"].append(float(reward.in_global_basin(a).float().mean()))
        rec["mean"].append(float(a.mean()))
        rec["std"].append(float(a.std()))
        rec["temperature"].append(temperature_now())
        rec["negative_mass"].append(negative_mass)
        rec["density"].append(hist.float().numpy())

    evaluate(0)
    for it in range(1, cfg.iterations + 1):
        action = sample_actions(policy.velocity, None, cfg.group_size, num_steps=cfg.num_steps,
                                noise_scale=cfg.sampler_noise, low=reward.low, high=reward.high, generator=gen)
        weight = stage_one(reward(action)).weights.weight.detach()
        negative_mass = float(weight.clamp_max(0).abs().sum())
        rows = action.repeat(cfg.elbo_draws, 1)
        row_weight = weight.repeat(cfg.elbo_draws) / cfg.elbo_draws
        for _ in range(cfg.update_epochs):
            loss = flow_matching_loss(policy.velocity, rows, weight=row_weight, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if it % cfg.eval_every == 0 or it == cfg.iterations:
            evaluate(it)
    arrays = {k: np.asarray(v) for k, v in rec.items()}
    return BanditRun(scheme=scheme.label, seed=seed, **arrays, escape_regret=reward.escape_regret())


def run_experiment(cfg: BanditConfig, store=None) -> list[BanditRun]:
    """All (scheme, seed) runs of ``cfg``; every scheme of a seed starts from the same pretrained policy.

    Args:
        cfg: the experiment.
        store: optional :class:`simpo_bio.bandit.checkpoints.RunStore` (anything with ``load(spec, seed) ->
            BanditRun | None`` and ``save(run, spec, seed)``): runs it holds are loaded instead of computed (a
            seed whose runs are all saved is not even pretrained) and every computed run is saved at once.

    Raises:
        ValueError: invalid config, unknown reward or scheme.
    """
    from tqdm.auto import tqdm

    cfg.validate()
    torch.set_num_threads(cfg.threads)
    reward = get_reward(cfg.reward)
    specs = cfg.schemes
    runs: list[BanditRun] = []
    bar = tqdm(total=cfg.seeds * len(specs), desc=f"bandit {cfg.reward}", disable=not cfg.progress, unit="run")
    for seed in range(cfg.seed_offset, cfg.seed_offset + cfg.seeds):
        saved = {i: store.load(spec, seed) for i, spec in enumerate(specs)} if store is not None else {}
        init = None
        for i, spec in enumerate(specs):
            run = saved.get(i)
            if run is None:
                if init is None:
                    bar.set_postfix_str(f"seed {seed}: pretraining")
                    init = pretrain_policy(cfg, reward, seed)
                bar.set_postfix_str(f"seed {seed}: {spec.label}")
                run = train_bandit(cfg, reward, spec, seed, init_policy=init)
                if store is not None:
                    store.save(run, spec, seed)
            runs.append(run)
            bar.set_postfix_str(f"seed {seed}: {spec.label} regret {run.final_regret:.3f}")
            bar.update(1)
    bar.close()
    return runs
