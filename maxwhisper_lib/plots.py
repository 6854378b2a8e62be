"""Matplotlib figures the notebooks show (the data comes from the library's result tables)."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import pandas as pd


def plot_errors_through_layers(table: pd.DataFrame, tolerance: float | None = None):
    """Relative error of each encoder and decoder block, random vs real inputs (log scale)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, stack in zip(axes, ("encoder", "decoder"), strict=True):
        rows = table[table["component"].str.match(rf"{stack}\.blocks\.\d+$")].copy()
        rows["layer"] = rows["component"].map(lambda c: int(re.findall(r"\d+", c)[-1]))
        for inputs, group in rows.groupby("inputs"):
            ax.plot(group["layer"], group["relative_error"], marker="o", label=f"{inputs} input")
        if tolerance:
            ax.axhline(tolerance, color="crimson", linestyle="--", label="tolerance")
        ax.set_yscale("log")
        ax.set_xticks(sorted(rows["layer"].unique()))
        ax.set_xlabel(f"{stack} block")
        ax.set_title(f"{stack} blocks vs PyTorch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("relative error ‖out − ref‖ / ‖ref‖")
    axes[1].legend()
    fig.tight_layout()
    return fig


def plot_graph_times(times: pd.DataFrame):
    """Compile (or cache load) and run time per graph, side by side (log scale)."""
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(times) + 1.2))
    times = times.sort_values("compile_seconds")
    ax.barh(times["graph"], times["compile_seconds"], label="compile / cache load")
    ax.barh(times["graph"], times["run_seconds"], label="one run", alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("seconds")
    ax.legend()
    fig.tight_layout()
    return fig
