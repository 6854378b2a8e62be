"""Voice activity detection: Silero VAD removes non-speech before the windows are cut.

The detector is the Silero VAD ONNX model that faster-whisper ships, run by onnxruntime on the
CPU (``faster_whisper.vad``; install the ``vad`` extra). :func:`remove_non_speech` keeps the
speech chunks of a file, joined; :func:`restore_timestamps` maps every segment and word of a
result on the joined audio back to the original timeline (as faster-whisper does).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from .audio_constants import SAMPLE_RATE
from .errors import DecodingOptionsError


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
    try:
        from faster_whisper.vad import SpeechTimestampsMap, VadOptions, get_speech_timestamps
    except ImportError as error:  # pragma: no cover - the vad extra is installed by make
        raise DecodingOptionsError(
            "vad_filter needs Silero VAD as faster-whisper ships it: "
            "pip install 'maxwhisper-lib[vad]'"
        ) from error
    return SpeechTimestampsMap, VadOptions, get_speech_timestamps


def speech_chunks(samples: np.ndarray, parameters: VadParameters | None = None) -> list[dict]:
    """Speech chunks of 16 kHz ``samples``: ``[{"start": sample, "end": sample}, ...]``."""
    _, VadOptions, get_speech_timestamps = _silero()
    options = VadOptions(**asdict(parameters or VadParameters()))
    audio = np.ascontiguousarray(samples, dtype=np.float32)
    return get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE)


class SpeechTimeline:
    """Maps times on the joined speech back to the original audio."""

    def __init__(self, chunks: list[dict]) -> None:
        SpeechTimestampsMap, _, _ = _silero()
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
    pieces = [samples[c["start"] : c["end"]] for c in chunks]
    joined = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return joined.astype(np.float32, copy=False), SpeechTimeline(chunks)


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
