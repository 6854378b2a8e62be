"""Long-form transcription: openai-whisper's ``transcribe`` over the backend protocol.

The log-mel of the whole file plus 30 s of zeros is cut into 30-second windows; after each window
the seek point moves to the last complete timestamped segment (or the window's end), segments get
absolute start/end times, the previous text conditions the next window, and the temperature
falls back while a window's output looks repetitive (gzip compression ratio) or improbable
(average log-probability), unless its no-speech probability says it is silence. Word timestamps,
``clip_timestamps``, ``carry_initial_prompt`` and ``hallucination_silence_threshold`` follow
openai-whisper too, and so does the result: ``{"text", "segments", "language"}`` with segments of
``id, seek, start, end, text, tokens, temperature, avg_logprob, compression_ratio,
no_speech_prob[, words]``.

:func:`transcribe_batch` runs many files in lockstep: each round takes the next window of up to
``batch_size`` files, encodes them in one call and decodes windows whose prompts have the same
length in one decoder session (their temperature fallbacks too). A window's result does not
depend on its batch-mates, so a file's transcript is the one :func:`transcribe` gives (up to the
engine's batch-size-dependent float rounding). :func:`transcribe` is the batch of one.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import tqdm

from ..audio.chunking import batched_vad_parameters, clip_spans, merge_results, speech_spans
from ..audio.constants import (
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    INPUT_STRIDE,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
    TIME_PRECISION,
)
from ..audio.features import (
    LogMelPieces,
    log_mel_spectrogram_reference,
    mel_window,
)
from ..audio.load import audio_seconds, load_audio, stream_audio
from ..audio.vad import (
    FileSpeech,
    SpeechTimeline,
    VadParameters,
    joined_speech,
    restore_timestamps,
    speech_chunks,
)
from ..errors import DecodingOptionsError
from .backend import AudioFeatures, WhisperBackend
from .decode import (
    DecodingOptions,
    DecodingResult,
    DecodingTask,
    detect_language,
    validate_options,
)
from .timing import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS, add_word_timestamps
from .tokenizer import LANGUAGES, Tokenizer, get_tokenizer, language_code
from .whisper_parts import module as _whisper_module

_utils = _whisper_module("utils")  # openai-whisper's, without torch
format_timestamp, get_end, make_safe = _utils.format_timestamp, _utils.get_end, _utils.make_safe

DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
PUNCTUATION = "\"'“¿([{-\"'.。,，!！?？:：”)]}、"
MEL_FRONTENDS = ("auto", "max", "reference")

AudioInput = str | Path | np.ndarray


@dataclass(frozen=True)
class TranscribeOptions:
    """Everything ``transcribe`` takes besides the audio (openai-whisper's keyword arguments)."""

    temperature: tuple[float, ...] = DEFAULT_TEMPERATURES
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_previous_text: bool = True
    initial_prompt: str | None = None
    carry_initial_prompt: bool = False
    word_timestamps: bool = False
    prepend_punctuations: str = PREPEND_PUNCTUATIONS
    append_punctuations: str = APPEND_PUNCTUATIONS
    clip_timestamps: str | Sequence[float] = "0"
    hallucination_silence_threshold: float | None = None
    decode_options: dict = field(default_factory=dict)

    def decoding_options(self, temperature: float, language: str | None) -> DecodingOptions:
        """The window options at ``temperature``: beam search only at 0, best-of only above."""
        kwargs = {**self.decode_options, "language": language}
        if temperature > 0:
            kwargs.pop("beam_size", None)
            kwargs.pop("patience", None)
        else:
            kwargs.pop("best_of", None)
        return DecodingOptions(**kwargs, temperature=temperature)

    def needs_fallback(self, result: DecodingResult) -> bool:
        """Too repetitive or too improbable, and not plausibly silence."""
        needs = False
        if (
            self.compression_ratio_threshold is not None
            and result.compression_ratio > self.compression_ratio_threshold
        ):
            needs = True
        if self.logprob_threshold is not None and result.avg_logprob < self.logprob_threshold:
            needs = True
        if (
            self.no_speech_threshold is not None
            and result.no_speech_prob > self.no_speech_threshold
            and self.logprob_threshold is not None
            and result.avg_logprob < self.logprob_threshold
        ):
            needs = False
        return needs


def make_options(
    dims, temperature: float | Sequence[float] = DEFAULT_TEMPERATURES, **kwargs
) -> TranscribeOptions:
    """:class:`TranscribeOptions` from ``transcribe``'s keyword arguments (the unknown ones are
    decoding options), checked against the model: every temperature's decoding options must
    be valid before any audio is touched."""
    own = {f.name for f in fields(TranscribeOptions)} - {"temperature", "decode_options"}
    decode_options = {k: v for k, v in kwargs.items() if k not in own}
    unknown = set(decode_options) - {f.name for f in fields(DecodingOptions)} - {"prompt"}
    if unknown:
        raise DecodingOptionsError(f"unknown transcription option(s): {', '.join(sorted(unknown))}")
    decode_options.pop("prompt", None)  # set per window; use initial_prompt
    if decode_options.get("language") is not None:
        decode_options["language"] = language_code(decode_options["language"], dims)
    temperatures = (
        (float(temperature),) if isinstance(temperature, int | float) else tuple(temperature)
    )
    if not temperatures:
        raise DecodingOptionsError("at least one temperature is needed")
    options = TranscribeOptions(
        temperature=temperatures,
        decode_options=decode_options,
        **{k: v for k, v in kwargs.items() if k in own},
    )
    for t in temperatures:
        validate_options(options.decoding_options(t, decode_options.get("language")), dims)
    parse_clip_timestamps(options.clip_timestamps)
    return options


def parse_clip_timestamps(clip_timestamps: str | Sequence[float]) -> list[float]:
    """``"start,end,start,..."`` (or numbers) as a list of seconds."""
    if isinstance(clip_timestamps, str):
        try:
            return [float(ts) for ts in clip_timestamps.split(",")] if clip_timestamps else []
        except ValueError as error:
            raise DecodingOptionsError(
                f"clip_timestamps must be comma-separated seconds, got {clip_timestamps!r}"
            ) from error
    return [float(ts) for ts in clip_timestamps]


def whole_file_log_mel(
    backend: WhisperBackend,
    audio: np.ndarray | Path | FileSpeech,
    frontend: str = "auto",
    *,
    reject_silent: bool = True,
) -> np.ndarray | LogMelPieces:
    """Host float32 log-mel ``(n_mels, frames + 3000)`` of ``audio`` followed by 30 s of zeros.

    ``audio``: samples, the path of a file, or the speech of a file (its VAD chunks, joined);
    the MAX front end decodes files and turns them into log-mel piece by piece
    (:class:`~maxwhisper_lib.audio.features.LogMelPieces`: the samples are never held whole, nor is a long
    file's spectrogram, :class:`~maxwhisper_lib.audio.features.ReplayedLogMel`); a silent
    file is an :class:`~maxwhisper_lib.errors.AudioError` unless ``reject_silent`` is False.
    ``frontend``: ``max`` (MAX Graph on the backend's device), ``reference`` (openai-whisper's
    torch function) or ``auto`` (the backend's ``mel_frontend``: ``max`` for
    :class:`~maxwhisper_lib.engine.model.MaxWhisper`).
    """
    if frontend not in MEL_FRONTENDS:
        raise DecodingOptionsError(
            f"unknown mel front end {frontend!r}; choose one of {MEL_FRONTENDS}"
        )
    if frontend == "auto":
        frontend = backend.mel_frontend
    if frontend == "reference":
        if isinstance(audio, FileSpeech):
            samples = np.concatenate(list(audio.pieces()))
        else:
            samples = _as_samples(audio, reject_silent) if isinstance(audio, Path) else audio
        return log_mel_spectrogram_reference(samples, backend.dims.n_mels, padding=N_SAMPLES)
    if isinstance(audio, FileSpeech):
        return backend.log_mel_stream(audio.pieces, padding=N_SAMPLES)
    if isinstance(audio, Path):
        path = audio
        return backend.log_mel_stream(
            lambda: stream_audio(path, reject_silent=reject_silent), padding=N_SAMPLES
        )
    return backend.log_mel(audio, padding=N_SAMPLES)


@dataclass
class SegmentSpan:
    """A segment cut from one window's tokens: its times (seconds) and its tokens."""

    start: float
    end: float
    tokens: list[int]


def split_segments(
    tokens: np.ndarray,
    timestamp_begin: int,
    eot: int,
    seek: int,
    segment_size: int,
    keep_unfinished: bool = False,
) -> tuple[list[SegmentSpan], int, bool]:
    """openai-whisper's segment splitting of one window's decoded ``tokens`` (no prompt, no
    EOT) decoded at frame ``seek`` over ``segment_size`` frames: the segments, how many frames
    the seek point advances, and whether the window ends on a single timestamp (nothing left
    to re-decode). Consecutive timestamps close a segment; an unfinished last segment is
    dropped and re-decoded from its start, unless ``keep_unfinished`` (a span of a batched
    file) keeps its text up to the window's end. Pure: testable without a model."""
    time_offset = float(seek * HOP_LENGTH / SAMPLE_RATE)
    segment_duration = segment_size * HOP_LENGTH / SAMPLE_RATE
    tokens = np.asarray(tokens, dtype=np.int64)
    timestamp_tokens = tokens >= timestamp_begin
    single_timestamp_ending = timestamp_tokens[-2:].tolist() == [False, True]
    consecutive = (np.where(timestamp_tokens[:-1] & timestamp_tokens[1:])[0] + 1).tolist()
    if not consecutive:
        duration = segment_duration
        timestamps = tokens[timestamp_tokens]
        if len(timestamps) > 0 and timestamps[-1] != timestamp_begin:
            # no consecutive timestamps but a final one: it ends the segment
            duration = (int(timestamps[-1]) - timestamp_begin) * TIME_PRECISION
        span = SegmentSpan(time_offset, time_offset + duration, tokens.tolist())
        return [span], segment_size, single_timestamp_ending

    spans = []
    slices = consecutive + ([len(tokens)] if single_timestamp_ending else [])
    last_slice = 0
    for current_slice in slices:
        sliced = tokens[last_slice:current_slice].tolist()
        start_position = sliced[0] - timestamp_begin
        end_position = sliced[-1] - timestamp_begin
        spans.append(
            SegmentSpan(
                time_offset + start_position * TIME_PRECISION,
                time_offset + end_position * TIME_PRECISION,
                sliced,
            )
        )
        last_slice = current_slice
    unfinished = tokens[last_slice:].tolist()
    if keep_unfinished and not single_timestamp_ending and any(t < eot for t in unfinished):
        start = time_offset + (unfinished[0] - timestamp_begin) * TIME_PRECISION
        spans.append(SegmentSpan(start, time_offset + segment_duration, unfinished))
        single_timestamp_ending = True
    if single_timestamp_ending:
        return spans, segment_size, True  # no speech after the last timestamp
    # ignore the unfinished segment and seek to the last timestamp
    last_position = int(tokens[last_slice - 1]) - timestamp_begin
    return spans, last_position * INPUT_STRIDE, False


@dataclass
class Window:
    """One 30-second window of one file, ready to decode."""

    file: FileTranscription
    seek: int
    segment_size: int
    mel: np.ndarray
    prompt: list[int]


class FileTranscription:
    """openai-whisper's seek loop for one file, split in two so that many files can share the
    encoder and decoder: :meth:`next_window` (the loop head) and :meth:`accept` (its body).
    ``clips`` (frame spans) replace ``clip_timestamps``: one span each when a file is batched.
    ``keep_unfinished``: a window's last segment, cut off by the window's end, keeps its text
    (ending there) instead of being decoded again from its start, unless it has no text yet
    (for the spans of a batched file, which end in silence)."""

    def __init__(
        self,
        index: int,
        mel: np.ndarray,
        options: TranscribeOptions,
        tokenizer: Tokenizer,
        language: str,
        backend: WhisperBackend,
        verbose: bool | None,
        progress: Callable[[float], None],
        clips: Sequence[tuple[int, int]] | None = None,
        keep_unfinished: bool = False,
    ) -> None:
        self.index = index
        self.keep_unfinished = keep_unfinished
        self.mel = mel
        self.options = options
        self.tokenizer = tokenizer
        self.language = language
        self.backend = backend
        self.verbose = verbose
        self.progress = progress
        self.content_frames = mel.shape[-1] - N_FRAMES
        self.content_duration = float(self.content_frames * HOP_LENGTH / SAMPLE_RATE)
        if clips is None:
            seek_points = [
                round(ts * FRAMES_PER_SECOND)
                for ts in parse_clip_timestamps(options.clip_timestamps)
            ]
            if not seek_points:
                seek_points.append(0)
            if len(seek_points) % 2 == 1:
                seek_points.append(self.content_frames)
            clips = list(zip(seek_points[::2], seek_points[1::2], strict=True))
        self.seek_clips = list(clips)
        self.clip_index = 0
        self.seek = self.seek_clips[0][0]
        self.all_tokens: list[int] = []
        self.all_segments: list[dict] = []
        self.prompt_reset_since = 0
        self.remaining_prompt_length = backend.dims.n_text_ctx // 2 - 1
        self.initial_prompt_tokens: list[int] = []
        if options.initial_prompt is not None:
            self.initial_prompt_tokens = tokenizer.encode(" " + options.initial_prompt.strip())
            self.all_tokens.extend(self.initial_prompt_tokens)
            self.remaining_prompt_length -= len(self.initial_prompt_tokens)
        self.last_speech_timestamp = 0.0
        self.language_probability: float | None = None
        self.done = False

    def next_window(self) -> Window | None:
        """The next window to decode, or None when the file is done."""
        while self.clip_index < len(self.seek_clips):
            clip_start, clip_end = self.seek_clips[self.clip_index]
            self.seek = max(self.seek, clip_start)
            if self.seek >= clip_end:
                self.clip_index += 1
                if self.clip_index < len(self.seek_clips):
                    self.seek = self.seek_clips[self.clip_index][0]
                continue
            segment_size = min(N_FRAMES, self.content_frames - self.seek, clip_end - self.seek)
            if self.options.carry_initial_prompt:
                ignored = max(len(self.initial_prompt_tokens), self.prompt_reset_since)
                remaining = self.all_tokens[ignored:][-self.remaining_prompt_length :]
                prompt = self.initial_prompt_tokens + remaining
            else:
                prompt = self.all_tokens[self.prompt_reset_since :]
            mel = mel_window(self.mel, self.seek, segment_size)
            return Window(self, self.seek, segment_size, mel, prompt)
        self.done = True
        return None

    def _new_segment(
        self, *, start: float, end: float, tokens: list[int], result: DecodingResult
    ) -> dict:
        text_tokens = [token for token in tokens if token < self.tokenizer.eot]
        return {
            "seek": self.seek,
            "start": start,
            "end": end,
            "text": self.tokenizer.decode(text_tokens),
            "tokens": tokens,
            "temperature": float(result.temperature),
            "avg_logprob": float(result.avg_logprob),
            "compression_ratio": float(result.compression_ratio),
            "no_speech_prob": float(result.no_speech_prob),
        }

    def accept(self, window: Window, result: DecodingResult, audio: AudioFeatures, row: int):
        """Turn a window's decoding into segments and move the seek point (the loop body)."""
        previous_seek = self.seek
        self._accept(window, result, audio, row)
        self.progress((min(self.content_frames, self.seek) - previous_seek) / FRAMES_PER_SECOND)

    def _accept(self, window: Window, result: DecodingResult, audio: AudioFeatures, row: int):
        options, tokenizer = self.options, self.tokenizer
        segment_size = window.segment_size
        time_offset = float(self.seek * HOP_LENGTH / SAMPLE_RATE)
        window_end_time = float((self.seek + N_FRAMES) * HOP_LENGTH / SAMPLE_RATE)
        segment_duration = segment_size * HOP_LENGTH / SAMPLE_RATE
        tokens = np.array(result.tokens, dtype=np.int64)

        if options.no_speech_threshold is not None:
            should_skip = result.no_speech_prob > options.no_speech_threshold
            if options.logprob_threshold is not None and (
                result.avg_logprob > options.logprob_threshold
            ):
                should_skip = False  # confident text despite the no-speech probability
            if should_skip:
                self.seek += segment_size
                return

        previous_seek = self.seek
        spans, advance, single_timestamp_ending = split_segments(
            tokens,
            tokenizer.timestamp_begin,
            tokenizer.eot,
            self.seek,
            segment_size,
            self.keep_unfinished,
        )
        current_segments = [
            self._new_segment(start=span.start, end=span.end, tokens=span.tokens, result=result)
            for span in spans
        ]
        self.seek += advance

        if options.word_timestamps:
            add_word_timestamps(
                segments=current_segments,
                backend=self.backend,
                tokenizer=tokenizer,
                audio=audio,
                row=row,
                num_frames=segment_size,
                prepend_punctuations=options.prepend_punctuations,
                append_punctuations=options.append_punctuations,
                last_speech_timestamp=self.last_speech_timestamp,
            )
            if not single_timestamp_ending:
                last_word_end = get_end(current_segments)
                if last_word_end is not None and last_word_end > time_offset:
                    self.seek = round(last_word_end * FRAMES_PER_SECOND)
            if options.hallucination_silence_threshold is not None and self._skip_hallucinations(
                current_segments,
                single_timestamp_ending,
                previous_seek,
                segment_size,
                time_offset,
                window_end_time,
                segment_duration,
            ):
                return
            last_word_end = get_end(current_segments)
            if last_word_end is not None:
                self.last_speech_timestamp = last_word_end

        if self.verbose:
            for segment in current_segments:
                start, end, text = segment["start"], segment["end"], segment["text"]
                line = f"[{format_timestamp(start)} --> {format_timestamp(end)}] {text}"
                print(make_safe(line))

        # an instantaneous or empty segment keeps its place but loses its text
        for segment in current_segments:
            if segment["start"] == segment["end"] or segment["text"].strip() == "":
                segment["text"] = ""
                segment["tokens"] = []
                segment["words"] = []

        self.all_segments.extend(
            {"id": i, **segment}
            for i, segment in enumerate(current_segments, start=len(self.all_segments))
        )
        self.all_tokens.extend(token for s in current_segments for token in s["tokens"])
        if not options.condition_on_previous_text or result.temperature > 0.5:
            self.prompt_reset_since = len(self.all_tokens)  # no prompt after a high temperature

    def _skip_hallucinations(
        self,
        segments: list[dict],
        single_timestamp_ending: bool,
        previous_seek: int,
        segment_size: int,
        time_offset: float,
        window_end_time: float,
        segment_duration: float,
    ) -> bool:
        """openai-whisper's ``hallucination_silence_threshold`` logic: skip silence before
        possible hallucinations (anomalous words surrounded by silence), trimming ``segments``.
        Returns True when the whole window is dropped (seek moved past leading silence)."""
        threshold = self.options.hallucination_silence_threshold
        if not single_timestamp_ending:
            last_word_end = get_end(segments)
            if last_word_end is not None and last_word_end > time_offset:
                remaining_duration = window_end_time - last_word_end
                if remaining_duration > threshold:
                    self.seek = round(last_word_end * FRAMES_PER_SECOND)
                else:
                    self.seek = previous_seek + segment_size

        first_segment = _next_words_segment(segments)
        if first_segment is not None and _is_segment_anomaly(first_segment):
            gap = first_segment["start"] - time_offset
            if gap > threshold:
                self.seek = previous_seek + round(gap * FRAMES_PER_SECOND)
                return True

        hal_last_end = self.last_speech_timestamp
        for si in range(len(segments)):
            segment = segments[si]
            if not segment["words"]:
                continue
            if _is_segment_anomaly(segment):
                next_segment = _next_words_segment(segments[si + 1 :])
                if next_segment is not None:
                    hal_next_start = next_segment["words"][0]["start"]
                else:
                    hal_next_start = time_offset + segment_duration
                silence_before = (
                    segment["start"] - hal_last_end > threshold
                    or segment["start"] < threshold
                    or segment["start"] - time_offset < 2.0
                )
                silence_after = (
                    hal_next_start - segment["end"] > threshold
                    or _is_segment_anomaly(next_segment)
                    or window_end_time - segment["end"] < 2.0
                )
                if silence_before and silence_after:
                    self.seek = round(max(time_offset + 1, segment["start"]) * FRAMES_PER_SECOND)
                    if self.content_duration - segment["end"] < threshold:
                        self.seek = self.content_frames
                    segments[si:] = []
                    break
            hal_last_end = segment["end"]
        return False

    def result(self) -> dict:
        """openai-whisper's result dict: text, segments, language."""
        return {
            "text": self.tokenizer.decode(self.all_tokens[len(self.initial_prompt_tokens) :]),
            "segments": self.all_segments,
            "language": self.language,
        }


def _word_anomaly_score(word: dict) -> float:
    probability = word.get("probability", 0.0)
    duration = word["end"] - word["start"]
    score = 0.0
    if probability < 0.15:
        score += 1.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def _is_segment_anomaly(segment: dict | None) -> bool:
    if segment is None or not segment["words"]:
        return False
    words = [w for w in segment["words"] if w["word"] not in PUNCTUATION][:8]
    score = sum(_word_anomaly_score(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)


def _next_words_segment(segments: list[dict]) -> dict | None:
    return next((s for s in segments if s["words"]), None)


def decode_with_fallback(
    backend: WhisperBackend,
    audio: AudioFeatures,
    rows: Sequence[int],
    prompts: Sequence[list[int]],
    options: TranscribeOptions,
    language: str,
    rng: np.random.Generator | Sequence[np.random.Generator],
) -> list[DecodingResult]:
    """Decode windows ``rows`` of ``audio`` at the first temperature, then re-decode (together)
    the ones that need a fallback at the next, and so on; the last attempt is kept. ``rng``:
    the sampler, or each row's: rows with different samplers are sampled apart (above
    temperature 0), so that a file's draws do not depend on its batch-mates."""
    samplers = [rng] * len(rows) if isinstance(rng, np.random.Generator) else list(rng)
    results: list[DecodingResult | None] = [None] * len(rows)
    pending = list(range(len(rows)))
    for temperature in options.temperature:
        decoding = options.decoding_options(temperature, language)
        if temperature > 0:
            parts: dict[int, list[int]] = {}
            for i in pending:
                parts.setdefault(id(samplers[i]), []).append(i)
            subsets = list(parts.values())
        else:
            subsets = [pending]  # no draws: every row in one session
        retry = []
        for subset in subsets:
            task = DecodingTask(backend, decoding, samplers[subset[0]])
            decoded = task.run(audio, [rows[i] for i in subset], [prompts[i] for i in subset])
            for i, result in zip(subset, decoded, strict=True):
                results[i] = result
                if options.needs_fallback(result):
                    retry.append(i)
        pending = sorted(retry)
        if not pending:
            break
    return results  # type: ignore[return-value]


def _as_samples(audio: AudioInput, reject_silent: bool = True) -> np.ndarray:
    """16 kHz mono samples; empty (or, with ``reject_silent``, silent) audio is an
    :class:`AudioError`, as in the CLI."""
    source = audio if isinstance(audio, str | Path) else np.asarray(audio)
    return load_audio(source, reject_silent=reject_silent)


def _source(audio: AudioInput, vad_filter: bool) -> tuple[np.ndarray | Path, float]:
    """A file's path (files are read piece by piece, never held whole; opened here, so that
    an unreadable file fails before any work), else its samples (silence refused unless the
    VAD is on); and its seconds."""
    if isinstance(audio, str | Path):
        return Path(audio), audio_seconds(audio)
    samples = _as_samples(audio, reject_silent=not vad_filter)
    return samples, len(samples) / SAMPLE_RATE


def _no_speech_result(options: TranscribeOptions, dims) -> dict:
    """The result of a file in which voice activity detection found no speech."""
    language = options.decode_options.get("language") or (None if dims.is_multilingual else "en")
    return {"text": "", "segments": [], "language": language}


@dataclass(frozen=True)
class FileStarted:
    """A file's language is known (``probability``: None when it was given, or no speech was
    found); ``seconds``: its audio's duration."""

    index: int
    language: str
    probability: float | None
    seconds: float


@dataclass(frozen=True)
class FileSegments:
    """Segments of a file, final, in order (openai-whisper's segment dicts)."""

    index: int
    segments: list[dict]


FileEvent = FileStarted | FileSegments


def transcribe_events(
    backend: WhisperBackend,
    audios: Sequence[AudioInput],
    *,
    batch_size: int = 8,
    chunked: bool = False,
    verbose: bool | None = None,
    temperature: float | Sequence[float] = DEFAULT_TEMPERATURES,
    progress: bool | None = None,
    seed: int = 0,
    mel_frontend: str = "auto",
    vad_filter: bool = False,
    vad_parameters: VadParameters | dict | None = None,
    **kwargs,
) -> Generator[FileEvent, None, list[dict]]:
    """:func:`transcribe_batch` (its options) as it goes: yields a :class:`FileStarted` when a file's
    language is known and a :class:`FileSegments` with its segments as soon as they are decoded
    (a batched file's, ``chunked``, once all its spans are done), and returns the result dicts."""
    if batch_size < 1:
        raise DecodingOptionsError(f"batch_size must be at least 1, got {batch_size}")
    options = make_options(backend.dims, temperature, **kwargs)
    if vad_filter and parse_clip_timestamps(options.clip_timestamps) not in ([], [0.0]):
        raise DecodingOptionsError("clip_timestamps and vad_filter cannot be combined")
    if vad_parameters is not None and not vad_filter:
        raise DecodingOptionsError("vad_parameters given without vad_filter=True")
    if vad_filter:
        parameters = (
            batched_vad_parameters(vad_parameters)
            if chunked
            else VadParameters.from_options(vad_parameters)
        )
    sources = [_source(audio, vad_filter) for audio in audios]
    samples = [source for source, _ in sources]
    seconds = [length for _, length in sources]
    original_seconds = list(seconds)
    results: list[dict | None] = [None] * len(samples)
    timelines: list[SpeechTimeline | None] = [None] * len(samples)
    speech: list[list[dict] | None] = [None] * len(samples)
    for index, source in enumerate(samples):
        if not vad_filter:
            continue
        is_file = isinstance(source, Path)  # a file: one pass for the VAD, one for log-mel
        pieces = stream_audio(source) if is_file else source
        chunks = speech_chunks(pieces, parameters, name=str(source) if is_file else "<array>")
        if chunked:
            speech[index] = chunks
        else:  # the joined speech: read back from the file, or cut from the samples
            samples[index] = (
                FileSpeech(source, chunks) if is_file else joined_speech(source, chunks)
            )
            timelines[index] = SpeechTimeline(chunks)
            seconds[index] = timelines[index].speech_seconds
        if not chunks:
            results[index] = _no_speech_result(options, backend.dims)
    for index, result in enumerate(results):
        if result is not None:  # no speech found
            yield FileStarted(index, result["language"], None, original_seconds[index])
    rng = np.random.default_rng(seed)
    total = sum(t for t, r in zip(seconds, results, strict=True) if r is None)
    show = (verbose is False) if progress is None else progress
    with tqdm.tqdm(total=round(total, 2), unit="s", unit_scale=False, disable=not show) as bar:
        runner = _BatchRunner(
            backend, options, verbose, rng, mel_frontend, bar.update, chunked, not vad_filter
        )
        pending = [(i, s, speech[i]) for i, s in enumerate(samples) if results[i] is None]
        del samples  # each file's samples go once its log-mel is taken
        units: dict[int, list[FileTranscription]] = {}
        queued: list[FileTranscription] = []
        active: list[FileTranscription] = []

        emitted: dict[int, int] = {}
        fresh_files: list[int] = []

        def fill() -> None:
            while len(active) < batch_size and (queued or pending):
                if not queued:
                    fresh = pending[: batch_size - len(active)]
                    del pending[: len(fresh)]
                    for index, file_units in runner.start(fresh).items():
                        units[index] = file_units
                        queued.extend(file_units)
                        fresh_files.append(index)
                active.append(queued.pop(0))

        def news() -> Iterator[FileEvent]:
            """Start events of the files begun since the last call, then each unbatched
            file's segments decoded since (on the original timeline)."""
            for index in fresh_files:
                language, probability = runner.languages[index]
                yield FileStarted(index, language, probability, original_seconds[index])
            fresh_files.clear()
            for index, file_units in units.items():
                if chunked:
                    continue
                segments = file_units[0].all_segments[emitted.get(index, 0) :]
                if segments:
                    emitted[index] = len(file_units[0].all_segments)
                    if timelines[index] is not None:
                        restore_timestamps({"segments": segments}, timelines[index])
                    yield FileSegments(index, segments)

        while pending or queued or active:
            windows: list[Window] = []
            asked: set[int] = set()
            while True:
                fill()
                finished = False
                for state in list(active):
                    if id(state) in asked:
                        continue
                    asked.add(id(state))
                    window = state.next_window()
                    if window is None:
                        active.remove(state)
                        finished = True
                        runner.finish(state, units[state.index])
                    else:
                        windows.append(window)
                if not (finished and (queued or pending)):
                    break
            yield from news()
            if windows:
                runner.decode(windows)
                yield from news()
    for index, file_units in units.items():
        if chunked:
            results[index] = merge_results(
                [u.result() for u in file_units],
                [u.seek_clips[0] for u in file_units],
                file_units[0].language,
            )
        else:
            results[index] = file_units[0].result()
    for index in units:
        if chunked:
            result, timeline = results[index], timelines[index]
            if timeline is not None and result is not None and result["segments"]:
                restore_timestamps(result, timeline)
            if result is not None and result["segments"]:
                yield FileSegments(index, result["segments"])
    return results  # type: ignore[return-value]


def transcribe_batch(
    backend: WhisperBackend, audios: Sequence[AudioInput], **options: Any
) -> list[dict]:
    """Transcribe many files (paths or 16 kHz mono arrays), up to ``batch_size`` windows at once.

    Keyword arguments are ``transcribe``'s (and openai-whisper's): ``compression_ratio_threshold``,
    ``logprob_threshold``, ``no_speech_threshold``, ``condition_on_previous_text``,
    ``initial_prompt``, ``carry_initial_prompt``, ``word_timestamps``, ``prepend_punctuations``,
    ``append_punctuations``, ``clip_timestamps``, ``hallucination_silence_threshold``, and any
    :class:`~maxwhisper_lib.decoding.decode.DecodingOptions` field (``language``, ``task``,
    ``beam_size``, ``best_of``, ``patience``, ``length_penalty``, ``suppress_tokens``, ...).
    ``verbose``: True prints each segment, False shows a progress bar, None neither;
    ``progress`` overrides the bar (shown over audio seconds). ``seed`` seeds the sampler used
    at temperatures above 0. ``vad_filter``: Silero VAD removes non-speech first
    (:class:`~maxwhisper_lib.audio.vad.VadParameters` or a dict of its fields as ``vad_parameters``);
    every time in the result is on the original audio's timeline, and a file without speech
    gives no segments. ``chunked``: each file is cut into spans of at most 30 s (speech spans
    with ``vad_filter``; see :mod:`maxwhisper_lib.audio.chunking`) decoded side by side without the
    previous span's text as a prompt, instead of window after window. Returns one
    openai-whisper result dict per file, in order (:func:`transcribe_events` yields them as
    they are decoded).
    """
    events = transcribe_events(backend, audios, **options)
    while True:
        try:
            next(events)
        except StopIteration as done:
            return done.value


class _BatchRunner:
    """What the rounds of :func:`transcribe_batch` share: the backend, options and sampler."""

    def __init__(
        self,
        backend: WhisperBackend,
        options: TranscribeOptions,
        verbose: bool | None,
        rng: np.random.Generator,
        mel_frontend: str,
        progress: Callable[[float], None],
        chunked: bool,
        reject_silent: bool,
    ) -> None:
        self.backend = backend
        self.options = options
        self.verbose = verbose
        self.rng = rng
        self.mel_frontend = mel_frontend
        self.progress = progress
        self.chunked = chunked
        self.reject_silent = reject_silent
        self.task = options.decode_options.get("task", "transcribe")
        self.reported: dict[int, float] = {}
        self.languages: dict[int, tuple[str, float | None]] = {}

    def _progress(self, index: int) -> Callable[[float], None]:
        def report(seconds: float) -> None:
            self.reported[index] += seconds
            self.progress(seconds)

        self.reported[index] = 0.0
        return report

    def finish(self, unit: FileTranscription, file_units: list[FileTranscription]) -> None:
        """Once a file's last seek loop is done, the progress bar gets the seconds its loops
        skipped (silence between spans or clips)."""
        if all(u.done for u in file_units):
            self.progress(max(0.0, unit.content_duration - self.reported.pop(unit.index)))

    def start(
        self, files: list[tuple[int, np.ndarray, list[dict] | None]]
    ) -> dict[int, list[FileTranscription]]:
        """Log-mel of each file; the language of those that need detecting (one encoder batch
        of their first 30 s, as openai-whisper: ``pad_or_trim`` of the padded log-mel); the
        file's seek loop, or (``chunked``) one per span of its ``speech`` chunks or clips."""
        if not files:
            return {}
        mels = [
            whole_file_log_mel(self.backend, s, self.mel_frontend, reject_silent=self.reject_silent)
            for _, s, _ in files
        ]
        languages: list[str | None] = [self.options.decode_options.get("language")] * len(files)
        probabilities: list[float | None] = [None] * len(files)
        if languages[0] is None:
            if not self.backend.dims.is_multilingual:
                languages = ["en"] * len(files)
            else:
                if self.verbose:
                    print(
                        "Detecting language using up to the first 30 seconds. "
                        "Use `--language` to specify the language"
                    )
                audio = self.backend.embed_audio(np.stack([mel_window(m, 0) for m in mels]))
                _, probs = detect_language(self.backend, audio, get_tokenizer(self.backend.dims))
                languages = [max(p, key=p.get) for p in probs]
                probabilities = [p[language] for p, language in zip(probs, languages, strict=True)]
                if self.verbose is not None:
                    for language in languages:
                        print(f"Detected language: {LANGUAGES[language].title()}")
        started = {}
        for (index, _, _), language, probability in zip(
            files, languages, probabilities, strict=True
        ):
            self.languages[index] = (language, probability)
        for (index, _, speech), mel, language in zip(files, mels, languages, strict=True):
            tokenizer = get_tokenizer(self.backend.dims, language=language, task=self.task)
            progress = self._progress(index)
            spans: list[tuple[int, int] | None] = [None]
            if self.chunked:
                content_frames = mel.shape[-1] - N_FRAMES
                spans = (
                    speech_spans(speech, content_frames)
                    if speech is not None
                    else clip_spans(
                        parse_clip_timestamps(self.options.clip_timestamps), content_frames
                    )
                )
            started[index] = [
                FileTranscription(
                    index,
                    mel,
                    self.options,
                    tokenizer,
                    language,
                    self.backend,
                    self.verbose,
                    progress,
                    clips=None if span is None else [span],
                    keep_unfinished=span is not None,
                )
                for span in spans
            ]
        return started

    def decode(self, windows: list[Window]) -> None:
        """Encode the windows in one batch, decode them (per language), hand back the results
        (a batched file's spans with their prompts cut to one length)."""
        decode_windows(self.backend, windows, self.rng, align_prompts=self.chunked)


def aligned_prompts(prompts: Sequence[list[int]]) -> list[list[int]]:
    """The non-empty ``prompts`` cut to the shortest one's length, each keeping its latest
    tokens (as openai-whisper keeps the last 223), so that windows with a previous text share
    one decoder session instead of one each (the decoder batches equal prompt lengths)."""
    shortest = min((len(p) for p in prompts if p), default=0)
    return [list(p[len(p) - shortest :]) if p else list(p) for p in prompts]


def _same_decoding(a: TranscribeOptions, b: TranscribeOptions) -> bool:
    """Whether windows with options ``a`` and ``b`` decode alike (the initial prompt only
    shapes the prompts, which are each window's own)."""
    return a is b or a == b or replace(a, initial_prompt=None) == replace(b, initial_prompt=None)


def _without_sample_len(options: TranscribeOptions) -> TranscribeOptions:
    if "sample_len" not in options.decode_options:
        return options
    rest = {k: v for k, v in options.decode_options.items() if k != "sample_len"}
    return replace(options, decode_options=rest)


def _longest_sample_len(group: Sequence[TranscribeOptions]) -> TranscribeOptions:
    """The first options with the longest ``sample_len`` of the group (None: Whisper's)."""
    lengths = [o.decode_options.get("sample_len") for o in group]
    if None in lengths:
        return _without_sample_len(group[0])
    longest = max(lengths)
    return replace(group[0], decode_options={**group[0].decode_options, "sample_len": longest})


def decode_windows(
    backend: WhisperBackend,
    windows: Sequence[Window],
    rng: np.random.Generator | Callable[[Window], np.random.Generator],
    align_prompts: bool | Callable[[Window], bool] = False,
) -> None:
    """Encode ``windows`` (of any files) in one batch, decode those of the same language and
    decoding options (their initial prompts aside: a window's prompt carries it) in one decoder
    session (temperature fallbacks too) and hand each result to its file
    (:meth:`FileTranscription.accept`). ``rng``: the sampler, or a window's sampler (then each
    file's draws above temperature 0 are its own, whatever its batch-mates). ``align_prompts``:
    each group's previous-text prompts cut to one length (:func:`aligned_prompts`; the spans of a
    batched file), or those of the windows it is true of (live decodes); else each file's own
    prompt (its transcript exactly as alone, in as many decoder sessions as prompt lengths).
    Windows whose prompts are aligned also share a session across ``sample_len``s: it decodes
    to the longest of them (live decodes' token budgets differ with their audio's length)."""
    audio = backend.embed_audio(np.stack([w.mel for w in windows]))
    groups: list[tuple[str, TranscribeOptions, bool, list[int]]] = []
    for row, window in enumerate(windows):
        file = window.file
        pooled = align_prompts(window) if callable(align_prompts) else align_prompts
        own = _without_sample_len(file.options) if pooled else file.options
        for language, options, shared, rows in groups:
            if language == file.language and shared == pooled and _same_decoding(options, own):
                rows.append(row)
                break
        else:
            groups.append((file.language, own, pooled, [row]))
    for language, options, pooled, rows in groups:
        if pooled:
            options = _longest_sample_len([windows[row].file.options for row in rows])
        prompts = [windows[row].prompt for row in rows]
        if callable(align_prompts):
            shared = [i for i, row in enumerate(rows) if align_prompts(windows[row])]
            cut = aligned_prompts([prompts[i] for i in shared])
            for i, prompt in zip(shared, cut, strict=True):
                prompts[i] = prompt
        elif align_prompts:
            prompts = aligned_prompts(prompts)
        samplers = [rng(windows[row]) for row in rows] if callable(rng) else rng
        results = decode_with_fallback(backend, audio, rows, prompts, options, language, samplers)
        for row, result in zip(rows, results, strict=True):
            windows[row].file.accept(windows[row], result, audio, row)


def start_file(
    backend: WhisperBackend,
    samples: np.ndarray,
    options: TranscribeOptions,
    rng: np.random.Generator,
    mel_frontend: str = "auto",
) -> FileTranscription:
    """One file's seek loop, ready for :func:`decode_windows` beside other files' (its log-mel
    taken and its language detected, as :func:`transcribe` does): what a server holds per
    request. Its ``language`` and ``language_probability`` are set."""
    runner = _BatchRunner(backend, options, None, rng, mel_frontend, lambda _: None, False, True)
    (state,) = runner.start([(0, samples, None)])[0]
    state.language_probability = runner.languages[0][1]
    return state


def transcribe(
    backend: WhisperBackend,
    audio: AudioInput,
    *,
    verbose: bool | None = None,
    temperature: float | Sequence[float] = DEFAULT_TEMPERATURES,
    progress: bool | None = None,
    seed: int = 0,
    mel_frontend: str = "auto",
    batch_size: int | None = None,
    **kwargs,
) -> dict:
    """Transcribe one file (a path or a 16 kHz mono array), like ``whisper.transcribe``.

    Takes openai-whisper's keyword arguments (see :func:`transcribe_batch`) and returns its
    result dict ``{"text", "segments", "language"}``. ``batch_size``: the file is batched
    (``chunked``, see :mod:`maxwhisper_lib.audio.chunking`): its spans of up to 30 s, speech spans
    with ``vad_filter=True``, are decoded ``batch_size`` at a time instead of window after
    window.
    """
    return transcribe_batch(
        backend,
        [audio],
        batch_size=batch_size or 1,
        chunked=batch_size is not None,
        verbose=verbose,
        temperature=temperature,
        progress=progress,
        seed=seed,
        mel_frontend=mel_frontend,
        **kwargs,
    )[0]


def transcript_tokens(result: dict) -> list[int]:
    """Every segment's tokens in order (what two engines must agree on)."""
    return [token for segment in result["segments"] for token in segment["tokens"]]


__all__ = [
    "DEFAULT_TEMPERATURES",
    "FileEvent",
    "FileSegments",
    "FileStarted",
    "FileTranscription",
    "TranscribeOptions",
    "Window",
    "aligned_prompts",
    "decode_windows",
    "decode_with_fallback",
    "make_options",
    "start_file",
    "transcribe",
    "transcribe_batch",
    "transcribe_events",
    "transcript_tokens",
    "whole_file_log_mel",
]
