"""The paper's 1-D bandit (SiMPO section 5.1): a flow policy on an interval, improved by reweighted flow matching.

One iteration of the loop (SPEC 2, 3, 5)::

    a_1..a_N ~ pi_theta                     (Euler ODE sampler, N = group_size)
    r_j = r(a_j)                            (a reward function below)
    A_j = (r_j - mean r) / (std r + 1e-8)   (group-relative advantages, simpo_bio.weighting.group_advantages)
    w = compute_weights(A, scheme, temperature)          (any scheme of the registry, by name)
    theta <- theta - lr * grad sum_j w_j || v_theta(a_t^j, t) - (a_j - eps) ||^2      (a few Adam steps)

The metric is the simple regret ``E_{a ~ pi}[r* - r(a)]`` estimated with ``eval_samples`` fresh samples.

Reward functions (on the action interval ``[-1, 1]``) are sums of Gaussian bumps
``r(a) = sum_k h_k exp(-(a - c_k)^2 / (2 s_k^2))`` (the paper gives only plots, so these are our choices):

==============  =========================================  ===================================  =================
name            bumps (center c, height h, width s)        policy initialisation                optimum
==============  =========================================  ===================================  =================
``two_optima``  global (+0.4, 1.0, 0.25), local (-0.4,      N(-0.4, 0.15^2): on the local        a* = +0.4000,
                0.7, 0.15); r(-0.4) = 0.706                 optimum                              r* = 1.0000
``broad``       global (+0.5, 1.0, 0.25), second (-0.5,     N(0, 0.35^2): between the optima     a* = +0.4997,
                0.8, 0.25); r(-0.5) = 0.800                                                      r* = 1.0003
``sharp``       global (+0.5, 1.0, 0.05), second (-0.5,     N(0, 0.35^2): between the optima     a* = +0.5000,
                0.8, 0.05); r(-0.5) = 0.800                                                      r* = 1.0000
==============  =========================================  ===================================  =================

``a*`` and ``r*`` are computed on a grid of 200,001 points (:meth:`RewardFunction.optimum`). A run "ends at the
global optimum" (``at_global``) when more than half of the final policy's samples lie in the global optimum's basin
(the side of the reward valley between the two bumps that holds the global bump) AND its final regret is below
half the gap between the optima, ``(r* - r_local) / 2`` (0.147 on ``two_optima``, 0.100 on ``broad``/``sharp``).
The regret condition was added after the first run, where policies pushed against the action bound at ``a = +1``
(regret 0.94) counted as "in the global basin".

Command line (``simpo-bio bandit --help``)::

    simpo-bio bandit --reward two_optima --schemes linear,square,exp,linear_neg --seeds 10 --out runs/bandit

writes ``bandit_<reward>.csv`` (regret curves, one row per scheme x seed x evaluation), ``bandit_<reward>.png``
(reward + initial policy, and regret mean +- std over seeds), ``bandit_<reward>_density.png`` (the policy density
over training, one panel per scheme, first seed) and ``bandit_<reward>_density.npz`` (all densities).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from simpo_bio.diffusion.flow import FlowPolicy, VelocityMLP, flow_matching_loss, sample_actions
from simpo_bio.fileio import atomic_path

__all__ = [
    "REWARDS",
    "BanditConfig",
    "BanditRun",
    "RewardFunction",
    "SchemeSpec",
    "cli_main",
    "get_reward",
    "load_runs",
    "make_policy",
    "parse_schemes",
    "plot_density",
    "plot_regret",
    "pretrain_policy",
    "run_experiment",
    "runs_to_frame",
    "save_outputs",
    "summarize",
    "train_bandit",
]


# ----------------------------------------------------------------------------------------------------- rewards
@dataclass(frozen=True)
class RewardFunction:
    """A 1-D reward ``r(a) = sum_k h_k exp(-(a - c_k)^2 / (2 s_k^2))`` on ``[low, high]`` with its initial policy.

    Attributes:
        name: registry name.
        bumps: ``((c, h, s), ...)``; the first bump is the global optimum.
        init_mean, init_std: the initial policy is ``N(init_mean, init_std^2)`` clipped to the interval.
        low, high: action interval.
        description: one line for plots and help.
    """

    name: str
    bumps: tuple[tuple[float, float, float], ...]
    init_mean: float
    init_std: float
    low: float = -1.0
    high: float = 1.0
    description: str = ""

    def __call__(self, action: Tensor) -> Tensor:
        """Reward of ``action`` (``[...]`` or ``[..., 1]``, action units) -> same shape without a trailing 1."""
        if action.dim() > 0 and action.shape[-1] == 1:
            action = action[..., 0]
        out = torch.zeros_like(action)
        for c, h, s in self.bumps:
            out = out + h * torch.exp(-((action - c) ** 2) / (2.0 * s * s))
        return out

    def grid(self, num: int = 200_001) -> Tensor:
        """``[num]`` float64 grid over ``[low, high]``."""
        return torch.linspace(self.low, self.high, num, dtype=torch.float64)

    def optimum(self) -> tuple[float, float]:
        """``(a*, r*)``: argmax and max of the reward on a 200,001-point grid (error < 1e-5 action units)."""
        grid = self.grid()
        values = self(grid)
        i = int(values.argmax())
        return float(grid[i]), float(values[i])

    def basin_boundary(self) -> float:
        """Action of the reward minimum between the first (global) and second bump: the basins' border."""
        (c0, _, _), (c1, _, _) = self.bumps[0], self.bumps[1]
        lo, hi = min(c0, c1), max(c0, c1)
        grid = torch.linspace(lo, hi, 20_001, dtype=torch.float64)
        return float(grid[int(self(grid).argmin())])

    def local_optimum(self) -> tuple[float, float]:
        """``(a, r)``: argmax and max of the reward on the second bump's side of the valley (the other optimum)."""
        grid = self.grid()
        values = self(grid).masked_fill(self.in_global_basin(grid), -math.inf)
        i = int(values.argmax())
        return float(grid[i]), float(values[i])

    def escape_regret(self) -> float:
        """Regret threshold of "ended at the global optimum": half the gap ``(r* - r_local) / 2``."""
        return (self.optimum()[1] - self.local_optimum()[1]) / 2.0

    def in_global_basin(self, action: Tensor) -> Tensor:
        """Boolean mask, same shape as ``action`` (without trailing 1): on the global bump's side of the valley."""
        if action.dim() > 0 and action.shape[-1] == 1:
            action = action[..., 0]
        border = self.basin_boundary()
        return action > border if self.bumps[0][0] > border else action < border

    def sample_init(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """``[num, 1]`` draws of the initial policy ``N(init_mean, init_std^2)`` clipped to ``[low, high]``."""
        x = self.init_mean + self.init_std * torch.randn(num, 1, generator=generator)
        return x.clamp(self.low, self.high)


REWARDS: dict[str, RewardFunction] = {
    "two_optima": RewardFunction(
        "two_optima",
        bumps=((0.4, 1.0, 0.25), (-0.4, 0.7, 0.15)),
        init_mean=-0.4,
        init_std=0.15,
        description="global optimum at +0.4 (broad), local at -0.4; policy starts on the local one",
    ),
    "broad": RewardFunction(
        "broad",
        bumps=((0.5, 1.0, 0.25), (-0.5, 0.8, 0.25)),
        init_mean=0.0,
        init_std=0.35,
        description="two broad optima (width 0.25) at +0.5 (global) and -0.5; policy starts between them",
    ),
    "sharp": RewardFunction(
        "sharp",
        bumps=((0.5, 1.0, 0.05), (-0.5, 0.8, 0.05)),
        init_mean=0.0,
        init_std=0.35,
        description="two sharp optima (width 0.05) at +0.5 (global) and -0.5; policy starts between them",
    ),
}


def get_reward(name: str) -> RewardFunction:
    """The reward function called ``name``.

    Raises:
        ValueError: unknown name (the message lists the available ones).
    """
    if name not in REWARDS:
        raise ValueError(f"unknown bandit reward {name!r}; available: {sorted(REWARDS)}")
    return REWARDS[name]


# ----------------------------------------------------------------------------------------------------- schemes
@dataclass(frozen=True)
class SchemeSpec:
    """A weighting scheme by registry name plus its parameters, e.g. ``linear_neg:eta=0.5`` or ``power:p=3``."""

    label: str
    name: str
    params: dict[str, float] = field(default_factory=dict)


def parse_schemes(text: str | Sequence[str], default_eta: float | None = None) -> list[SchemeSpec]:
    """Parse ``"linear,square,exp,linear_neg:eta=0.5"`` into validated :class:`SchemeSpec` s.

    A parameter-free signed scheme (``linear_neg``, ``square_neg``) gets ``eta = default_eta`` when that is given.

    Raises:
        ValueError: empty list, malformed ``key=value``, unknown scheme (names the registry) or bad parameter.
    """
    from simpo_bio.weighting import get_scheme

    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not items:
        raise ValueError("no weighting scheme given (e.g. --schemes linear,square,exp,linear_neg)")
    specs: list[SchemeSpec] = []
    for item in items:
        name, *kvs = item.split(":")
        params: dict[str, float] = {}
        for kv in kvs:
            key, sep, value = kv.partition("=")
            if not sep:
                raise ValueError(f"scheme {item!r}: expected name:key=value, got {kv!r}")
            try:
                params[key.strip()] = float(value)
            except ValueError as err:
                raise ValueError(f"scheme {item!r}: {key}={value!r} is not a number") from err
        if default_eta is not None and name in ("linear_neg", "square_neg") and "eta" not in params:
            params["eta"] = float(default_eta)
        get_scheme(name, **params)  # validates name and parameters (ValueError naming the registry)
        specs.append(SchemeSpec(item, name, params))
    return specs


#: the unsigned scheme whose weights tune a signed scheme's temperature when ``temperature_from == "unsigned"``
UNSIGNED_COUNTERPART = {"linear_neg": "linear", "square_neg": "square", "wd1": "exp"}


# ----------------------------------------------------------------------------------------------------- config
@dataclass
class BanditConfig:
    """Every hyper-parameter of the bandit experiment (defaults = what bench/bandit.py and the README use).

    They were fixed before any scheme comparison was run (see bench/RESULTS.md, section Bandit).

    Attributes:
        reward: reward function name (``two_optima``, ``broad``, ``sharp``).
        schemes: comma-separated scheme specs, ``name[:key=value...]``.
        seeds: number of seeds (``seed_offset, ..., seed_offset + seeds - 1``).
        seed_offset: first seed.
        eta: default ``eta`` of ``linear_neg``/``square_neg`` when the spec gives none (units of advantage/temperature).
        iterations: policy-improvement iterations (one group of actions each).
        group_size: ``N`` actions sampled per iteration (the group of SPEC 3).
        updates_per_iteration: Adam steps on the weighted flow-matching loss per iteration (same group).
        noise_copies: each action is repeated this many times per update with independent ``(t, eps)`` (variance
            reduction; the weights are divided by it).
        lr: Adam learning rate of the policy.
        temperature: initial (or fixed) temperature dividing the standardised advantages.
        target_kl: KL(w || uniform) targeted by the temperature controller (paper Appendix G); ``None`` keeps the
            temperature fixed.
        temperature_lr: Adam learning rate of the log-temperature.
        temperature_from: ``"unsigned"`` (default): a signed scheme's temperature is tuned on the KL of its unsigned
            counterpart's weights at the same temperature (``linear_neg`` -> ``linear``, ``square_neg`` ->
            ``square``, ``wd1`` -> ``exp``), so ``linear_neg`` runs at exactly the temperature ``linear`` would and
            only the negative floor differs (``eta = 0`` reproduces ``linear`` exactly). ``"own"``: the library's
            :class:`~simpo_bio.weighting.TemperatureController` on the scheme's own weights (KL of the positive part
            since weighting commit f7d2ad5; before it, KL of ``|w|``, which stays near 0.1-0.2 nats for
            ``linear_neg`` at every temperature, so a 1.0 target drove the temperature to its 1e-4 floor: the first
            bandit run, see bench/RESULTS.md, section Bandit).
        hidden, depth, time_embed_dim, activation: the velocity MLP.
        num_steps: Euler steps of the sampler.
        exploration_noise: ``noise_scale`` of the sampler while collecting the group (0 = the flow's own spread).
        pretrain_steps, pretrain_batch, pretrain_lr: fitting the initial policy to the reward's init Gaussian.
        eval_every: evaluate the regret every this many iterations (and at 0 and at the end).
        eval_samples: samples per regret estimate.
        density_bins: histogram bins of the recorded policy density over ``[low, high]``.
        out: output folder.
        threads: torch CPU threads.
        progress: show a progress bar.
    """

    reward: str = "two_optima"
    schemes: str = "linear,square,exp,linear_neg"
    seeds: int = 10
    seed_offset: int = 0
    eta: float = 1.0
    iterations: int = 200
    group_size: int = 64
    updates_per_iteration: int = 4
    noise_copies: int = 4
    lr: float = 1e-3
    temperature: float = 1.0
    target_kl: float | None = 1.0
    temperature_lr: float = 0.05
    temperature_from: str = "unsigned"
    hidden: int = 64
    depth: int = 3
    time_embed_dim: int = 16
    activation: str = "mish"
    num_steps: int = 20
    exploration_noise: float = 0.0
    pretrain_steps: int = 1500
    pretrain_batch: int = 512
    pretrain_lr: float = 3e-3
    eval_every: int = 5
    eval_samples: int = 1024
    density_bins: int = 80
    out: str = "runs/bandit"
    threads: int = 1
    progress: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        get_reward(self.reward)
        positive = ("seeds", "iterations", "group_size", "updates_per_iteration", "noise_copies", "num_steps",
                    "eval_every", "eval_samples", "density_bins", "threads", "hidden", "depth")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"bandit config: {name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(f"bandit config: group_size must be >= 2, got {self.group_size}")
        for name in ("lr", "temperature", "temperature_lr", "pretrain_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"bandit config: {name} must be > 0, got {getattr(self, name)}")
        if self.target_kl is not None and not 0 < self.target_kl < math.log(self.group_size):
            raise ValueError(
                f"bandit config: target_kl must be in (0, log(group_size) = {math.log(self.group_size):.3f}), "
                f"got {self.target_kl}"
            )
        if self.temperature_from not in ("unsigned", "own"):
            raise ValueError(f"bandit config: temperature_from must be 'unsigned' or 'own', got {self.temperature_from!r}")
        if self.exploration_noise < 0 or self.pretrain_steps < 0:
            raise ValueError("bandit config: exploration_noise and pretrain_steps must be >= 0")


# ----------------------------------------------------------------------------------------------------- policy
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
    """Run the SiMPO loop of this module's docstring for one scheme and seed.

    Args:
        cfg: hyper-parameters.
        reward: the reward function.
        scheme: the weighting scheme (its ``eta``/``p`` in ``scheme.params``).
        seed: seeds the sampling generator; the policy starts from ``init_policy`` (copied, not modified) or from
            :func:`pretrain_policy` with this seed.

    Returns:
        :class:`BanditRun` with the regret curve and the policy density over training.
    """
    from simpo_bio.weighting import TemperatureController, compute_weights, get_scheme, group_advantages

    policy = copy.deepcopy(init_policy) if init_policy is not None else pretrain_policy(cfg, reward, seed)
    weight_scheme = get_scheme(scheme.name, **scheme.params)
    gen = torch.Generator().manual_seed(seed)
    eval_gen = torch.Generator().manual_seed(1_000_000 + seed)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    controller = None
    kl_scheme = weight_scheme
    if cfg.temperature_from == "unsigned" and scheme.name in UNSIGNED_COUNTERPART:
        kl_scheme = get_scheme(UNSIGNED_COUNTERPART[scheme.name])
    if cfg.target_kl is not None:
        controller = TemperatureController(weight_scheme, init_temperature=cfg.temperature, target_kl=cfg.target_kl)
        temp_opt = torch.optim.Adam(controller.parameters(), lr=cfg.temperature_lr)
    _, r_star = reward.optimum()
    edges = torch.linspace(reward.low, reward.high, cfg.density_bins + 1)
    rec: dict[str, list[Any]] = {k: [] for k in ("iteration", "regret", "global_mass", "mean", "std",
                                                  "temperature", "negative_mass", "density")}
    negative_mass = 0.0

    def temperature_now() -> float:
        return float(controller.temperature) if controller is not None else cfg.temperature

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
                                noise_scale=cfg.exploration_noise, low=reward.low, high=reward.high, generator=gen)
        advantage = group_advantages(reward(action))
        out = compute_weights(advantage, weight_scheme, temperature_now())
        weight = out.weight.detach()
        negative_mass = float(weight.clamp_max(0).abs().sum())
        if controller is not None:
            kl_weight = weight if kl_scheme is weight_scheme else compute_weights(advantage, kl_scheme, temperature_now()).weight
            temp_loss = controller.loss(kl_weight)
            temp_opt.zero_grad(set_to_none=True)
            temp_loss.backward()
            temp_opt.step()
        rows = action.repeat(cfg.noise_copies, 1)
        row_weight = weight.repeat(cfg.noise_copies) / cfg.noise_copies
        for _ in range(cfg.updates_per_iteration):
            loss = flow_matching_loss(policy.velocity, rows, weight=row_weight, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if it % cfg.eval_every == 0 or it == cfg.iterations:
            evaluate(it)
    arrays = {k: np.asarray(v) for k, v in rec.items()}
    return BanditRun(scheme=scheme.label, seed=seed, **arrays, escape_regret=reward.escape_regret())


# ----------------------------------------------------------------------------------------------------- experiment
def run_experiment(cfg: BanditConfig) -> list[BanditRun]:
    """All (scheme, seed) runs of ``cfg``; every scheme of a seed starts from the same pretrained policy.

    Raises:
        ValueError: invalid config, unknown reward or scheme.
    """
    from tqdm.auto import tqdm

    cfg.validate()
    torch.set_num_threads(cfg.threads)
    reward = get_reward(cfg.reward)
    specs = parse_schemes(cfg.schemes, default_eta=cfg.eta)
    runs: list[BanditRun] = []
    bar = tqdm(total=cfg.seeds * len(specs), desc=f"bandit {cfg.reward}", disable=not cfg.progress, unit="run")
    for seed in range(cfg.seed_offset, cfg.seed_offset + cfg.seeds):
        bar.set_postfix_str(f"seed {seed}: pretraining")
        init = pretrain_policy(cfg, reward, seed)
        for spec in specs:
            bar.set_postfix_str(f"seed {seed}: {spec.label}")
            run = train_bandit(cfg, reward, spec, seed, init_policy=init)
            runs.append(run)
            bar.set_postfix_str(f"seed {seed}: {spec.label} regret {run.final_regret:.3f}")
            bar.update(1)
    bar.close()
    return runs


def runs_to_frame(runs: Sequence[BanditRun], reward: str):
    """Long-format ``pandas.DataFrame``: one row per (scheme, seed, evaluation)."""
    import pandas as pd

    frames = []
    for run in runs:
        frames.append(pd.DataFrame({
            "reward": reward, "scheme": run.scheme, "seed": run.seed, "iteration": run.iteration,
            "regret": run.regret, "global_mass": run.global_mass, "mean_action": run.mean, "std_action": run.std,
            "temperature": run.temperature, "negative_mass": run.negative_mass,
        }))
    return pd.concat(frames, ignore_index=True)


def load_runs(csv_path: str | Path, npz_path: str | Path | None = None) -> list[BanditRun]:
    """Rebuild :class:`BanditRun` s from a CSV written by :func:`save_outputs` (and its density ``.npz``).

    Raises:
        FileNotFoundError: missing file. ValueError: the CSV mixes rewards or lacks columns.
    """
    import pandas as pd

    frame = pd.read_csv(csv_path)
    missing = {"reward", "scheme", "seed", "iteration", "regret", "global_mass"} - set(frame.columns)
    if missing:
        raise ValueError(f"{csv_path}: not a bandit CSV, missing columns {sorted(missing)}")
    if frame["reward"].nunique() != 1:
        raise ValueError(f"{csv_path}: expected one reward, got {sorted(frame['reward'].unique())}")
    reward = get_reward(frame["reward"].iloc[0])
    dens = np.load(npz_path) if npz_path is not None else None
    runs = []
    for i, ((scheme, seed), g) in enumerate(frame.groupby(["scheme", "seed"], sort=False)):
        g = g.sort_values("iteration")
        density = np.zeros((len(g), 1))
        if dens is not None:
            match = np.flatnonzero((dens["schemes"] == scheme) & (dens["seeds"] == seed))
            density = dens["density"][match[0] if len(match) else i]
        runs.append(BanditRun(
            scheme=str(scheme), seed=int(seed), iteration=g["iteration"].to_numpy(), regret=g["regret"].to_numpy(),
            global_mass=g["global_mass"].to_numpy(), mean=g["mean_action"].to_numpy(), std=g["std_action"].to_numpy(),
            temperature=g["temperature"].to_numpy(), negative_mass=g["negative_mass"].to_numpy(), density=density,
            escape_regret=reward.escape_regret(),
        ))
    return runs


def summarize(runs: Sequence[BanditRun]):
    """One row per scheme, statistics over seeds (std: population std over seeds).

    Columns: ``final_regret_*`` (last evaluation), ``late_regret_*`` (mean over the evaluations of the last
    quarter of training: less sensitive to the jitter of a collapsed policy around a sharp optimum),
    ``mean_regret`` (mean over all evaluations: speed of convergence), ``at_global`` (fraction of seeds that end at
    the global optimum, see :attr:`BanditRun.at_global`) and ``in_global_basin`` (mass condition only).
    """
    import pandas as pd

    rows = []
    for label in dict.fromkeys(r.scheme for r in runs):
        sel = [r for r in runs if r.scheme == label]
        final = np.array([r.final_regret for r in sel])
        late = np.array([r.regret[r.iteration >= 0.75 * r.iteration[-1]].mean() for r in sel])
        rows.append({
            "scheme": label, "seeds": len(sel), "final_regret_mean": final.mean(), "final_regret_std": final.std(),
            "late_regret_mean": late.mean(), "late_regret_std": late.std(),
            "mean_regret": float(np.mean([r.regret.mean() for r in sel])),
            "final_regret_median": float(np.median(final)), "at_global": float(np.mean([r.at_global for r in sel])),
            "in_global_basin": float(np.mean([r.in_global_basin for r in sel])),
        })
    return pd.DataFrame(rows)


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then move the temporary file onto ``path`` (no half-written outputs)."""
    with atomic_path(path) as tmp:
        write(str(tmp))


# ----------------------------------------------------------------------------------------------------- plots
def plot_regret(runs: Sequence[BanditRun], reward: RewardFunction, path: Path, *, title: str | None = None) -> None:
    """Left: reward and initial policy density; right: regret mean +- std over seeds (thin lines: single seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
    grid = reward.grid(1001)
    ax0.plot(grid, reward(grid), color="k", label="reward r(a)")
    init = runs[0].density[0]
    centers = np.linspace(reward.low, reward.high, len(init) + 1)
    centers = (centers[1:] + centers[:-1]) / 2
    ax0.fill_between(centers, init / init.max() * float(reward(grid).max()) * 0.8, alpha=0.3, color="C7",
                     label="initial policy (scaled)")
    ax0.set_xlabel("action a")
    ax0.set_title(f"{reward.name}")
    ax0.legend(fontsize=7, loc="upper left")
    for i, label in enumerate(dict.fromkeys(r.scheme for r in runs)):
        sel = [r for r in runs if r.scheme == label]
        it = sel[0].iteration
        reg = np.stack([r.regret for r in sel])
        mean, std = reg.mean(0), reg.std(0)
        color = f"C{i}"
        for row in reg:
            ax1.plot(it, row, color=color, alpha=0.15, lw=0.7)
        at_global = np.mean([r.at_global for r in sel])
        ax1.plot(it, mean, color=color, lw=2, label=f"{label} (final {mean[-1]:.3f}, global {at_global:.0%})")
        ax1.fill_between(it, np.clip(mean - std, 0, None), mean + std, color=color, alpha=0.15)
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("simple regret  E[r* - r(a)]")
    ax1.set_ylim(bottom=0)
    ax1.set_title(title or f"{len(runs) // max(1, len(set(r.scheme for r in runs)))} seeds: mean +- std")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)


def plot_density(runs: Sequence[BanditRun], reward: RewardFunction, path: Path, *, seed: int | None = None) -> None:
    """Policy density over training (x: iteration, y: action, colour: density), one panel per scheme, one seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed = runs[0].seed if seed is None else seed
    sel = [r for r in runs if r.seed == seed]
    fig, axes = plt.subplots(1, len(sel), figsize=(3.0 * len(sel) + 0.6, 3.0), squeeze=False, sharey=True)
    for ax, run in zip(axes[0], sel):
        dens = np.log1p(run.density.T)
        ax.imshow(dens, origin="lower", aspect="auto", cmap="magma",
                  extent=(run.iteration[0], run.iteration[-1], reward.low, reward.high))
        for c, _, _ in reward.bumps[:1]:
            ax.axhline(c, color="w", ls="--", lw=0.6)
        ax.set_title(f"{run.scheme} (seed {seed})", fontsize=9)
        ax.set_xlabel("iteration")
    axes[0][0].set_ylabel("action a (dashed: global optimum)")
    fig.tight_layout()
    _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)


def save_outputs(cfg: BanditConfig, runs: Sequence[BanditRun], out: Path | None = None, stem: str | None = None):
    """Write ``<stem>.csv``, ``<stem>.png``, ``<stem>_density.png`` and ``<stem>_density.npz`` into ``out``.

    Returns:
        dict of the written paths.
    """
    out = Path(out or cfg.out)
    stem = stem or f"bandit_{cfg.reward}"
    reward = get_reward(cfg.reward)
    paths = {"csv": out / f"{stem}.csv", "png": out / f"{stem}.png", "density_png": out / f"{stem}_density.png",
             "density_npz": out / f"{stem}_density.npz"}
    frame = runs_to_frame(runs, cfg.reward)
    _atomic_write(paths["csv"], lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g"))
    plot_regret(runs, reward, paths["png"])
    plot_density(runs, reward, paths["density_png"])

    def write_npz(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh, schemes=np.array([r.scheme for r in runs]), seeds=np.array([r.seed for r in runs]),
                iteration=runs[0].iteration, density=np.stack([r.density for r in runs]),
                edges=np.linspace(reward.low, reward.high, cfg.density_bins + 1),
            )

    _atomic_write(paths["density_npz"], write_npz)
    return paths


# ----------------------------------------------------------------------------------------------------- CLI
def build_parser():
    """jsonargparse parser: every :class:`BanditConfig` field as ``--field``, plus ``--config FILE.yaml``."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        prog="simpo-bio bandit",
        description="SiMPO on the paper's 1-D bandit: regret curves per weighting scheme (CSV + PNG). "
        f"Rewards: {', '.join(f'{k} ({v.description})' for k, v in REWARDS.items())}.",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML with any of the options below")
    parser.add_class_arguments(BanditConfig, as_group=False)
    return parser


def cli_main(argv: Sequence[str] | None = None) -> list[BanditRun]:
    """``simpo-bio bandit [--config configs/bandit/paper.yaml] [--reward R] [--schemes a,b] [--seeds K] ...``

    Prints a per-scheme summary and the paths written. Exits with status 2 and a one-line message on bad input
    (unknown reward / scheme, invalid values).
    """
    import sys

    parser = build_parser()
    ns = parser.parse_args(list(argv) if argv is not None else None)
    values = {k: v for k, v in vars(parser.instantiate(ns)).items() if k != "config"}
    values = {k: v for k, v in values.items() if k in BanditConfig.__dataclass_fields__}
    cfg = BanditConfig(**values)
    try:
        cfg.validate()
        parse_schemes(cfg.schemes, default_eta=cfg.eta)
    except ValueError as err:
        print(f"simpo-bio bandit: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    runs = run_experiment(cfg)
    paths = save_outputs(cfg, runs)
    summary = summarize(runs)
    print(f"\nreward {cfg.reward}: r* = {get_reward(cfg.reward).optimum()[1]:.4f}; config: {asdict(cfg)}")
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return runs
