"""Configuration of the bandit experiment: :class:`BanditConfig` and the weighting schemes it compares.

A scheme is a registry name plus a parameter mapping (:class:`SchemeSpec`: ``scheme: linear_neg``,
``scheme_params: {eta: 0.5}``), as everywhere in the package. The command-line shorthand
``"linear,linear_neg:eta=0.5"`` is parsed into such pairs at once (:func:`parse_schemes`).

Imports: :mod:`simpo_bio.weighting` (the scheme registry) and :mod:`simpo_bio.bandit.rewards`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from simpo_bio.bandit.rewards import get_reward
from simpo_bio.weighting import WeightScheme, get_scheme

__all__ = ["UNSIGNED_COUNTERPART", "BanditConfig", "SchemeSpec", "as_scheme_specs", "parse_schemes"]

#: the unsigned scheme whose weights tune a signed scheme's temperature when ``temperature_from == "unsigned"``
UNSIGNED_COUNTERPART = {"linear_neg": "linear", "square_neg": "square", "wd1": "exp"}


@dataclass
class SchemeSpec:
    """A weighting scheme of the experiment: registry name, parameters and the label its results carry.

    Attributes:
        scheme: a name of :func:`simpo_bio.weighting.available_schemes`, e.g. ``linear_neg``.
        scheme_params: its parameters, e.g. ``{"eta": 0.5}`` (``eta`` in units of advantage / temperature) or
            ``{"p": 3.0}``; empty for the library defaults.
        label: how runs, CSV rows and plots name it. Default: the name followed by ``:key=value`` for every
            parameter that differs from the registry default (``linear_neg`` with ``eta = 1``, the default, is
            ``"linear_neg"``; with ``eta = 0.5`` it is ``"linear_neg:eta=0.5"``).
    """

    scheme: str
    scheme_params: dict[str, float] = field(default_factory=dict)
    label: str | None = None

    def __post_init__(self) -> None:
        self.scheme_params = {str(k): float(v) for k, v in (self.scheme_params or {}).items()}
        if self.label is None:
            self.label = self.scheme
            try:
                defaults = get_scheme(self.scheme).params
            except ValueError:  # unknown name: reported by build() / BanditConfig.validate()
                defaults = {}
            for key, value in self.scheme_params.items():
                if defaults.get(key) != value:
                    self.label += f":{key}={value:g}"

    def build(self) -> WeightScheme:
        """The validated :class:`~simpo_bio.weighting.WeightScheme`.

        Raises:
            ValueError: unknown scheme name (the message lists the registry) or bad parameter.
        """
        return get_scheme(self.scheme, **self.scheme_params)


def parse_schemes(text: str | Sequence[str], default_eta: float | None = None) -> list[SchemeSpec]:
    """Parse the shorthand ``"linear,square,exp,linear_neg:eta=0.5"`` into validated :class:`SchemeSpec` s.

    Each item is ``name[:key=value...]``; its label is the item as written. A parameter-free signed scheme
    (``linear_neg``, ``square_neg``) gets ``eta = default_eta`` when that is given.

    Raises:
        ValueError: empty list, malformed ``key=value``, unknown scheme (names the registry) or bad parameter.
    """
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
        spec = SchemeSpec(name, params, label=item)
        spec.build()  # validates name and parameters (ValueError naming the registry)
        specs.append(spec)
    return specs


def as_scheme_specs(value: str | Iterable[SchemeSpec | dict[str, Any] | str]) -> list[SchemeSpec]:
    """Scheme specs from any accepted form: the shorthand string, or a list of specs, dicts or shorthand items.

    Dicts take the keys of :class:`SchemeSpec` (``scheme``, ``scheme_params``, ``label``).

    Raises:
        ValueError: a malformed or unknown shorthand item (:func:`parse_schemes`); TypeError: another type.
    """
    if isinstance(value, str):
        return parse_schemes(value)
    specs: list[SchemeSpec] = []
    for item in value:
        if isinstance(item, SchemeSpec):
            specs.append(item)
        elif isinstance(item, dict):
            specs.append(SchemeSpec(**item))
        elif isinstance(item, str):
            specs.extend(parse_schemes(item))
        else:
            raise TypeError(f"a scheme must be a SchemeSpec, a dict or a 'name:key=value' string, got {item!r}")
    return specs


@dataclass
class BanditConfig:
    """Every hyper-parameter of the bandit experiment (defaults = what bench/bandit.py and the README use).

    They were fixed before any scheme comparison was run (see bench/results/bandit.md, section Bandit).

    Attributes:
        reward: reward function name (``two_optima``, ``broad``, ``sharp``).
        schemes: the weighting schemes compared, each a :class:`SchemeSpec` (registry name ``scheme`` plus
            ``scheme_params``, e.g. ``{eta: 0.5}``). Also accepted: a list of dicts with those keys, or the
            shorthand string ``"linear,linear_neg:eta=0.5"`` -- both converted to :class:`SchemeSpec` s at
            construction (:func:`parse_schemes`).
        seeds: number of seeds (``seed_offset, ..., seed_offset + seeds - 1``).
        seed_offset: first seed.
        iterations: policy-improvement iterations (one group of actions each).
        group_size: ``N`` actions sampled per iteration (the group whose weights sum to 1, paper Sec. 4).
        update_epochs: Adam steps on the weighted flow-matching loss per iteration (passes over the same group; the
            DNA module's name).
        elbo_draws: Monte-Carlo draws of ``(t, eps)`` per action in each step of the loss (each action is repeated
            this many times with independent draws, the weights divided by it; the DNA module's name).
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
            bandit run, see bench/results/bandit.md, section Bandit).
        hidden, depth, time_embed_dim, activation: the velocity MLP.
        num_steps: Euler steps of the flow ODE sampler.
        sampler_noise: ``noise_scale`` of the ODE sampler while collecting the group: noise of std
            ``sampler_noise * sqrt(dt)`` added after each Euler step (action units per sqrt unit flow time; 0 = the
            flow's own spread). Not the control agent's ``exploration_noise`` (a std added once to the final action),
            hence the other name.
        pretrain_steps, pretrain_batch, pretrain_lr: fitting the initial policy to the reward's init Gaussian.
        eval_every: evaluate the regret every this many iterations (and at 0 and at the end).
        eval_samples: samples per regret estimate.
        density_bins: histogram bins of the recorded policy density over ``[low, high]``.
        out_dir: output folder (also of the per-run checkpoints, ``<out_dir>/bandit_<reward>_runs/``: a killed experiment
            run again computes only the missing runs, see :mod:`simpo_bio.bandit.checkpoints`).
        threads: torch CPU threads (``torch.set_num_threads``).
        progress: show a progress bar.
        restart: discard the runs saved in ``out_dir`` by an earlier experiment of another config (without it such a
            folder is refused with one line naming the fields that differ) and compute everything again.
    """

    reward: str = "two_optima"
    schemes: list[SchemeSpec] | str = field(default_factory=lambda: [
        SchemeSpec("linear"), SchemeSpec("square"), SchemeSpec("exp"), SchemeSpec("linear_neg", {"eta": 1.0}),
    ])  # fmt: skip
    seeds: int = 10
    seed_offset: int = 0
    iterations: int = 200
    group_size: int = 64
    update_epochs: int = 4
    elbo_draws: int = 4
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
    sampler_noise: float = 0.0
    pretrain_steps: int = 1500
    pretrain_batch: int = 512
    pretrain_lr: float = 3e-3
    eval_every: int = 5
    eval_samples: int = 1024
    density_bins: int = 80
    out_dir: str = "runs/bandit"
    threads: int = 1
    progress: bool = True
    restart: bool = False

    def __post_init__(self) -> None:
        self.schemes = as_scheme_specs(self.schemes)

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: naming the first invalid field (unknown reward or scheme, bad scheme parameter, sizes,
                rates, ``target_kl`` outside ``(0, log group_size)``).
        """
        get_reward(self.reward)
        if not self.schemes:
            raise ValueError("bandit config: no weighting scheme given (e.g. --schemes linear,square,exp,linear_neg)")
        for spec in self.schemes:
            spec.build()
        positive = ("seeds", "iterations", "group_size", "update_epochs", "elbo_draws", "num_steps",
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
        if self.sampler_noise < 0 or self.pretrain_steps < 0:
            raise ValueError("bandit config: sampler_noise and pretrain_steps must be >= 0")
