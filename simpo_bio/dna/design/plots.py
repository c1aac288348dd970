"""The run's figures: reward during fine-tuning, reward of the designs, GC composition against real enhancers.

Every figure says what it shows without the code (title, axis units, a legend entry per drawn element) and is
written atomically as PNG (:func:`atomic_save_figure`). :func:`simpo_bio.dna.design.designs.export_run` draws all three.

Imports: numpy, pandas, :mod:`simpo_bio.fileio` (matplotlib inside the functions, after choosing its
non-interactive backend).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simpo_bio.fileio import atomic_write


def _pyplot():
    """``matplotlib.pyplot``, switched to the non-interactive Agg backend where that is possible (PNG files only)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def atomic_save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically and close it (the caller's backend is left as it is)."""
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


#: Units of the DHS reward, on every reward axis: the oracle's HepG2 log-odds.
REWARD_UNITS = "HepG2 log-odds, nats"


def _oracle_name(oracle: Any) -> str:
    """How a plot names an oracle: the file name of a path, else the class name of a callable."""
    if oracle is None:
        return "?"
    return Path(oracle).name if isinstance(oracle, str | os.PathLike) else type(oracle).__name__


def plot_reward_distributions(
    rewards: Mapping[str, Sequence[float]], path: str | os.PathLike,
    xlabel: str = f"Pred-Activity: evaluation-oracle reward ({REWARD_UNITS})", title: str | None = None,
    oracle: Any = None,
) -> Path:
    """Overlaid histograms of reward per named set (e.g. real HepG2 / pretrained / fine-tuned), saved as PNG.

    Each set's legend entry, below the axes, gives its number of designs and median (the dashed line of its
    colour). The title says what is plotted and, with ``oracle`` (a path or a callable), which oracle scored the designs.
    """
    fig, ax = _pyplot().subplots(figsize=(6.4, 4))
    vals = [np.asarray(v, dtype=float) for v in rewards.values()]
    lo = min(float(v.min()) for v in vals if v.size)
    hi = max(float(v.max()) for v in vals if v.size)
    bins = np.linspace(lo, hi, 50)
    for (name, v) in zip(rewards, vals):
        ax.hist(v, bins=bins, alpha=0.45, density=True,
                label=f"{name}: n = {v.size}, median {np.median(v):.2f} (dashed)")
        ax.axvline(np.median(v), ls="--", lw=1, color=ax.patches[-1].get_facecolor()[:3])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density (designs per unit reward)")
    if title is None:
        title = "Reward of the designs" + (f", scored by {_oracle_name(oracle)}" if oracle is not None else "")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)  # long labels
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def plot_reward_curve(
    curves: Mapping[str, pd.DataFrame], path: str | os.PathLike, x: str = "reward_queries",
    y: str = "reward_median", band: tuple[str, str] | None = ("reward_q25", "reward_q75"),
    ylabel: str = f"fine-tuning-oracle reward ({REWARD_UNITS})", oracle: Any = None,
    designs_per_iteration: int | None = None,
) -> Path:
    """Reward during training, one line per named run, PNG a reader understands without the code.

    The line is the median of each policy iteration's sampled group (``y``, default ``reward_median``), the shaded
    band its interquartile range (``band``: the 25th and 75th percentiles), each with its own legend entry. The
    bottom axis counts reward queries (oracle calls, ``x``); with ``designs_per_iteration`` (the group size times
    the number of groups) a top axis counts policy iterations and the title gives the number of designs behind
    each point. ``oracle`` (a path or a callable) names the oracle that scored them.
    """
    fig, ax = _pyplot().subplots(figsize=(6.4, 4))
    for name, df in curves.items():
        line = ax.plot(df[x], df[y], label=f"{name}: median of each iteration's designs")[0]
        if band is not None and band[0] in df and band[1] in df:
            ax.fill_between(df[x], df[band[0]], df[band[1]], color=line.get_color(), alpha=0.15,
                            label=f"{name}: interquartile range (25th-75th percentile)")
    ax.set_xlabel("reward queries (fine-tuning-oracle calls)" if x == "reward_queries" else x)
    ax.set_ylabel(ylabel)
    if designs_per_iteration:
        n = float(designs_per_iteration)
        top = ax.secondary_xaxis("top", functions=(lambda q: q / n, lambda i: i * n))
        top.set_xlabel("policy iteration", fontsize=8)
    what = f"{designs_per_iteration} designs per point" if designs_per_iteration else "one sampled group per point"
    scorer = f", scored by {_oracle_name(oracle)}" if oracle is not None else ""
    ax.set_title(f"Reward during fine-tuning ({what}{scorer})", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def plot_gc_distributions(gcs: dict[str, np.ndarray], path: str | os.PathLike,
                          windowed: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                          gc_bounds: tuple[float, float] = (0.25, 0.65), window: int = 50) -> Path:
    """GC composition per named set (e.g. real HepG2, pretrained, fine-tuned), saved as PNG.

    Left: histogram of the GC fraction of each whole sequence. Right (with ``windowed``): each design's lowest
    against its highest ``window``-bp GC fraction, with the vendor's window ``gc_bounds`` drawn as a box: a point
    outside the box is a design the synthesis constraints touch. The legend sits below the axes.

    Args:
        gcs: ``{set: [N] GC fractions}``.
        windowed: ``{set: ([N] lowest, [N] highest windowed GC fraction)}``, or ``None`` for the histogram only.
        gc_bounds: the vendor's allowed windowed GC (``SynthesisConstraints.gc_min, gc_max``).
        window: the window, bp.
    """
    plt = _pyplot()
    lo, hi = gc_bounds
    ncols = 2 if windowed else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.4 * ncols, 4.6), squeeze=False)
    ax = axes[0, 0]
    bins = np.linspace(0.0, 1.0, 41)
    colors = {}
    for name, gc in gcs.items():
        gc = np.asarray(gc, dtype=float)
        (line,) = ax.hist(gc, bins=bins, histtype="step", linewidth=1.6, density=True,
                          label=f"{name} (n = {gc.size}, median {np.median(gc):.2f})")[2][:1]
        colors[name] = line.get_edgecolor()
    ax.axvspan(lo, hi, color="grey", alpha=0.08, label=f"vendor window GC {lo:g}-{hi:g}")
    ax.set_xlabel("GC fraction of the whole sequence")
    ax.set_ylabel("density (sequences per unit GC fraction)")
    ax.set_title("Composition of the designs against real HepG2 enhancers")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    if windowed:
        ax2 = axes[0, 1]
        for name, (wmin, wmax) in windowed.items():
            wmin, wmax = np.asarray(wmin, dtype=float), np.asarray(wmax, dtype=float)
            outside = int(((wmin < lo) | (wmax > hi)).sum())
            ax2.scatter(wmin, wmax, s=8, alpha=0.5, color=colors.get(name),
                        label=f"{name}: {outside} of {wmin.size} outside the window")
        ax2.add_patch(plt.Rectangle((lo, lo), hi - lo, hi - lo, fill=False, linestyle="--", color="black",
                                    label=f"allowed: every {window}-bp window at GC {lo:g}-{hi:g}"))
        ax2.set_xlim(0.0, 1.0)
        ax2.set_ylim(0.0, 1.0)
        ax2.set_xlabel(f"lowest GC fraction of a {window}-bp window")
        ax2.set_ylabel(f"highest GC fraction of a {window}-bp window")
        ax2.set_title(f"Windowed GC per design ({window}-bp windows) against the vendor window")
        ax2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    fig.tight_layout()
    return atomic_save_figure(fig, path)
