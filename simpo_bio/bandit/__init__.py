"""simpo_bio.bandit: the paper's 1-D bandit experiments (SiMPO Sec. 5.1), ``simpo-bio bandit``.

A flow policy on an action interval is improved by reweighted flow matching with any weighting scheme of
:mod:`simpo_bio.weighting`; the runs record the simple regret and the policy density over training.

* :mod:`~simpo_bio.bandit.rewards` -- the reward functions (:data:`REWARDS`, formulas and optima);
* :mod:`~simpo_bio.bandit.config` -- :class:`BanditConfig` (= ``configs/bandit/paper.yaml``) and the schemes it
  compares (:class:`SchemeSpec`: name + parameters; :func:`parse_schemes` for the ``name:key=value`` shorthand);
* :mod:`~simpo_bio.bandit.experiment` -- the SiMPO loop (:func:`train_bandit`, :func:`run_experiment`);
* :mod:`~simpo_bio.bandit.results` -- tables and files (:func:`summarize`, :func:`save_outputs`,
  :func:`load_runs`); :mod:`~simpo_bio.bandit.plots` -- the PNGs;
* :mod:`~simpo_bio.bandit.checkpoints` -- :class:`RunStore`, the per-(scheme, seed) checkpoints a killed
  experiment resumes from;
* :mod:`~simpo_bio.bandit.cli` -- :func:`cli_main`, the entry point ``simpo-bio bandit`` dispatches to.

Imports: numpy, torch, :mod:`simpo_bio.diffusion.flow`, :mod:`simpo_bio.weighting`, :mod:`simpo_bio.fileio`
(pandas, matplotlib, tqdm and jsonargparse inside the functions that need them); never :mod:`simpo_bio.cli`.
"""

from simpo_bio.bandit.checkpoints import ResumeMismatchError, RunStore
from simpo_bio.bandit.cli import build_parser, cli_main
from simpo_bio.bandit.config import (
    UNSIGNED_COUNTERPART,
    BanditConfig,
    SchemeSpec,
    as_scheme_specs,
    parse_schemes,
)
from simpo_bio.bandit.experiment import BanditRun, make_policy, pretrain_policy, run_experiment, train_bandit
from simpo_bio.bandit.plots import plot_density, plot_regret
from simpo_bio.bandit.results import load_runs, runs_to_frame, save_outputs, summarize
from simpo_bio.bandit.rewards import REWARDS, RewardFunction, get_reward

__all__ = [
    "REWARDS",
    "UNSIGNED_COUNTERPART",
    "BanditConfig",
    "BanditRun",
    "ResumeMismatchError",
    "RewardFunction",
    "RunStore",
    "SchemeSpec",
    "as_scheme_specs",
    "build_parser",
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
