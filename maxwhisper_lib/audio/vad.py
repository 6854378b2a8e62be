"""Voice activity detection: Silero VAD removes non-speech before the windows are cut.

The detector is the Silero VAD ONNX model that faster-whisper ships, run by onnxruntime on the
CPU (``faster_whisper.vad``; install the ``vad`` extra). :func:`speech_chunks` finds the speech
of samples or of a stream of pieces (a long file is never held whole); :func:`remove_non_speech`
keeps the speech chunks of a file, joined, and :func:`speech_only` streams them from a file's
pieces; :func:`restore_timestamps` maps every segment and word of a result on the joined audio
back to the original timeline (as faster-whisper does).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import AudioError, DecodingOptionsError
from .constants import SAMPLE_RATE
from .load import stream_audio

VAD_MODEL_FILE = "silero_vad_v6.onnx"
"""The Silero model in faster-whisper's assets (the file its ``get_vad_model`` loads)."""
VAD_WINDOW = 512
"""Samples per speech probability (Silero at 16 kHz)."""
VAD_CONTEXT = 64
"""Samples of the previous window the model sees before each window."""
VAD_BATCH_WINDOWS = 1_000
"""Windows per model call (32 s of audio). faster-whisper calls the model on 10,000 windows at a
time; the LSTM state carries from call to call, so the probabilities do not depend on the
batches (bit for bit the same, tested on an hour of speech), and smaller ones keep the VAD's
memory flat: its peak measured 141 MB for an hour against 326 MB with 10,000 (136 / 243 MB for
5 minutes), ~4% slower."""


@dataclass(frozen=True)
class VadParameters:
    """Silero VAD's knobs (faster-whisper's defaults): speech probability ``threshold``; chunks
    shorter than ``min_speech_duration_ms`` dropped, longer than ``max_speech_duration_s``
    split; a chunk ends after ``min_silence_duration_ms`` of silence; ``speech_pad_ms`` kept on
    each side."""

    threshold: float = 0.5
    min_speech_duration_ms: int = 0
    max_speech_duration_s: float = math.inf
    min_silence_duration_ms: int = 2000
    speech_pad_ms: int = 400

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise DecodingOptionsError(f"vad threshold must be in (0, 1), got {self.threshold}")
        for name in ("min_speech_duration_ms", "min_silence_duration_ms", "speech_pad_ms"):
            if getattr(self, name) < 0:
                raise DecodingOptionsError(f"vad {name} must be >= 0, got {getattr(self, name)}")
        if self.max_speech_duration_s <= 0:
            raise DecodingOptionsError("vad max_speech_duration_s must be positive")

    @classmethod
    def from_options(cls, options: VadParameters | dict | None) -> VadParameters:
        """From a dict of the fields (unknown keys refused), an instance, or None (defaults)."""
        if options is None or isinstance(options, cls):
            return options or cls()
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise DecodingOptionsError(
                f"unknown vad parameter(s) {sorted(unknown)}; choose from {sorted(known)}"
            )
        return cls(**options)


def _silero():
    """faster-whisper's ``SpeechTimestampsMap``, or the error that says how to install it."""
    try:
        from faster_whisper.vad import SpeechTimestampsMap
    except ImportError as error:  # pragma: no cover - the vad extra is installed by make
        raise DecodingOptionsError(
            "vad_filter needs Silero VAD as faster-whisper ships it: "
            "pip install 'maxwhisper-lib[vad]'"
        ) from error
    return SpeechTimestampsMap


@functools.cache
def _vad_session(live: bool = False):
    """An onnxruntime session on the Silero model faster-whisper ships, with faster-whisper's
    options except one: its intra-op threads are every usable core, not one (10 minutes of audio
    through the VAD 1.38x faster on 2 cores, the same probabilities bit for bit, tested).
    ``live``: one thread that never spins waiting for work, faster-whisper's count: a live
    stream's pieces are small, and the engine decodes beside them (on a 2-core server with 4
    streams, a second VAD thread spinning took the cores the engine's threads wait on)."""
    import onnxruntime
    from faster_whisper.utils import get_assets_path

    _silero()  # the friendly error when faster-whisper is missing
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1 if live else len(os.sched_getaffinity(0))
    if live:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(
        str(Path(get_assets_path()) / VAD_MODEL_FILE),
        providers=["CPUExecutionProvider"],
        sess_options=options,
    )


class SileroStream:
    """Silero's speech probabilities of 16 kHz samples pushed piece by piece (a live stream, or
    a file read in pieces): every whole :data:`VAD_WINDOW` samples as soon as it is complete,
    the LSTM state carried from call to call, at most :data:`VAD_BATCH_WINDOWS` windows per
    model call (memory stays that of one batch); :meth:`finish` gives the padded tail's."""

    def __init__(self, live: bool = False) -> None:
        self._session = _vad_session(live)
        self._state = {
            "h": np.zeros((1, 1, 128), np.float32),
            "c": np.zeros((1, 1, 128), np.float32),
        }
        self._context = np.zeros(VAD_CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self.samples = 0
        """Samples pushed so far."""

    def _run(self, samples: np.ndarray) -> np.ndarray:
        windows = samples.reshape(-1, VAD_WINDOW)
        before = np.concatenate([self._context[None], windows[:-1, -VAD_CONTEXT:]])
        rows = np.concatenate([before, windows], axis=1)
        output, self._state["h"], self._state["c"] = self._session.run(
            None, {"input": rows, **self._state}
        )
        self._context = windows[-1, -VAD_CONTEXT:].copy()
        return np.asarray(output, np.float32).reshape(-1)

    def push(self, piece: np.ndarray) -> np.ndarray:
        """The probabilities of the windows ``piece`` completes (maybe none)."""
        piece = np.asarray(piece, dtype=np.float32).reshape(-1)
        self.samples += piece.size
        joined = np.concatenate([self._pending, piece]) if self._pending.size else piece
        whole = joined.size - joined.size % VAD_WINDOW
        batch = VAD_BATCH_WINDOWS * VAD_WINDOW
        # a long array given whole is cut into views, never copied
        outputs = [self._run(joined[at : min(at + batch, whole)]) for at in range(0, whole, batch)]
        self._pending = joined[whole:].copy()
        return np.concatenate(outputs) if outputs else np.zeros(0, np.float32)

    def finish(self) -> np.ndarray:
        """The last window's probability: the samples left padded with zeros to a whole window
        (a whole zero window when none are left) and its last :data:`VAD_CONTEXT` samples
        zeroed, as faster-whisper pads a file's end."""
        tail = np.concatenate(
            [self._pending, np.zeros(VAD_WINDOW - self._pending.size, np.float32)]
        )
        tail[-VAD_CONTEXT:] = 0.0
        self._pending = np.zeros(0, np.float32)
        return self._run(tail)


def speech_probabilities(pieces: Iterable[np.ndarray]) -> tuple[np.ndarray, int]:
    """Silero's speech probability of every :data:`VAD_WINDOW` samples of the 16 kHz samples
    ``pieces`` yield one after the other, and their number of samples.

    faster-whisper's ``SileroVADModel`` takes the whole file at once (and copies it twice); this
    feeds the same model the same rows (each window after the last :data:`VAD_CONTEXT` samples
    of the one before; the end padded with zeros to a whole window, and the last window's last
    :data:`VAD_CONTEXT` samples zeroed, as it does) through :class:`SileroStream`, so that
    memory stays that of one batch, however long the file."""
    stream = SileroStream()
    outputs = [stream.push(piece) for piece in pieces]
    outputs.append(stream.finish())
    return np.concatenate(outputs), stream.samples


def speech_from_probabilities(
    probabilities: np.ndarray, n_samples: int, parameters: VadParameters | None = None
) -> list[dict]:
    """The speech chunks ``[{"start": sample, "end": sample}, ...]`` of ``n_samples`` samples
    whose window probabilities are ``probabilities``: faster-whisper 1.2's
    ``get_speech_timestamps`` after its model call (a port, because that function only takes the
    whole file's samples; tests compare the two on real and long audio)."""
    p = parameters or VadParameters()
    window = VAD_WINDOW
    threshold, neg_threshold = p.threshold, max(p.threshold - 0.15, 0.01)
    min_speech = SAMPLE_RATE * p.min_speech_duration_ms / 1000
    pad = SAMPLE_RATE * p.speech_pad_ms / 1000
    max_speech = SAMPLE_RATE * p.max_speech_duration_s - window - 2 * pad
    min_silence = SAMPLE_RATE * p.min_silence_duration_ms / 1000
    min_silence_at_max_speech = SAMPLE_RATE * 98 / 1000

    triggered = False
    speeches: list[dict] = []
    current: dict = {}
    temp_end = prev_end = next_start = 0
    for i, probability in enumerate(probabilities.tolist()):
        at = window * i
        if probability >= threshold and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = at
        if probability >= threshold and not triggered:
            triggered = True
            current["start"] = at
            continue
        if triggered and at - current["start"] > max_speech:
            if prev_end:
                current["end"] = prev_end
                speeches.append(current)
                current = {}
                if next_start < prev_end:  # silence since, and not speech again yet
                    triggered = False
                else:
                    current["start"] = next_start
                prev_end = next_start = temp_end = 0
            else:
                current["end"] = at
                speeches.append(current)
                current = {}
                prev_end = next_start = temp_end = 0
                triggered = False
                continue
        if probability < neg_threshold and triggered:
            if not temp_end:
                temp_end = at
            if at - temp_end > min_silence_at_max_speech:  # a silence to split at if needed
                prev_end = temp_end
            if at - temp_end < min_silence:
                continue
            current["end"] = temp_end
            if current["end"] - current["start"] > min_speech:
                speeches.append(current)
            current = {}
            prev_end = next_start = temp_end = 0
            triggered = False
    if current and n_samples - current["start"] > min_speech:
        current["end"] = n_samples
        speeches.append(current)

    for i, speech in enumerate(speeches):  # pad each chunk, sharing short silences
        if i == 0:
            speech["start"] = int(max(0, speech["start"] - pad))
        if i != len(speeches) - 1:
            silence = speeches[i + 1]["start"] - speech["end"]
            if silence < 2 * pad:
                speech["end"] += int(silence // 2)
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - silence // 2))
            else:
                speech["end"] = int(min(n_samples, speech["end"] + pad))
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - pad))
        else:
            speech["end"] = int(min(n_samples, speech["end"] + pad))
    return speeches


def speech_chunks(
    audio: np.ndarray | Iterable[np.ndarray],
    parameters: VadParameters | None = None,
    name: str = "<array>",
) -> list[dict]:
    """Speech chunks of 16 kHz samples, given whole or as a stream of pieces (e.g.
    :func:`~maxwhisper_lib.audio.load.stream_audio`): ``[{"start": sample, "end": sample}, ...]``,
    faster-whisper's ``get_speech_timestamps``. An :class:`AudioError` naming ``name`` when
    there are no samples."""
    pieces = [audio] if isinstance(audio, np.ndarray) else audio
    probabilities, n_samples = speech_probabilities(pieces)
    if n_samples == 0:
        raise AudioError(f"{name}: no audio samples")
    return speech_from_probabilities(probabilities, n_samples, parameters)


def speech_only(pieces: Iterable[np.ndarray], chunks: Sequence[dict]) -> Iterator[np.ndarray]:
    """The samples of ``chunks`` (in order, not overlapping) out of a stream of ``pieces``,
    one after the other: :func:`remove_non_speech`'s joined speech, never held whole."""
    base, index = 0, 0
    for piece in pieces:
        end = base + piece.size
        while index < len(chunks) and chunks[index]["start"] < end:
            start, stop = max(chunks[index]["start"], base), min(chunks[index]["end"], end)
            if stop > start:
                yield piece[start - base : stop - base]
            if chunks[index]["end"] > end:
                break
            index += 1
        base = end


@dataclass(frozen=True)
class FileSpeech:
    """The speech chunks of an audio file, read back from the file piece by piece when its
    joined speech is needed (a long file's samples are never held whole)."""

    path: Path
    chunks: list[dict]

    def pieces(self) -> Iterator[np.ndarray]:
        return speech_only(stream_audio(self.path), self.chunks)


class SpeechTimeline:
    """Maps times on the joined speech back to the original audio."""

    def __init__(self, chunks: list[dict]) -> None:
        SpeechTimestampsMap = _silero()
        self.chunks = chunks
        self._map = SpeechTimestampsMap(chunks, SAMPLE_RATE)

    @property
    def speech_seconds(self) -> float:
        return sum(c["end"] - c["start"] for c in self.chunks) / SAMPLE_RATE

    def original(self, time: float, chunk: int | None = None, is_end: bool = False) -> float:
        return float(self._map.get_original_time(time, chunk, is_end))

    def chunk_of(self, time: float) -> int:
        return int(self._map.get_chunk_index(time))


def remove_non_speech(
    samples: np.ndarray, parameters: VadParameters | None = None
) -> tuple[np.ndarray, SpeechTimeline]:
    """The speech of ``samples`` joined (empty when there is none) and its timeline."""
    chunks = speech_chunks(samples, parameters)
    return joined_speech(samples, chunks), SpeechTimeline(chunks)


def joined_speech(samples: np.ndarray, chunks: Sequence[dict]) -> np.ndarray:
    """The samples of ``chunks`` joined, float32 (empty when there are none)."""
    pieces = list(speech_only([samples], chunks))
    joined = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return joined.astype(np.float32, copy=False)


def restore_timestamps(result: dict, timeline: SpeechTimeline) -> dict:
    """``result`` (an openai-whisper result dict on the joined speech) with every segment and
    word time on the original timeline; words move with the chunk their middle falls in and
    their segment then spans its words, as faster-whisper restores them."""
    for segment in result["segments"]:
        words = segment.get("words")
        if words:
            for word in words:
                chunk = timeline.chunk_of((word["start"] + word["end"]) / 2)
                word["start"] = timeline.original(word["start"], chunk)
                word["end"] = timeline.original(word["end"], chunk)
            segment["start"], segment["end"] = words[0]["start"], words[-1]["end"]
        else:
            segment["start"] = timeline.original(segment["start"])
            segment["end"] = timeline.original(segment["end"], is_end=True)
    return result
