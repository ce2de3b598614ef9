"""Plots the notebooks share (matplotlib, no seaborn)."""
from __future__ import annotations

import numpy as np


def rank_frequency(ax, counts, label: str, color: str | None = None):
    """Log-log rank-frequency curve: a straight line is a power law."""
    counts = np.sort(np.asarray(counts))[::-1]
    counts = counts[counts > 0]
    ranks = np.arange(1, len(counts) + 1)
    ax.loglog(ranks, counts, marker=".", linestyle="none", markersize=3, label=label, color=color)
    ax.set_xlabel("rank (1 = most active)")
    ax.set_ylabel("interactions")
    ax.grid(True, which="both", alpha=0.3)
    return ax


def lorenz_curve(ax, counts, label: str, color: str | None = None):
    """Cumulative share of interactions against the share of items, most popular first."""
    counts = np.sort(np.asarray(counts, dtype=float))[::-1]
    share_items = np.arange(1, len(counts) + 1) / len(counts)
    share_inter = np.cumsum(counts) / counts.sum()
    ax.plot(share_items, share_inter, label=label, color=color)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("share of items (most popular first)")
    ax.set_ylabel("share of interactions")
    ax.grid(True, alpha=0.3)
    return ax


def metric_bars(ax, table, metric: str):
    """Bar chart of one metric across the rows of a MetricsTable."""
    names = list(table.rows)
    values = [table.rows[n].get(metric, np.nan) for n in names]
    bars = ax.bar(names, values, color="tab:blue")
    ax.bar_label(bars, fmt="%.3f")
    ax.set_ylabel(metric)
    ax.tick_params(axis="x", rotation=20)
    return ax
