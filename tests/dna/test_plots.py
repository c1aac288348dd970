"""The run's PNGs read without the code: what the line and the band are, units, a legend entry for each, how many
designs and which oracle (reward_curve.png); a title on reward_distribution.png."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simpo_bio.dna.design import designs, plots


def _capture(monkeypatch):
    figs = []

    def keep(fig, path):
        figs.append(fig)
        return path

    monkeypatch.setattr(plots, "atomic_save_figure", keep)
    return figs


def _texts(fig):
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    labels = [a.get_xlabel() for a in (*fig.axes, *ax.child_axes)] + [ax.get_ylabel()]
    return ax.get_title(), legend, labels


def test_reward_curve_says_median_iqr_units_designs_and_oracle(monkeypatch):
    figs = _capture(monkeypatch)
    it = np.arange(1, 6)
    history = pd.DataFrame({"reward_queries": it * 32, "reward_median": it * 0.1, "reward_q25": it * 0.1 - 0.2,
                            "reward_q75": it * 0.1 + 0.2})  # fmt: skip
    designs.plot_reward_curve({"square_neg": history}, "x.png", oracle="checkpoints/dna/oracle_ft.ckpt",
                              designs_per_iteration=32)  # fmt: skip
    title, legend, labels = _texts(figs[0])
    assert "32 designs per point" in title and "oracle_ft.ckpt" in title
    assert legend == ["square_neg: median of each iteration's designs",
                      "square_neg: interquartile range (25th-75th percentile)"]  # fmt: skip
    assert "reward queries (fine-tuning-oracle calls)" in labels and "policy iteration" in labels
    assert "fine-tuning-oracle reward (HepG2 log-odds, nats)" in labels


def test_reward_distribution_has_a_title_and_counts(monkeypatch):
    figs = _capture(monkeypatch)
    designs.plot_reward_distributions({"real": [0.0, 1.0, 2.0], "tuned": [2.0, 3.0, 4.0, 5.0]}, "r.png",
                                      oracle="checkpoints/dna/oracle_eval.ckpt")  # fmt: skip
    title, legend, labels = _texts(figs[0])
    assert title == "Reward of the designs, scored by oracle_eval.ckpt"
    assert legend[0].startswith("real: n = 3, median 1.00") and legend[1].startswith("tuned: n = 4")
    assert "HepG2 log-odds, nats" in labels[0]


def test_reward_distribution_legend_sits_below_the_axes(monkeypatch):
    figs = _capture(monkeypatch)
    long = "fine-tuned (reward_gradient; 256 of 4096 selected, 3-mer target 0.85, motif x0.3)"  # the demo's label
    designs.plot_reward_distributions({"real": [0.0, 1.0, 2.0], long: [2.0, 3.0, 4.0]}, "r.png")
    fig = figs[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    assert not ax.get_legend().get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
