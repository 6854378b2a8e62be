"""A corpus run on Ray Data: files read in tasks, transcribed in actors holding a loaded model,
results written by the driver as they arrive (resumable), a summary at the end.

``ray.init()`` starts Ray embedded on this machine unless ``address`` names a running cluster
(``"auto"`` or ``"HOST:6379"``). Ray restarts an actor that dies and retries its batch
elsewhere (Ray Data's defaults for actor pools); the driver writes each file once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..atomic import atomic_text_file
from ..decoding.text import word_error_rate
from ..errors import MaxWhisperError
from .actors import CpuSlots, ModelSettings, Transcriber, read_audio
from .inputs import CorpusItem
from .ledger import SUMMARY_FILE, ResultStore

LOGGING_CONFIG = "ray_data_logging.yaml"


class CorpusRunError(MaxWhisperError):
    """A run that cannot start: too few CPUs or GPUs for the actors asked for."""


@dataclass(frozen=True)
class CorpusSummary:
    """What a run did: files in the input, transcribed now, skipped as done before, errors;
    audio hours and wall seconds of this run; WER over every done file with a reference."""

    files: int
    transcribed: int
    skipped: int
    errors: int
    audio_hours: float
    wall_s: float
    actors: int
    threads: int | None
    wer: float | None

    @property
    def speed(self) -> float:
        """Audio seconds transcribed per wall-clock second in this run."""
        return self.audio_hours * 3600 / self.wall_s if self.wall_s else 0.0

    def line(self) -> str:
        wer = f", WER {self.wer:.2%}" if self.wer is not None else ""
        return (
            f"{self.files} files: {self.transcribed} transcribed, {self.skipped} done before, "
            f"{self.errors} errors; {self.audio_hours * 60:.1f} min of audio in "
            f"{self.wall_s:.1f} s ({self.speed:.1f}x real time) on {self.actors} actor(s){wer}"
        )


def result_row(row: Mapping[str, Any]) -> tuple[dict[str, Any], dict | None]:
    """A Transcriber output row -> (the ``results.jsonl`` line, the result dict or None)."""
    result = json.loads(row["result_json"]) if row["status"] == "ok" else None
    line = {
        "id": row["id"],
        "path": row["path"],
        "status": row["status"],
        "error": row["error"] or None,
        "text": result["text"] if result else None,
        "language": result["language"] if result else None,
        "segments": result["segments"] if result else None,
        "duration_s": round(float(row["duration_s"]), 3),
        "transcribe_s": round(float(row["transcribe_s"]), 3),
        "worker": row["worker"],
    }
    return line, result


def run_corpus(
    items: Sequence[CorpusItem],
    output_dir: str | Path,
    settings: ModelSettings,
    *,
    formats: Iterable[str] = ("txt", "json"),
    writer_options: Mapping[str, Any] | None = None,
    actors: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    progress: bool = True,
    transcriber: type = Transcriber,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> CorpusSummary:
    """Transcribe ``items`` not done yet in ``output_dir``; return the run's summary.

    ``actors``: model replicas (default: one per GPU with a GPU device, else one); ``threads``:
    CPU cores each actor is pinned to (default: the cluster's CPUs shared out between actors).
    ``transcriber``: the actor class (a subclass of :class:`Transcriber` in tests).
    """
    import ray

    formats = tuple(formats)
    store = ResultStore(output_dir)
    done = store.done_ids()
    pending = [item for item in items if item.id not in done]
    start = time.perf_counter()
    written = errors = 0
    audio_s = 0.0
    if not pending:  # everything done already: no Ray to start
        actors = actors or 1
    started_here = bool(pending) and not ray.is_initialized()
    if started_here:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR"
        )
    try:
        if pending:
            total = ray.cluster_resources()
            actors, threads, resources = plan_actors(
                settings, actors, threads, int(total.get("CPU", 0)), int(total.get("GPU", 0))
            )
            rows = _dataset(pending, settings, actors, threads, resources, transcriber)
            bar = tqdm(total=len(pending), unit="file", disable=not progress, desc="corpus")
            seen: set[str] = set()
            for row in rows.iter_rows():
                if row["id"] in seen:  # a retried batch never reaches the driver twice, but
                    continue  # should it, the file is written once
                seen.add(row["id"])
                line, result = result_row(row)
                if result is not None:
                    try:
                        store.write_outputs(line["id"], result, formats, writer_options)
                    except OSError as error:
                        line.update(status="error", error=f"cannot write outputs ({error})")
                store.append(line)
                written += line["status"] == "ok"
                errors += line["status"] != "ok"
                audio_s += line["duration_s"] if line["status"] == "ok" else 0.0
                if on_row is not None:
                    on_row(line)
                bar.set_postfix(audio=_clock(audio_s), errors=errors, refresh=False)
                bar.update()
            bar.close()
    finally:
        if started_here:
            ray.shutdown()
    summary = CorpusSummary(
        files=len(items),
        transcribed=written,
        skipped=len(items) - len(pending),
        errors=errors,
        audio_hours=audio_s / 3600,
        wall_s=time.perf_counter() - start,
        actors=actors,
        threads=threads,
        wer=_wer(items, store),
    )
    with atomic_text_file(store.output_dir / SUMMARY_FILE) as file:
        json.dump({**asdict(summary), "speed": summary.speed}, file, indent=2)
    return summary


def plan_actors(
    settings: ModelSettings, actors: int | None, threads: int | None, cpus: int, gpus: int
) -> tuple[int, int | None, dict[str, float]]:
    """(actors, threads per actor, Ray resources per actor) for a cluster of ``cpus`` CPUs and
    ``gpus`` GPUs; CorpusRunError when they cannot all be placed."""
    on_gpu = settings.engine == "max" and (
        settings.device == "gpu" or (settings.device == "auto" and gpus > 0)
    )
    if on_gpu:
        actors = actors or gpus
        if actors > gpus:
            raise CorpusRunError(f"{actors} actors need one GPU each; the cluster has {gpus}")
        return actors, threads, {"num_gpus": 1, "num_cpus": threads or 1}
    actors = actors or 1
    threads = threads or max(1, cpus // actors)
    if actors * threads > cpus:
        raise CorpusRunError(
            f"{actors} actors x {threads} threads need {actors * threads} CPUs; "
            f"the cluster has {cpus}"
        )
    return actors, threads, {"num_cpus": threads}


def _dataset(pending, settings, actors, threads, resources, transcriber):
    import ray

    # our bar and summary say it all: Ray Data's console messages only for errors
    os.environ.setdefault("RAY_DATA_LOGGING_CONFIG", str(Path(__file__).with_name(LOGGING_CONFIG)))
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    slots = ray.remote(num_cpus=0)(CpuSlots).remote() if threads else None
    return (
        ray.data.from_items([asdict(item) for item in pending], override_num_blocks=len(pending))
        .map(
            read_audio,
            num_cpus=0,
            compute=ray.data.TaskPoolStrategy(size=min(len(pending), max(2, actors))),
        )
        .map_batches(
            transcriber,
            fn_constructor_kwargs={"settings": settings, "slots": slots, "threads": threads},
            batch_size=settings.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
            **resources,
        )
    )


def _clock(seconds: float) -> str:
    """``h:mm:ss`` of audio."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _wer(items: Sequence[CorpusItem], store: ResultStore) -> float | None:
    """Corpus WER over the files done so far that have a reference (None without any, or
    without jiwer installed: the ``lab`` extra)."""
    if importlib.util.find_spec("jiwer") is None:
        return None
    rows = store.load()
    pairs = [
        (item.reference, rows[item.id]["text"])
        for item in items
        if item.reference.strip() and rows.get(item.id, {}).get("status") == "ok"
    ]
    if not pairs:
        return None
    return word_error_rate([r for r, _ in pairs], [h for _, h in pairs])


__all__ = ["CorpusRunError", "CorpusSummary", "plan_actors", "result_row", "run_corpus"]
