"""Matplotlib figures the notebooks show (the data comes from the library's result tables)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
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


ENGINE_COLORS = {
    "max": "tab:orange",
    "max-matmul": "tab:brown",
    "max-host-loop": "tab:pink",
    "openai-whisper": "tab:blue",
    "faster-whisper-int8": "tab:green",
    "faster-whisper-fp32": "tab:purple",
    "faster-whisper-fp16": "tab:red",
    "whisper.cpp-f16": "tab:olive",
    "whisper.cpp-q8_0": "tab:cyan",
}
"""One colour per benchmark engine, the same in every plot (MAX in orange)."""


def plot_rtf(summary: pd.DataFrame, targets: dict[str, float] | None = None):
    """Real-time factor per engine over all clips (higher is faster), MAX highlighted; a dashed
    mark on each peer shows the RTF MAX would need to meet its speed-up target."""
    rows = summary[summary["available"]].sort_values("rtf")
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.4))
    colors = [ENGINE_COLORS.get(e, "tab:gray") for e in rows["engine"]]
    ax.barh(rows["engine"], rows["rtf"], color=colors)
    for y, (engine, rtf) in enumerate(zip(rows["engine"], rows["rtf"], strict=True)):
        ax.text(rtf, y, f" {rtf:.1f}x", va="center")
        if targets and engine in targets:
            needed = rtf * targets[engine]
            ax.plot([needed, needed], [y - 0.4, y + 0.4], "k--", lw=1)
            ax.text(needed, y + 0.42, f"MAX target {targets[engine]:g}x", fontsize=8, ha="center")
    ax.set_xlabel("real-time factor (audio seconds / processing second)")
    ax.set_xlim(0, ax.get_xlim()[1] * 1.12)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_time_vs_length(scaling: pd.DataFrame):
    """Processing seconds against audio length, one line per engine (log-log)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for engine, group in scaling.groupby("engine", sort=False):
        group = group.sort_values("length_seconds")
        ax.plot(
            group["length_seconds"],
            group["seconds"],
            marker="o",
            label=engine,
            color=ENGINE_COLORS.get(engine),
            lw=2.5 if engine == "max" else 1.5,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("audio length (s)")
    ax.set_ylabel("processing time (s)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_time_breakdown(breakdown: pd.DataFrame):
    """MAX's median run per clip (and the total) as stacked bars of its parts (seconds)."""
    table = breakdown.copy()
    table.loc["total"] = table.sum()
    shares = table.div(table.sum(axis=1), axis=0)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.42 * len(table) + 1.6), sharey=True)
    for ax, data, label in ((axes[0], table, "seconds"), (axes[1], shares, "share of wall time")):
        left = pd.Series(0.0, index=data.index)
        for part in data.columns:
            ax.barh(data.index, data[part], left=left, label=part)
            left += data[part]
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    axes[0].invert_yaxis()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def plot_batch_throughput(batch: pd.DataFrame):
    """Audio seconds transcribed per second against batch size, one line per engine."""
    from matplotlib.ticker import ScalarFormatter

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for engine, group in batch.groupby("engine", sort=False):
        group = group.sort_values("batch_size")
        color = ENGINE_COLORS.get(engine)
        ax.plot(group["batch_size"], group["throughput"], marker="o", label=engine, color=color)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(batch["batch_size"].unique()))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("batch size")
    ax.set_ylabel("throughput (audio s / s)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_roofline(steps: pd.DataFrame, probe_gb_per_s: float):
    """Decoder steps against the memory floor, per batch size (beams of one window): left, ms
    per decoded token beside the floor of the bytes MAX's step must read; right, the bandwidth
    each MAX step achieves beside the probe's (log-log)."""
    from matplotlib.ticker import ScalarFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for engine, group in steps.groupby("engine", sort=False):
        group = group.sort_values("batch")
        color = ENGINE_COLORS.get(engine)
        left.plot(group["batch"], group["ms_per_token"], marker="o", label=engine, color=color)
        if group["achieved_gb_per_s"].notna().all() and engine.startswith("max"):
            right.plot(
                group["batch"], group["achieved_gb_per_s"], marker="o", label=engine, color=color
            )
    floor = steps.dropna(subset=["floor_ms"]).drop_duplicates("batch").sort_values("batch")
    left.plot(floor["batch"], floor["floor_ms"] / floor["batch"], "k--", label="memory floor")
    right.axhline(probe_gb_per_s, color="k", linestyle="--", label="bandwidth probe")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(steps["batch"].unique()))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("sequences per step (batch)")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    left.set_yscale("log")
    left.set_ylabel("ms per decoded token")
    left.set_title("decoder step vs its memory floor")
    right.set_ylabel("GB/s of the bytes a step must read")
    right.set_ylim(bottom=0)
    right.set_title("achieved bandwidth")
    fig.tight_layout()
    return fig


def plot_encoder_floor(floor: dict):
    """One encoder window against the floor of its operations (an ``encoder_floor`` probe's
    dict): left, each mode's measured window beside the floors (float32 mode, the int8 mode
    with its attention as measured, every product at the int8 rate); right, the rates measured
    on this CPU (GOP/s)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 1.2]})
    window, floors = floor["window_ms"], floor["floor_ms"]
    bars = {"float32 window": window["float32"], "int8 window": window["int8"]}
    bars |= {f"floor: {name}": ms for name, ms in floors.items()}
    colors = ["#1f77b4", "#d62728"] + ["#bbbbbb"] * len(floors)
    left.barh(list(bars), list(bars.values()), color=colors)
    for y, ms in enumerate(bars.values()):
        left.text(ms, y, f" {ms:.1f}", va="center")
    left.invert_yaxis()
    left.set_xlabel("ms per 30-s window (batch 1)")
    ratio = floor["window_over_floor"].get("int8 / the integer floor")
    left.set_title(f"{floor['model']} encoder window (int8 / integer floor {ratio}x)")
    left.margins(x=0.18)
    rates = floor["rates_gops"]
    right.barh(list(rates), list(rates.values()), color="#2ca02c")
    for y, gops in enumerate(rates.values()):
        right.text(gops, y, f" {gops:.0f}", va="center")
    right.invert_yaxis()
    right.set_xlabel("GOP/s measured on this CPU")
    right.set_title(f"rates ({floor['int8_path']} int8 path)")
    right.margins(x=0.15)
    fig.tight_layout()
    return fig


def plot_live_delays(results: dict[str, dict]):
    """Live transcription (``live_latency``/``live_peer`` results by label): left, the share of
    confirmed words confirmed within a delay (a curve per run, the targets' p50 1.5 s and p95
    3 s marked); right, each run's WER of the confirmed text against the offline transcript."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1.5, 1]})
    for label, result in results.items():
        delays = np.sort([w["delay"] for run in result["runs"] for w in run["words"]])
        if delays.size:
            left.plot(delays, np.arange(1, delays.size + 1) / delays.size, label=label)
    left.axvline(1.5, color="0.6", ls=":", lw=1)
    left.axvline(3.0, color="0.6", ls="--", lw=1)
    left.axhline(0.5, color="0.85", lw=0.8)
    left.axhline(0.95, color="0.85", lw=0.8)
    left.set_xlim(left=0)
    left.set_xlabel("seconds from a word's end in the audio to its confirmation")
    left.set_ylabel("share of confirmed words")
    left.set_title("confirmed-word delay, replayed at real speed")
    left.legend(loc="lower right", fontsize=8)
    labels = list(results)
    wers = [100 * results[k]["summary"]["wer_vs_offline"] for k in labels]
    right.barh(labels, wers, color="#9467bd")
    for y, wer in enumerate(wers):
        right.text(wer, y, f" {wer:.1f}", va="center")
    right.invert_yaxis()
    right.set_xlabel("WER (%), confirmed text vs offline transcript")
    right.margins(x=0.2)
    fig.tight_layout()
    return fig


# --- transcription (notebook 03) ----------------------------------------------------------------


def plot_segment_timeline(
    durations: dict[str, float], results: dict[str, dict[str, dict]], title: str | None = None
):
    """Each clip's segments along time, one lane per engine (``results[engine][clip]`` is a
    transcribe result); the grey band is the clip's length, colours alternate per segment."""
    engines = list(results)
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(durations) * len(engines) + 1.6))
    lane = 0.8 / len(engines)
    palettes = [("tab:blue", "tab:cyan"), ("tab:orange", "gold"), ("tab:green", "yellowgreen")]
    for row, (clip_id, duration) in enumerate(durations.items()):
        ax.barh(row, duration, height=0.9, color="0.93", zorder=0)
        for k, engine in enumerate(engines):
            y = row - 0.4 + lane * (k + 0.5)
            colours = palettes[k % len(palettes)]
            for i, segment in enumerate(results[engine][clip_id]["segments"]):
                width = segment["end"] - segment["start"]
                ax.barh(y, width, left=segment["start"], height=lane * 0.85, color=colours[i % 2])
    for k, engine in enumerate(engines):
        ax.barh(0, 0, color=palettes[k % len(palettes)][0], label=engine)
    ax.set_yticks(range(len(durations)), list(durations))
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "segments per clip")
    fig.tight_layout()
    return fig


def plot_corpus_scaling(table: pd.DataFrame):
    """Corpus throughput (audio seconds per second) per run: with start-up (Ray, model load)
    and without it, the plain loop over ``transcribe()`` in grey."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(table) + 1.6), sharey=True)
    colors = ["tab:gray" if not run.startswith("Ray") else "tab:orange" for run in table["run"]]
    for ax, column, title in (
        (axes[0], "speed", "whole run (start-up included)"),
        (axes[1], "work_speed", "after start-up"),
    ):
        ax.barh(table["run"], table[column], color=colors)
        for y, value in enumerate(table[column]):
            ax.text(value, y, f" {value:.1f}x", va="center")
        ax.set_xlim(0, table[column].max() * 1.2)
        ax.set_xlabel("audio seconds per second")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].invert_yaxis()
    fig.tight_layout()
    return fig


def plot_sizes(table: pd.DataFrame):
    """Encoder milliseconds per 30-s window and decoder milliseconds per step against parameter
    count (log-log), MAX beside openai-whisper and, where measured, faster-whisper's CTranslate2;
    the standard sizes (tiny ... large) joined by a line, variants (turbo, distil) as open
    markers, each of MAX's points named after its model."""
    table = table.sort_values("parameters_m")
    variant = table["model"].str.contains("turbo|distil")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = (("encoder", "ms per 30-s window"), ("step", "ms per decoder step (batch 1)"))
    engines = (
        ("max", "MAX", ENGINE_COLORS["max"]),
        ("torch", "openai-whisper (PyTorch float32)", ENGINE_COLORS["openai-whisper"]),
        ("ct2", "faster-whisper (CTranslate2 float32)", ENGINE_COLORS["faster-whisper-fp32"]),
    )
    for ax, (part, label) in zip(axes, panels, strict=True):
        for engine, name, colour in engines:
            column = f"{engine}_{part}_ms"
            if column not in table or table[column].isna().all():
                continue
            main, other = table[~variant], table[variant]
            ax.plot(main["parameters_m"], main[column], marker="o", color=colour, label=name)
            ax.plot(
                other["parameters_m"],
                other[column],
                marker="o",
                linestyle="none",
                markerfacecolor="none",
                color=colour,
            )
        _size_axes(ax, table, f"max_{part}_ms", label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _size_axes(ax, points: pd.DataFrame, column: str, label: str) -> None:
    """Name each of MAX's ``points`` after its model; log-log axes over parameter count."""
    for _, row in points.iterrows():
        ax.annotate(
            row["model"],
            (row["parameters_m"], row[column]),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=7,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3, which="both")


DEVICE_SIZE_ENGINES = {"max": "MAX", "ctranslate2": "CTranslate2", "pytorch": "PyTorch"}
DEVICE_SIZE_COLOURS = {
    "max": ENGINE_COLORS["max"],
    "ctranslate2": ENGINE_COLORS["faster-whisper-fp16"],
    "pytorch": ENGINE_COLORS["openai-whisper"],
}


def plot_device_sizes(tables: Mapping[str, pd.DataFrame], batch: int = 1):
    """Each size's encoder window and decoder token at ``batch`` against parameter count
    (log-log), from :mod:`maxwhisper_lib.lab.benchmark.gpu_sizes` tables keyed by device (e.g.
    ``{"H200": ..., "CPU, 2 cores": ...}``): one line per device, engine and precision, MAX in
    orange; each device its own marker and line style, so a GPU sits beside a CPU."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panels = (
        (f"encoder_ms_b{batch}", f"ms per 30-s window (batch {batch})"),
        (f"step_ms_b{batch}", f"ms per decoder token (batch {batch})"),
    )
    styles = (("o", "-"), ("s", "--"), ("^", ":"))
    for ax, (column, label) in zip(axes, panels, strict=True):
        for (device, table), (marker, line) in zip(tables.items(), styles, strict=False):
            if column not in table:
                continue
            for (engine, dtype), group in table.groupby(["engine", "dtype"], sort=False):
                group = group.sort_values("parameters_m")
                ax.plot(
                    group["parameters_m"],
                    group[column],
                    marker=marker,
                    linestyle=line,
                    color=DEVICE_SIZE_COLOURS.get(engine, "grey"),
                    alpha=1.0 if dtype != "bfloat16" else 0.55,
                    label=f"{device}: {DEVICE_SIZE_ENGINES.get(engine, engine)} {dtype}",
                )
            _size_axes(ax, table[table["engine"] == "max"].drop_duplicates("model"), column, label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
