"""Results of bandit runs: tables (pandas), CSV / npz files and the outputs of one experiment.

:func:`save_outputs` writes the CSV, the two plots of :mod:`simpo_bio.bandit.plots` and the densities;
:func:`load_runs` reads them back; :func:`summarize` gives one row of statistics over seeds per scheme.

Imports: numpy, pandas (inside the functions), :mod:`simpo_bio.fileio` and the bandit's ``config``,
``experiment``, ``plots`` and ``rewards``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from simpo_bio.bandit.config import BanditConfig
from simpo_bio.bandit.experiment import BanditRun
from simpo_bio.bandit.plots import plot_density, plot_regret
from simpo_bio.bandit.rewards import get_reward
from simpo_bio.fileio import atomic_path

__all__ = ["load_runs", "runs_to_frame", "save_outputs", "summarize"]


def runs_to_frame(runs: Sequence[BanditRun], reward: str):
    """Long-format ``pandas.DataFrame``: one row per (scheme, seed, evaluation).

    Columns: ``reward``, ``scheme`` (the label), ``seed``, ``iteration``, ``regret`` (reward units),
    ``global_mass``, ``mean_action``, ``std_action``, ``temperature``, ``negative_mass``.
    """
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

    Returns:
        One :class:`BanditRun` per (scheme, seed), in the CSV's order (densities ``[E, 1]`` zeros without npz).

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


def save_outputs(cfg: BanditConfig, runs: Sequence[BanditRun], out: Path | None = None, stem: str | None = None):
    """Write ``<stem>.csv``, ``<stem>.png``, ``<stem>_density.png`` and ``<stem>_density.npz`` into ``out``.

    ``out`` defaults to ``cfg.out_dir`` and ``stem`` to ``bandit_<reward>``; every file is written atomically. The CSV
    is :func:`runs_to_frame`; the npz holds ``schemes [R]``, ``seeds [R]``, ``iteration [E]``,
    ``density [R, E, bins]`` and the bin ``edges [bins + 1]`` (``R`` runs, ``E`` evaluations).

    Returns:
        dict of the written paths (keys ``csv``, ``png``, ``density_png``, ``density_npz``).

    Raises:
        ValueError: unknown ``cfg.reward``.
    """
    out = Path(out or cfg.out_dir)
    stem = stem or f"bandit_{cfg.reward}"
    reward = get_reward(cfg.reward)
    paths = {"csv": out / f"{stem}.csv", "png": out / f"{stem}.png", "density_png": out / f"{stem}_density.png",
             "density_npz": out / f"{stem}_density.npz"}
    frame = runs_to_frame(runs, cfg.reward)
    with atomic_path(paths["csv"]) as tmp:
        frame.to_csv(str(tmp), index=False, float_format="%.6g")
    plot_regret(runs, reward, paths["png"])
    plot_density(runs, reward, paths["density_png"])

    with atomic_path(paths["density_npz"]) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh, schemes=np.array([r.scheme for r in runs]), seeds=np.array([r.seed for r in runs]),
            iteration=runs[0].iteration, density=np.stack([r.density for r in runs]),
            edges=np.linspace(reward.low, reward.high, cfg.density_bins + 1),
        )
    return paths
