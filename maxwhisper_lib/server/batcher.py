"""Continuous batching: the windows of every request in flight decoded together.

One thread owns the engine. Each round it admits the requests that arrived (their log-mel and
language), takes the next 30-second window of up to ``max_batch`` requests, encodes them in one
encoder call and decodes those with the same language and options in one decoder session
(:func:`~maxwhisper_lib.decoding.transcribe.decode_windows`). A request joins at the next round,
leaves as soon as its own last window is decoded, and a cancelled one (its client gone) is
dropped at the next round. A window's result does not depend on its batch-mates, so each request
gets what :func:`~maxwhisper_lib.decoding.transcribe.transcribe` gives for that file alone with
the same options (the sampled fallbacks above temperature 0 share one random stream per group).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..decoding.backend import WhisperBackend
from ..decoding.transcribe import (
    FileTranscription,
    TranscribeOptions,
    Window,
    decode_windows,
    make_options,
    start_file,
)
from ..errors import MaxWhisperError


class ServerBusyError(MaxWhisperError):
    """The queue of waiting requests is full, or the server is shutting down."""


@dataclass(frozen=True)
class Started:
    """The request's language is known (``probability``: None when given or English-only)."""

    language: str
    probability: float | None
    seconds: float


@dataclass(frozen=True)
class Segments:
    """Segments decoded since the last event, final, in order (openai-whisper's dicts)."""

    segments: list[dict]


@dataclass(frozen=True)
class Done:
    """The request's result: openai-whisper's ``{"text", "segments", "language"}``."""

    result: dict


@dataclass(frozen=True)
class Failed:
    """The request failed (bad audio found late, or an engine error); others go on."""

    error: BaseException


Event = Started | Segments | Done | Failed


@dataclass(eq=False)
class Job:
    """One request: its samples, checked options and where its events go (called from the
    batcher's thread: hand them to your event loop with ``call_soon_threadsafe``)."""

    samples: np.ndarray
    options: TranscribeOptions
    on_event: Callable[[Event], None]
    submitted: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)
    state: FileTranscription | None = None
    share_prompt: bool = False
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    emitted: int = 0

    @property
    def seconds(self) -> float:
        return len(self.samples) / 16000

    def cancel(self) -> None:
        """Drop the request at the next round (its client has gone)."""
        self.cancelled.set()


@dataclass
class BatcherStats:
    """Counters for ``/health`` and the load benchmark."""

    submitted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    rounds: int = 0
    windows: int = 0
    largest_batch: int = 0


class Batcher:
    """The engine's one thread and its queue. ``max_batch``: windows per encoder call (and
    requests in flight); ``max_wait``: seconds an idle batcher waits after a first request for
    others to join it; ``max_queue``: requests waiting beyond those (more are refused)."""

    def __init__(
        self,
        backend: WhisperBackend,
        *,
        max_batch: int = 16,
        max_wait: float = 0.05,
        max_queue: int = 256,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be 0 or more seconds, got {max_wait}")
        self.backend = backend
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.stats = BatcherStats()
        self._intake: deque[Job] = deque()
        self._active: list[Job] = []
        self._condition = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- the caller's side -------------------------------------------------------------------
    def options(self, **kwargs: Any) -> TranscribeOptions:
        """``transcribe``'s keyword arguments checked against the model (raises
        :class:`~maxwhisper_lib.errors.DecodingOptionsError` at once)."""
        return make_options(self.backend.dims, **kwargs)

    def submit(
        self,
        samples: np.ndarray,
        options: TranscribeOptions,
        on_event: Callable[[Event], None],
        share_prompt: bool = False,
    ) -> Job:
        """Queue a request; its events go to ``on_event`` from the batcher's thread.
        ``share_prompt``: its prompt may be cut to the length of its batch-mates' that may too,
        so that they decode in one session (live decodes; a file's transcript stays its own)."""
        job = Job(
            np.asarray(samples, dtype=np.float32), options, on_event, share_prompt=share_prompt
        )
        with self._condition:
            if self._stopping:
                raise ServerBusyError("the server is shutting down")
            if len(self._intake) >= self.max_queue:
                raise ServerBusyError(
                    f"{len(self._intake)} requests are already waiting (the queue's limit)"
                )
            self._intake.append(job)
            self.stats.submitted += 1
            self._condition.notify()
        return job

    @property
    def waiting(self) -> int:
        return len(self._intake)

    @property
    def in_flight(self) -> int:
        return len(self._active)

    def start(self) -> Batcher:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="maxwhisper-batcher", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new requests, finish those queued and in flight, then end the thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the batcher's thread ----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._intake and not self._active and not self._stopping:
                    self._condition.wait()
                if self._stopping and not self._intake and not self._active:
                    return
                if not self._active and self.max_wait > 0:  # idle: let others join the first
                    deadline = self._intake[0].submitted + self.max_wait
                    while len(self._intake) < self.max_batch and not self._stopping:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._condition.wait(left)
            self._round()

    def _admit(self) -> None:
        while len(self._active) < self.max_batch:
            with self._condition:
                if not self._intake:
                    return
                job = self._intake.popleft()
            if job.cancelled.is_set():
                self.stats.cancelled += 1
                continue
            try:
                job.state = start_file(self.backend, job.samples, job.options, job.rng)
            except Exception as error:  # the request fails, the server goes on
                self._fail(job, error)
                continue
            job.samples = job.samples[:0]  # the log-mel is all the loop needs now
            self._send(
                job,
                Started(
                    job.state.language, job.state.language_probability, job.state.content_duration
                ),
            )
            self._active.append(job)

    def _round(self) -> None:
        windows: list[Window] = []
        owners: dict[int, Job] = {}
        asked: set[int] = set()
        while True:
            self._admit()
            finished = False
            for job in list(self._active):
                if id(job) in asked:
                    continue
                asked.add(id(job))
                if job.cancelled.is_set():
                    self._active.remove(job)
                    self.stats.cancelled += 1
                    continue
                try:
                    window = job.state.next_window()
                except Exception as error:
                    self._active.remove(job)
                    self._fail(job, error)
                    continue
                if window is None:
                    self._active.remove(job)
                    finished = True
                    self._finish(job)
                else:
                    windows.append(window)
                    owners[id(window.file)] = job
            if not (finished and self._intake):
                break
        if not windows:
            return
        try:
            decode_windows(
                self.backend,
                windows,
                lambda w: owners[id(w.file)].rng,
                align_prompts=lambda w: owners[id(w.file)].share_prompt,
            )
        except Exception as error:  # an engine fault fails this round's requests
            for window in windows:
                job = owners[id(window.file)]
                if job in self._active:
                    self._active.remove(job)
                    self._fail(job, error)
            return
        self.stats.rounds += 1
        self.stats.windows += len(windows)
        self.stats.largest_batch = max(self.stats.largest_batch, len(windows))
        for window in windows:
            self._emit(owners[id(window.file)])

    def _emit(self, job: Job) -> None:
        segments = job.state.all_segments[job.emitted :]
        if segments:
            job.emitted = len(job.state.all_segments)
            self._send(job, Segments(segments))

    def _finish(self, job: Job) -> None:
        self._emit(job)
        self.stats.completed += 1
        self._send(job, Done(job.state.result()))
        job.state = None

    @staticmethod
    def _send(job: Job, event: Event) -> None:
        try:
            job.on_event(event)
        except Exception:  # the listener's fault (its loop closed): the request is orphaned
            job.cancel()

    def _fail(self, job: Job, error: BaseException) -> None:
        self.stats.failed += 1
        self._send(job, Failed(error))


__all__ = [
    "Batcher",
    "BatcherStats",
    "Done",
    "Event",
    "Failed",
    "Job",
    "Segments",
    "ServerBusyError",
    "Started",
]
