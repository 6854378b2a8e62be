"""Transcripts side by side: MAX against openai-whisper and the references, token identity, WER.

Word error rate uses openai-whisper's ``EnglishTextNormalizer`` on both sides (case,
punctuation, spelling, numbers) and jiwer; the overall figure is corpus-level (total edits over
total reference words of the clips that have a reference).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..audio.constants import SAMPLE_RATE
from ..audio.load import load_audio
from ..decoding.text import word_error_rate
from ..decoding.transcribe import transcript_tokens
from ..errors import MaxWhisperError
from .manifest import Clip, load_manifest


class TranscriptMismatch(MaxWhisperError):
    """Clips whose MAX transcript is not token-identical to openai-whisper's."""


def select_clips(
    manifest: str | Path | None = None, audio: Sequence[str] | None = None
) -> list[Clip]:
    """The manifest's clips, or ``audio`` files (no reference text) when given."""
    if not audio:
        return load_manifest(manifest)
    clips = []
    for path in map(Path, audio):
        duration = len(load_audio(path)) / SAMPLE_RATE
        clips.append(Clip(id=path.stem, path=path, duration=duration, reference="", license=""))
    return clips


@dataclass
class Transcripts:
    """Each clip's result dict from one engine, and the seconds each took."""

    engine: str
    results: dict[str, dict]
    seconds: dict[str, float]


def transcribe_clips(
    engine: str, run: Callable[[np.ndarray], dict], clips: Sequence[Clip]
) -> Transcripts:
    """``run(audio)`` on every clip (timed, audio decoding excluded)."""
    results, seconds = {}, {}
    for clip in clips:
        audio = load_audio(clip.path)
        start = time.perf_counter()
        results[clip.id] = run(audio)
        seconds[clip.id] = time.perf_counter() - start
    return Transcripts(engine, results, seconds)


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first token where two sequences differ (None if identical)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _segment_times(result: dict) -> list[tuple[float, float]]:
    return [(s["start"], s["end"]) for s in result["segments"]]


def _sampled(result: dict) -> bool:
    """Whether any window fell back to sampling (T > 0): torch's random stream and ours differ,
    so such transcripts are not token-comparable."""
    return any(s["temperature"] > 0 for s in result["segments"])


def comparison_table(clips: Sequence[Clip], ours: Transcripts, theirs: Transcripts) -> pd.DataFrame:
    """One row per clip: reference, both texts, token identity (first differing token), segment
    times equal, WER of both, and each engine's seconds."""
    rows = []
    for clip in clips:
        mine, reference = ours.results[clip.id], theirs.results[clip.id]
        tokens, expected = transcript_tokens(mine), transcript_tokens(reference)
        rows.append(
            {
                "clip": clip.id,
                "seconds of audio": round(clip.duration, 2),
                "reference": clip.reference,
                f"{ours.engine} text": mine["text"].strip(),
                f"{theirs.engine} text": reference["text"].strip(),
                "tokens": len(tokens),
                "token-identical": tokens == expected,
                "sampled": _sampled(mine) or _sampled(reference),
                "first different token": first_difference(tokens, expected),
                "segment times equal": _segment_times(mine) == _segment_times(reference),
                f"WER {ours.engine}": word_error_rate([clip.reference], [mine["text"]]),
                f"WER {theirs.engine}": word_error_rate([clip.reference], [reference["text"]]),
                f"{ours.engine} s": ours.seconds[clip.id],
                f"{theirs.engine} s": theirs.seconds[clip.id],
            }
        )
    table = pd.DataFrame(rows)
    table["first different token"] = table["first different token"].astype("Int64")
    return table


def wer_table(clips: Sequence[Clip], *runs: Transcripts) -> pd.DataFrame:
    """WER per clip with a reference, and overall (corpus-level), for each engine."""
    scored = [c for c in clips if c.has_reference]
    table = pd.DataFrame({"clip": [c.id for c in scored] + ["overall"]})
    for run in runs:
        hypotheses = [run.results[c.id]["text"] for c in scored]
        references = [c.reference for c in scored]
        per_clip = [word_error_rate([r], [h]) for r, h in zip(references, hypotheses, strict=True)]
        table[f"WER {run.engine}"] = [*per_clip, word_error_rate(references, hypotheses)]
    return table.set_index("clip")


def identity_summary(table: pd.DataFrame, reference: str = "openai-whisper") -> str:
    """``"8/8 clips token-identical to openai-whisper"``, then any clip that is not, with the
    index of its first different token; clips decoded by sampling are counted apart."""
    greedy = table[~table["sampled"]]
    same = int(greedy["token-identical"].sum())
    line = f"{same}/{len(greedy)} clips token-identical to {reference}"
    if len(greedy) < len(table):
        line += f" ({len(table) - len(greedy)} clip(s) fell back to sampling: not comparable)"
    for clip, index in greedy.loc[
        ~greedy["token-identical"], ["clip", "first different token"]
    ].itertuples(index=False):
        line += f"\n  {clip}: first different token at index {int(index)}"
    return line


def assert_token_identical(table: pd.DataFrame, reference: str = "openai-whisper") -> None:
    """Raise :class:`TranscriptMismatch` naming every greedy clip whose tokens or segment times
    differ from the reference's."""
    greedy = table[~table["sampled"]]
    bad = greedy[~(greedy["token-identical"] & greedy["segment times equal"])]
    if len(bad):
        raise TranscriptMismatch(
            f"{len(bad)} clip(s) differ from {reference}: " + ", ".join(bad["clip"])
        )


def language_example(
    max_model, ow_model, audio: np.ndarray, second_part: tuple[float, float] = (31.0, 45.0)
) -> pd.DataFrame:
    """A two-language clip on a multilingual model, MAX beside openai-whisper: the language
    detected on the first 30 s and on the window starting at ``second_part[0]``, then a greedy
    translation of ``second_part`` (seconds) from the language detected there."""
    import torch
    import whisper

    from ..audio.constants import N_FRAMES, N_SAMPLES
    from ..decoding.decode import detect_language
    from ..decoding.transcribe import transcribe

    mel = whisper.log_mel_spectrogram(torch.from_numpy(audio), padding=N_SAMPLES)
    start = round(second_part[0] * 100)
    windows = torch.stack([mel[:, :N_FRAMES], mel[:, start : start + N_FRAMES]])
    _, ours = detect_language(max_model, max_model.embed_audio(windows.numpy()))
    _, theirs = ow_model.detect_language(windows.to(ow_model.device))
    rows, detected = [], []
    labels = ("first 30 s", f"from {second_part[0]:g} s")
    for label, mine, reference in zip(labels, ours, theirs, strict=True):
        a, b = max(mine, key=mine.get), max(reference, key=reference.get)
        same = a == b and abs(mine[a] - reference[b]) < 1e-3
        rows.append(
            (f"language, {label}", f"{a} ({mine[a]:.4f})", f"{b} ({reference[b]:.4f})", same)
        )
        detected.append(a)
    span = ",".join(f"{t:g}" for t in second_part)
    options = {"task": "translate", "language": detected[1], "temperature": 0.0}
    mine = transcribe(max_model, audio, clip_timestamps=span, **options)["text"].strip()
    reference = whisper.transcribe(ow_model, audio, fp16=False, clip_timestamps=span, **options)[
        "text"
    ].strip()
    rows.append((f"translate {span} s", mine, reference, mine == reference))
    return pd.DataFrame(rows, columns=["what", "MAX", "openai-whisper", "equal"]).set_index("what")
