"""Corpus throughput against the number of Ray actors and threads, beside a plain loop over
``transcribe()`` in one process: what Ray costs and what more actors give on this machine.

``python -m maxwhisper_lib.lab.corpus_scaling [--copies 3] [--output reports/NAME]`` writes
``scaling.csv``, ``scaling.png`` and a README into the folder. Every run transcribes the same
files (the dev clips, ``copies`` times over) into a fresh output folder; Ray is started anew
for each configuration with enough logical CPUs for it (so 2 actors x 2 threads on 2 cores
is allowed, and oversubscribes the machine on purpose).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..audio.constants import SAMPLE_RATE
from ..corpus.actors import ModelSettings
from ..corpus.inputs import CorpusItem
from ..corpus.run import run_corpus
from .manifest import load_manifest

CONFIGS = ((1, 1), (1, 2), (2, 1), (2, 2))
"""(actors, threads per actor) measured by default."""


def corpus_items(copies: int = 1, clip_ids: Sequence[str] | None = None) -> list[CorpusItem]:
    """The dev clips (``clip_ids``, default all), ``copies`` times over under distinct ids."""
    clips = [c for c in load_manifest() if clip_ids is None or c.id in clip_ids]
    return [
        CorpusItem(f"{c.id}~{n}", str(c.path), c.reference) for n in range(copies) for c in clips
    ]


def loop_row(items: Sequence[CorpusItem], settings: ModelSettings) -> dict:
    """A plain loop over ``transcribe()`` in this process: model load, then file after file."""
    from ..api import load_model, split_dtype
    from ..audio.load import load_audio
    from ..decoding.transcribe import transcribe

    start = time.perf_counter()
    backend = load_model(
        settings.model,
        settings.device,
        *split_dtype(settings.dtype),
        weights_dir=settings.model_dir,
        engine=settings.engine,
    ).backend
    loaded = time.perf_counter()
    audio_s = 0.0
    for item in items:
        samples = load_audio(item.path)
        audio_s += len(samples) / SAMPLE_RATE
        transcribe(backend, samples, **settings.transcribe_kwargs)
    end = time.perf_counter()
    return {
        "run": "loop over transcribe()",
        "actors": 1,
        "threads": None,
        "audio_s": audio_s,
        "wall_s": end - start,
        "startup_s": loaded - start,
        "work_s": end - loaded,
    }


def ray_row(
    items: Sequence[CorpusItem], settings: ModelSettings, actors: int, threads: int
) -> dict:
    """One corpus run on Ray started for it; ``startup_s``: until the first file came back,
    less that file's own transcription time."""
    import os

    import ray

    first: list[float] = []
    start = time.perf_counter()

    def on_row(line: dict) -> None:
        if not first:
            first.append(time.perf_counter() - start - line["transcribe_s"])

    cpus = max(os.cpu_count() or 1, actors * threads)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        with tempfile.TemporaryDirectory() as output_dir:
            summary = run_corpus(
                items,
                output_dir,
                settings,
                actors=actors,
                threads=threads,
                progress=False,
                formats=("txt",),
                on_row=on_row,
            )
    finally:
        ray.shutdown()
    wall = time.perf_counter() - start
    if summary.errors:
        raise RuntimeError(f"{summary.errors} files failed in the {actors}x{threads} run")
    return {
        "run": f"Ray: {actors} actor(s) x {threads} thread(s)",
        "actors": actors,
        "threads": threads,
        "audio_s": summary.audio_hours * 3600,
        "wall_s": wall,
        "startup_s": first[0],
        "work_s": wall - first[0],
    }


def measure_scaling(
    items: Sequence[CorpusItem],
    settings: ModelSettings,
    configs: Sequence[tuple[int, int]] = CONFIGS,
) -> pd.DataFrame:
    """The loop and each (actors, threads) configuration on ``items``: wall seconds, start-up
    (Ray + model load), the rest (``work_s``), throughput in audio seconds per second, and
    each run's throughput and steady-state overhead against the loop."""
    rows = [loop_row(items, settings)]
    rows += [ray_row(items, settings, actors, threads) for actors, threads in configs]
    table = pd.DataFrame(rows)
    table["speed"] = table["audio_s"] / table["wall_s"]
    table["work_speed"] = table["audio_s"] / table["work_s"]
    loop = table.iloc[0]
    table["vs_loop"] = table["speed"] / loop["speed"]
    table["work_vs_loop"] = table["work_speed"] / loop["work_speed"]
    return table


def markdown_table(table: pd.DataFrame) -> str:
    """``table`` as a GitHub Markdown table, numbers to two decimals."""
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in table.values]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def write_report(table: pd.DataFrame, folder: Path, notes: str = "") -> None:
    from ..engine.machine import cpu_model, usable_cores
    from .plots import plot_corpus_scaling

    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "scaling.csv", index=False)
    plot_corpus_scaling(table).savefig(folder / "scaling.png", dpi=110, bbox_inches="tight")
    shown = table[
        ["run", "audio_s", "wall_s", "startup_s", "work_s", "speed", "vs_loop", "work_vs_loop"]
    ]
    text = [
        "# Corpus throughput on Ray against a plain loop",
        "",
        f"Machine: {cpu_model()}, {usable_cores()} cores. One run; `python -m maxwhisper_lib.lab.corpus_scaling`.",
        "",
        "`speed`: audio seconds per wall second, start-up included; `startup_s`: Ray, the",
        "actors' model load and the first read until the first file came back (less its own",
        "transcription); `work_*`: the rest. `vs_loop` / `work_vs_loop`: against the loop.",
        "",
        markdown_table(shown),
        "",
        notes,
    ]
    (folder / "README.md").write_text("\n".join(text))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3, help="times each dev clip is repeated")
    parser.add_argument(
        "--batch_size", type=int, default=1, help="files decoded together per actor call"
    )
    parser.add_argument("--output", type=Path, default=None, help="report folder")
    args = parser.parse_args(argv)
    settings = ModelSettings(
        device="cpu",
        batch_size=args.batch_size,
        transcribe_kwargs={"beam_size": None, "best_of": None},
    )
    table = measure_scaling(corpus_items(args.copies), settings)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.output:
        write_report(table, args.output)


if __name__ == "__main__":
    main()
