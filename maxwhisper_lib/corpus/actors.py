"""The two stages a corpus runs on Ray Data: audio read and decoded in tasks, transcribed in
actors that each hold one loaded model.

Nothing here imports Ray or MAX at module level: the functions run inside Ray's workers, and an
actor pins itself to its CPU cores before MAX starts its thread pool.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..audio.constants import SAMPLE_RATE


def read_audio(row: dict[str, Any]) -> dict[str, Any]:
    """A Ray Data ``map`` stage: the file's 16 kHz samples, or its error message (missing,
    empty, corrupt, silent or not audio) with no samples."""
    from ..audio.load import load_audio
    from ..errors import AudioError

    try:
        samples = load_audio(row["path"], reject_silent=True)
        error = ""
    except AudioError as failure:
        samples, error = np.zeros(0, np.float32), str(failure)
    except Exception as failure:  # anything else a file can do to a decoder: its row, not the run
        samples = np.zeros(0, np.float32)
        error = f"{row['path']}: {type(failure).__name__}: {failure}"
    return {**row, "samples": samples, "error": error, "duration_s": len(samples) / SAMPLE_RATE}


@dataclass(frozen=True)
class ModelSettings:
    """What every actor loads and how it transcribes (the ``maxwhisper`` options)."""

    model: str = "tiny.en"
    model_dir: str | None = None
    engine: str = "max"
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 1
    """Files transcribed together in one actor call (their windows decoded side by side)."""
    transcribe_kwargs: dict[str, Any] = field(default_factory=dict)
    """``transcribe_batch`` keyword arguments (decoding options, VAD)."""


class CpuSlots:
    """Hands out CPU core numbers per node, round robin, so actors sharing a node run on
    different cores (a Ray actor with no resources of its own; see :func:`pin_to_cores`)."""

    def __init__(self) -> None:
        self.taken: dict[str, int] = {}

    def take(self, node: str, cores: list[int], count: int) -> list[int]:
        start = self.taken.get(node, 0)
        self.taken[node] = start + count
        return [cores[(start + i) % len(cores)] for i in range(count)]


def pin_to_cores(slots: Any, threads: int) -> list[int]:
    """Restrict this process to ``threads`` of its node's cores (taken from ``slots``, a
    :class:`CpuSlots` actor); MAX sizes its thread pool from the cores a process may use."""
    import ray

    cores = sorted(os.sched_getaffinity(0))
    if threads >= len(cores):
        return cores
    node = ray.get_runtime_context().get_node_id()
    chosen = ray.get(slots.take.remote(node, cores, threads))
    os.sched_setaffinity(0, chosen)
    return chosen


class Transcriber:
    """A Ray Data actor: loads the model once, then transcribes batches of read files.

    Output rows carry the file's ``status`` (``ok`` / ``error``), ``error``, ``result_json``
    (the openai-whisper result dict as JSON), ``duration_s``, ``transcribe_s`` (its share of
    its batch's time) and ``worker`` (node and process).
    """

    def __init__(self, settings: ModelSettings, slots: Any = None, threads: int | None = None):
        import ray

        if slots is not None and threads:
            pin_to_cores(slots, threads)
        from ..api import load_model, split_dtype

        self.settings = settings
        self.backend = load_model(
            settings.model,
            settings.device,
            *split_dtype(settings.dtype),
            weights_dir=settings.model_dir,
            engine=settings.engine,
        ).backend
        self.worker = f"{ray.get_runtime_context().get_node_id()[:8]}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        ids = [str(i) for i in batch["id"]]
        errors = [str(e) for e in batch["error"]]
        durations = [float(d) for d in batch["duration_s"]]
        readable = [i for i, error in enumerate(errors) if not error]
        results: dict[int, dict] = {}
        seconds: dict[int, float] = {}
        if readable:
            self._transcribe(batch, readable, durations, results, errors, seconds)
        import json

        from ..decoding.writers import json_safe

        return {
            "id": ids,
            "path": [str(p) for p in batch["path"]],
            "status": ["ok" if i in results else "error" for i in range(len(ids))],
            "error": errors,
            "result_json": [
                json.dumps(json_safe(results[i])) if i in results else "" for i in range(len(ids))
            ],
            "duration_s": durations,
            "transcribe_s": [seconds.get(i, 0.0) for i in range(len(ids))],
            "worker": [self.worker] * len(ids),
        }

    def _transcribe(self, batch, indices, durations, results, errors, seconds) -> None:
        """Transcribe ``indices`` together; if that fails, one by one, so a file that breaks
        decoding becomes an error and the others still go through."""
        from ..decoding.transcribe import transcribe_batch
        from ..errors import MaxWhisperError

        settings = self.settings
        start = time.perf_counter()
        try:
            group = transcribe_batch(
                self.backend,
                [np.asarray(batch["samples"][i], np.float32) for i in indices],
                batch_size=settings.batch_size,
                verbose=None,
                progress=False,
                **settings.transcribe_kwargs,
            )
        except (MaxWhisperError, RuntimeError, ValueError) as failure:
            if len(indices) == 1:
                errors[indices[0]] = f"{type(failure).__name__}: {failure}"
                return
            for index in indices:
                self._transcribe(batch, [index], durations, results, errors, seconds)
            return
        elapsed = time.perf_counter() - start
        audio = sum(durations[i] for i in indices) or 1.0
        for index, result in zip(indices, group, strict=True):
            results[index] = result
            seconds[index] = elapsed * durations[index] / audio


__all__ = ["CpuSlots", "ModelSettings", "Transcriber", "pin_to_cores", "read_audio"]
