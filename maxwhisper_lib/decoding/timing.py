"""Word-level timestamps from the alignment heads' cross-attention, as openai-whisper's timing.py.

:func:`find_alignment` runs one uncached decoder pass over ``<|startoftranscript|>…<|notimestamps|>
text <|endoftext|>`` (``backend.alignment``), takes the alignment heads' cross-attention weights
over the window's frames, normalises them per frame, median-filters them along time and aligns
tokens to frames by dynamic time warping (openai-whisper's numba ``dtw_cpu``); word boundaries
come from the tokenizer's ``split_to_word_tokens``. :func:`add_word_timestamps` then applies
openai-whisper's duration heuristics and punctuation merging (its ``merge_punctuations``) and
writes ``words`` into each segment. The arithmetic is NumPy float32, as torch's on the CPU.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..audio.constants import HOP_LENGTH, SAMPLE_RATE, TOKENS_PER_SECOND
from .backend import AudioFeatures, WhisperBackend
from .tokenizer import Tokenizer

if TYPE_CHECKING:
    from whisper.timing import WordTiming

PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
SENTENCE_END_MARKS = ".。!！?？"


SORT_7 = (
    (0, 6), (2, 3), (4, 5), (0, 2), (1, 4), (3, 6), (0, 1), (2, 5),
    (3, 4), (1, 2), (4, 6), (2, 3), (4, 5), (1, 2), (3, 4), (5, 6),
)  # fmt: skip
"""A sorting network for 7 values (16 compare-exchanges; Knuth, TAOCP vol. 3, 5.3.4)."""


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a window of odd ``width`` along the last axis, reflect-padded (unchanged when
    the axis is no longer than half the width, as openai-whisper's); NaN sorts last, as in
    torch's sort. Width 7 (the default) through :data:`SORT_7` on whole arrays, 5x faster
    than a partition of every window, the same values."""
    if width <= 0 or width % 2 == 0:
        raise ValueError(f"the median filter width must be a positive odd number, got {width}")
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    if width != 7:
        windows = sliding_window_view(padded, width, axis=-1)
        return np.partition(windows, pad, axis=-1)[..., pad]
    n = x.shape[-1]
    nan = np.isnan(padded)
    has_nan = bool(nan.any())
    if has_nan:  # NaN as +inf sorts last; the median is NaN where most of its window is
        padded = np.where(nan, np.inf, padded)
    values = [padded[..., i : i + n] for i in range(width)]
    for i, j in SORT_7:
        values[i], values[j] = np.minimum(values[i], values[j]), np.maximum(values[i], values[j])
    median = values[pad]
    if has_nan:
        count = sum(nan[..., i : i + n].astype(np.int8) for i in range(width))
        median = np.where(count > pad, np.float32(np.nan), median)
    return median


def alignment_heads(backend: WhisperBackend) -> list[tuple[int, int]]:
    """``(layer, head)`` pairs used for timing, sorted; openai-whisper's default when the
    weights name none: every head of the upper half of the decoder layers."""
    if backend.alignment_heads:
        return sorted((int(layer), int(head)) for layer, head in backend.alignment_heads)
    dims = backend.dims
    return [
        (layer, head)
        for layer in range(dims.n_text_layer // 2, dims.n_text_layer)
        for head in range(dims.n_text_head)
    ]


def _softmax(x: np.ndarray) -> np.ndarray:
    exp = np.exp(x - x.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def _softmax_at(x: np.ndarray, columns: list[int]) -> np.ndarray:
    """``_softmax(x)[i, columns[i]]`` for each row ``i``, the same values, dividing only those."""
    exp = np.subtract(x, x.max(axis=-1, keepdims=True))
    np.exp(exp, out=exp)
    rows = np.arange(len(columns))
    return exp[rows, columns] / exp.sum(axis=-1)


def find_alignment(
    backend: WhisperBackend,
    tokenizer: Tokenizer,
    text_tokens: list[int],
    audio: AudioFeatures,
    row: int,
    num_frames: int,
    *,
    medfilt_width: int = 7,
    qk_scale: float = 1.0,
) -> list[WordTiming]:
    """Start/end time (seconds from the window start) and mean token probability of each word
    of ``text_tokens``, decoded from window ``row`` of ``audio`` with ``num_frames`` mel frames
    of real audio."""
    if not text_tokens:
        return []
    from whisper.timing import WordTiming, dtw_cpu  # numba and torch: only for word times

    sot_length = len(tokenizer.sot_sequence)
    tokens = np.array(
        [*tokenizer.sot_sequence, tokenizer.no_timestamps, *text_tokens, tokenizer.eot],
        dtype=np.int64,
    )
    logits, cross_qk = backend.alignment(audio, row, tokens)
    sampled = logits[sot_length : sot_length + len(text_tokens), : tokenizer.eot]
    text_token_probs = _softmax_at(sampled, text_tokens).tolist()

    layers, heads = zip(*alignment_heads(backend), strict=True)
    weights = cross_qk[list(layers), list(heads)][:, :, : num_frames // 2]
    weights = _softmax(weights * np.float32(qk_scale))
    mean = weights.mean(axis=-2, keepdims=True)
    std = weights.std(axis=-2, keepdims=True)
    weights = median_filter((weights - mean) / std, medfilt_width)
    matrix = weights.mean(axis=0)[sot_length:-1]
    text_indices, time_indices = dtw_cpu(-matrix.astype(np.float64))

    words, word_tokens = tokenizer.split_to_word_tokens([*text_tokens, tokenizer.eot])
    if len(word_tokens) <= 1:
        return []
    word_boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND
    start_times = jump_times[word_boundaries[:-1]]
    end_times = jump_times[word_boundaries[1:]]
    word_probabilities = [
        np.mean(text_token_probs[i:j]) for i, j in itertools.pairwise(word_boundaries)
    ]
    return [
        WordTiming(word, tokens, start, end, probability)
        for word, tokens, start, end, probability in zip(
            words, word_tokens, start_times, end_times, word_probabilities, strict=False
        )
    ]


def _truncate_long_words_at_sentence_ends(alignment: list[WordTiming]) -> tuple[float, float]:
    """Median and maximum word duration; words at sentence boundaries longer than the maximum
    are cut to it. Returns ``(median_duration, max_duration)``."""
    durations = np.array([t.end - t.start for t in alignment])
    durations = durations[durations.nonzero()]
    median_duration = min(0.7, float(np.median(durations) if len(durations) > 0 else 0.0))
    max_duration = median_duration * 2
    if len(durations) > 0:
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > max_duration:
                if alignment[i].word in SENTENCE_END_MARKS:
                    alignment[i].end = alignment[i].start + max_duration
                elif alignment[i - 1].word in SENTENCE_END_MARKS:
                    alignment[i].start = alignment[i].end - max_duration
    return median_duration, max_duration


def add_word_timestamps(
    *,
    segments: list[dict],
    backend: WhisperBackend,
    tokenizer: Tokenizer,
    audio: AudioFeatures,
    row: int,
    num_frames: int,
    prepend_punctuations: str = PREPEND_PUNCTUATIONS,
    append_punctuations: str = APPEND_PUNCTUATIONS,
    last_speech_timestamp: float,
    **kwargs,
) -> None:
    """Give each segment of one window a ``words`` list (word, start, end, probability) and snap
    the segment's start/end to its words, exactly as openai-whisper's ``add_word_timestamps``."""
    if not segments:
        return
    text_tokens_per_segment = [
        [token for token in segment["tokens"] if token < tokenizer.eot] for segment in segments
    ]
    text_tokens = list(itertools.chain.from_iterable(text_tokens_per_segment))
    alignment = find_alignment(backend, tokenizer, text_tokens, audio, row, num_frames, **kwargs)
    from whisper.timing import merge_punctuations

    median_duration, max_duration = _truncate_long_words_at_sentence_ends(alignment)
    merge_punctuations(alignment, prepend_punctuations, append_punctuations)

    time_offset = segments[0]["seek"] * HOP_LENGTH / SAMPLE_RATE
    word_index = 0
    for segment, segment_tokens in zip(segments, text_tokens_per_segment, strict=True):
        saved_tokens = 0
        words = []
        while word_index < len(alignment) and saved_tokens < len(segment_tokens):
            timing = alignment[word_index]
            if timing.word:
                words.append(
                    {
                        "word": timing.word,
                        # NumPy's round on NumPy floats, as openai-whisper's (it differs
                        # from Python's on some halves)
                        "start": float(round(time_offset + timing.start, 2)),
                        "end": float(round(time_offset + timing.end, 2)),
                        "probability": float(timing.probability),
                    }
                )
            saved_tokens += len(timing.tokens)
            word_index += 1
        if words:
            last_speech_timestamp = _adjust_segment_edges(
                segment, words, last_speech_timestamp, median_duration, max_duration
            )
        segment["words"] = words


def _adjust_segment_edges(
    segment: dict,
    words: list[dict],
    last_speech_timestamp: float,
    median_duration: float,
    max_duration: float,
) -> float:
    """openai-whisper's boundary heuristics: shorten over-long first words after a pause, and
    reconcile the segment's timestamps with its first and last words. Returns the segment end."""
    first, last = words[0], words[-1]
    if first["end"] - last_speech_timestamp > median_duration * 4 and (
        first["end"] - first["start"] > max_duration
        or (len(words) > 1 and words[1]["end"] - first["start"] > max_duration * 2)
    ):
        if len(words) > 1 and words[1]["end"] - words[1]["start"] > max_duration:
            boundary = max(words[1]["end"] / 2, words[1]["end"] - max_duration)
            first["end"] = words[1]["start"] = boundary
        first["start"] = max(0, first["end"] - max_duration)

    # prefer the segment-level start timestamp if the first word is too long
    if segment["start"] < first["end"] and segment["start"] - 0.5 > first["start"]:
        first["start"] = max(0, min(first["end"] - median_duration, segment["start"]))
    else:
        segment["start"] = first["start"]

    # prefer the segment-level end timestamp if the last word is too long
    if segment["end"] > last["start"] and segment["end"] + 0.5 < last["end"]:
        last["end"] = max(last["start"] + median_duration, segment["end"])
    else:
        segment["end"] = last["end"]
    return segment["end"]
