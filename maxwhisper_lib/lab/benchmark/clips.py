"""The benchmark's audio: dev clips decoded once up front, long inputs built from them, files
for the batch test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...audio.constants import SAMPLE_RATE
from ...audio.load import load_audio
from ..manifest import Clip, load_manifest
from .engines import BenchmarkError, as_list


@dataclass
class ClipAudio:
    """A manifest clip decoded once: id, 16 kHz float32 samples, reference text ("" if none)."""

    id: str
    samples: np.ndarray
    reference: str = ""

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def load_clips(
    manifest: str | Path | None = None, clip_ids: Sequence[str] | None = None
) -> list[ClipAudio]:
    """Decode the manifest's clips (all, or ``clip_ids`` in that order) once."""
    clips = load_manifest(manifest)
    clip_ids = as_list(clip_ids)
    if clip_ids:
        by_id = {c.id: c for c in clips}
        missing = [c for c in clip_ids if c not in by_id]
        if missing:
            raise BenchmarkError(f"clip(s) not in the manifest: {', '.join(missing)}")
        clips = [by_id[c] for c in clip_ids]
    if not clips:
        raise BenchmarkError("no clips to benchmark")
    return [_decoded(c) for c in clips]


def _decoded(clip: Clip) -> ClipAudio:
    return ClipAudio(clip.id, load_audio(clip.path), clip.reference if clip.has_reference else "")


def build_long_audio(audios: Sequence[np.ndarray], seconds: float) -> np.ndarray:
    """``seconds`` of audio made by concatenating ``audios`` in turn (repeating as needed)."""
    if seconds <= 0:
        raise BenchmarkError(f"audio length must be positive, got {seconds}")
    pieces = [a for a in audios if len(a)]
    if not pieces:
        raise BenchmarkError("no audio to build a long input from")
    wanted = round(seconds * SAMPLE_RATE)
    repeats = math.ceil(wanted / sum(len(a) for a in pieces))
    return np.concatenate(pieces * repeats)[:wanted].astype(np.float32, copy=False)


def long_reference(clips: Sequence[ClipAudio], seconds: float) -> str:
    """The reference of :func:`build_long_audio` ``(clips' samples, seconds)``: the references of
    every clip that starts before the cut, in turn. A clip the cut splits keeps its whole
    reference, so every engine's transcript pays the same words for the missing end (compare
    WERs on one file, not with another length's)."""
    wanted = round(seconds * SAMPLE_RATE)
    pieces = [c for c in clips if len(c.samples)]
    if not pieces or wanted <= 0:
        raise BenchmarkError("no audio to build a long input from")
    words, at = [], 0
    while at < wanted:
        for clip in pieces:
            if at >= wanted:
                break
            words.append(clip.reference)
            at += len(clip.samples)
    return " ".join(w for w in words if w)


def batch_files(
    clips: Sequence[ClipAudio], count: int, max_seconds: float = 30.0
) -> list[ClipAudio]:
    """``count`` files for the batch benchmark: the clips of at most ``max_seconds`` (one
    window each, so a batch of b is b windows; all clips if none is that short), in turn."""
    if not clips:
        raise BenchmarkError("no clips for the batch benchmark")
    short = [c for c in clips if c.seconds <= max_seconds] or list(clips)
    return [short[i % len(short)] for i in range(count)]
