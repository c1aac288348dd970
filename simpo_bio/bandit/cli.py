"""``simpo-bio bandit``: run the bandit experiment from a YAML config and/or command-line options.

    simpo-bio bandit --reward two_optima --schemes linear,square,exp,linear_neg --seeds 10 --out_dir runs/bandit
    simpo-bio bandit --config configs/bandit/paper.yaml --reward sharp --schemes linear,square,exp

``--schemes`` takes the shorthand ``name[:key=value...]`` list (e.g. ``linear_neg:eta=0.5,power:p=3``) or a
YAML / JSON list of ``{scheme: ..., scheme_params: {...}}``. Writes ``bandit_<reward>.csv`` (regret curves, one
row per scheme x seed x evaluation), ``bandit_<reward>.png`` (reward + initial policy, and regret mean +- std
over seeds), ``bandit_<reward>_density.png`` (the policy density over training, one panel per scheme, first
seed) and ``bandit_<reward>_density.npz`` (all densities).

Every finished (scheme, seed) run is saved at once to ``<out_dir>/bandit_<reward>_runs/``; the same command run again
after a kill computes only the missing runs (:mod:`simpo_bio.bandit.checkpoints`). Saved runs of another config are
refused (one line naming the fields that differ) unless ``--restart true``. Bad input (unknown reward or scheme, a
size below 1, a temperature of 0, an unreadable ``--config``) fails with one line and exit status 2.

Imports: jsonargparse (inside the functions) and the other modules of :mod:`simpo_bio.bandit`; never
:mod:`simpo_bio.cli` (which dispatches here lazily).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict

from simpo_bio.bandit.checkpoints import ResumeMismatchError, RunStore
from simpo_bio.bandit.config import BanditConfig
from simpo_bio.bandit.experiment import BanditRun, run_experiment
from simpo_bio.bandit.results import save_outputs, summarize
from simpo_bio.bandit.rewards import REWARDS, get_reward

__all__ = ["build_parser", "cli_main"]


def _fail(message: str) -> None:
    print(f"simpo-bio bandit: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def build_parser():
    """jsonargparse parser: every :class:`BanditConfig` field as ``--field``, plus ``--config FILE.yaml``."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        prog="simpo-bio bandit",
        exit_on_error=False,
        description="SiMPO on the paper's 1-D bandit: regret curves per weighting scheme (CSV + PNG). "
        f"Rewards: {', '.join(f'{k} ({v.description})' for k, v in REWARDS.items())}.",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML with any of the options below")
    parser.add_class_arguments(BanditConfig, as_group=False)
    return parser


def cli_main(argv: Sequence[str] | None = None) -> list[BanditRun]:
    """``simpo-bio bandit [--config configs/bandit/paper.yaml] [--reward R] [--schemes a,b] [--seeds K] ...``

    Prints a per-scheme summary and the paths written.

    Returns:
        The runs (one :class:`BanditRun` per scheme and seed).

    Raises:
        SystemExit: status 2 with a one-line message on bad input (unknown reward / scheme, invalid values).
    """
    parser = build_parser()
    try:
        ns = parser.parse_args(list(argv) if argv is not None else None)
        values = {k: v for k, v in vars(parser.instantiate(ns)).items() if k != "config"}
    except SystemExit:  # --help
        raise
    except Exception as err:  # noqa: BLE001 - jsonargparse raises several types for a bad file or value
        _fail(" ".join(str(err).split())[:500] or type(err).__name__)
    values = {k: v for k, v in values.items() if k in BanditConfig.__dataclass_fields__}
    try:
        cfg = BanditConfig(**values)  # parses a --schemes shorthand into (name, params) pairs
        cfg.validate()
        store = RunStore(cfg)  # refuses saved runs of another config (unless --restart true)
    except (ValueError, TypeError, ResumeMismatchError) as err:
        _fail(str(err))
    runs = run_experiment(cfg, store)
    paths = save_outputs(cfg, runs)
    summary = summarize(runs)
    print(f"\nreward {cfg.reward}: r* = {get_reward(cfg.reward).optimum()[1]:.4f}; config: {asdict(cfg)}")
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return runs
