"""Plots of bandit runs: regret curves per scheme and the policy density over training (PNG).

Imports: numpy, matplotlib (Agg backend, inside the functions), :mod:`simpo_bio.fileio` and the bandit's
``experiment`` (for :class:`~simpo_bio.bandit.BanditRun`) and ``rewards``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from simpo_bio.bandit.experiment import BanditRun
from simpo_bio.bandit.rewards import RewardFunction
from simpo_bio.fileio import atomic_path

__all__ = ["plot_density", "plot_regret"]


def plot_regret(runs: Sequence[BanditRun], reward: RewardFunction, path: Path, *, title: str | None = None) -> None:
    """PNG at ``path``. Left: reward and initial policy density; right: regret (reward units) mean +- std over
    seeds (thin lines: single seeds). Written atomically (no half-written file)."""
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
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=90, format="png")
    plt.close(fig)


def plot_density(runs: Sequence[BanditRun], reward: RewardFunction, path: Path, *, seed: int | None = None) -> None:
    """PNG at ``path``: policy density over training (x: iteration, y: action, colour: ``log1p(density)``), one
    panel per scheme, for ``seed`` (default: the first run's). Written atomically."""
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
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=80, format="png")
    plt.close(fig)
