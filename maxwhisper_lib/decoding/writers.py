"""Transcript files: openai-whisper's txt, vtt, srt, tsv and json writers, written atomically.

Each file is written to a hidden temporary file in the output folder and renamed over its final
name only once complete, so a failure (or an interrupt) never leaves a half-written transcript.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_text_file

FORMATS = ("txt", "vtt", "srt", "tsv", "json")
"""Every output format, in the order ``all`` writes them."""
WRITER_OPTIONS = ("highlight_words", "max_line_width", "max_line_count", "max_words_per_line")
"""openai-whisper's subtitle options (they need word timestamps; vtt and srt use them)."""


def parse_formats(spec: str) -> tuple[str, ...]:
    """``"all"`` or comma-separated formats (``"txt,srt"``) as a tuple; ValueError if unknown."""
    names = [name.strip().lower() for name in spec.split(",") if name.strip()]
    if "all" in names:
        return FORMATS
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise ValueError(
            f"unknown output format {spec!r}; choose all or any of {', '.join(FORMATS)}"
        )
    return tuple(dict.fromkeys(names))


def output_path(audio_path: str | Path, output_dir: str | Path, output_format: str) -> Path:
    """``<output_dir>/<audio file name without extension>.<format>``, as openai-whisper names it."""
    return Path(output_dir) / f"{Path(audio_path).stem}.{output_format}"


def json_safe(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays turned into plain Python numbers and lists."""
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_result(
    result: Mapping[str, Any],
    audio_path: str | Path,
    output_dir: str | Path,
    formats: Iterable[str] = FORMATS,
    options: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``result`` (a ``transcribe`` result) in each of ``formats``; return the paths.

    ``options`` holds :data:`WRITER_OPTIONS` for the subtitle formats.
    """
    from .whisper_parts import module

    get_writer = module("utils").get_writer  # openai-whisper's writers, without torch

    result = json_safe(result)
    written = []
    for output_format in formats:
        writer = get_writer(output_format, str(output_dir))
        path = output_path(audio_path, output_dir, output_format)
        with atomic_text_file(path) as file:
            writer.write_result(result, file=file, options=dict(options or {}))
        written.append(path)
    return written


__all__ = [
    "FORMATS",
    "WRITER_OPTIONS",
    "json_safe",
    "output_path",
    "parse_formats",
    "write_result",
]
