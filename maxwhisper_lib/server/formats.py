"""OpenAI's response formats from openai-whisper's result dict: ``json``, ``text``, ``srt``,
``vtt`` (openai-whisper's own writers) and ``verbose_json``; and the stream's events."""

from __future__ import annotations

import io
from typing import Any

from ..decoding.tokenizer import LANGUAGES
from ..decoding.whisper_parts import module
from ..decoding.writers import json_safe

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
SEGMENT_FIELDS = (
    "id",
    "seek",
    "start",
    "end",
    "text",
    "tokens",
    "temperature",
    "avg_logprob",
    "compression_ratio",
    "no_speech_prob",
)


def subtitles(result: dict, response_format: str) -> str:
    """The result as an ``srt`` or ``vtt`` file's text (openai-whisper's writer)."""
    writer = module("utils").get_writer(response_format, ".")
    buffer = io.StringIO()
    writer.write_result(json_safe(result), file=buffer, options={})
    return buffer.getvalue()


def words(result: dict) -> list[dict]:
    """Every word of every segment: ``{"word", "start", "end"}`` (OpenAI's ``words``)."""
    return [
        {"word": w["word"], "start": float(w["start"]), "end": float(w["end"])}
        for segment in result["segments"]
        for w in segment.get("words", [])
    ]


def verbose(result: dict, task: str, duration: float, with_words: bool) -> dict[str, Any]:
    """OpenAI's ``verbose_json``: task, language (its English name), duration, text, segments,
    and the words when word timestamps were asked for."""
    body: dict[str, Any] = {
        "task": task,
        "language": LANGUAGES.get(result["language"], result["language"] or ""),
        "duration": round(duration, 3),
        "text": result["text"].strip(),
        "segments": [segment_fields(s) for s in result["segments"]],
        "usage": {"type": "duration", "seconds": round(duration, 3)},
    }
    if with_words:
        body["words"] = words(result)
    return json_safe(body)


def segment_fields(segment: dict) -> dict:
    """A segment as OpenAI shapes it (openai-whisper's fields, without the words)."""
    return {name: segment[name] for name in SEGMENT_FIELDS if name in segment}


def body(
    result: dict, response_format: str, task: str, duration: float, with_words: bool
) -> str | dict:
    """The response body: a dict for the JSON formats, text for the others."""
    if response_format == "json":
        return {
            "text": result["text"].strip(),
            "usage": {"type": "duration", "seconds": round(duration, 3)},
        }
    if response_format == "verbose_json":
        return verbose(result, task, duration, with_words)
    if response_format == "text":
        return result["text"].strip() + "\n"
    return subtitles(result, response_format)


def delta_event(segment: dict) -> dict:
    """A stream event for one decoded segment: OpenAI's ``transcript.text.delta`` with the
    segment's id, start and end."""
    return json_safe(
        {
            "type": "transcript.text.delta",
            "delta": segment["text"],
            "segment_id": str(segment["id"]),
            "start": segment["start"],
            "end": segment["end"],
        }
    )


def done_event(result: dict, duration: float) -> dict:
    """The stream's last event: OpenAI's ``transcript.text.done`` with the whole text."""
    return {
        "type": "transcript.text.done",
        "text": result["text"].strip(),
        "language": result["language"],
        "duration": round(duration, 3),
    }


__all__ = [
    "MEDIA_TYPES",
    "RESPONSE_FORMATS",
    "body",
    "delta_event",
    "done_event",
    "segment_fields",
    "subtitles",
    "verbose",
    "words",
]
