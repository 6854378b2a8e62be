"""One file batched: the file cut into chunks of at most 30 s that are decoded independently.

faster-whisper's ``BatchedInferencePipeline`` and WhisperX transcribe a long file many times
faster by decoding its pieces side by side instead of one window after the other. The pieces
here are spans of the original audio, each at most one 30-second window long:

* with voice activity detection, Silero's speech chunks (split at 30 s, as faster-whisper's
  batched pipeline asks of the VAD) merged in order while the span from the first one's start to
  the last one's end fits in 30 s: the silence between merged chunks stays, so every time the
  decoder gives is already on the original timeline; a pause of up to 2 s before a span joins
  it (see :func:`speech_spans`);
* without it, the clips of ``clip_timestamps`` (the whole file by default) cut every 30 s.

Each span is transcribed by openai-whisper's seek loop restricted to it (a span whose last
segment is cut off gets a second, shorter window), without the previous span's text as a
prompt: that is what batching gives up against sequential decoding. :func:`merge_results`
joins the spans' results into one result dict, each time clipped to its span.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from .constants import HOP_LENGTH, N_FRAMES, SAMPLE_RATE
from .vad import VadParameters

BATCHED_VAD_SILENCE_MS = 160
"""Minimum silence that ends a speech chunk when batching (faster-whisper's batched default)."""
Span = tuple[int, int]
"""``(start, end)`` in log-mel frames of the original file."""


def batched_vad_parameters(parameters: VadParameters | dict | None) -> VadParameters:
    """The VAD knobs for batching: the given ones (or faster-whisper's batched defaults) with
    speech chunks split at 30 s, so that each fits one window."""
    window_seconds = N_FRAMES * HOP_LENGTH / SAMPLE_RATE
    if parameters is None:
        return VadParameters(
            min_silence_duration_ms=BATCHED_VAD_SILENCE_MS, max_speech_duration_s=window_seconds
        )
    parameters = VadParameters.from_options(parameters)
    return replace(
        parameters, max_speech_duration_s=min(parameters.max_speech_duration_s, window_seconds)
    )


LEAD_IN_FRAMES = VadParameters().min_silence_duration_ms * SAMPLE_RATE // 1000 // HOP_LENGTH
"""The longest gap before a span that the span takes in (2 s: the VAD's default minimum silence
for sequential decoding, which would not cut a shorter pause at all)."""


def speech_spans(speech: Sequence[dict], content_frames: int) -> list[Span]:
    """Speech chunks (``{"start", "end"}`` in samples) merged into spans of at most one window:
    a chunk joins the current span while the span, from its first chunk's start to this
    chunk's end, stays within :data:`N_FRAMES` frames. Then each span starts where the one
    before ended (the first at the file's start) when that gap is at most
    :data:`LEAD_IN_FRAMES` and the span stays within one window: the decoder sees the lead-in
    the sequential loop would show it (that cost the osr clip "gold" -> "golden" at its start),
    while longer non-speech stays out."""
    spans: list[Span] = []
    for chunk in speech:
        start = min(chunk["start"] // HOP_LENGTH, content_frames)
        end = min(math.ceil(chunk["end"] / HOP_LENGTH), content_frames)
        if end <= start:
            continue
        if spans and end - spans[-1][0] <= N_FRAMES:
            spans[-1] = (spans[-1][0], end)
            continue
        while end - start > N_FRAMES:  # longer than the VAD was asked to allow
            spans.append((start, start + N_FRAMES))
            start += N_FRAMES
        spans.append((start, end))
    previous_end = 0
    for i, (start, end) in enumerate(spans):
        if 0 < start - previous_end <= LEAD_IN_FRAMES:
            spans[i] = (max(previous_end, end - N_FRAMES), end)
        previous_end = end
    return spans


def clip_spans(clips: Sequence[float], content_frames: int) -> list[Span]:
    """``clip_timestamps`` (seconds: start, end, start, ...; an open last clip runs to the end)
    cut into spans of at most one window."""
    points = [round(t * SAMPLE_RATE / HOP_LENGTH) for t in clips] or [0]
    if len(points) % 2 == 1:
        points.append(content_frames)
    spans: list[Span] = []
    for start, end in zip(points[::2], points[1::2], strict=True):
        start, end = max(0, start), min(end, content_frames)
        spans.extend((s, min(s + N_FRAMES, end)) for s in range(start, end, N_FRAMES))
    return spans


def merge_results(results: Sequence[dict], spans: Sequence[Span], language: str | None) -> dict:
    """The spans' openai-whisper result dicts, in order, as one: segments renumbered, texts
    joined, and every time clipped to its span (the decoder may place the end of a window's
    last segment in the padding past the span, where the next span already starts)."""
    segments = []
    for result, (_, span_end) in zip(results, spans, strict=True):
        end = span_end * HOP_LENGTH / SAMPLE_RATE
        for segment in result["segments"]:
            segment = {**segment, "id": len(segments)}
            segment["end"] = min(segment["end"], end)
            segment["start"] = min(segment["start"], segment["end"])
            for word in segment.get("words") or []:
                word["end"] = min(word["end"], end)
                word["start"] = min(word["start"], word["end"])
            segments.append(segment)
    return {
        "text": "".join(result["text"] for result in results),
        "segments": segments,
        "language": language,
    }


__all__ = [
    "BATCHED_VAD_SILENCE_MS",
    "LEAD_IN_FRAMES",
    "Span",
    "batched_vad_parameters",
    "clip_spans",
    "merge_results",
    "speech_spans",
]
